//! The agent's own errors (opening and using its store), and how they reach API callers.
//! No state.

use aloft_types::ApiError;
use std::path::PathBuf;

/// What can go wrong in the agent outside the API's own rules. Every message names what failed
/// and, where there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The data directory or the database file in it cannot be created or written.
    #[error("cannot write {path}: {source}; choose a writable --data-dir")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// SQLite refused to open or set up the database.
    #[error(
        "cannot open the agent store {path}: {source}; check that the file is a database aloft wrote and that the directory is writable (--data-dir)"
    )]
    OpenStore {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The store was written by a newer aloft.
    #[error(
        "the agent store {path} has schema version {found}, newer than this agent understands ({supported}); run a newer aloft"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// A query against the store failed.
    #[error("the agent store failed while it {op}: {source}")]
    Query {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// A row in the store could not be read back.
    #[error("the agent store holds an unreadable {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// The agent was shut down (or crashed, in tests); it writes nothing more.
    #[error("the agent is shutting down; retry the request once it is back")]
    Closed,
}

impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> Self {
        match e {
            AgentError::Closed => ApiError::Unavailable(e.to_string()),
            // The store's text and paths are for the operator's log, not the caller.
            other => aloft_http::internal("the agent", "the agent's store failed", &other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What reaches a caller (through the control plane, which passes agents' answers on) names
    /// no SQLite text or path: those are in the agent's log under the error id.
    #[test]
    fn a_store_failure_reaches_callers_as_an_id_not_its_details() {
        let failure = AgentError::Query {
            op: "read machine m1",
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(11),
                Some("database disk image is malformed: /var/lib/aloft/agent/agent.db".into()),
            ),
        };
        let err = ApiError::from(failure);
        assert_eq!(err.status(), 500);
        let msg = err.body().error;
        assert!(msg.contains("error id"), "{msg}");
        assert!(
            !msg.contains("malformed") && !msg.contains("agent.db"),
            "{msg}"
        );
        assert_eq!(
            ApiError::from(AgentError::Closed).status(),
            503,
            "a stopping agent is still a retry"
        );
    }
}
