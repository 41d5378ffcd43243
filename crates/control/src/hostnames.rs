//! Which org may serve which hostnames (`aloft certs add`). A hostname claimed by one org is
//! served that org's machines and, under the development CA, gets a certificate, so a name must
//! not go to whoever asks first: until ownership is proven (ACME), the operator approves names
//! per org in the control plane's config. `dev up`, a single user's cloud, allows any name.
//!
//! ```toml
//! [hostnames]
//! grants = [{ org = "acme", names = ["www.acme.com", "*.acme.com"] }]
//! ```
//!
//! `*.acme.com` stands for every name under `acme.com` (any depth), not `acme.com` itself.

use serde::{Deserialize, Serialize};

/// The operator's rule for hostnames. The default approves nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostnamePolicy {
    /// Any org may add any hostname (a one-user cloud: `dev up`, tests).
    #[serde(default)]
    pub allow_any: bool,
    /// The names each org may add.
    #[serde(default)]
    pub grants: Vec<HostnameGrant>,
}

/// Names one org may serve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostnameGrant {
    /// The org's slug.
    pub org: String,
    /// Exact names (`www.acme.com`) or `*.<domain>` for every name under the domain.
    pub names: Vec<String>,
}

impl HostnamePolicy {
    /// A policy that allows every org every name.
    pub fn allow_any() -> Self {
        Self {
            allow_any: true,
            grants: Vec::new(),
        }
    }

    /// Whether org `org` may add `hostname` (lowercase, no trailing dot).
    pub(crate) fn allows(&self, org: &str, hostname: &str) -> bool {
        self.allow_any
            || self
                .grants
                .iter()
                .filter(|g| g.org == org)
                .flat_map(|g| &g.names)
                .any(|pattern| matches(pattern, hostname))
    }
}

fn matches(pattern: &str, hostname: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(domain) => hostname
            .strip_suffix(domain)
            .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        None => pattern == hostname,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> HostnamePolicy {
        HostnamePolicy {
            allow_any: false,
            grants: vec![HostnameGrant {
                org: "acme".into(),
                names: vec!["www.acme.com".into(), "*.Apps.Acme.com.".into()],
            }],
        }
    }

    #[test]
    fn names_are_approved_per_org() {
        let p = acme();
        assert!(p.allows("acme", "www.acme.com"));
        assert!(p.allows("acme", "a.apps.acme.com"));
        assert!(p.allows("acme", "b.a.apps.acme.com"));
        assert!(
            !p.allows("acme", "apps.acme.com"),
            "a wildcard is not its domain"
        );
        assert!(!p.allows("acme", "xapps.acme.com"));
        assert!(!p.allows("acme", "acme.com"));
        assert!(!p.allows("evil", "www.acme.com"), "another org");
        assert!(!HostnamePolicy::default().allows("acme", "www.acme.com"));
        assert!(HostnamePolicy::allow_any().allows("evil", "www.acme.com"));
    }
}
