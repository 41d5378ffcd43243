//! One harness that starts an aloft cluster in-process for tests: a control plane and N hosts,
//! started by the same roles production runs (`aloft_node::roles::control::ControlRole` and
//! `aloft_node::roles::host::HostRole`: agent, proxy, catalog, health checks, heartbeat), each
//! serving HTTP on `127.0.0.1:0`, in temp dirs, sharing a random internal token and one
//! [`SimRuntime`] (so machines keep "running" across an agent restart or crash, as real
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
use aloft_control::ControlPlaneConfig;
use aloft_node::roles::control::{ControlConfig, ControlRole};
use aloft_node::roles::host::{HostConfig, HostRole, ProxyListeners};
use aloft_node::supervisor::Supervisor;
use aloft_proxy::ProxyConfig;
use aloft_runtime::sim::SimRuntime;
use aloft_types::ids::random_hex;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

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
    addr: SocketAddr,
    supervisor: Supervisor,
}

/// One host: the role and the supervisor that owns its tasks, while it runs.
struct AgentNode {
    config: AgentConfig,
    /// Its host's credential (kept across restarts, as in its data dir).
    credential: String,
    /// Where its agent's API listens (kept across restarts).
    addr: SocketAddr,
    running: Option<(HostRole, Supervisor)>,
}

impl AgentNode {
    fn host(&self) -> &HostRole {
        &self
            .running
            .as_ref()
            .unwrap_or_else(|| panic!("testkit: host {} is not running", self.config.host_id))
            .0
    }

    /// Stops the host as `Agent::shutdown` does (operations finish, servers drain).
    async fn shutdown(&mut self) {
        if let Some((host, supervisor)) = self.running.take() {
            supervisor.shutdown(host.shutdown()).await;
        }
    }
}

impl Drop for AgentNode {
    /// As SIGKILL would: nothing more is written, every task ends.
    fn drop(&mut self) {
        if let Some((host, supervisor)) = self.running.take() {
            host.agent.crash();
            drop(supervisor);
        }
    }
}

/// Listens on `addr` (port 0 for a free port). Re-binding a port that was just released is
/// retried for a while.
async fn listen(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + STARTUP_DEADLINE;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("testkit: cannot listen on {addr}: {e}"),
        }
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
            hostnames: aloft_control::HostnamePolicy::allow_any(),
        };
        let control_plane = start_control_plane(cp_config, loopback()).await;
        let cp = &control_plane.1;
        cp.ensure_org("personal")
            .await
            .expect("testkit: cannot create the org `personal`");
        let token = cp
            .create_token("personal", "testkit")
            .await
            .expect("testkit: cannot create a token");
        let control_plane = control_plane.0;
        let api_url = format!("http://{}", control_plane.addr);

        let runtime = SimRuntime::new();
        let mut agents = Vec::new();
        for (i, host) in opts.hosts.iter().enumerate() {
            let n = opts.hosts[..i]
                .iter()
                .filter(|h| h.region == host.region)
                .count()
                + 1;
            let host_id = format!("{}-{n}", host.region);
            let joined = cp
                .enroll_host(&host_id)
                .await
                .unwrap_or_else(|e| panic!("testkit: cannot join host {host_id}: {e}"));
            let config = AgentConfig {
                data_dir: dir.path().join(format!("agent-{i}")),
                host_id,
                host_number: u32::try_from(i + 1).expect("testkit: too many hosts"),
                region: host.region.clone(),
                cpus: host.cpus,
                memory_mb: host.memory_mb,
                agent_token: joined.keys.agent,
                peer_token: joined.keys.peer,
                // No pulls: machines here name images no registry holds (the agent's own
                // tests cover images, against a real registry).
                images: None,
                registry: String::new(),
            };
            agents
                .push(start_agent(config, joined.credential, &runtime, &api_url, loopback()).await);
        }

        let cluster = Cluster {
            api_url,
            token,
            internal_token,
            runtime,
            control_plane,
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

    /// The keys host `i` got when it joined (its agent key, the peer and gossip keys).
    pub fn host_keys(&self, i: usize) -> aloft_types::join::HostKeys {
        aloft_control::derive_host_keys(&self.internal_token, self.host_id(i))
    }

    /// The credential host `i` got when it joined (what it calls the control plane with).
    pub fn host_credential(&self, i: usize) -> &str {
        &self.node(i).credential
    }

    /// The id of host `i` (`local-1`, `ord-2`, ...).
    pub fn host_id(&self, i: usize) -> &str {
        &self.node(i).config.host_id
    }

    /// Agent `i`, for tests that drive it directly.
    pub fn agent(&self, i: usize) -> &Agent {
        &self.node(i).host().agent
    }

    /// The base URL of agent `i`'s internal API.
    pub fn agent_url(&self, i: usize) -> String {
        format!("http://{}", self.node(i).addr)
    }

    /// Clean restart of agent `i`: its host stops as `Agent::shutdown` does, then starts again
    /// on the same data dir, runtime and port.
    pub async fn restart_agent(&mut self, i: usize) {
        let mut node = self.agents.remove(i);
        node.shutdown().await;
        self.reopen_agent(i, node).await;
    }

    /// Crash of agent `i`: `Agent::crash` (nothing more is written) and every task of its host
    /// aborted, then a start on the same data dir, runtime and port.
    pub async fn crash_agent(&mut self, i: usize) {
        let node = self.agents.remove(i);
        self.reopen_agent(i, node).await;
    }

    /// Stops agent `i` for good (its host stopped as `Agent::shutdown` does): its host stays
    /// registered but does not answer. The agents after it move down one index.
    pub async fn stop_agent(&mut self, i: usize) {
        let mut node = self.agents.remove(i);
        node.shutdown().await;
    }

    /// Restarts the control plane on the same data dir and port (agents keep running).
    pub async fn restart_control_plane(&mut self) {
        let config = self.control_plane.config.clone();
        let addr = self.control_plane.addr;
        // Aborted, not drained: as a control plane that is killed.
        self.control_plane.supervisor = Supervisor::new();
        self.control_plane = start_control_plane(config, addr).await.0;
        self.wait_for_hosts().await;
    }

    fn node(&self, i: usize) -> &AgentNode {
        self.agents
            .get(i)
            .unwrap_or_else(|| panic!("testkit: there is no agent {i}"))
    }

    /// Starts `node`'s host again (dropping it first: a crash, if it still ran).
    async fn reopen_agent(&mut self, i: usize, node: AgentNode) {
        let addr = node.addr;
        let config = node.config.clone();
        let credential = node.credential.clone();
        drop(node);
        let fresh = start_agent(config, credential, &self.runtime, &self.api_url, addr).await;
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

/// The control-plane role on `addr`, and the control plane.
async fn start_control_plane(
    config: ControlPlaneConfig,
    addr: SocketAddr,
) -> (ControlPlaneNode, aloft_control::ControlPlane) {
    let listener = listen(addr).await;
    let addr = listener.local_addr().expect("a bound address");
    let mut supervisor = Supervisor::new();
    let role = ControlRole::start(
        ControlConfig {
            plane: config.clone(),
            listeners: vec![listener],
            registry: None,
        },
        &mut supervisor,
    )
    .await
    .unwrap_or_else(|e| panic!("testkit: cannot start the control plane: {e:#}"));
    let node = ControlPlaneNode {
        config,
        addr,
        supervisor,
    };
    (node, role.plane)
}

/// The host role with the sim runtime, its agent's API on `addr`, its proxy on a free port
/// (no other public ports: the cluster's hosts share one address).
async fn start_agent(
    config: AgentConfig,
    credential: String,
    runtime: &SimRuntime,
    api_url: &str,
    addr: SocketAddr,
) -> AgentNode {
    let agent_listener = listen(addr).await;
    let addr = agent_listener.local_addr().expect("a bound address");
    let mut supervisor = Supervisor::new();
    let host = HostRole::start(
        HostConfig {
            agent: config.clone(),
            runtime: Arc::new(runtime.clone()),
            control_plane: api_url.to_string(),
            credential: credential.clone(),
            control_http: reqwest::Client::new(),
            agent_listener,
            agent_url: format!("http://{addr}"),
            proxy: ProxyConfig::new(config.region.clone()),
            listeners: ProxyListeners {
                public_ports: false,
                http: listen(loopback()).await,
                https: None,
                worker: None,
                metrics: None,
            },
            autostop_every: Duration::from_secs(120),
            certificates: None,
            gossip: None,
        },
        &mut supervisor,
    )
    .await
    .unwrap_or_else(|e| panic!("testkit: cannot start host {}: {e:#}", config.host_id));
    AgentNode {
        config,
        credential,
        addr,
        running: Some((host, supervisor)),
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
