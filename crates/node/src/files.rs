//! Files a node keeps beside its state: written whole or not at all, secrets readable by their
//! owner only.

use anyhow::{Context, Result, anyhow, bail};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes `contents` and a newline to `path`, whole or not at all, with `mode`.
pub(crate) fn write_atomic(path: &Path, contents: &str, mode: u32) -> Result<()> {
    aloft_durable::write(path, format!("{contents}\n").as_bytes(), mode).map_err(|e| {
        anyhow!(
            "cannot write {}: {e}; check the data directory's permissions and free space",
            path.display()
        )
    })
}

/// Makes a secret file readable by its owner only.
pub(crate) fn restrict(path: &Path) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private (mode 0600)", path.display()))
}

/// A secret kept in a file (the cluster's internal token): trimmed, never empty.
pub(crate) fn read_secret(path: &Path) -> Result<String> {
    let s = fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the internal token from {}: pass --internal-token-file, or run this where `aloft dev up` keeps its data",
            path.display()
        )
    })?;
    let s = s.trim().to_string();
    if s.is_empty() {
        bail!(
            "{} is empty: it should hold the cluster's internal token",
            path.display()
        );
    }
    Ok(s)
}
