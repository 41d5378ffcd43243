//! The registry client: `/v2/` authentication (Basic, and the Docker bearer-token challenge),
//! manifests and blobs with digest verification, and retries with backoff.
//!
//! Registries are spoken to over plain HTTP (this build has no TLS client): aloft's own
//! registry on the host or the private network, or Debian's `docker-registry`.
//!
//! Where credentials go: the credentials of a pull are for the registry its reference names,
//! and are sent only to that registry's own host and port: to the registry itself, and to a
//! token realm only when the realm is on that same host and port (a realm elsewhere is asked
//! for an anonymous token). A redirect to another host or port never carries `Authorization`
//! (the HTTP client drops it), so a blob redirect to a CDN works without leaking the token.
//! Every URL, realms and redirect targets included, passes the address policy
//! (`netpolicy`) first.

use crate::error::ImageError;
use crate::netpolicy::{self, AddressPolicy};
use crate::reference::Reference;
use aloft_oci::manifest::{self, Descriptor, Parsed};
use aloft_oci::media_type;
use base64::Engine;
use parking_lot::Mutex;
use reqwest::{Method, StatusCode, Url};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Credentials for one pull.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// Anonymous.
    #[default]
    None,
    /// HTTP Basic credentials, sent to the registry (`Basic` challenge) or to its token endpoint
    /// (`Bearer` challenge). For aloft's registry: any username and an org token as password.
    Basic { username: String, password: String },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

impl Credentials {
    pub(crate) fn basic_header(&self) -> Option<String> {
        match self {
            Credentials::None => None,
            Credentials::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
        }
    }
}

/// The outcome of one failed attempt.
pub(crate) enum Failure {
    /// Worth another attempt (connection error, broken body, 5xx, 429).
    Retry(String),
    /// Final.
    Fatal(ImageError),
}

impl From<ImageError> for Failure {
    fn from(e: ImageError) -> Self {
        Failure::Fatal(e)
    }
}

/// The resolved image: the manifest that runs on linux/amd64, and its digest.
pub(crate) struct Resolved {
    pub digest: String,
    pub manifest: manifest::Manifest,
}

/// A connection to one repository of one registry, authenticated once per pull.
#[derive(Clone)]
pub(crate) struct Session {
    inner: Arc<SessionInner>,
}

struct SessionInner {
    http: reqwest::Client,
    policy: Arc<AddressPolicy>,
    registry: String,
    repository: String,
    creds: Credentials,
    /// The `Authorization` header value, once known.
    auth: Mutex<Option<String>>,
    retries: u32,
    backoff: Duration,
}

impl Session {
    pub(crate) fn new(
        http: reqwest::Client,
        policy: Arc<AddressPolicy>,
        reference: &Reference,
        creds: &Credentials,
        retries: u32,
        backoff: Duration,
    ) -> Session {
        Session {
            inner: Arc::new(SessionInner {
                http,
                policy,
                registry: reference.registry.clone(),
                repository: reference.repository.clone(),
                creds: creds.clone(),
                auth: Mutex::new(None),
                retries,
                backoff,
            }),
        }
    }

    fn url(&self, tail: &str) -> String {
        format!(
            "http://{}/v2/{}/{tail}",
            self.inner.registry, self.inner.repository
        )
    }

    fn auth_header(&self) -> Option<String> {
        self.inner.auth.lock().clone()
    }

    fn set_auth(&self, value: String) {
        *self.inner.auth.lock() = Some(value);
    }

    fn unauthorized(&self, detail: impl Into<String>) -> ImageError {
        ImageError::Unauthorized {
            registry: self.inner.registry.clone(),
            repository: self.inner.repository.clone(),
            detail: detail.into(),
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are spent.
    async fn retrying<T, F: std::future::Future<Output = Result<T, Failure>>>(
        &self,
        what: &str,
        mut attempt: impl FnMut() -> F,
    ) -> Result<T, ImageError> {
        let attempts = self.inner.retries + 1;
        let mut last = String::new();
        for i in 0..attempts {
            if i > 0 {
                let delay = self
                    .inner
                    .backoff
                    .saturating_mul(1 << (i - 1).min(16))
                    .min(Duration::from_secs(10));
                tokio::time::sleep(delay).await;
            }
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(detail)) => {
                    tracing::warn!(registry = %self.inner.registry, attempt = i + 1, "{what}: {detail}");
                    last = format!("{what}: {detail}");
                }
            }
        }
        Err(ImageError::RegistryUnavailable {
            registry: self.inner.registry.clone(),
            attempts,
            detail: last,
        })
    }

    /// Checks `url` against the address policy before anything is sent to it.
    fn checked(&self, url: &str) -> Result<Url, Failure> {
        let parsed = Url::parse(url).map_err(|e| {
            Failure::Fatal(ImageError::AddressRefused {
                registry: self.inner.registry.clone(),
                detail: format!("{url} is not a URL ({e})"),
            })
        })?;
        self.inner.policy.check_url(&parsed).map_err(|e| {
            Failure::Fatal(ImageError::AddressRefused {
                registry: self.inner.registry.clone(),
                detail: e.0,
            })
        })?;
        Ok(parsed)
    }

    /// Whether `url` is on the registry's own host and port (where its credentials may go).
    fn same_registry(&self, url: &Url) -> bool {
        let own = netpolicy::split_authority(&self.inner.registry);
        let host = url
            .host_str()
            .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase());
        own.is_some_and(|(h, p)| {
            Some(&h) == host.as_ref()
                && p.unwrap_or(80) == url.port_or_known_default().unwrap_or(80)
        })
    }

    /// One GET, answering one authentication challenge on the way.
    async fn get(&self, url: &str, accept: Option<&str>) -> Result<reqwest::Response, Failure> {
        self.request(Method::GET, url, accept).await
    }

    /// One request, answering one authentication challenge on the way.
    async fn request(
        &self,
        method: Method,
        url: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, Failure> {
        let parsed = self.checked(url)?;
        let mut challenged = false;
        loop {
            let mut req = self.inner.http.request(method.clone(), parsed.clone());
            if let Some(a) = accept {
                req = req.header(reqwest::header::ACCEPT, a);
            }
            if let Some(auth) = self.auth_header() {
                req = req.header(reqwest::header::AUTHORIZATION, auth);
            }
            let resp = req.send().await.map_err(|e| self.transport(url, e))?;
            let status = resp.status();
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                return Err(Failure::Retry(format!("{url} answered {status}")));
            }
            if status == StatusCode::UNAUTHORIZED && !challenged {
                challenged = true;
                let challenge = resp
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                match challenge {
                    Some(c) => self.authenticate(&c).await?,
                    None => return Err(self.unauthorized("401 without a challenge").into()),
                }
                continue;
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                let detail = error_detail(resp).await;
                return Err(self
                    .unauthorized(format!(
                        "{status}{}{detail}",
                        if detail.is_empty() { "" } else { ": " }
                    ))
                    .into());
            }
            return Ok(resp);
        }
    }

    /// Answers a `WWW-Authenticate` challenge: Basic directly, Bearer through the token realm.
    async fn authenticate(&self, challenge: &str) -> Result<(), Failure> {
        let (scheme, params) = parse_challenge(challenge);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => match self.inner.creds.basic_header() {
                Some(h) => {
                    self.set_auth(h);
                    Ok(())
                }
                None => Err(self
                    .unauthorized("the registry wants credentials and none were given")
                    .into()),
            },
            "bearer" => {
                let realm = params.get("realm").ok_or_else(|| {
                    self.unauthorized(format!("bearer challenge without a realm: {challenge}"))
                })?;
                if !realm.starts_with("http://") {
                    return Err(self
                        .unauthorized(format!(
                            "the token endpoint {realm} is not plain HTTP, and this build has no TLS client"
                        ))
                        .into());
                }
                let realm_url = self.checked(realm)?;
                let scope = format!("repository:{}:pull", self.inner.repository);
                let mut query = vec![("scope", scope.as_str())];
                if let Some(service) = params.get("service") {
                    query.push(("service", service.as_str()));
                }
                let mut req = self.inner.http.get(realm_url.clone()).query(&query);
                // the registry's credentials go to its own host only: a realm elsewhere is
                // asked for an anonymous token
                if let Some(h) = self.inner.creds.basic_header()
                    && self.same_registry(&realm_url)
                {
                    req = req.header(reqwest::header::AUTHORIZATION, h);
                }
                let resp = req.send().await.map_err(|e| self.transport(realm, e))?;
                let status = resp.status();
                if status.is_server_error() {
                    return Err(Failure::Retry(format!(
                        "token endpoint {realm} answered {status}"
                    )));
                }
                if !status.is_success() {
                    let detail = error_detail(resp).await;
                    return Err(self
                        .unauthorized(format!(
                            "the token endpoint {realm} answered {status} {detail}"
                        ))
                        .into());
                }
                let body = read_limited(resp, 1 << 20, realm).await?;
                let json: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
                    self.unauthorized(format!("the token endpoint {realm} sent no JSON: {e}"))
                })?;
                let token = json
                    .get("token")
                    .or_else(|| json.get("access_token"))
                    .and_then(|t| t.as_str())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        self.unauthorized(format!("the token endpoint {realm} sent no token"))
                    })?;
                self.set_auth(format!("Bearer {token}"));
                Ok(())
            }
            other => Err(self
                .unauthorized(format!("unsupported authentication scheme `{other}`"))
                .into()),
        }
    }

    /// `GET /v2/`: checks the registry speaks the distribution API and authenticates.
    pub(crate) async fn login(&self) -> Result<(), ImageError> {
        let url = format!("http://{}/v2/", self.inner.registry);
        self.retrying("GET /v2/", || self.login_once(&url)).await
    }

    async fn login_once(&self, url: &str) -> Result<(), Failure> {
        let resp = self.get(url, None).await?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(Failure::Fatal(ImageError::RegistryStatus {
                registry: self.inner.registry.clone(),
                url: url.to_string(),
                status: status.as_u16(),
                detail:
                    "this does not look like an OCI registry (GET /v2/ should answer 200 or 401)"
                        .into(),
            }))
        }
    }

    /// Asks the registry whether these credentials may read manifest `digest` (`GET /v2/`, then
    /// a `HEAD` of the manifest): the check before an image already on this host is reused.
    pub(crate) async fn check_access(&self, digest: &str) -> Result<(), ImageError> {
        self.login().await?;
        let url = self.url(&format!("manifests/{digest}"));
        self.retrying("manifest HEAD", || self.head_once(&url, digest))
            .await
    }

    async fn head_once(&self, url: &str, digest: &str) -> Result<(), Failure> {
        let resp = self
            .request(Method::HEAD, url, Some(media_type::ACCEPT))
            .await?;
        self.check_status(&resp, &format!("manifest {digest}"), url)
    }

    /// Fetches and verifies a manifest or index; returns its bytes, media type and digest.
    async fn manifest(&self, reference: &str) -> Result<(Vec<u8>, Option<String>), ImageError> {
        let url = self.url(&format!("manifests/{reference}"));
        let (body, content_type, header_digest) = self
            .retrying("manifest", || self.manifest_once(&url, reference))
            .await?;
        let actual = aloft_oci::Digest::of(&body).into_string();
        let expected = if reference.starts_with("sha256:") {
            Some(reference.to_string())
        } else {
            header_digest.filter(|d| d.starts_with("sha256:"))
        };
        if let Some(expected) = expected
            && expected != actual
        {
            return Err(ImageError::DigestMismatch {
                what: format!("manifest {}:{reference}", self.inner.repository),
                expected,
                actual,
            });
        }
        Ok((body, content_type))
    }

    async fn manifest_once(
        &self,
        url: &str,
        reference: &str,
    ) -> Result<(Vec<u8>, Option<String>, Option<String>), Failure> {
        let resp = self.get(url, Some(media_type::ACCEPT)).await?;
        self.check_status(&resp, &format!("manifest {reference}"), url)?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header("content-type");
        let header_digest = header("docker-content-digest");
        let body = read_limited(resp, manifest::MAX_MANIFEST_BYTES, url).await?;
        Ok((body, content_type, header_digest))
    }

    /// Resolves a reference to its linux/amd64 manifest (through an index when there is one).
    pub(crate) async fn resolve(&self, reference: &Reference) -> Result<Resolved, ImageError> {
        let name = reference.to_string();
        let (body, content_type) = self.manifest(reference.manifest_ref()).await?;
        match manifest::parse(&body, content_type.as_deref(), &name)? {
            Parsed::Manifest(m) => Ok(Resolved {
                digest: aloft_oci::Digest::of(&body).into_string(),
                manifest: m,
            }),
            Parsed::Index(index) => {
                let chosen = manifest::select_platform(&index, &name)?.clone();
                let (body, content_type) = self.manifest(&chosen.digest).await?;
                if body.len() as u64 != chosen.size {
                    return Err(ImageError::InvalidManifest {
                        reference: name,
                        detail: format!(
                            "the linux/amd64 manifest is {} bytes, the index says {}",
                            body.len(),
                            chosen.size
                        ),
                    });
                }
                match manifest::parse(&body, content_type.as_deref(), &name)? {
                    Parsed::Manifest(m) => Ok(Resolved {
                        digest: chosen.digest,
                        manifest: m,
                    }),
                    Parsed::Index(_) => Err(ImageError::InvalidManifest {
                        reference: name,
                        detail: "the linux/amd64 entry of the index is another index".into(),
                    }),
                }
            }
        }
    }

    /// Fetches a small blob (the image config) into memory and verifies it.
    pub(crate) async fn blob_bytes(&self, desc: &Descriptor) -> Result<Vec<u8>, ImageError> {
        let url = self.url(&format!("blobs/{}", desc.digest));
        let body = self
            .retrying("blob", || self.blob_bytes_once(&url, desc))
            .await?;
        verify(
            &desc.digest,
            desc.size,
            body.len() as u64,
            aloft_oci::Digest::of(&body).into_string(),
        )?;
        Ok(body)
    }

    async fn blob_bytes_once(&self, url: &str, desc: &Descriptor) -> Result<Vec<u8>, Failure> {
        let resp = self.get(url, None).await?;
        self.check_status(&resp, &format!("blob {}", desc.digest), url)?;
        read_limited(resp, desc.size, url).await
    }

    /// Streams a blob into `path` while hashing it (never holding it in memory), verifies size
    /// and digest, and reports received bytes to `on_bytes`. A broken transfer starts over.
    pub(crate) async fn blob_to_file(
        &self,
        desc: &Descriptor,
        path: &Path,
        on_bytes: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), ImageError> {
        let url = self.url(&format!("blobs/{}", desc.digest));
        let (len, hash) = self
            .retrying("blob", || {
                self.blob_to_file_once(&url, desc, path, on_bytes)
            })
            .await?;
        verify(&desc.digest, desc.size, len, hash)
    }

    async fn blob_to_file_once(
        &self,
        url: &str,
        desc: &Descriptor,
        path: &Path,
        on_bytes: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(u64, String), Failure> {
        let mut resp = self.get(url, None).await?;
        self.check_status(&resp, &format!("blob {}", desc.digest), url)?;
        let file = tokio::fs::File::create(path)
            .await
            .map_err(|e| ImageError::io("create", path, e))?;
        let mut out = tokio::io::BufWriter::with_capacity(256 << 10, file);
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    return Err(Failure::Retry(format!(
                        "{url}: transfer broken after {len} bytes: {}",
                        error_chain(&e)
                    )));
                }
            };
            len += chunk.len() as u64;
            if len > desc.size {
                return Err(Failure::Fatal(ImageError::DigestMismatch {
                    what: format!("blob {}", desc.digest),
                    expected: format!("{} bytes", desc.size),
                    actual: format!("more than {} bytes", desc.size),
                }));
            }
            hasher.update(&chunk);
            out.write_all(&chunk)
                .await
                .map_err(|e| ImageError::io("write", path, e))?;
            on_bytes(chunk.len() as u64);
        }
        out.flush()
            .await
            .map_err(|e| ImageError::io("write", path, e))?;
        Ok((len, aloft_oci::Digest::from_hasher(hasher).into_string()))
    }

    /// A transport error: retried, except for errors in building the request and addresses
    /// the policy refused (when resolving a name, or in a redirect).
    fn transport(&self, url: &str, e: reqwest::Error) -> Failure {
        if let Some(refused) = netpolicy::refusal(&e) {
            Failure::Fatal(ImageError::AddressRefused {
                registry: self.inner.registry.clone(),
                detail: refused.0,
            })
        } else if e.is_builder() {
            Failure::Fatal(ImageError::RegistryStatus {
                registry: self.inner.registry.clone(),
                url: url.to_string(),
                status: 0,
                detail: error_chain(&e),
            })
        } else {
            Failure::Retry(format!("{url}: {}", error_chain(&e)))
        }
    }

    fn check_status(&self, resp: &reqwest::Response, what: &str, url: &str) -> Result<(), Failure> {
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        if status == StatusCode::NOT_FOUND {
            return Err(Failure::Fatal(ImageError::NotFound {
                registry: self.inner.registry.clone(),
                what: format!("{what} of {}", self.inner.repository),
            }));
        }
        Err(Failure::Fatal(ImageError::RegistryStatus {
            registry: self.inner.registry.clone(),
            url: url.to_string(),
            status: status.as_u16(),
            detail: "unexpected answer".into(),
        }))
    }
}

fn verify(expected: &str, size: u64, len: u64, actual: String) -> Result<(), ImageError> {
    if actual != expected {
        return Err(ImageError::DigestMismatch {
            what: format!("blob {expected}"),
            expected: expected.to_string(),
            actual,
        });
    }
    if len != size {
        return Err(ImageError::DigestMismatch {
            what: format!("blob {expected}"),
            expected: format!("{size} bytes"),
            actual: format!("{len} bytes"),
        });
    }
    Ok(())
}

/// An error and its sources on one line (reqwest's own message is terse).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The start of an error body (registries explain refusals in JSON).
async fn error_detail(resp: reqwest::Response) -> String {
    match read_limited(resp, 4096, "").await {
        Ok(b) => String::from_utf8_lossy(&b[..b.len().min(300)])
            .trim()
            .to_string(),
        Err(_) => String::new(),
    }
}

/// Reads a whole body, refusing more than `limit` bytes; a broken body is worth a retry.
async fn read_limited(
    mut resp: reqwest::Response,
    limit: u64,
    url: &str,
) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if (body.len() + c.len()) as u64 > limit {
                    return Err(Failure::Fatal(ImageError::InvalidManifest {
                        reference: url.to_string(),
                        detail: format!("the answer is larger than {limit} bytes"),
                    }));
                }
                body.extend_from_slice(&c);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(Failure::Retry(format!(
                    "{url}: body broken: {}",
                    error_chain(&e)
                )));
            }
        }
    }
}

/// Splits `Bearer realm="...",service="...",scope="a,b"` into the scheme and its parameters
/// (quoted values may contain commas).
fn parse_challenge(header: &str) -> (String, HashMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    (scheme.to_string(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let (scheme, p) = parse_challenge(
            r#"Bearer realm="http://127.0.0.1:5000/v2/token",service="aloft",scope="repository:acme/app:pull,push""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(p["realm"], "http://127.0.0.1:5000/v2/token");
        assert_eq!(p["service"], "aloft");
        assert_eq!(p["scope"], "repository:acme/app:pull,push");
        let (scheme, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(
            (scheme.as_str(), p["realm"].as_str()),
            ("Basic", "Registry Realm")
        );
        let (_, p) = parse_challenge("Bearer realm=http://x/token, service=reg");
        assert_eq!(
            (p["realm"].as_str(), p["service"].as_str()),
            ("http://x/token", "reg")
        );
    }

    #[test]
    fn credentials_are_redacted() {
        let c = Credentials::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.basic_header().unwrap(), "Basic dTpodW50ZXIy");
    }
}
