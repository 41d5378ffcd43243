//! `aloft server <role> --config FILE`: the production roles, one process each.
//!
//! - `control`: the control plane (Machines API), and optionally the registry beside it.
//! - `host`: everything one host runs: the agent, the proxy (public HTTP listener, the worker
//!   listener other hosts' edges send to, other public ports, metrics), internal DNS at `fdaa::3`
//!   and the cluster catalog (gossip). It asks the control plane for its host number first.
//! - `registry`: a registry on its own (a region's pull-through cache), flags only.
//!
//! Config files are TOML; unknown keys are errors (a typo should not be a silent default). The
//! README has a three-region example.

use crate::Ctx;
use crate::dev::{
    DRAIN_TIMEOUT, RuntimeKind, bind, bind_internal_dns, drain, host_capacity, parse_subnet,
    runtime_for, serve_internal_dns, url_for,
};
use crate::mesh::{Joined, Members, MeshFile};
use crate::registry::{self, ControlPlaneTokens, read_secret};
use aloft_agent::{
    Agent, AgentConfig, AgentDeps, LocalCatalog, spawn_health_checks, spawn_heartbeat,
};
use aloft_api::{ControlPlane, ControlPlaneConfig};
use aloft_cluster::{ClusterCatalog, ClusterConfig};
use aloft_image::{ImageConfig, ImageStore};
use aloft_proxy::tls::{Certificates, DevCa, Domains};
use aloft_proxy::{Listener, Proxy, ProxyConfig};
use aloft_registry::{Registry, RegistryConfig};
use aloft_runtime::net::NetworkOptions;
use aloft_types::api::{HostNumber, MeshPeer, ProxyCertificate};
use aloft_types::sixpn::host_address;
use aloft_types::time::parse_duration;
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde::Deserialize;
use std::future::IntoFuture;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Run an OCI registry on its own (e.g. a region's pull-through cache with --upstream).
    Registry(registry::ServeArgs),
    /// Run the control plane (and optionally the registry) from a config file.
    Control(ConfigArg),
    /// Run one host (agent, proxy, internal DNS, gossip) from a config file.
    Host(ConfigArg),
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The role's TOML config file (see the README for examples).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

pub async fn run(cmd: ServerCommand, ctx: &Ctx) -> Result<ExitCode> {
    match cmd {
        ServerCommand::Registry(args) => registry::serve(args, ctx).await,
        ServerCommand::Control(c) => control(&read_config(&c.config)?).await,
        ServerCommand::Host(c) => host(read_config(&c.config)?).await,
    }
}

/// The control role's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ControlFile {
    pub data_dir: PathBuf,
    /// The cluster's secret, shared with every host.
    pub internal_token_file: PathBuf,
    /// Where the Machines API listens (several addresses: loopback and the hosts' network).
    pub listen: Vec<SocketAddr>,
    /// Where machines go when a create names no region.
    pub default_region: String,
    /// An org to create at start, with an API token for it written to `token_file`.
    #[serde(default)]
    pub org: Option<OrgFile>,
    /// The registry, in this process.
    #[serde(default)]
    pub registry: Option<RegistryFile>,
    /// The mesh between hosts: the control plane joins it as number 0 and reaches agents (and
    /// is reached by them) on it, at `[fdaa::1]` and the first `listen` port.
    #[serde(default)]
    pub mesh: Option<MeshFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrgFile {
    pub slug: String,
    pub token_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegistryFile {
    pub listen: Vec<SocketAddr>,
    pub storage: PathBuf,
}

/// The host role's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HostFile {
    /// Unique in the cluster, e.g. `ord-1`.
    pub id: String,
    pub region: String,
    pub data_dir: PathBuf,
    #[serde(default = "auto")]
    pub runtime: RuntimeKind,
    /// The control plane's URL.
    pub control_plane: String,
    pub internal_token_file: PathBuf,
    /// The registry `name:tag` images are on (`host:port`).
    pub registry: String,
    /// CPUs and memory (MB) offered for machines [default: the host's].
    #[serde(default)]
    pub cpus: Option<u32>,
    #[serde(default)]
    pub memory_mb: Option<u64>,
    pub agent: AgentFile,
    pub proxy: ProxyFile,
    pub gossip: GossipFile,
    #[serde(default)]
    pub network: Option<NetworkFile>,
    /// The encrypted mesh between hosts. With it, the agent, the worker listener and gossip
    /// listen on the host's mesh address (at the ports of their `listen`), and nothing between
    /// hosts travels outside it.
    #[serde(default)]
    pub mesh: Option<MeshFile>,
}

fn auto() -> RuntimeKind {
    RuntimeKind::Auto
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentFile {
    pub listen: SocketAddr,
    /// The URL the control plane and other hosts reach the agent at [default: from `listen`].
    #[serde(default)]
    pub advertise: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProxyFile {
    /// Public HTTP (port 80); other public ports are listened on at the same address.
    pub http: SocketAddr,
    /// Public HTTPS (port 443): users' certificates (`aloft certs`) from the control plane,
    /// others issued by the CA in `ca_dir`.
    #[serde(default)]
    pub https: Option<SocketAddr>,
    /// The CA that issues certificates for names without one (`<app>.localhost`); share it
    /// between hosts so clients trust one `ca.pem` [default: `<data_dir>/proxy`].
    #[serde(default)]
    pub ca_dir: Option<PathBuf>,
    /// Where other hosts' edges send requests for this host's machines.
    pub worker: SocketAddr,
    /// The address other hosts reach the worker listener at [default: `worker`].
    #[serde(default)]
    pub worker_advertise: Option<SocketAddr>,
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// How often idle machines are stopped (`2m`).
    #[serde(default)]
    pub autostop_interval: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GossipFile {
    pub listen: SocketAddr,
    #[serde(default)]
    pub advertise: Option<SocketAddr>,
    /// Other hosts' gossip addresses to join through.
    #[serde(default)]
    pub seeds: Vec<String>,
    #[serde(default = "gossip_interval_ms")]
    pub interval_ms: u64,
}

fn gossip_interval_ms() -> u64 {
    200
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NetworkFile {
    pub bridge: String,
    /// The IPv4 subnet machines get addresses from, e.g. `172.19.0.0/16`.
    pub subnet_v4: String,
}

fn read_config<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        anyhow!(
            "{} is not a valid config: {e}; see the README's `aloft server` examples",
            path.display()
        )
    })
}

/// Waits for SIGTERM or SIGINT (installed before anything starts).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot watch for SIGINT")?,
        })
    }

    async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Resolves once `rx` says stop (or its sender is gone, which also means stop): the graceful
/// shutdown of every server a role runs.
pub(crate) async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn control(config: &ControlFile) -> Result<ExitCode> {
    let mut signals = Signals::install()?;
    let internal_token = read_secret(&config.internal_token_file)?;
    let cp = ControlPlane::open(ControlPlaneConfig {
        data_dir: config.data_dir.clone(),
        internal_token: internal_token.clone(),
        default_region: config.default_region.clone(),
    })
    .await
    .context("starting the control plane")?;
    if let Some(org) = &config.org {
        cp.ensure_org(&org.slug)
            .await
            .with_context(|| format!("creating the org `{}`", org.slug))?;
        if !org.token_file.exists() {
            let token = cp
                .create_token(&org.slug, "server-control")
                .await
                .context("creating an API token")?;
            crate::dev::write_atomic(&org.token_file, &token, 0o600)?;
        }
    }
    let joined = match &config.mesh {
        Some(m) => Some(
            crate::mesh::join(
                m,
                &config.data_dir,
                member("control", 0, &config.default_region),
                Members::Local(cp.clone()),
            )
            .await?,
        ),
        None => None,
    };
    let mut listen = config.listen.clone();
    if let (Some(j), Some(first)) = (&joined, config.listen.first()) {
        listen.push(SocketAddr::new(j.mesh.address().into(), first.port()));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = Vec::new();
    for addr in &listen {
        let listener = bind(*addr, "`listen` in the config").await?;
        servers.push((
            "API",
            tokio::spawn(
                axum::serve(listener, cp.router())
                    .with_graceful_shutdown(stopped(stop_rx.clone()))
                    .into_future(),
            ),
        ));
    }
    let mut janitor = None;
    if let Some(r) = &config.registry {
        let registry = Registry::open(
            RegistryConfig::new(&r.storage),
            Arc::new(ControlPlaneTokens(cp.clone())),
        )
        .await
        .context("starting the registry")?;
        janitor = Some(registry.spawn_janitor());
        for addr in &r.listen {
            let listener = bind(*addr, "`registry.listen` in the config").await?;
            servers.push((
                "registry",
                tokio::spawn(
                    axum::serve(
                        listener,
                        registry::router(registry.clone(), internal_token.clone()),
                    )
                    .with_graceful_shutdown(stopped(stop_rx.clone()))
                    .into_future(),
                ),
            ));
        }
    }
    println!(
        "aloft control plane listening on {}",
        listen
            .iter()
            .map(|a| url_for(*a))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let which = signals.wait().await;
    tracing::info!("{which} received: stopping");
    if let Some(j) = janitor {
        j.abort();
    }
    let _ = stop_tx.send(true);
    for (name, server) in servers {
        drain(name, server).await;
    }
    drop(joined);
    Ok(ExitCode::SUCCESS)
}

/// Keeps the proxy's hostnames and users' certificates in step with the control plane's (read
/// every 5 s; the last good list stays when the control plane does not answer).
fn spawn_certificates_sync(
    control_plane: String,
    token: String,
    domains: Arc<Domains>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let url = format!(
            "{}/internal/v1/certificates",
            control_plane.trim_end_matches('/')
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        loop {
            let read = async {
                let resp = http.get(&url).bearer_auth(&token).send().await?;
                if !resp.status().is_success() {
                    bail!("{}", resp.status());
                }
                Ok(resp.json::<Vec<ProxyCertificate>>().await?)
            };
            match read.await {
                Ok(certs) => domains.replace(certs.into_iter().map(Into::into).collect()),
                Err(e) => tracing::warn!("reading the apps' hostnames from {url}: {e:#}"),
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    })
}

/// A mesh member's entry before its key and endpoint are known.
fn member(host: &str, number: u32, region: &str) -> MeshPeer {
    MeshPeer {
        host: host.into(),
        number,
        region: region.into(),
        public_key: String::new(),
        endpoint: String::new(),
    }
}

/// Joins the mesh when the config has one: where the host's services listen and advertise
/// themselves, and the control plane's URL on the mesh.
async fn host_mesh(config: &HostFile, number: u32, token: &str) -> Result<Option<Joined>> {
    let Some(m) = &config.mesh else {
        return Ok(None);
    };
    if config.agent.advertise.is_some()
        || config.proxy.worker_advertise.is_some()
        || config.gossip.advertise.is_some()
    {
        bail!(
            "with [mesh] the agent, the worker listener and gossip are reached at the host's mesh address: remove agent.advertise, proxy.worker_advertise and gossip.advertise from the config"
        );
    }
    let joined = crate::mesh::join(
        m,
        &config.data_dir,
        member(&config.id, number, &config.region),
        Members::Remote {
            control_plane: config.control_plane.clone(),
            token: token.to_string(),
        },
    )
    .await?;
    Ok(Some(joined))
}

/// Asks the control plane for this host's number, waiting (up to a minute) for it to answer.
async fn host_number(control_plane: &str, host_id: &str, token: &str) -> Result<u32> {
    let url = format!(
        "{}/internal/v1/hosts/{host_id}/number",
        control_plane.trim_end_matches('/')
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = async {
            let resp = http.post(&url).bearer_auth(token).send().await?;
            let status = resp.status();
            if !status.is_success() {
                bail!("{status}: {}", resp.text().await.unwrap_or_default());
            }
            Ok(resp.json::<HostNumber>().await?.number)
        };
        match answer.await {
            Ok(n) => return Ok(n),
            Err(e) if Instant::now() < deadline => {
                tracing::info!("waiting for the control plane at {control_plane}: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                return Err(e.context(format!(
                    "the control plane at {control_plane} gave no host number; check `control_plane` and `internal_token_file` in the config"
                )));
            }
        }
    }
}

async fn host(config: HostFile) -> Result<ExitCode> {
    let mut signals = Signals::install()?;
    let token = read_secret(&config.internal_token_file)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let network = match &config.network {
        Some(n) => NetworkOptions {
            bridge: n.bridge.clone(),
            subnet_v4: parse_subnet(&n.subnet_v4).map_err(|e| anyhow!("network.subnet_v4: {e}"))?,
        },
        None => NetworkOptions {
            bridge: "aloft0".into(),
            subnet_v4: (Ipv4Addr::new(172, 19, 0, 0), 16),
        },
    };
    let runtime = runtime_for(config.runtime, &config.data_dir.join("runtime"), network)?;
    let runtime_name = runtime.name();
    let number = host_number(&config.control_plane, &config.id, &token).await?;
    let joined = host_mesh(&config, number, &token).await?;
    // On the mesh, the host's own services listen on its mesh address.
    let on_mesh = |addr: SocketAddr| match &joined {
        Some(j) => SocketAddr::new(j.mesh.address().into(), addr.port()),
        None => addr,
    };
    let mut seeds = config.gossip.seeds.clone();
    let mut control_plane = config.control_plane.clone();
    if let Some(j) = &joined {
        // Every member the control plane listed, and the hosts numbered just before this one
        // (which may not have joined yet): of two hosts starting at once, the later-numbered
        // one finds the other. Gossip listens at the same port on every host.
        let port = config.gossip.listen.port();
        let mut numbers: Vec<u32> = j.peers.iter().map(|p| p.number).collect();
        numbers.extend(number.saturating_sub(16)..number);
        numbers.sort_unstable();
        numbers.dedup();
        seeds.extend(
            numbers
                .into_iter()
                .filter(|n| *n != 0 && *n != number)
                .map(|n| SocketAddr::new(host_address(n).into(), port).to_string()),
        );
        if j.peers.iter().any(|p| p.number == 0) {
            let port = reqwest::Url::parse(&config.control_plane)
                .ok()
                .and_then(|u| u.port_or_known_default())
                .unwrap_or(4280);
            control_plane = format!("http://[{}]:{port}", host_address(0));
        }
    }
    let (host_cpus, host_memory_mb) = host_capacity()?;
    let images = (runtime_name != "sim")
        .then(|| {
            ImageStore::open(ImageConfig {
                default_registry: config.registry.clone(),
                ..ImageConfig::new(config.data_dir.join("images"))
            })
        })
        .transpose()
        .context("opening the image store")?;
    let dns_sockets = bind_internal_dns(runtime_name).await;
    let load = Arc::new(aloft_proxy::load::Load::default());
    let deps = AgentDeps {
        secrets: Some(Arc::new(
            aloft_agent::secrets::ControlPlaneSecrets::new(&control_plane, &token)
                .context("building the secrets client")?,
        )),
        internal_dns: dns_sockets
            .is_some()
            .then(|| aloft_dns::INTERNAL_DNS.to_string()),
        drain: Some(load.clone()),
    };
    let agent = Agent::open(
        AgentConfig {
            data_dir: config.data_dir.join("agent"),
            host_id: config.id.clone(),
            host_number: number,
            region: config.region.clone(),
            cpus: config.cpus.unwrap_or(host_cpus),
            memory_mb: config.memory_mb.unwrap_or(host_memory_mb),
            internal_token: token.clone(),
            images,
            registry: config.registry.clone(),
        },
        runtime,
        deps,
    )
    .await
    .context("starting the host agent")?;
    let agent_listener = bind(on_mesh(config.agent.listen), "`agent.listen` in the config").await?;
    let agent_url = config
        .agent
        .advertise
        .clone()
        .unwrap_or_else(|| url_for(agent_listener.local_addr().unwrap_or(config.agent.listen)));
    let http_listener = bind(config.proxy.http, "`proxy.http` in the config").await?;
    let worker_listener =
        bind(on_mesh(config.proxy.worker), "`proxy.worker` in the config").await?;
    let worker = config
        .proxy
        .worker_advertise
        .unwrap_or(worker_listener.local_addr()?);

    let local = Arc::new(LocalCatalog::new(agent.clone()));
    let catalog = Arc::new(
        ClusterCatalog::start(
            ClusterConfig {
                host_id: config.id.clone(),
                region: config.region.clone(),
                gossip: on_mesh(config.gossip.listen),
                advertise: config.gossip.advertise,
                seeds,
                token: token.clone(),
                worker,
                agent: agent_url.clone(),
                gossip_interval: Duration::from_millis(config.gossip.interval_ms.max(10)),
            },
            local,
        )
        .await?,
    );
    let dns = dns_sockets.map(|s| serve_internal_dns(s, catalog.clone(), &config.region));
    let https_listener = match config.proxy.https {
        Some(a) => Some(bind(a, "`proxy.https` in the config").await?),
        None => None,
    };
    let domains = Arc::new(Domains::default());
    let tls = match &https_listener {
        Some(_) => {
            let dir = config
                .proxy
                .ca_dir
                .clone()
                .unwrap_or_else(|| config.data_dir.join("proxy"));
            let ca = DevCa::load_or_create(&dir)
                .with_context(|| format!("loading the proxy's CA in {}", dir.display()))?;
            Some(Arc::new(Certificates::new(ca, None, domains.clone())))
        }
        None => None,
    };
    let certificates = tls
        .is_some()
        .then(|| spawn_certificates_sync(control_plane.clone(), token.clone(), domains.clone()));
    let proxy = Proxy::new(
        ProxyConfig {
            drain_timeout: DRAIN_TIMEOUT,
            worker_token: Some(token.clone()),
            tls,
            // Where force_https redirects plain requests to.
            https_port: match &https_listener {
                Some(l) => l.local_addr()?.port(),
                None => 443,
            },
            domains,
            load,
            ..ProxyConfig::new(config.region.clone())
        },
        catalog.clone(),
    );
    catalog.publish_load(proxy.load().clone());

    let (stop_tx, stop_rx) = watch::channel(false);
    let agent_server = tokio::spawn(
        axum::serve(agent_listener, agent.router())
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future(),
    );
    let checks = spawn_health_checks(agent.clone());
    let autostop_every = match &config.proxy.autostop_interval {
        Some(s) => parse_duration(s).map_err(|e| anyhow!("proxy.autostop_interval: {e}"))?,
        None => Duration::from_secs(120),
    };
    let autostop = {
        let proxy = proxy.clone();
        tokio::spawn(async move { proxy.autostop(autostop_every, std::future::pending()).await })
    };
    let metrics_listener = match config.proxy.metrics {
        Some(a) => Some(bind(a, "`proxy.metrics` in the config").await?),
        None => None,
    };
    let proxy_server = {
        let proxy = proxy.clone();
        let stop_rx = stop_rx.clone();
        tokio::spawn(async move {
            let ports_ip = http_listener.local_addr()?.ip();
            let metrics = async {
                if let Some(l) = metrics_listener {
                    proxy.serve_metrics(l, stopped(stop_rx.clone())).await;
                }
            };
            let https = async {
                if let Some(l) = https_listener {
                    proxy
                        .serve(l, Listener::https(443), stopped(stop_rx.clone()))
                        .await;
                }
            };
            tokio::join!(
                proxy.serve_ports(ports_ip, &[80, 443], stopped(stop_rx.clone())),
                proxy.serve(http_listener, Listener::http(80), stopped(stop_rx.clone())),
                https,
                proxy.serve(
                    worker_listener,
                    Listener::worker(),
                    stopped(stop_rx.clone())
                ),
                metrics,
            );
            Ok(())
        })
    };
    let heartbeat = spawn_heartbeat(agent.clone(), control_plane.clone(), agent_url.clone());
    println!(
        "aloft host {} (region {}, host number {number}, {runtime_name} runtime): agent {agent_url}, proxy http://{} (worker {worker}), gossip {}, control plane {control_plane}{}",
        config.id,
        config.region,
        config.proxy.http,
        on_mesh(config.gossip.listen),
        if joined.is_some() {
            ", on the mesh"
        } else {
            ""
        }
    );

    let which = signals.wait().await;
    tracing::info!("{which} received: stopping");
    heartbeat.abort();
    autostop.abort();
    checks.abort();
    if let Some(c) = certificates {
        c.abort();
    }
    if let Some(dns) = dns {
        dns.abort();
    }
    let _ = stop_tx.send(true);
    tokio::join!(
        drain("agent", agent_server),
        drain("proxy", proxy_server),
        agent.shutdown()
    );
    if let Ok(catalog) = Arc::try_unwrap(catalog) {
        catalog.shutdown().await;
    }
    drop(joined);
    Ok(ExitCode::SUCCESS)
}
