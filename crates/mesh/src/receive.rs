//! Datagrams from the network, in the order WireGuard's cost model wants: the cheap checks first,
//! for anyone who can reach the UDP port, and the expensive work only for what passes them.
//!
//! 1. The device's gate (boringtun's `RateLimiter`, one for the whole mesh): a handshake message
//!    whose mac1 was not made for this host's public key is dropped after one BLAKE2s (random
//!    bytes, or an initiation meant for another key); past `HANDSHAKES_PER_SECOND` (100) good
//!    ones, each must also carry a mac2 made from a cookie bound to its source address, and is
//!    otherwise answered with that cookie and dropped, so a flood from spoofed addresses costs no
//!    X25519 at all.
//! 2. The peer: responses, cookies and data name it by their receiver index (our index for a
//!    peer is its number); an initiation names no index of ours, so its static key is decrypted
//!    (one X25519) and looked up. The peers lock is held only for the lookup.
//! 3. That peer's `Tunn`, under that peer's lock only: the handshake or the decryption, then
//!    [`crate::filter::inbound`].
//!
//! State: [`Counters`] (atomics) of what the gate did, read through `Mesh::handshakes`.

use crate::{Inner, PeerState, filter, transmit};
use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, TunnResult};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What the handshake gate did so far (see [`crate::Mesh::handshakes`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandshakeCounts {
    /// Handshake messages dropped for a bad mac1 (garbage, or not made for this host's key),
    /// before any other work.
    pub bad_mac: u64,
    /// Handshake messages answered with a cookie (under load, without a valid mac2) and dropped.
    pub cookies: u64,
    /// Handshake initiations that passed the gate and went on to X25519.
    pub initiations: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    bad_mac: AtomicU64,
    cookies: AtomicU64,
    initiations: AtomicU64,
}

impl Counters {
    pub(crate) fn read(&self) -> HandshakeCounts {
        HandshakeCounts {
            bad_mac: self.bad_mac.load(Ordering::Relaxed),
            cookies: self.cookies.load(Ordering::Relaxed),
            initiations: self.initiations.load(Ordering::Relaxed),
        }
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
    let packet = match inner.gate.verify_packet(Some(from.ip()), datagram, out) {
        Ok(packet) => packet,
        Err(TunnResult::WriteToNetwork(cookie)) => {
            count(&inner.handshakes.cookies);
            // To the address it came from: only its owner can read the cookie.
            let _ = inner.socket.try_send_to(cookie, from);
            return None;
        }
        Err(TunnResult::Err(WireGuardError::InvalidMac)) => {
            count(&inner.handshakes.bad_mac);
            return None;
        }
        Err(_) => return None,
    };
    let by_host = |index: u32| inner.peers.read().by_host.get(&(index >> 8)).cloned();
    match packet {
        Packet::HandshakeInit(h) => {
            count(&inner.handshakes.initiations);
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
