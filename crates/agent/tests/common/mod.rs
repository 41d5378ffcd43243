//! A test agent on 127.0.0.1:0 with a temp data dir and a shared `SimRuntime`.
#![allow(dead_code)]

use aloft_agent::{Agent, AgentConfig, AgentDeps};
use aloft_image::{ImageConfig, ImageStore};
use aloft_runtime::sim::SimRuntime;
use aloft_types::MachineId;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

pub const TOKEN: &str = "internal-secret";
/// What other hosts send: it opens only the autostart.
pub const PEER_TOKEN: &str = "peer-key";
pub const APP: &str = "hello";

pub struct TestAgent {
    pub agent: Agent,
    pub rt: SimRuntime,
    pub dir: tempfile::TempDir,
    pub url: String,
    pub client: reqwest::Client,
    pub cpus: u32,
    pub memory_mb: u64,
    /// The image store's config, when the agent pulls images (opened again on every reopen,
    /// as a new agent process would).
    pub images: Option<ImageConfig>,
    /// What the agent is opened with (again on every reopen).
    pub deps: AgentDeps,
    server: tokio::task::JoinHandle<()>,
}

pub fn config(dir: &std::path::Path, cpus: u32, memory_mb: u64) -> AgentConfig {
    AgentConfig {
        data_dir: dir.to_path_buf(),
        host_id: "local-1".into(),
        host_number: 7,
        region: "local".into(),
        cpus,
        memory_mb,
        agent_token: TOKEN.into(),
        peer_token: PEER_TOKEN.into(),
        images: None,
        registry: String::new(),
    }
}

/// `config` with an image store (its default registry is the agent's too).
fn config_with_images(
    dir: &std::path::Path,
    cpus: u32,
    memory_mb: u64,
    images: Option<&ImageConfig>,
) -> AgentConfig {
    let mut c = config(dir, cpus, memory_mb);
    if let Some(images) = images {
        c.images = Some(ImageStore::open(images.clone()).unwrap());
        c.registry = images.default_registry.clone();
    }
    c
}

async fn serve(agent: &Agent) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = agent.router();
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (url, server)
}

impl TestAgent {
    pub async fn start() -> TestAgent {
        Self::with_capacity(64, 65536).await
    }

    pub async fn with_capacity(cpus: u32, memory_mb: u64) -> TestAgent {
        Self::open(cpus, memory_mb, None, AgentDeps::default()).await
    }

    /// An agent opened with `deps` (secrets, internal DNS, drain), on every open.
    pub async fn with_deps(deps: AgentDeps) -> TestAgent {
        Self::open(64, 65536, None, deps).await
    }

    /// An agent that pulls images into a store made from `images` (its `data_dir` is ignored:
    /// the store lives in the agent's temp dir, under `images`).
    pub async fn with_images(images: ImageConfig) -> TestAgent {
        Self::open(64, 65536, Some(images), AgentDeps::default()).await
    }

    /// An agent that pulls images (as [`TestAgent::with_images`]) and is opened with `deps`.
    pub async fn with_images_and_deps(images: ImageConfig, deps: AgentDeps) -> TestAgent {
        Self::open(64, 65536, Some(images), deps).await
    }

    async fn open(
        cpus: u32,
        memory_mb: u64,
        images: Option<ImageConfig>,
        deps: AgentDeps,
    ) -> TestAgent {
        let dir = tempfile::tempdir().unwrap();
        let images = images.map(|c| ImageConfig {
            data_dir: dir.path().join("images"),
            ..c
        });
        let rt = SimRuntime::new();
        let agent = Agent::open(
            config_with_images(dir.path(), cpus, memory_mb, images.as_ref()),
            Arc::new(rt.clone()),
            deps.clone(),
        )
        .await
        .unwrap();
        let (url, server) = serve(&agent).await;
        TestAgent {
            agent,
            rt,
            dir,
            url,
            // No pooling: a server closes the connection after refusing an oversized body, and a
            // pooled client could race that close on its next request.
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            cpus,
            memory_mb,
            images,
            deps,
            server,
        }
    }

    /// A clean restart: shutdown, then open again on the same data dir and runtime.
    pub async fn restart(&mut self) {
        self.agent.shutdown().await;
        self.reopen().await;
    }

    /// `Agent::crash`, then open again on the same data dir and runtime.
    pub async fn crash(&mut self) {
        self.agent.crash();
        self.reopen().await;
    }

    /// Opens the agent again on the same data dir and runtime (after `agent.crash()` or
    /// `agent.shutdown()`), with a new server.
    pub async fn reopen(&mut self) {
        self.server.abort();
        self.agent = Agent::open(
            config_with_images(
                self.dir.path(),
                self.cpus,
                self.memory_mb,
                self.images.as_ref(),
            ),
            Arc::new(self.rt.clone()),
            self.deps.clone(),
        )
        .await
        .unwrap();
        let (url, server) = serve(&self.agent).await;
        self.url = url;
        self.server = server;
    }

    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(TOKEN)
    }

    pub fn machines(&self) -> String {
        format!("/v1/apps/{APP}/machines")
    }

    pub fn machine(&self, id: &str) -> String {
        format!("/v1/apps/{APP}/machines/{id}")
    }

    /// Sends and returns (status, JSON body or Null).
    pub async fn send(&self, rb: RequestBuilder) -> (StatusCode, Value) {
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.req(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.req(Method::POST, path).json(&body)).await
    }

    /// Creates a machine from `config` (plus extra top-level fields) and returns its JSON.
    pub async fn create(&self, body: Value) -> Value {
        let (status, m) = self.post(&self.machines(), body).await;
        assert_eq!(status, 200, "{m}");
        m
    }

    /// Creates a machine and waits for it to be started.
    pub async fn create_started(&self, config: Value) -> String {
        let m = self.create(json!({ "config": config })).await;
        let id = m["id"].as_str().unwrap().to_string();
        self.wait_for(&id, "started").await;
        id
    }

    pub async fn wait_for(&self, id: &str, state: &str) {
        let (status, body) = self
            .get(&format!(
                "{}/wait?state={state}&timeout=10",
                self.machine(id)
            ))
            .await;
        assert_eq!(status, 200, "waiting for {state}: {body}");
    }

    pub async fn state(&self, id: &str) -> String {
        let (status, m) = self.get(&self.machine(id)).await;
        assert_eq!(status, 200, "{m}");
        m["state"].as_str().unwrap().to_string()
    }

    /// Events oldest first (the API answers newest first).
    pub async fn events(&self, id: &str) -> Vec<Value> {
        let (status, events) = self.get(&format!("{}/events", self.machine(id))).await;
        assert_eq!(status, 200, "{events}");
        let mut events = events.as_array().unwrap().clone();
        events.reverse();
        events
    }

    /// `(type, status, source)` of every event, oldest first.
    pub async fn event_kinds(&self, id: &str) -> Vec<(String, String, String)> {
        self.events(id)
            .await
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap().to_string(),
                    e["status"].as_str().unwrap().to_string(),
                    e["source"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    pub fn live_runs(&self, id: &str) -> usize {
        self.rt.live_runs(&mid(id))
    }

    pub fn starts(&self, id: &str) -> u64 {
        self.rt.starts(&mid(id))
    }

    /// Polls until `f` holds (at most 10 s).
    pub async fn eventually<F, Fut>(&self, what: &str, mut f: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..1000 {
            if f().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting until {what}");
    }
}

pub fn mid(id: &str) -> MachineId {
    MachineId::parse(id).unwrap()
}

/// A config for the sim runtime with extra env and fields.
pub fn sim_config(env: &[(&str, &str)]) -> Value {
    let env: serde_json::Map<String, Value> = env
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    json!({ "image": "registry.local/hello:v1", "env": env })
}
