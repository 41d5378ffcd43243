use crate::{create_machine, machine_body, machine_path};
use aloft_testkit::Cluster;
use serde_json::json;

#[tokio::test]
async fn a_missing_or_bad_token_is_401_saying_how_to_get_one() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    for path in [
        "/v1/apps",
        "/v1/apps/hello",
        "/v1/apps/hello/machines",
        "/v1/platform/regions",
    ] {
        let (status, body) = api.send(api.anonymous().get(path)).await;
        assert_eq!(status, 401, "{path}: {body}");
        let msg = body["error"].as_str().unwrap();
        assert!(msg.contains("Bearer") && msg.contains("token"), "{msg}");

        let (status, body) = api.send(api.with_token("aloft_0123").get(path)).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains("not valid"));
    }
    let (status, _) = api
        .send(
            api.anonymous()
                .get("/v1/apps")
                .header("authorization", "Basic Zm9vOmJhcg=="),
        )
        .await;
    assert_eq!(status, 401);
    // The internal token is not an org token.
    let (status, _) = api
        .send(
            api.with_token(cluster.internal_token.clone())
                .get("/v1/apps"),
        )
        .await;
    assert_eq!(status, 401);
}

/// `GET /v1/apps/{name}` answers as the reference does (fly-go's `AppNameAvailable` reads the
/// exact texts): 404 `app not found` when no org has the name, 403 `unauthorized` when an app
/// the caller may not see holds it (another org's, or another app's for a deploy token).
#[tokio::test]
async fn getting_an_app_tells_a_free_name_from_a_taken_one_as_the_reference_does() {
    let cluster = Cluster::start().await;
    let mine = cluster.client();
    mine.create_app("secret").await;
    mine.create_app("other").await;
    let theirs = mine.with_token(cluster.new_org("acme").await);

    let (status, body) = theirs.send(theirs.get("/v1/apps/secret")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(body["status"], "forbidden");
    for api in [&mine, &theirs] {
        let (status, body) = api.send(api.get("/v1/apps/nothing-here")).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"], "app not found");
        assert_eq!(body["status"], "not_found");
    }
    let (status, body) = mine.send(mine.get("/v1/apps/secret")).await;
    assert_eq!(status, 200, "{body}");

    let (status, created) = mine
        .send(
            mine.post("/v1/tokens")
                .json(&json!({"scope": "deploy", "app": "secret", "name": "ci"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let deploy = mine.with_token(created["token"].as_str().unwrap());
    let (status, body) = deploy.send(deploy.get("/v1/apps/other")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "unauthorized");
}

#[tokio::test]
async fn another_orgs_app_is_404_on_every_verb_like_a_missing_one() {
    let cluster = Cluster::start().await;
    let mine = cluster.client();
    mine.create_app("secret").await;
    let id = create_machine(&mine, "secret", machine_body("hello:latest")).await;
    let theirs = mine.with_token(cluster.new_org("acme").await);

    let mp = |suffix: &str| machine_path("secret", &id, suffix);
    // Every path but `GET /v1/apps/{name}` (the test above).
    let requests = [
        theirs.delete("/v1/apps/secret"),
        theirs.get("/v1/apps/secret/machines"),
        theirs
            .post("/v1/apps/secret/machines")
            .json(&machine_body("x")),
        theirs.get(&mp("")),
        theirs.post(&mp("")).json(&machine_body("x")),
        theirs.delete(&mp("?force=true")),
        theirs.post(&mp("/stop")),
        theirs.post(&mp("/start")),
        theirs.get(&mp("/wait?state=started&timeout=1")),
        theirs.post(&mp("/lease")).json(&json!({"ttl": 30})),
        theirs.get(&mp("/events")),
        theirs
            .post(&mp("/exec"))
            .json(&json!({"command": ["true"]})),
    ];
    for rb in requests {
        let (status, body) = theirs.send(rb).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(
            body["error"],
            "app `secret` not found; list your apps with `aloft apps list` or GET /v1/apps"
        );
    }
    // Exactly what a missing app looks like.
    let (status, body) = mine.send(mine.get("/v1/apps/nothing-here/machines")).await;
    assert_eq!(status, 404);
    assert_eq!(
        body["error"],
        "app `nothing-here` not found; list your apps with `aloft apps list` or GET /v1/apps"
    );
    // Nothing happened to the machine.
    let m = crate::get_machine(&mine, "secret", &id).await;
    assert_ne!(m["state"], "destroyed");
}

#[tokio::test]
async fn an_org_token_cannot_see_or_use_another_org() {
    let cluster = Cluster::start().await;
    let mine = cluster.client();
    mine.create_app("mine").await;
    let theirs = mine.with_token(cluster.new_org("acme").await);
    theirs.create_app("theirs").await;

    let (status, body) = theirs.send(theirs.get("/v1/apps")).await;
    assert_eq!(status, 200);
    assert_eq!(body["total_apps"], 1);
    assert_eq!(body["apps"][0]["name"], "theirs");
    assert_eq!(body["apps"][0]["organization"]["slug"], "acme");

    let (status, _) = theirs.send(theirs.get("/v1/apps?org_slug=personal")).await;
    assert_eq!(status, 404);
    let (status, _) = theirs
        .send(
            theirs
                .post("/v1/apps")
                .json(&json!({"app_name": "sneaky", "org_slug": "personal"})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = mine.send(mine.get("/v1/apps?org_slug=personal")).await;
    assert_eq!(status, 200);
    assert_eq!(body["total_apps"], 1);
}

#[tokio::test]
async fn hosts_join_the_mesh_after_their_number_and_get_every_member() {
    let cluster = Cluster::start().await;
    let internal = cluster.client().with_token(cluster.internal_token.clone());
    let key = "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=";
    let join = |endpoint: &str, key: &str| json!({"region": "ams", "public_key": key, "endpoint": endpoint});
    // Unknown host, bad endpoint, bad key: 422s that say what to do.
    for (host, body, says) in [
        ("ams-9", join("10.0.0.9:51820", key), "number"),
        ("ams-9", join("10.0.0.9", key), "ip:port"),
        ("ams-9", join("10.0.0.9:51820", "short"), "base64"),
    ] {
        let (status, reply) = internal
            .send(
                internal
                    .request(reqwest::Method::PUT, &format!("/internal/v1/mesh/{host}"))
                    .json(&body),
            )
            .await;
        assert_eq!(status, 422, "{reply}");
        assert!(reply.to_string().contains(says), "{reply}");
    }
    // An org token is not enough.
    let (status, _) = internal
        .send(cluster.client().get("/internal/v1/mesh"))
        .await;
    assert_eq!(status, 401);

    let (status, n) = internal
        .send(internal.post("/internal/v1/hosts/ams-9/number"))
        .await;
    assert_eq!(status, 200, "{n}");
    let (status, peers) = internal
        .send(
            internal
                .request(reqwest::Method::PUT, "/internal/v1/mesh/ams-9")
                .json(&join("10.0.0.9:51820", key)),
        )
        .await;
    assert_eq!(status, 200, "{peers}");
    let me = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["host"] == "ams-9")
        .expect("listed");
    assert_eq!(me["number"], n["number"]);
    assert_eq!(me["endpoint"], "10.0.0.9:51820");
    let (_, listed) = internal.send(internal.get("/internal/v1/mesh")).await;
    assert_eq!(listed, peers);
}

/// A deploy token drives its app's machines on their hosts (create, stop, start, exec, destroy
/// go through the gateway to the agent) and nothing of another app of its org, whose machines'
/// paths are 404 before anything is forwarded.
#[tokio::test]
async fn a_deploy_token_drives_its_apps_machines_only() {
    let cluster = Cluster::start().await;
    let org = cluster.client();
    org.create_app("web").await;
    org.create_app("api").await;
    let theirs = create_machine(&org, "api", machine_body("hello:latest")).await;
    let (status, created) = org
        .send(
            org.post("/v1/tokens")
                .json(&json!({"scope": "deploy", "app": "web", "name": "ci"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let deploy = org.with_token(created["token"].as_str().unwrap());

    let mine = create_machine(&deploy, "web", machine_body("hello:latest")).await;
    crate::wait_for(&deploy, "web", &mine, "started").await;
    for suffix in ["/stop", "/start"] {
        let (status, body) = deploy
            .send(deploy.post(&machine_path("web", &mine, suffix)))
            .await;
        assert_eq!(status, 200, "{suffix}: {body}");
    }
    assert_eq!(
        crate::list_ids(&deploy, "web", "").await,
        std::slice::from_ref(&mine)
    );

    let mp = |suffix: &str| machine_path("api", &theirs, suffix);
    for rb in [
        deploy.get(&mp("")),
        deploy.post(&mp("/stop")),
        deploy.delete(&mp("?force=true")),
        deploy
            .post(&mp("/exec"))
            .json(&json!({"command": ["true"]})),
        deploy.get("/v1/apps/api/machines"),
    ] {
        let (status, body) = deploy.send(rb).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(
            body["error"],
            "app `api` not found; list your apps with `aloft apps list` or GET /v1/apps"
        );
    }
    let m = crate::get_machine(&org, "api", &theirs).await;
    assert_ne!(m["state"], "destroyed");
    assert_ne!(m["state"], "stopped");
}
