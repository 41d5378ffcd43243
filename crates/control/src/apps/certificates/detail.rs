//! What a hostname's row says in the reference's shape: each certificate's status, checked when
//! it is read (a custom certificate must still load, name the hostname and be within its
//! validity; a managed one must be one the issuer can give), and the summary a listing shows.

use super::issuer::ManagedIssuer;
use crate::store::CertRecord;
use aloft_types::certificates::{
    CertificateDetail, CertificateDetailResponse, CertificateSummary, CertificateValidation,
    DnsRequirements, ValidationError,
};
use aloft_types::time::rfc3339;

/// A certificate that serves its hostname.
const ACTIVE: &str = "active";

/// A hostname's certificates, checked at one moment.
pub(super) struct Assessed {
    pub certificates: Vec<CertificateDetail>,
    pub errors: Vec<ValidationError>,
    pub has_custom: bool,
    pub has_managed: bool,
}

impl Assessed {
    /// `active` when a certificate serves the hostname, else `inactive`.
    fn status(&self) -> &'static str {
        if self.certificates.iter().any(|c| c.status == ACTIVE) {
            ACTIVE
        } else {
            "inactive"
        }
    }
}

fn problem(code: &str, message: String, remediation: String, now: i64) -> ValidationError {
    ValidationError {
        code: Some(code.into()),
        message,
        remediation,
        timestamp: rfc3339(now),
    }
}

/// Checks the row's certificates at `now` (ms). `key_loads`: whether the custom certificate's
/// key opened and belongs to it (`None`: not checked, as in a listing).
pub(super) fn assess(
    issuer: &dyn ManagedIssuer,
    r: &CertRecord,
    key_loads: Option<Result<(), String>>,
    now: i64,
) -> Assessed {
    let mut out = Assessed {
        certificates: Vec::new(),
        errors: Vec::new(),
        has_custom: r.certificate.is_some(),
        has_managed: false,
    };
    let added = Some(rfc3339(r.created_at));
    if let Some(chain) = &r.certificate {
        let (status, expires_at, error) = custom_status(&r.hostname, chain, key_loads, now);
        out.errors.extend(error);
        out.certificates.push(CertificateDetail {
            source: "custom".into(),
            status: status.into(),
            created_at: added.clone(),
            expires_at,
            issuer: None,
            issued: Vec::new(),
        });
    }
    if r.acme_requested {
        match issuer.can_issue(&r.hostname) {
            Ok(()) => {
                out.has_managed = true;
                out.certificates.push(CertificateDetail {
                    source: "fly".into(),
                    status: ACTIVE.into(),
                    created_at: added,
                    expires_at: None,
                    issuer: Some(issuer.name().into()),
                    issued: Vec::new(),
                });
            }
            Err(why) => out
                .errors
                .push(problem(why.code, why.message, why.remediation, now)),
        }
    }
    out
}

/// A custom certificate's status, its expiry and what is wrong with it.
fn custom_status(
    hostname: &str,
    chain: &str,
    key_loads: Option<Result<(), String>>,
    now: i64,
) -> (&'static str, Option<String>, Option<ValidationError>) {
    let upload = format!(
        "upload a certificate for {hostname}: `aloft certs import {hostname} --fullchain \
         <chain.pem> --private-key <key.pem>`"
    );
    let leaf = match aloft_http::tls::read_leaf(chain, hostname) {
        Ok(leaf) => leaf,
        Err(e) => {
            let error = problem("invalid_certificate", e, upload, now);
            return ("invalid", None, Some(error));
        }
    };
    let expires_at = Some(rfc3339(leaf.not_after.saturating_mul(1000)));
    let (status, code, message) = if let Some(Err(e)) = key_loads {
        ("invalid", "invalid_key", e)
    } else if !leaf.names_hostname {
        let m = format!("the custom certificate does not name {hostname}");
        ("invalid", "hostname_mismatch", m)
    } else if now / 1000 < leaf.not_before {
        let m = format!(
            "the custom certificate is valid from {}",
            rfc3339(leaf.not_before * 1000)
        );
        ("not_yet_valid", "not_yet_valid", m)
    } else if now / 1000 > leaf.not_after {
        let m = format!(
            "the custom certificate expired at {}",
            rfc3339(leaf.not_after * 1000)
        );
        ("expired", "expired", m)
    } else {
        return (ACTIVE, expires_at, None);
    };
    (
        status,
        expires_at,
        Some(problem(code, message, upload, now)),
    )
}

/// `GET .../certificates/{hostname}`.
pub(super) fn detail(r: &CertRecord, a: Assessed) -> CertificateDetailResponse {
    CertificateDetailResponse {
        hostname: r.hostname.clone(),
        configured: false,
        acme_requested: r.acme_requested,
        status: a.status().into(),
        certificates: a.certificates,
        validation: CertificateValidation::default(),
        dns_requirements: DnsRequirements::default(),
        validation_errors: a.errors,
    }
}

/// One row of `GET .../certificates`.
pub(super) fn summary(r: &CertRecord, a: &Assessed) -> CertificateSummary {
    CertificateSummary {
        hostname: r.hostname.clone(),
        status: a.status().into(),
        acme_dns_configured: false,
        acme_alpn_configured: false,
        acme_http_configured: false,
        ownership_txt_configured: false,
        configured: false,
        acme_requested: r.acme_requested,
        has_custom_certificate: a.has_custom,
        has_fly_certificate: a.has_managed,
        created_at: rfc3339(r.created_at),
        updated_at: rfc3339(r.updated_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::certificates::issuer::DevelopmentCa;

    fn row(hostname: &str, certificate: Option<String>, acme_requested: bool) -> CertRecord {
        CertRecord {
            hostname: hostname.into(),
            app: "web".into(),
            certificate,
            private_key: None,
            acme_requested,
            created_at: 1_000,
            updated_at: 2_000,
        }
    }

    fn chain(name: &str, from: (i32, u8, u8), to: (i32, u8, u8)) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        p.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        p.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
        p.self_signed(&key).unwrap().pem()
    }

    const NOW: i64 = 1_800_000_000_000; // 2027-01-15

    fn custom(r: &CertRecord, key: Option<Result<(), String>>) -> (String, Vec<String>) {
        let a = assess(&DevelopmentCa, r, key, NOW);
        let codes = a.errors.iter().filter_map(|e| e.code.clone()).collect();
        (a.certificates[0].status.clone(), codes)
    }

    /// A custom certificate is active only while it names the hostname, is within its
    /// validity and (when checked) its key loads; each other case names its code.
    #[test]
    fn a_custom_certificate_is_active_only_when_it_still_serves_the_name() {
        let good = chain("www.example.com", (2020, 1, 1), (2030, 1, 1));
        let r = row("www.example.com", Some(good.clone()), false);
        assert_eq!(custom(&r, Some(Ok(()))), ("active".into(), vec![]));
        let d = detail(&r, assess(&DevelopmentCa, &r, None, NOW));
        assert_eq!(d.status, "active");
        assert_eq!(d.certificates[0].source, "custom");
        assert_eq!(
            d.certificates[0].expires_at.as_deref(),
            Some("2030-01-01T00:00:00Z")
        );
        for (r, key, want) in [
            (
                row("api.example.com", Some(good.clone()), false),
                None,
                "invalid",
            ),
            (
                row("www.example.com", Some(good), false),
                Some(Err("no".into())),
                "invalid",
            ),
            (
                row(
                    "www.example.com",
                    Some(chain("www.example.com", (2020, 1, 1), (2021, 1, 1))),
                    false,
                ),
                None,
                "expired",
            ),
            (
                row(
                    "www.example.com",
                    Some(chain("www.example.com", (2029, 1, 1), (2030, 1, 1))),
                    false,
                ),
                None,
                "not_yet_valid",
            ),
            (
                row("www.example.com", Some("junk".into()), false),
                None,
                "invalid",
            ),
        ] {
            let (status, codes) = custom(&r, key.clone());
            assert_eq!(status, want, "{codes:?}");
            assert_eq!(codes.len(), 1, "{codes:?}");
            let d = detail(&r, assess(&DevelopmentCa, &r, key, NOW));
            assert_eq!(d.status, "inactive");
        }
    }

    /// A managed certificate is listed only when the issuer can give it; otherwise the request
    /// stays (`acme_requested`) with an error saying why. Nothing claims checked DNS.
    #[test]
    fn a_managed_certificate_is_active_only_where_the_issuer_can_issue() {
        let r = row("www.web.test", None, true);
        let a = assess(&DevelopmentCa, &r, None, NOW);
        let s = summary(&r, &a);
        assert!(s.has_fly_certificate && s.acme_requested && !s.has_custom_certificate);
        assert_eq!((s.status.as_str(), s.configured), ("active", false));
        let d = detail(&r, a);
        assert_eq!(d.certificates[0].source, "fly");
        assert_eq!(
            d.certificates[0].issuer.as_deref(),
            Some("aloft development CA")
        );

        let r = row("www.example.com", None, true);
        let a = assess(&DevelopmentCa, &r, None, NOW);
        assert!(!summary(&r, &a).has_fly_certificate);
        let d = detail(&r, a);
        assert_eq!((d.status.as_str(), d.certificates.len()), ("inactive", 0));
        assert_eq!(
            d.validation_errors[0].code.as_deref(),
            Some("no_acme_issuer")
        );
        assert_eq!(d.validation, CertificateValidation::default());
    }
}
