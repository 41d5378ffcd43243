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

use crate::roles::control::{ControlConfig, ControlRole, RegistrySetup};
use crate::roles::host::{HostConfig, HostRole, ProxyListeners};
use crate::supervisor::{DRAIN_TIMEOUT, Stopped, Supervisor};
use crate::{NodeCtx, print_json};
use aloft_agent::AgentConfig;
use aloft_control::{ControlPlane, ControlPlaneConfig};
use aloft_image::{ImageConfig, ImageStore};
use aloft_proxy::ProxyConfig;
use aloft_proxy::tls::{Certificates, DevCa, Domains};
use aloft_runtime::net::NetworkOptions;
use aloft_runtime::sim::SimRuntime;
use aloft_runtime::{Backend, HostOptions, Runtime};
use aloft_types::api::ProxyCertificate;
use aloft_types::datadir::{
    API_URL_FILE, DEFAULT_API_URL, INTERNAL_TOKEN_FILE, REGISTRY_URL_FILE, TOKEN_FILE,
};
use aloft_types::time::parse_duration;
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The org `dev up` creates and writes a token for.
const ORG: &str = "personal";
/// The files holding the URLs the proxy serves apps on.
const PROXY_URL_FILE: &str = "proxy-url";
const PROXY_HTTPS_URL_FILE: &str = "proxy-https-url";
const METRICS_URL_FILE: &str = "metrics-url";
/// The file holding the pid of the `dev up` that uses the data dir.
const PID_FILE: &str = "dev-up.pid";

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Simulated machines (no image is run).
    Sim,
    /// gVisor sandboxes (runsc).
    Gvisor,
    /// QEMU microVMs (KVM where usable, else TCG emulation: slow).
    Microvm,
    /// microVMs where KVM works, else gVisor.
    Auto,
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
    let listen = Listeners::bind(&args).await?;
    let data = DataDir::prepare(&data_root)?;
    let internal_token = data.internal_token()?;
    let (host_cpus, host_memory_mb) = host_capacity()?;
    let cpus = args.host_cpus.unwrap_or(host_cpus);
    let memory_mb = args.host_memory_mb.unwrap_or(host_memory_mb);
    // `name:tag` images are on this registry; the agent pulls them with the caller's token.
    let registry_host = listen
        .registry_url
        .trim_start_matches("http://")
        .to_string();
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
    supervisor.task(spawn_domains_sync(control.plane.clone(), domains.clone()));
    let host = HostRole::start(
        HostConfig {
            agent: AgentConfig {
                data_dir: data.root.join("agent"),
                host_id: host_id.clone(),
                host_number,
                region: args.region.clone(),
                cpus,
                memory_mb,
                internal_token: internal_token.clone(),
                images,
                registry: registry_host,
            },
            runtime,
            control_plane: listen.api_url.clone(),
            agent_listener,
            agent_url: agent_url.clone(),
            proxy: ProxyConfig {
                drain_timeout: DRAIN_TIMEOUT,
                tls: Some(Arc::new(Certificates::new(ca, None, domains.clone()))),
                https_port: listen.https_port,
                domains,
                ..ProxyConfig::new(args.region.clone())
            },
            listeners: ProxyListeners {
                http: listen.proxy,
                https: Some(listen.https),
                worker: None,
                metrics: Some(listen.metrics),
            },
            autostop_every: args.autostop_interval,
            gossip: None,
        },
        &mut supervisor,
    )
    .await?;
    tracing::info!(api_url = %listen.api_url, registry_url = %listen.registry_url, %agent_url, host = %host_id, cpus, memory_mb, "control plane and host agent listening");

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
    write_atomic(
        &data.root.join(REGISTRY_URL_FILE),
        &listen.registry_url,
        0o644,
    )?;
    write_atomic(&data.root.join(PROXY_URL_FILE), &listen.proxy_url, 0o644)?;
    write_atomic(
        &data.root.join(PROXY_HTTPS_URL_FILE),
        &listen.proxy_https_url,
        0o644,
    )?;
    write_atomic(
        &data.root.join(METRICS_URL_FILE),
        &listen.metrics_url,
        0o644,
    )?;
    data.write_api_url(&listen.api_url)?;

    let urls = Urls {
        api: &listen.api_url,
        registry: &listen.registry_url,
        proxy: &listen.proxy_url,
        https: &listen.proxy_https_url,
        ca: &ca_path,
        metrics: &listen.metrics_url,
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
/// names its flag), and the URLs they are reached at.
struct Listeners {
    api: TcpListener,
    api_url: String,
    registry: TcpListener,
    registry_url: String,
    proxy: TcpListener,
    proxy_url: String,
    https: TcpListener,
    https_port: u16,
    proxy_https_url: String,
    metrics: TcpListener,
    metrics_url: String,
}

impl Listeners {
    async fn bind(args: &UpArgs) -> Result<Self> {
        let api = bind(args.api_addr, "--api-addr").await?;
        let registry = bind(args.registry_addr, "--registry-addr").await?;
        let proxy = bind(args.proxy_addr, "--proxy-addr").await?;
        let https = bind(args.proxy_https_addr, "--proxy-https-addr").await?;
        let metrics = bind(args.metrics_addr, "--metrics-addr").await?;
        Ok(Self {
            api_url: url_for(api.local_addr()?),
            registry_url: url_for(registry.local_addr()?),
            proxy_url: url_for(proxy.local_addr()?),
            https_port: https.local_addr()?.port(),
            proxy_https_url: format!("https://{}", https.local_addr()?),
            metrics_url: format!("{}/metrics", url_for(metrics.local_addr()?)),
            api,
            registry,
            proxy,
            https,
            metrics,
        })
    }
}

/// Keeps the proxy's hostnames (`aloft certs`) in step with the control plane: loaded now and
/// again whenever one is added or removed.
fn spawn_domains_sync(
    control_plane: ControlPlane,
    domains: Arc<Domains>,
) -> tokio::task::JoinHandle<()> {
    let mut changes = control_plane.certificate_changes();
    tokio::spawn(async move {
        loop {
            match control_plane.certificates().await {
                Ok(certs) => domains.replace(
                    certs
                        .into_iter()
                        .map(|c| ProxyCertificate::from(c).into())
                        .collect(),
                ),
                Err(e) => tracing::warn!("reading the apps' hostnames: {e}"),
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    })
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

/// The backend for `--runtime`, keeping its state under `state_dir`.
pub(crate) fn runtime_for(
    kind: RuntimeKind,
    state_dir: &Path,
    network: NetworkOptions,
) -> Result<Arc<dyn Runtime>> {
    let kind = match kind {
        RuntimeKind::Sim => return Ok(Arc::new(SimRuntime::new())),
        RuntimeKind::Gvisor => Backend::Gvisor,
        RuntimeKind::Microvm => Backend::Microvm,
        RuntimeKind::Auto => Backend::Auto,
    };
    let options = HostOptions {
        network,
        ..HostOptions::from_env(state_dir.to_path_buf())
            .context("finding what machines need on this host")?
    };
    aloft_runtime::open(kind, options).context("starting the machine runtime")
}

/// `a.b.c.d/n` with a prefix a bridge and at least a few machines fit in.
pub(crate) fn parse_subnet(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (ip, len) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` is not a CIDR subnet like 172.19.0.0/16"))?;
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| format!("`{ip}` is not an IPv4 address (e.g. 172.19.0.0/16)"))?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| (8..=28).contains(l))
        .ok_or_else(|| format!("the prefix length `{len}` must be between 8 and 28"))?;
    Ok((ip, len))
}

/// Listens on `addr`; errors name `flag`, the option that sets it.
pub(crate) async fn bind(addr: SocketAddr, flag: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow!("{addr} is in use: is another `aloft dev up` running? stop it or pass {flag}")
        } else {
            anyhow!("cannot listen on {addr}: {e}; pass another {flag} (e.g. 127.0.0.1:0)")
        }
    })
}

/// The URL clients use for a listening address (loopback when it listens on every address).
pub(crate) fn url_for(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// This host's CPU count and memory (MB), advertised for placement.
pub(crate) fn host_capacity() -> Result<(u32, u64)> {
    let cpus = std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1);
    let meminfo = fs::read_to_string("/proc/meminfo")
        .context("cannot read /proc/meminfo to size this host; `aloft dev up` needs Linux")?;
    let kb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .ok_or_else(|| anyhow!("/proc/meminfo has no MemTotal line; cannot size this host"))?;
    Ok((cpus, kb / 1024))
}

/// Where the servers of a `dev up` listen.
struct Urls<'a> {
    api: &'a str,
    registry: &'a str,
    proxy: &'a str,
    https: &'a str,
    /// The development CA's certificate, for clients of the HTTPS listener.
    ca: &'a Path,
    metrics: &'a str,
}

fn print_usage(
    ctx: &NodeCtx,
    args: &UpArgs,
    runtime: &str,
    root: &Path,
    token_file: &Path,
    urls: &Urls<'_>,
) -> Result<()> {
    let Urls {
        api: api_url,
        registry: registry_url,
        proxy: proxy_url,
        https: https_url,
        ca,
        metrics,
    } = *urls;
    let apps_url = proxy_url.replacen("127.0.0.1", "<app>.localhost", 1);
    let apps_https_url = https_url.replacen("127.0.0.1", "<app>.localhost", 1);
    if ctx.json {
        return print_json(&serde_json::json!({
            "api_url": api_url,
            "registry_url": registry_url,
            "proxy_url": proxy_url,
            "proxy_https_url": https_url,
            "ca_file": ca,
            "metrics_url": metrics,
            "data_dir": root,
            "token_file": token_file,
            "org": ORG,
            "region": args.region,
            "runtime": runtime,
            "pull": !args.no_pull,
        }));
    }
    let mut out = String::new();
    out.push_str(&format!(
        "aloft is running: a control plane and one host agent (region {}, {runtime} runtime).\n",
        args.region
    ));
    out.push_str(&format!("  Machines API  {api_url}\n"));
    out.push_str(&format!(
        "  apps          {apps_url} and {apps_https_url} (the proxy)\n"
    ));
    out.push_str(&format!(
        "  CA            {} (HTTPS certificates: curl --cacert)\n",
        ca.display()
    ));
    out.push_str(&format!("  metrics       {metrics} (Prometheus)\n"));
    out.push_str(&format!(
        "  registry      {registry_url} (org token as password)\n"
    ));
    out.push_str(&format!("  data          {}\n", root.display()));
    out.push_str(&format!(
        "  API token     {} (org {ORG})\n\n",
        token_file.display()
    ));
    out.push_str("Use it from another shell:\n");
    if api_url != DEFAULT_API_URL {
        out.push_str(&format!("  export ALOFT_API_URL={api_url}\n"));
    }
    out.push_str(&format!(
        "  export ALOFT_API_TOKEN=$(cat {})\n",
        shell_quote(&token_file.display().to_string())
    ));
    let registry_host = registry_url.trim_start_matches("http://");
    if args.no_pull {
        out.push_str("  aloft apps create hello\n");
        out.push_str("  aloft machine run nginx:latest -a hello -p 80:8080/tcp:http\n");
        out.push_str("  aloft machine list -a hello\n");
        out.push_str("  aloft machine exec MACHINE_ID -a hello -- echo hi\n\n");
        out.push_str("--no-pull: machines run without pulling their image (no root filesystem).\n");
    } else {
        out.push_str("  aloft image build --busybox -o oci:/tmp/hello-image:v1\n");
        out.push_str(&format!(
            "  skopeo copy --dest-tls-verify=false --dest-creds x:$ALOFT_API_TOKEN oci:/tmp/hello-image:v1 docker://{registry_host}/{ORG}/hello:v1\n"
        ));
        out.push_str("  aloft apps create hello\n");
        out.push_str("  aloft machine run hello:v1 -a hello -p 80:8080/tcp:http --cmd \"httpd -f -p 8080 -h /etc\"\n");
        out.push_str("  aloft machine exec MACHINE_ID -a hello -- ls /bin\n");
        out.push_str("  aloft machine list -a hello\n");
        out.push_str(&format!(
            "  curl {}/hosts\n\n",
            apps_url.replace("<app>", "hello")
        ));
        out.push_str(&format!(
            "Machines pull their image from this registry (`hello:v1` is {registry_host}/{ORG}/hello:v1) and run it with its defaults.\n"
        ));
    }
    out.push_str(
        "Stop with Ctrl-C or SIGTERM; machines keep running and the next `aloft dev up` reattaches them.\n",
    );
    print!("{out}");
    std::io::stdout().flush()?;
    Ok(())
}

fn shell_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The dev data directory and the files `dev up` keeps in it.
struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Creates the directory (0700) and checks that it can be written, before anything is.
    fn prepare(root: &Path) -> Result<Self> {
        let fix = "pass --data-dir with a directory you can write (or set ALOFT_DATA_DIR)";
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| {
                anyhow!(
                    "cannot create the data directory {}: {e}; {fix}",
                    root.display()
                )
            })?;
        let probe = root.join(format!(".write-test-{}", std::process::id()));
        fs::write(&probe, b"")
            .and_then(|()| fs::remove_file(&probe))
            .map_err(|e| {
                anyhow!(
                    "cannot write in the data directory {}: {e}; fix its permissions or {fix}",
                    root.display()
                )
            })?;
        let data = Self {
            root: root.to_path_buf(),
        };
        data.claim()?;
        // A file left by a run that was killed: it is written again once this run is ready.
        data.remove_api_url();
        Ok(data)
    }

    /// Makes this process the data dir's only user: two agents on one store would both drive
    /// the same machines. A pid file left by a process that is gone is taken over.
    fn claim(&self) -> Result<()> {
        let path = self.root.join(PID_FILE);
        for _ in 0..2 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    return f
                        .write_all(format!("{}\n", std::process::id()).as_bytes())
                        .with_context(|| format!("cannot write {}", path.display()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    if let Some(pid) = holder.filter(|pid| is_aloft(*pid)) {
                        bail!(
                            "another `aloft dev up` (pid {pid}) is using the data directory {}; stop it first, or pass another --data-dir",
                            self.root.display()
                        );
                    }
                    let _ = fs::remove_file(&path);
                }
                Err(e) => bail!("cannot write {}: {e}", path.display()),
            }
        }
        bail!(
            "another `aloft dev up` is starting on the data directory {}; stop it first, or pass another --data-dir",
            self.root.display()
        )
    }

    /// Gives the data dir up (clean stop).
    fn release(&self) {
        self.remove_api_url();
        let _ = fs::remove_file(self.root.join(PID_FILE));
    }

    /// The internal token: generated once, then reused.
    fn internal_token(&self) -> Result<String> {
        let path = self.root.join(INTERNAL_TOKEN_FILE);
        match fs::read_to_string(&path) {
            Ok(t) if !t.trim().is_empty() => {
                restrict(&path)?;
                return Ok(t.trim().to_string());
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => bail!(
                "cannot read {}: {e}; fix its permissions, or delete it to make a new one",
                path.display()
            ),
        }
        let token = aloft_types::ids::random_hex(32);
        write_atomic(&path, &token, 0o600)?;
        Ok(token)
    }

    /// The API token file for org `personal`: its token is kept while the control plane accepts
    /// it; otherwise a new token is made and written. Returns the file's path.
    async fn api_token(&self, control_plane: &ControlPlane) -> Result<PathBuf> {
        let path = self.root.join(TOKEN_FILE);
        if let Ok(existing) = fs::read_to_string(&path) {
            let existing = existing.trim();
            if !existing.is_empty()
                && control_plane.org_of_token(existing).await.as_deref() == Some(ORG)
            {
                restrict(&path)?;
                return Ok(path);
            }
            tracing::warn!(
                "the token in {} is not valid for org `{ORG}` here; writing a new one",
                path.display()
            );
        }
        let token = control_plane
            .create_token(ORG, "aloft dev up")
            .await
            .with_context(|| format!("creating an API token for org `{ORG}`"))?;
        write_atomic(&path, &token, 0o600)?;
        Ok(path)
    }

    fn write_api_url(&self, url: &str) -> Result<()> {
        write_atomic(&self.root.join(API_URL_FILE), url, 0o644)
    }

    fn remove_api_url(&self) {
        let path = self.root.join(API_URL_FILE);
        if let Err(e) = fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
    }
}

/// Whether `pid` is a running `aloft` process.
fn is_aloft(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        cmdline
            .split(|b| *b == 0)
            .next()
            .and_then(|argv0| Path::new(std::str::from_utf8(argv0).ok()?).file_name())
            .is_some_and(|name| name == "aloft")
    })
}

/// Writes a file whole or not at all (a temporary file, then a rename), with `mode`.
pub(crate) fn write_atomic(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    write_then_rename(&tmp, path, contents, mode).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        anyhow!(
            "cannot write {}: {e}; check the data directory's permissions and free space",
            path.display()
        )
    })
}

fn write_then_rename(tmp: &Path, path: &Path, contents: &str, mode: u32) -> std::io::Result<()> {
    let _ = fs::remove_file(tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    fs::rename(tmp, path)
}

/// Makes a secret file readable by its owner only.
fn restrict(path: &Path) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private (mode 0600)", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_for_listeners() {
        assert_eq!(
            url_for("127.0.0.1:4280".parse().unwrap()),
            "http://127.0.0.1:4280"
        );
        assert_eq!(url_for("0.0.0.0:1".parse().unwrap()), "http://127.0.0.1:1");
        assert_eq!(url_for("[::]:2".parse().unwrap()), "http://[::1]:2");
    }

    #[test]
    fn private_files_are_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::prepare(&dir.path().join("a/b")).unwrap();
        let t1 = data.internal_token().unwrap();
        let t2 = data.internal_token().unwrap();
        assert_eq!(t1, t2);
        assert_eq!(t1.len(), 64);
        let mode = fs::metadata(data.root.join(INTERNAL_TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_data_dir_under_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "x").unwrap();
        let err = DataDir::prepare(&file.join("data"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("cannot create the data directory"), "{err}");
        assert!(err.contains("--data-dir"), "{err}");
    }

    #[test]
    fn machine_subnets_are_checked() {
        assert_eq!(
            parse_subnet("172.19.0.0/16").unwrap(),
            (Ipv4Addr::new(172, 19, 0, 0), 16)
        );
        assert!(parse_subnet("172.19.0.0").unwrap_err().contains("CIDR"));
        assert!(parse_subnet("nope/16").unwrap_err().contains("IPv4"));
        assert!(
            parse_subnet("10.0.0.0/30")
                .unwrap_err()
                .contains("between 8 and 28")
        );
    }
}
