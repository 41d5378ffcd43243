//! Who issues managed certificates (the reference's ACME certificates, `source: "fly"`): the
//! seam an ACME issuer plugs into. Today's issuer is the proxies' development CA, which signs
//! only reserved names (`aloft_http::tls::DEV_CA_DOMAINS`); a real domain is refused with what
//! to do instead (upload its certificate).

use aloft_http::tls::{DEV_CA_DOMAINS, dev_ca_may_sign};

/// Why an issuer cannot give a hostname a managed certificate, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// A short code (`validation_errors[].code`).
    pub code: &'static str,
    pub message: String,
    pub remediation: String,
}

/// Issues managed certificates.
pub(crate) trait ManagedIssuer: Send + Sync {
    /// Its name, as a certificate's `issuer` shows it.
    fn name(&self) -> &str;
    /// `Ok` when the hostname's proxies can serve it a managed certificate now.
    fn can_issue(&self, hostname: &str) -> Result<(), Refusal>;
}

/// The proxies' development CA: every proxy mints certificates for the names it may sign,
/// at once, so such a name is served as soon as it is requested.
pub(crate) struct DevelopmentCa;

impl ManagedIssuer for DevelopmentCa {
    fn name(&self) -> &str {
        "aloft development CA"
    }

    fn can_issue(&self, hostname: &str) -> Result<(), Refusal> {
        if dev_ca_may_sign(hostname) {
            return Ok(());
        }
        Err(Refusal {
            code: "no_acme_issuer",
            message: format!(
                "this cloud has no ACME issuer yet, so it cannot issue a managed certificate for \
                 `{hostname}` (its development CA signs only names under .{})",
                DEV_CA_DOMAINS.join(", .")
            ),
            remediation: format!(
                "upload the hostname's own certificate: POST .../certificates/custom, or \
                 `aloft certs import {hostname} --fullchain <chain.pem> --private-key <key.pem>`"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_development_ca_issues_for_reserved_names_only() {
        assert_eq!(DevelopmentCa.can_issue("www.web.test"), Ok(()));
        let refusal = DevelopmentCa.can_issue("www.example.com").unwrap_err();
        assert_eq!(refusal.code, "no_acme_issuer");
        assert!(refusal.message.contains("no ACME issuer"), "{refusal:?}");
        assert!(
            refusal
                .remediation
                .contains("aloft certs import www.example.com")
        );
    }
}
