//! A small rtnetlink client: what a microVM's init needs to bring its interface up (links up,
//! MTU, addresses, routes), as raw `NETLINK_ROUTE` messages over a rustix socket. Each request
//! asks for an acknowledgement, so every failure comes back as the kernel's errno.
//!
//! Message layouts are those of `<linux/netlink.h>`, `<linux/rtnetlink.h>`, `<linux/if_link.h>`
//! and `<linux/if_addr.h>`, in host byte order.

use aloft_types::init::NetworkConfig;
use rustix::fd::OwnedFd;
use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, netlink};
use std::net::IpAddr;
use std::time::{Duration, Instant};

const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

const IFF_UP: u32 = 0x1;
const IFLA_MTU: u16 = 4;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_F_NODAD: u8 = 0x02;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;

/// An IP network: address and prefix length (`172.19.0.5/16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not an address with a prefix length (like 10.0.0.2/24)");
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix })
    }
}

fn family(addr: &IpAddr) -> u8 {
    if addr.is_ipv4() { AF_INET } else { AF_INET6 }
}

fn octets(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Appends one `rtattr` (length, type, payload padded to 4 bytes).
fn attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    buf.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// `RTM_NEWLINK` body: set the link `index` up (or down), and its MTU if given.
fn link_body(index: u32, up: bool, mtu: Option<u32>) -> Vec<u8> {
    // struct ifinfomsg { u8 family; u8 pad; u16 type; i32 index; u32 flags; u32 change; }
    let mut b = vec![AF_UNSPEC, 0, 0, 0];
    b.extend_from_slice(&index.to_ne_bytes());
    b.extend_from_slice(&(if up { IFF_UP } else { 0 }).to_ne_bytes());
    b.extend_from_slice(&IFF_UP.to_ne_bytes());
    if let Some(mtu) = mtu {
        attr(&mut b, IFLA_MTU, &mtu.to_ne_bytes());
    }
    b
}

/// `RTM_NEWADDR` body: `cidr` on link `index`. IPv6 addresses skip duplicate address detection
/// (the address is the machine's alone; DAD would hold it back for a second or more).
fn addr_body(index: u32, cidr: Cidr) -> Vec<u8> {
    // struct ifaddrmsg { u8 family; u8 prefixlen; u8 flags; u8 scope; u32 index; }
    let flags = if cidr.addr.is_ipv6() { IFA_F_NODAD } else { 0 };
    let mut b = vec![family(&cidr.addr), cidr.prefix, flags, RT_SCOPE_UNIVERSE];
    b.extend_from_slice(&index.to_ne_bytes());
    let bytes = octets(&cidr.addr);
    attr(&mut b, IFA_LOCAL, &bytes);
    attr(&mut b, IFA_ADDRESS, &bytes);
    b
}

/// `RTM_NEWROUTE` body: `destination` (`None` = default route) through link `index`, via
/// `gateway` or on-link.
fn route_body(index: u32, destination: Option<Cidr>, gateway: Option<IpAddr>) -> Vec<u8> {
    let fam = destination
        .map(|d| family(&d.addr))
        .or(gateway.as_ref().map(family))
        .unwrap_or(AF_INET);
    // struct rtmsg { u8 family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags; }
    let scope = if gateway.is_none() && fam == AF_INET {
        RT_SCOPE_LINK
    } else {
        RT_SCOPE_UNIVERSE
    };
    let mut b = vec![
        fam,
        destination.map_or(0, |d| d.prefix),
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_BOOT,
        scope,
        RTN_UNICAST,
    ];
    b.extend_from_slice(&0u32.to_ne_bytes());
    if let Some(d) = destination {
        attr(&mut b, RTA_DST, &octets(&d.addr));
    }
    if let Some(gw) = gateway {
        attr(&mut b, RTA_GATEWAY, &octets(&gw));
    }
    attr(&mut b, RTA_OIF, &index.to_ne_bytes());
    b
}

/// A whole message: `nlmsghdr` (length, type, flags, sequence, port 0 = the kernel) + body.
fn message(kind: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(16 + body.len());
    m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(body);
    m
}

/// The errno of the acknowledgement for `seq` in a received datagram, if it holds one
/// (`Some(0)` = success).
fn ack_of(datagram: &[u8], seq: u32) -> Option<i32> {
    let mut rest = datagram;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes(rest[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(rest[4..6].try_into().ok()?);
        let msg_seq = u32::from_ne_bytes(rest[8..12].try_into().ok()?);
        if len < 16 || len > rest.len() {
            return None;
        }
        if kind == NLMSG_ERROR && msg_seq == seq && len >= 20 {
            return Some(i32::from_ne_bytes(rest[16..20].try_into().ok()?));
        }
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    None
}

/// A `NETLINK_ROUTE` socket in the calling thread's network namespace.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    pub fn open() -> Result<Netlink, String> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            None, // NETLINK_ROUTE
        )
        .map_err(|e| format!("opening a netlink socket: {e}"))?;
        rustix::net::bind(&fd, &netlink::SocketAddrNetlink::new(0, 0))
            .map_err(|e| format!("binding the netlink socket: {e}"))?;
        Ok(Netlink { fd, seq: 0 })
    }

    /// Sends one request and waits for its acknowledgement.
    fn request(&mut self, kind: u16, flags: u16, body: &[u8]) -> Result<(), Errno> {
        self.seq += 1;
        let msg = message(kind, flags, self.seq, body);
        rustix::net::send(&self.fd, &msg, SendFlags::empty())?;
        let mut buf = vec![0u8; 8192];
        loop {
            let (n, _) = rustix::net::recv(&self.fd, &mut buf[..], RecvFlags::empty())?;
            match ack_of(&buf[..n], self.seq) {
                Some(0) => return Ok(()),
                Some(e) => return Err(Errno::from_raw_os_error(-e)),
                None => continue,
            }
        }
    }

    /// Sets link `index` up or down, and its MTU if given.
    pub fn set_link(&mut self, index: u32, up: bool, mtu: Option<u32>) -> Result<(), Errno> {
        self.request(RTM_NEWLINK, 0, &link_body(index, up, mtu))
    }

    /// Adds `cidr` to link `index` (an address it already has is fine).
    pub fn add_address(&mut self, index: u32, cidr: Cidr) -> Result<(), Errno> {
        match self.request(
            RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_EXCL,
            &addr_body(index, cidr),
        ) {
            Err(Errno::EXIST) => Ok(()),
            r => r,
        }
    }

    /// Adds a route to `destination` (`None` = default) through link `index`, via `gateway` or
    /// on-link.
    pub fn add_route(
        &mut self,
        index: u32,
        destination: Option<Cidr>,
        gateway: Option<IpAddr>,
    ) -> Result<(), Errno> {
        match self.request(
            RTM_NEWROUTE,
            NLM_F_CREATE | NLM_F_EXCL,
            &route_body(index, destination, gateway),
        ) {
            Err(Errno::EXIST) => Ok(()),
            r => r,
        }
    }
}

/// The index of interface `name`, waiting up to `timeout` for it to appear (its driver may still
/// be probing).
fn wait_for_interface(name: &str, timeout: Duration) -> Result<u32, String> {
    let sock = rustix::net::socket(AddressFamily::INET, SocketType::DGRAM, None)
        .map_err(|e| format!("opening a socket: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match rustix::net::netdevice::name_to_index(&sock, name) {
            Ok(i) => return Ok(i),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                return Err(format!(
                    "the network interface {name} did not appear within {}s: {e}",
                    timeout.as_secs()
                ));
            }
        }
    }
}

/// Brings `lo` and `net.interface` up with their addresses and routes (a microVM's `eth0`).
pub fn configure(net: &NetworkConfig) -> Result<(), String> {
    let mut nl = Netlink::open()?;
    let lo = wait_for_interface("lo", Duration::ZERO)?;
    nl.set_link(lo, true, None)
        .map_err(|e| format!("setting lo up: {e}"))?;
    let dev = net.interface.as_str();
    let index = wait_for_interface(dev, Duration::from_secs(10))?;
    nl.set_link(index, true, net.mtu)
        .map_err(|e| format!("setting {dev} up: {e}"))?;
    for a in &net.addresses {
        let cidr: Cidr = a.parse()?;
        nl.add_address(index, cidr)
            .map_err(|e| format!("adding {a} to {dev}: {e}"))?;
    }
    if let Some(gw) = &net.gateway_v4 {
        let addr: IpAddr = gw
            .parse()
            .map_err(|_| format!("gateway `{gw}` is not an IP address"))?;
        nl.add_route(index, None, Some(addr))
            .map_err(|e| format!("adding the default route via {gw}: {e}"))?;
    }
    for r in &net.routes_v6 {
        let dst: Cidr = r.destination.parse()?;
        let gw = match &r.gateway {
            Some(g) => Some(
                g.parse::<IpAddr>()
                    .map_err(|_| format!("gateway `{g}` is not an IP address"))?,
            ),
            None => None,
        };
        nl.add_route(index, Some(dst), gw)
            .map_err(|e| format!("adding the route to {} on {dev}: {e}", r.destination))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aloft_types::init::Route;
    use std::process::Command;

    #[test]
    fn cidrs_parse() {
        let c: Cidr = "172.19.0.5/16".parse().unwrap();
        assert_eq!((c.addr.to_string().as_str(), c.prefix), ("172.19.0.5", 16));
        let c: Cidr = "fdaa:0:1::2/112".parse().unwrap();
        assert_eq!(c.prefix, 112);
        for bad in ["10.0.0.1", "10.0.0.1/33", "x/8", "::1/129", "10.0.0.1/-1"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_have_the_kernel_layout() {
        let m = message(
            RTM_NEWADDR,
            NLM_F_CREATE,
            7,
            &addr_body(3, "10.1.2.3/24".parse().unwrap()),
        );
        // nlmsghdr 16 + ifaddrmsg 8 + two 8-byte attributes.
        assert_eq!(m.len(), 40);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 40);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), RTM_NEWADDR);
        assert_eq!(
            u16::from_ne_bytes(m[6..8].try_into().unwrap()),
            NLM_F_CREATE | NLM_F_REQUEST | NLM_F_ACK
        );
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        assert_eq!(&m[16..20], &[AF_INET, 24, 0, 0]);
        assert_eq!(u32::from_ne_bytes(m[20..24].try_into().unwrap()), 3);
        assert_eq!(u16::from_ne_bytes(m[24..26].try_into().unwrap()), 8);
        assert_eq!(&m[28..32], &[10, 1, 2, 3]);

        let r = route_body(2, None, Some("10.1.2.1".parse().unwrap()));
        assert_eq!(&r[..8], &[AF_INET, 0, 0, 0, 254, 3, 0, 1]);
        // rtmsg 12 + gateway 8 + oif 8
        assert_eq!(r.len(), 28);
        let r6 = route_body(2, Some("fdaa::/16".parse().unwrap()), None);
        assert_eq!(&r6[..2], &[AF_INET6, 16]);
        assert_eq!(r6.len(), 12 + 20 + 8);

        let l = link_body(5, true, Some(1400));
        assert_eq!(l.len(), 16 + 8);
    }

    #[test]
    fn acks_are_found_by_sequence() {
        let mut ack = message(NLMSG_ERROR, 0, 9, &(-17i32).to_ne_bytes());
        ack.extend_from_slice(&[0; 16]); // the echoed request header
        let len = ack.len() as u32;
        ack[0..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(ack_of(&ack, 9), Some(-17));
        assert_eq!(ack_of(&ack, 8), None);
        assert_eq!(ack_of(&ack[..10], 9), None);
    }

    fn root() -> bool {
        rustix::process::geteuid().is_root()
    }

    fn ip(args: &[&str]) -> String {
        let out = Command::new("ip").args(args).output().expect("ip");
        assert!(out.status.success(), "ip {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A network namespace with a veth pair `eth0`/`peer0` in it, removed on drop.
    struct Netns(String);

    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }

    #[test]
    fn configure_sets_up_an_interface_in_a_network_namespace() {
        if !root() || Command::new("ip").arg("-V").output().is_err() {
            eprintln!("\n*** SKIPPED: needs root and iproute2 ***\n");
            return;
        }
        let ns = Netns(format!("aloft-init-nl-{}", std::process::id()));
        ip(&["netns", "add", &ns.0]);
        ip(&[
            "-n", &ns.0, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
        ]);
        ip(&["-n", &ns.0, "link", "set", "peer0", "up"]);
        let net = NetworkConfig {
            interface: "eth0".into(),
            addresses: vec!["172.30.9.5/24".into(), "fdaa:0:9:a7b:1:0:5:2/112".into()],
            gateway_v4: Some("172.30.9.1".into()),
            routes_v6: vec![
                Route {
                    destination: "fdaa::/16".into(),
                    gateway: None,
                },
                Route {
                    destination: "fd00:1::/64".into(),
                    gateway: Some("fdaa:0:9:a7b:1:0:5:1".into()),
                },
            ],
            mtu: Some(1400),
        };
        let path = format!("/var/run/netns/{}", ns.0);
        let result = std::thread::spawn(move || {
            let f = std::fs::File::open(&path).unwrap();
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&f),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap();
            configure(&net)?;
            // Twice is fine (the same addresses and routes exist already).
            configure(&net)
        })
        .join()
        .unwrap();
        result.unwrap();

        let link = ip(&["-n", &ns.0, "link", "show", "eth0"]);
        assert!(link.contains("mtu 1400") && link.contains(",UP"), "{link}");
        let lo = ip(&["-n", &ns.0, "link", "show", "lo"]);
        assert!(lo.contains(",UP"), "{lo}");
        let addrs = ip(&["-n", &ns.0, "addr", "show", "eth0"]);
        assert!(addrs.contains("inet 172.30.9.5/24"), "{addrs}");
        assert!(addrs.contains("inet6 fdaa:0:9:a7b:1:0:5:2/112"), "{addrs}");
        let v4 = ip(&["-n", &ns.0, "route", "show"]);
        assert!(v4.contains("default via 172.30.9.1 dev eth0"), "{v4}");
        let v6 = ip(&["-n", &ns.0, "-6", "route", "show"]);
        assert!(v6.contains("fdaa::/16 dev eth0"), "{v6}");
        assert!(
            v6.contains("fd00:1::/64 via fdaa:0:9:a7b:1:0:5:1 dev eth0"),
            "{v6}"
        );

        // A missing interface is a clear error, not a hang.
        let path = format!("/var/run/netns/{}", ns.0);
        let err = std::thread::spawn(move || {
            let f = std::fs::File::open(&path).unwrap();
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&f),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap();
            wait_for_interface("eth9", Duration::from_millis(50))
        })
        .join()
        .unwrap()
        .unwrap_err();
        assert!(err.contains("eth9 did not appear"), "{err}");
    }
}
