//! One request's context (as pingora's `CTX`): what the phases of its life learn and hand on,
//! from the listener that took it to the access log line. The edge and the worker fill it in
//! (`edge`, `worker`), the forward loop (`forward`) keeps its
//! attempts in it, and `listen` reports from it when the request ends.

use super::pick::Constraint;
use super::{Conn, Failure};
use std::time::Instant;

/// Which side of the proxy a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// A client's request (or connection), on a public listener.
    Edge,
    /// Another host's (or this host's) edge, on the worker listener, naming the machine.
    Worker,
}

/// What one request (or passed-through connection) carries through its phases.
pub(super) struct Ctx {
    /// Who sent it and on which listener; on the worker listener, the public port the client
    /// used (from the edge's headers) once the edge is checked.
    pub(super) conn: Conn,
    /// `fly-request-id` (empty for a passed-through connection).
    pub(super) request_id: String,
    /// When it came in.
    pub(super) started: Instant,
    /// The app it is for, once known.
    pub(super) app: Option<String>,
    /// The machine that answered (`-` for a redirect the proxy answered itself).
    pub(super) machine: Option<String>,
    /// Where it may go next: narrowed by client hints, `fly-replay` and failed machines.
    pub(super) constraint: Constraint,
    /// Times the request was sent again on a new connection to the same machine.
    pub(super) resends: usize,
    /// Times a machine bounced it with `fly-replay`.
    pub(super) replays: u32,
    /// The last machine's refusal: the error when no other machine is left.
    pub(super) refused: Option<Failure>,
}

impl Ctx {
    pub(super) fn new(conn: Conn, request_id: String) -> Self {
        Self {
            conn,
            request_id,
            started: Instant::now(),
            app: None,
            machine: None,
            constraint: Constraint::default(),
            resends: 0,
            replays: 0,
            refused: None,
        }
    }

    pub(super) fn role(&self) -> Role {
        if self.conn.listener.worker {
            Role::Worker
        } else {
            Role::Edge
        }
    }

    /// The app, for metrics (`-` until known).
    pub(super) fn app_name(&self) -> &str {
        self.app.as_deref().unwrap_or("-")
    }
}
