//! Registry logins over HTTP: stored per org, sealed at rest, never shown, org tokens only, and
//! handed to host agents only for their org and exactly their host.

use super::registry_host;
use crate::{ControlPlane, ControlPlaneConfig, HostnamePolicy};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const INTERNAL: &str = "internal-test-token";
const PASSWORD: &str = "ghp_sup3r-s3cret-pull-token";

struct Api {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    url: String,
    http: reqwest::Client,
    /// The credential of host `h1`, which runs a machine of the orgs `acme` and `evil`.
    host: String,
    /// The credential of host `h2`, which runs nothing.
    idle_host: String,
}

impl Api {
    async fn start() -> (Api, ControlPlane) {
        let dir = tempfile::tempdir().unwrap();
        let cp = ControlPlane::open(ControlPlaneConfig {
            data_dir: dir.path().join("cp"),
            internal_token: INTERNAL.into(),
            default_region: "local".into(),
            hostnames: HostnamePolicy::default(),
        })
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = cp.router();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let db = dir.path().join("cp/control.db");
        let host = cp.enroll_host("h1").await.unwrap().credential;
        let idle_host = cp.enroll_host("h2").await.unwrap().credential;
        // h1 runs a machine of acme and one of evil; h2 runs nothing.
        cp.record_host(aloft_types::api::HostInfo {
            id: "h1".into(),
            region: "local".into(),
            address: "http://127.0.0.1:9".into(),
            runtime: "fake".into(),
            cpus: 1,
            memory_mb: 256,
            allocated_cpus: 0,
            allocated_memory_mb: 0,
        })
        .await
        .unwrap();
        for (org, app) in [("acme", "acme-site"), ("evil", "evil-site")] {
            cp.ensure_org(org).await.unwrap();
            cp.inner
                .store
                .insert_app(crate::store::AppRecord {
                    id: format!("id-{app}"),
                    name: app.into(),
                    org_slug: org.into(),
                    created_at: 0,
                    machine_count: 0,
                })
                .await
                .unwrap();
            cp.inner
                .store
                .insert_machine(
                    crate::store::MachineRecord {
                        id: format!("m-{app}"),
                        app: app.into(),
                        host_id: "h1".into(),
                        name: "m".into(),
                        destroyed: false,
                    },
                    0,
                )
                .await
                .unwrap();
        }
        let api = Api {
            _dir: dir,
            db,
            url,
            http: reqwest::Client::new(),
            host,
            idle_host,
        };
        (api, cp)
    }

    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, String) {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.unwrap();
        (resp.status(), resp.text().await.unwrap())
    }

    async fn login(
        &self,
        token: &str,
        host: &str,
        username: &str,
        password: &str,
    ) -> (StatusCode, String) {
        let body = json!({"username": username, "password": password});
        self.call(
            token,
            Method::PUT,
            &format!("/v1/registry-logins/{host}"),
            Some(body),
        )
        .await
    }

    async fn credentials(&self, org: &str, host: &str) -> (StatusCode, String) {
        let path = format!("/internal/v1/orgs/{org}/registry-credentials/{host}");
        self.call(&self.host, Method::GET, &path, None).await
    }
}

async fn org_token(cp: &ControlPlane, org: &str) -> String {
    cp.ensure_org(org).await.unwrap();
    cp.create_token(org, "owner").await.unwrap()
}

/// Login, list and logout: the list shows hosts and usernames, no answer of the public API ever
/// holds the password, the internal endpoint gives it for exactly the org and host it was stored
/// for, and the database row holds it only sealed.
#[tokio::test]
async fn logins_are_stored_sealed_listed_without_passwords_and_removed() {
    let (api, cp) = Api::start().await;
    let acme = org_token(&cp, "acme").await;
    let (status, body) = api.login(&acme, "GHCR.io", "acme-bot", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!body.contains(PASSWORD), "{body}");
    let stored: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stored["host"], "ghcr.io");
    assert_eq!(stored["username"], "acme-bot");
    let (status, body) = api
        .login(&acme, "registry.example.com:5000", "u2", "p2")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = api
        .call(&acme, Method::GET, "/v1/registry-logins", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!body.contains(PASSWORD), "{body}");
    let list: Vec<Value> = serde_json::from_str(&body).unwrap();
    let hosts: Vec<&str> = list.iter().map(|l| l["host"].as_str().unwrap()).collect();
    assert_eq!(hosts, ["ghcr.io", "registry.example.com:5000"]);

    // Sealed at rest: the row has neither the password nor its hex.
    let rows: Vec<String> = {
        let c = rusqlite::Connection::open(&api.db).unwrap();
        let mut stmt = c
            .prepare(
                "SELECT org_slug || host || username || nonce || ciphertext FROM registry_logins",
            )
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert!(
            !row.contains(PASSWORD) && !row.contains(&hex::encode(PASSWORD)),
            "{row}"
        );
    }

    // The agent's endpoint: exactly this org and host, with the credential of a host running a
    // machine of the org only.
    let (status, body) = api.credentials("acme", "ghcr.io").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let creds: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(creds, json!({"username": "acme-bot", "password": PASSWORD}));
    for (org, host) in [
        ("acme", "ghcr.io:443"),
        ("acme", "evil.example"),
        ("acme", "registry.example.com"),
    ] {
        let (status, body) = api.credentials(org, host).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{org} {host}: {body}");
    }
    let path = "/internal/v1/orgs/acme/registry-credentials/ghcr.io";
    let (status, body) = api.call(&acme, Method::GET, path, None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "an org token is not a host credential: {body}"
    );
    assert!(!body.contains(PASSWORD));
    for (who, bearer) in [
        ("a host running none of acme's machines", &api.idle_host),
        ("the cluster secret", &INTERNAL.to_string()),
    ] {
        let (status, body) = api.call(bearer, Method::GET, path, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}: {body}");
        assert!(!body.contains(PASSWORD));
    }

    let (status, body) = api
        .call(&acme, Method::DELETE, "/v1/registry-logins/ghcr.io", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = api.credentials("acme", "ghcr.io").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "logged out");
    let (status, body) = api
        .call(&acme, Method::DELETE, "/v1/registry-logins/ghcr.io", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("aloft registry list"), "{body}");
}

/// Another org neither sees nor gets an org's logins, and a row moved to another org or host in
/// the database does not open.
#[tokio::test]
async fn another_org_cannot_see_or_use_a_login() {
    let (api, cp) = Api::start().await;
    let acme = org_token(&cp, "acme").await;
    let evil = org_token(&cp, "evil").await;
    let (status, body) = api.login(&acme, "ghcr.io", "acme-bot", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = api
        .call(&evil, Method::GET, "/v1/registry-logins", None)
        .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "[]"));
    let (status, _) = api
        .call(&evil, Method::DELETE, "/v1/registry-logins/ghcr.io", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "evil cannot log acme out");
    let (status, _) = api.credentials("evil", "ghcr.io").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Copy acme's sealed row to evil, and to another host of acme: neither opens.
    let c = rusqlite::Connection::open(&api.db).unwrap();
    c.execute_batch(
        "INSERT INTO registry_logins SELECT 'evil', host, username, nonce, ciphertext, created_at
             FROM registry_logins WHERE org_slug = 'acme';
         INSERT INTO registry_logins SELECT org_slug, 'evil.example', username, nonce, ciphertext,
             created_at FROM registry_logins WHERE org_slug = 'acme';",
    )
    .unwrap();
    for (org, host) in [("evil", "ghcr.io"), ("acme", "evil.example")] {
        let (status, body) = api.credentials(org, host).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{org} {host}: {body}");
        assert!(!body.contains(PASSWORD));
    }
    let (status, _) = api.credentials("acme", "ghcr.io").await;
    assert_eq!(status, StatusCode::OK);
}

/// A deploy token cannot add, list or remove logins (403 naming org tokens); bad hosts and
/// empty passwords are 422.
#[tokio::test]
async fn only_org_tokens_manage_logins() {
    let (api, cp) = Api::start().await;
    let acme = org_token(&cp, "acme").await;
    let (status, body) = api
        .call(
            &acme,
            Method::POST,
            "/v1/apps",
            Some(json!({"app_name": "web"})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let (status, body) = api
        .call(
            &acme,
            Method::POST,
            "/v1/tokens",
            Some(json!({"scope": "deploy", "app": "web"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let deploy = serde_json::from_str::<Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = api.login(&deploy, "ghcr.io", "u", "p").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("org token"), "{body}");
    let (status, _) = api
        .call(&deploy, Method::GET, "/v1/registry-logins", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api
        .call(&deploy, Method::DELETE, "/v1/registry-logins/ghcr.io", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, body) = api.login(&acme, "ghcr.io", "u", "").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = api.login(&acme, "bad_host!", "u", "p").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("ghcr.io"), "{body}");
}

#[test]
fn registry_hosts_are_names_or_addresses_with_a_port() {
    for ok in [
        "ghcr.io",
        "GHCR.io",
        "registry.example.com:5000",
        "127.0.0.1:5123",
        "[::1]:5000",
        "localhost",
    ] {
        assert!(registry_host(ok).is_ok(), "{ok}");
    }
    assert_eq!(registry_host("GHCR.io").unwrap(), "ghcr.io");
    for bad in ["", "x:0", "x:port", "-x.io", "a..b", "[zz]:1", "x y", "a_b"] {
        assert!(registry_host(bad).is_err(), "{bad}");
    }
}
