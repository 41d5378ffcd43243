//! Identifiers: machine ids (14 hex characters, as in the reference) and instance ids (ULIDs, one
//! per machine version).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Whether `name` is a DNS label: 1-63 lowercase letters, digits and hyphens, not starting or
/// ending with a hyphen. App names, org slugs and process group names must be.
pub fn is_dns_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}
use utoipa::ToSchema;

/// A machine's id: 14 lowercase hex characters, e.g. `3d8d9016b24e89`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "3d8d9016b24e89")]
pub struct MachineId(String);

impl MachineId {
    /// A new random machine id.
    pub fn random() -> Self {
        Self(random_hex(7))
    }

    /// Parses a machine id, refusing anything that is not 14 hex characters.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 14
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A machine version's id (a ULID). Every update of a machine's config makes a new one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "01JDK2Z6W5S0V5Q8X4C7B9N3M2")]
pub struct InstanceId(String);

impl InstanceId {
    /// A new instance id, ordered by creation time.
    pub fn new() -> Self {
        Self(ulid::Ulid::new().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for InstanceId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A new volume id: `vol_` + 16 lowercase hex characters.
pub fn new_volume_id() -> String {
    format!("vol_{}", random_hex(8))
}

/// Whether `s` is a volume id (safe as a file name on the volume's host).
pub fn is_volume_id(s: &str) -> bool {
    is_prefixed_hex(s, "vol_")
}

/// `prefix` + 16 lowercase hex characters.
fn is_prefixed_hex(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == 16
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A new volume snapshot id: `vs_` + 16 lowercase hex characters.
pub fn new_snapshot_id() -> String {
    format!("vs_{}", random_hex(8))
}

/// Whether `s` is a volume snapshot id.
pub fn is_snapshot_id(s: &str) -> bool {
    is_prefixed_hex(s, "vs_")
}

/// `n` random bytes from the operating system as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ids_are_14_hex() {
        let id = MachineId::random();
        assert_eq!(id.as_str().len(), 14);
        assert!(MachineId::parse(id.as_str()).is_some());
        assert!(MachineId::parse("xyz").is_none());
        assert!(is_volume_id(&new_volume_id()));
        assert!(is_snapshot_id(&new_snapshot_id()));
        assert!(!is_volume_id("vol_../../etc/passwd"));
        assert!(!is_volume_id("vol_ABCDEF0123456789"));
        assert!(MachineId::parse("3D8D9016B24E89").is_none());
    }
}
