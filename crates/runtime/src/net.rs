//! A host's machine network: one Linux bridge per host, every machine attached to it by a veth
//! pair into its own network namespace (gVisor) or by a TAP device (microVM).
//!
//! Each machine gets its 6PN address (`private_ip`, a /112 on the machine side) and an IPv4
//! address from the host's subnet for outbound traffic, which is NATed. The host reaches every
//! machine (a /128 route per machine to the bridge; the bridge holds `fdaa::ffff:ffff:<gw>`).
//! An nftables `bridge` table on the host keeps machines apart: no IPv4 between machines, and
//! IPv6 only between machines of the same org (the same 6PN /48). Machines reach nothing on
//! the host itself but internal DNS and neighbour discovery (an `input` chain; the host's own
//! connections to them are answered). One cloud's machines per bridge: the bridge's alias names
//! the cloud (its state dir) whose machines are on it, and another cloud is refused.
//!
//! Commands are `ip` (iproute2) and `nft` (nftables); what is missing is named in the error.

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

mod rules;

/// The bridge and IPv4 subnet of a host's machines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkOptions {
    /// The bridge's name (at most 15 bytes).
    pub bridge: String,
    /// The subnet machines' IPv4 addresses come from; the bridge has the first address.
    pub subnet_v4: (Ipv4Addr, u8),
}

impl Default for NetworkOptions {
    fn default() -> Self {
        Self {
            bridge: "aloft0".into(),
            subnet_v4: (Ipv4Addr::new(172, 19, 0, 0), 16),
        }
    }
}

/// What a machine got from [`HostNetwork`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineNet {
    /// The network namespace (gVisor machines); `None` for a TAP.
    pub netns: Option<PathBuf>,
    /// The host side: the veth's host end or the TAP.
    pub host_if: String,
    pub ipv4: Ipv4Addr,
    pub prefix_v4: u8,
    pub gateway_v4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    /// The machine side's MAC address (for a microVM's NIC).
    pub mac: String,
}

impl MachineNet {
    pub fn ipv4_cidr(&self) -> String {
        format!("{}/{}", self.ipv4, self.prefix_v4)
    }

    pub fn ipv6_cidr(&self) -> String {
        format!("{}/112", self.ipv6)
    }

    /// Its org's machines on this host (a /80: network and host), which it reaches on-link; every
    /// other 6PN address is through [`GATEWAY_V6`] (the host routes it into the mesh).
    pub fn host_prefix(&self) -> String {
        let s = self.ipv6.segments();
        let base = Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], 0, 0, 0);
        format!("{base}/80")
    }

    /// The machine's IPv6 routes, as `ip route` arguments.
    pub fn routes_v6(&self) -> [(String, Option<&'static str>); 2] {
        [
            (self.host_prefix(), None),
            ("fdaa::/16".to_string(), Some(GATEWAY_V6)),
        ]
    }
}

/// The bridge's link-local address: every machine's IPv6 gateway (to other hosts' machines,
/// through the mesh, and to internal DNS).
pub const GATEWAY_V6: &str = "fe80::1";

/// Network errors say which command failed and how to get it.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("`{cmd}` failed: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error("`{0}` is not installed: apt-get install {1}")]
    Missing(&'static str, &'static str),
    #[error("the subnet {0} has no free address left for another machine")]
    Full(String),
    #[error(
        "{address} is in use on this host by another aloft cloud's machine (bridge {bridge}): every cloud numbers its first host and org 1, so two on one host collide; stop the other one (or destroy its machines) first"
    )]
    InUse { address: Ipv6Addr, bridge: String },
    #[error(
        "the bridge {bridge} carries the machines of another aloft cloud, whose runtime state is in {}{}: two clouds on one bridge hand out the same addresses, and one's proxy would answer with the other's machines. Stop that cloud's machines first (start it again and destroy them with `aloft machine destroy --force`), or, if that directory is gone, delete the bridge (`ip link delete {bridge}`) so that its machines are cut off",
        state_dir.display(),
        dev_up_hint(state_dir)
    )]
    OtherCloud { bridge: String, state_dir: PathBuf },
    #[error("{0}: {1}")]
    Io(String, #[source] io::Error),
}

/// For a state dir `dev up` made (`<data dir>/runtime`), how to start that cloud.
fn dev_up_hint(state_dir: &Path) -> String {
    match state_dir.parent() {
        Some(data) if state_dir.ends_with("runtime") => format!(
            " (an `aloft dev up` cloud: `aloft dev up --data-dir {}`)",
            data.display()
        ),
        _ => String::new(),
    }
}

/// What a bridge's alias starts with when it names the cloud whose machines it carries: the
/// rest is that cloud's state dir.
const OWNER_PREFIX: &str = "aloft cloud ";
/// The longest alias Linux keeps (`IFALIASZ` less its NUL).
const ALIAS_MAX: usize = 255;

/// The alias naming the cloud whose state is in `state_dir` (cut to what Linux keeps).
fn owner_alias(state_dir: &Path) -> String {
    let mut alias = format!("{OWNER_PREFIX}{}", state_dir.display());
    if alias.len() > ALIAS_MAX {
        let mut end = ALIAS_MAX;
        while !alias.is_char_boundary(end) {
            end -= 1;
        }
        alias.truncate(end);
    }
    alias
}

/// One host's bridge and its machines' addresses (persisted in `<state>/net.json`).
pub struct HostNetwork {
    opts: NetworkOptions,
    file: PathBuf,
    /// The bridge's alias while this cloud's machines are on it ([`owner_alias`]).
    owner: String,
    leases: Mutex<BTreeMap<String, MachineNet>>,
    /// The machines the nftables rules were last written for.
    applied: Mutex<Option<Vec<MachineNet>>>,
}

fn run(program: &'static str, args: &[&str]) -> Result<String, NetError> {
    let out = Command::new(program).args(args).output().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            match program {
                "nft" => NetError::Missing("nft", "nftables"),
                "nsenter" => NetError::Missing("nsenter", "util-linux"),
                _ => NetError::Missing("ip", "iproute2"),
            }
        } else {
            NetError::Io(format!("running {program}"), e)
        }
    })?;
    if !out.status.success() {
        return Err(NetError::Command {
            cmd: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String, NetError> {
    run("ip", args)
}

/// `ip` inside a network namespace (nsenter, not `ip netns exec`, which remounts /sys).
fn ip_in(netns: &Path, args: &[&str]) -> Result<String, NetError> {
    let ns = format!("--net={}", netns.display());
    let mut all = vec![ns.as_str(), "ip"];
    all.extend_from_slice(args);
    run("nsenter", &all)
}

/// Several `ip` commands in one process (`ip -batch -`), inside `netns` if given.
fn ip_batch(netns: Option<&Path>, lines: &[String]) -> Result<(), NetError> {
    use std::io::Write;
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.display())).arg("ip");
            c
        }
        None => Command::new("ip"),
    };
    let mut child = cmd
        .args(["-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                NetError::Missing("ip", "iproute2")
            } else {
                NetError::Io("running ip".into(), e)
            }
        })?;
    let script = lines.join("\n") + "\n";
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(|e| NetError::Io("writing to ip".into(), e))?;
    let out = child
        .wait_with_output()
        .map_err(|e| NetError::Io("running ip".into(), e))?;
    if !out.status.success() {
        return Err(NetError::Command {
            cmd: format!("ip -batch - <<EOF\n{script}EOF"),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// A short stable tag for interface names (15 bytes at most): 8 hex digits of the id's hash.
fn tag(id: &str) -> String {
    // FNV-1a: stable across builds, unlike std's hasher.
    let h = id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{h:08x}")
}

/// The org network (/48) a 6PN address is in.
fn org_prefix(addr: Ipv6Addr) -> String {
    let s = addr.segments();
    format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
}

/// A fixed MAC address for the bridge `name` (locally administered, from its name).
///
/// A Linux bridge without one set takes the lowest MAC of its ports, so it changes whenever a
/// port with a lower one joins. A machine that learnt its gateway's MAC while it was another
/// port's then sends its replies to that port's MAC; the bridge hands such frames up as meant
/// for another host and they are dropped, until the machine's neighbour entry expires (tens of
/// seconds of a machine that cannot answer). With the address set, it never changes.
pub fn bridge_mac(name: &str) -> String {
    // FNV-1a: stable across releases and hosts, unlike std's hasher.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let b = hash.to_be_bytes();
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4]
    )
}

/// `ip -batch` lines for a machine's IPv6 routes (`add` or `replace`).
fn route_commands(m: &MachineNet, verb: &str) -> Vec<String> {
    m.routes_v6()
        .into_iter()
        .map(|(dst, via)| match via {
            Some(gw) => format!("route {verb} {dst} via {gw} dev eth0"),
            None => format!("route {verb} {dst} dev eth0"),
        })
        .collect()
}

/// A machine's own /112 (it answers on `::2` of it).
fn own_prefix(addr: Ipv6Addr) -> String {
    let s = addr.segments();
    let base = Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], 0);
    format!("{base}/112")
}

impl HostNetwork {
    /// Sets up the bridge, forwarding and the nftables tables (idempotent), and loads the
    /// addresses machines hold.
    pub fn new(state_dir: &Path, opts: NetworkOptions) -> Result<Self, NetError> {
        fs::create_dir_all(state_dir)
            .map_err(|e| NetError::Io(format!("creating {}", state_dir.display()), e))?;
        let file = state_dir.join("net.json");
        let state_dir = fs::canonicalize(state_dir)
            .map_err(|e| NetError::Io(format!("resolving {}", state_dir.display()), e))?;
        let leases: BTreeMap<String, MachineNet> = fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let net = Self {
            opts,
            file,
            owner: owner_alias(&state_dir),
            leases: Mutex::new(leases),
            applied: Mutex::new(None),
        };
        // Checked before the bridge is touched (a refused cloud changes nothing of another's),
        // and claimed once it exists.
        net.claim_bridge()?;
        net.ensure_bridge()?;
        net.claim_bridge()?;
        net.ensure_rules()?;
        Ok(net)
    }

    /// Makes this cloud the one whose machines the bridge carries (its alias names the cloud's
    /// state dir), unless another cloud's machines are on it: every cloud numbers its host and
    /// its first org 1 and leases IPv4 from the same subnet, so two on one bridge would give
    /// machines the same addresses, and one's proxy would reach the other's machines. Ports on
    /// the bridge are machines (a stopped machine keeps its port until it is destroyed); a
    /// bridge without any, or without an owner (made before owners were recorded), is taken.
    /// Checked when the network is opened and again at every machine's attach, so that of two
    /// clouds started while the bridge was empty, the second to attach a machine is refused.
    /// A bridge that does not exist yet has nothing to claim.
    ///
    /// Read with `ip` in this process's network namespace, not through `/sys`, which shows the
    /// namespace it was mounted in (a `dev cluster` host runs in a namespace of its own).
    fn claim_bridge(&self) -> Result<(), NetError> {
        let br = &self.opts.bridge;
        let Ok(shown) = ip(&["link", "show", "dev", br]) else {
            return Ok(());
        };
        let alias = shown
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("alias "))
            .unwrap_or_default();
        if alias == self.owner {
            return Ok(());
        }
        if let Some(other) = alias.strip_prefix(OWNER_PREFIX) {
            let ports = ip(&["-o", "link", "show", "master", br]).map_or(0, |out| {
                out.lines().filter(|l| !l.trim().is_empty()).count()
            });
            if ports > 0 {
                return Err(NetError::OtherCloud {
                    bridge: br.clone(),
                    state_dir: PathBuf::from(other),
                });
            }
        }
        ip(&["link", "set", "dev", br, "alias", &self.owner])?;
        Ok(())
    }

    pub fn options(&self) -> &NetworkOptions {
        &self.opts
    }

    fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.opts.subnet_v4.0) + 1)
    }

    /// The bridge's own 6PN-range address, which machines reach on-link.
    pub fn bridge_ipv6(&self) -> Ipv6Addr {
        let g = u32::from(self.gateway());
        Ipv6Addr::new(0xfdaa, 0, 0, 0, 0xffff, 0xffff, (g >> 16) as u16, g as u16)
    }

    fn ensure_bridge(&self) -> Result<(), NetError> {
        let br = self.opts.bridge.as_str();
        if ip(&["link", "show", "dev", br]).is_err() {
            ip(&["link", "add", br, "type", "bridge"])?;
        }
        ip(&["link", "set", "dev", br, "address", &bridge_mac(br)])?;
        let gw = format!("{}/{}", self.gateway(), self.opts.subnet_v4.1);
        ip(&["addr", "replace", &gw, "dev", br])?;
        let v6 = format!("{}/128", self.bridge_ipv6());
        ip(&["-6", "addr", "replace", &v6, "dev", br, "nodad"])?;
        // Internal DNS answers machines there (`dev up` serves it).
        let dns = format!("{}/128", aloft_types::sixpn::INTERNAL_DNS);
        ip(&["-6", "addr", "replace", &dns, "dev", br, "nodad"])?;
        let gw6 = format!("{GATEWAY_V6}/64");
        ip(&["-6", "addr", "replace", &gw6, "dev", br, "nodad"])?;
        ip(&["link", "set", br, "up"])?;
        for (key, value) in [
            ("/proc/sys/net/ipv4/ip_forward", "1"),
            ("/proc/sys/net/ipv6/conf/all/forwarding", "1"),
        ] {
            fs::write(key, value).map_err(|e| NetError::Io(format!("writing {key}"), e))?;
        }
        Ok(())
    }

    /// The nftables tables of this bridge, rebuilt from the machines it has when they changed
    /// (or on the first call).
    fn ensure_rules(&self) -> Result<(), NetError> {
        // Held while the machines are read and the rules written, so that of two machines
        // joining or leaving at once, the later write has both.
        let mut applied = self.applied.lock();
        let ports: Vec<MachineNet> = self.leases.lock().values().cloned().collect();
        if applied.as_ref() == Some(&ports) {
            return Ok(());
        }
        nft(&self.rules(&ports))?;
        *applied = Some(ports);
        Ok(())
    }

    /// The bridge's tables: NAT for machines' IPv4; no IPv4 routed from one machine to another,
    /// and IPv6 routed from a machine (to another host's machines, through the mesh) only within
    /// its org; no IPv4 between machines; IPv6 only within
    /// an org's /48 (rules for frames between this bridge's machine ports only); and each machine's frames only from its own MAC and addresses (its /112,
    /// link-local and unspecified ones for neighbour discovery; its IPv4 address), so that no
    /// machine can pass for another, of its org or not. Neighbour discovery cannot be turned
    /// against another machine either: a machine announces only its own addresses (ARP sender,
    /// neighbour advertisement target), sends no router advertisements or redirects, and
    /// link-local or multicast traffic between machines (which no org prefix covers) is
    /// neighbour discovery only.
    fn rules(&self, ports: &[MachineNet]) -> String {
        rules::ruleset(&self.opts.bridge, self.opts.subnet_v4, ports)
    }

    fn save(&self, leases: &BTreeMap<String, MachineNet>) -> Result<(), NetError> {
        let bytes = serde_json::to_vec_pretty(leases).expect("serializable");
        aloft_durable::write(&self.file, &bytes, 0o644)
            .map_err(|e| NetError::Io(format!("writing {}", self.file.display()), e))
    }

    /// The machine's addresses: the ones it holds, or new ones.
    fn lease(&self, id: &str, ipv6: Ipv6Addr, netns: bool) -> Result<MachineNet, NetError> {
        let mut leases = self.leases.lock();
        if let Some(m) = leases.get(id)
            && m.ipv6 == ipv6
            && m.netns.is_some() == netns
        {
            return Ok(m.clone());
        }
        let (base, len) = self.opts.subnet_v4;
        let size = 1u32 << (32 - u32::from(len));
        let taken: std::collections::HashSet<Ipv4Addr> = leases.values().map(|m| m.ipv4).collect();
        let ipv4 = (2..size - 1)
            .map(|i| Ipv4Addr::from(u32::from(base) + i))
            .find(|a| !taken.contains(a))
            .ok_or_else(|| NetError::Full(format!("{base}/{len}")))?;
        let t = tag(id);
        let o = ipv4.octets();
        let m = MachineNet {
            netns: netns.then(|| PathBuf::from(format!("/var/run/netns/aloft-{id}"))),
            host_if: if netns {
                format!("alv{t}")
            } else {
                format!("alt{t}")
            },
            ipv4,
            prefix_v4: len,
            gateway_v4: self.gateway(),
            ipv6,
            mac: format!("52:54:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]),
        };
        leases.insert(id.to_string(), m.clone());
        self.save(&leases)?;
        Ok(m)
    }

    /// A network namespace for the machine, wired to the bridge by a veth pair (`eth0` inside),
    /// with its addresses and routes. Idempotent: an existing namespace is kept.
    pub fn attach_netns(&self, id: &str, ipv6: Ipv6Addr) -> Result<MachineNet, NetError> {
        self.claim_bridge()?;
        self.check_unclaimed(ipv6)?;
        let m = self.lease(id, ipv6, true)?;
        let ns_path = m.netns.clone().expect("netns lease");
        let ns_name = format!("aloft-{id}");
        if !ns_path.exists() {
            ip(&["netns", "add", &ns_name])?;
        }
        let ready = ip_in(&ns_path, &["-o", "addr", "show", "dev", "eth0"])
            .is_ok_and(|out| out.contains(&m.ipv4.to_string()));
        let br = &self.opts.bridge;
        let route = format!("route replace {}/128 dev {br}", m.ipv6);
        if ready {
            ip_batch(
                None,
                &[format!("link set {} master {br} up", m.host_if), route],
            )?;
            // Its MAC is the lease's (namespaces made before MACs were pinned get it now), and
            // its routes today's.
            let mut inside = vec![format!("link set eth0 address {}", m.mac)];
            inside.extend(route_commands(&m, "replace"));
            ip_batch(Some(&ns_path), &inside)?;
        } else {
            let peer = format!("alp{}", tag(id));
            let _ = ip(&["link", "del", &m.host_if]);
            // Two `ip -batch` runs (host side, then inside the namespace) instead of a process
            // per command: this is on every machine's start path.
            ip_batch(
                None,
                &[
                    format!(
                        "link add {} type veth peer name {peer} netns {ns_name}",
                        m.host_if
                    ),
                    format!("link set {} master {br} up", m.host_if),
                    route,
                ],
            )?;
            ip_batch(
                Some(&ns_path),
                &[
                    format!("link set {peer} name eth0"),
                    format!("link set eth0 address {}", m.mac),
                    format!("addr add {} dev eth0", m.ipv4_cidr()),
                    format!("addr add {} dev eth0 nodad", m.ipv6_cidr()),
                    "link set eth0 up".into(),
                    "link set lo up".into(),
                    format!("route add default via {}", m.gateway_v4),
                ]
                .into_iter()
                .chain(route_commands(&m, "add"))
                .collect::<Vec<_>>(),
            )?;
        }
        self.ensure_rules()?;
        Ok(m)
    }

    /// A TAP device on the bridge for a microVM (the guest configures its own addresses from
    /// the returned lease).
    pub fn attach_tap(&self, id: &str, ipv6: Ipv6Addr) -> Result<MachineNet, NetError> {
        self.claim_bridge()?;
        self.check_unclaimed(ipv6)?;
        let m = self.lease(id, ipv6, false)?;
        if ip(&["link", "show", "dev", &m.host_if]).is_err() {
            ip(&["tuntap", "add", "dev", &m.host_if, "mode", "tap"])?;
        }
        ip(&["link", "set", &m.host_if, "master", &self.opts.bridge, "up"])?;
        self.route_and_rules(&m)?;
        Ok(m)
    }

    /// Refuses an address a live machine on another bridge of this host has (its route would be
    /// taken over, and the other machine cut off). A route on a bridge without carrier is a
    /// leftover of a cloud that is gone, and is taken over.
    fn check_unclaimed(&self, ipv6: Ipv6Addr) -> Result<(), NetError> {
        let routes = ip(&["-6", "route", "show", &format!("{ipv6}/128")])?;
        for line in routes.lines() {
            let mut words = line.split_whitespace();
            let dev = words.by_ref().skip_while(|w| *w != "dev").nth(1);
            if let Some(dev) = dev
                && dev != self.opts.bridge
                && !line.contains("linkdown")
            {
                return Err(NetError::InUse {
                    address: ipv6,
                    bridge: dev.to_string(),
                });
            }
        }
        Ok(())
    }

    fn route_and_rules(&self, m: &MachineNet) -> Result<(), NetError> {
        let dst = format!("{}/128", m.ipv6);
        ip(&["-6", "route", "replace", &dst, "dev", &self.opts.bridge])?;
        self.ensure_rules()
    }

    /// Removes the machine's namespace, interfaces and route, and frees its addresses.
    pub fn release(&self, id: &str) -> Result<(), NetError> {
        let Some(m) = self.leases.lock().get(id).cloned() else {
            return Ok(());
        };
        let _ = ip(&["-6", "route", "del", &format!("{}/128", m.ipv6)]);
        let _ = ip(&["link", "del", &m.host_if]);
        if m.netns.as_ref().is_some_and(|p| p.exists()) {
            ip(&["netns", "del", &format!("aloft-{id}")])?;
        }
        let mut leases = self.leases.lock();
        leases.remove(id);
        self.save(&leases)?;
        drop(leases);
        self.ensure_rules()
    }

    /// Removes the bridge and its nftables tables (a host leaving service, and tests). Machines
    /// must have been released first.
    pub fn remove(&self) -> Result<(), NetError> {
        let br = &self.opts.bridge;
        nft(&format!(
            "table ip aloft_nat_{br}\ndelete table ip aloft_nat_{br}\ntable inet aloft_route_{br}\ndelete table inet aloft_route_{br}\ntable bridge aloft_{br}\ndelete table bridge aloft_{br}\n"
        ))?;
        ip(&["link", "del", br])?;
        Ok(())
    }

    /// The addresses a machine holds, if any.
    pub fn get(&self, id: &str) -> Option<MachineNet> {
        self.leases.lock().get(id).cloned()
    }
}

fn nft(script: &str) -> Result<(), NetError> {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                NetError::Missing("nft", "nftables")
            } else {
                NetError::Io("running nft".into(), e)
            }
        })?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(|e| NetError::Io("writing to nft".into(), e))?;
    let out = child
        .wait_with_output()
        .map_err(|e| NetError::Io("running nft".into(), e))?;
    if !out.status.success() {
        return Err(NetError::Command {
            cmd: format!("nft -f - <<EOF\n{script}EOF"),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_prefixes_are_per_org() {
        let t = tag("0123456789abcd");
        assert_eq!(t.len(), 8);
        assert_eq!(t, tag("0123456789abcd"));
        assert_ne!(t, tag("0123456789abce"));
        assert!(format!("alv{t}").len() <= 15);
        let a = aloft_types::sixpn::machine_address(7, 1, 3);
        assert_eq!(org_prefix(a), "fdaa:0:7::/48");
    }
}

#[cfg(test)]
mod rules_pin {
    //! The nftables ruleset pinned byte for byte for two representative inputs.
    use super::*;

    fn network(bridge: &str) -> HostNetwork {
        HostNetwork {
            opts: NetworkOptions {
                bridge: bridge.into(),
                subnet_v4: (Ipv4Addr::new(172, 19, 0, 0), 16),
            },
            file: PathBuf::from("/nonexistent/net.json"),
            owner: owner_alias(Path::new("/nonexistent")),
            leases: Mutex::new(BTreeMap::new()),
            applied: Mutex::new(None),
        }
    }

    fn port(host_if: &str, org: u32, n: u8) -> MachineNet {
        MachineNet {
            netns: None,
            host_if: host_if.into(),
            ipv4: Ipv4Addr::new(172, 19, 0, n),
            prefix_v4: 16,
            gateway_v4: Ipv4Addr::new(172, 19, 0, 1),
            ipv6: aloft_types::sixpn::machine_address(org, 1, u32::from(n)),
            mac: format!("52:54:ac:13:00:{n:02x}"),
        }
    }

    #[test]
    fn the_ruleset_without_machines_is_pinned() {
        let net = network("aloft0");
        assert_eq!(net.rules(&[]), include_str!("net/testdata/no_machines.nft"));
    }

    #[test]
    fn the_ruleset_of_three_machines_in_two_orgs_is_pinned() {
        let net = network("aloft0");
        let ports = [
            port("alv00000001", 7, 2),
            port("alt00000002", 7, 3),
            port("alv00000003", 9, 4),
        ];
        assert_eq!(
            net.rules(&ports),
            include_str!("net/testdata/three_machines_two_orgs.nft")
        );
    }
}
