//! The nftables ruleset of a host's bridge, built one table and one chain at a time.
//!
//! Each table is declared, deleted and written again in one `nft -f` transaction, so that a
//! ruleset replaces the previous one whole. The text is pinned byte for byte by the tests in
//! `net.rs` (`net/testdata/*.nft`); its odd indentation (some lines indented, most not) is the
//! one it always had, kept so that the produced text does not change (nft ignores it).

use super::{MachineNet, org_prefix, own_prefix};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// The indentation of an org's rule in `machines` and of a machine's first rule in `prerouting`.
const RULE_INDENT: &str = "                 ";
/// The indentation of the closing brace of the bridge table's last two chains.
const CHAIN_END: &str = "               }\n";
/// The indentation of the closing brace of the bridge table.
const TABLE_END: &str = "             }\n";

/// The whole ruleset for the bridge `br`, whose machines' IPv4 addresses are in `subnet`, with
/// the machine ports `ports`.
pub(super) fn ruleset(br: &str, subnet: (Ipv4Addr, u8), ports: &[MachineNet]) -> String {
    let orgs: BTreeSet<String> = ports.iter().map(|p| org_prefix(p.ipv6)).collect();
    let mut script = nat_table(br, subnet);
    script.push_str(&route_table(br, &orgs));
    script.push_str(&bridge_table(br, &orgs, ports));
    script
}

/// `table <name> {` preceded by the table's declaration and deletion (declared first so that
/// the deletion cannot fail when it does not exist yet).
fn recreate(table: &str) -> String {
    format!("table {table}\ndelete table {table}\ntable {table} {{\n")
}

/// NAT for machines' IPv4 leaving the host.
fn nat_table(br: &str, (net, len): (Ipv4Addr, u8)) -> String {
    let mut s = recreate(&format!("ip aloft_nat_{br}"));
    s.push_str("chain postrouting {\n");
    s.push_str("type nat hook postrouting priority srcnat; policy accept;\n");
    s.push_str(&format!(
        "ip saddr {net}/{len} oifname != \"{br}\" masquerade\n"
    ));
    s.push_str("}\n}\n");
    s
}

/// Routed traffic: no IPv4 from one machine to another, and what a machine sends through its
/// gateway stays in its org's /48. Bridged traffic passes here too where br_netfilter is
/// loaded, so neighbour discovery's multicast is let through (the bridge table limits it).
/// Traffic from machines to the host itself: [`input_chain`].
fn route_table(br: &str, orgs: &BTreeSet<String>) -> String {
    let mut s = recreate(&format!("inet aloft_route_{br}"));
    s.push_str("chain forward {\n");
    s.push_str("type filter hook forward priority filter; policy accept;\n");
    s.push_str(&format!(
        "iifname \"{br}\" oifname \"{br}\" meta nfproto ipv4 drop\n"
    ));
    let routed_orgs: Vec<String> = orgs
        .iter()
        .map(|p| format!("iifname \"{br}\" ip6 saddr {p} ip6 daddr != {{ {p}, ff00::/8 }} drop"))
        .collect();
    s.push_str(&routed_orgs.join("\n"));
    s.push('\n');
    s.push_str("}\n");
    s.push_str(&input_chain(br));
    s.push_str("}\n");
    s
}

/// What machines may send to the host itself (any of its addresses: the bridge's, its public
/// ones, its mesh address): internal DNS, neighbour discovery and router solicitations, and the
/// replies of connections the host opened (the proxy, health checks, exec); nothing else. So a
/// machine reaches no host service (agent, proxy listeners, worker listener, gossip, control
/// plane, registry, mesh endpoint) whatever address it listens on. Traffic a machine sends
/// through the host (the internet, other hosts' machines over the mesh) is `forward`, not this.
fn input_chain(br: &str) -> String {
    let dns = aloft_types::sixpn::INTERNAL_DNS;
    let mut s = String::from("chain input {\n");
    s.push_str("type filter hook input priority filter; policy accept;\n");
    s.push_str(&format!(
        "iifname \"{br}\" ct state established,related accept\n"
    ));
    s.push_str(&format!(
        "iifname \"{br}\" ip6 daddr {dns} meta l4proto {{ tcp, udp }} th dport 53 accept\n"
    ));
    s.push_str(&format!(
        "iifname \"{br}\" icmpv6 type {{ nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert }} accept\n"
    ));
    s.push_str(&format!("iifname \"{br}\" drop\n"));
    s.push_str("}\n");
    s
}

/// Bridged traffic between this bridge's machine ports: its `forward` chain sends their frames
/// to `machines`; `prerouting` checks each machine's frames come from its own addresses.
fn bridge_table(br: &str, orgs: &BTreeSet<String>, ports: &[MachineNet]) -> String {
    let mut s = recreate(&format!("bridge aloft_{br}"));
    s.push_str(&bridge_forward_chain(ports));
    s.push_str(&machines_chain(orgs));
    s.push_str(&prerouting_chain(ports));
    s.push_str(TABLE_END);
    s
}

/// Bridge-family chains see every bridge of the host: only frames from this bridge's machine
/// ports go through its rules (other bridges, Docker's say, are left alone).
fn bridge_forward_chain(ports: &[MachineNet]) -> String {
    let mut s = String::from("chain forward {\n");
    s.push_str("type filter hook forward priority filter; policy accept;\n");
    if !ports.is_empty() {
        let names: Vec<String> = ports.iter().map(|p| format!("\"{}\"", p.host_if)).collect();
        s.push_str(&format!("iifname {{ {} }} jump machines", names.join(", ")));
    }
    s.push('\n');
    s.push_str("}\n");
    s
}

/// Frames between machines: no IPv4; link-local and multicast IPv6 for neighbour discovery
/// only; other IPv6 only within an org's /48.
fn machines_chain(orgs: &BTreeSet<String>) -> String {
    let mut s = String::from("chain machines {\n");
    s.push_str("ether type ip drop\n");
    s.push_str("ip6 daddr ff00::/8 meta l4proto != ipv6-icmp drop\n");
    s.push_str("ip6 daddr ff00::/8 accept\n");
    s.push_str("ip6 saddr fe80::/10 meta l4proto != ipv6-icmp drop\n");
    s.push_str(
        "ip6 saddr fe80::/10 icmpv6 type != { nd-neighbor-solicit, nd-neighbor-advert } drop\n",
    );
    for p in orgs {
        s.push_str(&format!(
            "{RULE_INDENT}ip6 saddr {p} ip6 daddr != {p} drop\n"
        ));
    }
    s.push_str(CHAIN_END);
    s
}

/// Each machine's frames only from its own MAC and addresses, announcing only its own.
fn prerouting_chain(ports: &[MachineNet]) -> String {
    let mut s = String::from("chain prerouting {\n");
    s.push_str("type filter hook prerouting priority filter; policy accept;\n");
    for p in ports {
        s.push_str(&port_rules(p));
    }
    s.push_str(CHAIN_END);
    s
}

/// One machine port's rules: its MAC, its /112 (and link-local and unspecified addresses for
/// neighbour discovery), its IPv4 address (ARP included), no router advertisements or
/// redirects, and neighbour advertisements only for its own addresses.
fn port_rules(p: &MachineNet) -> String {
    let i = &p.host_if;
    let (mac, v4) = (&p.mac, p.ipv4);
    let own = own_prefix(p.ipv6);
    // The first 112 bits of the machine's address, to compare a neighbour advertisement's
    // target with (bytes 8-23 of the ICMPv6 message; fe80::/10 is 0x3fa in its first 10 bits).
    let own_bits: String = p.ipv6.segments()[..7]
        .iter()
        .map(|w| format!("{w:04x}"))
        .collect();
    [
        format!("{RULE_INDENT}iifname \"{i}\" ether saddr != {mac} drop"),
        format!("iifname \"{i}\" ether type ip6 ip6 saddr != {{ {own}, fe80::/10, ::/128 }} drop"),
        format!("iifname \"{i}\" ether type ip ip saddr != {{ {v4}, 0.0.0.0 }} drop"),
        format!("iifname \"{i}\" ether type arp arp saddr ip != {v4} drop"),
        format!("iifname \"{i}\" icmpv6 type {{ nd-router-advert, nd-redirect }} drop"),
        format!(
            "iifname \"{i}\" icmpv6 type nd-neighbor-advert @th,64,112 != 0x{own_bits} @th,64,10 != 0x3fa drop"
        ),
    ]
    .iter()
    .map(|line| format!("{line}\n"))
    .collect()
}
