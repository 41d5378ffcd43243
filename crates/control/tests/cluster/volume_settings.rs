//! What fly-go's `flaps` sends and reads about volumes: every field of a create (honoured, or a
//! 422 naming what aloft does not do), unique zones (a host is a zone), `compute` in placement,
//! the snapshot settings and their update (`PUT .../volumes/{id}`), and snapshots' fields.

use crate::volumes::can_mount;
use aloft_testkit::{Client, Cluster, ClusterOptions, HostOptions};
use serde_json::{Value, json};

async fn create(api: &Client, body: Value) -> (u16, Value) {
    api.send(api.post("/v1/apps/hello/volumes").json(&body))
        .await
}

async fn created(api: &Client, body: Value) -> Value {
    let (status, v) = create(api, body).await;
    assert_eq!(status, 201, "{v}");
    v
}

/// A volume's `snapshot_retention` and `auto_backup_enabled`.
fn settings(v: &Value) -> (Option<u64>, Option<bool>) {
    (
        v["snapshot_retention"].as_u64(),
        v["auto_backup_enabled"].as_bool(),
    )
}

fn update(api: &Client, id: &str) -> reqwest::RequestBuilder {
    api.request(
        reqwest::Method::PUT,
        &format!("/v1/apps/hello/volumes/{id}"),
    )
}

#[tokio::test]
async fn a_volume_takes_every_field_fly_go_sends_and_answers_every_one_it_reads() {
    if !can_mount() {
        return;
    }
    // A big host and a small one: `compute` decides between them.
    let cluster = Cluster::start_with(ClusterOptions::with_hosts(vec![
        HostOptions::new("ord"),
        HostOptions::new("ord").memory_mb(1024),
    ]))
    .await;
    let (big, small) = (cluster.host_id(0), cluster.host_id(1));
    let api = cluster.client();
    api.create_app("hello").await;

    // Defaults: the reference's retention, no scheduled snapshots, ext4, no allocation.
    let logs = created(&api, json!({"name": "logs", "region": "ord"})).await;
    assert_eq!(logs["zone"], big, "{logs}");
    assert_eq!(logs["snapshot_retention"], 5, "{logs}");
    assert_eq!(logs["auto_backup_enabled"], false, "{logs}");
    assert_eq!(logs["fstype"], "ext4", "{logs}");
    assert_eq!(logs["host_status"], "ok", "{logs}");
    assert!(
        logs.get("attached_alloc_id").is_some_and(Value::is_null),
        "{logs}"
    );

    // fly-go's whole body (nulls included); `compute` sends it to the host that guest fits,
    // though the small host holds fewer of the app's volumes.
    let data = created(
        &api,
        json!({
            "name": "data", "region": "ord", "size_gb": 1, "encrypted": true,
            "require_unique_zone": true, "unique_zone_app_wide": null,
            "snapshot_retention": 7, "auto_backup_enabled": true, "fstype": "ext4",
            "snapshot_id": null, "source_volume_id": null,
            "compute": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 8192},
            "compute_image": "registry.example/app:v1"
        }),
    )
    .await;
    assert_eq!(data["zone"], big, "{data}");
    assert_eq!(data["snapshot_retention"], 7, "{data}");
    assert_eq!(data["auto_backup_enabled"], true, "{data}");
    let id = data["id"].as_str().unwrap().to_string();

    unique_zones(&api, small).await;
    refused_options_name_the_field(&api).await;
    updates_store_the_settings(&api, &cluster, &id).await;
    snapshots_carry_size_digest_and_retention(&api, &id).await;
}

/// A host is a zone: `require_unique_zone` takes the host without a volume of the name, then
/// refuses; `unique_zone_app_wide` counts every volume of the app.
async fn unique_zones(api: &Client, small: &str) {
    let unique = json!({"name": "data", "region": "ord", "require_unique_zone": true});
    let second = created(api, unique.clone()).await;
    assert_eq!(second["zone"], small, "{second}");
    let (status, err) = create(api, unique).await;
    assert_eq!(
        (status, err["field"].as_str()),
        (422, Some("require_unique_zone")),
        "{err}"
    );
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("require_unique_zone false"),
        "{err}"
    );
    let app_wide = json!({"name": "other", "region": "ord", "require_unique_zone": true,
        "unique_zone_app_wide": true});
    let (status, err) = create(api, app_wide).await;
    assert_eq!(
        (status, err["field"].as_str()),
        (422, Some("require_unique_zone")),
        "{err}"
    );
    // Concurrent creates cannot both take one host: two hosts, two of three.
    let pair = || {
        create(
            api,
            json!({"name": "pair", "region": "ord", "require_unique_zone": true}),
        )
    };
    let (a, b, c) = tokio::join!(pair(), pair(), pair());
    let mut statuses = [a.0, b.0, c.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 201, 422], "{a:?} {b:?} {c:?}");
    let zones: Vec<&Value> = [&a, &b, &c]
        .iter()
        .filter(|r| r.0 == 201)
        .map(|r| &r.1["zone"])
        .collect();
    assert_ne!(zones[0], zones[1], "{zones:?}");
    // Not required: a host is shared.
    let shared = created(
        api,
        json!({"name": "data", "region": "ord", "require_unique_zone": false}),
    )
    .await;
    assert_eq!(shared["name"], "data");
    // A guest no host fits: no volume where its machine could not run.
    let (status, err) = create(
        api,
        json!({"name": "huge", "region": "ord", "compute": {"memory_mb": 65536}}),
    )
    .await;
    assert_eq!(status, 503, "{err}");
}

async fn refused_options_name_the_field(api: &Client) {
    for (extra, field) in [
        (json!({"fstype": "raw"}), "fstype"),
        (json!({"snapshot_id": "vs_0011223344556677"}), "snapshot_id"),
        (
            json!({"source_volume_id": "vol_0011223344556677"}),
            "source_volume_id",
        ),
        (json!({"snapshot_retention": 0}), "snapshot_retention"),
        (json!({"snapshot_retention": 61}), "snapshot_retention"),
        (json!({"snapshot_retention": -1}), "snapshot_retention"),
        (json!({"auto_backup_enabled": "yes"}), "auto_backup_enabled"),
    ] {
        let mut body = json!({"name": "refused", "region": "ord"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, err) = create(api, body.clone()).await;
        assert_eq!(
            (status, err["field"].as_str()),
            (422, Some(field)),
            "{body}: {err}"
        );
    }
    let (_, raw) = create(
        api,
        json!({"name": "refused", "region": "ord", "fstype": "raw"}),
    )
    .await;
    assert_eq!(raw["allowed"], json!(["ext4"]), "{raw}");
    let (_, list) = api.send(api.get("/v1/apps/hello/volumes")).await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|v| v["name"] != "refused"),
        "{list}"
    );
}

/// `PUT .../volumes/{id}`: what the body sets is stored, the rest kept; bounds are 422; another
/// org's or an unknown volume is 404.
async fn updates_store_the_settings(api: &Client, cluster: &Cluster, id: &str) {
    let (status, v) = api
        .send(update(api, id).json(&json!({"snapshot_retention": 10})))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(settings(&v), (Some(10), Some(true)), "{v}");
    assert_eq!(v["id"], id);
    let (status, v) = api
        .send(update(api, id).json(&json!({"auto_backup_enabled": false})))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(settings(&v), (Some(10), Some(false)), "{v}");
    // fly-go sends both, a null for what it leaves alone.
    let both = json!({"snapshot_retention": null, "auto_backup_enabled": true});
    let (status, v) = api.send(update(api, id).json(&both)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(settings(&v), (Some(10), Some(true)), "{v}");
    let (status, v) = api
        .send(api.get(&format!("/v1/apps/hello/volumes/{id}")))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(settings(&v), (Some(10), Some(true)), "{v}");

    for days in [0, 61, -3] {
        let (status, err) = api
            .send(update(api, id).json(&json!({"snapshot_retention": days})))
            .await;
        assert_eq!(
            (status, err["field"].as_str()),
            (422, Some("snapshot_retention")),
            "{days}: {err}"
        );
    }
    let (status, err) = api.send(update(api, id).body("{not json")).await;
    assert_eq!(status, 400, "{err}");
    let (status, err) = api
        .send(update(api, "vol_0000000000000000").json(&json!({"snapshot_retention": 3})))
        .await;
    assert_eq!(status, 404, "{err}");
    let theirs = api.with_token(cluster.new_org("acme").await);
    let (status, err) = theirs
        .send(update(&theirs, id).json(&json!({"snapshot_retention": 3})))
        .await;
    assert_eq!(status, 404, "{err}");
    let (_, v) = api
        .send(api.get(&format!("/v1/apps/hello/volumes/{id}")))
        .await;
    assert_eq!(
        v["snapshot_retention"], 10,
        "nothing changed by refused updates: {v}"
    );
}

/// A snapshot says the volume's size when taken, its bytes' digest and the retention of that
/// moment (a later change applies to new snapshots only).
async fn snapshots_carry_size_digest_and_retention(api: &Client, id: &str) {
    let snapshot = |api: &Client| api.post(&format!("/v1/apps/hello/volumes/{id}/snapshots"));
    let (status, first) = api.send(snapshot(api)).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["volume_size"], 1, "{first}");
    assert_eq!(first["retention_days"], 10, "{first}");
    let digest = first["digest"].as_str().unwrap_or_default();
    let hex = digest.strip_prefix("sha256:").unwrap_or_default();
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{first}"
    );
    let (status, v) = api
        .send(update(api, id).json(&json!({"snapshot_retention": 12})))
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, second) = api.send(snapshot(api)).await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["retention_days"], 12, "{second}");
    let (status, list) = api
        .send(api.get(&format!("/v1/apps/hello/volumes/{id}/snapshots")))
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list[0]["id"], first["id"], "{list}");
    assert_eq!(list[0]["retention_days"], 10, "{list}");
    assert_eq!(list[0]["digest"], first["digest"], "{list}");
    assert_eq!(list[1]["retention_days"], 12, "{list}");
    assert_eq!(list[1]["volume_size"], 1, "{list}");
    assert_eq!(list[1]["status"], "created", "{list}");
}
