//! Tokens over real HTTP against a control plane without hosts: scopes across two apps, expiry,
//! revocation (immediate, at the API and at the internal check the registry uses) and what the
//! list shows.

use crate::{ControlPlane, ControlPlaneConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const INTERNAL: &str = "internal-test-token";

struct Api {
    _dir: tempfile::TempDir,
    url: String,
    org_token: String,
    http: reqwest::Client,
    cp: ControlPlane,
}

impl Api {
    /// A control plane on a free port with the orgs `personal` (apps `web` and `api`) and `acme`
    /// (app `theirs`).
    async fn start() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let cp = ControlPlane::open(ControlPlaneConfig {
            data_dir: dir.path().join("cp"),
            internal_token: INTERNAL.into(),
            default_region: "local".into(),
            hostnames: crate::HostnamePolicy::allow_any(),
        })
        .await
        .unwrap();
        cp.ensure_org("personal").await.unwrap();
        cp.ensure_org("acme").await.unwrap();
        let org_token = cp.create_token("personal", "owner").await.unwrap();
        let acme = cp.create_token("acme", "acme-owner").await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = cp.router();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let api = Api {
            _dir: dir,
            url,
            org_token,
            http: reqwest::Client::new(),
            cp,
        };
        for (token, app) in [
            (&api.org_token, "web"),
            (&api.org_token, "api"),
            (&acme, "theirs"),
        ] {
            let (status, body) = api
                .call(
                    token,
                    Method::POST,
                    "/v1/apps",
                    Some(json!({"app_name": app})),
                )
                .await;
            assert_eq!(status, 201, "{body}");
        }
        api
    }

    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Creates a token with the org token; returns `(id, token)`.
    async fn create(&self, body: Value) -> (String, String) {
        let (status, body) = self
            .call(&self.org_token, Method::POST, "/v1/tokens", Some(body))
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["id"].as_str().unwrap().to_string(),
            body["token"].as_str().unwrap().to_string(),
        )
    }

    async fn verify(&self, token: &str) -> (StatusCode, Value) {
        self.call(
            INTERNAL,
            Method::POST,
            "/internal/v1/tokens/verify",
            Some(json!({ "token": token })),
        )
        .await
    }
}

fn missing(app: &str) -> String {
    format!("app `{app}` not found; list your apps with `aloft apps list` or GET /v1/apps")
}

/// A deploy token for `web` reads and changes `web` (its secrets, releases, volumes, machines);
/// `api` of the same org and another org's app are 404 exactly like a missing app; it cannot
/// create or delete apps or touch tokens (403).
#[tokio::test]
async fn a_deploy_token_reaches_its_own_app_only() {
    let api = Api::start().await;
    let (_, deploy) = api
        .create(json!({"scope": "deploy", "app": "web", "name": "ci"}))
        .await;

    let (status, body) = api.call(&deploy, Method::GET, "/v1/apps", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total_apps"], 1, "{body}");
    assert_eq!(body["apps"][0]["name"], "web");

    let secret = json!({"values": {"A": "1"}});
    let release = json!({"image": "web:v1", "strategy": "rolling"});
    let own = [
        (Method::GET, "/v1/apps/web", None),
        (Method::POST, "/v1/apps/web/secrets", Some(secret.clone())),
        (Method::GET, "/v1/apps/web/secrets", None),
        (Method::POST, "/v1/apps/web/releases", Some(release.clone())),
        (Method::GET, "/v1/apps/web/releases", None),
        (Method::GET, "/v1/apps/web/volumes", None),
        (Method::GET, "/v1/apps/web/machines", None),
        (Method::GET, "/v1/apps/web/certificates", None),
    ];
    for (method, path, body) in own {
        let (status, answer) = api.call(&deploy, method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {answer}");
    }

    for app in ["api", "theirs", "nothing-here"] {
        // Reading the app answers the reference's texts: a name held by an app the token may
        // not see is 403 `unauthorized`, a free one 404 `app not found`.
        let (status, answer) = api
            .call(&deploy, Method::GET, &format!("/v1/apps/{app}"), None)
            .await;
        let (want_status, want) = match app {
            "nothing-here" => (404, "app not found"),
            _ => (403, "unauthorized"),
        };
        assert_eq!(status, want_status, "GET {app}: {answer}");
        assert_eq!(answer["error"], want, "GET {app}");
        let paths = [
            (Method::DELETE, format!("/v1/apps/{app}"), None),
            (
                Method::POST,
                format!("/v1/apps/{app}/secrets"),
                Some(secret.clone()),
            ),
            (Method::GET, format!("/v1/apps/{app}/secrets"), None),
            (
                Method::POST,
                format!("/v1/apps/{app}/releases"),
                Some(release.clone()),
            ),
            (Method::GET, format!("/v1/apps/{app}/releases"), None),
            (Method::GET, format!("/v1/apps/{app}/volumes"), None),
            (Method::GET, format!("/v1/apps/{app}/machines"), None),
            (
                Method::POST,
                format!("/v1/apps/{app}/machines"),
                Some(json!({"config": {"image": "x"}})),
            ),
            (
                Method::POST,
                format!("/v1/apps/{app}/machines/0123/stop"),
                None,
            ),
            (Method::GET, format!("/v1/apps/{app}/certificates"), None),
        ];
        for (method, path, body) in paths {
            let (status, answer) = api.call(&deploy, method.clone(), &path, body).await;
            assert_eq!(status, 404, "{method} {path}: {answer}");
            assert_eq!(answer["error"], missing(app), "{method} {path}");
        }
    }
    // The org token still sees both of its apps, and `api` is untouched.
    let (_, body) = api
        .call(&api.org_token, Method::GET, "/v1/apps", None)
        .await;
    assert_eq!(body["total_apps"], 2, "{body}");
    let (_, body) = api
        .call(&api.org_token, Method::GET, "/v1/apps/api/secrets", None)
        .await;
    assert_eq!(body, json!({"secrets": [], "version": 0}));

    let forbidden = [
        (
            Method::POST,
            "/v1/apps",
            Some(json!({"app_name": "new-app"})),
        ),
        (Method::DELETE, "/v1/apps/web", None),
        (Method::POST, "/v1/tokens", Some(json!({"scope": "org"}))),
        (
            Method::POST,
            "/v1/tokens",
            Some(json!({"scope": "deploy", "app": "web"})),
        ),
        (Method::GET, "/v1/tokens", None),
        (Method::DELETE, "/v1/tokens/0123456789abcdef", None),
    ];
    for (method, path, body) in forbidden {
        let (status, answer) = api.call(&deploy, method.clone(), path, body).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        let msg = answer["error"].as_str().unwrap();
        assert!(
            msg.contains("deploy token for app `web`") && msg.contains("org token"),
            "{msg}"
        );
    }
    let (status, _) = api
        .call(&api.org_token, Method::GET, "/v1/apps/new-app", None)
        .await;
    assert_eq!(status, 404, "the deploy token created no app");
}

/// A revoked token is refused on the very next request, at the API and at the internal check the
/// registry asks; it leaves the list; revoking again, or another org's token, is 404.
#[tokio::test]
async fn a_revoked_token_stops_at_once() {
    let api = Api::start().await;
    let (id, deploy) = api.create(json!({"scope": "deploy", "app": "web"})).await;
    let (org_id, org2) = api.create(json!({"scope": "org", "name": "second"})).await;
    for token in [&deploy, &org2] {
        let (status, _) = api.call(token, Method::GET, "/v1/apps/web", None).await;
        assert_eq!(status, 200);
    }
    let (status, body) = api.verify(&deploy).await;
    assert_eq!(
        (status, &body),
        (StatusCode::OK, &json!({"org": "personal", "app": "web"}))
    );
    let (status, body) = api.verify(&org2).await;
    assert_eq!(
        (status, &body),
        (StatusCode::OK, &json!({"org": "personal"}))
    );

    for (id, token) in [(&id, &deploy), (&org_id, &org2)] {
        let (status, body) = api
            .call(
                &api.org_token,
                Method::DELETE,
                &format!("/v1/tokens/{id}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = api.call(token, Method::GET, "/v1/apps/web", None).await;
        assert_eq!(status, 401, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("was revoked"),
            "{body}"
        );
        let (status, _) = api.verify(token).await;
        assert_eq!(status, 404);
        assert_eq!(api.cp.org_of_token(token).await, None);
    }
    let (status, _) = api
        .call(
            &api.org_token,
            Method::DELETE,
            &format!("/v1/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 404, "revoked already");
    let (_, list) = api
        .call(&api.org_token, Method::GET, "/v1/tokens", None)
        .await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert!(
        !ids.contains(&id.as_str()) && !ids.contains(&org_id.as_str()),
        "{list}"
    );

    // Another org cannot revoke (or learn about) this org's tokens.
    let acme = api.cp.create_token("acme", "acme-2").await.unwrap();
    let owner_id = ids[0];
    let (status, _) = api
        .call(
            &acme,
            Method::DELETE,
            &format!("/v1/tokens/{owner_id}"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = api
        .call(&api.org_token, Method::GET, "/v1/apps", None)
        .await;
    assert_eq!(status, 200);
}

/// A token past its expiry is 401 at once (saying it expired), and the internal check refuses
/// it too; the list marks it expired.
#[tokio::test]
async fn an_expired_token_is_refused() {
    let api = Api::start().await;
    let (id, short) = api
        .create(json!({"scope": "deploy", "app": "web", "expiry_secs": 1}))
        .await;
    let (_, long) = api
        .create(json!({"scope": "org", "expiry_secs": 720 * 3600}))
        .await;
    let (status, _) = api.call(&short, Method::GET, "/v1/apps/web", None).await;
    assert_eq!(status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, body) = api.call(&short, Method::GET, "/v1/apps/web", None).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("expired at"),
        "{body}"
    );
    assert_eq!(api.verify(&short).await.0, 404);
    let (status, _) = api.call(&long, Method::GET, "/v1/apps/web", None).await;
    assert_eq!(status, 200, "a token with time left works");

    let (_, list) = api
        .call(&api.org_token, Method::GET, "/v1/tokens", None)
        .await;
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap();
    assert_eq!(listed["expired"], true, "{list}");
    assert_eq!(listed["scope"], "deploy");
    assert_eq!(listed["app"], "web");
}

/// The list shows ids, names, scopes and expiry, never a token or its hash; `?app=` keeps one
/// app's deploy tokens.
#[tokio::test]
async fn the_list_never_shows_secrets() {
    let api = Api::start().await;
    let (_, deploy) = api.create(json!({"scope": "deploy", "app": "web"})).await;
    let (_, other) = api
        .create(json!({"scope": "deploy", "app": "api", "name": "api ci"}))
        .await;
    let (status, list) = api
        .call(&api.org_token, Method::GET, "/v1/tokens", None)
        .await;
    assert_eq!(status, 200);
    let text = list.to_string();
    for secret in [&api.org_token, &deploy, &other] {
        assert!(!text.contains(secret.as_str()), "{text}");
        assert!(!text.contains(&crate::auth::hash_token(secret)), "{text}");
        assert!(!text.contains(&secret["aloft_".len()..]), "{text}");
    }
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["owner", "deploy token for web", "api ci"]);
    let (_, list) = api
        .call(&api.org_token, Method::GET, "/v1/tokens?app=api", None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["name"], "api ci");
}

/// Bad requests name the field; a deploy token for another org's app is 404 like a missing app.
#[tokio::test]
async fn creating_tokens_checks_scope_app_and_expiry() {
    let api = Api::start().await;
    let bad = [
        (json!({"scope": "deploy"}), "app"),
        (json!({"scope": "org", "app": "web"}), "app"),
        (json!({"scope": "org", "expiry_secs": 0}), "expiry_secs"),
        (
            json!({"scope": "org", "expiry_secs": 100u64 * 365 * 86400}),
            "expiry_secs",
        ),
        (json!({"scope": "org", "name": ""}), "name"),
        (json!({"scope": "everything"}), "scope"),
    ];
    for (body, field) in bad {
        let (status, answer) = api
            .call(
                &api.org_token,
                Method::POST,
                "/v1/tokens",
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
    }
    let (status, answer) = api
        .call(
            &api.org_token,
            Method::POST,
            "/v1/tokens",
            Some(json!({"scope": "deploy", "app": "theirs"})),
        )
        .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"], missing("theirs"));
}

/// A deploy token dies with its app: once the app is deleted it is 401, and an app created again
/// under the same name is a different app it does not reach.
#[tokio::test]
async fn a_deploy_token_does_not_outlive_its_app() {
    let api = Api::start().await;
    let (_, deploy) = api.create(json!({"scope": "deploy", "app": "web"})).await;
    let (status, body) = api
        .call(&api.org_token, Method::DELETE, "/v1/apps/web", None)
        .await;
    assert!(status.is_success(), "{body}");
    let (status, body) = api
        .call(
            &api.org_token,
            Method::POST,
            "/v1/apps",
            Some(json!({"app_name": "web"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = api.call(&deploy, Method::GET, "/v1/apps/web", None).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("deleted"),
        "{body}"
    );
    assert_eq!(api.verify(&deploy).await.0, 404);
}
