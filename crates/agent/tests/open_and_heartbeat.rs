//! Opening an agent on a data dir it cannot write, and its heartbeat to the control plane.

mod common;

use aloft_agent::{Agent, AgentError, spawn_heartbeat};
use aloft_runtime::sim::SimRuntime;
use aloft_types::api::HostInfo;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn a_data_dir_under_a_file_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"keep").unwrap();
    let data_dir = file.join("agent");
    let err = match Agent::open(
        common::config(&data_dir, 4, 4096),
        Arc::new(SimRuntime::new()),
        Default::default(),
    )
    .await
    {
        Ok(_) => panic!("opened an agent under a file"),
        Err(e) => e,
    };
    assert!(matches!(err, AgentError::DataDir { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&data_dir.display().to_string()), "{msg}");
    assert!(msg.contains("choose a writable --data-dir"), "{msg}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep", "nothing written");
}

#[tokio::test]
async fn a_read_only_data_dir_is_a_clear_error_and_stays_empty() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ro");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(dir.join("probe"), b"").is_ok() {
        // Running with privileges that ignore file modes (root): nothing to test here; the
        // test above covers the error path.
        eprintln!("skipped: permissions are not enforced for this user");
        return;
    }
    let err = match Agent::open(
        common::config(&dir, 4, 4096),
        Arc::new(SimRuntime::new()),
        Default::default(),
    )
    .await
    {
        Ok(_) => panic!("opened an agent in a read-only dir"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(
        msg.contains("agent.db") && msg.contains("choose a writable --data-dir"),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("permission denied"), "{msg}");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing written"
    );
}

type Seen = Arc<Mutex<Vec<(Option<String>, HostInfo)>>>;

async fn register(
    State(seen): State<Seen>,
    headers: HeaderMap,
    axum::Json(info): axum::Json<HostInfo>,
) -> &'static str {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    seen.lock().push((auth, info));
    "ok"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_registers_at_once_and_survives_failures() {
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cp_url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/internal/v1/hosts", post(register))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let t = common::TestAgent::with_capacity(8, 8192).await;
    t.create(serde_json::json!({"config": {"image": "a", "guest": {"cpus": 2, "memory_mb": 1024}}, "skip_launch": true}))
        .await;
    let hb = spawn_heartbeat(
        t.agent.clone(),
        reqwest::Client::new(),
        format!("{cp_url}/"),
        "aloft_host_local1".into(),
        "http://127.0.0.7:4281".into(),
    );
    t.eventually("the first heartbeat arrived", || async {
        !seen.lock().is_empty()
    })
    .await;
    let (auth, info) = seen.lock()[0].clone();
    assert_eq!(
        auth.as_deref(),
        Some("Bearer aloft_host_local1"),
        "the heartbeat carries the host's credential"
    );
    assert_eq!(
        info,
        HostInfo {
            id: "local-1".into(),
            region: "local".into(),
            address: "http://127.0.0.7:4281".into(),
            runtime: "sim".into(),
            cpus: 8,
            memory_mb: 8192,
            allocated_cpus: 0, // shared CPUs are oversubscribed
            allocated_memory_mb: 1024,
        }
    );
    // The agent's own host endpoint reports the advertised address too.
    let (_, host) = t.get("/internal/v1/host").await;
    assert_eq!(host["address"], "http://127.0.0.7:4281");
    hb.abort();

    // An unreachable control plane is logged and retried, not fatal.
    let hb = spawn_heartbeat(
        t.agent.clone(),
        reqwest::Client::new(),
        "http://127.0.0.1:9".into(),
        "c".into(),
        "http://x".into(),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!hb.is_finished());
    hb.abort();
}
