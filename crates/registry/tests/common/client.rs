//! A small OCI distribution client written from the spec, used as the second client (besides
//! skopeo). It authenticates the way Docker clients do: it sends the request anonymously (or with
//! the bearer token it holds), and on a 401 parses the `WWW-Authenticate: Bearer realm=...,
//! service=...,scope=...` challenge, asks the realm for a token with Basic auth, and retries.

use super::{TestImage, digest_of};
use parking_lot::Mutex;
use reqwest::{Method, RequestBuilder, Response, StatusCode};

pub struct Client {
    base: String,
    password: String,
    http: reqwest::Client,
    bearer: Mutex<Option<String>>,
    /// How many times the token endpoint was asked (to check the flow ran).
    pub token_requests: Mutex<usize>,
}

/// `key="value"` pairs of a challenge.
fn challenge_params(header: &str) -> Option<Vec<(String, String)>> {
    let rest = header.strip_prefix("Bearer ")?;
    let mut params = Vec::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let (value, after) = after.split_once('"')?;
        params.push((key.trim().to_string(), value.to_string()));
        rest = after.trim_start_matches(',').trim();
    }
    Some(params)
}

impl Client {
    pub fn new(base: &str, password: &str) -> Client {
        Client {
            base: base.to_string(),
            password: password.to_string(),
            http: reqwest::Client::new(),
            bearer: Mutex::new(None),
            token_requests: Mutex::new(0),
        }
    }

    /// Sends `build()`, doing the token dance once on a 401.
    pub async fn send(&self, build: impl Fn(&reqwest::Client, &str) -> RequestBuilder) -> Response {
        let url = self.base.as_str();
        let with_auth = |rb: RequestBuilder| match self.bearer.lock().clone() {
            Some(token) => rb.bearer_auth(token),
            None => rb,
        };
        let response = with_auth(build(&self.http, url))
            .send()
            .await
            .expect("send");
        if response.status() != StatusCode::UNAUTHORIZED {
            return response;
        }
        let Some(params) = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .and_then(challenge_params)
        else {
            return response;
        };
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .expect("realm in challenge");
        let query: Vec<(String, String)> =
            params.into_iter().filter(|(k, _)| k != "realm").collect();
        *self.token_requests.lock() += 1;
        let token_response = self
            .http
            .get(&realm)
            .query(&query)
            .basic_auth("client", Some(&self.password))
            .send()
            .await
            .expect("token request");
        if !token_response.status().is_success() {
            return token_response;
        }
        let body: serde_json::Value = token_response.json().await.expect("token json");
        let token = body["token"]
            .as_str()
            .or_else(|| body["access_token"].as_str())
            .expect("token in answer")
            .to_string();
        *self.bearer.lock() = Some(token);
        with_auth(build(&self.http, url))
            .send()
            .await
            .expect("send")
    }

    pub async fn blob_exists(&self, repo: &str, digest: &str) -> bool {
        let response = self
            .send(|h, b| h.head(format!("{b}/v2/{repo}/blobs/{digest}")))
            .await;
        response.status() == StatusCode::OK
    }

    /// Pushes a blob unless present: POST a session, then PUT the whole blob with its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = digest_of(data);
        if self.blob_exists(repo, &digest).await {
            return digest;
        }
        let response = self
            .send(|h, b| h.post(format!("{b}/v2/{repo}/blobs/uploads/")))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "start upload");
        let location = self.location(&response);
        let sep = if location.contains('?') { '&' } else { '?' };
        let response = self
            .send(|h, _| {
                h.put(format!("{location}{sep}digest={digest}"))
                    .header("content-type", "application/octet-stream")
                    .body(data.to_vec())
            })
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "finish upload");
        assert_eq!(header(&response, "docker-content-digest"), digest);
        digest
    }

    /// Pushes a blob in chunks (PATCH with Content-Range), then an empty PUT.
    pub async fn push_blob_chunked(&self, repo: &str, data: &[u8], chunk: usize) -> String {
        let digest = digest_of(data);
        let response = self
            .send(|h, b| h.post(format!("{b}/v2/{repo}/blobs/uploads/")))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let mut location = self.location(&response);
        for (i, part) in data.chunks(chunk).enumerate() {
            let start = i * chunk;
            let end = start + part.len() - 1;
            let response = self
                .send(|h, _| {
                    h.patch(&location)
                        .header("content-type", "application/octet-stream")
                        .header("content-range", format!("{start}-{end}"))
                        .body(part.to_vec())
                })
                .await;
            assert_eq!(response.status(), StatusCode::ACCEPTED, "chunk {i}");
            assert_eq!(header(&response, "range"), format!("0-{end}"));
            location = self.location(&response);
        }
        let sep = if location.contains('?') { '&' } else { '?' };
        let response = self
            .send(|h, _| h.put(format!("{location}{sep}digest={digest}")))
            .await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "finish chunked upload"
        );
        digest
    }

    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Response {
        self.send(|h, b| {
            h.put(format!("{b}/v2/{repo}/manifests/{reference}"))
                .header("content-type", media_type)
                .body(bytes.to_vec())
        })
        .await
    }

    /// Pushes every blob of `image`, then its manifest under `tag`.
    pub async fn push_image(&self, repo: &str, tag: &str, image: &TestImage) -> String {
        for blob in image.blobs() {
            self.push_blob(repo, blob).await;
        }
        let response = self
            .push_manifest(repo, tag, image.media_type, &image.manifest)
            .await;
        let status = response.status();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{}",
            response.text().await.unwrap_or_default()
        );
        header(&response, "docker-content-digest")
    }

    /// `(media type, bytes, Docker-Content-Digest)`.
    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<(String, Vec<u8>, String), Response> {
        let response = self
            .send(|h, b| {
                h.get(format!("{b}/v2/{repo}/manifests/{reference}"))
                    .header("accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json")
            })
            .await;
        if response.status() != StatusCode::OK {
            return Err(response);
        }
        let media_type = header(&response, "content-type");
        let digest = header(&response, "docker-content-digest");
        let bytes = response.bytes().await.expect("manifest body").to_vec();
        Ok((media_type, bytes, digest))
    }

    pub async fn get_blob(&self, repo: &str, digest: &str) -> Result<Vec<u8>, Response> {
        let response = self
            .send(|h, b| h.get(format!("{b}/v2/{repo}/blobs/{digest}")))
            .await;
        if response.status() != StatusCode::OK {
            return Err(response);
        }
        let bytes = response.bytes().await.expect("blob body").to_vec();
        assert_eq!(digest_of(&bytes), digest, "blob content matches its digest");
        Ok(bytes)
    }

    /// Pulls an image by tag and checks every blob against the manifest.
    pub async fn pull_image(&self, repo: &str, tag: &str) -> TestImage {
        let (media_type, manifest, digest) = self.get_manifest(repo, tag).await.expect("manifest");
        assert_eq!(digest, digest_of(&manifest));
        let parsed: serde_json::Value = serde_json::from_slice(&manifest).expect("manifest json");
        let config_digest = parsed["config"]["digest"].as_str().expect("config");
        let config = self
            .get_blob(repo, config_digest)
            .await
            .expect("config blob");
        let mut layers = Vec::new();
        for layer in parsed["layers"].as_array().expect("layers") {
            let d = layer["digest"].as_str().expect("digest");
            layers.push(self.get_blob(repo, d).await.expect("layer blob"));
        }
        TestImage {
            config,
            layers,
            manifest,
            media_type: if media_type == super::DOCKER_MANIFEST {
                super::DOCKER_MANIFEST
            } else {
                super::OCI_MANIFEST
            },
        }
    }

    pub async fn request(&self, method: Method, path: &str) -> Response {
        self.send(|h, b| h.request(method.clone(), format!("{b}{path}")))
            .await
    }

    fn location(&self, response: &Response) -> String {
        let location = header(response, "location");
        if location.starts_with("http") {
            location
        } else {
            format!("{}{location}", self.base)
        }
    }
}

pub fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}
