//! A host's identity in its cluster: its credential and keys (`aloft_types::join::HostJoined`),
//! kept in `<data_dir>/host-credential.json` (mode 0600). At its first start a host has none:
//! `server host` trades its one-time join token for them (see `server::join`); `dev up` enrolls
//! its host with the control plane in its process. A host never holds
//! the cluster secret.

use crate::files::write_atomic;
use aloft_types::join::HostJoined;
use anyhow::{Result, anyhow, bail};
use std::path::{Path, PathBuf};

/// Where a host keeps what it got when it joined.
pub(crate) fn identity_file(data_dir: &Path) -> PathBuf {
    data_dir.join("host-credential.json")
}

/// The identity of host `host_id` kept in `data_dir`, or got from `get` and kept.
pub(crate) async fn kept_or(
    data_dir: &Path,
    host_id: &str,
    get: impl std::future::Future<Output = Result<HostJoined>>,
) -> Result<HostJoined> {
    let file = identity_file(data_dir);
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            let joined: HostJoined = serde_json::from_str(&text).map_err(|e| {
                anyhow!(
                    "{} is not a host credential ({e}); restore it from a backup, or revoke the \
                     host's credential (`aloft hosts revoke {}`), remove the file and join again \
                     with a new join token",
                    file.display(),
                    host_id
                )
            })?;
            if joined.host != host_id {
                bail!(
                    "{} belongs to host `{}`, not `{host_id}`: set the host's id back, or use \
                     another data dir",
                    file.display(),
                    joined.host,
                );
            }
            Ok(joined)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let joined = get.await?;
            if joined.host != host_id {
                bail!(
                    "the control plane joined host `{}`, not `{host_id}`",
                    joined.host
                );
            }
            let text = serde_json::to_string(&joined)?;
            write_atomic(&file, &text, 0o600)?;
            tracing::info!(host = %host_id, file = %file.display(), "joined the cluster");
            Ok(joined)
        }
        Err(e) => Err(anyhow!("cannot read {}: {e}", file.display())),
    }
}
