//! Hosts' credentials (only their SHA-256) and the one-time join tokens (only their SHA-256)
//! hosts trade for them (see `crate::join`).

use super::Store;
use crate::error::ControlPlaneError;
use rusqlite::{OptionalExtension, params};

/// What trading a join token for a host credential came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JoinOutcome {
    /// The credential is stored and the token used up.
    Joined,
    /// No such token, or it expired (or was used).
    UnknownToken,
    /// The token is for another host id (it stays usable by that one).
    OtherHost(String),
    /// The host id already has a credential (the token stays usable).
    HasCredential,
}

impl Store {
    /// Stores a join token's hash, usable until `expires_at` by `host_id` (any id when `None`),
    /// and forgets tokens that expired.
    pub async fn create_join_token(
        &self,
        token_hash: String,
        host_id: Option<String>,
        expires_at: i64,
        now: i64,
    ) -> Result<(), ControlPlaneError> {
        self.call("create join token", move |c| {
            c.execute("DELETE FROM join_tokens WHERE expires_at <= ?1", [now])?;
            c.execute(
                "INSERT INTO join_tokens (token_hash, host_id, expires_at, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![token_hash, host_id, expires_at, now],
            )
            .map(drop)
        })
        .await
    }

    /// In one transaction: uses up the join token hashing to `token_hash` and stores
    /// `credential_hash` as `host_id`'s credential, or changes nothing and says why not.
    pub async fn join_host(
        &self,
        token_hash: String,
        host_id: &str,
        credential_hash: String,
        now: i64,
    ) -> Result<JoinOutcome, ControlPlaneError> {
        let host_id = host_id.to_string();
        self.call("join host", move |c| {
            let tx = c.transaction()?;
            let token: Option<Option<String>> = tx
                .query_row(
                    "SELECT host_id FROM join_tokens WHERE token_hash = ?1 AND expires_at > ?2",
                    params![token_hash, now],
                    |r| r.get(0),
                )
                .optional()?;
            let outcome = match token {
                None => JoinOutcome::UnknownToken,
                Some(Some(bound)) if bound != host_id => JoinOutcome::OtherHost(bound),
                Some(_) => {
                    let has: Option<String> = tx
                        .query_row(
                            "SELECT host_id FROM host_credentials WHERE host_id = ?1",
                            [&host_id],
                            |r| r.get(0),
                        )
                        .optional()?;
                    if has.is_some() {
                        JoinOutcome::HasCredential
                    } else {
                        tx.execute(
                            "DELETE FROM join_tokens WHERE token_hash = ?1",
                            [&token_hash],
                        )?;
                        tx.execute(
                            "INSERT INTO host_credentials (host_id, credential_hash, created_at)
                             VALUES (?1, ?2, ?3)",
                            params![host_id, credential_hash, now],
                        )?;
                        JoinOutcome::Joined
                    }
                }
            };
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    /// Forgets `host_id`'s credential (it stops working at once; the host id may join again with
    /// a new join token). `false` when it had none.
    pub async fn revoke_host_credential(&self, host_id: &str) -> Result<bool, ControlPlaneError> {
        let host_id = host_id.to_string();
        self.call("revoke host credential", move |c| {
            c.execute("DELETE FROM host_credentials WHERE host_id = ?1", [host_id])
                .map(|changed| changed == 1)
        })
        .await
    }

    /// The host whose credential hashes to `credential_hash`.
    pub async fn host_of_credential(
        &self,
        credential_hash: String,
    ) -> Result<Option<String>, ControlPlaneError> {
        self.call("read host credential", move |c| {
            c.query_row(
                "SELECT host_id FROM host_credentials WHERE credential_hash = ?1",
                [credential_hash],
                |r| r.get(0),
            )
            .optional()
        })
        .await
    }
}
