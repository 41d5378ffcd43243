//! Fuzzing the control plane's JSON API with what any token holder can send: for every route
//! that takes a body, its valid body mutated (fields removed, replaced by values of any type
//! and size, added), sometimes cut short or poked, with the right or a wrong Content-Type;
//! sent to a control plane (no hosts: operations that need one are refused with 503).
//! Properties: the server always answers (a panic would drop the connection); never 500; an
//! error (4xx, or 503 for a missing host) is the API's JSON error with a message.
//!
//! `PROPTEST_CASES` sets the number of cases (default 64 here: each case is an HTTP request;
//! `scripts/fuzz.sh` runs many).

use aloft_control::{ControlPlane, ControlPlaneConfig};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Routes with a JSON body: method, path and a valid body.
fn routes() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "POST",
            "/v1/apps",
            json!({"app_name": "fz", "org_slug": "personal", "network": "n1"}),
        ),
        (
            "POST",
            "/v1/apps/web/secrets",
            json!({"values": {"DATABASE_URL": "postgres://x"}}),
        ),
        (
            "POST",
            "/v1/apps/web/secrets",
            json!({"values": {"DATABASE_URL": "postgres://x", "OLD": null}}),
        ),
        (
            "POST",
            "/v1/apps/web/secrets/DATABASE_URL",
            json!({"value": "postgres://x"}),
        ),
        (
            "POST",
            "/v1/apps/web/volumes",
            json!({"name": "data", "region": "local", "size_gb": 1, "encrypted": true,
                   "snapshot_retention": 5, "require_unique_zone": false,
                   "unique_zone_app_wide": false, "auto_backup_enabled": true, "fstype": "ext4",
                   "snapshot_id": null, "source_volume_id": null,
                   "compute": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256},
                   "compute_image": "registry.example/web:v1"}),
        ),
        (
            "PUT",
            "/v1/apps/web/volumes/vol_0123456789",
            json!({"snapshot_retention": 7, "auto_backup_enabled": false}),
        ),
        (
            "PUT",
            "/v1/apps/web/volumes/vol_0123456789/extend",
            json!({"size_gb": 2}),
        ),
        (
            "POST",
            "/v1/apps/web/volumes/vol_0123456789/snapshots",
            json!({}),
        ),
        (
            "POST",
            "/v1/apps/web/releases",
            json!({"image": "registry.example/web:v1", "strategy": "rolling", "description": "x"}),
        ),
        (
            "PATCH",
            "/v1/apps/web/releases/1",
            json!({"status": "failed", "reason": "x"}),
        ),
        (
            "POST",
            "/v1/apps/web/certificates/acme",
            json!({"hostname": "web.example.com"}),
        ),
        (
            "POST",
            "/v1/apps/web/certificates/custom",
            json!({"hostname": "web.example.com", "fullchain": "x", "private_key": "y"}),
        ),
        (
            "POST",
            "/v1/apps/web/machines",
            json!({
                "name": "m", "region": "local", "lease_ttl": 30,
                "config": {
                    "image": "registry.example/web:v1",
                    "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256},
                    "env": {"A": "b"},
                    "metadata": {"k": "v"},
                    "services": [{"protocol": "tcp", "internal_port": 8080,
                                  "ports": [{"port": 80, "handlers": ["http"]}],
                                  "concurrency": {"type": "requests", "soft_limit": 20, "hard_limit": 25}}],
                    "checks": {"alive": {"type": "http", "port": 8080, "path": "/", "interval": "15s", "timeout": "2s"}},
                    "restart": {"policy": "on-failure", "max_retries": 3},
                    "mounts": [{"volume": "vol_0123456789", "path": "/data"}],
                    "init": {"cmd": ["sh", "-c", "echo hi"]},
                    "stop_config": {"signal": "SIGTERM", "timeout": "5s"},
                    "auto_destroy": false
                }
            }),
        ),
        (
            "POST",
            "/v1/apps/web/machines/0123456789abcd/stop",
            json!({"signal": "SIGTERM", "timeout": "5s"}),
        ),
        (
            "POST",
            "/v1/apps/web/machines/0123456789abcd/signal",
            json!({"signal": "SIGKILL"}),
        ),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    route: usize,
    edits: Vec<Edit>,
    poke: Option<(usize, u8)>,
    cut: Option<usize>,
    json_type: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<usize>(),
        prop::collection::vec(edit(), 0..4),
        prop::option::weighted(0.15, (any::<usize>(), any::<u8>())),
        prop::option::weighted(0.1, any::<usize>()),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(route, edits, poke, cut, json_type)| Case {
            route,
            edits,
            poke,
            cut,
            json_type,
        })
}

struct Server {
    url: String,
    token: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let cp = ControlPlane::open(ControlPlaneConfig {
        data_dir: dir.path().join("cp"),
        internal_token: "internal-secret".into(),
        default_region: "local".into(),
        hostnames: Default::default(),
    })
    .await
    .expect("open");
    cp.ensure_org("personal").await.expect("org");
    let token = cp.create_token("personal", "fuzz").await.expect("token");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let router = cp.router();
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{url}/v1/apps"))
        .bearer_auth(&token)
        .json(&json!({"app_name": "web"}))
        .send()
        .await
        .expect("create app");
    assert_eq!(created.status(), 201);
    Server {
        url,
        token,
        http,
        _dir: dir,
    }
}

async fn run(server: &Server, case: &Case) {
    let routes = routes();
    let (method, path, mut body) = routes[case.route % routes.len()].clone();
    apply(&mut body, &case.edits);
    let mut bytes = serde_json::to_vec(&body).expect("json");
    if let Some((i, b)) = case.poke {
        let n = bytes.len();
        bytes[i % n] = b;
    }
    if let Some(cut) = case.cut {
        bytes.truncate(cut % (bytes.len() + 1));
    }
    let content_type = if case.json_type {
        "application/json"
    } else {
        "text/plain"
    };
    let response = server
        .http
        .request(
            method.parse().expect("method"),
            format!("{}{path}", server.url),
        )
        .bearer_auth(&server.token)
        .header("content-type", content_type)
        .body(bytes.clone())
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{method} {path}: no answer ({e}) to {}",
                String::from_utf8_lossy(&bytes)
            )
        });
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let sent = String::from_utf8_lossy(&bytes);
    assert!(
        status != 500 && status < 600,
        "{method} {path} {sent}: {status} {text}"
    );
    if status >= 400 {
        assert!(
            status < 500 || status == 503,
            "{method} {path} {sent}: {status} {text}"
        );
        let error: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path} {sent}: {status} not JSON: {text}"));
        assert!(
            error["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{method} {path} {sent}: {status} {text}"
        );
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

#[test]
fn fuzz_api_json_bodies() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = rt.block_on(start());
    let config = ProptestConfig {
        cases: cases(),
        ..ProptestConfig::default()
    };
    proptest!(config, |(case in case())| {
        rt.block_on(run(&server, &case));
    });
}

/// A JSON value of any shape, with the numbers and strings that break parsers.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
        Just(json!(1e308)),
        Just(json!(0.5)),
        "[ -~]{0,16}".prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::from),
        Just(json!("")),
        Just(json!("../../etc/passwd")),
        Just(json!(
            "sha256:0000000000000000000000000000000000000000000000000000000000000000"
        )),
        Just(json!("99999999999999999999s")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One change to a JSON document, at its `at`-th node (pre-order, modulo the node count).
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, Value),
    Remove(usize),
    Insert(usize, String, Value),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any_json()).prop_map(|(at, v)| Edit::Replace(at, v)),
        any::<usize>().prop_map(Edit::Remove),
        (any::<usize>(), "[a-z_]{1,10}", any_json()).prop_map(|(at, k, v)| Edit::Insert(at, k, v)),
    ]
}

fn pointers(v: &Value, here: String, out: &mut Vec<String>) {
    out.push(here.clone());
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let k = k.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{here}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{here}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn apply(doc: &mut Value, edits: &[Edit]) {
    for e in edits {
        let mut all = Vec::new();
        pointers(doc, String::new(), &mut all);
        let at = match e {
            Edit::Replace(at, _) | Edit::Remove(at) | Edit::Insert(at, _, _) => {
                all[at % all.len()].clone()
            }
        };
        match e {
            Edit::Replace(_, v) => {
                if let Some(slot) = doc.pointer_mut(&at) {
                    *slot = v.clone();
                }
            }
            Edit::Remove(_) => {
                let Some((parent, last)) = at.rsplit_once('/') else {
                    continue;
                };
                let last = last.replace("~1", "/").replace("~0", "~");
                match doc.pointer_mut(parent) {
                    Some(Value::Object(map)) => {
                        map.remove(&last);
                    }
                    Some(Value::Array(items)) => {
                        if let Ok(i) = last.parse::<usize>() {
                            items.remove(i);
                        }
                    }
                    _ => {}
                }
            }
            Edit::Insert(_, k, v) => {
                if let Some(Value::Object(map)) = doc.pointer_mut(&at) {
                    map.insert(k.clone(), v.clone());
                }
            }
        }
    }
}
