use crate::{create_machine, get_machine, machine_body, wait_for};
use aloft_testkit::Cluster;

#[tokio::test]
async fn the_control_plane_keeps_apps_tokens_and_the_index_across_a_restart() {
    let mut cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("hello").await;
    let acme = cluster.new_org("acme").await;
    let id = create_machine(&api, "hello", machine_body("x")).await;
    wait_for(&api, "hello", &id, "started").await;

    cluster.restart_control_plane().await;

    let (status, app) = api.send(api.get("/v1/apps/hello")).await;
    assert_eq!(status, 200, "the token and the app survive: {app}");
    assert_eq!(app["machine_count"], 1);
    assert_eq!(get_machine(&api, "hello", &id).await["state"], "started");
    assert_eq!(crate::list_ids(&api, "hello", "").await, [id.as_str()]);
    let other = api.with_token(acme);
    let (status, apps) = other.send(other.get("/v1/apps")).await;
    assert_eq!(status, 200);
    assert_eq!(apps["total_apps"], 0);
    // Network ids are not reused: personal is 1, acme 2, an org created after the restart 3
    // (visible in its machines' 6PN addresses).
    let third = api.with_token(cluster.new_org("third").await);
    third.create_app("third-app").await;
    let m = third.create_machine("third-app", machine_body("x")).await;
    let ip = m["private_ip"].as_str().unwrap();
    assert!(ip.starts_with("fdaa:0:3:"), "{ip}");
}

#[tokio::test]
async fn machines_stay_reachable_through_agent_restarts_and_crashes() {
    let mut cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("hello").await;
    let id = create_machine(&api, "hello", machine_body("x")).await;
    wait_for(&api, "hello", &id, "started").await;
    let m = aloft_types::MachineId::parse(&id).unwrap();

    cluster.restart_agent(0).await;
    assert_eq!(get_machine(&api, "hello", &id).await["state"], "started");
    cluster.crash_agent(0).await;
    assert_eq!(get_machine(&api, "hello", &id).await["state"], "started");
    assert_eq!(
        cluster.runtime.starts(&m),
        1,
        "the machine was adopted, not restarted"
    );
    assert_eq!(cluster.runtime.live_runs(&m), 1);
}
