//! The store's tests: numbering, idempotence, tokens, counts, reopening and schema versions.

use super::*;
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
        config: None,
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

fn token(id: &str, org: &str, app_id: Option<&str>) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        org_slug: org.into(),
        name: format!("name-{id}"),
        app_id: app_id.map(String::from),
        app_name: None,
        created_at: 1,
        expires_at: None,
        revoked_at: None,
    }
}

#[tokio::test]
async fn tokens_resolve_to_their_org_and_app_and_are_revoked_once() {
    let (_d, s) = open();
    s.ensure_org("personal", 1).await.unwrap();
    s.insert_app(app("web", "personal")).await.unwrap();
    s.insert_token("h1".into(), token("t1", "personal", None))
        .await
        .unwrap();
    s.insert_token("h2".into(), token("t2", "personal", Some("id-web")))
        .await
        .unwrap();
    let (org, t) = s.token_by_hash("h1".into()).await.unwrap().unwrap();
    assert_eq!(
        (org.slug.as_str(), t.name.as_str()),
        ("personal", "name-t1")
    );
    assert_eq!((t.app_id, t.app_name), (None, None));
    let (_, t) = s.token_by_hash("h2".into()).await.unwrap().unwrap();
    assert_eq!(t.app_name.as_deref(), Some("web"));
    assert_eq!(s.token_by_hash("h9".into()).await.unwrap(), None);
    assert!(
        s.insert_token("h3".into(), token("t3", "ghost", None))
            .await
            .is_err(),
        "a token needs an existing org"
    );

    assert!(
        !s.revoke_token("other", "t1", 5).await.unwrap(),
        "another org's"
    );
    assert!(s.revoke_token("personal", "t1", 5).await.unwrap());
    assert!(!s.revoke_token("personal", "t1", 6).await.unwrap(), "once");
    let (_, t) = s.token_by_hash("h1".into()).await.unwrap().unwrap();
    assert_eq!(t.revoked_at, Some(5));
    let listed: Vec<String> = s
        .tokens_of_org("personal")
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(listed, ["t2"]);
    // The app goes: its deploy token names no app any more.
    s.delete_app("web").await.unwrap();
    let (_, t) = s.token_by_hash("h2".into()).await.unwrap().unwrap();
    assert_eq!((t.app_id.as_deref(), t.app_name), (Some("id-web"), None));
}

/// A database as version 1 wrote it, with the `personal` org and the rows of `sql`.
fn version_1_database(sql: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.db");
    let c = Connection::open(&path).unwrap();
    c.execute_batch(SCHEMA).unwrap();
    c.execute_batch(
        "INSERT INTO schema_version (version) VALUES (1);
         INSERT INTO orgs (slug, network_id, created_at) VALUES ('personal', 1, 1);",
    )
    .unwrap();
    c.execute_batch(sql).unwrap();
    (dir, path)
}

/// A version-1 database (tokens without id, scope or expiry) is migrated at open: its tokens
/// keep working as org-wide tokens that never expire.
#[tokio::test]
async fn version_1_tokens_stay_org_wide_without_expiry() {
    let (_dir, path) = version_1_database(
        "INSERT INTO api_tokens (token_hash, org_slug, name, created_at)
             VALUES ('0123456789abcdef0123', 'personal', 'old', 1);",
    );
    let s = Store::open(&path).unwrap();
    let (org, t) = s
        .token_by_hash("0123456789abcdef0123".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(org.slug, "personal");
    assert_eq!(t.id, "0123456789abcdef");
    assert_eq!((t.app_id, t.expires_at, t.revoked_at), (None, None, None));
    drop(s);
    // Opening again runs nothing twice.
    let s = Store::open(&path).unwrap();
    assert_eq!(s.tokens_of_org("personal").await.unwrap().len(), 1);
}

/// Secrets stored before their versions (schema 6) get version 1 for an app that has any (0
/// for one that has none), and `updated_at` = `created_at` (until then, when last set).
#[tokio::test]
async fn secrets_stored_before_versions_start_at_version_1() {
    let (_dir, path) = version_1_database(
        "INSERT INTO apps (name, id, org_slug, created_at) VALUES ('web', 'i1', 'personal', 1);
         INSERT INTO apps (name, id, org_slug, created_at) VALUES ('api', 'i2', 'personal', 1);
         INSERT INTO secrets (app_name, name, nonce, ciphertext, digest, created_at)
             VALUES ('web', 'A', '00', '11', 'd', 42);",
    );
    let s = Store::open(&path).unwrap();
    let (web, version) = s.secrets_and_version("web").await.unwrap();
    assert_eq!(version, 1);
    assert_eq!((web[0].created_at, web[0].updated_at), (42, 42));
    assert_eq!(s.secrets_and_version("api").await.unwrap().1, 0);
    // A change keeps created_at and moves updated_at and the version.
    let mut again = web[0].clone();
    again.created_at = 50;
    again.updated_at = 50;
    let change = crate::store::SecretsChange {
        set: vec![again],
        unset: Vec::new(),
    };
    assert_eq!(s.change_secrets("web", change, 10).await.unwrap(), Ok(2));
    let (web, _) = s.secrets_and_version("web").await.unwrap();
    assert_eq!((web[0].created_at, web[0].updated_at), (42, 50));
}

/// Volumes and snapshots stored before schema 8 get the reference's default retention (5
/// days) and no scheduled snapshots; their snapshots have no size, digest or retention; new
/// settings are stored.
#[tokio::test]
async fn volumes_stored_before_their_settings_get_the_defaults() {
    let (_dir, path) = version_1_database(
        "INSERT INTO apps (name, id, org_slug, created_at) VALUES ('web', 'i1', 'personal', 1);
         INSERT INTO volumes (id, app_name, name, region, host_id, size_gb, key_nonce,
             key_ciphertext, attached_machine_id, created_at)
             VALUES ('vol_1', 'web', 'data', 'ord', 'ord-1', 3, 'n', 'c', NULL, 1);
         INSERT INTO volume_snapshots (id, volume_id, size, created_at)
             VALUES ('vs_1', 'vol_1', 42, 2);",
    );
    let s = Store::open(&path).unwrap();
    let v = s.volume("vol_1").await.unwrap().unwrap();
    let defaults = VolumeSettings {
        snapshot_retention: 5,
        auto_backup_enabled: false,
    };
    assert_eq!(v.settings, defaults);
    let snaps = s.snapshots("vol_1").await.unwrap();
    assert_eq!(
        (
            snaps[0].volume_size,
            snaps[0].digest.as_deref(),
            snaps[0].retention_days
        ),
        (None, None, None)
    );
    let changed = VolumeSettings {
        snapshot_retention: 30,
        auto_backup_enabled: true,
    };
    s.set_volume_settings("vol_1", changed).await.unwrap();
    assert_eq!(s.volume("vol_1").await.unwrap().unwrap().settings, changed);
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
        updated_at: 1,
    };
    let change = crate::store::SecretsChange {
        set: vec![secret("A"), secret("B")],
        unset: Vec::new(),
    };
    s.change_secrets("one", change, 10).await.unwrap().unwrap();
    assert_eq!(s.sealed_values().unwrap(), 2);
    let login = crate::store::RegistryLoginRecord {
        host: "ghcr.io".into(),
        username: "u".into(),
        sealed: secret("-").sealed,
        created_at: 1,
    };
    s.set_registry_login("a", login).await.unwrap();
    assert_eq!(
        s.sealed_values().unwrap(),
        3,
        "registry passwords count too"
    );
}

/// Hostnames stored before certificate sources (schema 7): one without a certificate (served
/// by the development CA) becomes managed, one with its certificate keeps it as custom and is
/// not managed; both get `updated_at` = `created_at`.
#[tokio::test]
async fn hostnames_stored_before_sources_become_managed_or_custom() {
    let (_dir, path) = version_1_database(
        "INSERT INTO apps (name, id, org_slug, created_at) VALUES ('web', 'i1', 'personal', 1);
         INSERT INTO certificates (hostname, app_name, certificate, private_key, created_at)
             VALUES ('dev.web.test', 'web', NULL, NULL, 7),
                    ('www.example.com', 'web', 'CERT', 'KEY', 9);",
    );
    let s = Store::open(&path).unwrap();
    let dev = s.certificate("web", "dev.web.test").await.unwrap().unwrap();
    assert!(dev.acme_requested && dev.certificate.is_none());
    assert_eq!((dev.created_at, dev.updated_at), (7, 7));
    let www = s
        .certificate("web", "www.example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(!www.acme_requested);
    assert_eq!(www.certificate.as_deref(), Some("CERT"));
    assert_eq!((www.created_at, www.updated_at), (9, 9));
}
