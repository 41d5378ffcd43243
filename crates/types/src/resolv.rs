//! `/etc/resolv.conf`, as far as aloft reads it: the `nameserver` lines.

use std::net::IpAddr;

/// The name servers `resolv_conf` lists, in order, skipping lines that are not addresses.
pub fn nameservers(resolv_conf: &str) -> impl Iterator<Item = IpAddr> + '_ {
    resolv_conf
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_address_lines_count() {
        let conf = "# x\nnameserver 10.0.0.2\nsearch a\nnameserver bogus\nnameserver ::1\n";
        let found: Vec<String> = super::nameservers(conf).map(|ip| ip.to_string()).collect();
        assert_eq!(found, ["10.0.0.2", "::1"]);
    }
}
