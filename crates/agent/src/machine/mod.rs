//! The machines of this host: their in-memory side ([`slot`]), the API's operations on them
//! ([`ops`]: the writes, under the machine's lock; [`reads`]: the reads, `wait`, `exec` and the
//! machine object), leases ([`lease`]), runs and their supervision and restart policy
//! ([`runs`]), and boot reconcile ([`reconcile`]).
//!
//! This module holds what they share: who is asking ([`Caller`]) and the errors for a machine in
//! the wrong state. State and locks are the [`Agent`](crate::Agent)'s and each [`slot::Slot`]'s
//! (see [`slot`]).

pub(crate) mod lease;
pub(crate) mod ops;
pub(crate) mod reads;
pub(crate) mod reconcile;
pub(crate) mod runs;
pub(crate) mod slot;

use crate::store::Record;
use aloft_image::Credentials;
use aloft_types::{ApiError, MachineState};

/// Who is asking, from the headers the control plane adds when it forwards a request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Caller {
    /// `fly-machine-lease-nonce`.
    pub nonce: Option<String>,
    /// `x-aloft-actor`: who would own a lease.
    pub actor: Option<String>,
    /// `x-aloft-org`: the org that owns the app.
    pub org: Option<String>,
    /// `x-aloft-network-id`, unparsed (only create needs it).
    pub network_id: Option<String>,
    /// `x-aloft-registry-token`: the caller's org token as registry credentials, for the pulls
    /// this request triggers (in memory only).
    pub registry: Option<Credentials>,
}

impl Caller {
    /// The owner of a lease this caller takes.
    pub fn owner(&self) -> String {
        self.actor.clone().unwrap_or_else(|| "unknown".into())
    }

    pub(super) fn network_id(&self) -> Result<u32, ApiError> {
        match self.network_id.as_deref() {
            None => Ok(1),
            Some(raw) => raw.trim().parse().map_err(|_| {
                ApiError::BadRequest(format!(
                    "header {}: `{raw}` is not a network id (a number from 0 to 4294967295)",
                    aloft_types::api::internal::NETWORK_HEADER
                ))
            }),
        }
    }
}

/// 412 for any write to a destroyed machine.
pub(crate) fn destroyed(rec: &Record) -> ApiError {
    ApiError::Precondition(format!(
        "machine {} is destroyed; create a new machine instead",
        rec.id
    ))
}

/// 412 for an operation that needs a started machine.
pub(super) fn not_started(rec: &Record) -> ApiError {
    if rec.state == MachineState::Destroyed {
        return destroyed(rec);
    }
    ApiError::Precondition(format!(
        "machine {id} is {state}; start it first (aloft machine start {id})",
        id = rec.id,
        state = rec.state
    ))
}

/// 412 for a machine an interrupted operation left in a transient state.
pub(super) fn busy(rec: &Record) -> ApiError {
    ApiError::Precondition(format!(
        "machine {} is {}; wait for it to settle and retry",
        rec.id, rec.state
    ))
}
