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
    let t = TestAgent::start().await;
    let source = Arc::new(Source {
        down: AtomicBool::new(false),
    });
    t.agent.use_secrets(source.clone());
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
