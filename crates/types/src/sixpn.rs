//! 6PN addressing: `fdaa` (16 bits) | network id (32) | host id (32) | machine (32) | 16 free bits.
//! Each org's network is a /48 (well, `fdaa:` plus its 32-bit network id), each machine a /112 on
//! its host; the machine itself answers on `<prefix>::2` of its /112.

use std::net::Ipv6Addr;

/// Internal DNS, on every host's bridge, in network 0 (which no org gets).
pub const INTERNAL_DNS: Ipv6Addr = Ipv6Addr::new(0xfdaa, 0, 0, 0, 0, 0, 0, 3);

/// The private address of machine number `machine` on host `host` in network `network`.
pub fn machine_address(network: u32, host: u32, machine: u32) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfdaa,
        (network >> 16) as u16,
        network as u16,
        (host >> 16) as u16,
        host as u16,
        (machine >> 16) as u16,
        machine as u16,
        2,
    )
}

/// A host's own address on the mesh between hosts, in network 0 (which no org gets):
/// `fdaa:0:0:<host>::1` (host 0x10002 is `fdaa::1:2:0:0:1`). The control plane is host 0
/// (`fdaa::1`).
pub fn host_address(host: u32) -> Ipv6Addr {
    Ipv6Addr::new(0xfdaa, 0, 0, (host >> 16) as u16, host as u16, 0, 0, 1)
}

/// The host an address is on, if it is a 6PN address (a machine's or a host's own).
pub fn host_of(addr: Ipv6Addr) -> Option<u32> {
    let s = addr.segments();
    (s[0] == 0xfdaa).then(|| (u32::from(s[3]) << 16) | u32::from(s[4]))
}

/// The network id an address belongs to, if it is a 6PN address.
pub fn network_of(addr: Ipv6Addr) -> Option<u32> {
    let s = addr.segments();
    (s[0] == 0xfdaa).then(|| (u32::from(s[1]) << 16) | u32::from(s[2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let a = machine_address(0x0001_0002, 7, 0x0003_0004);
        assert_eq!(a.to_string(), "fdaa:1:2:0:7:3:4:2");
        assert_eq!(network_of(a), Some(0x0001_0002));
        assert_eq!(network_of("fd00::1".parse().unwrap()), None);
        assert_eq!(host_of(a), Some(7));
        assert_eq!(host_address(0x0001_0002).to_string(), "fdaa::1:2:0:0:1");
        assert_eq!(host_of(host_address(9)), Some(9));
        assert_eq!(network_of(host_address(9)), Some(0));
    }
}
