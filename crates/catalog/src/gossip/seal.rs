//! Gossiped values signed with the cluster's secret, each with the version its publisher gave it.
//! chitchat itself authenticates nothing, so every value a host publishes carries a 16-byte
//! truncated HMAC-SHA256 tag over (host, key, version, value): a host that is not a member (it
//! does not hold the secret) can gossip, but what it publishes, for itself or in another host's
//! name, fails the check and is ignored. The mesh keeps non-members from reaching gossip at all;
//! this holds whatever path the datagrams take.
//!
//! The version is the publisher's, not chitchat's (which anyone who can send a datagram can
//! raise): [`Clock`] hands out microseconds since the epoch, bumped past the last one it gave, so
//! it only grows within a process and a restarted host starts above everything it published
//! before (unless the wall clock went back across the restart). Receivers keep the newest
//! version per (host, key) and refuse older ones (`members`), so a captured old value cannot be
//! replayed over a newer one. State: a clock's last version (one clock per publisher, no lock).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes of a tag (hex-encoded before the value).
const TAG_LEN: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// A publisher's versions: microseconds since the epoch, always past the last one handed out.
#[derive(Default)]
pub struct Clock {
    last: u64,
}

impl Clock {
    /// A version newer than every one this clock gave before.
    pub fn tick(&mut self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        self.last = now.max(self.last + 1);
        self.last
    }
}

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

    fn mac(&self, host: &str, key: &str, version: u64, value: &str) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        let version = version.to_be_bytes();
        for part in [host.as_bytes(), key.as_bytes(), &version, value.as_bytes()] {
            m.update(&(part.len() as u64).to_be_bytes());
            m.update(part);
        }
        m
    }

    /// `value` as host `host` publishes it under `key` at `version`: `<tag>.<version>.<value>`.
    pub fn sign(&self, host: &str, key: &str, version: u64, value: &str) -> String {
        let tag = self.mac(host, key, version, value).finalize().into_bytes();
        format!("{}.{version}.{value}", hex::encode(&tag[..TAG_LEN]))
    }

    /// The version and value of a `signed` published by `host` under `key`, if its tag is right.
    pub fn open<'a>(&self, host: &str, key: &str, signed: &'a str) -> Option<(u64, &'a str)> {
        let (tag, rest) = signed.split_once('.')?;
        let (digits, value) = rest.split_once('.')?;
        let tag = hex::decode(tag).ok()?;
        let version: u64 = digits.parse().ok()?;
        if tag.len() != TAG_LEN || version.to_string() != digits {
            return None;
        }
        self.mac(host, key, version, value)
            .verify_truncated_left(&tag)
            .ok()?;
        Some((version, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_values_signed_by_a_member_for_that_host_and_key_open() {
        let (seal, other) = (Seal::new("cluster"), Seal::new("intruder"));
        let signed = seal.sign("ord-1", "m:1", 7, r#"{"a":1}"#);
        assert_eq!(seal.open("ord-1", "m:1", &signed), Some((7, r#"{"a":1}"#)));
        assert_eq!(other.open("ord-1", "m:1", &signed), None, "another secret");
        assert_eq!(seal.open("syd-1", "m:1", &signed), None, "another host");
        assert_eq!(seal.open("ord-1", "m:2", &signed), None, "another key");
        let forged = other.sign("ord-1", "m:1", 7, r#"{"a":2}"#);
        assert_eq!(seal.open("ord-1", "m:1", &forged), None);
        let tampered = signed.replace(r#""a":1"#, r#""a":2"#);
        assert_eq!(seal.open("ord-1", "m:1", &tampered), None);
        for junk in ["", ".", "zz.x", "00.x", "no tag", "00.1.x"] {
            assert_eq!(seal.open("ord-1", "m:1", junk), None, "{junk}");
        }
        assert_ne!(seal.cluster_id(), other.cluster_id());
        assert!(!seal.cluster_id().contains("cluster"));
    }

    /// The version is inside the tag: a captured value re-sent as a newer one fails the check.
    #[test]
    fn a_value_whose_version_was_changed_does_not_open() {
        let seal = Seal::new("cluster");
        let signed = seal.sign("ord-1", "m:1", 7, "v");
        for version in ["8", "70", "07", "+7", "18446744073709551615"] {
            let mutated = signed.replacen(".7.", &format!(".{version}."), 1);
            assert_ne!(mutated, signed);
            assert_eq!(seal.open("ord-1", "m:1", &mutated), None, "{version}");
        }
    }

    #[test]
    fn the_clock_only_goes_forward() {
        let mut clock = Clock::default();
        let mut last = 0;
        for _ in 0..1000 {
            let v = clock.tick();
            assert!(v > last);
            last = v;
        }
        // A restarted publisher (a new clock) starts above what the old one gave.
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(Clock::default().tick() > last);
    }
}
