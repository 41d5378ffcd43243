//! App secrets at machine start: in the process environment, never in the config the API shows;
//! the last copy when the control plane does not answer, and a start event that says so.

mod common;

use aloft_agent::secrets::SecretSource;
use common::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A control plane that answers until it is `down`.
struct Source {
    down: AtomicBool,
}

#[async_trait::async_trait]
impl SecretSource for Source {
    async fn secrets(&self, app: &str) -> Result<BTreeMap<String, String>, String> {
        assert_eq!(app, APP);
        if self.down.load(Ordering::SeqCst) {
            return Err("connection refused".into());
        }
        Ok(BTreeMap::from([("DB_PASSWORD".into(), "s3cret".into())]))
    }

    async fn volume(&self, id: &str) -> Result<aloft_types::api::VolumeAccess, String> {
        Err(format!("no volume {id} here"))
    }
}

async fn env_of(t: &TestAgent, id: &str) -> String {
    let (status, out) = t
        .post(
            &format!("{}/exec", t.machine(id)),
            json!({"command": ["env"]}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    out["stdout"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn secrets_reach_the_process_and_outlast_a_control_plane_outage() {
    let source = Arc::new(Source {
        down: AtomicBool::new(false),
    });
    let t = TestAgent::with_deps(aloft_agent::AgentDeps {
        secrets: Some(source.clone()),
        ..Default::default()
    })
    .await;
    let id = t.create_started(sim_config(&[("GREETING", "hi")])).await;
    let env = env_of(&t, &id).await;
    assert!(
        env.contains("DB_PASSWORD=s3cret") && env.contains("GREETING=hi"),
        "{env}"
    );
    let (_, m) = t.get(&t.machine(&id)).await;
    assert!(!m.to_string().contains("s3cret"), "{m}");

    source.down.store(true, Ordering::SeqCst);
    let (status, body) = t
        .post(&format!("{}/restart", t.machine(&id)), json!(null))
        .await;
    assert_eq!(status, 200, "{body}");
    t.wait_for(&id, "started").await;
    assert!(env_of(&t, &id).await.contains("DB_PASSWORD=s3cret"));
    let events = t.events(&id).await;
    let last = events.last().unwrap().to_string();
    assert!(last.contains("last copy"), "{last}");
}

/// A machine whose process ended while the agent was down is restarted by its restart policy
/// while the agent opens (boot recovery). That start gets the app's secrets and the host's
/// internal DNS like any other: the agent is given both at open, before it reconciles.
#[tokio::test]
async fn a_machine_restarted_at_agent_start_has_its_secrets_and_internal_dns() {
    use aloft_runtime::Runtime;
    let source = Arc::new(Source {
        down: AtomicBool::new(false),
    });
    let mut t = TestAgent::with_deps(aloft_agent::AgentDeps {
        secrets: Some(source.clone()),
        internal_dns: Some("fdaa::3".into()),
        ..Default::default()
    })
    .await;
    let mut config = sim_config(&[]);
    config["restart"] = json!({"policy": "always"});
    let id = t.create_started(config).await;
    assert_eq!(t.starts(&id), 1);

    // The agent dies, then the machine's process ends while nobody watches it.
    t.agent.crash();
    t.rt.stop(
        &common::mid(&id),
        aloft_types::signal::Signal::KILL,
        std::time::Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert_eq!(t.live_runs(&id), 0);

    t.reopen().await;
    t.wait_for(&id, "started").await;
    assert_eq!(t.starts(&id), 2, "the restart policy started it again");
    let env = env_of(&t, &id).await;
    assert!(env.contains("DB_PASSWORD=s3cret"), "{env}");
    let (status, out) = t
        .post(
            &format!("{}/exec", t.machine(&id)),
            json!({"command": ["cat", "/etc/resolv.conf"]}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["stdout"], "nameserver fdaa::3\n", "{out}");
}

/// The control plane's client asks for a registry login at the control plane's internal path
/// with the host's credential, reads a 404 as "no login" (anonymous pull) and any other failure as
/// an error (the pull fails; it is never tried anonymously instead).
#[tokio::test]
async fn registry_logins_are_asked_of_the_control_plane_per_org_and_host() {
    use aloft_agent::secrets::ControlPlaneSecrets;
    use axum::extract::Path;
    use axum::http::{HeaderMap, StatusCode};
    let cp = axum::Router::new().route(
        "/internal/v1/orgs/{org}/registry-credentials/{host}",
        axum::routing::get(
            |Path((org, host)): Path<(String, String)>, headers: HeaderMap| async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
                if auth != Some("Bearer aloft_host_h1") {
                    return (StatusCode::UNAUTHORIZED, String::new());
                }
                match (org.as_str(), host.as_str()) {
                    ("acme", "ghcr.io") => (
                        StatusCode::OK,
                        json!({"username": "bot", "password": "pw"}).to_string(),
                    ),
                    ("acme", "broken.example") => {
                        (StatusCode::INTERNAL_SERVER_ERROR, String::new())
                    }
                    _ => (StatusCode::NOT_FOUND, "{}".to_string()),
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, cp).await.unwrap() });

    let source = ControlPlaneSecrets::new(reqwest::Client::new(), &url, "aloft_host_h1");
    let login = source
        .registry_login("acme", "ghcr.io")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (login.username.as_str(), login.password.as_str()),
        ("bot", "pw")
    );
    assert!(
        source
            .registry_login("evil", "ghcr.io")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        source
            .registry_login("acme", "other.io")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        source
            .registry_login("acme", "broken.example")
            .await
            .is_err()
    );
    let wrong = ControlPlaneSecrets::new(reqwest::Client::new(), &url, "aloft_host_other");
    assert!(wrong.registry_login("acme", "ghcr.io").await.is_err());
}
