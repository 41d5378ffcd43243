//! Machines from real images: an in-process aloft registry (org tokens), images built with
//! `aloft_image::oci_layout` and pushed over HTTP, an agent that pulls them with the caller's
//! registry token. The sim runtime exposes what the machine got: `ls`/`cat` read the image's
//! root filesystem, `argv` and `env` show the process the image and the config make.

mod common;

use aloft_image::ImageConfig;
use aloft_image::oci_layout::{LayerEntry, LayoutBuilder, LayoutImage};
use aloft_registry::{Registry, RegistryConfig, StaticTokens};
use aloft_runtime::Runtime;
use aloft_types::api::internal::{ORG_HEADER, REGISTRY_TOKEN_HEADER};
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use common::{TestAgent, mid};
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const ORG_TOKEN: &str = "org-token";
const OTHER_TOKEN: &str = "other-org-token";

/// What the registry saw, and how slowly it serves blobs.
#[derive(Clone, Default)]
struct Traffic {
    requests: Arc<Mutex<Vec<String>>>,
    blob_delay_ms: Arc<AtomicU64>,
    manifest_delay_ms: Arc<AtomicU64>,
}

impl Traffic {
    fn count(&self) -> usize {
        self.requests.lock().len()
    }

    /// How many times a blob was downloaded since request number `since`.
    fn blob_gets(&self, digest: &str, since: usize) -> usize {
        let suffix = format!("/blobs/{digest}");
        self.requests.lock()[since..]
            .iter()
            .filter(|r| r.starts_with("GET ") && r.ends_with(&suffix))
            .count()
    }
}

async fn observe(State(t): State<Traffic>, req: Request, next: Next) -> Response {
    let line = format!("{} {}", req.method(), req.uri().path());
    t.requests.lock().push(line.clone());
    if line.starts_with("GET ") && line.contains("/blobs/") {
        let ms = t.blob_delay_ms.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if line.contains("/manifests/") {
        let ms = t.manifest_delay_ms.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    next.run(req).await
}

/// A registry with two orgs on 127.0.0.1:0.
struct TestRegistry {
    host: String,
    traffic: Traffic,
    _dir: tempfile::TempDir,
}

impl TestRegistry {
    async fn start() -> TestRegistry {
        Self::start_with(&[(ORG_TOKEN, "personal"), (OTHER_TOKEN, "other")]).await
    }

    /// A registry that accepts `tokens` (password -> org) as Basic passwords.
    async fn start_with(tokens: &[(&str, &str)]) -> TestRegistry {
        let dir = tempfile::tempdir().unwrap();
        let tokens = StaticTokens::new(tokens.iter().copied());
        let registry = Registry::open(
            RegistryConfig::new(dir.path().join("data")),
            Arc::new(tokens),
        )
        .await
        .unwrap();
        let traffic = Traffic::default();
        let router = registry
            .router()
            .layer(middleware::from_fn_with_state(traffic.clone(), observe));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        TestRegistry {
            host,
            traffic,
            _dir: dir,
        }
    }

    /// Writes `builder`'s image into a layout and pushes it as `repo:tag` (blobs, then the
    /// manifest), as skopeo would.
    async fn push(&self, builder: LayoutBuilder, repo: &str, tag: &str) -> LayoutImage {
        let layout = tempfile::tempdir().unwrap();
        let image = builder.write(layout.path(), tag).unwrap();
        push_layout(&self.host, repo, tag, layout.path(), &image.manifest_digest).await;
        image
    }

    /// An image config whose registry (and the agent's default one) is this registry, with
    /// quick retries so that a registry that is down is reported at once. Other registries on
    /// loopback are allowed explicitly, as a test configuration must.
    fn image_config(&self) -> ImageConfig {
        ImageConfig {
            default_registry: self.host.clone(),
            private_registries: vec!["127.0.0.1".into()],
            retries: 1,
            retry_backoff: Duration::from_millis(10),
            ..ImageConfig::new("unused")
        }
    }
}

async fn push_layout(host: &str, repo: &str, tag: &str, layout: &Path, manifest: &str) {
    let base = format!("http://{host}");
    let http = reqwest::Client::new();
    let blobs = layout.join("blobs/sha256");
    for entry in std::fs::read_dir(&blobs).unwrap() {
        let entry = entry.unwrap();
        let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
        if digest == manifest {
            continue;
        }
        let resp = http
            .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
            .basic_auth("x", Some(ORG_TOKEN))
            .header("content-type", "application/octet-stream")
            .body(std::fs::read(entry.path()).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "upload {digest}");
    }
    let resp = http
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .basic_auth("x", Some(ORG_TOKEN))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(std::fs::read(blobs.join(&manifest["sha256:".len()..])).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
}

/// A small busybox-like base layer (no real binary: the sim runtime runs nothing).
fn base_layer() -> Vec<LayerEntry> {
    let mut entries = vec![
        LayerEntry::dir("bin", 0o755),
        LayerEntry::dir("etc", 0o755),
        LayerEntry::dir("tmp", 0o1777),
        LayerEntry::file("bin/busybox", "#!fake busybox\n", 0o755),
        LayerEntry::file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644),
    ];
    for applet in ["ls", "sh", "cat"] {
        entries.push(LayerEntry::symlink(&format!("bin/{applet}"), "busybox"));
    }
    entries
}

/// The base layer with `Entrypoint ["/bin/sh"]` (like aloft's busybox image).
fn base_image() -> LayoutBuilder {
    LayoutBuilder::new()
        .layer(base_layer())
        .config(aloft_image::ImageDefaults {
            entrypoint: vec!["/bin/sh".into()],
            env: vec!["PATH=/bin".into()],
            ..Default::default()
        })
}

/// The base layer plus an app layer, with Entrypoint, Cmd, Env and WorkingDir.
fn app_image() -> LayoutBuilder {
    LayoutBuilder::new()
        .layer(base_layer())
        .layer(vec![
            LayerEntry::dir("app", 0o755),
            LayerEntry::file("app/app.conf", "greeting=hello\n", 0o644),
        ])
        .config(aloft_image::ImageDefaults {
            entrypoint: vec!["/bin/sh".into(), "-c".into()],
            cmd: vec!["exec serve".into()],
            env: vec![
                "PATH=/bin".into(),
                "GREETING=image".into(),
                "FROM_IMAGE=1".into(),
            ],
            working_dir: "/app".into(),
            ..Default::default()
        })
}

/// A create (or any write) as the control plane forwards it: org, and the caller's token.
fn as_caller(rb: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    let rb = rb.header(ORG_HEADER, "personal");
    match token {
        Some(t) => rb.header(REGISTRY_TOKEN_HEADER, t),
        None => rb,
    }
}

async fn create(t: &TestAgent, config: Value, token: Option<&str>) -> (u16, Value) {
    let rb = as_caller(t.req(Method::POST, &t.machines()), token).json(&json!({"config": config}));
    let (status, body) = t.send(rb).await;
    (status.as_u16(), body)
}

async fn create_ok(t: &TestAgent, config: Value) -> String {
    let (status, m) = create(t, config, Some(ORG_TOKEN)).await;
    assert_eq!(status, 200, "{m}");
    m["id"].as_str().unwrap().to_string()
}

/// Waits until the machine leaves `created`/`starting` and returns it.
async fn settled(t: &TestAgent, id: &str) -> Value {
    for _ in 0..1000 {
        let (_, m) = t.get(&t.machine(id)).await;
        if !matches!(m["state"].as_str(), Some("created" | "starting")) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("machine {id} did not settle");
}

async fn exec(t: &TestAgent, id: &str, command: &[&str]) -> Value {
    let (status, r) = t
        .post(
            &format!("{}/exec", t.machine(id)),
            json!({"command": command}),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    r
}

async fn stdout(t: &TestAgent, id: &str, command: &[&str]) -> String {
    let r = exec(t, id, command).await;
    assert_eq!(r["exit_code"], 0, "{command:?}: {r}");
    r["stdout"].as_str().unwrap().to_string()
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

/// The newest event's message.
async fn last_message(t: &TestAgent, id: &str) -> String {
    let events = t.events(id).await;
    let msg = events.last().unwrap()["request"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    println!("machine {id}: {msg}");
    msg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_get_the_image_root_filesystem_and_defaults() {
    let reg = TestRegistry::start().await;
    let app = reg.push(app_image(), "personal/app", "v1").await;
    let t = TestAgent::with_images(reg.image_config()).await;

    let id = create_ok(
        &t,
        json!({"image": "app:v1", "env": {"GREETING": "machine"}}),
    )
    .await;
    let m = settled(&t, &id).await;
    assert_eq!(m["state"], "started", "{m:#}");
    assert_eq!(
        m["image_ref"],
        json!({"registry": reg.host, "repository": "personal/app", "tag": "v1", "digest": app.manifest_digest})
    );
    assert!(m.get("image_pull").is_none(), "no pull in progress: {m}");

    // The image's files, both layers.
    let bin = stdout(&t, &id, &["ls", "/bin"]).await;
    assert_eq!(lines(&bin), ["busybox", "cat", "ls", "sh"]);
    assert_eq!(
        stdout(&t, &id, &["cat", "app.conf"]).await,
        "greeting=hello\n"
    );
    assert_eq!(
        stdout(&t, &id, &["cat", "/etc/passwd"]).await,
        "root:x:0:0:root:/root:/bin/sh\n"
    );
    // The image's Entrypoint + Cmd.
    assert_eq!(
        lines(&stdout(&t, &id, &["argv"]).await),
        ["/bin/sh", "-c", "exec serve"]
    );
    // Image env, the machine's env on top, the platform's variables.
    let env = stdout(&t, &id, &["env"]).await;
    let ip = m["private_ip"].as_str().unwrap();
    let digest = &app.manifest_digest;
    for want in [
        "GREETING=machine".to_string(),
        "FROM_IMAGE=1".into(),
        "PATH=/bin".into(),
        "FLY_APP_NAME=hello".into(),
        format!("FLY_MACHINE_ID={id}"),
        "FLY_REGION=local".into(),
        format!("FLY_PRIVATE_IP={ip}"),
        format!("FLY_IMAGE_REF={}/personal/app:v1@{digest}", reg.host),
        "ALOFT_APP_NAME=hello".into(),
        format!("ALOFT_MACHINE_ID={id}"),
    ] {
        assert!(
            env.lines().any(|l| l == want),
            "{want} missing from:\n{env}"
        );
    }

    // `init` overrides the image the reference's way.
    for (init, argv) in [
        (
            json!({"cmd": ["echo", "hi"]}),
            vec!["/bin/sh", "-c", "echo", "hi"],
        ),
        // an entrypoint alone keeps the image's Cmd
        (
            json!({"entrypoint": ["/bin/env"]}),
            vec!["/bin/env", "exec serve"],
        ),
        (
            json!({"entrypoint": ["/bin/cat"], "cmd": ["x"]}),
            vec!["/bin/cat", "x"],
        ),
        (
            json!({"exec": ["/bin/sleep", "inf"], "cmd": ["ignored"]}),
            vec!["/bin/sleep", "inf"],
        ),
    ] {
        let full = format!("{}/personal/app:v1", reg.host);
        let id = create_ok(&t, json!({"image": full, "init": init})).await;
        assert_eq!(settled(&t, &id).await["state"], "started");
        assert_eq!(
            lines(&stdout(&t, &id, &["argv"]).await),
            argv,
            "init {init}"
        );
    }

    // Before its pull, a machine's image_ref is its resolved reference, with no digest yet.
    let rb = as_caller(t.req(Method::POST, &t.machines()), Some(ORG_TOKEN))
        .json(&json!({"config": {"image": "app:v1"}, "skip_launch": true}));
    let (_, m) = t.send(rb).await;
    assert_eq!(
        m["image_ref"],
        json!({"registry": reg.host, "repository": "personal/app", "tag": "v1", "digest": ""})
    );

    // A config that says nothing to run on an image without Entrypoint/Cmd fails clearly.
    reg.push(
        LayoutBuilder::new().layer(base_layer()),
        "personal/bare",
        "v1",
    )
    .await;
    let id = create_ok(&t, json!({"image": "bare:v1"})).await;
    assert_eq!(settled(&t, &id).await["state"], "failed");
    let msg = last_message(&t, &id).await;
    assert!(msg.contains("init.cmd"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_failures_fail_the_machine_with_what_to_do() {
    let reg = TestRegistry::start().await;
    reg.push(base_image(), "personal/base", "v1").await;
    let t = TestAgent::with_images(reg.image_config()).await;

    // Not a reference at all: refused at once, naming the field.
    let (status, body) = create(&t, json!({"image": "Hello:v1"}), Some(ORG_TOKEN)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "config.image");

    // An unknown tag.
    let id = create_ok(&t, json!({"image": "base:nope"})).await;
    let m = settled(&t, &id).await;
    assert_eq!(m["state"], "failed");
    let msg = last_message(&t, &id).await;
    let reference = format!("{}/personal/base:nope", reg.host);
    assert!(
        msg.contains(&reference) && msg.contains("not found"),
        "{msg}"
    );
    assert!(msg.contains("push it first"), "{msg}");

    // Another org's token: the registry refuses.
    let (_, m) = create(&t, json!({"image": "base:v1"}), Some(OTHER_TOKEN)).await;
    let id = m["id"].as_str().unwrap().to_string();
    assert_eq!(settled(&t, &id).await["state"], "failed");
    let msg = last_message(&t, &id).await;
    assert!(msg.contains("refused access"), "{msg}");

    // No token at all (a direct call): the agent does not ask the registry.
    let before = reg.traffic.count();
    let (_, m) = create(&t, json!({"image": "base:v1"}), None).await;
    let id = m["id"].as_str().unwrap().to_string();
    assert_eq!(settled(&t, &id).await["state"], "failed");
    let msg = last_message(&t, &id).await;
    assert!(
        msg.contains("no registry credentials") && msg.contains("aloft machine start"),
        "{msg}"
    );
    assert_eq!(
        reg.traffic.count(),
        before,
        "nothing was asked of the registry"
    );
    // ... and starting it with a token (as `aloft machine start` does) pulls it.
    let rb = as_caller(
        t.req(Method::POST, &format!("{}/start", t.machine(&id))),
        Some(ORG_TOKEN),
    );
    let (status, body) = t.send(rb).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(t.state(&id).await, "started");

    // A registry that does not answer.
    let id = create_ok(&t, json!({"image": "127.0.0.1:1/personal/base:v1"})).await;
    assert_eq!(settled(&t, &id).await["state"], "failed");
    let msg = last_message(&t, &id).await;
    assert!(
        msg.contains("did not answer") && msg.contains("start the machine again"),
        "{msg}"
    );
}

/// The org token goes to aloft's own registry only (issue 15, item 5): an image on another
/// registry, which a tenant may run to collect tokens, is pulled without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_org_token_goes_only_to_the_own_registry() {
    let reg = TestRegistry::start().await;
    let t = TestAgent::with_images(reg.image_config()).await;
    // a registry that asks for Basic credentials and records the Authorization it gets
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    let foreign = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let record = record.clone();
        async move {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
            record.lock().push(auth.unwrap_or("-").to_string());
            (
                axum::http::StatusCode::UNAUTHORIZED,
                [("www-authenticate", r#"Basic realm="collector""#)],
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, foreign).await.unwrap() });

    let id = create_ok(&t, json!({"image": format!("{host}/personal/app:v1")})).await;
    assert_eq!(settled(&t, &id).await["state"], "failed");
    let msg = last_message(&t, &id).await;
    assert!(msg.contains("refused access"), "{msg}");
    let seen = seen.lock().clone();
    assert!(!seen.is_empty(), "the foreign registry was asked");
    assert!(
        seen.iter().all(|a| a == "-"),
        "no credentials went to another registry: {seen:?}"
    );
}

/// A control plane holding one org's login for one registry host, recording what it was asked.
struct Logins {
    org: &'static str,
    host: String,
    asked: Mutex<Vec<(String, String)>>,
}

#[async_trait::async_trait]
impl aloft_agent::secrets::SecretSource for Logins {
    async fn secrets(
        &self,
        _app: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, String> {
        Ok(Default::default())
    }

    async fn volume(&self, id: &str) -> Result<aloft_types::api::VolumeAccess, String> {
        Err(format!("no volume {id} here"))
    }

    async fn registry_login(
        &self,
        org: &str,
        host: &str,
    ) -> Result<Option<aloft_agent::secrets::RegistryLogin>, String> {
        self.asked.lock().push((org.to_string(), host.to_string()));
        Ok(
            (org == self.org && host == self.host).then(|| aloft_agent::secrets::RegistryLogin {
                username: "robot".into(),
                password: THIRD_PARTY_PASSWORD.into(),
            }),
        )
    }
}

/// The password the third-party registry accepts (and aloft's own does not).
const THIRD_PARTY_PASSWORD: &str = "third-party-robot-password";

/// A registry that asks for Basic credentials and records every Authorization it gets.
async fn collector() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let record = record.clone();
        async move {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
            record.lock().push(auth.unwrap_or("-").to_string());
            (
                axum::http::StatusCode::UNAUTHORIZED,
                [("www-authenticate", r#"Basic realm="collector""#)],
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (host, seen)
}

/// Stored registry logins (issue 15, item 5): a pull from a third-party registry uses the org's
/// login for exactly that host, asked of the control plane for that pull; an org without one
/// pulls anonymously and is told to `aloft registry login <host>`; a login for host A never
/// goes to host B; the org token goes to neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_party_registries_get_the_orgs_login_for_them_only() {
    let own = TestRegistry::start().await;
    // The third-party registry: a private one that knows the login's password (and ORG_TOKEN
    // only to push the image; the agent must not send it there).
    let private =
        TestRegistry::start_with(&[(ORG_TOKEN, "personal"), (THIRD_PARTY_PASSWORD, "personal")])
            .await;
    private.push(app_image(), "personal/app", "v1").await;
    let (elsewhere, seen) = collector().await;
    let logins = Arc::new(Logins {
        org: "personal",
        host: private.host.clone(),
        asked: Mutex::default(),
    });
    let deps = aloft_agent::AgentDeps {
        secrets: Some(logins.clone()),
        ..Default::default()
    };
    let t = TestAgent::with_images_and_deps(own.image_config(), deps).await;

    // With the org's login for that host: the pull succeeds with it.
    let image = format!("{}/personal/app:v1", private.host);
    let id = create_ok(&t, json!({"image": image})).await;
    let m = settled(&t, &id).await;
    assert_eq!(m["state"], "started", "{}", last_message(&t, &id).await);
    assert_eq!(
        stdout(&t, &id, &["cat", "/app/app.conf"]).await,
        "greeting=hello\n"
    );
    assert_eq!(
        logins.asked.lock().clone(),
        [("personal".to_string(), private.host.clone())],
        "asked for exactly that org and host"
    );

    // Another registry: the login for the first is not sent (nor the org token).
    let id = create_ok(&t, json!({"image": format!("{elsewhere}/personal/app:v1")})).await;
    assert_eq!(settled(&t, &id).await["state"], "failed");
    let msg = last_message(&t, &id).await;
    assert!(
        msg.contains(&format!("aloft registry login {elsewhere}")),
        "{msg}"
    );
    let seen = seen.lock().clone();
    assert!(!seen.is_empty(), "the other registry was asked");
    assert!(
        seen.iter().all(|a| a == "-"),
        "no credentials went to another registry: {seen:?}"
    );

    // Another org, with no login for the private registry: anonymous, refused, told what to do.
    let rb = t
        .req(Method::POST, &t.machines())
        .header(ORG_HEADER, "other")
        .header(REGISTRY_TOKEN_HEADER, OTHER_TOKEN)
        .json(&json!({"config": {"image": image}}));
    let (status, m) = t.send(rb).await;
    assert_eq!(status, 200, "{m}");
    let id = m["id"].as_str().unwrap();
    assert_eq!(settled(&t, id).await["state"], "failed");
    let msg = last_message(&t, id).await;
    assert!(
        msg.contains(&format!(
            "aloft registry login {} --username USER --password-stdin",
            private.host
        )),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_show_progress_and_fetch_each_layer_once() {
    let reg = TestRegistry::start().await;
    let base = reg.push(base_image(), "personal/base", "v1").await;
    let app = reg.push(app_image(), "personal/app", "v1").await;
    let t = TestAgent::with_images(reg.image_config()).await;
    reg.traffic.blob_delay_ms.store(300, Ordering::SeqCst);

    let since = reg.traffic.count();
    let id = create_ok(&t, json!({"image": "app:v1"})).await;
    let mut seen = Vec::new();
    let m = loop {
        let (_, m) = t.get(&t.machine(&id)).await;
        if let Some(p) = m.get("image_pull") {
            seen.push(p.clone());
        }
        if !matches!(m["state"].as_str(), Some("created" | "starting")) {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(m["state"], "started");
    let fetching = seen
        .iter()
        .find(|p| p["phase"] == "fetching")
        .unwrap_or_else(|| panic!("no progress while fetching: {seen:?}"));
    assert_eq!(fetching["layers_total"], 2, "{fetching}");
    assert_eq!(fetching["layers_cached"], 0, "{fetching}");
    assert!(fetching["bytes_total"].as_u64().unwrap() > 0, "{fetching}");
    for layer in &app.layers {
        assert_eq!(reg.traffic.blob_gets(layer, since), 1, "{layer}");
    }

    // A second machine of the same image fetches no blob.
    let since = reg.traffic.count();
    let again = create_ok(&t, json!({"image": "app:v1"})).await;
    assert_eq!(settled(&t, &again).await["state"], "started");
    let fetched = reg.requests_since(since, "/blobs/");
    assert!(fetched.is_empty(), "{fetched:?}");

    // Another image sharing the base layer fetches only its own blobs.
    let since = reg.traffic.count();
    let other = create_ok(&t, json!({"image": "base:v1"})).await;
    assert_eq!(settled(&t, &other).await["state"], "started");
    assert_eq!(
        base.layers[0], app.layers[0],
        "the images share their base layer"
    );
    assert_eq!(reg.traffic.blob_gets(&base.layers[0], since), 0);
    assert_eq!(reg.traffic.blob_gets(&base.config_digest, since), 1);
}

impl TestRegistry {
    fn requests_since(&self, since: usize, containing: &str) -> Vec<String> {
        self.traffic.requests.lock()[since..]
            .iter()
            .filter(|r| r.contains(containing))
            .cloned()
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_use_the_image_on_the_host() {
    let reg = TestRegistry::start().await;
    let app = reg.push(app_image(), "personal/app", "v1").await;
    let mut t = TestAgent::with_images(reg.image_config()).await;
    let id = create_ok(&t, json!({"image": "app:v1"})).await;
    assert_eq!(settled(&t, &id).await["state"], "started");

    // An agent restart adopts the machine without asking the registry anything.
    let since = reg.traffic.count();
    t.restart().await;
    assert_eq!(t.state(&id).await, "started");
    assert_eq!(t.starts(&id), 1);
    // The restart policy starts it again from the image on the host (no token at hand).
    t.rt.kill(&mid(&id)).await.unwrap();
    t.eventually("the restart policy restarted it", || async {
        t.starts(&id) == 2
    })
    .await;
    t.wait_for(&id, "started").await;
    assert_eq!(reg.traffic.count(), since, "no registry request");
    assert_eq!(
        t.get(&t.machine(&id)).await.1["image_ref"]["digest"],
        app.manifest_digest
    );

    // The image is gone from the host (say an operator wiped the cache): the restart policy
    // cannot pull without a token, and says how to fix it.
    let images = aloft_image::ImageStore::open(t.images.clone().unwrap()).unwrap();
    images.prune(&[]).await.unwrap();
    t.rt.kill(&mid(&id)).await.unwrap();
    t.eventually("the machine failed", || async {
        t.state(&id).await == "failed"
    })
    .await;
    let msg = last_message(&t, &id).await;
    assert!(msg.contains("aloft machine start"), "{msg}");
    // Starting it (with the caller's token) pulls the same image again, by digest.
    let rb = as_caller(
        t.req(Method::POST, &format!("{}/start", t.machine(&id))),
        Some(ORG_TOKEN),
    );
    let (status, body) = t.send(rb).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(t.state(&id).await, "started");
    assert_eq!(lines(&stdout(&t, &id, &["ls", "/app"]).await), ["app.conf"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_the_middle_of_a_pull_is_finished_clearly() {
    let reg = TestRegistry::start().await;
    reg.push(app_image(), "personal/app", "v1").await;
    let mut t = TestAgent::with_images(reg.image_config()).await;
    reg.traffic.blob_delay_ms.store(2000, Ordering::SeqCst);
    let id = create_ok(&t, json!({"image": "app:v1"})).await;
    t.eventually("the pull is fetching", || async {
        t.get(&t.machine(&id)).await.1["image_pull"]["phase"] == "fetching"
    })
    .await;
    t.crash().await;
    // The new agent has no token: the image is not on the host, so the machine fails saying
    // what to do.
    assert_eq!(t.state(&id).await, "failed");
    let msg = last_message(&t, &id).await;
    assert!(msg.contains("aloft machine start"), "{msg}");
    reg.traffic.blob_delay_ms.store(0, Ordering::SeqCst);
    let rb = as_caller(
        t.req(Method::POST, &format!("{}/start", t.machine(&id))),
        Some(ORG_TOKEN),
    );
    let (status, body) = t.send(rb).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(t.state(&id).await, "started");
}

/// Another org's image by digest, through an agent crash (issue 15, item 6): the agent finishes
/// a create after a crash without the caller's token, and then uses only an image the machine's
/// record was pinned to by a pull, never another org's image that happens to be on the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_does_not_hand_another_orgs_image_over() {
    let reg = TestRegistry::start().await;
    let app = reg.push(app_image(), "personal/app", "v1").await;
    let mut t = TestAgent::with_images(reg.image_config()).await;
    let id = create_ok(&t, json!({"image": "app:v1"})).await;
    assert_eq!(settled(&t, &id).await["state"], "started");

    // org `other` names personal's image by digest; its access check is slow, and the agent
    // crashes meanwhile
    reg.traffic.manifest_delay_ms.store(3000, Ordering::SeqCst);
    let image = format!("{}/personal/app@{}", reg.host, app.manifest_digest);
    let rb = t
        .req(Method::POST, &t.machines())
        .header(ORG_HEADER, "other")
        .header(REGISTRY_TOKEN_HEADER, OTHER_TOKEN)
        .json(&json!({"config": {"image": image}}));
    let (status, m) = t.send(rb).await;
    assert_eq!(status, 200, "{m}");
    let theirs = m["id"].as_str().unwrap().to_string();
    t.eventually("the access check is under way", || async {
        let n = reg
            .traffic
            .requests
            .lock()
            .iter()
            .filter(|r| r.contains("/manifests/"))
            .count();
        n > 1
    })
    .await;
    t.crash().await;
    reg.traffic.manifest_delay_ms.store(0, Ordering::SeqCst);
    assert_eq!(
        t.state(&theirs).await,
        "failed",
        "not started with personal's image"
    );
    let msg = last_message(&t, &theirs).await;
    assert!(msg.contains("aloft machine start"), "{msg}");
    // and starting it with its own token is refused by the registry
    let rb = t
        .req(Method::POST, &format!("{}/start", t.machine(&theirs)))
        .header(ORG_HEADER, "other")
        .header(REGISTRY_TOKEN_HEADER, OTHER_TOKEN);
    let (status, body) = t.send(rb).await;
    assert_ne!(status, 200, "{body}");
    assert_ne!(t.state(&theirs).await, "started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_pull_the_new_image_first() {
    let reg = TestRegistry::start().await;
    let base = reg.push(base_image(), "personal/app", "v1").await;
    let app = reg.push(app_image(), "personal/app", "v2").await;
    let t = TestAgent::with_images(reg.image_config()).await;
    let id = create_ok(&t, json!({"image": "app:v1"})).await;
    assert_eq!(settled(&t, &id).await["state"], "started");
    let update = |image: &str| {
        as_caller(t.req(Method::POST, &t.machine(&id)), Some(ORG_TOKEN))
            .json(&json!({"config": {"image": image}}))
    };

    // A tag that does not exist: 422, and the machine still runs its version.
    let (_, before) = t.get(&t.machine(&id)).await;
    let (status, body) = t.send(update("app:nope")).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "config.image");
    let (_, after) = t.get(&t.machine(&id)).await;
    assert_eq!(after["state"], "started");
    assert_eq!(after["instance_id"], before["instance_id"]);
    assert_eq!(after["image_ref"]["digest"], base.manifest_digest);

    // The new image: a new version running it.
    let (status, m) = t.send(update("app:v2")).await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["state"], "started");
    assert_eq!(m["image_ref"]["digest"], app.manifest_digest);
    assert_eq!(m["image_ref"]["tag"], "v2");
    assert_eq!(lines(&stdout(&t, &id, &["ls", "/app"]).await), ["app.conf"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_the_images_machines_use() {
    let reg = TestRegistry::start().await;
    let base = reg.push(base_image(), "personal/base", "v1").await;
    let app = reg.push(app_image(), "personal/app", "v1").await;
    let t = TestAgent::with_images(reg.image_config()).await;
    let keep = create_ok(&t, json!({"image": "app:v1"})).await;
    let gone = create_ok(&t, json!({"image": "base:v1"})).await;
    for id in [&keep, &gone] {
        assert_eq!(settled(&t, id).await["state"], "started");
    }

    let (status, list) = t.get("/internal/v1/images").await;
    assert_eq!(status, 200, "{list}");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let of = |digest: &str| {
        list.iter()
            .find(|i| i["manifest_digest"] == digest)
            .unwrap()
            .clone()
    };
    assert_eq!(of(&app.manifest_digest)["machines"], json!([keep]));
    assert_eq!(
        of(&app.manifest_digest)["references"],
        json!([format!("{}/personal/app:v1", reg.host)])
    );

    // Both in use: nothing to remove.
    let (status, report) = t.post("/internal/v1/images/prune", json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["images_removed"], json!([]));

    let (status, _) = t
        .send(t.req(Method::DELETE, &format!("{}?force=true", t.machine(&gone))))
        .await;
    assert_eq!(status, 200);
    let (_, report) = t.post("/internal/v1/images/prune", json!({})).await;
    assert_eq!(report["images_removed"], json!([base.manifest_digest]));
    assert_eq!(report["images_kept"], json!([app.manifest_digest]));
    // The base layer is shared with the kept image: only the image itself went.
    assert_eq!(report["layers_removed"], 0, "{report}");
    let (_, list) = t.get("/internal/v1/images").await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(
        stdout(&t, &keep, &["cat", "/app/app.conf"]).await,
        "greeting=hello\n"
    );

    // Internal only.
    let resp = reqwest::Client::new()
        .get(format!("{}/internal/v1/images", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

/// A control plane that does not answer for registry logins.
struct Unreachable;

#[async_trait::async_trait]
impl aloft_agent::secrets::SecretSource for Unreachable {
    async fn secrets(
        &self,
        _app: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, String> {
        Err("connection refused".into())
    }

    async fn volume(&self, id: &str) -> Result<aloft_types::api::VolumeAccess, String> {
        Err(format!("no volume {id} here"))
    }

    async fn registry_login(
        &self,
        _org: &str,
        _host: &str,
    ) -> Result<Option<aloft_agent::secrets::RegistryLogin>, String> {
        Err("connection refused to http://10.1.2.3:4280".into())
    }
}

/// When the org's login cannot be asked of the control plane, the pull fails and says to start
/// again; the registry is not tried anonymously, and the control plane's address is not shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_login_lookup_no_pull() {
    let own = TestRegistry::start().await;
    let (elsewhere, seen) = collector().await;
    let deps = aloft_agent::AgentDeps {
        secrets: Some(Arc::new(Unreachable)),
        ..Default::default()
    };
    let t = TestAgent::with_images_and_deps(own.image_config(), deps).await;
    let id = create_ok(&t, json!({"image": format!("{elsewhere}/personal/app:v1")})).await;
    assert_eq!(settled(&t, &id).await["state"], "failed");
    let msg = last_message(&t, &id).await;
    assert!(
        msg.contains("control plane did not answer") && msg.contains("aloft machine start"),
        "{msg}"
    );
    assert!(!msg.contains("10.1.2.3"), "{msg}");
    assert!(seen.lock().is_empty(), "the registry was not asked");
}
