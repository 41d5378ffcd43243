//! `/v1/apps/{app}/ip_assignments`: aloft gives apps no addresses of their own, and says so.

use aloft_testkit::Cluster;
use serde_json::json;

#[tokio::test]
async fn apps_have_no_addresses_of_their_own_and_asking_says_why() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("web").await;
    let (status, body) = api.send(api.get("/v1/apps/web/ip_assignments")).await;
    assert_eq!((status, body), (200, json!({"ips": []})));
    let (status, body) = api
        .send(
            api.post("/v1/apps/web/ip_assignments")
                .json(&json!({"type": "v6", "region": "local", "org_slug": "personal"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("no IP addresses of their own") && error.contains("aloft certs add"),
        "{body}"
    );
    let (status, _) = api
        .send(api.delete("/v1/apps/web/ip_assignments/fdaa::1"))
        .await;
    assert_eq!(status, 404);
    // Another org's app is not there.
    let other = api.with_token(cluster.new_org("acme").await);
    let (status, _) = other.send(other.get("/v1/apps/web/ip_assignments")).await;
    assert_eq!(status, 404);
}
