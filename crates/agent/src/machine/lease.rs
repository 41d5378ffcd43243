//! Leases: a caller holding a machine's lease is the only one whose writes go through (others
//! get 409) until it expires or is released. Expired leases are ignored.
//!
//! State: the lease of each machine, in the store. Taking and releasing a lease run under the
//! machine's lock; the check every write makes reads the store under that write's lock.

use super::{Caller, destroyed};
use crate::agent::Agent;
use crate::store::Record;
use aloft_types::api::{LEASE_NONCE_HEADER, LeaseRequest, LeaseResponse, OkResponse};
use aloft_types::time::{now_ms, rfc3339};
use aloft_types::{ApiError, MachineState};
use aloft_types::{api::Lease, ids::random_hex};

/// Seconds a lease lasts when the request does not say.
const DEFAULT_TTL: u64 = 30;
/// The longest lease (one day); hold one longer by refreshing it.
const MAX_TTL: u64 = 86_400;

/// Checks a requested lease length (`field` names it in the error).
pub(crate) fn validate_ttl(field: &str, ttl: u64) -> Result<u64, ApiError> {
    if (1..=MAX_TTL).contains(&ttl) {
        Ok(ttl)
    } else {
        Err(ApiError::Invalid {
            message: format!(
                "{field}: {ttl} seconds is not a lease length; use 1 to {MAX_TTL} (refresh a lease to hold it longer)"
            ),
            field: field.to_string(),
            allowed: vec![format!("1..={MAX_TTL}")],
        })
    }
}

fn now_secs() -> i64 {
    now_ms() / 1000
}

impl Agent {
    /// The machine's lease, if one is held and has not expired.
    fn live_lease(&self, rec: &Record) -> Result<Option<Lease>, ApiError> {
        Ok(self
            .store()
            .lease(&rec.id)?
            .filter(|l| l.expires_at > now_secs()))
    }

    /// Refuses (409) a write to a machine whose lease someone else holds.
    pub(crate) fn check_lease(&self, rec: &Record, nonce: Option<&str>) -> Result<(), ApiError> {
        match self.live_lease(rec)? {
            Some(lease) if nonce != Some(lease.nonce.as_str()) => Err(conflict(rec, &lease)),
            _ => Ok(()),
        }
    }

    /// Takes a lease on the machine, or refreshes the caller's own (`nonce` matches it).
    pub(crate) fn take_lease(
        &self,
        rec: &Record,
        ttl: u64,
        owner: String,
        description: Option<String>,
        nonce: Option<&str>,
    ) -> Result<Lease, ApiError> {
        let expires_at = now_secs().saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
        let lease = match self.live_lease(rec)? {
            Some(held) if nonce == Some(held.nonce.as_str()) => Lease {
                expires_at,
                version: rec.instance_id.to_string(),
                description: description.unwrap_or(held.description),
                ..held
            },
            Some(held) => return Err(conflict(rec, &held)),
            // A refresh of a lease that is gone (expired or released) makes no new one: its
            // holder would not know the new nonce.
            None if nonce.is_some() => {
                return Err(ApiError::Conflict(format!(
                    "machine {}'s lease with that nonce expired or was released; take a new one (POST .../lease without the nonce header)",
                    rec.id
                )));
            }
            None => Lease {
                nonce: random_hex(8),
                expires_at,
                owner,
                description: description.unwrap_or_default(),
                version: rec.instance_id.to_string(),
            },
        };
        self.store().put_lease(&rec.id, &lease)?;
        Ok(lease)
    }

    /// `POST .../lease`.
    pub(crate) async fn acquire_lease(
        &self,
        app: &str,
        id: &str,
        caller: &Caller,
        req: LeaseRequest,
    ) -> Result<LeaseResponse, ApiError> {
        let ttl = validate_ttl("ttl", req.ttl.unwrap_or(DEFAULT_TTL))?;
        let owner = caller.owner();
        let nonce = caller.nonce.clone();
        self.with_machine_unleased(app, id, move |agent, m| async move {
            if m.rec.state == MachineState::Destroyed {
                return Err(destroyed(&m.rec));
            }
            let lease = agent.take_lease(&m.rec, ttl, owner, req.description, nonce.as_deref())?;
            Ok(LeaseResponse {
                status: "success".into(),
                data: lease,
            })
        })
        .await
    }

    /// `GET .../lease`.
    pub(crate) fn get_lease(&self, app: &str, id: &str) -> Result<LeaseResponse, ApiError> {
        let rec = self.find(app, id)?;
        match self.live_lease(&rec)? {
            Some(lease) => Ok(LeaseResponse {
                status: "success".into(),
                data: lease,
            }),
            None => Err(ApiError::NotFound(format!(
                "machine {} holds no lease; take one with POST .../lease",
                rec.id
            ))),
        }
    }

    /// `DELETE .../lease`: releases the caller's lease (no lease held is fine).
    pub(crate) async fn release_lease(
        &self,
        app: &str,
        id: &str,
        caller: &Caller,
    ) -> Result<OkResponse, ApiError> {
        let nonce = caller.nonce.clone();
        self.with_machine_unleased(app, id, move |agent, m| async move {
            agent.check_lease(&m.rec, nonce.as_deref())?;
            agent.store().delete_lease(&m.rec.id)?;
            Ok(OkResponse::ok())
        })
        .await
    }
}

fn conflict(rec: &Record, lease: &Lease) -> ApiError {
    let left = lease.expires_at - now_secs();
    ApiError::Conflict(format!(
        "machine {} is leased by {} until {} ({left}s from now); send the lease's nonce in the {LEASE_NONCE_HEADER} header, or wait until it expires",
        rec.id,
        lease.owner,
        rfc3339(lease.expires_at.saturating_mul(1000)),
    ))
}
