//! API tokens: the hash of each token (never the token), its org, name and scope (org-wide, or
//! one app by the app's id), its expiry and when it was revoked. Who a presented token speaks for
//! is decided by the app layer (`crate::tokens`) from the row read here.

use super::orgs::OrgRecord;
use super::{Store, to_u32};
use crate::auth::ApiToken;
use crate::error::ControlPlaneError;
use rusqlite::{OptionalExtension, Row, params};

/// What a token may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Every app of its org, new apps and tokens.
    Org,
    /// One app (a deploy token): its machines, secrets, volumes, certificates and releases.
    App { id: String, name: String },
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    pub org: OrgRecord,
    /// The token's name; sent to agents as the actor (lease owner).
    pub token_name: String,
    /// What the token may reach.
    pub scope: Scope,
    /// The token itself; sent to agents for the registry pulls of the request.
    pub token: ApiToken,
}

/// A stored token (without its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenRecord {
    pub id: String,
    pub org_slug: String,
    pub name: String,
    /// The id of the one app of a deploy token; `None` for an org-wide token.
    pub app_id: Option<String>,
    /// That app's name, `None` when the app was deleted (the token then reaches nothing).
    pub app_name: Option<String>,
    pub created_at: i64,
    /// Milliseconds since the epoch; `None`: never.
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

const TOKEN_SELECT: &str = "SELECT t.id, t.org_slug, t.name, t.app_id, a.name, t.created_at,
        t.expires_at, t.revoked_at, o.network_id
    FROM api_tokens t JOIN orgs o ON o.slug = t.org_slug
    LEFT JOIN apps a ON a.id = t.app_id AND a.org_slug = t.org_slug";

fn token_row(r: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: r.get(0)?,
        org_slug: r.get(1)?,
        name: r.get(2)?,
        app_id: r.get(3)?,
        app_name: r.get(4)?,
        created_at: r.get(5)?,
        expires_at: r.get(6)?,
        revoked_at: r.get(7)?,
    })
}

impl Store {
    /// Stores a new token (`hash` is its SHA-256) of an existing org.
    pub async fn insert_token(
        &self,
        hash: String,
        token: TokenRecord,
    ) -> Result<(), ControlPlaneError> {
        self.call("store token", move |c| {
            c.execute(
                "INSERT INTO api_tokens (token_hash, id, org_slug, name, app_id, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    hash,
                    token.id,
                    token.org_slug,
                    token.name,
                    token.app_id,
                    token.created_at,
                    token.expires_at
                ],
            )
            .map(drop)
        })
        .await
    }

    /// The token whose hash is `hash` and its org, revoked and expired ones included.
    pub async fn token_by_hash(
        &self,
        hash: String,
    ) -> Result<Option<(OrgRecord, TokenRecord)>, ControlPlaneError> {
        self.call("read token", move |c| {
            c.query_row(
                &format!("{TOKEN_SELECT} WHERE t.token_hash = ?1"),
                [hash],
                |r| {
                    let token = token_row(r)?;
                    let org = OrgRecord {
                        slug: token.org_slug.clone(),
                        network_id: to_u32(r.get(8)?),
                    };
                    Ok((org, token))
                },
            )
            .optional()
        })
        .await
    }

    /// The org's tokens that are not revoked, oldest first.
    pub async fn tokens_of_org(&self, org: &str) -> Result<Vec<TokenRecord>, ControlPlaneError> {
        let org = org.to_string();
        self.call("list tokens", move |c| {
            let mut stmt = c.prepare(&format!(
                "{TOKEN_SELECT} WHERE t.org_slug = ?1 AND t.revoked_at IS NULL
                 ORDER BY t.created_at, t.id"
            ))?;
            let rows = stmt.query_map([org], token_row)?;
            rows.collect()
        })
        .await
    }

    /// Revokes the org's token `id`; `false` when the org has no such token not yet revoked.
    pub async fn revoke_token(
        &self,
        org: &str,
        id: &str,
        now: i64,
    ) -> Result<bool, ControlPlaneError> {
        let (org, id) = (org.to_string(), id.to_string());
        self.call("revoke token", move |c| {
            let n = c.execute(
                "UPDATE api_tokens SET revoked_at = ?3
                 WHERE org_slug = ?1 AND id = ?2 AND revoked_at IS NULL",
                params![org, id, now],
            )?;
            Ok(n == 1)
        })
        .await
    }
}
