//! Which packets may cross the mesh. Every 6PN address names its network (the org, or 0 for the
//! hosts themselves) and its host, so the rules need no tables: a packet stays inside its network,
//! leaves from the host it names as its source and arrives at the host it names as its destination.
//! Both ends check, so one host's mistake (or a peer's forgery) is not enough to reach another org.

use aloft_types::sixpn::{host_of, network_of};
use std::net::Ipv6Addr;

/// The source and destination of an IPv6 packet, if it is one.
pub fn addresses(packet: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr)> {
    if packet.len() < 40 || packet[0] >> 4 != 6 {
        return None;
    }
    let src: [u8; 16] = packet[8..24].try_into().ok()?;
    let dst: [u8; 16] = packet[24..40].try_into().ok()?;
    Some((src.into(), dst.into()))
}

/// The host a packet this host sends into the mesh goes to, or `None` when it must not go: it must
/// be from this host, to another host, within one network.
pub fn outbound(me: u32, src: Ipv6Addr, dst: Ipv6Addr) -> Option<u32> {
    let to = host_of(dst)?;
    (network_of(src)? == network_of(dst)? && host_of(src)? == me && to != me).then_some(to)
}

/// Whether a packet that came from `peer` (decrypted with its key) may be delivered here: from that
/// host, to this one, within one network.
pub fn inbound(me: u32, peer: u32, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
    outbound(peer, src, dst) == Some(me)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aloft_types::sixpn::{host_address, machine_address};

    #[test]
    fn within_an_org_between_hosts() {
        let (a, b) = (machine_address(7, 1, 3), machine_address(7, 2, 9));
        assert_eq!(outbound(1, a, b), Some(2));
        assert!(inbound(2, 1, a, b));
        assert_eq!(
            outbound(1, host_address(1), host_address(2)),
            Some(2),
            "host to host"
        );
    }

    #[test]
    fn never_into_another_org_or_from_an_address_of_another_host() {
        let a = machine_address(7, 1, 3);
        assert_eq!(outbound(1, a, machine_address(8, 2, 1)), None, "other org");
        assert_eq!(outbound(1, a, host_address(2)), None, "a machine to a host");
        assert_eq!(
            outbound(1, machine_address(7, 3, 1), machine_address(7, 2, 1)),
            None,
            "not from here"
        );
        assert_eq!(outbound(1, a, machine_address(7, 1, 4)), None, "local");
        assert_eq!(outbound(1, a, "fd00::1".parse().unwrap()), None);
        // A peer cannot speak for a third host's machines, nor deliver elsewhere.
        assert!(!inbound(
            2,
            1,
            machine_address(7, 3, 1),
            machine_address(7, 2, 1)
        ));
        assert!(!inbound(
            2,
            1,
            machine_address(7, 1, 1),
            machine_address(7, 4, 1)
        ));
        assert!(!inbound(
            2,
            1,
            machine_address(7, 1, 1),
            machine_address(8, 2, 1)
        ));
    }

    #[test]
    fn packets_are_read_as_ipv6_only() {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[8..24].copy_from_slice(&machine_address(7, 1, 3).octets());
        p[24..40].copy_from_slice(&host_address(2).octets());
        assert_eq!(
            addresses(&p),
            Some((machine_address(7, 1, 3), host_address(2)))
        );
        p[0] = 0x45;
        assert_eq!(addresses(&p), None);
        assert_eq!(addresses(&[0x60; 20]), None);
    }
}
