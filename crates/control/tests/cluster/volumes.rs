use aloft_testkit::{Client, Cluster, ClusterOptions, HostOptions};
use serde_json::{Value, json};

/// Whether this process may mount (volumes are real encrypted disks, even with the sim runtime).
pub(crate) fn can_mount() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let tools = std::process::Command::new("qemu-storage-daemon")
        .arg("--version")
        .output()
        .is_ok();
    if !(root && tools) {
        eprintln!("\n*** SKIPPED: volumes need root and qemu-utils (scripts/setup.sh) ***\n");
    }
    root && tools
}

fn mounting(volume: &str, region: &str) -> Value {
    json!({"config": {"image": "x", "mounts": [{"volume": volume, "path": "/data"}]}, "region": region})
}

async fn volume(api: &Client, id: &str) -> Value {
    let (status, v) = api
        .send(api.get(&format!("/v1/apps/hello/volumes/{id}")))
        .await;
    assert_eq!(status, 200, "{v}");
    v
}

#[tokio::test]
async fn a_volume_lives_on_one_host_and_its_machines_go_there_or_nowhere() {
    if !can_mount() {
        return;
    }
    let mut cluster = Cluster::start_with(ClusterOptions::with_hosts(vec![
        HostOptions::new("ord"),
        HostOptions::new("ord"),
        HostOptions::new("ams"),
    ]))
    .await;
    let api = cluster.client();
    api.create_app("hello").await;

    bad_input_names_the_field(&api).await;
    let (id, host) = create_in_ord(&api).await;
    let machine = mount_on_its_host(&api, &id, &host).await;
    one_machine_at_a_time_in_its_region(&api, &id, &machine).await;
    mounted_grows_and_snapshots(&api, &id).await;
    updates_free_and_take_it(&api, &id, &machine).await;
    next_machine_goes_to_its_host(&api, &id, &host, &machine).await;

    // Its host down: a clear error, and no new, empty volume anywhere.
    let index = if host == cluster.host_id(0) { 0 } else { 1 };
    cluster.stop_agent(index).await;
    let (status, err) = api
        .send(
            api.post("/v1/apps/hello/machines")
                .json(&mounting(&id, "ord")),
        )
        .await;
    assert_eq!(status, 503, "{err}");
    let message = err["error"].as_str().unwrap();
    assert!(
        message.contains(&id) && message.contains(&host) && message.contains("only there"),
        "{message}"
    );
    let (status, err) = api
        .send(api.delete(&format!("/v1/apps/hello/volumes/{id}")))
        .await;
    assert_eq!(status, 503, "{err}");
    let (_, list) = api.send(api.get("/v1/apps/hello/volumes")).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    // A new volume of the region goes to a host that answers.
    let (status, other) = api
        .send(
            api.post("/v1/apps/hello/volumes")
                .json(&json!({"name": "data", "region": "ord"})),
        )
        .await;
    assert_eq!(status, 201, "{other}");
    assert_ne!(other["zone"], host.as_str(), "{other}");
    let (_, machines) = api.send(api.get("/v1/apps/hello/machines")).await;
    assert!(
        machines
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["state"] == "destroyed"),
        "{machines}"
    );
}

async fn bad_input_names_the_field(api: &Client) {
    // Bad input names the field and the rule.
    for (body, field) in [
        (json!({"name": "no-dashes", "region": "ord"}), "name"),
        (
            json!({"name": "data", "region": "ord", "size_gb": 0}),
            "size_gb",
        ),
        (
            json!({"name": "data", "region": "ord", "size_gb": 501}),
            "size_gb",
        ),
        (json!({"name": "data", "region": "xyz"}), "region"),
    ] {
        let (status, err) = api
            .send(api.post("/v1/apps/hello/volumes").json(&body))
            .await;
        assert_eq!(status, 422, "{body}: {err}");
        assert_eq!(err["field"], field, "{err}");
    }
}

/// A volume `data` in `ord`; its id and host.
async fn create_in_ord(api: &Client) -> (String, String) {
    let (status, v) = api
        .send(
            api.post("/v1/apps/hello/volumes")
                .json(&json!({"name": "data", "region": "ord", "size_gb": 1})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("vol_"), "{v}");
    assert_eq!(v["encrypted"], true);
    assert_eq!(v["attached_machine_id"], Value::Null);
    let host = v["zone"].as_str().unwrap().to_string();
    assert!(host.starts_with("ord-"), "{v}");
    let (_, list) = api.send(api.get("/v1/apps/hello/volumes")).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    (id, host)
}

/// A snapshot before any mount, then a machine that mounts it; the machine's id.
async fn mount_on_its_host(api: &Client, id: &str, host: &str) -> String {
    let host = host.to_string();
    // Its disk is made on its host at create: a snapshot works before any machine mounts it.
    let (status, snap) = api
        .send(api.post(&format!("/v1/apps/hello/volumes/{id}/snapshots")))
        .await;
    assert_eq!(status, 201, "{snap}");

    // A machine that mounts it runs on its host, and holds it.
    let m = api.create_machine("hello", mounting(id, "ord")).await;
    let machine = m["id"].as_str().unwrap().to_string();
    assert_eq!(m["host_id"], host.as_str(), "{m}");
    crate::wait_for(api, "hello", &machine, "started").await;
    assert_eq!(
        volume(api, id).await["attached_machine_id"],
        machine.as_str()
    );
    machine
}

async fn one_machine_at_a_time_in_its_region(api: &Client, id: &str, machine: &str) {
    // One machine at a time; in the volume's region only; an unknown volume is named.
    let (status, err) = api
        .send(
            api.post("/v1/apps/hello/machines")
                .json(&mounting(id, "ord")),
        )
        .await;
    assert_eq!(status, 409, "{err}");
    assert!(err["error"].as_str().unwrap().contains(machine), "{err}");
    let (status, err) = api
        .send(
            api.post("/v1/apps/hello/machines")
                .json(&mounting(id, "ams")),
        )
        .await;
    assert_eq!(
        (status, err["field"].as_str()),
        (422, Some("region")),
        "{err}"
    );
    let (status, err) = api
        .send(
            api.post("/v1/apps/hello/machines")
                .json(&mounting("vol_0000000000000000", "ord")),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["field"], "config.mounts[0].volume");
}

async fn mounted_grows_and_snapshots(api: &Client, id: &str) {
    // Mounted: not destroyed; grown (seen after a restart); snapshotted on its host.
    let (status, err) = api
        .send(api.delete(&format!("/v1/apps/hello/volumes/{id}")))
        .await;
    assert_eq!(status, 409, "{err}");
    let extend = |size: u32| {
        api.request(
            reqwest::Method::PUT,
            &format!("/v1/apps/hello/volumes/{id}/extend"),
        )
        .json(&json!({ "size_gb": size }))
    };
    let (status, grown) = api.send(extend(2)).await;
    assert_eq!(status, 200, "{grown}");
    assert_eq!(grown["volume"]["size_gb"], 2);
    assert_eq!(grown["needs_restart"], true);
    let (status, err) = api.send(extend(2)).await;
    assert_eq!(
        (status, err["field"].as_str()),
        (422, Some("size_gb")),
        "{err}"
    );
    let (status, snap) = api
        .send(api.post(&format!("/v1/apps/hello/volumes/{id}/snapshots")))
        .await;
    assert_eq!(status, 201, "{snap}");
    assert!(snap["size"].as_u64().unwrap() > 0, "{snap}");
    let (_, snaps) = api
        .send(api.get(&format!("/v1/apps/hello/volumes/{id}/snapshots")))
        .await;
    assert_eq!(snaps.as_array().unwrap().len(), 2, "{snaps}");
    assert_eq!(snaps[1]["id"], snap["id"]);
}

async fn updates_free_and_take_it(api: &Client, id: &str, machine: &str) {
    let machine = machine.to_string();
    // An update without the mount frees the volume; one with it takes it back.
    let update = |body: Value| {
        api.post(&format!("/v1/apps/hello/machines/{machine}"))
            .json(&body)
    };
    let (status, m) = api.send(update(json!({"config": {"image": "x"}}))).await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(volume(api, id).await["attached_machine_id"], Value::Null);
    crate::wait_for(api, "hello", &machine, "started").await;
    let (status, m) = api.send(update(mounting(id, "ord"))).await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(
        volume(api, id).await["attached_machine_id"],
        machine.as_str()
    );
    crate::wait_for(api, "hello", &machine, "started").await;
}

/// The machine destroyed, the next one goes to the volume's host.
async fn next_machine_goes_to_its_host(api: &Client, id: &str, host: &str, machine: &str) {
    let host = host.to_string();
    // Its machine destroyed, the volume is free for the next one, again on its host.
    let (status, _) = api
        .send(api.delete(&format!("/v1/apps/hello/machines/{machine}?force=true")))
        .await;
    assert_eq!(status, 200);
    assert_eq!(volume(api, id).await["attached_machine_id"], Value::Null);
    let next = api.create_machine("hello", mounting(id, "ord")).await;
    assert_eq!(next["host_id"], host.as_str());
    let next = next["id"].as_str().unwrap().to_string();
    crate::wait_for(api, "hello", &next, "started").await;
    let (status, _) = api
        .send(api.delete(&format!("/v1/apps/hello/machines/{next}?force=true")))
        .await;
    assert_eq!(status, 200);
}
