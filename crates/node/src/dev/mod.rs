//! `aloft dev up`: a complete single-host cloud in the foreground.
//!
//! One process runs the control plane (its data in `<data-dir>/control`), one host agent (its
//! data in `<data-dir>/agent`, its image store in `<data-dir>/images`) and the OCI registry (in
//! `<data-dir>/registry`), talking over loopback HTTP exactly as they would across hosts. The
//! agent pulls machines' images from this registry (a `name:tag` image is
//! `<registry>/<org>/name:tag`) with the org token of the request that starts them. The data
//! dir also holds `token` (an API token for org `personal`), `internal-token` (what the control
//! plane and the agent use between them), `registry-url` and `api-url` (where the API really
//! listens, written last, once everything is ready, and removed on a clean stop).

mod datadir;
mod usage;

use crate::NodeCtx;
use crate::files::write_atomic;
use crate::host_setup::{RuntimeKind, host_capacity, parse_subnet, runtime_for};
use crate::listen::{bind, url_for};
use crate::roles::certificates::CertificateSource;
use crate::roles::control::{ControlConfig, ControlRole, RegistrySetup};
use crate::roles::host::{HostConfig, HostRole, ProxyListeners};
use crate::supervisor::{DRAIN_TIMEOUT, Stopped, Supervisor};
use aloft_agent::AgentConfig;
use aloft_control::{ControlPlaneConfig, HostnamePolicy};
use aloft_image::{ImageConfig, ImageStore};
use aloft_proxy::ProxyConfig;
use aloft_proxy::tls::{Certificates, DevCa, Domains};
use aloft_runtime::net::NetworkOptions;
use aloft_types::datadir::REGISTRY_URL_FILE;
use aloft_types::time::parse_duration;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use datadir::DataDir;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use usage::{Urls, print_usage};

/// The org `dev up` creates and writes a token for.
const ORG: &str = "personal";
/// The files holding the URLs the proxy serves apps on.
const PROXY_URL_FILE: &str = "proxy-url";
const PROXY_HTTPS_URL_FILE: &str = "proxy-https-url";
const METRICS_URL_FILE: &str = "metrics-url";

/// What `dev up` prints when it stops.
const STOPPED: &str = "aloft dev up stopped. Machines were left running (gVisor and microVM machines outlive it; simulated ones end with it); the next `aloft dev up` reattaches those still running and applies the restart policy to the others.";

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Run a complete single-host cloud in the foreground (control plane + one host agent) until
    /// Ctrl-C or SIGTERM.
    Up(Box<UpArgs>),
    /// A cluster of several regions on this machine, one network namespace per host (root).
    #[command(subcommand)]
    Cluster(crate::devcluster::ClusterCommand),
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The region of this host.
    #[arg(long, default_value = "local")]
    region: String,
    /// The isolation backend that runs machines.
    #[arg(long, value_enum, default_value_t = RuntimeKind::Auto)]
    runtime: RuntimeKind,
    /// Where the Machines API listens; `127.0.0.1:0` picks a free port (written to
    /// <data-dir>/api-url).
    #[arg(long, default_value = "127.0.0.1:4280")]
    api_addr: SocketAddr,
    /// Where the OCI registry listens; `127.0.0.1:0` picks a free port (written to
    /// <data-dir>/registry-url).
    #[arg(long, default_value = "127.0.0.1:5000")]
    registry_addr: SocketAddr,
    /// Where the proxy serves apps over HTTP (as public port 80: `http://<app>.localhost:8080`);
    /// `127.0.0.1:0` picks a free port (written to <data-dir>/proxy-url).
    #[arg(long, default_value = "127.0.0.1:8080")]
    proxy_addr: SocketAddr,
    /// Where the proxy serves apps over HTTPS (as public port 443), with certificates from a
    /// development CA in <data-dir>/proxy/ca.pem; `127.0.0.1:0` picks a free port (written to
    /// <data-dir>/proxy-https-url).
    #[arg(long, default_value = "127.0.0.1:8443")]
    proxy_https_addr: SocketAddr,
    /// Where the proxy's Prometheus metrics are served (`GET /metrics`); `127.0.0.1:0` picks a
    /// free port (written to <data-dir>/metrics-url).
    #[arg(long, default_value = "127.0.0.1:9091")]
    metrics_addr: SocketAddr,
    /// How often the proxy stops idle machines of services with `autostop` (one per app and
    /// region each time).
    #[arg(long, default_value = "2m", value_parser = parse_duration, value_name = "DURATION")]
    autostop_interval: Duration,
    /// CPUs the agent offers for machines [default: this host's CPU count].
    #[arg(long, value_name = "N")]
    host_cpus: Option<u32>,
    /// Memory (MB) the agent offers for machines [default: this host's memory].
    #[arg(long, value_name = "MB")]
    host_memory_mb: Option<u64>,
    /// The host bridge machines are attached to (gvisor, microvm).
    #[arg(long, default_value = "aloft0", value_name = "NAME")]
    bridge: String,
    /// The IPv4 subnet machines get addresses from (the bridge takes the first one); their 6PN
    /// IPv6 addresses do not depend on it.
    #[arg(long, default_value = "172.19.0.0/16", value_name = "CIDR", value_parser = parse_subnet)]
    machine_subnet: (Ipv4Addr, u8),
    /// Run machines without pulling their image (only for the sim runtime: machines get no
    /// root filesystem, and any `config.image` is accepted).
    #[arg(long)]
    no_pull: bool,
}

pub async fn run(cmd: DevCommand, ctx: &NodeCtx) -> Result<ExitCode> {
    match cmd {
        DevCommand::Up(args) => up(ctx, *args).await,
        DevCommand::Cluster(cmd) => crate::devcluster::run(cmd, ctx).await,
    }
}

async fn up(ctx: &NodeCtx, args: UpArgs) -> Result<ExitCode> {
    let data_root = ctx.data_dir()?;
    let network = NetworkOptions {
        bridge: args.bridge.clone(),
        subnet_v4: args.machine_subnet,
    };
    let runtime = runtime_for(args.runtime, &data_root.join("runtime"), network)?;
    let runtime_name = runtime.name();
    // Installed first, so that a signal during start-up still ends in a clean stop.
    let mut supervisor = Supervisor::install()?;
    let (listen, at) = Listeners::bind(&args).await?;
    let data = DataDir::prepare(&data_root)?;
    let internal_token = data.internal_token()?;
    let (host_cpus, host_memory_mb) = host_capacity()?;
    let cpus = args.host_cpus.unwrap_or(host_cpus);
    let memory_mb = args.host_memory_mb.unwrap_or(host_memory_mb);
    // `name:tag` images are on this registry; the agent pulls them with the caller's token.
    let registry_host = at.registry_url.trim_start_matches("http://").to_string();
    let images = if args.no_pull {
        None
    } else {
        let config = ImageConfig {
            default_registry: registry_host.clone(),
            ..ImageConfig::new(data.root.join("images"))
        };
        Some(ImageStore::open(config).context("opening the image store")?)
    };

    // Served before the agent opens: machines it restarts while it opens get their secrets.
    let control = ControlRole::start(
        ControlConfig {
            plane: ControlPlaneConfig {
                data_dir: data.root.join("control"),
                internal_token: internal_token.clone(),
                default_region: args.region.clone(),
                // One user's cloud: the user is its operator.
                hostnames: HostnamePolicy::allow_any(),
            },
            listeners: vec![listen.api],
            registry: Some(RegistrySetup {
                storage: data.root.join("registry"),
                listeners: vec![listen.registry],
            }),
        },
        &mut supervisor,
    )
    .await?;
    let host_id = format!("{}-1", args.region);
    let plane = control.plane.clone();
    let identity = crate::host_identity::kept_or(&data.root, &host_id, async {
        plane
            .enroll_host(&host_id)
            .await
            .map_err(anyhow::Error::from)
    })
    .await
    .context("joining this host to the control plane")?;
    let host_number = control
        .plane
        .host_number(&host_id)
        .await
        .context("numbering this host")?;
    let agent_listener = bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), "--api-addr").await?;
    let agent_url = url_for(agent_listener.local_addr()?);
    let ca = DevCa::load_or_create(&data.root.join("proxy"))
        .context("making the proxy's development CA")?;
    let ca_path = ca.cert_path.clone();
    let domains = Arc::new(Domains::default());
    let host = HostRole::start(
        HostConfig {
            agent: AgentConfig {
                data_dir: data.root.join("agent"),
                host_id: host_id.clone(),
                host_number,
                region: args.region.clone(),
                cpus,
                memory_mb,
                agent_token: identity.keys.agent.clone(),
                peer_token: identity.keys.peer.clone(),
                images,
                registry: registry_host,
            },
            runtime,
            control_plane: at.api_url.clone(),
            credential: identity.credential.clone(),
            control_http: reqwest::Client::new(),
            agent_listener,
            agent_url: agent_url.clone(),
            proxy: ProxyConfig {
                drain_timeout: DRAIN_TIMEOUT,
                tls: Some(Arc::new(Certificates::new(ca, None, domains.clone()))),
                https_port: at.https_port,
                domains,
                ..ProxyConfig::new(args.region.clone())
            },
            listeners: ProxyListeners {
                public_ports: true,
                http: listen.proxy,
                https: Some(listen.https),
                worker: None,
                metrics: Some(listen.metrics),
            },
            autostop_every: args.autostop_interval,
            certificates: Some(CertificateSource::InProcess(control.plane.clone())),
            gossip: None,
        },
        &mut supervisor,
    )
    .await?;
    tracing::info!(api_url = %at.api_url, registry_url = %at.registry_url, %agent_url, host = %host_id, cpus, memory_mb, "control plane and host agent listening");

    control
        .plane
        .register_host(host.agent.host_info(&agent_url))
        .await
        .context("registering the host agent with the control plane")?;
    control
        .plane
        .ensure_org(ORG)
        .await
        .with_context(|| format!("creating the org `{ORG}`"))?;
    let token_file = data.api_token(&control.plane).await?;
    at.write_urls(&data)?;

    let urls = Urls {
        api: &at.api_url,
        registry: &at.registry_url,
        proxy: &at.proxy_url,
        https: &at.proxy_https_url,
        ca: &ca_path,
        metrics: &at.metrics_url,
    };
    print_usage(ctx, &args, runtime_name, &data.root, &token_file, &urls)?;

    let which = supervisor.wait().await;
    tracing::info!(
        "{which} received: stopping. Requests in flight get {}s, operations in progress the agent's grace period; send the signal again to stop at once",
        DRAIN_TIMEOUT.as_secs()
    );
    if supervisor.shutdown(host.shutdown()).await == Stopped::AtOnce {
        return Ok(stop_at_once(&data));
    }
    data.release();
    if ctx.json {
        eprintln!("{STOPPED}");
    } else {
        println!("{STOPPED}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The listeners of a `dev up`, bound before anything starts (a port in use is an error that
/// names its flag).
struct Listeners {
    api: TcpListener,
    registry: TcpListener,
    proxy: TcpListener,
    https: TcpListener,
    metrics: TcpListener,
}

/// Where clients reach the servers of a `dev up`.
struct Addrs {
    api_url: String,
    registry_url: String,
    proxy_url: String,
    https_port: u16,
    proxy_https_url: String,
    metrics_url: String,
}

impl Listeners {
    async fn bind(args: &UpArgs) -> Result<(Self, Addrs)> {
        let api = bind(args.api_addr, "--api-addr").await?;
        let registry = bind(args.registry_addr, "--registry-addr").await?;
        let proxy = bind(args.proxy_addr, "--proxy-addr").await?;
        let https = bind(args.proxy_https_addr, "--proxy-https-addr").await?;
        let metrics = bind(args.metrics_addr, "--metrics-addr").await?;
        let at = Addrs {
            api_url: url_for(api.local_addr()?),
            registry_url: url_for(registry.local_addr()?),
            proxy_url: url_for(proxy.local_addr()?),
            https_port: https.local_addr()?.port(),
            proxy_https_url: format!("https://{}", https.local_addr()?),
            metrics_url: format!("{}/metrics", url_for(metrics.local_addr()?)),
        };
        let listeners = Self {
            api,
            registry,
            proxy,
            https,
            metrics,
        };
        Ok((listeners, at))
    }
}

impl Addrs {
    /// Writes where clients find each server; `api-url` last, which says that all is ready.
    fn write_urls(&self, data: &DataDir) -> Result<()> {
        for (file, url) in [
            (REGISTRY_URL_FILE, &self.registry_url),
            (PROXY_URL_FILE, &self.proxy_url),
            (PROXY_HTTPS_URL_FILE, &self.proxy_https_url),
            (METRICS_URL_FILE, &self.metrics_url),
        ] {
            write_atomic(&data.root.join(file), url, 0o644)?;
        }
        data.write_api_url(&self.api_url)
    }
}

/// A second signal while stopping: end now, as a crash would (everything written so far is
/// kept, and the next start finishes interrupted operations).
fn stop_at_once(data: &DataDir) -> ExitCode {
    data.release();
    eprintln!(
        "aloft dev up stopped at once: operations that were in progress are finished by the next `aloft dev up`."
    );
    ExitCode::from(130)
}
