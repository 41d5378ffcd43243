//! The store's tests: numbering, idempotence, tokens, counts, reopening and schema versions.

use super::*;
use crate::auth::ApiToken;
use aloft_types::api::HostInfo;

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("control.db")).unwrap();
    (dir, store)
}

fn host(id: &str, region: &str) -> HostInfo {
    HostInfo {
        id: id.into(),
        region: region.into(),
        address: format!("http://{id}:1"),
        runtime: "sim".into(),
        cpus: 4,
        memory_mb: 4096,
        allocated_cpus: 1,
        allocated_memory_mb: 1024,
    }
}

fn app(name: &str, org: &str) -> AppRecord {
    AppRecord {
        id: format!("id-{name}"),
        name: name.into(),
        org_slug: org.into(),
        created_at: 1,
        machine_count: 0,
    }
}

#[tokio::test]
async fn releases_are_numbered_per_app_and_end_once() {
    let (_d, s) = open();
    s.ensure_org("a", 1).await.unwrap();
    for name in ["one", "two"] {
        assert!(s.insert_app(app(name, "a")).await.unwrap());
    }
    let release = |app: &str| ReleaseRecord {
        app: app.into(),
        version: 0,
        image: "hello:v1".into(),
        strategy: "rolling".into(),
        status: "running".into(),
        description: None,
        reason: None,
        created_at: 1,
        updated_at: 1,
    };
    assert_eq!(s.insert_release(release("one")).await.unwrap().version, 1);
    assert_eq!(s.insert_release(release("one")).await.unwrap().version, 2);
    assert_eq!(s.insert_release(release("two")).await.unwrap().version, 1);
    let versions: Vec<u32> = s
        .releases("one")
        .await
        .unwrap()
        .iter()
        .map(|r| r.version)
        .collect();
    assert_eq!(versions, [2, 1]);
    let done = s
        .finish_release("one", 2, "running", "complete", None, 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((done.status.as_str(), done.updated_at), ("complete", 5));
    // A second ending leaves the first in place.
    let again = s
        .finish_release("one", 2, "running", "failed", Some("x".into()), 6)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.status.as_str(), again.reason), ("complete", None));
    assert!(
        s.finish_release("one", 9, "running", "failed", None, 6)
            .await
            .unwrap()
            .is_none()
    );
    s.delete_app("one").await.unwrap();
    assert!(s.releases("one").await.unwrap().is_empty());
}

#[tokio::test]
async fn orgs_get_sequential_network_ids_and_are_idempotent() {
    let (_d, s) = open();
    assert_eq!(s.ensure_org("personal", 1).await.unwrap().network_id, 1);
    assert_eq!(s.ensure_org("acme", 1).await.unwrap().network_id, 2);
    assert_eq!(s.ensure_org("personal", 2).await.unwrap().network_id, 1);
    assert_eq!(s.org("acme").await.unwrap().unwrap().network_id, 2);
    assert_eq!(s.org("nope").await.unwrap(), None);
}

#[tokio::test]
async fn tokens_resolve_to_their_org() {
    let (_d, s) = open();
    s.ensure_org("personal", 1).await.unwrap();
    s.insert_token("h1".into(), "personal", "ci", 1)
        .await
        .unwrap();
    let c = s
        .caller("h1".into(), ApiToken::new("t1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.org.slug.as_str(), c.token_name.as_str()),
        ("personal", "ci")
    );
    assert_eq!(
        s.caller("h2".into(), ApiToken::new("t2")).await.unwrap(),
        None
    );
    assert!(
        s.insert_token("h3".into(), "ghost", "x", 1).await.is_err(),
        "a token needs an existing org"
    );
}

#[tokio::test]
async fn apps_are_global_and_count_live_machines() {
    let (_d, s) = open();
    s.ensure_org("a", 1).await.unwrap();
    s.ensure_org("b", 1).await.unwrap();
    assert!(s.insert_app(app("hello", "a")).await.unwrap());
    assert!(!s.insert_app(app("hello", "b")).await.unwrap());
    s.upsert_host(host("h1", "local"), 5).await.unwrap();
    for (id, name) in [("m1", "one"), ("m2", "two")] {
        s.insert_machine(
            MachineRecord {
                id: id.into(),
                app: "hello".into(),
                host_id: "h1".into(),
                name: name.into(),
                destroyed: false,
            },
            1,
        )
        .await
        .unwrap();
    }
    assert_eq!(s.app("hello").await.unwrap().unwrap().machine_count, 2);
    s.mark_destroyed("m1").await.unwrap();
    assert_eq!(s.app("hello").await.unwrap().unwrap().machine_count, 1);
    assert_eq!(s.live_machine_named("hello", "one").await.unwrap(), None);
    s.rename_machine("m2", "deux").await.unwrap();
    assert_eq!(
        s.live_machine_named("hello", "deux")
            .await
            .unwrap()
            .map(|m| m.id),
        Some("m2".to_string())
    );
    assert_eq!(s.machines_of_app("hello").await.unwrap().len(), 2);
    assert_eq!(s.apps_of_org("a").await.unwrap().len(), 1);
    assert!(s.apps_of_org("b").await.unwrap().is_empty());

    s.delete_app("hello").await.unwrap();
    assert_eq!(s.app("hello").await.unwrap(), None);
    assert_eq!(s.machine("m2").await.unwrap(), None);
}

#[tokio::test]
async fn host_numbers_are_given_once_and_kept() {
    let (_d, s) = open();
    assert_eq!(s.host_number("ord-1").await.unwrap(), 1);
    assert_eq!(s.host_number("syd-1").await.unwrap(), 2);
    assert_eq!(s.host_number("ord-1").await.unwrap(), 1);
}

#[tokio::test]
async fn hosts_upsert_and_track_allocations() {
    let (_d, s) = open();
    s.upsert_host(host("h1", "local"), 5).await.unwrap();
    s.add_allocation("h1", 1, 256).await.unwrap();
    let h = s.host("h1").await.unwrap().unwrap();
    assert_eq!((h.free_cpus(), h.free_memory_mb()), (2, 4096 - 1280));
    // The next heartbeat replaces the estimate with the truth.
    let mut info = host("h1", "ord");
    info.address = "http://elsewhere:2".into();
    s.upsert_host(info.clone(), 9).await.unwrap();
    let hosts = s.hosts().await.unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].info, info);
    assert_eq!(hosts[0].last_seen, 9);
}

#[tokio::test]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.db");
    {
        let s = Store::open(&path).unwrap();
        s.ensure_org("personal", 1).await.unwrap();
        s.insert_app(app("hello", "personal")).await.unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert!(s.app("hello").await.unwrap().is_some());
    assert_eq!(s.ensure_org("next", 1).await.unwrap().network_id, 2);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.db");
    drop(Store::open(&path).unwrap());
    let c = Connection::open(&path).unwrap();
    c.execute("UPDATE schema_version SET version = 99", [])
        .unwrap();
    drop(c);
    let err = Store::open(&path).err().unwrap();
    assert!(
        matches!(err, ControlPlaneError::SchemaTooNew { found: 99, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn sealed_values_are_counted_for_the_secrets_key_check() {
    let (_d, s) = open();
    assert_eq!(s.sealed_values().unwrap(), 0);
    s.ensure_org("a", 1).await.unwrap();
    s.insert_app(app("one", "a")).await.unwrap();
    let secret = |name: &str| SecretRecord {
        name: name.into(),
        sealed: crate::secrets::Sealed {
            nonce: "00".into(),
            ciphertext: "11".into(),
        },
        digest: "d".into(),
        created_at: 1,
    };
    s.set_secrets("one", vec![secret("A"), secret("B")], 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.sealed_values().unwrap(), 2);
}
