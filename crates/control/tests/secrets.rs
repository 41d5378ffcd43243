//! App secrets over HTTP as Fly's Go client (fly-go v0.9.3, `flaps`) calls them, with the exact
//! bodies it sends: `UpdateAppSecrets` (`{"values": {...}}`, `null` removes), `ListAppSecrets`
//! (`{"secrets": [...]}`), `SetAppSecret`, `GetAppSecrets` and `DeleteAppSecret` by name, each
//! change a new `version`; and no answer ever holds a value, `show_secrets=true` or not.

use aloft_control::{ControlPlane, ControlPlaneConfig};
use reqwest::Method;
use serde_json::{Value, json};

/// The values set in these tests: none may appear in any answer.
const VALUES: [&str; 4] = [
    "value-one-xyzzy",
    "value-two-xyzzy",
    "value-three-xyzzy",
    "xyzzy",
];

struct Api {
    _dir: tempfile::TempDir,
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    /// A control plane without hosts, the org `personal` and its app `web`.
    async fn start() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let cp = ControlPlane::open(ControlPlaneConfig {
            data_dir: dir.path().join("cp"),
            internal_token: "internal-test-token".into(),
            default_region: "local".into(),
            hostnames: Default::default(),
        })
        .await
        .unwrap();
        cp.ensure_org("personal").await.unwrap();
        let token = cp.create_token("personal", "flaps").await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = cp.router();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let api = Api {
            _dir: dir,
            url,
            token,
            http: reqwest::Client::new(),
        };
        let (status, body) = api
            .call(Method::POST, "/v1/apps", Some(json!({"app_name": "web"})))
            .await;
        assert_eq!(status, 201, "{body}");
        api
    }

    /// Sends `body` as JSON; the status and the answer (JSON, or its text). Fails the test when
    /// the answer holds any of `VALUES`.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        for v in VALUES {
            assert!(!text.contains(v), "{path} answered a value: {text}");
        }
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// The names of `list` (an array of secrets), each checked to have the reference's fields and
/// no `value`.
fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|s| {
            check_secret(s);
            s["name"].as_str().unwrap().to_string()
        })
        .collect()
}

/// A secret as fly-go's `AppSecret` reads it: `name`, `digest`, `created_at`, `updated_at`
/// (strings), and never `value`.
fn check_secret(s: &Value) {
    for field in ["name", "digest", "created_at", "updated_at"] {
        assert!(s[field].is_string(), "{field} missing: {s}");
    }
    assert!(s.get("value").is_none(), "a value is shown: {s}");
}

fn version(body: &Value) -> u64 {
    body["version"]
        .as_u64()
        .unwrap_or_else(|| panic!("no version: {body}"))
}

/// `UpdateAppSecrets`: `{"values": {"A": "1", "B": "2"}}` sets both and answers `{"secrets":
/// [...], "version": N}`; `{"values": {"A": null}}` removes A (version N+1); a name to remove
/// that the app lacks changes nothing (404).
#[tokio::test]
async fn update_app_secrets_sets_and_removes_with_values() {
    let api = Api::start().await;
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/apps/web/secrets",
            Some(json!({"values": {"FLYGO_A": VALUES[0], "FLYGO_B": VALUES[1]}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body["secrets"]), ["FLYGO_A", "FLYGO_B"]);
    let first = version(&body);
    assert!(first > 0, "{body}");

    let (status, body) = api
        .call(
            Method::POST,
            "/v1/apps/web/secrets",
            Some(json!({"values": {"FLYGO_A": null}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body["secrets"]), ["FLYGO_B"]);
    assert_eq!(version(&body), first + 1);

    // Set one, remove another, in one change.
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/apps/web/secrets",
            Some(json!({"values": {"FLYGO_C": VALUES[2], "FLYGO_B": null}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body["secrets"]), ["FLYGO_C"]);
    assert_eq!(version(&body), first + 2);

    // All or none: a missing name to remove, or a bad name to set, changes nothing.
    for (values, expected_status, expected) in [
        (
            json!({"FLYGO_C": null, "NOPE": null}),
            404,
            "has no secret named NOPE",
        ),
        (
            json!({"FLYGO_D": "x", "BAD-NAME": "x"}),
            422,
            "is not an environment variable name",
        ),
    ] {
        let (status, body) = api
            .call(
                Method::POST,
                "/v1/apps/web/secrets",
                Some(json!({ "values": values })),
            )
            .await;
        assert_eq!(status, expected_status, "{body}");
        assert!(body.to_string().contains(expected), "{body}");
    }
    let (_, body) = api.call(Method::GET, "/v1/apps/web/secrets", None).await;
    assert_eq!(names(&body["secrets"]), ["FLYGO_C"]);
    assert_eq!(version(&body), first + 2, "a refused change is no version");
}

/// `ListAppSecrets`: `{"secrets": [...]}` (not a bare array), also with the reference's
/// `?version=N&show_secrets=true`, which still shows no value.
#[tokio::test]
async fn list_app_secrets_answers_an_object_without_values() {
    let api = Api::start().await;
    let (status, body) = api.call(Method::GET, "/v1/apps/web/secrets", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"secrets": [], "version": 0}));
    let (_, set) = api
        .call(
            Method::POST,
            "/v1/apps/web/secrets",
            Some(json!({"values": {"B": VALUES[1], "A": VALUES[0]}})),
        )
        .await;
    for query in [
        String::new(),
        format!("?version={}", version(&set)),
        format!("?version={}&show_secrets=true", version(&set)),
    ] {
        let path = format!("/v1/apps/web/secrets{query}");
        let (status, body) = api.call(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.is_object(), "{path}: {body}");
        assert_eq!(names(&body["secrets"]), ["A", "B"], "{path}");
        assert_eq!(body["secrets"][0]["digest"].as_str().unwrap().len(), 16);
    }
}

/// `SetAppSecret` (`POST /secrets/{name}` `{"value"}`), `GetAppSecrets` (`GET
/// /secrets/{name}`), `DeleteAppSecret` (`DELETE /secrets/{name}`, `{"version": N}`).
#[tokio::test]
async fn one_secret_is_set_read_and_deleted_by_name() {
    let api = Api::start().await;
    let (status, set) = api
        .call(
            Method::POST,
            "/v1/apps/web/secrets/FLYGO_C",
            Some(json!({"value": VALUES[2]})),
        )
        .await;
    assert_eq!(status, 200, "{set}");
    check_secret(&set);
    assert_eq!(set["name"], "FLYGO_C");
    assert_eq!(version(&set), 1);

    for path in [
        "/v1/apps/web/secrets/FLYGO_C",
        "/v1/apps/web/secrets/FLYGO_C?show_secrets=true&version=1",
    ] {
        let (status, got) = api.call(Method::GET, path, None).await;
        assert_eq!(status, 200, "{path}: {got}");
        check_secret(&got);
        assert_eq!(got["name"], "FLYGO_C");
        assert_eq!(got["digest"], set["digest"]);
    }

    // Set again: a new digest and version, the same created_at.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (status, again) = api
        .call(
            Method::POST,
            "/v1/apps/web/secrets/FLYGO_C",
            Some(json!({"value": VALUES[3]})),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(version(&again), 2);
    assert_ne!(again["digest"], set["digest"]);
    assert_eq!(again["created_at"], set["created_at"]);

    let (status, body) = api
        .call(Method::DELETE, "/v1/apps/web/secrets/FLYGO_C", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"version": 3}));
    for method in [Method::GET, Method::DELETE] {
        let (status, body) = api
            .call(method.clone(), "/v1/apps/web/secrets/FLYGO_C", None)
            .await;
        assert_eq!(status, 404, "{method} after delete: {body}");
        assert!(
            body.to_string().contains("has no secret named FLYGO_C"),
            "{body}"
        );
    }
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/apps/web/secrets/FLY_REGION",
            Some(json!({"value": "x"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
}

/// `values` is the one form (aloft's older `{"secrets": {...}}` is refused); `unset` is a valid
/// secret name (names may be lowercase) like any other.
#[tokio::test]
async fn values_is_the_form_and_unset_is_a_name() {
    let api = Api::start().await;
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/apps/web/secrets",
            Some(json!({"values": {"A": VALUES[0], "B": VALUES[1]}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body["secrets"]), ["A", "B"]);
    assert_eq!(version(&body), 1);

    for (bad, expected) in [
        (json!({}), "missing field `values`"),
        (json!({"values": {}}), "no secrets given"),
        (json!({"secrets": {"B": "2"}}), "missing field `values`"),
    ] {
        let (status, body) = api
            .call(Method::POST, "/v1/apps/web/secrets", Some(bad))
            .await;
        assert_eq!(status, 422, "{body}");
        assert!(body.to_string().contains(expected), "{body}");
    }

    // `unset` is a secret's name like any other (aloft's older `/secrets/unset` is gone).
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/apps/web/secrets/unset",
            Some(json!({"value": VALUES[3]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["name"].as_str(), version(&body)), (Some("unset"), 2));
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/apps/web/secrets/unset",
            Some(json!({"names": ["A"]})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = api
        .call(Method::GET, "/v1/apps/web/secrets/unset", None)
        .await;
    assert_eq!((status, &body["name"]), (200, &json!("unset")), "{body}");
    let (status, body) = api
        .call(Method::DELETE, "/v1/apps/web/secrets/unset", None)
        .await;
    assert_eq!((status, body), (200, json!({"version": 3})));
}

/// Another org's app, or none, is 404 on every secrets path.
#[tokio::test]
async fn secrets_of_an_app_that_is_not_there_are_404() {
    let api = Api::start().await;
    for (method, path, body) in [
        (Method::GET, "/v1/apps/nope/secrets", None),
        (
            Method::POST,
            "/v1/apps/nope/secrets",
            Some(json!({"values": {"A": "1"}})),
        ),
        (Method::GET, "/v1/apps/nope/secrets/A", None),
        (
            Method::POST,
            "/v1/apps/nope/secrets/A",
            Some(json!({"value": "1"})),
        ),
        (Method::DELETE, "/v1/apps/nope/secrets/A", None),
    ] {
        let (status, answer) = api.call(method.clone(), path, body).await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
        assert!(
            answer.to_string().contains("app `nope` not found"),
            "{answer}"
        );
    }
}
