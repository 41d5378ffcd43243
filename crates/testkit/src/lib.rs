//! One harness that starts an aloft cluster in-process for tests: a control plane and N host
//! agents, each serving HTTP on `127.0.0.1:0`, in temp dirs, sharing a random internal token and
//! one [`SimRuntime`] (so machines keep "running" across an agent restart or crash, as real
//! machines outlive their agent). The org `personal` exists with a token; every agent is
//! registered (heartbeat running) before [`Cluster::start`] returns. Dropping the cluster stops
//! every server and task and deletes the temp dirs.
//!
//! ```no_run
//! # async fn demo() {
//! let cluster = aloft_testkit::Cluster::start().await;
//! let api = cluster.client();
//! api.create_app("hello").await;
//! let m = api
//!     .create_machine("hello", serde_json::json!({"config": {"image": "hello:latest"}}))
//!     .await;
//! assert_eq!(m["region"], "local");
//! # }
//! ```
//!
//! Test helpers panic with a message instead of returning errors: a harness that cannot start is
//! a failed test.

use aloft_agent::{Agent, AgentConfig};
use aloft_control::{ControlPlane, ControlPlaneConfig};
use aloft_runtime::sim::SimRuntime;
use aloft_types::ids::random_hex;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use reqwest;

/// How long start-up steps (registration, re-binding a port) may take before the harness gives up.
const STARTUP_DEADLINE: Duration = Duration::from_secs(10);

/// One host of a test cluster.
#[derive(Debug, Clone)]
pub struct HostOptions {
    pub region: String,
    /// CPUs the agent advertises for placement.
    pub cpus: u32,
    /// Memory (MB) the agent advertises for placement.
    pub memory_mb: u64,
}

impl HostOptions {
    /// A host in `region` with 8 CPUs and 16 GB.
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            cpus: 8,
            memory_mb: 16384,
        }
    }

    pub fn cpus(mut self, cpus: u32) -> Self {
        self.cpus = cpus;
        self
    }

    pub fn memory_mb(mut self, memory_mb: u64) -> Self {
        self.memory_mb = memory_mb;
        self
    }
}

/// What cluster to start: its hosts and the region creates default to.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// One agent per entry; host ids are `<region>-<n>` (`local-1`, `ord-2`, ...).
    pub hosts: Vec<HostOptions>,
    pub default_region: String,
}

impl Default for ClusterOptions {
    /// One host in region `local`.
    fn default() -> Self {
        Self::with_hosts(vec![HostOptions::new("local")])
    }
}

impl ClusterOptions {
    /// These hosts, with `default_region` the first host's region.
    pub fn with_hosts(hosts: Vec<HostOptions>) -> Self {
        let default_region = hosts
            .first()
            .map_or_else(|| "local".to_string(), |h| h.region.clone());
        Self {
            hosts,
            default_region,
        }
    }
}

/// A running test cluster.
pub struct Cluster {
    /// The control plane's base URL (`http://127.0.0.1:<port>`).
    pub api_url: String,
    /// An API token of the org `personal`.
    pub token: String,
    /// The token agents and the control plane share.
    pub internal_token: String,
    /// The runtime every agent of the cluster runs machines on.
    pub runtime: SimRuntime,
    control_plane: ControlPlaneNode,
    agents: Vec<AgentNode>,
    http: reqwest::Client,
    /// Holds every data dir; deleted on drop (declared last: dropped after the servers).
    _dir: tempfile::TempDir,
}

struct ControlPlaneNode {
    config: ControlPlaneConfig,
    server: Server,
}

struct AgentNode {
    config: AgentConfig,
    agent: Agent,
    server: Server,
    heartbeat: JoinHandle<()>,
}

impl Drop for AgentNode {
    fn drop(&mut self) {
        self.heartbeat.abort();
        self.agent.crash();
    }
}

/// An HTTP server task; aborted on drop (idle connections close, in-flight requests finish).
struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves `router` on `addr` (port 0 for a free port). Re-binding a port that was just
    /// released is retried for a while.
    async fn start(router: axum::Router, addr: SocketAddr) -> Server {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("testkit: cannot listen on {addr}: {e}"),
            }
        };
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("testkit: no local address for {addr}: {e}"));
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                eprintln!("testkit: server on {addr} stopped: {e}");
            }
        });
        Server { addr, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

impl Cluster {
    /// A control plane and one agent in region `local`.
    pub async fn start() -> Cluster {
        Self::start_with(ClusterOptions::default()).await
    }

    /// A control plane and one agent per [`HostOptions`] (one `local` host when there are none).
    pub async fn start_with(opts: ClusterOptions) -> Cluster {
        let opts = if opts.hosts.is_empty() {
            ClusterOptions {
                hosts: ClusterOptions::default().hosts,
                ..opts
            }
        } else {
            opts
        };
        let dir = tempfile::tempdir().expect("testkit: cannot create a temp dir");
        let internal_token = random_hex(20);
        let cp_config = ControlPlaneConfig {
            data_dir: dir.path().join("control-plane"),
            internal_token: internal_token.clone(),
            default_region: opts.default_region.clone(),
        };
        let cp = open_control_plane(&cp_config).await;
        cp.ensure_org("personal")
            .await
            .expect("testkit: cannot create the org `personal`");
        let token = cp
            .create_token("personal", "testkit")
            .await
            .expect("testkit: cannot create a token");
        let server = Server::start(cp.router(), loopback()).await;
        let api_url = server.url();

        let runtime = SimRuntime::new();
        let mut agents = Vec::new();
        for (i, host) in opts.hosts.iter().enumerate() {
            let n = opts.hosts[..i]
                .iter()
                .filter(|h| h.region == host.region)
                .count()
                + 1;
            let config = AgentConfig {
                data_dir: dir.path().join(format!("agent-{i}")),
                host_id: format!("{}-{n}", host.region),
                host_number: u32::try_from(i + 1).expect("testkit: too many hosts"),
                region: host.region.clone(),
                cpus: host.cpus,
                memory_mb: host.memory_mb,
                internal_token: internal_token.clone(),
                // No pulls: machines here name images no registry holds (the agent's own
                // tests cover images, against a real registry).
                images: None,
                registry: String::new(),
            };
            agents.push(start_agent(config, &runtime, &api_url, loopback()).await);
        }

        let cluster = Cluster {
            api_url,
            token,
            internal_token,
            runtime,
            control_plane: ControlPlaneNode {
                config: cp_config,
                server,
            },
            agents,
            http: reqwest::Client::new(),
            _dir: dir,
        };
        cluster.wait_for_hosts().await;
        cluster
    }

    /// A client of the control plane with the `personal` org's token.
    pub fn client(&self) -> Client {
        Client {
            http: self.http.clone(),
            base: self.api_url.clone(),
            token: Some(self.token.clone()),
        }
    }

    /// Creates another org (through `POST /internal/v1/orgs`) and returns a token for it.
    pub async fn new_org(&self, slug: &str) -> String {
        let resp = self
            .http
            .post(format!("{}/internal/v1/orgs", self.api_url))
            .bearer_auth(&self.internal_token)
            .json(&serde_json::json!({ "slug": slug }))
            .send()
            .await
            .expect("testkit: the control plane did not answer");
        let (status, body) = status_json(resp).await;
        assert_eq!(status, 201, "testkit: creating org {slug}: {body}");
        body["token"]
            .as_str()
            .expect("testkit: no token in the reply")
            .to_string()
    }

    /// The id of host `i` (`local-1`, `ord-2`, ...).
    pub fn host_id(&self, i: usize) -> &str {
        &self.node(i).config.host_id
    }

    /// Agent `i`, for tests that drive it directly.
    pub fn agent(&self, i: usize) -> &Agent {
        &self.node(i).agent
    }

    /// The base URL of agent `i`'s internal API.
    pub fn agent_url(&self, i: usize) -> String {
        self.node(i).server.url()
    }

    /// Clean restart of agent `i`: `Agent::shutdown`, then reopen on the same data dir, runtime
    /// and port.
    pub async fn restart_agent(&mut self, i: usize) {
        let node = self.agents.remove(i);
        node.heartbeat.abort();
        node.agent.shutdown().await;
        self.reopen_agent(i, node).await;
    }

    /// Crash of agent `i`: `Agent::crash` (nothing more is written), then reopen on the same
    /// data dir, runtime and port.
    pub async fn crash_agent(&mut self, i: usize) {
        let node = self.agents.remove(i);
        node.heartbeat.abort();
        node.agent.crash();
        self.reopen_agent(i, node).await;
    }

    /// Stops agent `i` for good (`Agent::shutdown`, its API and heartbeat gone): its host stays
    /// registered but does not answer. The agents after it move down one index.
    pub async fn stop_agent(&mut self, i: usize) {
        let node = self.agents.remove(i);
        node.heartbeat.abort();
        node.agent.shutdown().await;
    }

    /// Restarts the control plane on the same data dir and port (agents keep running).
    pub async fn restart_control_plane(&mut self) {
        let addr = self.control_plane.server.addr;
        self.control_plane.server.task.abort();
        let cp = open_control_plane(&self.control_plane.config).await;
        self.control_plane.server = Server::start(cp.router(), addr).await;
        self.wait_for_hosts().await;
    }

    fn node(&self, i: usize) -> &AgentNode {
        self.agents
            .get(i)
            .unwrap_or_else(|| panic!("testkit: there is no agent {i}"))
    }

    async fn reopen_agent(&mut self, i: usize, node: AgentNode) {
        let addr = node.server.addr;
        let config = node.config.clone();
        drop(node);
        let fresh = start_agent(config, &self.runtime, &self.api_url, addr).await;
        self.agents.insert(i, fresh);
    }

    /// Waits until `GET /v1/platform/regions` counts every agent of the cluster.
    async fn wait_for_hosts(&self) {
        let want = u32::try_from(self.agents.len()).unwrap_or(u32::MAX);
        let deadline = Instant::now() + STARTUP_DEADLINE;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(resp) = self.client().get("/v1/platform/regions").send().await {
                let (status, body) = status_json(resp).await;
                let hosts: u64 = body["regions"]
                    .as_array()
                    .map(|rs| rs.iter().filter_map(|r| r["hosts"].as_u64()).sum())
                    .unwrap_or(0);
                if status == 200 && hosts >= u64::from(want) {
                    return;
                }
                last = format!("{status} {body}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "testkit: the control plane did not learn about all {want} agents; last answer: {last}"
        );
    }
}

async fn open_control_plane(config: &ControlPlaneConfig) -> ControlPlane {
    ControlPlane::open(config.clone())
        .await
        .unwrap_or_else(|e| panic!("testkit: cannot open the control plane: {e}"))
}

async fn start_agent(
    config: AgentConfig,
    runtime: &SimRuntime,
    api_url: &str,
    addr: SocketAddr,
) -> AgentNode {
    // Secrets and volume keys from the control plane, as in `aloft server host`.
    let source = aloft_agent::secrets::ControlPlaneSecrets::new(api_url, &config.internal_token)
        .unwrap_or_else(|e| panic!("testkit: cannot build the secrets client: {e}"));
    let deps = aloft_agent::AgentDeps {
        secrets: Some(Arc::new(source)),
        ..Default::default()
    };
    let agent = Agent::open(config.clone(), Arc::new(runtime.clone()), deps)
        .await
        .unwrap_or_else(|e| panic!("testkit: cannot open agent {}: {e}", config.host_id));
    let server = Server::start(agent.router(), addr).await;
    let heartbeat = aloft_agent::spawn_heartbeat(agent.clone(), api_url.to_string(), server.url());
    AgentNode {
        config,
        agent,
        server,
        heartbeat,
    }
}

/// A client of the control plane: a pooled `reqwest::Client`, the base URL and a bearer token.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// The same client with another token.
    pub fn with_token(&self, token: impl Into<String>) -> Client {
        Client {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    /// The same client without a token.
    pub fn anonymous(&self) -> Client {
        Client {
            token: None,
            ..self.clone()
        }
    }

    /// `base + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request to `path` with the token, if any.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, self.url(path));
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, path)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::DELETE, path)
    }

    /// Sends a request and returns the status and JSON body (`Null` when the body is not JSON).
    pub async fn send(&self, rb: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("testkit: request to {} failed: {e}", self.base));
        status_json(resp).await
    }

    /// `POST /v1/apps`; panics unless it is created.
    pub async fn create_app(&self, name: &str) -> Value {
        let (status, body) = self
            .send(
                self.post("/v1/apps")
                    .json(&serde_json::json!({ "app_name": name })),
            )
            .await;
        assert_eq!(status, 201, "testkit: creating app {name}: {body}");
        body
    }

    /// `POST /v1/apps/{app}/machines` with `body`; panics unless it succeeds.
    pub async fn create_machine(&self, app: &str, body: Value) -> Value {
        let (status, reply) = self
            .send(self.post(&format!("/v1/apps/{app}/machines")).json(&body))
            .await;
        assert!(
            (200..300).contains(&status),
            "testkit: creating a machine in {app}: {status} {reply}"
        );
        reply
    }
}

/// A response's status and JSON body (`Null` when the body is empty or not JSON).
pub async fn status_json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}
