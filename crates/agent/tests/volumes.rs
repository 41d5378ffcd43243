//! Volumes at machine start: the host makes the volume's disk with the key the control plane
//! gives, refuses a second running machine on one volume (whatever the control plane believed)
//! and a volume of another host, uses the last key it was given while the control plane is
//! down, and refuses to remove a volume a machine mounts.
//! Needs root and qemu-utils (the disks are real); otherwise SKIPPED.

mod common;

use aloft_agent::secrets::SecretSource;
use aloft_types::api::VolumeAccess;
use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const VOLUME: &str = "vol_00aa11bb22cc33dd";
const NEVER_OPENED: &str = "vol_00aa11bb22cc33de";
const ELSEWHERE: &str = "vol_ffeeddccbbaa9988";

/// A control plane that knows two volumes: one on this host, one on another, until it is
/// `down`.
struct Source {
    down: AtomicBool,
}

#[async_trait::async_trait]
impl SecretSource for Source {
    async fn secrets(&self, _app: &str) -> Result<BTreeMap<String, String>, String> {
        Ok(BTreeMap::new())
    }

    async fn volume(&self, id: &str) -> Result<VolumeAccess, String> {
        if self.down.load(Ordering::SeqCst) {
            return Err("connection refused".into());
        }
        Ok(VolumeAccess {
            id: id.to_string(),
            app: APP.into(),
            size_gb: 1,
            host_id: if id == ELSEWHERE {
                "local-2"
            } else {
                "local-1"
            }
            .into(),
            key: "0".repeat(64),
        })
    }
}

fn can_mount() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    let tools = std::process::Command::new("qemu-storage-daemon")
        .arg("--version")
        .output()
        .is_ok();
    if !(root && tools) {
        eprintln!("\n*** SKIPPED: volumes need root and qemu-utils (scripts/setup.sh) ***\n");
    }
    root && tools
}

fn mounting(volume: &str) -> Value {
    let mut config = sim_config(&[]);
    config["mounts"] = json!([{"volume": volume, "path": "/data"}]);
    config
}

/// Waits (up to two minutes: a new volume's disk is made and formatted first) for `state`.
async fn settle(t: &TestAgent, id: &str, state: &str) {
    for _ in 0..1200 {
        if t.state(id).await == state {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "machine {id} never became {state}: {:?}",
        t.events(id).await
    );
}

async fn last_event(t: &TestAgent, id: &str) -> String {
    t.events(id).await.last().unwrap().to_string()
}

#[tokio::test]
async fn one_running_machine_per_volume_and_only_on_its_host() {
    if !can_mount() {
        return;
    }
    let source = Arc::new(Source {
        down: AtomicBool::new(false),
    });
    let t = TestAgent::with_deps(aloft_agent::AgentDeps {
        secrets: Some(source.clone()),
        ..Default::default()
    })
    .await;

    let first = t.create(json!({ "config": mounting(VOLUME) })).await;
    let first = first["id"].as_str().unwrap().to_string();
    settle(&t, &first, "started").await;

    // A second machine on the same volume does not start while the first runs.
    let second = t.create(json!({ "config": mounting(VOLUME) })).await;
    let second = second["id"].as_str().unwrap().to_string();
    settle(&t, &second, "failed").await;
    let why = last_event(&t, &second).await;
    assert!(
        why.contains(&format!("mounted by machine {first}")),
        "{why}"
    );

    // Another host's volume: the start fails saying why.
    let other = t.create(json!({ "config": mounting(ELSEWHERE) })).await;
    let other = other["id"].as_str().unwrap().to_string();
    settle(&t, &other, "failed").await;
    let why = last_event(&t, &other).await;
    assert!(why.contains("on host `local-2`"), "{why}");

    // The control plane down: a restart uses the key this host was given last (availability
    // first, as with secrets); a volume it never opened cannot start.
    source.down.store(true, Ordering::SeqCst);
    let (status, body) = t
        .post(&format!("{}/restart", t.machine(&first)), json!(null))
        .await;
    assert_eq!(status, 200, "{body}");
    settle(&t, &first, "started").await;
    let never = t.create(json!({ "config": mounting(NEVER_OPENED) })).await;
    let never = never["id"].as_str().unwrap().to_string();
    settle(&t, &never, "failed").await;
    let why = last_event(&t, &never).await;
    assert!(why.contains("cannot get its key"), "{why}");
    source.down.store(false, Ordering::SeqCst);

    // The volume cannot be removed while a machine of this host mounts it.
    let (status, body) = t
        .send(t.req(
            reqwest::Method::DELETE,
            &format!("/internal/v1/volumes/{VOLUME}"),
        ))
        .await;
    assert_eq!(status, 409, "{body}");
}
