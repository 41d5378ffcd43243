//! Each host's own credential against a control plane with scripted fake agents: issued once
//! per host id, the only thing that reads secrets and volume keys, and only those of the
//! host's own machines and volumes — including while a create is still being placed on it.

use aloft_control::{ControlPlane, ControlPlaneConfig};
use aloft_types::api::HostInfo;
use axum::Router;
use axum::extract::State;
use axum::routing::{any, post};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::sync::Arc;

const INTERNAL_TOKEN: &str = "internal-secret";

/// A fake agent: while it creates a machine it asks the control plane for the app's secrets
/// with its host's credential, as a real agent starting the machine does.
#[derive(Clone, Default)]
struct Fake {
    /// The control plane's URL and this host's credential, once known.
    reader: Arc<Mutex<Option<(String, String)>>>,
    /// What the read during the create answered: status and body.
    read_during_create: Arc<Mutex<Option<(u16, Value)>>>,
}

async fn fake_create(State(f): State<Fake>) -> axum::Json<Value> {
    let reader = f.reader.lock().clone();
    if let Some((cp, credential)) = reader {
        let resp = reqwest::Client::new()
            .get(format!("{cp}/internal/v1/apps/web/secrets"))
            .bearer_auth(credential)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        *f.read_during_create.lock() = Some((status, body));
    }
    axum::Json(
        json!({"id": "0123456789abcd", "name": "m", "state": "started",
        "created_at": "2024-01-01T00:00:00Z"}),
    )
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

async fn fake_agent() -> (Fake, String) {
    let fake = Fake::default();
    let router = Router::new()
        .route("/v1/apps/{app}/machines", post(fake_create))
        .route(
            "/internal/v1/volumes/{id}",
            any(|| async { axum::Json(json!({})) }),
        )
        .with_state(fake.clone());
    (fake, serve(router).await)
}

fn host(id: &str, address: &str, memory_mb: u64) -> HostInfo {
    HostInfo {
        id: id.into(),
        region: "local".into(),
        address: address.into(),
        runtime: "fake".into(),
        cpus: 8,
        memory_mb,
        allocated_cpus: 0,
        allocated_memory_mb: 0,
    }
}

async fn send(rb: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Asks for a host credential with the cluster secret.
async fn issue(url: &str, host: &str) -> (u16, Value) {
    send(
        reqwest::Client::new()
            .post(format!("{url}/internal/v1/hosts/{host}/credential"))
            .bearer_auth(INTERNAL_TOKEN),
    )
    .await
}

async fn read(url: &str, path: &str, bearer: &str) -> (u16, Value) {
    send(
        reqwest::Client::new()
            .get(format!("{url}{path}"))
            .bearer_auth(bearer),
    )
    .await
}

/// Host `a` (no room, so nothing is placed there) and host `b` (room), both registered, and
/// the app `web` with a secret.
async fn cluster() -> (tempfile::TempDir, String, String, Fake, String) {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::open(ControlPlaneConfig {
        data_dir: dir.path().join("cp"),
        internal_token: INTERNAL_TOKEN.into(),
        default_region: "local".into(),
        hostnames: Default::default(),
    })
    .await
    .unwrap();
    cp.ensure_org("personal").await.unwrap();
    let token = cp.create_token("personal", "ci-bot").await.unwrap();
    let url = serve(cp.router()).await;
    let http = reqwest::Client::new();
    let (_, a_url) = fake_agent().await;
    let (b, b_url) = fake_agent().await;
    for info in [host("a", &a_url, 1), host("b", &b_url, 8192)] {
        let (status, body) = send(
            http.post(format!("{url}/internal/v1/hosts"))
                .bearer_auth(INTERNAL_TOKEN)
                .json(&info),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = send(
        http.post(format!("{url}/v1/apps"))
            .bearer_auth(&token)
            .json(&json!({"app_name": "web"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = send(
        http.post(format!("{url}/v1/apps/web/secrets"))
            .bearer_auth(&token)
            .json(&json!({"secrets": {"DATABASE_URL": "postgres://secret"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (dir, url, token, b, b_url)
}

/// A host id's credential is given once: a second process claiming the id gets a 409 and no
/// credential; the cluster secret is needed to ask.
#[tokio::test]
async fn a_host_credential_is_issued_once_per_host_id() {
    let (_dir, url, token, _b, _) = cluster().await;
    let (status, body) = issue(&url, "b").await;
    assert_eq!(status, 201, "{body}");
    let credential = body["credential"].as_str().unwrap();
    assert!(credential.starts_with("aloft_host_"), "{credential}");
    let (status, body) = issue(&url, "b").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.get("credential").is_none(), "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("host-credential"),
        "the refusal names the file to restore: {body}"
    );
    let (status, _) = send(
        reqwest::Client::new()
            .post(format!("{url}/internal/v1/hosts/c/credential"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 401, "an org token does not get a host credential");
}

/// Secrets: the host a machine is placed on reads them (also while the create is still being
/// forwarded, before the index has the machine); another host and the cluster secret do not.
#[tokio::test]
async fn a_host_reads_only_its_own_machines_secrets() {
    let (_dir, url, token, b, _) = cluster().await;
    let a = issue(&url, "a").await.1["credential"]
        .as_str()
        .unwrap()
        .to_string();
    let b_credential = issue(&url, "b").await.1["credential"]
        .as_str()
        .unwrap()
        .to_string();
    let path = "/internal/v1/apps/web/secrets";
    // Nothing of web's is on b yet.
    let (status, body) = read(&url, path, &b_credential).await;
    assert_eq!(status, 403, "{body}");

    *b.reader.lock() = Some((url.clone(), b_credential.clone()));
    let (status, body) = send(
        reqwest::Client::new()
            .post(format!("{url}/v1/apps/web/machines"))
            .bearer_auth(&token)
            .json(&json!({"config": {"image": "hello"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let during = b.read_during_create.lock().clone().unwrap();
    assert_eq!(
        during.0, 200,
        "the host starting the machine reads: {}",
        during.1
    );
    assert_eq!(during.1["DATABASE_URL"], "postgres://secret");

    let (status, body) = read(&url, path, &b_credential).await;
    assert_eq!(
        (status, &body["DATABASE_URL"]),
        (200, &json!("postgres://secret"))
    );
    let (status, body) = read(&url, path, &a).await;
    assert_eq!(status, 403, "host a runs nothing of web's: {body}");
    assert!(body.to_string().contains("no machine of app"), "{body}");
    let (status, body) = read(&url, path, INTERNAL_TOKEN).await;
    assert_eq!(
        status, 403,
        "the cluster secret alone reads no secrets: {body}"
    );
    assert!(body.to_string().contains("host-credential"), "{body}");
    let (status, _) = read(&url, path, "aloft_host_0000").await;
    assert_eq!(status, 401);

    // Revoked (to rotate it): the old credential stops at once, and the id gets a new one.
    let revoke = |bearer: &str| {
        reqwest::Client::new()
            .delete(format!("{url}/internal/v1/hosts/b/credential"))
            .bearer_auth(bearer.to_string())
    };
    let (status, _) = send(revoke(&token)).await;
    assert_eq!(status, 401, "an org token revokes nothing");
    let (status, body) = send(revoke(INTERNAL_TOKEN)).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = read(&url, path, &b_credential).await;
    assert_eq!(status, 401, "a revoked credential reads nothing: {body}");
    let (status, body) = issue(&url, "b").await;
    assert_eq!(status, 201, "{body}");
    let rotated = body["credential"].as_str().unwrap();
    assert_ne!(rotated, b_credential);
    let (status, _) = read(&url, path, rotated).await;
    assert_eq!(status, 200);
    let (status, _) = send(revoke(INTERNAL_TOKEN)).await;
    assert_eq!(status, 204);
    let (status, body) = send(revoke(INTERNAL_TOKEN)).await;
    assert_eq!(status, 404, "nothing left to revoke: {body}");
}

/// Volume keys: only the volume's host reads its key.
#[tokio::test]
async fn a_host_reads_only_its_own_volumes_keys() {
    let (_dir, url, token, _b, _) = cluster().await;
    let a = issue(&url, "a").await.1["credential"]
        .as_str()
        .unwrap()
        .to_string();
    let b = issue(&url, "b").await.1["credential"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, volume) = send(
        reqwest::Client::new()
            .post(format!("{url}/v1/apps/web/volumes"))
            .bearer_auth(&token)
            .json(&json!({"name": "data", "region": "local"})),
    )
    .await;
    assert_eq!(status, 201, "{volume}");
    let path = format!("/internal/v1/volumes/{}", volume["id"].as_str().unwrap());
    let (status, body) = read(&url, &path, &b).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["key"].as_str().is_some_and(|k| !k.is_empty()),
        "{body}"
    );
    let (status, body) = read(&url, &path, &a).await;
    assert_eq!(status, 403, "b's volume key is not a's: {body}");
    let (status, body) = read(&url, &path, INTERNAL_TOKEN).await;
    assert_eq!(
        status, 403,
        "the cluster secret alone reads no keys: {body}"
    );
}
