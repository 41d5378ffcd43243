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
}
