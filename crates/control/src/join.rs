//! Hosts joining the cluster without the cluster secret.
//!
//! An operator makes a one-time join token (`POST /internal/v1/join-tokens`, with the cluster
//! secret; `aloft hosts join-token`), usable for an hour by default and by one host id when it
//! names one. A host trades it once (`POST /internal/v1/hosts/{host}/join`, the token as bearer)
//! for its [`HostJoined`]: its own credential (only its SHA-256 is stored) and its [`HostKeys`],
//! each an HMAC-SHA256 of the cluster secret under a label, so nothing else is stored and a host
//! never holds the cluster secret (which still makes org tokens and join tokens). The agent key
//! is per host; the peer and gossip keys are shared by every host (see ARCHITECTURE.md's threat
//! model for what that leaves a compromised host).
//!
//! Decisions: a join token is used up only by a join that succeeds (a wrong host id or a host id
//! that already has a credential leaves it usable); an id whose credential was revoked may join
//! again with a new token.

use crate::ControlPlane;
use crate::auth;
use crate::store::JoinOutcome;
use aloft_types::ApiError;
use aloft_types::ids::random_hex;
use aloft_types::join::{HostJoined, HostKeys, JoinToken, JoinTokenRequest};
use aloft_types::time::{now_ms, parse_duration};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

/// What every join token starts with.
const JOIN_TOKEN_PREFIX: &str = "aloft_join_";
/// What every host credential starts with.
const CREDENTIAL_PREFIX: &str = "aloft_host_";
/// How long a join token may be used when the request says nothing.
const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// The longest a join token may be used.
const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The keys of `host`, derived from the cluster secret (see the module doc).
pub fn derive_host_keys(cluster_secret: &str, host: &str) -> HostKeys {
    let derive = |label: &str| {
        let mut mac = Hmac::<Sha256>::new_from_slice(cluster_secret.as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(label.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    HostKeys {
        agent: derive(&format!("aloft/v1/agent/{host}")),
        peer: derive("aloft/v1/peer"),
        gossip: derive("aloft/v1/gossip"),
    }
}

impl ControlPlane {
    /// `POST /internal/v1/join-tokens`: a new one-time join token (shown once).
    pub async fn create_join_token(&self, req: &JoinTokenRequest) -> Result<JoinToken, ApiError> {
        let ttl = match req.expires_in.as_deref() {
            Some(s) => parse_duration(s).map_err(|e| ApiError::invalid("expires_in", e))?,
            None => DEFAULT_TTL,
        };
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(ApiError::invalid(
                "expires_in",
                "a join token may be used for at most 7d; make a new one when it expires",
            ));
        }
        if let Some(host) = &req.host {
            check_host_id(host)?;
        }
        let token = format!("{JOIN_TOKEN_PREFIX}{}", random_hex(20));
        let now = now_ms();
        let expires_at = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        self.inner
            .store
            .create_join_token(auth::hash_token(&token), req.host.clone(), expires_at, now)
            .await?;
        tracing::info!(host = ?req.host, "made a join token");
        Ok(JoinToken {
            token,
            host: req.host.clone(),
            expires_at,
        })
    }

    /// `POST /internal/v1/hosts/{host}/join`: trades the join token in `header` for `host`'s
    /// credential and keys.
    pub(crate) async fn join_host(
        &self,
        host: &str,
        header: Option<&str>,
    ) -> Result<HostJoined, ApiError> {
        check_host_id(host)?;
        let token = auth::bearer(header)?;
        let credential = format!("{CREDENTIAL_PREFIX}{}", random_hex(20));
        let outcome = self
            .inner
            .store
            .join_host(
                auth::hash_token(token),
                host,
                auth::hash_token(&credential),
                now_ms(),
            )
            .await?;
        match outcome {
            JoinOutcome::Joined => {
                tracing::info!(host, "a host joined");
                Ok(HostJoined {
                    host: host.to_string(),
                    credential,
                    keys: self.host_keys(host),
                })
            }
            JoinOutcome::UnknownToken => Err(ApiError::Unauthorized(
                "not a join token, or it expired or was used: make a new one with \
                 `aloft hosts join-token` and put it in the host's join_token_file"
                    .into(),
            )),
            JoinOutcome::OtherHost(bound) => Err(ApiError::Forbidden(format!(
                "this join token is for host `{bound}`, not `{host}`"
            ))),
            JoinOutcome::HasCredential => Err(ApiError::Conflict(format!(
                "host `{host}` already joined (its credential is in its data dir as \
                 host-credential.json); restore that file, or revoke it with \
                 `aloft hosts revoke {host}` and join again"
            ))),
        }
    }

    /// Joins `host` in this process (`aloft dev up`, the test harness): a join token for it,
    /// traded at once. A credential the id had is revoked first (the caller holds the control
    /// plane itself, and lost the host's file).
    pub async fn enroll_host(&self, host: &str) -> Result<HostJoined, ApiError> {
        self.inner.store.revoke_host_credential(host).await?;
        let token = self
            .create_join_token(&JoinTokenRequest {
                host: Some(host.to_string()),
                expires_in: Some("1m".into()),
            })
            .await?;
        self.join_host(host, Some(&format!("Bearer {}", token.token)))
            .await
    }

    /// `host`'s keys, as it got them when it joined.
    pub(crate) fn host_keys(&self, host: &str) -> HostKeys {
        derive_host_keys(&self.inner.config.internal_token, host)
    }
}

/// A host id: 1 to 63 of `a-z`, `0-9`, `-`, `_`, `.`.
fn check_host_id(host: &str) -> Result<(), ApiError> {
    let ok = !host.is_empty()
        && host.len() <= 63
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "host",
            "a host id is 1 to 63 of a-z, 0-9, '-', '_' and '.', e.g. ord-1",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_secret_and_the_agent_key_per_host() {
        let a = derive_host_keys("s1", "ord-1");
        let b = derive_host_keys("s1", "ord-2");
        let c = derive_host_keys("s2", "ord-1");
        assert_ne!(a.agent, b.agent);
        assert_eq!((&a.peer, &a.gossip), (&b.peer, &b.gossip));
        assert_ne!(a.peer, c.peer);
        assert_ne!(a.gossip, c.gossip);
        assert_ne!(a.peer, a.gossip);
        assert_eq!(a.agent.len(), 64);
    }

    #[test]
    fn host_ids() {
        assert!(check_host_id("ord-1").is_ok());
        assert!(check_host_id("local.a_b").is_ok());
        for bad in ["", "ORD", "a/b", "a b", &"x".repeat(64)] {
            assert!(check_host_id(bad).is_err(), "{bad}");
        }
    }
}
