use crate::{create_machine, get_machine, list_ids, machine_body, machine_path, wait_for};
use aloft_testkit::{Cluster, ClusterOptions, HostOptions};
use serde_json::{Value, json};

#[tokio::test]
async fn create_in_the_default_or_a_named_region() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("hello").await;
    let m = api
        .create_machine("hello", machine_body("hello:latest"))
        .await;
    assert_eq!(m["region"], "local");
    assert_eq!(m["host_id"], cluster.host_id(0));
    assert_eq!(m["config"]["image"], "hello:latest");
    let id = m["id"].as_str().unwrap();
    wait_for(&api, "hello", id, "started").await;

    let m = api
        .create_machine(
            "hello",
            json!({"config": {"image": "hello:latest"}, "region": "local"}),
        )
        .await;
    assert_eq!(m["region"], "local");
}

#[tokio::test]
async fn an_unknown_region_is_422_listing_the_regions() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("hello").await;
    let (status, body) = api
        .send(
            api.post("/v1/apps/hello/machines")
                .json(&json!({"config": {"image": "x"}, "region": "mars"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "region");
    assert_eq!(body["allowed"], json!(["local"]));
    assert!(body["error"].as_str().unwrap().contains("local"));
}

#[tokio::test]
async fn no_room_is_503_naming_the_region_and_free_capacity() {
    let cluster = Cluster::start_with(ClusterOptions::with_hosts(vec![
        HostOptions::new("local").memory_mb(1024),
    ]))
    .await;
    let api = cluster.client();
    api.create_app("hello").await;
    let big = json!({"config": {"image": "x", "guest": {"cpus": 1, "memory_mb": 2048}}});
    let (status, body) = api
        .send(api.post("/v1/apps/hello/machines").json(&big))
        .await;
    assert_eq!(status, 503, "{body}");
    // The reference's code for it (fly-go's flaps suggests another region on it).
    assert_eq!(body["status"], "insufficient_capacity");
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains("`local`") && msg.contains("1024 MB"), "{msg}");
    // A machine that fits still goes in.
    api.create_machine("hello", machine_body("x")).await;
}

/// A size of the reference that aloft long refused (fly-go's `performance-6x` preset: 6
/// dedicated CPUs, 12288 MB) is placed and started.
#[tokio::test]
async fn a_performance_6x_machine_is_placed() {
    let cluster = Cluster::start_with(ClusterOptions::with_hosts(vec![
        HostOptions::new("local").cpus(8).memory_mb(16384),
    ]))
    .await;
    let api = cluster.client();
    api.create_app("hello").await;
    let guest = json!({"cpu_kind": "performance", "cpus": 6, "memory_mb": 12288});
    let m = api
        .create_machine("hello", json!({"config": {"image": "x", "guest": guest}}))
        .await;
    assert_eq!(m["config"]["guest"], guest);
    crate::wait_for(&api, "hello", m["id"].as_str().unwrap(), "started").await;
}

#[tokio::test]
async fn skip_launch_leaves_the_machine_created() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("hello").await;
    let m = api
        .create_machine(
            "hello",
            json!({"config": {"image": "x"}, "skip_launch": true}),
        )
        .await;
    assert_eq!(m["state"], "created");
    let id = m["id"].as_str().unwrap();
    assert_eq!(get_machine(&api, "hello", id).await["state"], "created");
    let (status, _) = api
        .send(api.post(&machine_path("hello", id, "/start")))
        .await;
    assert_eq!(status, 200);
    wait_for(&api, "hello", id, "started").await;
}

#[tokio::test]
async fn machine_names_are_unique_among_live_machines_of_an_app() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("hello").await;
    api.create_app("other").await;
    let named = json!({"config": {"image": "x"}, "name": "web-1"});
    let first = api.create_machine("hello", named.clone()).await;
    assert_eq!(first["name"], "web-1");
    let (status, body) = api
        .send(api.post("/v1/apps/hello/machines").json(&named))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("web-1"));
    // Another app may use the name.
    api.create_machine("other", named.clone()).await;
    // Renaming another machine onto it clashes too.
    let second = create_machine(&api, "hello", machine_body("x")).await;
    let (status, _) = api
        .send(
            api.post(&machine_path("hello", &second, ""))
                .json(&json!({"config": {"image": "x"}, "name": "web-1"})),
        )
        .await;
    assert_eq!(status, 409);
    // Once the first is destroyed, the name is free.
    let id = first["id"].as_str().unwrap();
    let (status, body) = api
        .send(api.delete(&machine_path("hello", id, "?force=true")))
        .await;
    assert_eq!(status, 200, "{body}");
    api.create_machine("hello", named).await;
}

#[tokio::test]
async fn lease_ttl_on_create_returns_a_nonce_and_the_lease_is_enforced() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("hello").await;
    let m = api
        .create_machine("hello", json!({"config": {"image": "x"}, "lease_ttl": 60}))
        .await;
    let nonce = m["nonce"].as_str().expect("a nonce").to_string();
    let id = m["id"].as_str().unwrap();
    wait_for(&api, "hello", id, "started").await;

    // Without the nonce a write conflicts; with it, it goes through.
    let stop = machine_path("hello", id, "/stop");
    let (status, body) = api.send(api.post(&stop)).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = api
        .send(api.post(&stop).header("fly-machine-lease-nonce", &nonce))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, lease) = api
        .send(api.get(&machine_path("hello", id, "/lease")))
        .await;
    assert_eq!(status, 200);
    assert_eq!(lease["data"]["nonce"], nonce.as_str());
}

#[tokio::test]
async fn leases_taken_through_the_gateway_conflict() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("hello").await;
    let id = create_machine(&api, "hello", machine_body("x")).await;
    wait_for(&api, "hello", &id, "started").await;
    let lease_path = machine_path("hello", &id, "/lease");
    let (status, lease) = api
        .send(api.post(&lease_path).json(&json!({"ttl": 30})))
        .await;
    assert_eq!(status, 200, "{lease}");
    let nonce = lease["data"]["nonce"].as_str().unwrap().to_string();
    assert!(!lease["data"]["owner"].as_str().unwrap().is_empty());

    let (status, _) = api
        .send(api.post(&lease_path).json(&json!({"ttl": 30})))
        .await;
    assert_eq!(status, 409, "a second lease conflicts");
    let (status, _) = api
        .send(api.post(&machine_path("hello", &id, "/restart")))
        .await;
    assert_eq!(status, 409, "a write without the nonce conflicts");
    let (status, _) = api
        .send(
            api.delete(&lease_path)
                .header("fly-machine-lease-nonce", &nonce),
        )
        .await;
    assert!((200..300).contains(&status));
    let (status, _) = api
        .send(api.post(&machine_path("hello", &id, "/restart")))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn list_filters_by_region_state_metadata_and_deleted() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("hello").await;
    let web = |role: &str| json!({"config": {"image": "x", "metadata": {"role": role}}});
    let a = create_machine(&api, "hello", web("web")).await;
    let b = create_machine(&api, "hello", web("worker")).await;
    let c = create_machine(&api, "hello", web("web")).await;
    for id in [&a, &b, &c] {
        wait_for(&api, "hello", id, "started").await;
    }
    let (status, _) = api
        .send(api.post(&machine_path("hello", &b, "/stop")))
        .await;
    assert_eq!(status, 200);
    wait_for(&api, "hello", &b, "stopped").await;
    let (status, _) = api
        .send(api.delete(&machine_path("hello", &c, "?force=true")))
        .await;
    assert_eq!(status, 200);
    wait_for(&api, "hello", &c, "destroyed").await;

    assert_eq!(list_ids(&api, "hello", "").await, [a.clone(), b.clone()]);
    assert_eq!(list_ids(&api, "hello", "?region=local").await.len(), 2);
    assert!(list_ids(&api, "hello", "?region=ord").await.is_empty());
    assert_eq!(
        list_ids(&api, "hello", "?state=stopped").await,
        [b.as_str()]
    );
    assert_eq!(
        list_ids(&api, "hello", "?state=started,stopped")
            .await
            .len(),
        2
    );
    assert_eq!(
        list_ids(&api, "hello", "?metadata.role=web").await,
        [a.as_str()]
    );
    assert_eq!(
        list_ids(&api, "hello", "?include_deleted=true").await,
        [a.clone(), b.clone(), c.clone()]
    );
    let (_, app) = api.send(api.get("/v1/apps/hello")).await;
    assert_eq!(app["machine_count"], 2);
}

#[tokio::test]
async fn update_makes_a_new_version() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("hello").await;
    let m = api.create_machine("hello", machine_body("hello:1")).await;
    let id = m["id"].as_str().unwrap();
    wait_for(&api, "hello", id, "started").await;
    let (status, updated) = api
        .send(
            api.post(&machine_path("hello", id, ""))
                .json(&json!({"config": {"image": "hello:2", "env": {"A": "1"}}})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_ne!(updated["instance_id"], m["instance_id"]);
    assert_eq!(updated["config"]["image"], "hello:2");
    wait_for(&api, "hello", id, "started").await;
    let got = get_machine(&api, "hello", id).await;
    assert_eq!(got["instance_id"], updated["instance_id"]);
    let (status, versions) = api
        .send(api.get(&machine_path("hello", id, "/versions")))
        .await;
    assert_eq!(status, 200);
    assert_eq!(versions.as_array().unwrap().len(), 2, "{versions}");

    // An invalid update is refused by the agent with the field named.
    let (status, body) = api
        .send(
            api.post(&machine_path("hello", id, ""))
                .json(&json!({"config": {"image": "x", "guest": {"cpus": 3}}})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["field"], "config.guest.cpus");
}

#[tokio::test]
async fn stop_start_restart_signal_suspend() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("hello").await;
    let id = create_machine(&api, "hello", machine_body("x")).await;
    let op = |suffix: &str| machine_path("hello", &id, suffix);
    wait_for(&api, "hello", &id, "started").await;

    let (status, body) = api
        .send(
            api.post(&op("/stop"))
                .json(&json!({"signal": "SIGTERM", "timeout": "5s"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wait_for(&api, "hello", &id, "stopped").await;

    let (status, body) = api.send(api.post(&op("/start"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["previous_state"], "stopped");
    wait_for(&api, "hello", &id, "started").await;

    let before = get_machine(&api, "hello", &id).await;
    let (status, body) = api.send(api.post(&op("/restart"))).await;
    assert_eq!(status, 200, "{body}");
    wait_for(&api, "hello", &id, "started").await;
    let m = aloft_types::MachineId::parse(&id).unwrap();
    assert!(cluster.runtime.starts(&m) >= 3, "{before}");

    let (status, body) = api
        .send(api.post(&op("/signal")).json(&json!({"signal": 1})))
        .await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = api.send(api.post(&op("/suspend"))).await;
    assert_eq!(status, 200, "{body}");
    let target = if body["suspended"] == true {
        "suspended"
    } else {
        "stopped"
    };
    wait_for(&api, "hello", &id, target).await;
}

#[tokio::test]
async fn wait_checks_its_timeout_and_times_out_with_408() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("hello").await;
    let id = create_machine(&api, "hello", machine_body("x")).await;
    wait_for(&api, "hello", &id, "started").await;
    for timeout in ["0", "61"] {
        let (status, body) = api
            .send(api.get(&machine_path(
                "hello",
                &id,
                &format!("/wait?state=stopped&timeout={timeout}"),
            )))
            .await;
        assert_eq!(status, 400, "timeout={timeout}: {body}");
    }
    let (status, body) = api
        .send(api.get(&machine_path("hello", &id, "/wait?state=stopped&timeout=1")))
        .await;
    assert_eq!(status, 408, "{body}");
}

#[tokio::test]
async fn cordon_metadata_events_and_exec() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("hello").await;
    let id = create_machine(&api, "hello", machine_body("x")).await;
    let op = |suffix: &str| machine_path("hello", &id, suffix);
    wait_for(&api, "hello", &id, "started").await;

    let (status, _) = api.send(api.post(&op("/cordon"))).await;
    assert_eq!(status, 200);
    assert_eq!(get_machine(&api, "hello", &id).await["cordoned"], true);
    let (status, _) = api.send(api.post(&op("/uncordon"))).await;
    assert_eq!(status, 200);
    assert_eq!(get_machine(&api, "hello", &id).await["cordoned"], false);

    let (status, _) = api
        .send(
            api.post(&op("/metadata/role"))
                .json(&json!({"value": "web"})),
        )
        .await;
    assert!((200..300).contains(&status));
    let (status, meta) = api.send(api.get(&op("/metadata"))).await;
    assert_eq!(status, 200);
    assert_eq!(meta["role"], "web");
    let (status, _) = api.send(api.delete(&op("/metadata/role"))).await;
    assert!((200..300).contains(&status));
    let (_, meta) = api.send(api.get(&op("/metadata"))).await;
    assert_eq!(meta.get("role"), None, "{meta}");

    let (status, events) = api.send(api.get(&op("/events"))).await;
    assert_eq!(status, 200);
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(kinds.contains(&"launch"), "{events}");

    let (status, out) = api
        .send(
            api.post(&op("/exec"))
                .json(&json!({"command": ["echo", "hello"]})),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["exit_code"], 0);
    assert_eq!(out["stdout"], "hello\n");
}

#[tokio::test]
async fn destroy_needs_force_when_started() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("hello").await;
    let id = create_machine(&api, "hello", machine_body("x")).await;
    wait_for(&api, "hello", &id, "started").await;
    let (status, body) = api.send(api.delete(&machine_path("hello", &id, ""))).await;
    assert_eq!(status, 412, "{body}");
    let (status, body) = api
        .send(api.delete(&machine_path("hello", &id, "?force=true")))
        .await;
    assert_eq!(status, 200, "{body}");
    wait_for(&api, "hello", &id, "destroyed").await;
    let (_, app) = api.send(api.get("/v1/apps/hello")).await;
    assert_eq!(app["machine_count"], 0);
}

#[tokio::test]
async fn bad_bodies_are_400_413_and_422() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("hello").await;
    let create = || api.post("/v1/apps/hello/machines");

    let (status, body) = api.send(create().body("{\"config\": ")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("JSON"));

    let huge = json!({"config": {"image": "x", "env": {"BIG": "x".repeat(1024 * 1024)}}});
    let (status, body) = api.send(create().json(&huge)).await;
    assert_eq!(status, 413, "{body}");

    let bad: Value = json!({"config": {"image": "x", "guest": {"memory_mb": 300}}});
    let (status, body) = api.send(create().json(&bad)).await;
    assert_eq!(status, 422);
    assert_eq!(body["field"], "config.guest.memory_mb");

    let gpu: Value = json!({"config": {"image": "x", "guest": {"gpus": 1}}});
    let (status, body) = api.send(create().json(&gpu)).await;
    assert_eq!(status, 422, "a capability aloft lacks: {body}");
    assert_eq!(body["field"], "config.guest.gpus");

    let (status, body) = api.send(create().json(&json!({"config": {}}))).await;
    assert_eq!(status, 422, "{body}");

    // Nothing was created.
    assert!(list_ids(&api, "hello", "").await.is_empty());
}
