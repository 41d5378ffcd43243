//! The dev data directory and the files `dev up` keeps in it: claimed by one `dev up` at a
//! time (a pid file), the internal token and the `personal` org's API token (0600, kept while
//! valid), and `api-url`, written last once everything is ready and removed on a clean stop.

use super::ORG;
use crate::files::{restrict, write_atomic};
use aloft_control::ControlPlane;
use aloft_types::datadir::{API_URL_FILE, INTERNAL_TOKEN_FILE, TOKEN_FILE};
use anyhow::{Context, Result, anyhow, bail};
use std::fs;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The file holding the pid of the `dev up` that uses the data dir.
const PID_FILE: &str = "dev-up.pid";

/// The dev data directory and the files `dev up` keeps in it.
pub(super) struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    /// Creates the directory (0700) and checks that it can be written, before anything is.
    pub(super) fn prepare(root: &Path) -> Result<Self> {
        let fix = "pass --data-dir with a directory you can write (or set ALOFT_DATA_DIR)";
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| {
                anyhow!(
                    "cannot create the data directory {}: {e}; {fix}",
                    root.display()
                )
            })?;
        let probe = root.join(format!(".write-test-{}", std::process::id()));
        fs::write(&probe, b"")
            .and_then(|()| fs::remove_file(&probe))
            .map_err(|e| {
                anyhow!(
                    "cannot write in the data directory {}: {e}; fix its permissions or {fix}",
                    root.display()
                )
            })?;
        let data = Self {
            root: root.to_path_buf(),
        };
        data.claim()?;
        // A file left by a run that was killed: it is written again once this run is ready.
        data.remove_api_url();
        Ok(data)
    }

    /// Makes this process the data dir's only user: two agents on one store would both drive
    /// the same machines. A pid file left by a process that is gone is taken over.
    fn claim(&self) -> Result<()> {
        let path = self.root.join(PID_FILE);
        for _ in 0..2 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    return f
                        .write_all(format!("{}\n", std::process::id()).as_bytes())
                        .with_context(|| format!("cannot write {}", path.display()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    if let Some(pid) = holder.filter(|pid| is_aloft(*pid)) {
                        bail!(
                            "another `aloft dev up` (pid {pid}) is using the data directory {}; stop it first, or pass another --data-dir",
                            self.root.display()
                        );
                    }
                    let _ = fs::remove_file(&path);
                }
                Err(e) => bail!("cannot write {}: {e}", path.display()),
            }
        }
        bail!(
            "another `aloft dev up` is starting on the data directory {}; stop it first, or pass another --data-dir",
            self.root.display()
        )
    }

    /// Gives the data dir up (clean stop).
    pub(super) fn release(&self) {
        self.remove_api_url();
        let _ = fs::remove_file(self.root.join(PID_FILE));
    }

    /// The internal token: generated once, then reused.
    pub(super) fn internal_token(&self) -> Result<String> {
        let path = self.root.join(INTERNAL_TOKEN_FILE);
        match fs::read_to_string(&path) {
            Ok(t) if !t.trim().is_empty() => {
                restrict(&path)?;
                return Ok(t.trim().to_string());
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => bail!(
                "cannot read {}: {e}; fix its permissions, or delete it to make a new one",
                path.display()
            ),
        }
        let token = aloft_types::ids::random_hex(32);
        write_atomic(&path, &token, 0o600)?;
        Ok(token)
    }

    /// The API token file for org `personal`: its token is kept while the control plane accepts
    /// it; otherwise a new token is made and written. Returns the file's path.
    pub(super) async fn api_token(&self, control_plane: &ControlPlane) -> Result<PathBuf> {
        let path = self.root.join(TOKEN_FILE);
        if let Ok(existing) = fs::read_to_string(&path) {
            let existing = existing.trim();
            if !existing.is_empty()
                && control_plane.org_of_token(existing).await.as_deref() == Some(ORG)
            {
                restrict(&path)?;
                return Ok(path);
            }
            tracing::warn!(
                "the token in {} is not valid for org `{ORG}` here; writing a new one",
                path.display()
            );
        }
        let token = control_plane
            .create_token(ORG, "aloft dev up")
            .await
            .with_context(|| format!("creating an API token for org `{ORG}`"))?;
        write_atomic(&path, &token, 0o600)?;
        Ok(path)
    }

    pub(super) fn write_api_url(&self, url: &str) -> Result<()> {
        write_atomic(&self.root.join(API_URL_FILE), url, 0o644)
    }

    fn remove_api_url(&self) {
        let path = self.root.join(API_URL_FILE);
        if let Err(e) = fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
    }
}

/// Whether `pid` is a running `aloft` process.
fn is_aloft(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        cmdline
            .split(|b| *b == 0)
            .next()
            .and_then(|argv0| Path::new(std::str::from_utf8(argv0).ok()?).file_name())
            .is_some_and(|name| name == "aloft")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_files_are_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::prepare(&dir.path().join("a/b")).unwrap();
        let t1 = data.internal_token().unwrap();
        let t2 = data.internal_token().unwrap();
        assert_eq!(t1, t2);
        assert_eq!(t1.len(), 64);
        let mode = fs::metadata(data.root.join(INTERNAL_TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_data_dir_under_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "x").unwrap();
        let err = DataDir::prepare(&file.join("data"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("cannot create the data directory"), "{err}");
        assert!(err.contains("--data-dir"), "{err}");
    }
}
