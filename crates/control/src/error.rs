//! Failures of the control plane itself (its store, its data dir), as opposed to [`ApiError`]s,
//! which are answers to a caller. Every message names what failed and what to do.
//!
//! Such a failure reaches a caller as a 500 that says what to do and carries an error id; the
//! failure itself (SQLite's text, paths) goes to the control plane's log under that id, not to
//! the caller (see [`internal`]).

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
            other => internal("the control plane failed (an internal error)", &other),
        }
    }
}

/// A 500 for a failure inside the control plane: the caller gets `summary`, an error id and what
/// to do; the failure itself is logged under that id (it can hold SQLite's text, paths or
/// addresses, which are not the caller's business).
pub(crate) fn internal(summary: &str, failure: &dyn std::fmt::Display) -> ApiError {
    aloft_http::internal("the control plane", summary, failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_failure_is_summarized_not_sent() {
        let failure = ControlPlaneError::Store {
            op: "list apps",
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(1),
                Some("no such table: apps".into()),
            ),
        };
        let err = ApiError::from(failure);
        assert_eq!(err.status(), 500);
        let msg = err.body().error;
        assert!(!msg.contains("no such table"), "{msg}");
        assert!(!msg.contains("list apps"), "{msg}");
        assert!(msg.contains("error id "), "{msg}");
        assert!(msg.contains("retry"), "{msg}");
    }
}
