//! Failures of the control plane itself (its store, its data dir), as opposed to [`ApiError`]s,
//! which are answers to a caller. Every message names what failed and what to do.

use aloft_types::ApiError;
use std::path::PathBuf;

/// An error of the control plane: opening it, or a store operation behind an API call.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// The data dir cannot be created or written.
    #[error(
        "cannot use the data dir {path}: {source}; create it, make it writable by this user, or pick another one"
    )]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The database cannot be opened or its schema cannot be written.
    #[error(
        "cannot open the control-plane database {path}: {source}; check that the file is not corrupt and that no other control plane holds it"
    )]
    OpenStore {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The secrets key cannot be read, made or used.
    #[error(
        "the secrets key {0} cannot be used: {1} (without it no app secret can be read; keep it with the database)"
    )]
    SecretsKey(PathBuf, String),
    /// The database was written by a newer aloft.
    #[error(
        "the control-plane database {path} has schema version {found}, newer than this aloft understands ({supported}); run a newer aloft"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// A query failed.
    #[error("control-plane store: {op} failed: {source}")]
    Store {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// A store task panicked or was cancelled.
    #[error("control-plane store: {op} did not finish: {source}")]
    StoreTask {
        op: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    /// An org slug is not a DNS label.
    #[error(
        "`{0}` is not a valid org slug: use 1-63 lowercase letters, digits and hyphens, not starting or ending with a hyphen"
    )]
    InvalidOrgSlug(String),
    /// A token name that cannot be sent to agents as the actor header.
    #[error(
        "`{0}` is not a valid token name: use 1-64 printable ASCII characters (it names the actor of requests)"
    )]
    InvalidTokenName(String),
    /// The org does not exist.
    #[error("org `{0}` does not exist; create it first (ensure_org or POST /internal/v1/orgs)")]
    UnknownOrg(String),
    /// The HTTP client used to reach agents could not be built.
    #[error("cannot build the HTTP client for agents: {0}")]
    HttpClient(#[source] reqwest::Error),
}

impl From<ControlPlaneError> for ApiError {
    fn from(err: ControlPlaneError) -> Self {
        match err {
            ControlPlaneError::InvalidOrgSlug(_) => ApiError::invalid("slug", err.to_string()),
            ControlPlaneError::InvalidTokenName(_) => {
                ApiError::invalid("token_name", err.to_string())
            }
            ControlPlaneError::UnknownOrg(_) => ApiError::NotFound(err.to_string()),
            other => {
                tracing::error!(error = %other, "control plane failure");
                ApiError::Internal(format!(
                    "the control plane failed: {other}; retry, and tell the operator if it persists"
                ))
            }
        }
    }
}
