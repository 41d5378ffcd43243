//! Token scopes and revocation at the registry: a revoked token is refused on the very next
//! request (nothing is cached, the bearer token is the API token), and a deploy token reaches only
//! its app's repositories (`<org>/<app>[/...]`).

mod common;

use aloft_registry::StaticTokens;
use common::*;
use reqwest::{Method, StatusCode};
use std::sync::Arc;

const DEPLOY_WEB: &str = "deploy-web-token";

fn table() -> Arc<StaticTokens> {
    Arc::new(
        StaticTokens::new([(ACME_TOKEN, "acme"), ("acme-token-2", "acme")])
            .with_deploy_token(DEPLOY_WEB, "acme", "web"),
    )
}

/// A token revoked between two requests is refused on the second, by Basic auth, as a bearer
/// token it was given by the token endpoint, and at the token endpoint itself.
#[tokio::test]
async fn a_revoked_token_is_refused_on_the_next_request() {
    let tokens = table();
    let reg = TestRegistry::start_with_tokens(tokens.clone()).await;
    let acme = reg.client(ACME_TOKEN);
    let image = TestImage::oci(31, &[300]);
    acme.push_image("acme/web", "v1", &image).await;
    let http = reqwest::Client::new();
    let bearer = |token: &str| {
        http.get(format!("{}/v2/acme/web/manifests/v1", reg.url))
            .bearer_auth(token)
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
    };
    let token_endpoint = || {
        http.get(format!(
            "{}/v2/token?scope=repository:acme/web:pull",
            reg.url
        ))
        .basic_auth("x", Some(ACME_TOKEN))
    };
    let issued: serde_json::Value = token_endpoint().send().await.unwrap().json().await.unwrap();
    let issued = issued["token"].as_str().unwrap().to_string();
    assert_eq!(
        bearer(&issued).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(acme.pull_image("acme/web", "v1").await.layers, image.layers);

    tokens.revoke(ACME_TOKEN);

    let raw = reg.raw(ACME_TOKEN);
    for (method, path) in [
        (Method::GET, "/v2/"),
        (Method::GET, "/v2/acme/web/manifests/v1"),
        (Method::GET, "/v2/acme/web/tags/list"),
        (Method::POST, "/v2/acme/web/blobs/uploads/"),
        (Method::GET, "/v2/_catalog"),
    ] {
        let response = raw.req(method.clone(), path).send().await.unwrap();
        let (status, code, message) = error_code(response).await;
        assert_eq!(
            (status, code.as_str()),
            (401, "UNAUTHORIZED"),
            "{method} {path}"
        );
        assert!(message.contains("revoked"), "{message}");
    }
    assert_eq!(
        bearer(&issued).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        token_endpoint().send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // The org's other token is untouched.
    let other = reg.client("acme-token-2");
    assert_eq!(
        other.pull_image("acme/web", "v1").await.layers,
        image.layers
    );
}

/// A deploy token for `web` pushes and pulls `acme/web` and `acme/web/...`; every other
/// repository of its org is 403 `DENIED` (naming what it may use), exists or not, and the catalog
/// lists only its app's.
#[tokio::test]
async fn a_deploy_token_reaches_its_apps_repositories_only() {
    let reg = TestRegistry::start_with_tokens(table()).await;
    let org = reg.client(ACME_TOKEN);
    let deploy = reg.client(DEPLOY_WEB);
    let image = TestImage::oci(32, &[200]);
    org.push_image("acme/api", "v1", &image).await;
    deploy.push_image("acme/web", "v1", &image).await;
    deploy.push_image("acme/web/worker", "v1", &image).await;
    assert_eq!(
        deploy.pull_image("acme/web", "v1").await.layers,
        image.layers
    );
    assert_eq!(
        org.pull_image("acme/web/worker", "v1").await.layers,
        image.layers
    );

    let raw = reg.raw(DEPLOY_WEB);
    for repo in ["acme/api", "acme/webby", "acme/nothing-here"] {
        for (method, path) in [
            (Method::GET, format!("/v2/{repo}/manifests/v1")),
            (Method::PUT, format!("/v2/{repo}/manifests/v2")),
            (Method::GET, format!("/v2/{repo}/tags/list")),
            (Method::POST, format!("/v2/{repo}/blobs/uploads/")),
        ] {
            let response = raw.req(method.clone(), &path).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
            let (_, code, message) = error_code(response).await;
            assert_eq!(code, "DENIED", "{method} {path}");
            assert!(message.contains("deploy token for app `web`"), "{message}");
        }
    }
    let response = raw.req(Method::GET, "/v2/_catalog").send().await.unwrap();
    let listed: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        listed["repositories"],
        serde_json::json!(["acme/web", "acme/web/worker"])
    );
}
