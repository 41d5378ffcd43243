//! `aloft dev cluster up|exec|status|down`: a multi-region cluster on one machine (root).
//!
//! Every host gets a network namespace (`alc-<host id>`) joined to the others by a bridge in the
//! root namespace (`alcl0`, 10.77.0.1/16; host k at 10.77.1.k), and runs `aloft server host` (agent,
//! proxy, internal DNS, gossip) in it, beside a registry cache on its own 127.0.0.1:5000 (so
//! `127.0.0.1:5000/<org>/<image>` means the same thing inside a host as outside). The control
//! plane and the registry run in the root namespace on 127.0.0.1:4280 and :5000, exactly as with
//! `dev up` (and on 10.77.0.1 for the hosts). Each region also gets a client namespace
//! (`alc-client-<region>`, 10.77.2.r) whose 127.0.0.1 (every TCP port) leads to that region's first host's
//! proxy: `aloft dev cluster exec --region syd -- curl http://app.localhost/` is a user in Sydney
//! reaching their nearest edge (anycast, emulated).
//!
//! Everything it starts is recorded in `<data-dir>/cluster.json`; `down` stops it and removes
//! every namespace, link, process, mount and file it made.

use crate::files::write_atomic;
use crate::host_setup::RuntimeKind;
use crate::{NodeCtx, print_json};
use aloft_types::datadir::TOKEN_FILE;
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The root namespace's bridge joining every host and client namespace.
const BRIDGE: &str = "alcl0";
const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// Where the control plane's API listens behind TLS, for hosts.
const CONTROL_TLS_PORT: u16 = 4443;
mod configs;

use configs::{control_config, read_rtt_file, rtt_ms, write_host_config};

const STATE_FILE: &str = "cluster.json";
/// The control plane's mesh device (in the root namespace; each host has `alwg0` in its own).
const CONTROL_MESH_IF: &str = "alclwg0";
const MESH_PORT: u16 = 4300;

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Create the namespaces and start the control plane, the registry and every host; returns
    /// once every host has registered.
    Up(UpArgs),
    /// Run a command in a region's client namespace (`-- CMD ARGS...`).
    Exec(ExecArgs),
    /// The cluster's hosts and where everything is.
    Status,
    /// Cut every host of one region off from every host of another (both ways), as a network
    /// partition would; `heal` ends it.
    Partition(PartitionArgs),
    /// End every partition.
    Heal,
    /// Stop everything and remove every namespace, link, process and file the cluster made.
    Down,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The regions, comma-separated (one client namespace each).
    #[arg(long, value_delimiter = ',', default_value = "ord,ams,syd")]
    regions: Vec<String>,
    /// Hosts in each region.
    #[arg(long, default_value_t = 1, value_name = "N")]
    hosts_per_region: usize,
    /// The isolation backend every host runs machines with.
    #[arg(long, value_enum, default_value_t = RuntimeKind::Gvisor)]
    runtime: RuntimeKind,
    /// Round trips between regions to emulate, replacing the built-in ones: lines
    /// `<region> <region> <ms>`.
    #[arg(long, value_name = "FILE")]
    rtt_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[arg(long)]
    region: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PartitionArgs {
    /// One side.
    a: String,
    /// The other side.
    b: String,
}

/// What `up` made, for `exec`, `status` and `down`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    regions: Vec<String>,
    control_pid: Option<u32>,
    hosts: Vec<HostState>,
    clients: Vec<ClientState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct HostState {
    id: String,
    region: String,
    netns: String,
    ip: Ipv4Addr,
    pid: Option<u32>,
    registry_pid: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ClientState {
    region: String,
    netns: String,
    ip: Ipv4Addr,
    /// The host whose proxy the region's clients reach.
    edge: Ipv4Addr,
}

pub async fn run(cmd: ClusterCommand, ctx: &NodeCtx) -> Result<ExitCode> {
    let dir = ctx.data_dir()?;
    // Absolute: it is written into configs and looked for in processes' command lines.
    let dir = std::path::absolute(&dir)
        .with_context(|| format!("cannot make {} absolute", dir.display()))?;
    match cmd {
        ClusterCommand::Up(args) => up(ctx, &dir, args).await,
        ClusterCommand::Exec(args) => exec(&dir, args),
        ClusterCommand::Status => status(ctx, &dir),
        ClusterCommand::Partition(args) => partition(&dir, &args.a, &args.b),
        ClusterCommand::Heal => heal(&dir),
        ClusterCommand::Down => down(&dir).map(|()| ExitCode::SUCCESS),
    }
}

fn read_state(dir: &Path) -> Result<State> {
    let path = dir.join(STATE_FILE);
    let text = fs::read_to_string(&path).with_context(|| {
        format!(
            "no dev cluster in {}: start one with `aloft dev cluster up` (and the same --data-dir)",
            dir.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))
}

fn save_state(dir: &Path, state: &State) -> Result<()> {
    write_atomic(
        &dir.join(STATE_FILE),
        &serde_json::to_string_pretty(state)?,
        0o600,
    )
}

/// Runs a set-up command; an error names it and says what it printed.
fn sh(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}: is it installed (iproute2, nftables)?"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `sh` inside network namespace `netns`.
fn sh_in(netns: &str, program: &str, args: &[&str]) -> Result<()> {
    let net = format!("--net=/run/netns/{netns}");
    let mut all = vec![net.as_str(), "--", program];
    all.extend_from_slice(args);
    sh("nsenter", &all)
}

/// A namespace joined to the bridge through a veth pair (`link` in the root namespace, `eth0`
/// inside), with `ip` and loopback up.
fn namespace(netns: &str, link: &str, ip: Ipv4Addr) -> Result<()> {
    // A link of this name left by a cluster whose namespace the kernel has not freed yet.
    if Path::new("/sys/class/net").join(link).exists() {
        sh("ip", &["link", "del", link])?;
    }
    sh("ip", &["netns", "add", netns])?;
    sh(
        "ip",
        &[
            "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", netns,
        ],
    )?;
    sh("ip", &["link", "set", link, "master", BRIDGE, "up"])?;
    sh_in(
        netns,
        "ip",
        &["addr", "add", &format!("{ip}/16"), "dev", "eth0"],
    )?;
    sh_in(netns, "ip", &["link", "set", "eth0", "up"])?;
    sh_in(netns, "ip", &["link", "set", "lo", "up"])?;
    Ok(())
}

/// Starts `aloft ARGS` detached (its own process group, output to `log`), in `netns` if given.
fn spawn(netns: Option<&str>, args: &[String], log: &Path) -> Result<u32> {
    let exe = std::env::current_exe().context("finding the aloft binary")?;
    let out = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}")).arg("--").arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    use std::os::unix::process::CommandExt;
    let child = cmd
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting `aloft {}`", args.join(" ")))?;
    Ok(child.id())
}

async fn up(ctx: &NodeCtx, dir: &Path, args: UpArgs) -> Result<ExitCode> {
    if !rustix::process::geteuid().is_root() {
        bail!("`aloft dev cluster up` makes network namespaces: run it as root");
    }
    if args.regions.is_empty() || args.hosts_per_region == 0 {
        bail!("a cluster needs at least one region (--regions) and one host per region");
    }
    if dir.join(STATE_FILE).exists() {
        bail!(
            "a dev cluster is already up in {}: stop it with `aloft dev cluster down` first",
            dir.display()
        );
    }
    if Path::new("/sys/class/net").join(BRIDGE).exists() {
        bail!(
            "bridge {BRIDGE} exists: another dev cluster runs (its `down` removes it; or `ip link del {BRIDGE}`)"
        );
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut state = State {
        regions: args.regions.clone(),
        ..State::default()
    };
    save_state(dir, &state)?;
    let made = build(ctx, dir, &args, &mut state).await;
    save_state(dir, &state)?;
    if let Err(e) = made {
        let _ = down(dir);
        return Err(e.context("the dev cluster did not come up (everything it made is removed)"));
    }
    print_status(ctx, dir, &state)?;
    Ok(ExitCode::SUCCESS)
}

async fn build(ctx: &NodeCtx, dir: &Path, args: &UpArgs, state: &mut State) -> Result<()> {
    sh("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
    // (Fixed, so that it does not change as hosts join: see `bridge_mac`.)
    let mac = aloft_runtime::net::bridge_mac(BRIDGE);
    sh("ip", &["link", "set", "dev", BRIDGE, "address", &mac])?;
    sh(
        "ip",
        &["addr", "add", &format!("{BRIDGE_IP}/16"), "dev", BRIDGE],
    )?;
    sh("ip", &["link", "set", BRIDGE, "up"])?;

    let token_file = dir.join("internal-token");
    if !token_file.exists() {
        write_atomic(&token_file, &aloft_types::ids::random_hex(24), 0o600)?;
    }
    let control = toml::to_string(&control_config(dir, &token_file, &args.regions[0]))
        .context("writing the control plane's config")?;
    let control_file = dir.join("control.toml");
    fs::write(&control_file, control)?;
    state.control_pid = Some(spawn(
        None,
        &[
            "server".into(),
            "control".into(),
            "--config".into(),
            path_arg(&control_file),
        ],
        &dir.join("control.log"),
    )?);
    save_state(dir, state)?;

    let mut k = 0u8;
    for region in &args.regions {
        for n in 1..=args.hosts_per_region {
            k = k
                .checked_add(1)
                .ok_or_else(|| anyhow!("at most 254 hosts in a dev cluster"))?;
            let id = format!("{region}-{n}");
            let netns = format!("alc-{id}");
            let ip = Ipv4Addr::new(10, 77, 1, k);
            // Recorded first, so that `down` removes what a failure leaves half made.
            state.hosts.push(HostState {
                id: id.clone(),
                region: region.clone(),
                netns: netns.clone(),
                ip,
                pid: None,
                registry_pid: None,
            });
            save_state(dir, state)?;
            namespace(&netns, &format!("alch{k}"), ip)?;
        }
    }
    // One CA for every host's HTTPS listener, so that clients trust one `ca.pem`.
    let ca_dir = dir.join("ca");
    aloft_proxy::tls::DevCa::load_or_create(&ca_dir).context("making the cluster's CA")?;
    let overrides = match &args.rtt_file {
        Some(f) => read_rtt_file(f)?,
        None => Vec::new(),
    };
    for i in 0..state.hosts.len() {
        let h = state.hosts[i].clone();
        let hdir = dir.join("hosts").join(&h.id);
        fs::create_dir_all(&hdir)?;
        let registry_pid = spawn(
            Some(&h.netns),
            &[
                "server".into(),
                "registry".into(),
                "--addr".into(),
                "127.0.0.1:5000".into(),
                "--storage".into(),
                path_arg(&hdir.join("registry-cache")),
                "--upstream".into(),
                format!("http://{BRIDGE_IP}:5000"),
                "--control-plane".into(),
                format!("http://{BRIDGE_IP}:4280"),
                // As its host: the cache checks tokens with the host's credential.
                "--host-credential-file".into(),
                path_arg(&crate::host_identity::identity_file(&hdir)),
            ],
            &hdir.join("registry.log"),
        )?;
        state.hosts[i].registry_pid = Some(registry_pid);
        let rtts = args
            .regions
            .iter()
            .filter(|r| **r != h.region)
            .map(|r| (r.clone(), rtt_ms(&h.region, r, &overrides)))
            .collect();
        let config_file =
            write_host_config(dir, &h, args.runtime, &token_file, &ca_dir, rtts).await?;
        state.hosts[i].pid = Some(spawn(
            Some(&h.netns),
            &[
                "server".into(),
                "host".into(),
                "--config".into(),
                path_arg(&config_file),
            ],
            &hdir.join("host.log"),
        )?);
        save_state(dir, state)?;
    }

    for (r, region) in args.regions.iter().enumerate() {
        let r = u8::try_from(r + 1).map_err(|_| anyhow!("at most 254 regions"))?;
        let netns = format!("alc-client-{region}");
        let ip = Ipv4Addr::new(10, 77, 2, r);
        let edge = state
            .hosts
            .iter()
            .find(|h| &h.region == region)
            .map(|h| h.ip)
            .expect("every region has a host");
        state.clients.push(ClientState {
            region: region.clone(),
            netns: netns.clone(),
            ip,
            edge,
        });
        save_state(dir, state)?;
        namespace(&netns, &format!("alcc{r}"), ip)?;
        // 127.0.0.1 (every TCP port) in the client namespace is the region's edge.
        sh_in(
            &netns,
            "sysctl",
            &["-qw", "net.ipv4.conf.all.route_localnet=1"],
        )?;
        let rules = format!(
            "table ip aloft_client {{\n chain out {{ type nat hook output priority -100; ip daddr 127.0.0.1 meta l4proto tcp dnat to {edge}; }}\n chain post {{ type nat hook postrouting priority 100; oifname \"eth0\" masquerade; }}\n}}\n"
        );
        let rules_file = dir.join(format!("client-{region}.nft"));
        fs::write(&rules_file, rules)?;
        sh_in(&netns, "nft", &["-f", &path_arg(&rules_file)])?;
    }
    wait_ready(ctx, dir, state).await
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

/// Until the control plane answers and every host has registered (or a process died).
async fn wait_ready(_ctx: &NodeCtx, dir: &Path, state: &State) -> Result<()> {
    let token = fs::read_to_string(dir.join("internal-token"))?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        for (what, pid, log) in processes(dir, state) {
            if !alive(pid) {
                let tail = fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(15).collect();
                bail!(
                    "{what} exited; the end of {}:\n{}",
                    log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        let hosts = http
            .get("http://127.0.0.1:4280/internal/v1/hosts")
            .bearer_auth(token.trim())
            .send()
            .await
            .ok();
        if let Some(resp) = hosts
            && let Ok(list) = resp.json::<Vec<aloft_types::api::HostInfo>>().await
            && state
                .hosts
                .iter()
                .all(|h| list.iter().any(|l| l.id == h.id))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the hosts did not all register within 90 s; see the logs in {}",
                dir.join("hosts").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every process the cluster started: what it is, its pid, its log.
fn processes(dir: &Path, state: &State) -> Vec<(String, u32, PathBuf)> {
    let mut out = Vec::new();
    if let Some(pid) = state.control_pid {
        out.push(("the control plane".into(), pid, dir.join("control.log")));
    }
    for h in &state.hosts {
        let hdir = dir.join("hosts").join(&h.id);
        if let Some(pid) = h.pid {
            out.push((format!("host {}", h.id), pid, hdir.join("host.log")));
        }
        if let Some(pid) = h.registry_pid {
            out.push((
                format!("host {}'s registry cache", h.id),
                pid,
                hdir.join("registry.log"),
            ));
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped) counts as gone.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

fn kill(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

fn exec(dir: &Path, args: ExecArgs) -> Result<ExitCode> {
    let state = read_state(dir)?;
    let client = state
        .clients
        .iter()
        .find(|c| c.region == args.region)
        .ok_or_else(|| {
            anyhow!(
                "the dev cluster has no region `{}`; its regions are {}",
                args.region,
                state.regions.join(", ")
            )
        })?;
    let status = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", client.netns))
        .arg("--")
        .args(&args.command)
        .status()
        .with_context(|| format!("running {}", args.command[0]))?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}

/// The nftables table a partition adds in a host's namespace.
const PARTITION_TABLE: &str = "aloft_partition";

fn partition(dir: &Path, a: &str, b: &str) -> Result<ExitCode> {
    let state = read_state(dir)?;
    let side = |region: &str| -> Result<Vec<&HostState>> {
        let hosts: Vec<&HostState> = state.hosts.iter().filter(|h| h.region == region).collect();
        if hosts.is_empty() {
            bail!(
                "the dev cluster has no region `{region}`; its regions are {}",
                state.regions.join(", ")
            );
        }
        Ok(hosts)
    };
    let (a_hosts, b_hosts) = (side(a)?, side(b)?);
    if a == b {
        bail!("a region cannot be cut off from itself: name two regions");
    }
    for (these, others) in [(&a_hosts, &b_hosts), (&b_hosts, &a_hosts)] {
        let ips: Vec<String> = others.iter().map(|h| h.ip.to_string()).collect();
        let ips = ips.join(", ");
        for h in these.iter() {
            let rules = format!(
                "table inet {PARTITION_TABLE} {{\n chain input {{ type filter hook input priority -10; ip saddr {{ {ips} }} drop; }}\n chain output {{ type filter hook output priority -10; ip daddr {{ {ips} }} drop; }}\n}}\n"
            );
            let file = dir.join(format!("partition-{}.nft", h.id));
            fs::write(&file, rules)?;
            sh_in(&h.netns, "nft", &["-f", &path_arg(&file)])?;
        }
    }
    println!("{a} and {b} are cut off from each other; `aloft dev cluster heal` joins them again.");
    Ok(ExitCode::SUCCESS)
}

fn heal(dir: &Path) -> Result<ExitCode> {
    let state = read_state(dir)?;
    for h in &state.hosts {
        // Only hosts that were cut off have the table.
        let _ = sh_in(
            &h.netns,
            "nft",
            &["delete", "table", "inet", PARTITION_TABLE],
        );
        let _ = fs::remove_file(dir.join(format!("partition-{}.nft", h.id)));
    }
    println!("every region reaches every other again.");
    Ok(ExitCode::SUCCESS)
}

fn status(ctx: &NodeCtx, dir: &Path) -> Result<ExitCode> {
    let state = read_state(dir)?;
    print_status(ctx, dir, &state)?;
    Ok(ExitCode::SUCCESS)
}

fn print_status(ctx: &NodeCtx, dir: &Path, state: &State) -> Result<()> {
    if ctx.json {
        return print_json(&serde_json::json!({
            "data_dir": dir,
            "api_url": "http://127.0.0.1:4280",
            "registry_url": "http://127.0.0.1:5000",
            "token_file": dir.join(TOKEN_FILE),
            "ca": dir.join("ca").join("ca.pem"),
            "regions": state.regions,
            "hosts": state.hosts.iter().map(|h| serde_json::json!({
                "id": h.id, "region": h.region, "netns": h.netns, "ip": h.ip,
                "running": h.pid.is_some_and(alive),
                "log": dir.join("hosts").join(&h.id).join("host.log"),
            })).collect::<Vec<_>>(),
            "clients": state.clients.iter().map(|c| serde_json::json!({
                "region": c.region, "netns": c.netns, "edge": c.edge,
            })).collect::<Vec<_>>(),
        }));
    }
    let mut out = format!(
        "aloft dev cluster: {} regions, {} hosts (data in {})\n  Machines API  http://127.0.0.1:4280   registry  http://127.0.0.1:5000   token  {}\n",
        state.regions.len(),
        state.hosts.len(),
        dir.display(),
        dir.join(TOKEN_FILE).display()
    );
    out.push_str("  HOST        REGION  ADDRESS      NETNS              RUNNING\n");
    for h in &state.hosts {
        out.push_str(&format!(
            "  {:<11} {:<7} {:<12} {:<18} {}\n",
            h.id,
            h.region,
            h.ip.to_string(),
            h.netns,
            if h.pid.is_some_and(alive) {
                "yes"
            } else {
                "no"
            }
        ));
    }
    out.push_str("Reach a region's edge as its users do (HTTPS: curl --cacert ");
    out.push_str(&format!("{}):\n", dir.join("ca").join("ca.pem").display()));
    for c in &state.clients {
        out.push_str(&format!(
            "  aloft dev cluster exec --region {} -- curl http://<app>.localhost/\n",
            c.region
        ));
    }
    out.push_str("Stop and remove everything: aloft dev cluster down\n");
    print!("{out}");
    Ok(())
}

/// Stops every process and removes every namespace, link, mount and file the cluster made.
/// Best effort: it goes on past what is already gone, and reports what it could not remove.
fn down(dir: &Path) -> Result<()> {
    let state = read_state(dir).unwrap_or_default();
    let mut problems = Vec::new();
    // Hosts first (they stop taking work), then the rest.
    let procs = processes(dir, &state);
    for (_, pid, _) in &procs {
        kill(*pid, rustix::process::Signal::TERM);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while procs.iter().any(|(_, pid, _)| alive(*pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Whatever is left, and everything the hosts started (shims, runsc, QEMU): every process
    // whose command line names the cluster's data dir.
    let needle = dir.display().to_string();
    for _ in 0..3 {
        let mut found = false;
        for pid in pids_mentioning(&needle) {
            found = true;
            kill(pid, rustix::process::Signal::KILL);
        }
        if !found {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The machines' network namespaces and cgroups (by the machine ids the hosts kept).
    for id in machine_ids(dir) {
        let ns = format!("aloft-{id}");
        if Path::new("/run/netns").join(&ns).exists() {
            let _ = sh("ip", &["netns", "del", &ns]);
        }
        for controller in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = fs::remove_dir(controller.path().join("aloft").join(&id));
        }
    }
    unmount_under(dir);
    for ns in state
        .hosts
        .iter()
        .map(|h| &h.netns)
        .chain(state.clients.iter().map(|c| &c.netns))
    {
        if Path::new("/run/netns").join(ns).exists()
            && let Err(e) = sh("ip", &["netns", "del", ns])
        {
            problems.push(e.to_string());
        }
    }
    // The root sides of the veth pairs go with their namespaces, unless something still holds
    // a namespace (the kernel frees it later): deleted here either way.
    for link in fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = link.file_name().to_string_lossy().into_owned();
        if name.starts_with("alch") || name.starts_with("alcc") {
            let _ = sh("ip", &["link", "del", &name]);
        }
    }
    // The control plane's mesh device went with its process; its input rule stays behind.
    let _ = sh(
        "nft",
        &[
            "delete",
            "table",
            "inet",
            &format!("aloft_mesh_{CONTROL_MESH_IF}"),
        ],
    );
    if Path::new("/sys/class/net").join(BRIDGE).exists()
        && let Err(e) = sh("ip", &["link", "del", BRIDGE])
    {
        problems.push(e.to_string());
    }
    if dir.join(STATE_FILE).exists()
        && let Err(e) = fs::remove_dir_all(dir)
    {
        problems.push(format!("removing {}: {e}", dir.display()));
    }
    if problems.is_empty() {
        println!("aloft dev cluster is down: nothing of it is left.");
        Ok(())
    } else {
        Err(anyhow!(
            "the dev cluster is down, but some of it could not be removed:\n  {}",
            problems.join("\n  ")
        ))
    }
}

fn pids_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// The ids of the machines the cluster's hosts ran (their runtime state directories).
fn machine_ids(dir: &Path) -> Vec<String> {
    fs::read_dir(dir.join("hosts"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|h| {
            fs::read_dir(h.path().join("runtime").join("machines"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|m| m.file_name().to_str().map(str::to_string))
        })
        .collect()
}

/// Lazily unmounts every mount point under `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.display().to_string();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = sh("umount", &["-l", p]);
    }
}
