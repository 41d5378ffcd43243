//! A certificate and key a user gives for one of an app's hostnames (`aloft certs add`), checked
//! once for both sides of the HTTPS edge: the control plane refuses a pair before storing it, and
//! every proxy loads it with the same function, so what the API accepts is what the proxies serve.

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

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
