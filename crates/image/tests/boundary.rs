//! Where the registry client sends credentials and where it may connect (issue 15, item 5):
//! capturing HTTP servers record the `Authorization` headers they receive.
//!
//! - a token realm on another host gets no credentials;
//! - a redirect to another host (a blob CDN) carries no `Authorization`, and still works;
//! - a redirect to a private address that is not allowed is refused before it is followed;
//! - a loopback, link-local or metadata registry that the operator did not allow is refused
//!   with a clear error, by literal address and by a name that resolves there.

mod common;

use aloft_image::{Credentials, ImageConfig, ImageError, ImageStore, Reference};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use common::server::{Auth, TestRegistry};
use common::*;
use parking_lot::Mutex;
use std::sync::Arc;

/// `(path, Authorization)` of every request a server received.
#[derive(Default)]
struct Seen(Mutex<Vec<(String, Option<String>)>>);

impl Seen {
    fn record(&self, uri: &Uri, headers: &HeaderMap) {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self.0.lock().push((uri.path().to_string(), auth));
    }

    fn all(&self) -> Vec<(String, Option<String>)> {
        self.0.lock().clone()
    }
}

async fn serve_on(addr: &str, app: Router) -> String {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    host
}

/// Forwards a GET to `backend` (a test registry without auth), keeping what a pull reads.
async fn forward(backend: &str, uri: &Uri, headers: &HeaderMap) -> Response {
    let mut req = reqwest::Client::new().get(format!("http://{backend}{uri}"));
    if let Some(accept) = headers.get(header::ACCEPT) {
        req = req.header(header::ACCEPT, accept.as_bytes());
    }
    let resp = req.send().await.unwrap();
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
    let mut out = axum::http::HeaderMap::new();
    for name in ["content-type", "docker-content-digest"] {
        if let Some(v) = resp.headers().get(name) {
            out.insert(name, v.as_bytes().try_into().unwrap());
        }
    }
    (status, out, resp.bytes().await.unwrap()).into_response()
}

/// A registry that wants Basic `alice:s3cret`, serves manifests from `backend` and redirects
/// every blob to `cdn` (another host).
struct Front {
    seen: Seen,
    backend: String,
    cdn: String,
}

const BASIC: &str = "Basic YWxpY2U6czNjcmV0"; // alice:s3cret

fn alice() -> Credentials {
    Credentials::Basic {
        username: "alice".into(),
        password: "s3cret".into(),
    }
}

async fn front(State(f): State<Arc<Front>>, uri: Uri, headers: HeaderMap) -> Response {
    f.seen.record(&uri, &headers);
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(BASIC)
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, r#"Basic realm="front""#)],
        )
            .into_response();
    }
    if uri.path() == "/v2/" {
        return (StatusCode::OK, "{}").into_response();
    }
    if uri.path().contains("/blobs/") {
        let to = format!("http://{}{}", f.cdn, uri.path());
        return (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response();
    }
    forward(&f.backend, &uri, &headers).await
}

/// A CDN: records, then serves the blob from the backend.
async fn cdn(
    State((seen, backend)): State<(Arc<Seen>, String)>,
    uri: Uri,
    h: HeaderMap,
) -> Response {
    seen.record(&uri, &h);
    forward(&backend, &uri, &h).await
}

/// Starts a backend registry with a three-layer image, a CDN on `cdn_addr` and the front.
async fn front_and_cdn(
    dir: &std::path::Path,
    cdn_addr: &str,
) -> (TestRegistry, Arc<Front>, Arc<Seen>) {
    let layout = dir.join("layout");
    three_layers("v1").write(&layout, "v1").unwrap();
    let backend = TestRegistry::start(&layout, REPO, Auth::None).await;
    let cdn_seen = Arc::new(Seen::default());
    let cdn_host = serve_on(
        cdn_addr,
        Router::new()
            .fallback(cdn)
            .with_state((cdn_seen.clone(), backend.host())),
    )
    .await;
    let f = Arc::new(Front {
        seen: Seen::default(),
        backend: backend.host(),
        cdn: cdn_host,
    });
    (backend, f, cdn_seen)
}

/// A blob redirect to another host (Docker Hub's CDN) is followed without `Authorization`,
/// and the pull works.
#[tokio::test]
async fn a_redirect_to_another_host_carries_no_authorization() {
    let t = tempfile::tempdir().unwrap();
    let (_backend, f, cdn_seen) = front_and_cdn(t.path(), "127.0.0.1:0").await;
    let host = serve_on(
        "127.0.0.1:0",
        Router::new().fallback(front).with_state(f.clone()),
    )
    .await;

    let image = store(&t.path().join("data"))
        .pull(&reference(&host, "v1"), &alice(), |_| {})
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(image.rootfs.join("app/version")).unwrap(),
        "v1"
    );
    let at_cdn = cdn_seen.all();
    assert_eq!(at_cdn.len(), 4, "config and three layers: {at_cdn:?}");
    assert!(
        at_cdn.iter().all(|(_, auth)| auth.is_none()),
        "the CDN got no credentials: {at_cdn:?}"
    );
    assert!(
        f.seen
            .all()
            .iter()
            .any(|(_, a)| a.as_deref() == Some(BASIC)),
        "the registry itself got them"
    );
}

/// A redirect to a private address the operator did not allow (127.0.0.2 here; the metadata
/// endpoint in real life) is refused before anything is sent there.
#[tokio::test]
async fn a_redirect_to_a_private_address_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (_backend, f, cdn_seen) = front_and_cdn(t.path(), "127.0.0.2:0").await;
    let host = serve_on("127.0.0.1:0", Router::new().fallback(front).with_state(f)).await;

    // the test config allows 127.0.0.1 only
    let e = store(&t.path().join("data"))
        .pull(&reference(&host, "v1"), &alice(), |_| {})
        .await
        .unwrap_err();
    println!("{e}");
    assert!(matches!(e, ImageError::AddressRefused { .. }), "{e}");
    assert!(e.to_string().contains("127.0.0.2"), "{e}");
    assert!(
        cdn_seen.all().is_empty(),
        "nothing reached the private address"
    );
}

/// A `WWW-Authenticate: Bearer realm=` on another host is asked for an anonymous token: the
/// pull's credentials stay with the registry they are for.
#[tokio::test]
async fn a_realm_on_another_host_gets_no_credentials() {
    let realm_seen = Arc::new(Seen::default());
    let record = realm_seen.clone();
    let realm = serve_on(
        "127.0.0.1:0",
        Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let record = record.clone();
            async move {
                record.record(&uri, &headers);
                axum::Json(serde_json::json!({"token": "anonymous"}))
            }
        }),
    )
    .await;
    let challenge = format!(r#"Bearer realm="http://{realm}/token",service="x""#);
    let registry = serve_on(
        "127.0.0.1:0",
        Router::new().fallback(move || {
            let challenge = challenge.clone();
            async move {
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, challenge)],
                )
            }
        }),
    )
    .await;

    let t = tempfile::tempdir().unwrap();
    let e = store(t.path())
        .pull(&reference(&registry, "v1"), &alice(), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, ImageError::Unauthorized { .. }), "{e}");
    let seen = realm_seen.all();
    assert!(!seen.is_empty(), "the realm was asked");
    assert!(
        seen.iter().all(|(_, auth)| auth.is_none()),
        "no credentials went to the realm on another host: {seen:?}"
    );
}

/// A registry on loopback, link-local or a metadata address is refused unless the operator
/// allows it; aloft's own registry (the default one) always is.
#[tokio::test]
async fn private_registries_need_the_operators_permission() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    three_layers("v1").write(&layout, "v1").unwrap();
    let reg = TestRegistry::start(&layout, REPO, Auth::None).await;
    let port = reg.host().rsplit_once(':').unwrap().1.to_string();

    // the defaults: no private registry but the default one (127.0.0.1:5000)
    let strict = ImageStore::open(ImageConfig::new(t.path().join("strict"))).unwrap();
    for host in [
        reg.host(),
        format!("localhost:{port}"), // a name that resolves to loopback
        "169.254.169.254".to_string(),
        "[fd00:ec2::254]".to_string(),
        "10.0.0.1:5000".to_string(),
    ] {
        let r = Reference::parse(&format!("{host}/{REPO}:v1"), "unused", "personal").unwrap();
        let e = strict
            .pull(&r, &Credentials::None, |_| {})
            .await
            .unwrap_err();
        println!("{host}: {e}");
        assert!(
            matches!(e, ImageError::AddressRefused { .. }),
            "{host}: {e}"
        );
        assert!(e.to_string().contains("private_registries"), "{e}");
    }
    assert_eq!(reg.requests("/v2/"), 0, "the registry was never asked");

    // the default registry is aloft's own: always allowed
    let own = ImageStore::open(ImageConfig {
        default_registry: reg.host(),
        ..ImageConfig::new(t.path().join("own"))
    })
    .unwrap();
    own.pull(&reference(&reg.host(), "v1"), &Credentials::None, |_| {})
        .await
        .unwrap();
    // and an operator may allow others, by host or host:port
    let allowed = ImageStore::open(ImageConfig {
        private_registries: vec![format!("localhost:{port}")],
        ..ImageConfig::new(t.path().join("allowed"))
    })
    .unwrap();
    let r = Reference::parse(&format!("localhost:{port}/{REPO}:v1"), "unused", "personal").unwrap();
    allowed.pull(&r, &Credentials::None, |_| {}).await.unwrap();
}
