//! The host's machine network on its own (no runtime): network namespaces on a bridge of this
//! test's own, as gVisor machines get them, and what the bridge lets through.

mod common;

use aloft_runtime::net::HostNetwork;
use aloft_types::sixpn::machine_address;
use common::*;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

const TOOLS: &[(&str, &str)] = &[("ip", "iproute2"), ("nft", "nftables")];

/// Runs `f` on a thread inside the network namespace at `netns`.
fn in_namespace<T: Send + 'static>(
    netns: &std::path::Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let netns = netns.to_path_buf();
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&netns).unwrap();
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&ns),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        f()
    })
}

/// Sends one datagram from `from` (an address in the namespace) to `to`, inside the namespace at
/// `netns`.
fn send_from(netns: &std::path::Path, from: IpAddr, to: SocketAddr) {
    in_namespace(netns, move || {
        let socket = UdpSocket::bind(SocketAddr::new(from, 0)).unwrap();
        // Twice: the first may wait on neighbour discovery.
        for _ in 0..2 {
            let _ = socket.send_to(b"hello", to);
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .join()
    .unwrap();
}

/// `nft -f -` of `script`, which must succeed; returns what `nft` printed.
fn nft(args: &[&str], script: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft {args:?}: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The source addresses of the datagrams that reached the host's IP layer from a bridge: past
/// the bridge table's checks, before the host decides whether to accept them (machines may not
/// send to most of the host's ports, so a socket on the host would see nothing either way). A
/// table of the test's own with dynamic sets, removed when dropped.
struct Arrivals {
    table: String,
}

impl Arrivals {
    fn watch(bridge: &str) -> Self {
        let table = format!("alprobe_{bridge}");
        nft(
            &["-f", "-"],
            &format!(
                "table inet {table} {{
set v6 {{ type ipv6_addr; flags dynamic; size 4096; }}
set v4 {{ type ipv4_addr; flags dynamic; size 4096; }}
chain pre {{
type filter hook prerouting priority raw; policy accept;
iifname \"{bridge}\" meta l4proto udp add @v6 {{ ip6 saddr }}
iifname \"{bridge}\" meta l4proto udp add @v4 {{ ip saddr }}
}}
}}
"
            ),
        );
        Self { table }
    }

    /// Whether a datagram from `addr` arrived since the last [`Arrivals::clear`].
    fn seen(&self, addr: IpAddr) -> bool {
        let set = if addr.is_ipv6() { "v6" } else { "v4" };
        let listed = nft(&["list", "set", "inet", &self.table, set], "");
        let want = addr.to_string();
        listed
            .split(|c: char| c.is_whitespace() || matches!(c, ',' | '{' | '}'))
            .any(|word| word == want)
    }

    fn clear(&self) {
        for set in ["v6", "v4"] {
            nft(&["flush", "set", "inet", &self.table, set], "");
        }
    }
}

impl Drop for Arrivals {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.table])
            .status();
    }
}

/// The sources of the datagrams that reached `socket` within a second.
fn received(socket: &UdpSocket) -> Vec<IpAddr> {
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut from = Vec::new();
    let mut buf = [0; 64];
    while let Ok((_, sender)) = socket.recv_from(&mut buf) {
        from.push(sender.ip());
    }
    from
}

fn in_netns(name: &str, args: &[&str]) {
    let out = Command::new("ip")
        .args(["netns", "exec", name, "ip"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_machine_cannot_send_from_an_address_that_is_not_its_own() {
    skip_unless!(TOOLS);
    let tmp = tempfile::tempdir().unwrap();
    let net = HostNetwork::new(tmp.path(), network()).unwrap();
    let org = 70_000 + std::process::id() % 10_000;
    let id = format!("spoof{}", std::process::id());
    let own = machine_address(org, 1, 1);
    let m = net.attach_netns(&id, own).unwrap();
    let netns = m.netns.clone().unwrap();

    // Datagrams to the bridge's addresses, seen where they reach the host.
    let seen = Arrivals::watch(&net.options().bridge);
    let v6 = SocketAddr::new(net.bridge_ipv6().into(), 9);
    let v4 = SocketAddr::new(m.gateway_v4.into(), 9);

    // From its own addresses: delivered.
    send_from(&netns, own.into(), v6);
    assert!(seen.seen(IpAddr::V6(own)));
    send_from(&netns, m.ipv4.into(), v4);
    assert!(seen.seen(IpAddr::V4(m.ipv4)));

    // From another machine's address of the same org, or another org's: dropped. (Root in a
    // microVM guest can add any address to its interface.)
    let other = machine_address(org, 1, 2);
    let foreign = machine_address(org + 1, 1, 1);
    let name = format!("aloft-{id}");
    for spoofed in [other, foreign] {
        in_netns(
            &name,
            &[
                "-6",
                "addr",
                "add",
                &format!("{spoofed}/128"),
                "dev",
                "eth0",
                "nodad",
            ],
        );
        send_from(&netns, spoofed.into(), v6);
        assert!(!seen.seen(IpAddr::V6(spoofed)), "{spoofed} got through");
    }
    let spoofed_v4 = std::net::Ipv4Addr::from(u32::from(m.ipv4) + 1);
    in_netns(
        &name,
        &["addr", "add", &format!("{spoofed_v4}/32"), "dev", "eth0"],
    );
    send_from(&netns, spoofed_v4.into(), v4);
    assert!(!seen.seen(IpAddr::V4(spoofed_v4)));

    // Its own address still works afterwards.
    seen.clear();
    send_from(&netns, own.into(), v6);
    assert!(seen.seen(IpAddr::V6(own)));

    // Frames from a MAC address that is not its own are dropped, whatever their source address.
    in_netns(
        &name,
        &["link", "set", "eth0", "address", "02:00:00:00:00:99"],
    );
    seen.clear();
    send_from(&netns, own.into(), v6);
    assert!(!seen.seen(IpAddr::V6(own)), "another MAC got through");
    in_netns(&name, &["link", "set", "eth0", "address", &m.mac]);

    net.release(&id).unwrap();
    net.remove().unwrap();
}

#[test]
fn an_address_another_bridge_serves_is_refused_until_it_is_released() {
    skip_unless!(TOOLS);
    let tmp = tempfile::tempdir().unwrap();
    let first = HostNetwork::new(&tmp.path().join("first"), network()).unwrap();
    let second = HostNetwork::new(&tmp.path().join("second"), network()).unwrap();
    let address = machine_address(80_000 + std::process::id() % 10_000, 1, 1);
    let (a, b) = (
        format!("claim-a{}", std::process::id()),
        format!("claim-b{}", std::process::id()),
    );
    first.attach_netns(&a, address).unwrap();
    // The first bridge has carrier once its new port is up (as with a machine that runs).
    let carrier = format!("/sys/class/net/{}/carrier", first.options().bridge);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&carrier).unwrap_or_default().trim() != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "no carrier on the first bridge"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = second.attach_netns(&b, address).unwrap_err().to_string();
    assert!(
        err.contains("in use") && err.contains(&first.options().bridge),
        "{err}"
    );
    first.release(&a).unwrap();
    second.attach_netns(&b, address).unwrap();
    second.release(&b).unwrap();
    first.remove().unwrap();
    second.remove().unwrap();
}

/// `eth0`'s index and link-local address in the namespace `name`, once it has one (they come once
/// the interface is up; no DAD wait for the test's sake), within 10 s.
fn eth0_link_local(name: &str) -> (u32, std::net::Ipv6Addr) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let out = Command::new("ip")
            .args([
                "netns", "exec", name, "ip", "-o", "-6", "addr", "show", "dev", "eth0", "scope",
                "link",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if text.contains("inet6") && !text.contains("tentative") {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no link-local address in {name}: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let index: u32 = text.split(':').next().unwrap().trim().parse().unwrap();
    let addr = text
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap()
        .parse()
        .unwrap();
    (index, addr)
}

#[test]
fn link_local_and_multicast_traffic_between_machines_is_neighbour_discovery_only() {
    skip_unless!(TOOLS);
    let tmp = tempfile::tempdir().unwrap();
    let net = HostNetwork::new(tmp.path(), network()).unwrap();
    let org = 90_000 + std::process::id() % 10_000;
    let (a, b) = (
        format!("ll-a{}", std::process::id()),
        format!("ll-b{}", std::process::id()),
    );
    let ma = net.attach_netns(&a, machine_address(org, 1, 1)).unwrap();
    let mb = net.attach_netns(&b, machine_address(org, 1, 2)).unwrap();
    let (_, b_link_local) = eth0_link_local(&format!("aloft-{b}"));
    let (a_index, _) = eth0_link_local(&format!("aloft-{a}"));

    // B listens on every address; A sends to its 6PN address (delivered: same org), its
    // link-local address and to all nodes (neither delivered).
    let port = 40_000 + (std::process::id() % 20_000) as u16;
    let listener = in_namespace(&mb.netns.clone().unwrap(), move || {
        let socket = UdpSocket::bind(("::", port)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 64];
        while let Ok((n, _)) = socket.recv_from(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
        got
    });
    std::thread::sleep(Duration::from_millis(300));
    let b_global = mb.ipv6;
    in_namespace(&ma.netns.clone().unwrap(), move || {
        let socket = UdpSocket::bind(("::", 0)).unwrap();
        for _ in 0..3 {
            let _ = socket.send_to(b"global", SocketAddr::new(b_global.into(), port));
            let to_ll = std::net::SocketAddrV6::new(b_link_local, port, 0, a_index);
            let _ = socket.send_to(b"link-local", to_ll);
            let all = std::net::SocketAddrV6::new("ff02::1".parse().unwrap(), port, 0, a_index);
            let _ = socket.send_to(b"multicast", all);
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .join()
    .unwrap();
    let got = listener.join().unwrap();
    assert!(got.iter().any(|m| m == "global"), "{got:?}");
    assert!(!got.iter().any(|m| m == "link-local"), "{got:?}");
    assert!(!got.iter().any(|m| m == "multicast"), "{got:?}");

    net.release(&a).unwrap();
    net.release(&b).unwrap();
    net.remove().unwrap();
}

/// `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_machines_bridge_rules_leave_other_bridges_alone() {
    skip_unless!(TOOLS);
    let tmp = tempfile::tempdir().unwrap();
    let net = HostNetwork::new(tmp.path(), network()).unwrap();
    let id = format!("alone{}", std::process::id());
    net.attach_netns(
        &id,
        machine_address(60_000 + std::process::id() % 10_000, 1, 1),
    )
    .unwrap();

    // Another bridge on the host (say, Docker's) with two namespaces speaking IPv4.
    let n = std::process::id() % 100_000;
    let (br, a, b) = (format!("alo{n}"), format!("alo-a{n}"), format!("alo-b{n}"));
    ip(&["link", "add", &br, "type", "bridge"]);
    ip(&["link", "set", &br, "up"]);
    for (ns, addr) in [(&a, "10.99.0.1/24"), (&b, "10.99.0.2/24")] {
        let host_if = format!("{ns}h");
        ip(&["netns", "add", ns]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ]);
        ip(&["link", "set", &host_if, "master", &br, "up"]);
        in_netns(ns, &["addr", "add", addr, "dev", "eth0"]);
        in_netns(ns, &["link", "set", "eth0", "up"]);
    }
    let receiver = in_namespace(&std::path::Path::new("/run/netns").join(&b), || {
        let socket = UdpSocket::bind("10.99.0.2:7000").unwrap();
        received(&socket)
    });
    std::thread::sleep(Duration::from_millis(100));
    send_from(
        &std::path::Path::new("/run/netns").join(&a),
        "10.99.0.1".parse().unwrap(),
        "10.99.0.2:7000".parse().unwrap(),
    );
    let got = receiver.join().unwrap();
    for ns in [&a, &b] {
        ip(&["netns", "del", ns]);
    }
    ip(&["link", "del", &br]);
    net.release(&id).unwrap();
    net.remove().unwrap();
    assert!(
        got.contains(&"10.99.0.1".parse().unwrap()),
        "IPv4 between two ports of another bridge was dropped"
    );
}

#[test]
fn what_a_machine_routes_through_its_gateway_stays_in_its_org() {
    skip_unless!(TOOLS);
    let tmp = tempfile::tempdir().unwrap();
    let net = HostNetwork::new(tmp.path(), network()).unwrap();
    let org = 50_000 + std::process::id() % 10_000;
    let (a, b) = (
        format!("gw-a{}", std::process::id()),
        format!("gw-b{}", std::process::id()),
    );
    let ma = net.attach_netns(&a, machine_address(org, 1, 1)).unwrap();
    let mb = net
        .attach_netns(&b, machine_address(org + 1, 1, 1))
        .unwrap();
    let (from, netns_a) = (ma.ipv6, ma.netns.clone().unwrap());

    // The gateway works: internal DNS's address (on the host) is reached through it.
    let seen = Arrivals::watch(&net.options().bridge);
    let dns = SocketAddr::new(aloft_types::sixpn::INTERNAL_DNS.into(), 53);
    send_from(&netns_a, from.into(), dns);
    assert!(seen.seen(IpAddr::V6(from)));

    // Another org's machine on the same host is not (it is off a's on-link prefix, so the
    // packet goes through the gateway and the host must not route it).
    let to = mb.ipv6;
    let theirs = in_namespace(&mb.netns.clone().unwrap(), move || {
        UdpSocket::bind((to, 0)).unwrap()
    })
    .join()
    .unwrap();
    send_from(&netns_a, from.into(), theirs.local_addr().unwrap());
    assert!(received(&theirs).is_empty(), "routed into another org");

    net.release(&a).unwrap();
    net.release(&b).unwrap();
    net.remove().unwrap();
}

#[test]
fn a_machine_keeps_reaching_its_gateway_as_other_machines_join() {
    skip_unless!(TOOLS);
    let tmp = tempfile::tempdir().unwrap();
    let net = HostNetwork::new(tmp.path(), network()).unwrap();
    let bridge = net.options().bridge.clone();
    let org = 60_000 + std::process::id() % 10_000;
    let id = |k: &str| format!("mac-{k}{}", std::process::id());
    let seen = Arrivals::watch(&bridge);
    let host = SocketAddr::new(aloft_types::sixpn::INTERNAL_DNS.into(), 53);
    let ma = net
        .attach_netns(&id("a"), machine_address(org, 1, 1))
        .unwrap();
    let (from, netns_a) = (ma.ipv6, ma.netns.clone().unwrap());
    let ns_a = format!("aloft-{}", id("a"));
    // Each newcomer's port has a lower MAC than any before it: a bridge without a MAC of its
    // own would take each one's, and `a` (having learnt the previous one) would be cut off.
    for (k, port_mac) in [("b", "02:00:00:00:00:02"), ("c", "02:00:00:00:00:01")] {
        let m = net
            .attach_netns(&id(k), machine_address(org, 1, 2 + u32::from(k == "c")))
            .unwrap();
        ip(&["link", "set", "dev", &m.host_if, "address", port_mac]);
        // (`a` learns its gateway's MAC afresh after b joins, and keeps it when c does.)
        if k == "b" {
            in_netns(&ns_a, &["-6", "neigh", "flush", "dev", "eth0"]);
        }
        seen.clear();
        send_from(&netns_a, from.into(), host);
        assert!(
            seen.seen(IpAddr::V6(from)),
            "a's datagram did not reach the host after {k} joined"
        );
    }
    let mac = std::fs::read_to_string(format!("/sys/class/net/{bridge}/address")).unwrap();
    assert_eq!(mac.trim(), aloft_runtime::net::bridge_mac(&bridge));
    for k in ["a", "b", "c"] {
        net.release(&id(k)).unwrap();
    }
    net.remove().unwrap();
}

/// Two clouds on one bridge would hand out the same addresses (every cloud numbers its host and
/// first org 1, and leases IPv4 from the same subnet), and one's proxy would then answer with
/// the other's machines. The bridge carries one cloud's machines: another cloud is refused,
/// naming the first one's data dir, whether it opens the network after the first one's machine
/// joined or had opened it before (then at its machine's attach); once the first cloud's
/// machines are gone, the bridge is the next cloud's.
#[test]
fn a_bridge_carries_one_clouds_machines() {
    skip_unless!(TOOLS);
    let tmp = tempfile::tempdir().unwrap();
    let opts = network();
    let first_dir = tmp.path().join("first/runtime");
    let first = HostNetwork::new(&first_dir, opts.clone()).unwrap();
    // Opened while the bridge is empty: it takes it, until the first cloud's machine joins.
    let second = HostNetwork::new(&tmp.path().join("second/runtime"), opts.clone()).unwrap();
    let org = 30_000 + std::process::id() % 10_000;
    let address = machine_address(org, 1, 1);
    let (a, b) = (
        format!("cloud-a{}", std::process::id()),
        format!("cloud-b{}", std::process::id()),
    );
    first.attach_netns(&a, address).unwrap();

    let data_dir = std::fs::canonicalize(tmp.path().join("first")).unwrap();
    let named = |err: String| {
        assert!(err.contains(&opts.bridge), "{err}");
        assert!(
            err.contains(&format!("aloft dev up --data-dir {}", data_dir.display())),
            "{err}"
        );
        assert!(err.contains("aloft machine destroy --force"), "{err}");
    };
    named(second.attach_netns(&b, address).unwrap_err().to_string());
    // A refused cloud changes nothing of the bridge (here: no gateway of its own subnet).
    let third_opts = aloft_runtime::net::NetworkOptions {
        subnet_v4: (std::net::Ipv4Addr::new(172, 23, 254, 0), 24),
        ..opts.clone()
    };
    let third = HostNetwork::new(&tmp.path().join("third/runtime"), third_opts);
    named(third.err().expect("a third cloud was let in").to_string());
    let out = Command::new("ip")
        .args(["-4", "addr", "show", "dev", &opts.bridge])
        .output()
        .unwrap();
    let addrs = String::from_utf8_lossy(&out.stdout);
    assert!(!addrs.contains("172.23.254.1"), "{addrs}");
    // The first cloud keeps its bridge: its machines still attach (a restart), and a new
    // `HostNetwork` of its own (the next `dev up`) opens.
    first.attach_netns(&a, address).unwrap();
    drop(HostNetwork::new(&first_dir, opts.clone()).unwrap());

    first.release(&a).unwrap();
    second.attach_netns(&b, address).unwrap();
    named_other(&first_dir, &opts);
    second.release(&b).unwrap();
    second.remove().unwrap();
}

/// Once the second cloud's machine is on the bridge, the first is the one refused.
fn named_other(first_dir: &std::path::Path, opts: &aloft_runtime::net::NetworkOptions) {
    let err = HostNetwork::new(first_dir, opts.clone())
        .err()
        .expect("the first cloud was let back in")
        .to_string();
    assert!(err.contains("second"), "{err}");
}

/// What machines reach on their host: internal DNS, and the answers of the connections the host
/// opens to them (the proxy's, health checks'); not a TCP port the host listens on, on any of
/// its addresses (IPv4 gateway, the bridge's 6PN address, internal DNS's address on another
/// port, the host's own mesh address): not the agent, the proxy's listeners, gossip, the
/// control plane, the registry. From inside a real gVisor machine.
#[tokio::test(flavor = "multi_thread")]
async fn a_machine_reaches_internal_dns_but_no_other_host_service() {
    const GVISOR: &[(&str, &str)] = &[("runsc", "runsc"), ("ip", "iproute2"), ("nft", "nftables")];
    skip_unless!(GVISOR);
    use aloft_runtime::Runtime;
    use aloft_runtime::gvisor::{GvisorOptions, GvisorRuntime};
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(tmp.path());
    let rt = GvisorRuntime::new(GvisorOptions {
        state_dir: tmp.path().join("state"),
        init_binary: aloft_runtime::find_init_binary().unwrap(),
        network: network(),
        runsc: None,
    })
    .unwrap();
    let bridge = rt.network().options().bridge.clone();
    let host = HostServices::start(&bridge);
    let spec = spec(&rootfs, "exec httpd -f -p 8080 -h /srv", 256);
    rt.start(&spec).await.unwrap();
    // The host's connections to the machine are answered (as the proxy's are).
    let body = get_eventually(&spec.private_ip, Duration::from_secs(20));
    assert!(body.contains("hello from busybox"), "{body}");

    let m = rt.network().get(spec.id.as_str()).unwrap();
    let targets = [
        m.gateway_v4.to_string(),
        rt.network().bridge_ipv6().to_string(),
        aloft_types::sixpn::INTERNAL_DNS.to_string(),
        host.mesh_address.to_string(),
    ];
    let port = host.port;
    let script: String = targets
        .iter()
        .map(|t| format!("echo to {t}:; nc -w 2 {t} {port} </dev/null; "))
        .chain(["busybox nslookup -type=aaaa probe.internal fdaa::3; true".to_string()])
        .collect();
    let out = rt
        .exec(
            &spec.id,
            &["sh".into(), "-c".into(), script],
            None,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let dns_queries = host.dns_queries();
    rt.destroy(&spec.id).await.unwrap();
    rt.network().remove().unwrap();
    drop(host);
    assert!(
        !out.stdout.contains("host service"),
        "a machine reached a host port: {out:?}"
    );
    assert!(dns_queries > 0, "internal DNS's port was closed: {out:?}");
}

/// A TCP service on every address of the host (it greets whoever connects), the host's mesh
/// address (`[mesh]`'s `fdaa:0:0:<host>::1`, here on the loopback device), and a counter of the DNS
/// queries from the bridge that the host accepts (an `input` chain after the host's own).
struct HostServices {
    port: u16,
    mesh_address: std::net::Ipv6Addr,
    table: String,
}

impl HostServices {
    fn start(bridge: &str) -> Self {
        let listener = std::net::TcpListener::bind("[::]:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                use std::io::Write;
                let _ = (&conn).write_all(b"host service\n");
            }
        });
        let n = std::process::id() % 4096;
        let mesh_address = aloft_types::sixpn::host_address(0xf000 + n);
        ip(&[
            "-6",
            "addr",
            "replace",
            &format!("{mesh_address}/128"),
            "dev",
            "lo",
        ]);
        let table = format!("aldns_{bridge}");
        nft(
            &["-f", "-"],
            &format!(
                "table inet {table} {{
chain input {{
type filter hook input priority 10; policy accept;
iifname \"{bridge}\" ip6 daddr fdaa::3 udp dport 53 counter
}}
}}
"
            ),
        );
        Self {
            port,
            mesh_address,
            table,
        }
    }

    /// How many DNS queries from the bridge the host accepted.
    fn dns_queries(&self) -> u64 {
        let listed = nft(&["list", "table", "inet", &self.table], "");
        listed
            .split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for HostServices {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["-6", "addr", "del", &format!("{}/128", self.mesh_address)])
            .args(["dev", "lo"])
            .status();
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.table])
            .status();
    }
}
