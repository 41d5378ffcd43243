//! What a machine gets on its filesystem besides its image: a volume mounted, and files written.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A volume mounted into the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Mount {
    pub volume: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_gb: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
    /// Fields aloft does not know: kept and echoed unchanged (the reference's clients send
    /// more than aloft reads).
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: BTreeMap<String, Value>,
}

/// A file written into the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct File {
    pub guest_path: String,
    /// Base64 of the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Fields aloft does not know: kept and echoed unchanged (the reference's clients send
    /// more than aloft reads).
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: BTreeMap<String, Value>,
}

/// Why a volume cannot be mounted at `path`, if it cannot: it must be absolute and plain (no
/// `.`, `..` or empty parts), not `/`, and not where the platform mounts its own filesystems.
pub fn mount_path_problem(path: &str) -> Option<&'static str> {
    if !path.starts_with('/') {
        return Some("must be an absolute path, such as /data");
    }
    let parts: Vec<&str> = path[1..]
        .strip_suffix('/')
        .unwrap_or(&path[1..])
        .split('/')
        .collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Some("must be a plain absolute path (no `.`, `..` or `//`), such as /data");
    }
    if ["proc", "dev", "sys", "run", ".aloft"].contains(&parts[0]) {
        return Some(
            "is where the platform mounts its own filesystems: pick another path, such as /data",
        );
    }
    None
}
