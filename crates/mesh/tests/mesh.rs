//! Two hosts, each in a network namespace of its own, joined by a veth pair; their meshes talk
//! through a UDP relay that records every datagram (what an observer on the wire would see).

use aloft_mesh::{Key, Mesh, MeshConfig, Peer};
use aloft_types::sixpn::{host_address, machine_address};
use parking_lot::Mutex;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

fn root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

macro_rules! skip_unless_root {
    () => {
        if !root() || !std::path::Path::new("/dev/net/tun").exists() {
            eprintln!("\n*** SKIPPED: the mesh needs root and /dev/net/tun ***\n");
            return;
        }
    };
}

fn sh(cmd: &str) {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `f` on a thread in the network namespace `ns` (sockets it makes stay there).
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(path).unwrap();
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&file),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// A host: a namespace, a runtime whose threads live in it (kept for the mesh's tasks), and the
/// mesh.
struct Host {
    ns: String,
    _rt: tokio::runtime::Runtime,
    mesh: Arc<Mesh>,
    key: Key,
    underlay: IpAddr,
}

impl Host {
    fn peer(&self, delay: Duration) -> Peer {
        Peer {
            host: host_number(&self.mesh),
            public_key: self.key.public(),
            endpoint: self.mesh.local_endpoint(),
            delay,
        }
    }

    /// A UDP socket in this host's namespace.
    fn socket(&self, addr: Ipv6Addr) -> UdpSocket {
        let s = in_netns(&self.ns, move || UdpSocket::bind((addr, 0)).unwrap());
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    }
}

fn host_number(mesh: &Mesh) -> u32 {
    aloft_types::sixpn::host_of(mesh.address()).unwrap()
}

/// Two namespaces joined by a veth pair (10.98.<k>.1 and .2), removed on drop.
struct Pair {
    names: [String; 2],
    k: u32,
}

impl Pair {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let k = (std::process::id() % 100) * 2 + N.fetch_add(1, Ordering::SeqCst) % 2;
        let names = [format!("almesh-a{k}"), format!("almesh-b{k}")];
        for n in &names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
            sh(&format!("ip netns add {n} && ip -n {n} link set lo up"));
        }
        sh(&format!(
            "ip link add almv{k} netns {a} type veth peer name almv{k} netns {b} && \
             ip -n {a} addr add 10.98.{k}.1/24 dev almv{k} && ip -n {a} link set almv{k} up && \
             ip -n {b} addr add 10.98.{k}.2/24 dev almv{k} && ip -n {b} link set almv{k} up",
            a = names[0],
            b = names[1]
        ));
        Self { names, k }
    }

    fn host(&self, i: usize, number: u32, dir: &std::path::Path) -> Host {
        let ns = self.names[i].clone();
        let k = self.k;
        let underlay: IpAddr = format!("10.98.{k}.{}", i + 1).parse().unwrap();
        let rt = in_netns(&ns, || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap()
        });
        let key = Key::load_or_create(&dir.join(format!("host{number}.key"))).unwrap();
        let config = MeshConfig {
            interface: "alwg0".into(),
            host: number,
            key: key.clone(),
            listen: SocketAddr::new(underlay, 0),
            routes: vec!["fdaa::/16".into()],
        };
        let mesh = Arc::new(
            rt.block_on(async { tokio::spawn(Mesh::start(config)).await.unwrap() })
                .unwrap(),
        );
        Host {
            ns,
            _rt: rt,
            mesh,
            key,
            underlay,
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// A UDP relay between two meshes that keeps a copy of every datagram. Returns the address each
/// side should use for the other, and the copies.
fn relay(a: &Host, b: &Host) -> (SocketAddr, SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (a_end, b_end) = (a.mesh.local_endpoint(), b.mesh.local_endpoint());
    let ua = a.underlay;
    // One socket facing each side, both in a's namespace (b reaches it over the veth).
    let to_b = in_netns(&a.ns, move || UdpSocket::bind((ua, 0)).unwrap());
    let to_a = in_netns(&a.ns, move || UdpSocket::bind((ua, 0)).unwrap());
    let (for_a, for_b) = (to_b.local_addr().unwrap(), to_a.local_addr().unwrap());
    for (from, to, dest) in [
        (to_b.try_clone().unwrap(), to_b, b_end),
        (to_a.try_clone().unwrap(), to_a, a_end),
    ] {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok((n, _)) = from.recv_from(&mut buf) {
                seen.lock().push(buf[..n].to_vec());
                let _ = to.send_to(&buf[..n], dest);
            }
        });
    }
    // a sends to `for_a` (relayed to b); b sends to `for_b` (relayed to a).
    (for_a, for_b, seen)
}

fn receive(socket: &UdpSocket) -> Option<(Vec<u8>, IpAddr)> {
    let mut buf = [0u8; 2048];
    socket
        .recv_from(&mut buf)
        .ok()
        .map(|(n, from)| (buf[..n].to_vec(), from.ip()))
}

/// Sends `data` from `from` to `to` until it arrives (the first packets wait for the handshake,
/// 10 s at most, else `what` is the failure); what arrived and from where.
fn send_until_received(
    from: &UdpSocket,
    to: &UdpSocket,
    data: &[u8],
    what: &str,
) -> (Vec<u8>, IpAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        from.send_to(data, to.local_addr().unwrap()).unwrap();
        if let Some(got) = receive(to) {
            return got;
        }
        assert!(Instant::now() < deadline, "{what}");
    }
}

fn add_address(ns: &str, addr: Ipv6Addr) {
    sh(&format!("ip -n {ns} -6 addr add {addr}/128 dev lo nodad"));
}

#[test]
fn hosts_reach_each_other_encrypted_and_orgs_stay_apart() {
    skip_unless_root!();
    let tmp = tempfile::tempdir().unwrap();
    let pair = Pair::new();
    let (a, b) = (pair.host(0, 1, tmp.path()), pair.host(1, 2, tmp.path()));
    let (a_sends_to, b_sends_to, seen) = relay(&a, &b);
    a.mesh
        .set_peers(&[Peer {
            endpoint: a_sends_to,
            ..b.peer(Duration::ZERO)
        }])
        .unwrap();
    b.mesh
        .set_peers(&[Peer {
            endpoint: b_sends_to,
            ..a.peer(Duration::ZERO)
        }])
        .unwrap();

    // Host to host, on their mesh addresses.
    let at_b = b.socket(host_address(2));
    let from_a = a.socket(host_address(1));
    let secret = b"a secret the wire must not show";
    let got = send_until_received(&from_a, &at_b, secret, "nothing crossed the mesh");
    assert_eq!(got, (secret.to_vec(), IpAddr::V6(host_address(1))));
    let wire = seen.lock().clone();
    assert!(!wire.is_empty(), "nothing went through the relay");
    assert!(
        !wire
            .iter()
            .any(|d| d.windows(secret.len()).any(|w| w == secret)),
        "plaintext on the wire"
    );

    // Machines of one org on either host reach each other; another org's address is not reached.
    let (m1, m2, other) = (
        machine_address(7, 1, 1),
        machine_address(7, 2, 1),
        machine_address(8, 2, 1),
    );
    add_address(&a.ns, m1);
    add_address(&b.ns, m2);
    add_address(&b.ns, other);
    let (src, same_org, other_org) = (a.socket(m1), b.socket(m2), b.socket(other));
    src.send_to(b"same org", same_org.local_addr().unwrap())
        .unwrap();
    assert_eq!(
        receive(&same_org),
        Some((b"same org".to_vec(), IpAddr::V6(m1)))
    );
    let dropped = a.mesh.dropped();
    src.send_to(b"other org", other_org.local_addr().unwrap())
        .unwrap();
    assert_eq!(
        receive(&other_org),
        None,
        "another org's address was reached"
    );
    assert!(
        a.mesh.dropped() > dropped,
        "the sending host did not refuse it"
    );
    // Nor can a machine reach another host's own address (its agent, worker, gossip).
    src.send_to(b"to a host", at_b.local_addr().unwrap())
        .unwrap();
    assert_eq!(receive(&at_b), None);
    drop(pair);
}

#[test]
fn a_host_that_is_not_a_member_is_ignored_and_delay_is_added() {
    skip_unless_root!();
    let tmp = tempfile::tempdir().unwrap();
    let pair = Pair::new();
    let (a, b) = (pair.host(0, 3, tmp.path()), pair.host(1, 4, tmp.path()));
    // a knows b, b does not know a: nothing a sends gets in.
    a.mesh.set_peers(&[b.peer(Duration::ZERO)]).unwrap();
    let at_b = b.socket(host_address(4));
    let from_a = a.socket(host_address(3));
    for _ in 0..3 {
        from_a
            .send_to(b"let me in", at_b.local_addr().unwrap())
            .unwrap();
    }
    assert_eq!(receive(&at_b), None);

    // Once members, with 50 ms added each way: a round trip takes at least 100 ms.
    a.mesh
        .set_peers(&[b.peer(Duration::from_millis(50))])
        .unwrap();
    b.mesh
        .set_peers(&[a.peer(Duration::from_millis(50))])
        .unwrap();
    send_until_received(&from_a, &at_b, b"hi", "no handshake");
    let b_addr = at_b.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = at_b.recv_from(&mut buf) {
            let _ = at_b.send_to(&buf[..n], from);
        }
    });
    let mut rtts = Vec::new();
    for i in 0..5u8 {
        let t = Instant::now();
        from_a.send_to(&[b'p', i], b_addr).unwrap();
        // Echoes of the greetings sent while the handshake was under way come first.
        while receive(&from_a).expect("no echo").0 != [b'p', i] {}
        rtts.push(t.elapsed());
    }
    rtts.sort();
    assert!(rtts[2] >= Duration::from_millis(100), "{rtts:?}");
    drop(pair);
}
