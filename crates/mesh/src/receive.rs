//! Datagrams from the network, in the order WireGuard's cost model wants: the cheap checks first,
//! for anyone who can reach the UDP port, and the expensive work only for what passes them.
//!
//! 1. The device's [`Gate`] (boringtun's `RateLimiter`, one for the whole mesh): a handshake
//!    message whose mac1 was not made for this host's public key is dropped after one BLAKE2s
//!    (random bytes, or an initiation meant for another key); past `handshakes_per_second` good
//!    ones in a second (under load; [`HANDSHAKES_PER_SECOND`] by default), each must also carry a mac2 made from a cookie bound to its
//!    source address, and is otherwise answered with that cookie and dropped, so a flood from
//!    spoofed addresses costs no X25519 at all. Under load, a source that proved its address
//!    (an IPv4 address, an IPv6 /64) may still send only [`PER_SOURCE_PER_SECOND`] handshake
//!    messages a second (bursts of [`PER_SOURCE_BURST`]), as in the kernel's WireGuard: knowing
//!    the host's public key and owning an address is not enough to make it do X25519 at will.
//! 2. The peer: responses, cookies and data name it by their receiver index (our index for a
//!    peer is its number); an initiation names no index of ours, so its static key is decrypted
//!    (one X25519) and looked up. The peers lock is held only for the lookup.
//! 3. That peer's `Tunn`, under that peer's lock only: the handshake or the decryption, then
//!    [`crate::filter::inbound`].
//!
//! State: the [`Gate`]: boringtun's limiter, this second's count of good handshake messages (kept
//! in step with the limiter's, which it does not show; atomics, and a `parking_lot::Mutex` for the
//! second's start), the per-source budgets (governor's keyed limiter) and [`Counters`] of what it
//! did, read through `Mesh::handshakes`.

use crate::{Inner, PeerState, filter, transmit};
use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, TunnResult};
use boringtun::x25519::PublicKey;
use governor::{DefaultKeyedRateLimiter, Quota};
use parking_lot::Mutex;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Handshake messages (with a good mac1) the mesh takes in a second before it answers with
/// cookies and wants each initiator to prove its address (mac2): boringtun's device uses the same.
pub const HANDSHAKES_PER_SECOND: u64 = 100;
/// Under load, what one source may send (WireGuard's kernel module: 20 a second, bursts of 5).
pub(crate) const PER_SOURCE_PER_SECOND: u32 = 20;
pub(crate) const PER_SOURCE_BURST: u32 = 5;

/// What the handshake gate did so far (see [`crate::Mesh::handshakes`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandshakeCounts {
    /// Handshake messages dropped for a bad mac1 (garbage, or not made for this host's key),
    /// before any other work.
    pub bad_mac: u64,
    /// Handshake messages answered with a cookie (under load, without a valid mac2) and dropped.
    pub cookies: u64,
    /// Handshake messages dropped under load because their (proven) source was over its budget.
    pub over_budget: u64,
    /// Handshake initiations that passed the gate and went on to X25519.
    pub initiations: u64,
}

#[derive(Default)]
struct Counters {
    bad_mac: AtomicU64,
    cookies: AtomicU64,
    over_budget: AtomicU64,
    initiations: AtomicU64,
}

/// The checks every datagram meets before anything costly is done with it.
pub(crate) struct Gate {
    limiter: RateLimiter,
    /// What `limiter` takes in a second before it wants cookies.
    limit: u64,
    /// Good handshake messages this second, counted as `limiter` counts them (one task reads the
    /// socket, so in the same order): past `limit`, `limiter` checked mac2.
    this_second: AtomicU64,
    second_started: Mutex<Instant>,
    per_source: DefaultKeyedRateLimiter<IpAddr>,
    counts: Counters,
}

impl Gate {
    pub(crate) fn new(public: &PublicKey, limit: u64) -> Self {
        let rate = NonZeroU32::new(PER_SOURCE_PER_SECOND).expect("not zero");
        let burst = NonZeroU32::new(PER_SOURCE_BURST).expect("not zero");
        Self {
            limiter: RateLimiter::new(public, limit),
            limit,
            this_second: AtomicU64::new(0),
            second_started: Mutex::new(Instant::now()),
            per_source: DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            counts: Counters::default(),
        }
    }

    /// Called often: once a second has passed, a new one starts (for our count and then the
    /// limiter's, whose own second started before ours, so it always follows), and sources back
    /// to a full budget are forgotten (the table stays as small as the sources of one second).
    pub(crate) fn tick(&self) {
        let mut started = self.second_started.lock();
        if started.elapsed() >= Duration::from_secs(1) {
            // Ours first: a packet between the two is then taken as not under load (no budget
            // applied), never as under load without its mac2 checked.
            self.this_second.store(0, Ordering::SeqCst);
            self.limiter.reset_count();
            self.per_source.retain_recent();
            self.per_source.shrink_to_fit();
            *started = Instant::now();
        }
    }

    pub(crate) fn counts(&self) -> HandshakeCounts {
        let c = &self.counts;
        HandshakeCounts {
            bad_mac: c.bad_mac.load(Ordering::Relaxed),
            cookies: c.cookies.load(Ordering::Relaxed),
            over_budget: c.over_budget.load(Ordering::Relaxed),
            initiations: c.initiations.load(Ordering::Relaxed),
        }
    }

    /// The packet in `datagram` if it may go on: cheap checks only (see the module's doc). A
    /// cookie reply, if one is due, is sent to `from`.
    fn check<'a>(
        &self,
        socket: &tokio::net::UdpSocket,
        datagram: &'a [u8],
        from: SocketAddr,
        out: &mut [u8],
    ) -> Option<Packet<'a>> {
        let packet = match self.limiter.verify_packet(Some(from.ip()), datagram, out) {
            Ok(packet) => packet,
            Err(TunnResult::WriteToNetwork(cookie)) => {
                self.this_second.fetch_add(1, Ordering::SeqCst);
                count(&self.counts.cookies);
                // To the address it came from: only its owner can read the cookie.
                let _ = socket.try_send_to(cookie, from);
                return None;
            }
            Err(TunnResult::Err(WireGuardError::InvalidMac)) => {
                count(&self.counts.bad_mac);
                return None;
            }
            Err(_) => return None,
        };
        if let Packet::HandshakeInit(_) | Packet::HandshakeResponse(_) = packet {
            let under_load = self.this_second.fetch_add(1, Ordering::SeqCst) >= self.limit;
            // Under load its mac2 proved the address, so the address may be held to a budget
            // (otherwise a forged source could spend a real peer's).
            if under_load && self.per_source.check_key(&source(from.ip())).is_err() {
                count(&self.counts.over_budget);
                return None;
            }
        }
        if let Packet::HandshakeInit(_) = packet {
            count(&self.counts.initiations);
        }
        Some(packet)
    }
}

/// What a budget is kept for: an IPv4 address (also as a dual-stack socket shows it,
/// `::ffff:a.b.c.d`), or an IPv6 /64 (what one host usually has).
fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Datagrams from other hosts: handshakes answered, packets decrypted and, if [`filter::inbound`]
/// allows them, handed to this host's network stack.
pub(crate) async fn from_network(inner: Arc<Inner>) {
    let mut buf = vec![0u8; crate::BUF];
    let mut out = vec![0u8; crate::BUF];
    loop {
        let (n, from) = match inner.socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("receiving on the mesh socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Some(peer) = route(&inner, &buf[..n], from, &mut out) {
            deliver(&inner, &peer, &buf[..n], from, &mut out);
        }
    }
}

/// The member a datagram is for, once it passed the gate; `None` when it was refused (and maybe
/// answered with a cookie), is not WireGuard, or names no member.
fn route(
    inner: &Inner,
    datagram: &[u8],
    from: SocketAddr,
    out: &mut [u8],
) -> Option<Arc<PeerState>> {
    let packet = inner.gate.check(&inner.socket, datagram, from, out)?;
    let by_host = |index: u32| inner.peers.read().by_host.get(&(index >> 8)).cloned();
    match packet {
        Packet::HandshakeInit(h) => {
            let half = parse_handshake_anon(&inner.secret, &inner.public, &h).ok()?;
            inner
                .peers
                .read()
                .by_key
                .get(&half.peer_static_public)
                .cloned()
        }
        Packet::HandshakeResponse(p) => by_host(p.receiver_idx),
        Packet::PacketCookieReply(p) => by_host(p.receiver_idx),
        Packet::PacketData(p) => by_host(p.receiver_idx),
    }
}

/// Hands a datagram that passed [`route`] to its peer's `Tunn` (under that peer's lock only).
fn deliver(
    inner: &Arc<Inner>,
    peer: &PeerState,
    datagram: &[u8],
    from: SocketAddr,
    out: &mut [u8],
) {
    let host = peer.host;
    let mut p = peer.link.lock();
    let mut input = datagram;
    loop {
        match p.tunn.decapsulate(Some(from.ip()), input, out) {
            TunnResult::WriteToNetwork(d) => {
                transmit(inner, p.endpoint, p.delay, d);
                // Then again with nothing: packets queued during the handshake.
                input = &[];
            }
            TunnResult::WriteToTunnelV6(packet, _) => {
                match filter::addresses(packet) {
                    Some((src, dst)) if filter::inbound(inner.me, host, src, dst) => {
                        inner.tun.get_ref().write6(packet);
                    }
                    _ => {
                        inner.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                break;
            }
            TunnResult::WriteToTunnelV4(..) => {
                inner.dropped.fetch_add(1, Ordering::Relaxed);
                break;
            }
            TunnResult::Done => break,
            TunnResult::Err(e) => {
                tracing::debug!(host, %from, "decapsulating: {e:?}");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_per_ipv4_address_and_per_ipv6_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            source(ip("2001:db8:1:2::1")),
            source(ip("2001:db8:1:2:ff::9"))
        );
        assert_ne!(source(ip("2001:db8:1:2::1")), source(ip("2001:db8:1:3::1")));
        assert_eq!(source(ip("2001:db8:1:2::1")), ip("2001:db8:1:2::"));
        assert_ne!(source(ip("10.0.0.1")), source(ip("10.0.0.2")));
        assert_ne!(source(ip("::ffff:10.0.0.1")), source(ip("::ffff:10.0.0.2")));
        assert_eq!(source(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }
}
