use aloft_testkit::{Cluster, ClusterOptions, HostOptions};
use serde_json::{Value, json};

#[tokio::test]
async fn an_apps_machines_spread_across_a_regions_hosts_most_free_memory_first() {
    let cluster = Cluster::start_with(ClusterOptions::with_hosts(vec![
        HostOptions::new("ord").memory_mb(4096),
        HostOptions::new("ord").memory_mb(8192),
        HostOptions::new("ams").memory_mb(2048),
    ]))
    .await;
    assert_eq!(
        [cluster.host_id(0), cluster.host_id(1), cluster.host_id(2)],
        ["ord-1", "ord-2", "ams-1"]
    );
    let api = cluster.client();
    api.create_app("hello").await;
    let body = |region: &str| json!({"config": {"image": "x", "guest": {"cpus": 1, "memory_mb": 2048}}, "region": region});

    let (_, regions) = api.send(api.get("/v1/platform/regions")).await;
    let codes: Vec<&str> = regions["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["ams", "ord"]);
    assert_eq!(regions["regions"][1]["hosts"], 2);
    assert_eq!(regions["regions"][1]["name"], "Chicago, Illinois (US)");

    // ord-2 has the most free memory: the first goes there; the second to ord-1, which has
    // none of the app's machines yet (a host down takes only part of an app with it).
    for host in ["ord-2", "ord-1"] {
        let m = api.create_machine("hello", body("ord")).await;
        assert_eq!(m["host_id"], host, "{m}");
        assert_eq!(m["region"], "ord");
    }
    // The default region is the first host's.
    let m = api
        .create_machine("hello", json!({"config": {"image": "x"}}))
        .await;
    assert_eq!(m["region"], "ord");

    let m = api.create_machine("hello", body("ams")).await;
    assert_eq!(m["host_id"], "ams-1");
    let (status, err) = api
        .send(api.post("/v1/apps/hello/machines").json(&body("ams")))
        .await;
    assert_eq!(status, 503, "ams-1 is full: {err}");

    let (_, regions) = api.send(api.get("/v1/platform/regions")).await;
    let ams: &Value = &regions["regions"][0];
    assert_eq!(ams["free_memory_mb"], 0);

    // The listing merges every host's machines.
    let ids = crate::list_ids(&api, "hello", "").await;
    assert_eq!(ids.len(), 4);
    let (_, in_ams) = api
        .send(api.get("/v1/apps/hello/machines?region=ams"))
        .await;
    assert_eq!(in_ams.as_array().unwrap().len(), 1);
}
