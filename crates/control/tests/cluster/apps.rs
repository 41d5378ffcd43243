use crate::{create_machine, machine_body, machine_path};
use aloft_testkit::Cluster;
use serde_json::json;

#[tokio::test]
async fn app_names_must_be_dns_labels() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    let long = "a".repeat(64);
    for name in ["", "Hello", "-app", "app-", "my_app", "a.b", long.as_str()] {
        let (status, body) = api
            .send(api.post("/v1/apps").json(&json!({ "app_name": name })))
            .await;
        assert_eq!(status, 422, "{name:?}: {body}");
        assert_eq!(body["field"], "app_name");
    }
    api.create_app(&"a".repeat(63)).await;
    api.create_app("my-app-2").await;
}

#[tokio::test]
async fn app_create_bodies_are_checked() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    let (status, _) = api.send(api.post("/v1/apps").body("{\"app_name\": ")).await;
    assert_eq!(status, 400);
    let (status, body) = api
        .send(api.post("/v1/apps").json(&json!({"colour": "red"})))
        .await;
    assert_eq!(status, 422);
    assert!(
        body["error"].as_str().unwrap().contains("app_name"),
        "{body}"
    );
    // As fly-go sends it: `name`, an empty network and role, fields aloft does not know.
    let (status, body) = api
        .send(api.post("/v1/apps?wait=true").json(&json!({
            "name": "x", "org_slug": "personal", "network": "", "app_role_id": "", "colour": "red"
        })))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "x");
    let (status, body) = api.send(api.get("/v1/apps?org_slug=")).await;
    assert_eq!(status, 200, "an empty org_slug is the token's org: {body}");
    assert_eq!(body["apps"][0]["name"], "x");
}

#[tokio::test]
async fn a_duplicate_app_is_409_across_orgs() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("hello").await;
    let (status, body) = api
        .send(api.post("/v1/apps").json(&json!({"app_name": "hello"})))
        .await;
    assert_eq!(status, 409, "{body}");
    // The reference's code, which fly-go's IsNameTakenError reads.
    assert_eq!(body["status"], "name_taken");
    let other = api.with_token(cluster.new_org("acme").await);
    let (status, body) = other
        .send(other.post("/v1/apps").json(&json!({"app_name": "hello"})))
        .await;
    assert_eq!(status, 409, "app names are global");
    assert_eq!(body["status"], "name_taken");
}

#[tokio::test]
async fn apps_count_machines_and_deleting_one_destroys_its_machines() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    let app = api.create_app("hello").await;
    assert_eq!(app["name"], "hello");
    assert_eq!(app["organization"]["slug"], "personal");
    assert_eq!(app["machine_count"], 0);

    let a = create_machine(&api, "hello", machine_body("hello:1")).await;
    let b = create_machine(
        &api,
        "hello",
        json!({"config": {"image": "hello:1"}, "skip_launch": true}),
    )
    .await;
    crate::wait_for(&api, "hello", &a, "started").await;
    let (status, app) = api.send(api.get("/v1/apps/hello")).await;
    assert_eq!(status, 200);
    assert_eq!(app["machine_count"], 2);
    let (_, list) = api.send(api.get("/v1/apps")).await;
    assert_eq!(list["apps"][0]["machine_count"], 2);

    let (status, body) = api.send(api.delete("/v1/apps/hello")).await;
    assert_eq!(status, 202, "{body}");
    let (status, _) = api.send(api.get("/v1/apps/hello")).await;
    assert_eq!(status, 404);
    // The agent destroyed both machines (the started one forcibly).
    for id in [&a, &b] {
        let m = aloft_types::MachineId::parse(id).unwrap();
        assert_eq!(cluster.runtime.live_runs(&m), 0, "{id} still runs");
    }
    let http = reqwest::Client::new();
    for id in [&a, &b] {
        let resp = http
            .get(format!(
                "{}{}",
                cluster.agent_url(0),
                machine_path("hello", id, "")
            ))
            .bearer_auth(cluster.host_keys(0).agent)
            .send()
            .await
            .unwrap();
        let m: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(m["state"], "destroyed", "{m}");
    }

    // The name is free again, and the new app does not see the old machines.
    api.create_app("hello").await;
    assert!(
        crate::list_ids(&api, "hello", "?include_deleted=true")
            .await
            .is_empty()
    );
    let (status, _) = api.send(api.get(&machine_path("hello", &a, ""))).await;
    assert_eq!(status, 404);
}
