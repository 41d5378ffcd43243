//! Gossiped values signed with the cluster's secret. chitchat itself authenticates nothing, so
//! every value a host publishes carries a 16-byte truncated HMAC-SHA256 tag over (host, key,
//! value): a host that is not a member (it does not hold the secret) can gossip, but what it
//! publishes, for itself or in another host's name, fails the check and is ignored. The mesh
//! keeps non-members from reaching gossip at all; this holds whatever path the datagrams take.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Bytes of a tag (hex-encoded before the value).
const TAG_LEN: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks gossiped values with the cluster's secret.
#[derive(Clone)]
pub struct Seal {
    key: [u8; 32],
}

impl Seal {
    /// The seal for `secret`, through its own derivation (the same secret is a bearer token
    /// elsewhere).
    pub fn new(secret: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"aloft gossip v1\0");
        h.update(secret.as_bytes());
        Self {
            key: h.finalize().into(),
        }
    }

    /// The cluster id chitchat compares in every handshake: clusters with other secrets do not
    /// mix (a short digest of the key, which says nothing of the secret).
    pub fn cluster_id(&self) -> String {
        let digest = Sha256::digest(self.key);
        format!("aloft-{}", hex::encode(&digest[..8]))
    }

    fn mac(&self, host: &str, key: &str, value: &str) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        for part in [host, key, value] {
            m.update(&(part.len() as u64).to_be_bytes());
            m.update(part.as_bytes());
        }
        m
    }

    /// `value` as host `host` publishes it under `key`: `<tag>.<value>`.
    pub fn sign(&self, host: &str, key: &str, value: &str) -> String {
        let tag = self.mac(host, key, value).finalize().into_bytes();
        format!("{}.{value}", hex::encode(&tag[..TAG_LEN]))
    }

    /// The value of a signed `signed` published by `host` under `key`, if its tag is right.
    pub fn open<'a>(&self, host: &str, key: &str, signed: &'a str) -> Option<&'a str> {
        let (tag, value) = signed.split_once('.')?;
        let tag = hex::decode(tag).ok()?;
        if tag.len() != TAG_LEN {
            return None;
        }
        self.mac(host, key, value)
            .verify_truncated_left(&tag)
            .ok()?;
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_values_signed_by_a_member_for_that_host_and_key_open() {
        let (seal, other) = (Seal::new("cluster"), Seal::new("intruder"));
        let signed = seal.sign("ord-1", "m:1", r#"{"a":1}"#);
        assert_eq!(seal.open("ord-1", "m:1", &signed), Some(r#"{"a":1}"#));
        assert_eq!(other.open("ord-1", "m:1", &signed), None, "another secret");
        assert_eq!(seal.open("syd-1", "m:1", &signed), None, "another host");
        assert_eq!(seal.open("ord-1", "m:2", &signed), None, "another key");
        let forged = other.sign("ord-1", "m:1", r#"{"a":2}"#);
        assert_eq!(seal.open("ord-1", "m:1", &forged), None);
        let tampered = signed.replace(r#""a":1"#, r#""a":2"#);
        assert_eq!(seal.open("ord-1", "m:1", &tampered), None);
        for junk in ["", ".", "zz.x", "00.x", "no tag"] {
            assert_eq!(seal.open("ord-1", "m:1", junk), None, "{junk}");
        }
        assert_ne!(seal.cluster_id(), other.cluster_id());
        assert!(!seal.cluster_id().contains("cluster"));
    }
}
