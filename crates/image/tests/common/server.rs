//! A tiny read-only registry for tests and benchmarks: serves one OCI layout directory as one
//! repository over the distribution API GETs a pull needs (`/v2/`, manifests by tag or digest,
//! blobs), with optional Basic auth or a Docker bearer-token challenge, a request counter per
//! path, and failure injection (drop the connection in the middle of a blob; go away for good).

#![allow(dead_code)] // each test binary uses a different part

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// How the registry authenticates.
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    /// `WWW-Authenticate: Basic`; these credentials on every request.
    Basic(String, String),
    /// `WWW-Authenticate: Bearer realm=<addr>/token`; the token endpoint wants these Basic
    /// credentials and hands out a random token.
    Bearer(String, String),
}

pub struct Shared {
    layout: PathBuf,
    repo: String,
    auth: Auth,
    addr: SocketAddr,
    requests: Mutex<HashMap<String, usize>>,
    tokens: Mutex<HashSet<String>>,
    fail_blobs: AtomicUsize,
    die_on_blob: AtomicBool,
    /// GETs of this blob wait while it is set.
    held: tokio::sync::watch::Sender<Option<String>>,
    gone: AtomicBool,
    accept_loop: Mutex<Option<tokio::task::AbortHandle>>,
}

/// A running test registry.
pub struct TestRegistry {
    shared: Arc<Shared>,
}

impl TestRegistry {
    /// Serves `layout` as repository `repo` on 127.0.0.1 (a free port).
    pub async fn start(layout: impl Into<PathBuf>, repo: &str, auth: Auth) -> TestRegistry {
        Self::start_on("127.0.0.1:0", layout, repo, auth).await
    }

    pub async fn start_on(
        addr: &str,
        layout: impl Into<PathBuf>,
        repo: &str,
        auth: Auth,
    ) -> TestRegistry {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let shared = Arc::new(Shared {
            layout: layout.into(),
            repo: repo.to_string(),
            auth,
            addr: listener.local_addr().unwrap(),
            requests: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashSet::new()),
            fail_blobs: AtomicUsize::new(0),
            die_on_blob: AtomicBool::new(false),
            held: tokio::sync::watch::Sender::new(None),
            gone: AtomicBool::new(false),
            accept_loop: Mutex::new(None),
        });
        let app = Router::new()
            .route("/v2/", get(ping))
            .route("/v2/{*rest}", get(dispatch))
            .route("/token", get(token))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        *shared.accept_loop.lock() = Some(task.abort_handle());
        TestRegistry { shared }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        self.shared.addr.to_string()
    }

    /// Requests seen for an exact path (`/v2/<repo>/blobs/<digest>`).
    pub fn requests(&self, path: &str) -> usize {
        self.shared.requests.lock().get(path).copied().unwrap_or(0)
    }

    /// GET requests for a blob.
    pub fn blob_gets(&self, digest: &str) -> usize {
        self.requests(&format!("/v2/{}/blobs/{digest}", self.shared.repo))
    }

    /// Total requests for blobs of any digest.
    pub fn all_blob_gets(&self) -> usize {
        let prefix = format!("/v2/{}/blobs/", self.shared.repo);
        self.shared
            .requests
            .lock()
            .iter()
            .filter(|(p, _)| p.starts_with(&prefix))
            .map(|(_, n)| n)
            .sum()
    }

    /// The next `n` blob GETs send half the blob, then drop the connection.
    pub fn fail_next_blobs(&self, n: usize) {
        self.shared.fail_blobs.store(n, Ordering::SeqCst);
    }

    /// The next blob GET sends half the blob, then the registry goes away for good.
    pub fn die_on_next_blob(&self) {
        self.shared.die_on_blob.store(true, Ordering::SeqCst);
    }

    /// GETs of blob `digest` wait (a slow registry) until [`TestRegistry::release_blobs`].
    pub fn hold_blob(&self, digest: &str) {
        self.shared.held.send_replace(Some(digest.to_string()));
    }

    /// Lets held blob GETs go on.
    pub fn release_blobs(&self) {
        self.shared.held.send_replace(None);
    }

    /// Stops accepting connections and breaks every answer from now on.
    pub fn stop(&self) {
        self.shared.go_away();
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.shared.go_away();
    }
}

impl Shared {
    fn go_away(&self) {
        self.gone.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept_loop.lock().take() {
            h.abort();
        }
    }

    fn count(&self, uri: &Uri) {
        *self
            .requests
            .lock()
            .entry(uri.path().to_string())
            .or_default() += 1;
    }

    fn basic_ok(&self, headers: &HeaderMap, user: &str, pass: &str) -> bool {
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            == Some(want.as_str())
    }

    /// `None` when the request may proceed, else the 401.
    fn check_auth(&self, headers: &HeaderMap) -> Option<Response> {
        let challenge = match &self.auth {
            Auth::None => return None,
            Auth::Basic(u, p) => {
                if self.basic_ok(headers, u, p) {
                    return None;
                }
                r#"Basic realm="test-registry""#.to_string()
            }
            Auth::Bearer(..) => {
                let given = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "));
                if given.is_some_and(|t| self.tokens.lock().contains(t)) {
                    return None;
                }
                format!(
                    r#"Bearer realm="http://{}/token",service="test-registry""#,
                    self.addr
                )
            }
        };
        let mut resp = (
            StatusCode::UNAUTHORIZED,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        )
            .into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&challenge).unwrap(),
        );
        Some(resp)
    }

    fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(self.layout.join("blobs/sha256").join(hex))
    }

    /// The descriptor `index.json` gives for a tag: (digest, media type).
    fn tag(&self, tag: &str) -> Option<(String, String)> {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.layout.join("index.json")).ok()?).ok()?;
        index["manifests"].as_array()?.iter().find_map(|d| {
            (d["annotations"][REF_NAME].as_str() == Some(tag)).then(|| {
                (
                    d["digest"].as_str().unwrap_or_default().to_string(),
                    d["mediaType"].as_str().unwrap_or(OCI_MANIFEST).to_string(),
                )
            })
        })
    }
}

fn broken() -> Response {
    Response::new(axum::body::Body::new(Broken { first: None }))
}

async fn ping(State(s): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    s.count(&uri);
    if s.gone.load(Ordering::SeqCst) {
        return broken();
    }
    if let Some(denied) = s.check_auth(&headers) {
        return denied;
    }
    (StatusCode::OK, "{}").into_response()
}

async fn token(State(s): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    s.count(&uri);
    let Auth::Bearer(u, p) = &s.auth else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !s.basic_ok(&headers, u, p) {
        return (StatusCode::UNAUTHORIZED, "bad credentials").into_response();
    }
    let token = format!("tok-{}", s.tokens.lock().len() + 1);
    s.tokens.lock().insert(token.clone());
    axum::Json(serde_json::json!({ "token": token })).into_response()
}

async fn dispatch(
    State(s): State<Arc<Shared>>,
    Path(rest): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    s.count(&uri);
    if s.gone.load(Ordering::SeqCst) {
        return broken();
    }
    if let Some(denied) = s.check_auth(&headers) {
        return denied;
    }
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            r#"{"errors":[{"code":"NOT_FOUND","message":"not found"}]}"#,
        )
            .into_response()
    };
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        if name != s.repo {
            return not_found();
        }
        let (digest, media_type) = if reference.starts_with("sha256:") {
            let Some(path) = s.blob_path(reference) else {
                return not_found();
            };
            let Ok(bytes) = std::fs::read(&path) else {
                return not_found();
            };
            let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["mediaType"].as_str().map(str::to_string))
                .unwrap_or_else(|| OCI_MANIFEST.to_string());
            (reference.to_string(), media_type)
        } else {
            match s.tag(reference) {
                Some(t) => t,
                None => return not_found(),
            }
        };
        let Some(bytes) = s.blob_path(&digest).and_then(|p| std::fs::read(p).ok()) else {
            return not_found();
        };
        let mut resp = (StatusCode::OK, bytes).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(&media_type).unwrap(),
        );
        h.insert(
            "docker-content-digest",
            HeaderValue::from_str(&digest).unwrap(),
        );
        return resp;
    }
    if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        if name != s.repo {
            return not_found();
        }
        let Some(bytes) = s.blob_path(digest).and_then(|p| std::fs::read(p).ok()) else {
            return not_found();
        };
        let _ = s
            .held
            .subscribe()
            .wait_for(|held| held.as_deref() != Some(digest))
            .await;
        let die = s.die_on_blob.swap(false, Ordering::SeqCst);
        let fail = s
            .fail_blobs
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if die || fail {
            if die {
                s.go_away();
            }
            let half = Bytes::from(bytes[..bytes.len() / 2].to_vec());
            let mut resp = Response::new(axum::body::Body::new(Broken { first: Some(half) }));
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            return resp;
        }
        let mut resp = (StatusCode::OK, bytes).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        return resp;
    }
    not_found()
}

/// A body that sends `first` (if any) and then fails, which makes the server drop the
/// connection in the middle of the response.
struct Broken {
    first: Option<Bytes>,
}

impl http_body::Body for Broken {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Poll::Ready(Some(match self.first.take() {
            Some(b) => Ok(http_body::Frame::data(b)),
            None => Err(std::io::Error::other(
                "injected failure: connection dropped",
            )),
        }))
    }
}
