//! The HTTP edge's own tests: what a caller sees when the control plane itself fails.

use crate::{ControlPlane, ControlPlaneConfig, HostnameGrant, HostnamePolicy};
use axum::http::StatusCode;

/// A control plane serving on a free port, with the org `personal` and a token for it.
async fn serving() -> (tempfile::TempDir, String, String) {
    let (dir, url, cp) = serving_with(HostnamePolicy::default()).await;
    cp.ensure_org("personal").await.unwrap();
    let token = cp.create_token("personal", "ci-bot").await.unwrap();
    (dir, url, token)
}

async fn serving_with(hostnames: HostnamePolicy) -> (tempfile::TempDir, String, ControlPlane) {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::open(ControlPlaneConfig {
        data_dir: dir.path().join("cp"),
        internal_token: "internal-test-token".into(),
        default_region: "local".into(),
        hostnames,
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = cp.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (dir, url, cp)
}

/// A hostname granted to one org cannot be claimed by another first, even one that asks
/// before the owner does.
#[tokio::test]
async fn a_hostname_goes_only_to_the_org_the_operator_granted_it_to() {
    let policy = HostnamePolicy {
        allow_any: false,
        grants: vec![HostnameGrant {
            org: "acme".into(),
            names: vec!["*.acme.test".into()],
        }],
    };
    let (_dir, url, cp) = serving_with(policy).await;
    let http = reqwest::Client::new();
    let mut tokens = Vec::new();
    for org in ["evil", "acme"] {
        cp.ensure_org(org).await.unwrap();
        let token = cp.create_token(org, "t").await.unwrap();
        let resp = http
            .post(format!("{url}/v1/apps"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"app_name": format!("{org}-web")}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
        tokens.push(token);
    }
    let add = |token: &str, app: &str, hostname: &str| {
        http.post(format!("{url}/v1/apps/{app}/certificates/acme"))
            .bearer_auth(token)
            .json(&serde_json::json!({"hostname": hostname}))
            .send()
    };
    let resp = add(&tokens[0], "evil-web", "www.acme.test").await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = resp.text().await.unwrap();
    assert!(body.contains("not approved for org `evil`"), "{body}");
    let resp = add(&tokens[1], "acme-web", "www.acme.test").await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let resp = add(&tokens[1], "acme-web", "www.example.test")
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_store_failure_answers_500_without_sqlite_text_or_paths() {
    let (dir, url, token) = serving().await;
    // Another connection takes the `apps` table away: listing apps now fails in SQLite.
    let db = dir.path().join("cp").join("control.db");
    let other = rusqlite::Connection::open(&db).unwrap();
    other
        .execute_batch("ALTER TABLE apps RENAME TO apps_elsewhere")
        .unwrap();
    drop(other);

    let resp = reqwest::Client::new()
        .get(format!("{url}/v1/apps"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = resp.text().await.unwrap();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let msg = json["error"].as_str().unwrap();
    for leak in ["no such table", "apps", "SELECT", "sqlite", "control.db"] {
        assert!(!body.contains(leak), "`{leak}` reached the caller: {body}");
    }
    let data_dir = dir.path().to_string_lossy();
    assert!(!body.contains(data_dir.as_ref()), "{body}");
    assert!(msg.contains("error id "), "{msg}");
    assert!(msg.contains("retry"), "{msg}");
}
