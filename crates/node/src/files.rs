//! Files a node keeps beside its state: written whole or not at all, secrets readable by their
//! owner only.

use anyhow::{Context, Result, anyhow, bail};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes a file whole or not at all (a temporary file, then a rename), with `mode`.
pub(crate) fn write_atomic(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    write_then_rename(&tmp, path, contents, mode).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        anyhow!(
            "cannot write {}: {e}; check the data directory's permissions and free space",
            path.display()
        )
    })
}

fn write_then_rename(tmp: &Path, path: &Path, contents: &str, mode: u32) -> std::io::Result<()> {
    let _ = fs::remove_file(tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    fs::rename(tmp, path)
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
