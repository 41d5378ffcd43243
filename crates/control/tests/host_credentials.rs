//! Each host's own credential against a control plane with scripted fake agents: got once per
//! host id for a one-time join token, acting only as its own host, the only thing that reads
//! secrets and volume keys, and only those of the host's own machines and volumes — including
//! while a create is still being placed on it. The control plane calls each agent with that
//! host's own agent key, never the cluster secret.

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
    /// The `Authorization` the control plane sent with the create.
    authorization: Arc<Mutex<Option<String>>>,
}

async fn fake_create(State(f): State<Fake>, headers: axum::http::HeaderMap) -> axum::Json<Value> {
    *f.authorization.lock() = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
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

/// `POST /internal/v1/join-tokens` with `bearer` and `body`.
async fn join_token(url: &str, bearer: &str, body: Value) -> (u16, Value) {
    send(
        reqwest::Client::new()
            .post(format!("{url}/internal/v1/join-tokens"))
            .bearer_auth(bearer)
            .json(&body),
    )
    .await
}

/// `POST /internal/v1/hosts/{host}/join` with the join token `token`.
async fn join(url: &str, host: &str, token: &str) -> (u16, Value) {
    send(
        reqwest::Client::new()
            .post(format!("{url}/internal/v1/hosts/{host}/join"))
            .bearer_auth(token),
    )
    .await
}

/// Joins `host` as an operator would have it: a join token for it, traded by the host.
async fn issue(url: &str, host: &str) -> (u16, Value) {
    let (status, made) = join_token(url, INTERNAL_TOKEN, json!({"host": host})).await;
    assert_eq!(status, 201, "{made}");
    join(url, host, made["token"].as_str().unwrap()).await
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
            .json(&json!({"values": {"DATABASE_URL": "postgres://secret"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (dir, url, token, b, b_url)
}

/// A join token is made only with the cluster secret, is used up by the one join that
/// succeeds, works only for the host id it names and only until it expires; a host id joins
/// once (409 after, naming the file to restore).
#[tokio::test]
async fn a_host_joins_once_with_a_one_time_join_token() {
    let (_dir, url, token, _b, _) = cluster().await;
    let (status, _) = join_token(&url, &token, json!({})).await;
    assert_eq!(status, 401, "an org token makes no join token");
    for bad in [
        json!({"expires_in": "8d"}),
        json!({"expires_in": "soon"}),
        json!({"host": "A/B"}),
        json!({"hots": "b"}),
    ] {
        let (status, body) = join_token(&url, INTERNAL_TOKEN, bad.clone()).await;
        assert!(status == 422 || status == 400, "{bad}: {status} {body}");
    }

    let (status, made) = join_token(&url, INTERNAL_TOKEN, json!({"host": "b"})).await;
    assert_eq!(status, 201, "{made}");
    let for_b = made["token"].as_str().unwrap().to_string();
    assert!(for_b.starts_with("aloft_join_"), "{made}");
    let (status, body) = join(&url, "c", &for_b).await;
    assert_eq!(status, 403, "a token for b does not join c: {body}");
    let (status, joined) = join(&url, "b", &for_b).await;
    assert_eq!(status, 201, "the token still works for b: {joined}");
    let credential = joined["credential"].as_str().unwrap();
    assert!(credential.starts_with("aloft_host_"), "{credential}");
    let keys = aloft_control::derive_host_keys(INTERNAL_TOKEN, "b");
    assert_eq!(joined["keys"]["agent"], keys.agent);
    assert_eq!(joined["keys"]["peer"], keys.peer);
    assert_eq!(joined["keys"]["gossip"], keys.gossip);
    assert!(
        !joined.to_string().contains(INTERNAL_TOKEN),
        "the cluster secret is not handed out"
    );
    let (status, body) = join(&url, "b", &for_b).await;
    assert_eq!(status, 401, "a used token joins nothing: {body}");

    let (status, body) = issue(&url, "b").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.get("credential").is_none(), "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("host-credential.json"),
        "the refusal names the file to restore: {body}"
    );

    let (_, any) = join_token(&url, INTERNAL_TOKEN, json!({"expires_in": "30m"})).await;
    let (status, c) = join(&url, "c", any["token"].as_str().unwrap()).await;
    assert_eq!(status, 201, "a token naming no host joins any new id: {c}");
    assert_ne!(
        c["keys"]["agent"], joined["keys"]["agent"],
        "agent keys are per host"
    );
    assert_eq!(c["keys"]["peer"], joined["keys"]["peer"]);

    let (_, short) = join_token(&url, INTERNAL_TOKEN, json!({"expires_in": "1ms"})).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (status, body) = join(&url, "d", short["token"].as_str().unwrap()).await;
    assert_eq!(status, 401, "an expired token joins nothing: {body}");
    let (status, _) = join(&url, "d", INTERNAL_TOKEN).await;
    assert_eq!(status, 401, "the cluster secret is not a join token");
}

/// A host's credential acts for its own host only (its number, heartbeats, the mesh), and
/// opens none of the operator's endpoints.
#[tokio::test]
async fn a_host_credential_acts_only_as_its_host() {
    let (_dir, url, _token, _b, _) = cluster().await;
    let b = issue(&url, "b").await.1["credential"]
        .as_str()
        .unwrap()
        .to_string();
    let http = reqwest::Client::new();
    let post = |path: &str| http.post(format!("{url}{path}")).bearer_auth(&b);
    let (status, body) = send(post("/internal/v1/hosts/b/number")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(post("/internal/v1/hosts/a/number")).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) =
        send(post("/internal/v1/hosts").json(&host("b", "http://127.0.0.1:1", 64))).await;
    assert_eq!(status, 200, "its own heartbeat: {body}");
    let (status, body) = send(post("/internal/v1/hosts").json(&host("a", "http://evil", 64))).await;
    assert_eq!(status, 403, "not another host's heartbeat: {body}");
    let mesh = json!({"public_key": format!("{}=", "A".repeat(43)), "endpoint": "10.0.0.9:51820"});
    let (status, body) = send(
        http.put(format!("{url}/internal/v1/mesh/a"))
            .bearer_auth(&b)
            .json(&mesh),
    )
    .await;
    assert_eq!(status, 403, "not another host's mesh entry: {body}");
    let (status, _) = send(http.get(format!("{url}/internal/v1/mesh")).bearer_auth(&b)).await;
    assert_eq!(status, 200);
    let (status, body) =
        send(post("/internal/v1/tokens/verify").json(&json!({"token": "x"}))).await;
    assert_eq!(
        status, 404,
        "a host checks tokens for its registry cache: {body}"
    );
    for (path, body) in [
        ("/internal/v1/orgs", json!({"slug": "evil"})),
        ("/internal/v1/join-tokens", json!({})),
    ] {
        let (status, reply) = send(post(path).json(&body)).await;
        assert_eq!(status, 401, "{path} is the operator's: {reply}");
    }
    let (status, _) = send(http.get(format!("{url}/internal/v1/hosts")).bearer_auth(&b)).await;
    assert_eq!(status, 401, "listing hosts is the operator's");
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
    let keys = aloft_control::derive_host_keys(INTERNAL_TOKEN, "b");
    assert_eq!(
        b.authorization.lock().clone(),
        Some(format!("Bearer {}", keys.agent)),
        "the control plane calls b's agent with b's own agent key"
    );

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

    // Revoked (to rotate it): the old credential stops at once, and the id joins again.
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
