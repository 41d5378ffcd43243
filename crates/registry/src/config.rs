//! How a registry is set up: [`RegistryConfig`] (build it with [`RegistryConfig::new`] and
//! adjust fields) and, for a regional cache, its [`Upstream`].

use crate::error::{RegistryError, Result};
use std::path::PathBuf;
use std::time::Duration;

/// Configuration of a [`crate::Registry`].
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Where blobs, repositories and uploads live (created if missing).
    pub data_dir: PathBuf,
    /// When set, the registry is a pull-through, write-through cache of this registry.
    pub upstream: Option<Upstream>,
    /// Largest manifest accepted, in bytes (default 4 MiB).
    pub max_manifest_bytes: usize,
    /// An upload that receives nothing for this long is removed (default 1 h).
    pub upload_ttl: Duration,
    /// Garbage collection never deletes a blob younger than this (default 1 h), so that a push
    /// whose blobs are uploaded but whose manifest is not yet is not broken.
    pub gc_grace: Duration,
    /// URL of the token endpoint announced in `WWW-Authenticate`. `None`: `http://<Host>/v2/token`
    /// from each request's `Host` header (set it when clients reach the registry through TLS or a
    /// proxy).
    pub realm: Option<String>,
    /// The `service` named in the challenge and expected by the token endpoint (default `aloft`).
    pub service: String,
}

impl RegistryConfig {
    /// The defaults, storing under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> RegistryConfig {
        RegistryConfig {
            data_dir: data_dir.into(),
            upstream: None,
            max_manifest_bytes: 4 * 1024 * 1024,
            upload_ttl: Duration::from_secs(3600),
            gc_grace: Duration::from_secs(3600),
            realm: None,
            service: "aloft".to_string(),
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.max_manifest_bytes == 0 {
            return Err(RegistryError::Config(
                "max_manifest_bytes must be at least 1".into(),
            ));
        }
        if self.service.is_empty() || self.service.contains('"') {
            return Err(RegistryError::Config(format!(
                "service `{}` must be non-empty and contain no `\"`",
                self.service
            )));
        }
        if self.realm.as_deref().is_some_and(|r| r.contains('"')) {
            return Err(RegistryError::Config("realm must contain no `\"`".into()));
        }
        Ok(())
    }
}

/// The registry a regional cache pulls from and pushes through to.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Base URL, e.g. `http://10.0.0.1:5000` (http only: this build has no TLS).
    pub url: String,
    /// Token sent to the upstream (Basic auth, as password) for every request. `None` (the
    /// default): each caller's own org token is forwarded, so the upstream checks tenancy too.
    /// Set it only for a single-org mirror: every caller then reads what this token can read.
    pub token: Option<String>,
    /// Attempts per upstream operation before answering `UNAVAILABLE` (default 3).
    pub attempts: u32,
    /// Wait before the second attempt, doubled before each later one (default 200 ms).
    pub backoff: Duration,
}

impl Upstream {
    /// An upstream at `url` with default retries, forwarding callers' tokens.
    pub fn new(url: impl Into<String>) -> Upstream {
        Upstream {
            url: url.into(),
            token: None,
            attempts: 3,
            backoff: Duration::from_millis(200),
        }
    }
}
