//! The upstream of a regional cache, spoken to over the same distribution API. Every call is
//! retried with exponential backoff on transport errors, 5xx answers and bodies that break off;
//! after the last attempt the caller gets [`RegistryError::UpstreamUnavailable`] naming the
//! upstream. Any other error answer is passed on as [`RegistryError::UpstreamRefused`].
//!
//! Credentials: the upstream's configured token when there is one, else the caller's own org
//! token (Basic auth, token as password), so the upstream enforces its own tenancy too.

use crate::auth::basic_header;
use crate::body::FileBody;
use crate::config::Upstream;
use crate::error::{RegistryError, Result};
use crate::store::{Ingest, Store};
use aloft_oci::media_type;
use aloft_oci::{Digest, RepoName};
use http::StatusCode;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LINK, LOCATION};
use reqwest::{RequestBuilder, Response};
use std::path::Path;
use std::time::Duration;

/// Longest error message kept from an upstream answer.
const MAX_ERROR_TEXT: usize = 500;

/// One attempt's outcome.
enum Step<T> {
    Done(T),
    Retry(String),
}

/// A manifest fetched from the upstream.
pub(crate) struct FetchedManifest {
    pub media_type: Option<String>,
    pub bytes: Vec<u8>,
}

/// A page of a list (tags or catalog) answered by the upstream.
pub(crate) struct ListPage {
    pub body: Vec<u8>,
    pub link: Option<String>,
}

pub(crate) struct UpstreamClient {
    base: String,
    token: Option<String>,
    attempts: u32,
    backoff: Duration,
    http: reqwest::Client,
}

impl UpstreamClient {
    pub(crate) fn new(config: &Upstream) -> Result<UpstreamClient> {
        if !config.url.starts_with("http://") {
            return Err(RegistryError::Config(format!(
                "upstream `{}` must be an http:// URL (this build has no TLS; reach the upstream over the mesh or a local TLS proxy)",
                config.url
            )));
        }
        if config.attempts == 0 {
            return Err(RegistryError::Config(
                "upstream attempts must be at least 1".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| RegistryError::Config(format!("cannot build the upstream client: {e}")))?;
        Ok(UpstreamClient {
            base: config.url.trim_end_matches('/').to_string(),
            token: config.token.clone(),
            attempts: config.attempts,
            backoff: config.backoff,
            http,
        })
    }

    pub(crate) fn url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, url: &str, token: &str) -> RequestBuilder {
        let token = self.token.as_deref().unwrap_or(token);
        self.http
            .request(method, url)
            .header(AUTHORIZATION, basic_header(token))
    }

    fn v2(&self, repo: &RepoName, rest: &str) -> String {
        format!("{}/v2/{repo}/{rest}", self.base)
    }

    /// Runs `attempt` until it is done, with backoff between attempts.
    async fn retry<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Step<T>>>,
    {
        let mut last = String::new();
        for n in 0..self.attempts {
            if n > 0 {
                tokio::time::sleep(self.backoff * 2u32.saturating_pow(n - 1)).await;
            }
            match attempt().await? {
                Step::Done(value) => return Ok(value),
                Step::Retry(why) => {
                    tracing::warn!(upstream = %self.base, attempt = n + 1, %why, "{what} failed");
                    last = format!("{what}: {why}");
                }
            }
        }
        Err(RegistryError::UpstreamUnavailable {
            url: self.base.clone(),
            attempts: self.attempts,
            last,
        })
    }

    /// Sends one request; transport errors and 5xx are worth retrying.
    async fn send(&self, request: RequestBuilder) -> Step<Response> {
        match request.send().await {
            Ok(response) if response.status().is_server_error() => {
                Step::Retry(format!("answered {}", response.status()))
            }
            Ok(response) => Step::Done(response),
            Err(e) => Step::Retry(error_chain(&e)),
        }
    }

    /// Sends a request built afresh for every attempt.
    async fn send_retrying(
        &self,
        what: &str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response> {
        self.retry(what, || async { Ok(self.send(build()).await) })
            .await
    }

    /// The digest a tag points to upstream; `None` when the upstream has no such manifest.
    pub(crate) async fn resolve(
        &self,
        token: &str,
        repo: &RepoName,
        tag: &str,
    ) -> Result<Option<Digest>> {
        let url = self.v2(repo, &format!("manifests/{tag}"));
        let response = self
            .send_retrying("HEAD manifest", || {
                self.request(reqwest::Method::HEAD, &url, token)
                    .header(ACCEPT, media_type::ACCEPT)
            })
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = self.expect_success(response).await?;
        let header = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v).ok());
        match header {
            Some(digest) => Ok(Some(digest)),
            None => Ok(self
                .manifest(token, repo, tag, usize::MAX)
                .await?
                .map(|m| Digest::of(&m.bytes))),
        }
    }

    /// A manifest by tag or digest, at most `max` bytes; `None` when the upstream has none.
    pub(crate) async fn manifest(
        &self,
        token: &str,
        repo: &RepoName,
        reference: &str,
        max: usize,
    ) -> Result<Option<FetchedManifest>> {
        let url = self.v2(repo, &format!("manifests/{reference}"));
        self.retry("GET manifest", || async {
            let request = self
                .request(reqwest::Method::GET, &url, token)
                .header(ACCEPT, media_type::ACCEPT);
            let mut response = match self.send(request).await {
                Step::Done(response) => response,
                Step::Retry(why) => return Ok(Step::Retry(why)),
            };
            if response.status() == StatusCode::NOT_FOUND {
                return Ok(Step::Done(None));
            }
            response = self.expect_success(response).await?;
            let media_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let mut bytes = Vec::new();
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        bytes.extend_from_slice(&chunk);
                        if bytes.len() > max {
                            return Err(RegistryError::UpstreamRefused {
                                url: self.base.clone(),
                                status: 200,
                                code: "MANIFEST_INVALID".into(),
                                message: format!(
                                    "the manifest is larger than this cache accepts ({max} bytes)"
                                ),
                            });
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Ok(Step::Retry(error_chain(&e))),
                }
            }
            Ok(Step::Done(Some(FetchedManifest { media_type, bytes })))
        })
        .await
    }

    /// The size of a blob upstream; `None` when the upstream has none.
    pub(crate) async fn blob_size(
        &self,
        token: &str,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>> {
        let url = self.v2(repo, &format!("blobs/{digest}"));
        let response = self
            .send_retrying("HEAD blob", || {
                self.request(reqwest::Method::HEAD, &url, token)
            })
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = self.expect_success(response).await?;
        Ok(Some(
            response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or_default(),
        ))
    }

    /// Streams a blob from the upstream into the store, verifying its digest; a download that
    /// breaks off is started again. Returns its size, or `None` when the upstream has no such blob.
    pub(crate) async fn fetch_blob(
        &self,
        token: &str,
        repo: &RepoName,
        digest: &Digest,
        store: &Store,
    ) -> Result<Option<u64>> {
        let url = self.v2(repo, &format!("blobs/{digest}"));
        self.retry("GET blob", || async {
            let request = self.request(reqwest::Method::GET, &url, token);
            let response = match self.send(request).await {
                Step::Done(response) => response,
                Step::Retry(why) => return Ok(Step::Retry(why)),
            };
            if response.status() == StatusCode::NOT_FOUND {
                return Ok(Step::Done(None));
            }
            let mut response = self.expect_success(response).await?;
            match store.ingest(&mut response, digest).await? {
                Ingest::Stored(size) => Ok(Step::Done(Some(size))),
                Ingest::SourceFailed(why) => Ok(Step::Retry(format!("the body broke off: {why}"))),
            }
        })
        .await
    }

    /// Pushes the blob stored at `path` to the upstream, unless it already has it.
    pub(crate) async fn push_blob(
        &self,
        token: &str,
        repo: &RepoName,
        digest: &Digest,
        path: &Path,
    ) -> Result<()> {
        if self.blob_size(token, repo, digest).await?.is_some() {
            return Ok(());
        }
        let start_url = self.v2(repo, "blobs/uploads/");
        self.retry("push blob", || async {
            let request = self.request(reqwest::Method::POST, &start_url, token);
            let response = match self.send(request).await {
                Step::Done(response) => self.expect_success(response).await?,
                Step::Retry(why) => return Ok(Step::Retry(why)),
            };
            let location = self.location(&response)?;
            let separator = if location.contains('?') { '&' } else { '?' };
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|e| RegistryError::io("open", path, e))?;
            let len = file
                .metadata()
                .await
                .map_err(|e| RegistryError::io("stat", path, e))?
                .len();
            let request = self
                .request(
                    reqwest::Method::PUT,
                    &format!("{location}{separator}digest={digest}"),
                    token,
                )
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, len)
                .body(reqwest::Body::wrap(FileBody::new(file, len)));
            match self.send(request).await {
                Step::Done(response) => self.expect_success(response).await.map(|_| Step::Done(())),
                Step::Retry(why) => Ok(Step::Retry(why)),
            }
        })
        .await
    }

    /// Pushes a manifest to the upstream under `reference`.
    pub(crate) async fn push_manifest(
        &self,
        token: &str,
        repo: &RepoName,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<()> {
        let url = self.v2(repo, &format!("manifests/{reference}"));
        let response = self
            .send_retrying("push manifest", || {
                self.request(reqwest::Method::PUT, &url, token)
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.to_vec())
            })
            .await?;
        self.expect_success(response).await.map(drop)
    }

    /// Asks the upstream to mount `digest` from `from` into `repo`; true when it did.
    pub(crate) async fn mount(
        &self,
        token: &str,
        repo: &RepoName,
        digest: &Digest,
        from: &RepoName,
    ) -> Result<bool> {
        let url = self.v2(repo, &format!("blobs/uploads/?mount={digest}&from={from}"));
        let response = self
            .send_retrying("mount blob", || {
                self.request(reqwest::Method::POST, &url, token)
            })
            .await?;
        let response = self.expect_success(response).await?;
        if response.status() == StatusCode::CREATED {
            return Ok(true);
        }
        // The upstream opened an upload session instead; close it (its janitor would, too).
        if let Ok(location) = self.location(&response) {
            let request = self.request(reqwest::Method::DELETE, &location, token);
            if let Step::Retry(why) = self.send(request).await {
                tracing::debug!(%why, "could not cancel an upstream upload");
            }
        }
        Ok(false)
    }

    /// Deletes `/v2/<repo>/<rest>` upstream; a 404 counts as done.
    pub(crate) async fn delete(&self, token: &str, repo: &RepoName, rest: &str) -> Result<()> {
        let url = self.v2(repo, rest);
        let response = self
            .send_retrying("DELETE", || {
                self.request(reqwest::Method::DELETE, &url, token)
            })
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(());
        }
        self.expect_success(response).await.map(drop)
    }

    /// A list page (`/v2/<path_and_query>`); `None` on 404.
    pub(crate) async fn list(&self, token: &str, path_and_query: &str) -> Result<Option<ListPage>> {
        let url = format!("{}/v2/{path_and_query}", self.base);
        let response = self
            .send_retrying("GET list", || {
                self.request(reqwest::Method::GET, &url, token)
            })
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = self.expect_success(response).await?;
        let link = response
            .headers()
            .get(LINK)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response
            .bytes()
            .await
            .map_err(|e| RegistryError::UpstreamUnavailable {
                url: self.base.clone(),
                attempts: 1,
                last: error_chain(&e),
            })?;
        Ok(Some(ListPage {
            body: body.to_vec(),
            link,
        }))
    }

    fn location(&self, response: &Response) -> Result<String> {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::UpstreamRefused {
                url: self.base.clone(),
                status: response.status().as_u16(),
                code: "UNKNOWN".into(),
                message: "the upload answer has no Location header".into(),
            })?;
        Ok(
            if location.starts_with("http://") || location.starts_with("https://") {
                location.to_string()
            } else if location.starts_with('/') {
                format!("{}{location}", self.base)
            } else {
                format!("{}/{location}", self.base)
            },
        )
    }

    /// The response when it is a success, else the upstream's error as [`RegistryError`].
    async fn expect_success(&self, response: Response) -> Result<Response> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let (code, message) = spec_error(&text).unwrap_or_else(|| {
            // HEAD answers have no body: name the status instead.
            let code = match status {
                401 => "UNAUTHORIZED",
                403 => "DENIED",
                404 => "NAME_UNKNOWN",
                429 => "TOOMANYREQUESTS",
                _ => "UNKNOWN",
            };
            let mut text = text.trim().to_string();
            text.truncate(MAX_ERROR_TEXT);
            if text.is_empty() {
                text = format!("HTTP {status}");
            }
            (code.into(), text)
        });
        Err(RegistryError::UpstreamRefused {
            url: self.base.clone(),
            status,
            code,
            message,
        })
    }
}

/// The first error of a spec error body.
fn spec_error(text: &str) -> Option<(String, String)> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let first = value.get("errors")?.get(0)?;
    let code = first.get("code")?.as_str()?.to_string();
    let mut message = first
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_string();
    message.truncate(MAX_ERROR_TEXT);
    Some((code, message))
}

/// An error with its sources, which is where reqwest says what actually happened.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
