//! `aloft server <role> --config FILE`: the production roles, one process each.
//!
//! - `control`: the control plane (Machines API), and optionally the registry beside it.
//! - `host`: everything one host runs: the agent, the proxy (public HTTP listener, the worker
//!   listener other hosts' edges send to, other public ports, metrics), internal DNS at `fdaa::3`
//!   and the cluster catalog (gossip). At its first start it joins the cluster with a one-time
//!   join token (see `crate::host_identity`); then it asks the control plane for its host number.
//! - `registry`: a registry on its own (a region's pull-through cache), flags only.
//!
//! Config files are TOML; unknown keys are errors (a typo should not be a silent default). The
//! README has a three-region example.

mod config;
mod join;

pub(crate) use config::{
    AgentFile, ControlFile, GossipFile, HostFile, OrgFile, ProxyFile, RegistryFile, TlsFile,
};

use crate::NodeCtx;
use crate::files::read_secret;
use crate::host_setup::{host_capacity, parse_subnet, runtime_for};
use crate::listen::{bind, url_for};
use crate::mesh::{Joined, Members};
use crate::roles::certificates::CertificateSource;
use crate::roles::control::{ControlConfig, ControlRole, RegistrySetup};
use crate::roles::host::{HostConfig, HostRole, ProxyListeners};
use crate::roles::registry;
use crate::supervisor::{DRAIN_TIMEOUT, Supervisor};
use aloft_agent::AgentConfig;
use aloft_catalog::gossip::ClusterConfig;
use aloft_control::ControlPlaneConfig;
use aloft_image::{ImageConfig, ImageStore};
use aloft_proxy::ProxyConfig;
use aloft_proxy::tls::{Certificates, DevCa, Domains};
use aloft_runtime::net::NetworkOptions;
use aloft_types::api::{HostNumber, MeshPeer};
use aloft_types::sixpn::host_address;
use aloft_types::time::parse_duration;
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

pub async fn run(cmd: ServerCommand, ctx: &NodeCtx) -> Result<ExitCode> {
    match cmd {
        ServerCommand::Registry(args) => registry::serve(args, ctx).await,
        ServerCommand::Control(c) => control(&read_config(&c.config)?).await,
        ServerCommand::Host(c) => host(read_config(&c.config)?).await,
    }
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

async fn control(config: &ControlFile) -> Result<ExitCode> {
    let mut supervisor = Supervisor::install()?;
    let internal_token = read_secret(&config.internal_token_file)?;
    // Made before anything answers, so the cluster CA hosts pin exists once the API does.
    let tls_server = match &config.tls {
        Some(tls) => Some(match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => crate::cluster_tls::files_config(cert, key)?,
            (None, None) => {
                crate::cluster_tls::issued_config(&config.data_dir.join("tls"), &tls.names)?
            }
            _ => bail!("[tls] needs both cert_file and key_file, or neither (then `names`)"),
        }),
        None => None,
    };
    let mut listeners = Vec::new();
    for addr in &config.listen {
        listeners.push(bind(*addr, "`listen` in the config").await?);
    }
    let registry = match &config.registry {
        Some(r) => {
            let mut listeners = Vec::new();
            for addr in &r.listen {
                listeners.push(bind(*addr, "`registry.listen` in the config").await?);
            }
            Some(RegistrySetup {
                storage: r.storage.clone(),
                listeners,
            })
        }
        None => None,
    };
    let control = ControlRole::start(
        ControlConfig {
            plane: ControlPlaneConfig {
                data_dir: config.data_dir.clone(),
                internal_token,
                default_region: config.default_region.clone(),
                hostnames: config.hostnames.clone(),
            },
            listeners,
            registry,
        },
        &mut supervisor,
    )
    .await?;
    let cp = &control.plane;
    if let Some(org) = &config.org {
        cp.ensure_org(&org.slug)
            .await
            .with_context(|| format!("creating the org `{}`", org.slug))?;
        if !org.token_file.exists() {
            let token = cp
                .create_token(&org.slug, "server-control")
                .await
                .context("creating an API token")?;
            crate::files::write_atomic(&org.token_file, &token, 0o600)?;
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
    let mut tls_listen = Vec::new();
    if let (Some(tls), Some(server)) = (&config.tls, tls_server) {
        for addr in &tls.listen {
            let listener = bind(*addr, "`tls.listen` in the config").await?;
            supervisor.serve_tls("API (TLS)", listener, cp.router(), server.clone());
            tls_listen.push(format!("https://{addr}"));
        }
    }
    if let Some(j) = &joined {
        // On the mesh too (plain: the mesh encrypts), at the first `listen` port and at each
        // `tls.listen` port: a host reaches it there at the port of its `control_plane` URL.
        let tls_ports = config.tls.iter().flat_map(|t| t.listen.iter());
        let mut ports: Vec<u16> = config
            .listen
            .first()
            .into_iter()
            .chain(tls_ports)
            .map(SocketAddr::port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        for port in ports {
            let on_mesh = SocketAddr::new(j.mesh.address().into(), port);
            let listener = bind(on_mesh, "`listen` in the config").await?;
            supervisor.serve("API", listener, cp.router());
            listen.push(on_mesh);
        }
    }
    println!(
        "aloft control plane listening on {}",
        listen
            .iter()
            .map(|a| url_for(*a))
            .chain(tls_listen)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let which = supervisor.wait().await;
    tracing::info!("{which} received: stopping");
    supervisor.shutdown(async {}).await;
    drop(joined);
    Ok(ExitCode::SUCCESS)
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
async fn host_mesh(
    config: &HostFile,
    number: u32,
    credential: &str,
    http: &reqwest::Client,
) -> Result<Option<Joined>> {
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
            token: credential.to_string(),
            http: http.clone(),
        },
    )
    .await?;
    Ok(Some(joined))
}

/// Asks the control plane for this host's number (with the host's credential), waiting (up to a
/// minute) for it to answer.
async fn host_number(
    http: &reqwest::Client,
    control_plane: &str,
    host_id: &str,
    credential: &str,
) -> Result<u32> {
    let url = format!(
        "{}/internal/v1/hosts/{host_id}/number",
        control_plane.trim_end_matches('/')
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = async {
            let resp = http
                .post(&url)
                .timeout(Duration::from_secs(10))
                .bearer_auth(credential)
                .send()
                .await?;
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
                    "the control plane at {control_plane} gave no host number; check `control_plane` in the config"
                )));
            }
        }
    }
}

/// The host's image store (none for the sim runtime, whose machines need no image).
fn image_store(config: &HostFile, runtime_name: &str) -> Result<Option<ImageStore>> {
    (runtime_name != "sim")
        .then(|| {
            ImageStore::open(ImageConfig {
                default_registry: config.registry.clone(),
                private_registries: config.private_registries.clone(),
                ..ImageConfig::new(config.data_dir.join("images"))
            })
        })
        .transpose()
        .context("opening the image store")
}

/// The machines' bridge and IPv4 subnet: `[network]`, else `aloft0` and 172.19.0.0/16.
fn host_network(config: &HostFile) -> Result<NetworkOptions> {
    Ok(match &config.network {
        Some(n) => NetworkOptions {
            bridge: n.bridge.clone(),
            subnet_v4: parse_subnet(&n.subnet_v4).map_err(|e| anyhow!("network.subnet_v4: {e}"))?,
        },
        None => NetworkOptions {
            bridge: "aloft0".into(),
            subnet_v4: (Ipv4Addr::new(172, 19, 0, 0), 16),
        },
    })
}

async fn host(config: HostFile) -> Result<ExitCode> {
    let mut supervisor = Supervisor::install()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let control_http =
        crate::cluster_tls::client(&config.control_plane, config.control_plane_ca.as_deref())?;
    let identity = join::host_identity(&config, &control_http).await?;
    let (credential, keys) = (identity.credential.clone(), identity.keys.clone());
    let runtime = runtime_for(
        config.runtime,
        &config.data_dir.join("runtime"),
        host_network(&config)?,
    )?;
    let runtime_name = runtime.name();
    let number = host_number(
        &control_http,
        &config.control_plane,
        &config.id,
        &credential,
    )
    .await?;
    let joined = host_mesh(&config, number, &credential, &control_http).await?;
    // On the mesh, the host's own services listen on its mesh address.
    let on_mesh = |addr: SocketAddr| match &joined {
        Some(j) => SocketAddr::new(j.mesh.address().into(), addr.port()),
        None => addr,
    };
    let (seeds, control_plane) = reach(&config, number, joined.as_ref());
    let (host_cpus, host_memory_mb) = host_capacity()?;
    let images = image_store(&config, runtime_name)?;
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
    let https_listener = match config.proxy.https {
        Some(a) => Some(bind(a, "`proxy.https` in the config").await?),
        None => None,
    };
    let metrics_listener = match config.proxy.metrics {
        Some(a) => Some(bind(a, "`proxy.metrics` in the config").await?),
        None => None,
    };
    let domains = Arc::new(Domains::default());
    let tls_on = https_listener.is_some();
    let tls = match &https_listener {
        Some(_) => Some(proxy_tls(&config, &domains)?),
        None => None,
    };
    // Where force_https redirects plain requests to.
    let https_port = match &https_listener {
        Some(l) => l.local_addr()?.port(),
        None => 443,
    };
    let host = HostRole::start(
        HostConfig {
            agent: AgentConfig {
                data_dir: config.data_dir.join("agent"),
                host_id: config.id.clone(),
                host_number: number,
                region: config.region.clone(),
                cpus: config.cpus.unwrap_or(host_cpus),
                memory_mb: config.memory_mb.unwrap_or(host_memory_mb),
                agent_token: keys.agent.clone(),
                peer_token: keys.peer.clone(),
                images,
                registry: config.registry.clone(),
            },
            runtime,
            control_plane: control_plane.clone(),
            credential: credential.clone(),
            control_http: control_http.clone(),
            agent_listener,
            agent_url: agent_url.clone(),
            proxy: ProxyConfig {
                drain_timeout: DRAIN_TIMEOUT,
                worker_token: Some(keys.peer.clone()),
                tls,
                https_port,
                domains,
                ..ProxyConfig::new(config.region.clone())
            },
            listeners: ProxyListeners {
                public_ports: true,
                http: http_listener,
                https: https_listener,
                worker: Some(worker_listener),
                metrics: metrics_listener,
            },
            autostop_every: match &config.proxy.autostop_interval {
                Some(s) => {
                    parse_duration(s).map_err(|e| anyhow!("proxy.autostop_interval: {e}"))?
                }
                None => Duration::from_secs(120),
            },
            // Users' hostnames come with HTTPS (as before: a host without it serves
            // `<app>.<domain>` names only).
            certificates: tls_on.then(|| CertificateSource::Remote {
                control_plane: control_plane.clone(),
                token: credential.clone(),
                http: control_http.clone(),
            }),
            gossip: Some(ClusterConfig {
                host_id: config.id.clone(),
                region: config.region.clone(),
                gossip: on_mesh(config.gossip.listen),
                advertise: config.gossip.advertise,
                seeds,
                gossip_key: keys.gossip.clone(),
                peer_token: keys.peer.clone(),
                worker,
                agent: agent_url.clone(),
                gossip_interval: Duration::from_millis(config.gossip.interval_ms.max(10)),
                load: Arc::default(),
            }),
        },
        &mut supervisor,
    )
    .await?;
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

    let which = supervisor.wait().await;
    tracing::info!("{which} received: stopping");
    supervisor.shutdown(host.shutdown()).await;
    drop(joined);
    Ok(ExitCode::SUCCESS)
}

/// The certificates of a host's HTTPS listener: users' (`aloft certs`, in `domains`), others
/// issued by the CA in `proxy.ca_dir`.
fn proxy_tls(config: &HostFile, domains: &Arc<Domains>) -> Result<Arc<Certificates>> {
    let dir = config
        .proxy
        .ca_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("proxy"));
    let ca = DevCa::load_or_create(&dir)
        .with_context(|| format!("loading the proxy's CA in {}", dir.display()))?;
    Ok(Arc::new(Certificates::new(ca, None, domains.clone())))
}

/// The gossip seeds and the control plane's URL of a host: as configured, and on the mesh,
/// every member the control plane listed and the hosts numbered just before this one (which may
/// not have joined yet: of two hosts starting at once, the later-numbered one finds the other;
/// gossip listens at the same port on every host), and the control plane at its mesh address.
fn reach(config: &HostFile, number: u32, joined: Option<&Joined>) -> (Vec<String>, String) {
    let mut seeds = config.gossip.seeds.clone();
    let mut control_plane = config.control_plane.clone();
    if let Some(j) = joined {
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
    (seeds, control_plane)
}
