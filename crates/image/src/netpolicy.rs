//! Where the registry client may connect: the guard against a tenant using an image reference
//! (or a token realm, or a redirect a registry sends) to make the host reach its own private
//! network, its loopback services or a cloud metadata endpoint (SSRF).
//!
//! A URL may name a private, loopback, link-local, multicast, unspecified or otherwise
//! non-public address only when its host (and port, if the entry names one) is allowed:
//! [`ImageConfig::default_registry`] (aloft's own registry) always is, and the operator lists
//! the others in [`ImageConfig::private_registries`]. Everything else must resolve to public
//! addresses only.
//!
//! The check is made on the addresses actually connected to: names are resolved once by
//! [`CheckedResolver`] (the HTTP client's only resolver), which hands the client only addresses
//! that passed, so a name that resolves differently the second time (DNS rebinding) gains
//! nothing. Literal addresses, which the client does not resolve, are checked by
//! [`AddressPolicy::check_url`] before every request and every redirect.
//!
//! State: the allow list, fixed when the store opens. No locks.
//!
//! [`ImageConfig::default_registry`]: crate::ImageConfig::default_registry
//! [`ImageConfig::private_registries`]: crate::ImageConfig::private_registries

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// A connection the policy refused. Travels inside the HTTP client's errors (from the resolver
/// or the redirect policy) and is recognised by [`refusal`].
#[derive(Debug, Clone)]
pub(crate) struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// One allowed host, with its port when the entry names one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Allowed {
    host: String,
    port: Option<u16>,
}

/// The allow list of hosts that may be private (see the module doc).
#[derive(Debug, Clone, Default)]
pub(crate) struct AddressPolicy {
    allowed: Vec<Allowed>,
}

/// Splits `host[:port]` (`[v6]:port` for IPv6) into a lowercase host without brackets and the
/// port; `None` when it is not such a string.
pub(crate) fn split_authority(s: &str) -> Option<(String, Option<u16>)> {
    let url = Url::parse(&format!("http://{s}/")).ok()?;
    let host = url
        .host_str()?
        .trim_matches(['[', ']'])
        .to_ascii_lowercase();
    let explicit_port = s.rsplit_once(':').is_some_and(|(_, p)| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !s.ends_with(']')
    });
    Some((
        host,
        explicit_port.then(|| url.port_or_known_default()).flatten(),
    ))
}

impl AddressPolicy {
    /// The policy allowing `own` (aloft's registry) and the operator's `private` entries
    /// (`host` or `host:port`). Entries that are not such strings are an error naming them.
    pub(crate) fn new<'a>(
        own: &'a str,
        private: impl IntoIterator<Item = &'a String>,
    ) -> Result<AddressPolicy, String> {
        let mut allowed = Vec::new();
        for entry in std::iter::once(own).chain(private.into_iter().map(String::as_str)) {
            let (host, port) = split_authority(entry)
                .filter(|_| !entry.contains('/'))
                .ok_or_else(|| format!("`{entry}` is not a host or host:port"))?;
            allowed.push(Allowed { host, port });
        }
        Ok(AddressPolicy { allowed })
    }

    fn allows(&self, host: &str, port: Option<u16>) -> bool {
        self.allowed
            .iter()
            .any(|a| a.host == host && (a.port.is_none() || a.port == port))
    }

    fn allows_name(&self, host: &str) -> bool {
        self.allowed.iter().any(|a| a.host == host)
    }

    /// Checks the host of a URL about to be requested: a literal address must be public or
    /// allowed; a name allowed only on other ports is refused here (the resolver lets allowed
    /// names resolve to private addresses whatever the port); other names are left to
    /// [`CheckedResolver`].
    pub(crate) fn check_url(&self, url: &Url) -> Result<(), Refused> {
        let port = url.port_or_known_default();
        let Some(host) = url.host_str() else {
            return Err(Refused(format!("{url} names no host")));
        };
        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.check_ip(ip, port);
        }
        if self.allows_name(&host) && !self.allows(&host, port) {
            return Err(Refused(format!(
                "{host} is allowed as a private registry only on the ports the host config names, not {}",
                port.unwrap_or_default()
            )));
        }
        Ok(())
    }

    fn check_ip(&self, ip: IpAddr, port: Option<u16>) -> Result<(), Refused> {
        if is_public(ip) || self.allows(&ip.to_string(), port) {
            Ok(())
        } else {
            Err(Refused(not_public(&ip.to_string())))
        }
    }
}

/// The refusal of a non-public address. For a name, the address it resolved to is not told
/// (the host's resolver's answers are not the tenant's to learn).
fn not_public(host: &str) -> String {
    format!(
        "{host} is or resolves to a private, loopback, link-local or otherwise non-public address"
    )
}

/// Whether `ip` is an ordinary public unicast address.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) reaches the IPv4 address it embeds
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return is_public_v4(Ipv4Addr::new(a, b, c, d));
            }
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local, fd00:ec2::254 included
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || s[..6] == [0; 6]) // IPv4-compatible and the rest of ::/96
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local() // 169.254.0.0/16: the metadata endpoint
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || a >= 240) // reserved
}

/// The HTTP client's resolver: resolves a name once and hands over only the addresses the
/// policy accepts (every address for an allowed name, public ones otherwise).
pub(crate) struct CheckedResolver {
    policy: Arc<AddressPolicy>,
}

impl CheckedResolver {
    pub(crate) fn new(policy: Arc<AddressPolicy>) -> CheckedResolver {
        CheckedResolver { policy }
    }
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_ascii_lowercase();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if policy.allows_name(&host) {
                return Ok(Box::new(found.into_iter()) as Addrs);
            }
            let public: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| is_public(a.ip()))
                .collect();
            match (public.is_empty(), found.first()) {
                (false, _) => Ok(Box::new(public.into_iter()) as Addrs),
                (true, Some(_)) => Err(Box::new(Refused(not_public(&host))) as _),
                (true, None) => Err(format!("{host} has no address").into()),
            }
        })
    }
}

/// The redirect policy: at most 10 redirects, each to a URL the policy accepts. (The client
/// itself drops `Authorization` on a redirect to another host or port.)
pub(crate) fn redirects(policy: Arc<AddressPolicy>) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 10 {
            return attempt.error(Refused("more than 10 redirects".into()));
        }
        match policy.check_url(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(e) => {
                let e = Refused(format!("a redirect to {}: {e}", attempt.url()));
                attempt.error(e)
            }
        }
    })
}

/// The policy's refusal inside an HTTP client error, if that is what it is.
pub(crate) fn refusal(e: &(dyn std::error::Error + 'static)) -> Option<Refused> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(r) = c.downcast_ref::<Refused>() {
            return Some(r.clone());
        }
        cur = c.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_and_not() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!is_public(bad.parse().unwrap()), "{bad}");
        }
        for good in [
            "1.1.1.1",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert!(is_public(good.parse().unwrap()), "{good}");
        }
    }

    #[test]
    fn allow_list() {
        let private = vec!["registry.internal:5000".to_string(), "10.0.0.7".to_string()];
        let p = AddressPolicy::new("127.0.0.1:5000", &private).unwrap();
        let ok = |u: &str| p.check_url(&Url::parse(u).unwrap()).is_ok();
        assert!(ok("http://127.0.0.1:5000/v2/"));
        assert!(!ok("http://127.0.0.1:5001/v2/"), "own registry's port only");
        assert!(!ok("http://169.254.169.254/latest/meta-data/"));
        assert!(!ok("http://[fd00:ec2::254]/"));
        assert!(
            ok("http://10.0.0.7:1234/v2/"),
            "an entry without a port allows any"
        );
        assert!(ok("http://registry.internal:5000/v2/"));
        assert!(!ok("http://registry.internal:22/"));
        assert!(ok("http://example.com/"), "names are checked when resolved");
        assert!(AddressPolicy::new("127.0.0.1:5000", &["http://x/".to_string()]).is_err());
        assert_eq!(
            split_authority("[::1]:80"),
            Some(("::1".to_string(), Some(80)))
        );
        assert_eq!(
            split_authority("Reg.Example"),
            Some(("reg.example".into(), None))
        );
    }
}
