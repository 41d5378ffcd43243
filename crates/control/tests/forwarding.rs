//! The gateway's forwarding, against scripted fake agents (no real agent): the internal headers
//! (the caller's token for registry pulls included), byte-for-byte replies, placement retries,
//! unreachable hosts, partial listings, and the operators' host image endpoints.

use aloft_control::{ControlPlane, ControlPlaneConfig};
use aloft_types::api::HostInfo;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::sync::Arc;

const INTERNAL_TOKEN: &str = "internal-secret";

/// What a fake agent saw.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    uri: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Refuse creates with 503, as an agent without room does.
    full: bool,
    /// The id of the machine this agent creates and lists.
    machine_id: &'static str,
}

impl Fake {
    fn record(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) {
        self.seen.lock().push(Seen {
            method,
            uri: uri.to_string(),
            headers,
            body,
        });
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }
}

async fn fake_create(
    State(f): State<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    f.record(method, uri, headers, body);
    if f.full {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": "no room on this host"})),
        )
            .into_response();
    }
    axum::Json(
        json!({"id": f.machine_id, "name": format!("m-{}", f.machine_id), "state": "created",
        "created_at": "2024-01-01T00:00:00Z"}),
    )
    .into_response()
}

async fn fake_list(
    State(f): State<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> axum::response::Response {
    f.record(method, uri, headers, Bytes::new());
    // A machine the index does not know is left out of the merged list.
    axum::Json(json!([
        {"id": f.machine_id, "created_at": format!("2024-01-0{}T00:00:00Z", &f.machine_id[..1])},
        {"id": "ffffffffffffff", "created_at": "2020-01-01T00:00:00Z"}
    ]))
    .into_response()
}

/// Echoes the request in a reply with an unusual status and content type.
async fn fake_echo(
    State(f): State<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    f.record(method, uri, headers, body);
    (
        StatusCode::IM_A_TEAPOT,
        [("content-type", "text/x-echo; charset=utf-8")],
        "echo body \u{1F600}",
    )
        .into_response()
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

async fn fake_agent(full: bool, machine_id: &'static str) -> (Fake, String) {
    let fake = Fake {
        seen: Arc::default(),
        full,
        machine_id,
    };
    let router = Router::new()
        .route("/v1/apps/{app}/machines", get(fake_list).post(fake_create))
        .route("/v1/apps/{app}/machines/{id}", any(fake_echo))
        .route("/v1/apps/{app}/machines/{id}/{*rest}", any(fake_echo))
        .route("/internal/v1/images", any(fake_echo))
        .route("/internal/v1/images/prune", any(fake_echo))
        .with_state(fake.clone());
    let url = serve(router).await;
    (fake, url)
}

fn host(id: &str, region: &str, address: &str, memory_mb: u64) -> HostInfo {
    HostInfo {
        id: id.into(),
        region: region.into(),
        address: address.into(),
        runtime: "fake".into(),
        cpus: 8,
        memory_mb,
        allocated_cpus: 0,
        allocated_memory_mb: 0,
    }
}

/// A control plane with the org `personal` and a token, serving on a free port.
async fn control_plane() -> (tempfile::TempDir, ControlPlane, String, String) {
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
    let resp = http
        .post(format!("{url}/v1/apps"))
        .bearer_auth(&token)
        .json(&json!({"app_name": "web"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    (dir, cp, url, token)
}

async fn create(url: &str, token: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/apps/web/machines"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn requests_reach_the_agent_with_internal_headers_and_come_back_unchanged() {
    let (_d, cp, url, token) = control_plane().await;
    let (agent, agent_url) = fake_agent(false, "1a2b3c4d5e6f70").await;
    cp.register_host(host("local-1", "local", &agent_url, 4096))
        .await
        .unwrap();

    let create_body = json!({"config": {"image": "hello:latest"}, "name": "m-1a2b3c4d5e6f70"});
    let (status, machine) = create(&url, &token, create_body.clone()).await;
    assert_eq!(status, 200, "{machine}");
    assert_eq!(machine["id"], "1a2b3c4d5e6f70");
    let seen = agent.seen();
    let sent = &seen[0];
    assert_eq!(sent.uri, "/v1/apps/web/machines");
    assert_eq!(
        serde_json::from_slice::<Value>(&sent.body).unwrap(),
        create_body
    );
    let h = |name: &str| sent.headers.get(name).and_then(|v| v.to_str().ok());
    let agent_key = aloft_control::derive_host_keys(INTERNAL_TOKEN, "local-1");
    assert_eq!(
        h("authorization"),
        Some(format!("Bearer {}", agent_key.agent).as_str()),
        "the host's own agent key, not the cluster secret"
    );
    assert_eq!(h("x-aloft-org"), Some("personal"));
    assert_eq!(h("x-aloft-network-id"), Some("1"));
    assert_eq!(h("x-aloft-actor"), Some("ci-bot"));
    assert_eq!(
        h("x-aloft-registry-token"),
        Some(token.as_str()),
        "the caller's own token goes along for registry pulls"
    );

    // Any sub-path, method, query, body and the lease nonce pass through; the reply comes back
    // with its status, content type and bytes.
    let resp = reqwest::Client::new()
        .post(format!(
            "{url}/v1/apps/web/machines/1a2b3c4d5e6f70/anything/new?x=1&y=%20z"
        ))
        .bearer_auth(&token)
        .header("fly-machine-lease-nonce", "nonce-123")
        .header("x-aloft-org", "spoofed")
        .header("x-aloft-registry-token", "someone-elses-token")
        .body("raw \u{0} bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 418);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/x-echo; charset=utf-8"
    );
    assert_eq!(resp.text().await.unwrap(), "echo body \u{1F600}");
    let seen = agent.seen();
    let sent = seen.last().unwrap();
    assert_eq!(sent.method, Method::POST);
    assert_eq!(
        sent.uri,
        "/v1/apps/web/machines/1a2b3c4d5e6f70/anything/new?x=1&y=%20z"
    );
    assert_eq!(&sent.body[..], "raw \u{0} bytes".as_bytes());
    let h = |name: &str| sent.headers.get(name).and_then(|v| v.to_str().ok());
    assert_eq!(h("fly-machine-lease-nonce"), Some("nonce-123"));
    assert_eq!(
        h("x-aloft-org"),
        Some("personal"),
        "caller headers must not override the gateway's"
    );
    let registry_tokens: Vec<_> = sent
        .headers
        .get_all("x-aloft-registry-token")
        .iter()
        .collect();
    assert_eq!(
        registry_tokens,
        [token.as_str()],
        "a client-supplied registry token is dropped"
    );

    // A machine id the index does not know is 404 without asking any agent.
    let before = agent.seen().len();
    let resp = reqwest::Client::new()
        .get(format!("{url}/v1/apps/web/machines/00000000000000"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(agent.seen().len(), before);
}

#[tokio::test]
async fn a_host_without_room_passes_the_create_to_the_next() {
    let (_d, cp, url, token) = control_plane().await;
    let (full, full_url) = fake_agent(true, "aaaaaaaaaaaaaa").await;
    let (roomy, roomy_url) = fake_agent(false, "bbbbbbbbbbbbbb").await;
    // The full host advertises more free memory, so it is asked first.
    cp.register_host(host("local-1", "local", &full_url, 65536))
        .await
        .unwrap();
    cp.register_host(host("local-2", "local", &roomy_url, 4096))
        .await
        .unwrap();
    let (status, m) = create(&url, &token, json!({"config": {"image": "x"}})).await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["id"], "bbbbbbbbbbbbbb");
    assert_eq!(full.seen().len(), 1);
    assert_eq!(roomy.seen().len(), 1);
}

#[tokio::test]
async fn every_host_refusing_is_503_with_their_reasons() {
    let (_d, cp, url, token) = control_plane().await;
    let (_full, full_url) = fake_agent(true, "aaaaaaaaaaaaaa").await;
    cp.register_host(host("local-1", "local", &full_url, 65536))
        .await
        .unwrap();
    cp.register_host(host("local-2", "local", "http://127.0.0.1:9", 4096))
        .await
        .unwrap();
    let (status, body) = create(&url, &token, json!({"config": {"image": "x"}})).await;
    assert_eq!(status, 503, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("local-1") && msg.contains("no room on this host") && msg.contains("local-2"),
        "{msg}"
    );
}

#[tokio::test]
async fn an_unreachable_agent_is_503_and_lists_are_partial() {
    let (_d, cp, url, token) = control_plane().await;
    let (_a, a_url) = fake_agent(false, "1aaaaaaaaaaaaa").await;
    let (_b, b_url) = fake_agent(false, "2bbbbbbbbbbbbb").await;
    cp.register_host(host("ord-1", "ord", &a_url, 4096))
        .await
        .unwrap();
    cp.register_host(host("ams-1", "ams", &b_url, 4096))
        .await
        .unwrap();
    for region in ["ord", "ams"] {
        let (status, m) = create(
            &url,
            &token,
            json!({"config": {"image": "x"}, "region": region}),
        )
        .await;
        assert_eq!(status, 200, "{m}");
    }
    let http = reqwest::Client::new();
    let list = || async {
        let resp = http
            .get(format!("{url}/v1/apps/web/machines?state=started"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let partial = resp
            .headers()
            .get("x-aloft-partial")
            .map(|v| v.to_str().unwrap().to_string());
        let body: Value = resp.json().await.unwrap();
        let ids: Vec<String> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect();
        (ids, partial)
    };
    // Merged, oldest first, machines the index does not know left out.
    assert_eq!(
        list().await,
        (vec!["1aaaaaaaaaaaaa".into(), "2bbbbbbbbbbbbb".into()], None)
    );

    // The ams agent goes away (its heartbeat now names a dead address).
    cp.register_host(host("ams-1", "ams", "http://127.0.0.1:9", 4096))
        .await
        .unwrap();
    assert_eq!(
        list().await,
        (vec!["1aaaaaaaaaaaaa".into()], Some("ams-1".into()))
    );
    let resp = http
        .post(format!("{url}/v1/apps/web/machines/2bbbbbbbbbbbbb/stop"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("ams-1") && msg.contains("check that its agent is running"),
        "{msg}"
    );
}

#[tokio::test]
async fn an_invalid_state_filter_is_422_even_without_machines() {
    let (_d, _cp, url, token) = control_plane().await;
    let resp = reqwest::Client::new()
        .get(format!("{url}/v1/apps/web/machines?state=started,sleeping"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["field"], "state");
    assert!(
        body["allowed"]
            .as_array()
            .unwrap()
            .contains(&json!("started"))
    );
}

#[tokio::test]
async fn internal_endpoints_need_the_internal_token() {
    let (_d, _cp, url, token) = control_plane().await;
    let http = reqwest::Client::new();
    for bearer in [Some(token.as_str()), Some("nope"), None] {
        let mut rb = http.post(format!("{url}/internal/v1/hosts")).json(&host(
            "x-1",
            "local",
            "http://127.0.0.1:1",
            1,
        ));
        if let Some(b) = bearer {
            rb = rb.bearer_auth(b);
        }
        assert_eq!(rb.send().await.unwrap().status(), 401);
    }
    let resp = http
        .post(format!("{url}/internal/v1/hosts"))
        .bearer_auth(INTERNAL_TOKEN)
        .json(&host("x-1", "local", "not a url", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    for bad in [
        json!({"slug": "Not A Slug"}),
        json!({"slug": "ok", "token_name": ""}),
    ] {
        let resp = http
            .post(format!("{url}/internal/v1/orgs"))
            .bearer_auth(INTERNAL_TOKEN)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 422, "{bad}");
    }
    let resp = http
        .post(format!("{url}/internal/v1/orgs"))
        .bearer_auth(INTERNAL_TOKEN)
        .json(&json!({"slug": "acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    let acme = body["token"].as_str().unwrap();
    assert!(acme.starts_with("aloft_") && acme.len() == 46, "{acme}");
    let resp = http
        .get(format!("{url}/v1/apps"))
        .bearer_auth(acme)
        .send()
        .await
        .unwrap();
    let apps: Value = resp.json().await.unwrap();
    assert_eq!(apps["total_apps"], 0, "acme sees none of personal's apps");
}

#[tokio::test]
async fn host_images_are_asked_of_the_host_with_its_agent_key() {
    let (_d, cp, url, token) = control_plane().await;
    let (agent, agent_url) = fake_agent(false, "1a2b3c4d5e6f70").await;
    cp.register_host(host("local-1", "local", &agent_url, 4096))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let paths = [
        (Method::GET, "/internal/v1/hosts"),
        (Method::GET, "/internal/v1/hosts/local-1/images"),
        (Method::POST, "/internal/v1/hosts/local-1/images/prune"),
    ];
    for (method, path) in &paths {
        for bearer in [Some(token.as_str()), Some("nope"), None] {
            let mut rb = http.request(method.clone(), format!("{url}{path}"));
            if let Some(b) = bearer {
                rb = rb.bearer_auth(b);
            }
            assert_eq!(rb.send().await.unwrap().status(), 401, "{method} {path}");
        }
    }
    assert!(agent.seen().is_empty(), "nothing reached the agent");

    let resp = http
        .get(format!("{url}/internal/v1/hosts"))
        .bearer_auth(INTERNAL_TOKEN)
        .send()
        .await
        .unwrap();
    let hosts: Value = resp.json().await.unwrap();
    assert_eq!(hosts[0]["id"], "local-1", "{hosts}");

    for (method, path, agent_path) in [
        (
            Method::GET,
            "/internal/v1/hosts/local-1/images",
            "/internal/v1/images",
        ),
        (
            Method::POST,
            "/internal/v1/hosts/local-1/images/prune",
            "/internal/v1/images/prune",
        ),
    ] {
        let resp = http
            .request(method.clone(), format!("{url}{path}"))
            .bearer_auth(INTERNAL_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 418, "the agent's answer as is");
        let seen = agent.seen();
        let sent = seen.last().unwrap();
        assert_eq!((&sent.method, sent.uri.as_str()), (&method, agent_path));
        let h = |name: &str| sent.headers.get(name).and_then(|v| v.to_str().ok());
        let key = aloft_control::derive_host_keys(INTERNAL_TOKEN, "local-1").agent;
        assert_eq!(h("authorization"), Some(format!("Bearer {key}").as_str()));
        assert_eq!(h("x-aloft-org"), None, "no caller, no org");
        assert_eq!(h("x-aloft-registry-token"), None);
    }

    let resp = http
        .get(format!("{url}/internal/v1/hosts/nope-9/images"))
        .bearer_auth(INTERNAL_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("local-1"),
        "{body}"
    );
}

async fn verify(url: &str, bearer: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/internal/v1/tokens/verify"))
        .bearer_auth(bearer)
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn tokens_can_be_verified_by_cluster_services() {
    let (_d, _cp, url, token) = control_plane().await;
    let resp = verify(&url, INTERNAL_TOKEN, &token).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"org": "personal"})
    );
    assert_eq!(
        verify(&url, INTERNAL_TOKEN, "aloft_nope").await.status(),
        404
    );
    // An org token cannot ask: only cluster services hold the internal token.
    assert_eq!(verify(&url, &token, &token).await.status(), 401);
}

/// Sends a request line exactly as written (HTTP clients would resolve `..` before sending) and
/// returns the status code.
async fn raw_get_status(base: &str, path: &str, token: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP reply: {reply}"))
}

#[tokio::test]
async fn a_machine_path_cannot_climb_to_another_machine() {
    let (_d, cp, url, token) = control_plane().await;
    let (agent, agent_url) = fake_agent(false, "1a2b3c4d5e6f70").await;
    cp.register_host(host("local-1", "local", &agent_url, 4096))
        .await
        .unwrap();
    let (status, _) = create(&url, &token, json!({"config": {"image": "x"}})).await;
    assert_eq!(status, 200);
    let before = agent.seen().len();
    for path in [
        "/v1/apps/web/machines/1a2b3c4d5e6f70/%2e%2e/%2E%2e/other/machines/ffffffffffffff",
        "/v1/apps/web/machines/1a2b3c4d5e6f70/../../other/machines/ffffffffffffff",
        "/v1/apps/web/machines/1a2b3c4d5e6f70/.%2e/x",
        "/v1/apps/web/machines/1a2b3c4d5e6f70/stop%5C..%5C..",
        "/v1/apps/web/machines/1a2b3c4d5e6f70//stop",
    ] {
        assert_eq!(raw_get_status(&url, path, &token).await, 400, "{path}");
    }
    assert_eq!(agent.seen().len(), before, "nothing reached the agent");
    assert_eq!(
        raw_get_status(&url, "/v1/apps/web/machines/1a2b3c4d5e6f70/events", &token).await,
        418
    );
}

#[tokio::test]
async fn an_app_is_kept_when_its_machines_cannot_be_destroyed() {
    let (_d, cp, url, token) = control_plane().await;
    let (_agent, agent_url) = fake_agent(false, "1a2b3c4d5e6f70").await;
    cp.register_host(host("local-1", "local", &agent_url, 4096))
        .await
        .unwrap();
    let (status, _) = create(&url, &token, json!({"config": {"image": "x"}})).await;
    assert_eq!(status, 200);
    cp.register_host(host("local-1", "local", "http://127.0.0.1:9", 4096))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let resp = http
        .delete(format!("{url}/v1/apps/web"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("was not deleted")
            && msg.contains("1a2b3c4d5e6f70")
            && msg.contains("local-1"),
        "{msg}"
    );
    let resp = http
        .get(format!("{url}/v1/apps/web"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let app: Value = resp.json().await.unwrap();
    assert_eq!(app["machine_count"], 1);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let (_d, _cp, url, token) = control_plane().await;
    let http = reqwest::Client::new();
    let resp = http
        .get(format!("{url}/v2/nothing"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("/v1/openapi.json"));
    let resp = http
        .put(format!("{url}/v1/apps"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("PUT"));
}
