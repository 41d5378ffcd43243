//! Releases keep the config file they deployed; `GET /v1/apps/{app}/config` gives back the newest
//! complete one's (`aloft config save`). And `GET /v1/orgs`.

use aloft_testkit::Cluster;
use serde_json::json;

#[tokio::test]
async fn the_newest_complete_release_gives_back_its_config() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("hello").await;
    let (status, body) = api.send(api.get("/v1/apps/hello/config")).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no deployed config"),
        "{body}"
    );
    let release = |config: &str| {
        api.post("/v1/apps/hello/releases")
            .json(&json!({"image": "hello:v1", "strategy": "rolling", "config": config}))
    };
    let finish = |version: u64, status: &str| {
        api.request(
            reqwest::Method::PATCH,
            &format!("/v1/apps/hello/releases/{version}"),
        )
        .json(&json!({ "status": status }))
    };
    let (status, body) = api.send(release("app = \"hello\"\n# v1\n")).await;
    assert_eq!(status, 201, "{body}");
    assert!(
        body.get("config").is_none(),
        "listings leave it out: {body}"
    );
    // A running release's config is not the deployed one yet.
    let (status, _) = api.send(api.get("/v1/apps/hello/config")).await;
    assert_eq!(status, 404);
    api.send(finish(1, "complete")).await;
    let (_, _) = api.send(release("app = \"hello\"\n# v2\n")).await;
    api.send(finish(2, "failed")).await;
    let (status, body) = api.send(api.get("/v1/apps/hello/config")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["version"], &body["config"]),
        (&json!(1), &json!("app = \"hello\"\n# v1\n"))
    );

    // Bounded, and only the app's org sees it.
    let (status, body) = api.send(release(&"#".repeat(64 * 1024 + 1))).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("config")));
    let other = api.with_token(cluster.new_org("acme").await);
    let (status, _) = other.send(other.get("/v1/apps/hello/config")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_token_lists_its_own_org() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    let (status, body) = api.send(api.get("/v1/orgs")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"orgs": [{"name": "personal", "slug": "personal"}]})
    );
    let other = api.with_token(cluster.new_org("acme").await);
    let (_, body) = other.send(other.get("/v1/orgs")).await;
    assert_eq!(body["orgs"][0]["slug"], "acme");
    let anonymous = api.with_token("nope");
    let (status, _) = anonymous.send(anonymous.get("/v1/orgs")).await;
    assert_eq!(status, 401);
}
