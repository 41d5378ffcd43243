//! Test harness: registries on 127.0.0.1:0 with temp data dirs, a request log for upstreams,
//! a proxy that can cut connections, random images, and a small distribution client.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod client;

use aloft_registry::{Registry, RegistryConfig, StaticTokens};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use parking_lot::Mutex;
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const ACME_TOKEN: &str = "acme-token";
pub const OTHER_TOKEN: &str = "other-token";
pub const BROKEN_ORG_TOKEN: &str = "broken-org-token";

pub fn tokens() -> Arc<StaticTokens> {
    Arc::new(StaticTokens::new([
        (ACME_TOKEN, "acme"),
        ("acme-token-2", "acme"),
        (OTHER_TOKEN, "other"),
        // An authority bug: an org that is no name component must never reach the store.
        (BROKEN_ORG_TOKEN, "../escape"),
    ]))
}

pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Requests an upstream received: `(method, path)`.
#[derive(Clone, Default)]
pub struct RequestLog {
    entries: Arc<Mutex<Vec<(String, String)>>>,
    /// Delay before answering a blob GET, so that concurrent requests overlap.
    blob_delay_ms: Arc<AtomicU64>,
}

impl RequestLog {
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.entries
            .lock()
            .iter()
            .filter(|(m, p)| m == method && p.contains(path_contains))
            .count()
    }

    pub fn set_blob_delay(&self, delay: Duration) {
        self.blob_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

async fn record(State(log): State<RequestLog>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    log.entries.lock().push((method.clone(), path.clone()));
    let delay = log.blob_delay_ms.load(Ordering::SeqCst);
    if method == "GET" && path.contains("/blobs/sha256:") && delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    next.run(request).await
}

/// A registry served on a loopback port.
pub struct TestRegistry {
    pub registry: Registry,
    pub url: String,
    pub addr: std::net::SocketAddr,
    pub log: RequestLog,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    server: JoinHandle<()>,
}

impl TestRegistry {
    pub async fn start() -> TestRegistry {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut RegistryConfig)) -> TestRegistry {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut registry = Self::start_in(tmp.path(), adjust).await;
        registry._tmp = Some(tmp);
        registry
    }

    /// A registry over an existing data dir (to reopen after a "crash").
    pub async fn start_in(dir: &Path, adjust: impl FnOnce(&mut RegistryConfig)) -> TestRegistry {
        Self::serve(dir, adjust, tokens()).await
    }

    /// A registry that checks tokens in `tokens` (which the test can revoke from).
    pub async fn start_with_tokens(tokens: Arc<StaticTokens>) -> TestRegistry {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut registry = Self::serve(tmp.path(), |_| {}, tokens).await;
        registry._tmp = Some(tmp);
        registry
    }

    async fn serve(
        dir: &Path,
        adjust: impl FnOnce(&mut RegistryConfig),
        tokens: Arc<StaticTokens>,
    ) -> TestRegistry {
        let mut config = RegistryConfig::new(dir);
        adjust(&mut config);
        let registry = Registry::open(config, tokens).await.expect("open registry");
        let log = RequestLog::default();
        let app = registry
            .router()
            .layer(axum::middleware::from_fn_with_state(log.clone(), record));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        TestRegistry {
            registry,
            url: format!("http://{addr}"),
            addr,
            log,
            dir: dir.to_path_buf(),
            _tmp: None,
            server,
        }
    }

    pub fn client(&self, token: &str) -> client::Client {
        client::Client::new(&self.url, token)
    }

    /// A plain HTTP client with Basic auth for `token` (raw requests).
    pub fn raw(&self, token: &str) -> Raw {
        Raw {
            base: self.url.clone(),
            token: token.to_string(),
            http: reqwest::Client::new(),
        }
    }

    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir.join("blobs/sha256").join(&hex[..2]).join(hex)
    }

    pub fn upload_dirs(&self) -> usize {
        std::fs::read_dir(self.dir.join("uploads"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn stop(&self) {
        self.server.abort();
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Raw requests against a registry with Basic auth.
pub struct Raw {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Raw {
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .basic_auth("x", Some(&self.token))
    }

    pub fn anon(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }
}

/// The spec error code of a response body.
pub async fn error_code(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let code = body["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let message = body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (status, code, message)
}

/// Deterministic pseudo-random bytes (xorshift), so layers do not compress away.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An image: config and layers as blobs, and a manifest referencing them.
#[derive(Clone)]
pub struct TestImage {
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
    pub media_type: &'static str,
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

impl TestImage {
    /// An OCI image with layers of the given sizes.
    pub fn oci(seed: u64, layer_sizes: &[usize]) -> TestImage {
        Self::build(seed, layer_sizes, false)
    }

    /// A Docker schema2 image.
    pub fn docker(seed: u64, layer_sizes: &[usize]) -> TestImage {
        Self::build(seed, layer_sizes, true)
    }

    fn build(seed: u64, layer_sizes: &[usize], docker: bool) -> TestImage {
        let layers: Vec<Vec<u8>> = layer_sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| random_bytes(seed * 100 + i as u64, size))
            .collect();
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux", "seed": seed,
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| digest_of(l)).collect::<Vec<_>>()},
        })
        .to_string()
        .into_bytes();
        let (media_type, config_type, layer_type) = if docker {
            (
                DOCKER_MANIFEST,
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            )
        } else {
            (
                OCI_MANIFEST,
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        };
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": config_type, "digest": digest_of(&config), "size": config.len()},
            "layers": layers.iter().map(|l| serde_json::json!({
                "mediaType": layer_type, "digest": digest_of(l), "size": l.len()
            })).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes();
        TestImage {
            config,
            layers,
            manifest,
            media_type,
        }
    }

    pub fn digest(&self) -> String {
        digest_of(&self.manifest)
    }

    pub fn blobs(&self) -> Vec<&Vec<u8>> {
        std::iter::once(&self.config).chain(&self.layers).collect()
    }
}

/// An index (or Docker list) over `children` (manifest bytes, media type).
pub fn index_of(children: &[&TestImage], media_type: &str) -> Vec<u8> {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": children.iter().enumerate().map(|(i, c)| serde_json::json!({
            "mediaType": c.media_type, "digest": c.digest(), "size": c.manifest.len(),
            "platform": {"architecture": if i == 0 { "amd64" } else { "arm64" }, "os": "linux"},
        })).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes()
}

/// Sets a file's modification time into the past (to age blobs for GC tests).
pub fn age_file(path: &Path, by: Duration) {
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open for aging");
    file.set_modified(std::time::SystemTime::now() - by)
        .expect("set mtime");
}

/// A TCP proxy in front of an upstream that can cut responses short or refuse connections.
pub struct FlakyProxy {
    pub url: String,
    /// Bytes of each upstream response passed on per connection; `u64::MAX` = all, 0 = refuse.
    limit: Arc<AtomicU64>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl FlakyProxy {
    pub async fn start(upstream: std::net::SocketAddr) -> FlakyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let limit = Arc::new(AtomicU64::new(u64::MAX));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let acceptor = {
            let (limit, connections) = (limit.clone(), connections.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let cap = limit.load(Ordering::SeqCst);
                    if cap == 0 {
                        drop(client);
                        continue;
                    }
                    let task = tokio::spawn(proxy_connection(client, upstream, cap));
                    connections.lock().push(task);
                }
            })
        };
        FlakyProxy {
            url,
            limit,
            connections,
            acceptor,
        }
    }

    fn set(&self, limit: u64) {
        self.limit.store(limit, Ordering::SeqCst);
        for task in self.connections.lock().drain(..) {
            task.abort();
        }
    }

    /// Pass everything.
    pub fn heal(&self) {
        self.set(u64::MAX);
    }

    /// Cut every response after `bytes` bytes.
    pub fn truncate_after(&self, bytes: u64) {
        self.set(bytes);
    }

    /// Close every connection at once.
    pub fn go_down(&self) {
        self.set(0);
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.set(0);
    }
}

async fn proxy_connection(client: TcpStream, upstream: std::net::SocketAddr, cap: u64) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream_bound = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    let mut passed = 0u64;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match server_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let allowed = (cap - passed).min(n as u64) as usize;
        if client_write.write_all(&buf[..allowed]).await.is_err() {
            break;
        }
        passed += allowed as u64;
        if passed >= cap {
            break;
        }
    }
    upstream_bound.abort();
}
