//! The encrypted network between hosts. Each host (and the control plane, as host 0) runs one
//! [`Mesh`]: a TUN device holding the host's own address (`fdaa:0:0:<host>::1`) and the route to
//! every other host's 6PN addresses, and a UDP socket carrying WireGuard (boringtun's Noise
//! implementation) to the other hosts. There are no allowed-IPs tables: a 6PN address names its
//! host, so a packet goes to the peer its destination names, and [`filter`] keeps it inside its
//! network (an org's, or network 0 for the hosts themselves) at both ends.
//!
//! Keys are made per host ([`Key::load_or_create`]); the control plane hands out who the peers are
//! (public key, UDP endpoint, region). For development clusters a peer can carry a delay, added to
//! every datagram sent to it: emulated distance between regions where the kernel has no netem.
//!
//! State and locks: the peers (`Inner::peers`, a `parking_lot::RwLock` held only to find a peer and
//! clone its `Arc`, or by [`Mesh::set_peers`] to replace the table) and, per peer, its session
//! (`PeerState::link`, a `parking_lot::Mutex` held while its `Tunn` encrypts, decrypts or runs its
//! timers). The peers lock is never taken while a peer's lock is held, and no Noise work (X25519,
//! ChaCha20) is done under the peers lock. What arrives from the network passes [`receive`]'s
//! cheap checks first.

pub mod filter;
mod receive;

use aloft_types::sixpn::host_address;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use boringtun::device::tun::TunSocket;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::io::Write;
use std::net::{Ipv6Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

pub use receive::{HANDSHAKES_PER_SECOND, HandshakeCounts};

/// Room for WireGuard's 80 bytes (IPv6 and UDP headers, its own 32) in a 1500-byte path.
pub const MTU: u32 = 1420;
const TIMER_TICK: Duration = Duration::from_millis(250);
const BUF: usize = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("cannot create the TUN device `{0}` (is /dev/net/tun there, and are we root?): {1}")]
    Tun(String, String),
    #[error("`{cmd}` failed: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error("`{0}` is not a WireGuard key (32 bytes, base64)")]
    BadKey(String),
}

/// A host's private key (x25519), kept in a file of its own.
#[derive(Clone)]
pub struct Key(StaticSecret);

impl Key {
    /// The key in `path`, made (and written, mode 0600) if the file does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<Self, MeshError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self(StaticSecret::from(decode(text.trim())?))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                getrandom::fill(&mut bytes)
                    .map_err(|e| MeshError::Io("drawing a key".into(), e.into()))?;
                let io = |e| MeshError::Io(format!("writing {}", path.display()), e);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io)?;
                file.write_all(B64.encode(bytes).as_bytes()).map_err(io)?;
                Ok(Self(StaticSecret::from(bytes)))
            }
            Err(e) => Err(MeshError::Io(format!("reading {}", path.display()), e)),
        }
    }

    /// The public half, base64 (as `wg` prints it).
    pub fn public(&self) -> String {
        B64.encode(PublicKey::from(&self.0).as_bytes())
    }
}

fn decode(text: &str) -> Result<[u8; 32], MeshError> {
    B64.decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| MeshError::BadKey(text.into()))
}

/// Another member of the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub host: u32,
    /// Base64, as [`Key::public`] gives it.
    pub public_key: String,
    pub endpoint: SocketAddr,
    /// Added to every datagram sent to this peer (emulated distance; zero in production).
    pub delay: Duration,
}

pub struct MeshConfig {
    /// The TUN device's name (at most 15 bytes).
    pub interface: String,
    /// This host's number (0 for the control plane).
    pub host: u32,
    pub key: Key,
    /// The UDP address WireGuard listens on.
    pub listen: SocketAddr,
    /// Destinations routed into the mesh: `fdaa::/16` on hosts (every other host's machines),
    /// `fdaa::/48`'s hosts only on the control plane.
    pub routes: Vec<String>,
    /// Handshake messages taken in a second before initiators must prove their address with a
    /// cookie ([`HANDSHAKES_PER_SECOND`] unless a test wants the load sooner).
    pub handshakes_per_second: u64,
}

/// A running mesh endpoint; dropping it takes the TUN device (and its routes) away.
pub struct Mesh {
    inner: Arc<Inner>,
    local: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

struct Inner {
    me: u32,
    secret: StaticSecret,
    public: PublicKey,
    socket: UdpSocket,
    tun: AsyncFd<TunSocket>,
    peers: RwLock<Peers>,
    /// The whole device's handshake checks (see [`receive`]); [`timers`] starts its seconds.
    gate: receive::Gate,
    /// What every peer's `Tunn` checks again (mac1 only: its limit is never reached), so that the
    /// load is judged once, by `gate`.
    recheck: Arc<RateLimiter>,
    dropped: AtomicU64,
}

/// The members, by host number (the index datagrams carry) and by static key (what a handshake
/// initiation carries).
#[derive(Default)]
struct Peers {
    by_host: HashMap<u32, Arc<PeerState>>,
    by_key: HashMap<[u8; 32], Arc<PeerState>>,
}

struct PeerState {
    host: u32,
    key: PublicKey,
    link: Mutex<Link>,
}

/// A peer's session and where its datagrams go.
struct Link {
    tunn: Tunn,
    endpoint: SocketAddr,
    delay: Duration,
}

impl Mesh {
    pub async fn start(config: MeshConfig) -> Result<Self, MeshError> {
        let name = config.interface.clone();
        let tun = TunSocket::new(&name)
            .and_then(TunSocket::set_non_blocking)
            .map_err(|e| MeshError::Tun(name.clone(), e.to_string()))?;
        #[allow(unsafe_code)]
        // SAFETY: the TunSocket owns its descriptor and is moved into the AsyncFd, which keeps
        // it open until the registration is gone: no other owner can close or reuse it.
        let tun = unsafe { AsyncFd::register(tun) }
            .map_err(|e| MeshError::Tun(name.clone(), e.to_string()))?;
        let address = host_address(config.host);
        let mut script = vec![
            format!("link set dev {name} up mtu {MTU}"),
            format!("-6 addr replace {address}/128 dev {name} nodad"),
        ];
        for r in &config.routes {
            script.push(format!("-6 route replace {r} dev {name}"));
        }
        for line in &script {
            let args: Vec<&str> = line.split(' ').collect();
            run("ip", &args, None)?;
        }
        // The host's own mesh address is for other hosts: not for its machines (whose packets
        // reach it from the bridge) or anything else outside the mesh.
        run(
            "nft",
            &["-f", "-"],
            Some(&format!(
                "table inet aloft_mesh_{name}\n\
                 delete table inet aloft_mesh_{name}\n\
                 table inet aloft_mesh_{name} {{\n\
                   chain input {{\n\
                     type filter hook input priority filter; policy accept;\n\
                     ip6 daddr {address} iifname != {{ \"lo\", \"{name}\" }} drop\n\
                   }}\n\
                 }}\n"
            )),
        )?;
        let socket = UdpSocket::bind(config.listen)
            .await
            .map_err(|e| MeshError::Io(format!("binding {}", config.listen), e))?;
        let local = socket
            .local_addr()
            .map_err(|e| MeshError::Io("reading the mesh socket's address".into(), e))?;
        let public = PublicKey::from(&config.key.0);
        let inner = Arc::new(Inner {
            me: config.host,
            gate: receive::Gate::new(&public, config.handshakes_per_second),
            recheck: Arc::new(RateLimiter::new(&public, u64::MAX)),
            public,
            secret: config.key.0,
            socket,
            tun,
            peers: RwLock::new(Peers::default()),
            dropped: AtomicU64::new(0),
        });
        let tasks = vec![
            tokio::spawn(from_tun(inner.clone())),
            tokio::spawn(receive::from_network(inner.clone())),
            tokio::spawn(timers(inner.clone())),
        ];
        tracing::info!(%address, %local, interface = %name, "mesh up");
        Ok(Self {
            inner,
            local,
            tasks,
        })
    }

    /// This host's address on the mesh.
    pub fn address(&self) -> Ipv6Addr {
        host_address(self.inner.me)
    }

    /// The UDP address WireGuard is bound to.
    pub fn local_endpoint(&self) -> SocketAddr {
        self.local
    }

    /// Packets refused by [`filter`] so far (both directions).
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// What the handshake checks did with what arrived so far.
    pub fn handshakes(&self) -> HandshakeCounts {
        self.inner.gate.counts()
    }

    /// Makes `peers` the mesh's members (this host among them is skipped). Sessions with peers
    /// whose key is unchanged are kept. New sessions are made (an X25519 each) outside the peers
    /// lock, which is taken only to swap the table; on an error the members stay as they were.
    pub fn set_peers(&self, peers: &[Peer]) -> Result<(), MeshError> {
        let wanted = peers
            .iter()
            .filter(|p| p.host != self.inner.me)
            .map(|p| Ok((p, PublicKey::from(decode(&p.public_key)?))))
            .collect::<Result<Vec<_>, MeshError>>()?;
        let mut next = Peers::default();
        let mut current = self.inner.peers.read().by_host.clone();
        for (p, key) in wanted {
            let state = match current.remove(&p.host) {
                Some(s) if s.key == key => {
                    let mut link = s.link.lock();
                    link.endpoint = p.endpoint;
                    link.delay = p.delay;
                    drop(link);
                    s
                }
                _ => Arc::new(PeerState {
                    host: p.host,
                    key,
                    link: Mutex::new(Link {
                        // The peer's number is our index for it: datagrams it sends back name it.
                        tunn: Tunn::new(
                            self.inner.secret.clone(),
                            key,
                            None,
                            None,
                            p.host,
                            Some(self.inner.recheck.clone()),
                        ),
                        endpoint: p.endpoint,
                        delay: p.delay,
                    }),
                }),
            };
            next.by_key.insert(*key.as_bytes(), state.clone());
            next.by_host.insert(p.host, state);
        }
        *self.inner.peers.write() = next;
        Ok(())
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Sends a datagram to a peer, after its delay.
fn transmit(inner: &Arc<Inner>, to: SocketAddr, delay: Duration, datagram: &[u8]) {
    if delay.is_zero() {
        let _ = inner.socket.try_send_to(datagram, to);
        return;
    }
    let (inner, datagram) = (inner.clone(), datagram.to_vec());
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let _ = inner.socket.send_to(&datagram, to).await;
    });
}

/// Packets this host routed into the mesh: encrypted for the host their destination names.
async fn from_tun(inner: Arc<Inner>) {
    let mut buf = vec![0u8; BUF];
    let mut out = vec![0u8; BUF + 32];
    loop {
        let n = match inner.tun.readable().await {
            Ok(mut guard) => match guard.try_io(|t| {
                // The kind must survive (WouldBlock clears the readiness).
                t.get_ref()
                    .read(&mut buf)
                    .map(|p| p.len())
                    .map_err(|e| match e {
                        boringtun::device::Error::IfaceRead(e) => e,
                        e => std::io::Error::other(e.to_string()),
                    })
            }) {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    tracing::warn!("reading the mesh device: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(_would_block) => continue,
            },
            Err(e) => {
                tracing::error!("the mesh device failed: {e}");
                return;
            }
        };
        let packet = &buf[..n];
        let Some(host) =
            filter::addresses(packet).and_then(|(src, dst)| filter::outbound(inner.me, src, dst))
        else {
            inner.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let Some(peer) = inner.peers.read().by_host.get(&host).cloned() else {
            tracing::debug!(host, "no mesh peer for this host");
            continue;
        };
        let mut p = peer.link.lock();
        match p.tunn.encapsulate(packet, &mut out) {
            TunnResult::WriteToNetwork(d) => transmit(&inner, p.endpoint, p.delay, d),
            TunnResult::Err(e) => tracing::debug!(host, "encapsulating: {e:?}"),
            _ => {}
        }
    }
}

/// Handshakes, rekeying and keepalives, as WireGuard's timers say.
async fn timers(inner: Arc<Inner>) {
    let mut out = vec![0u8; BUF];
    loop {
        tokio::time::sleep(TIMER_TICK).await;
        inner.gate.tick();
        let peers: Vec<Arc<PeerState>> = inner.peers.read().by_host.values().cloned().collect();
        for peer in peers {
            let mut p = peer.link.lock();
            if let TunnResult::WriteToNetwork(d) = p.tunn.update_timers(&mut out) {
                transmit(&inner, p.endpoint, p.delay, d);
            }
        }
    }
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), MeshError> {
    use std::process::{Command, Stdio};
    let cmd = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| MeshError::Io(format!("running {cmd}"), e))?;
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(text.as_bytes())
            .map_err(|e| MeshError::Io(format!("writing to {cmd}"), e))?;
    }
    drop(child.stdin.take());
    let out = child
        .wait_with_output()
        .map_err(|e| MeshError::Io(format!("running {cmd}"), e))?;
    if !out.status.success() {
        return Err(MeshError::Command {
            cmd,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}
