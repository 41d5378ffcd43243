//! A certificate and key a user gives for one of an app's hostnames (`aloft certs add`), checked
//! once for both sides of the HTTPS edge: the control plane refuses a pair before storing it, and
//! every proxy loads it with the same function, so what the API accepts is what the proxies serve.
//! Also the names the development CA may sign ([`DEV_CA_DOMAINS`]), for the same two sides.

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// The only domains the development CA may sign names under (its X.509 name constraints), all
/// reserved so that they can never be a real public site: `localhost`, `test`, `example` and
/// `invalid` (RFC 2606, RFC 6761), `internal` (ICANN's private-use TLD, 2024) and `home.arpa`
/// (RFC 8375). A hostname under any other needs the user's own certificate.
pub const DEV_CA_DOMAINS: &[&str] = &[
    "localhost",
    "test",
    "example",
    "invalid",
    "internal",
    "home.arpa",
];

/// Whether the development CA may sign `hostname` (lowercase, no trailing dot): it is one of
/// [`DEV_CA_DOMAINS`] or under one.
pub fn dev_ca_may_sign(hostname: &str) -> bool {
    DEV_CA_DOMAINS.iter().any(|d| {
        hostname == *d
            || hostname
                .strip_suffix(d)
                .is_some_and(|rest| rest.ends_with('.'))
    })
}

/// A certificate chain and private key a user gave (PEM), checked: the chain parses (leaf
/// first), the key parses and can sign, and it is the leaf's key.
pub fn certified_key_from_pem(chain: &str, key: &str) -> Result<CertifiedKey, String> {
    let certs = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in the PEM (expected -----BEGIN CERTIFICATE-----)".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
        .map_err(|e| format!("the private key is not a PEM private key: {e}"))?;
    let signer =
        any_supported_type(&key).map_err(|e| format!("the private key cannot be used: {e}"))?;
    let certified = CertifiedKey::new(certs, signer);
    certified
        .keys_match()
        .map_err(|e| format!("the private key does not belong to the certificate: {e}"))?;
    Ok(certified)
}

/// What a user's leaf certificate (the chain's first) says of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf {
    /// Its validity, in seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// Whether it names the hostname it was read for (a DNS name in its subject alternative
    /// names, a wildcard matching one label, as TLS clients match them).
    pub names_hostname: bool,
}

/// Reads the leaf certificate of `chain` (PEM, leaf first) for `hostname` (lowercase, no
/// trailing dot): its validity and whether it names the hostname.
pub fn read_leaf(chain: &str, hostname: &str) -> Result<Leaf, String> {
    let leaf = CertificateDer::pem_slice_iter(chain.as_bytes())
        .next()
        .ok_or("no certificate in the PEM (expected -----BEGIN CERTIFICATE-----)")?
        .map_err(|e| format!("the certificate is not PEM: {e}"))?;
    let (not_before, not_after) =
        validity(&leaf).map_err(|e| format!("the certificate is not an X.509 certificate: {e}"))?;
    let names_hostname = match (
        webpki::EndEntityCert::try_from(&leaf),
        rustls::pki_types::ServerName::try_from(hostname),
    ) {
        (Ok(cert), Ok(name)) => cert.verify_is_valid_for_subject_name(&name).is_ok(),
        _ => false,
    };
    Ok(Leaf {
        not_before,
        not_after,
        names_hostname,
    })
}

/// `tbsCertificate.validity` of an X.509 certificate (RFC 5280 4.1), as Unix seconds.
fn validity(der: &[u8]) -> Result<(i64, i64), yasna::ASN1Error> {
    yasna::parse_der(der, |r| {
        r.read_sequence(|r| {
            let times = r.next().read_sequence(|tbs| {
                tbs.read_optional(|r| r.read_tagged(yasna::Tag::context(0), |r| r.read_der()))?;
                for _ in 0..3 {
                    tbs.next().read_der()?; // serialNumber, signature, issuer
                }
                let times = tbs
                    .next()
                    .read_sequence(|v| Ok((time(v.next())?, time(v.next())?)))?;
                while tbs.read_optional(|r| r.read_der())?.is_some() {} // subject, key, extensions
                Ok(times)
            })?;
            r.next().read_der()?; // signatureAlgorithm
            r.next().read_der()?; // signatureValue
            Ok(times)
        })
    })
}

/// An X.509 `Time`: UTCTime or GeneralizedTime.
fn time(r: yasna::BERReader<'_, '_>) -> Result<i64, yasna::ASN1Error> {
    if r.lookahead_tag()? == yasna::tags::TAG_UTCTIME {
        Ok(r.read_utctime()?.datetime().unix_timestamp())
    } else {
        Ok(r.read_generalized_time()?.datetime().unix_timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn the_dev_ca_signs_only_reserved_names() {
        for name in [
            "x.localhost",
            "www.web.test",
            "a.b.internal",
            "nas.home.arpa",
            "test",
        ] {
            assert!(dev_ca_may_sign(name), "{name}");
        }
        for name in [
            "www.google.com",
            "example.com",
            "notlocalhost",
            "evil-test",
            "arpa",
        ] {
            assert!(!dev_ca_may_sign(name), "{name}");
        }
    }

    #[test]
    fn a_pair_is_accepted_only_when_both_parse_and_belong_together() {
        let (cert, key) = self_signed("a.example");
        assert!(certified_key_from_pem(&cert, &key).is_ok());
        let (_, other_key) = self_signed("b.example");
        let err = certified_key_from_pem(&cert, &other_key).err().unwrap();
        assert!(err.contains("does not belong"), "{err}");
        let err = certified_key_from_pem("hello", &key).err().unwrap();
        assert!(err.contains("no certificate"), "{err}");
        let err = certified_key_from_pem(&cert, "nope").err().unwrap();
        assert!(err.contains("private key"), "{err}");
        let err = certified_key_from_pem(&format!("{cert}{key}"), "")
            .err()
            .unwrap();
        assert!(err.contains("private key"), "{err}");
    }

    /// A leaf's validity and names are read as written; junk is an error, not a panic.
    #[test]
    fn a_leaf_is_read_for_its_validity_and_names() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["*.web.test".into(), "web.test".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2001, 2, 3);
        params.not_after = rcgen::date_time_ymd(2051, 1, 1);
        let pem = params.self_signed(&key).unwrap().pem();
        let leaf = read_leaf(&pem, "www.web.test").unwrap();
        assert_eq!(
            (leaf.not_before, leaf.not_after),
            (981_158_400, 2_556_144_000)
        );
        assert!(leaf.names_hostname);
        assert!(read_leaf(&pem, "web.test").unwrap().names_hostname);
        for other in ["a.b.web.test", "other.test", "web.test.evil"] {
            assert!(!read_leaf(&pem, other).unwrap().names_hostname, "{other}");
        }
        let err = read_leaf("junk", "web.test").unwrap_err();
        assert!(err.contains("no certificate"), "{err}");
        let not_x509 = "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n";
        let err = read_leaf(not_x509, "web.test").unwrap_err();
        assert!(err.contains("not an X.509"), "{err}");
    }
}
