//! Orgs and API tokens: an org's 6PN network id, and the token hashes that say which org a
//! request speaks for.

use super::{Store, to_u32};
use crate::auth::ApiToken;
use crate::error::ControlPlaneError;
use rusqlite::{Connection, OptionalExtension, params};

/// An org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OrgRecord {
    pub slug: String,
    /// The org's 6PN network id, assigned in creation order from 1.
    pub network_id: u32,
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    pub org: OrgRecord,
    /// The token's name; sent to agents as the actor (lease owner).
    pub token_name: String,
    /// The token itself; sent to agents for the registry pulls of the request.
    pub token: ApiToken,
}

fn org_by_slug(c: &Connection, slug: &str) -> rusqlite::Result<Option<OrgRecord>> {
    c.query_row(
        "SELECT slug, network_id FROM orgs WHERE slug = ?1",
        [slug],
        |r| {
            Ok(OrgRecord {
                slug: r.get(0)?,
                network_id: to_u32(r.get(1)?),
            })
        },
    )
    .optional()
}

impl Store {
    /// Creates the org if it does not exist (with the next network id) and returns it.
    pub async fn ensure_org(&self, slug: &str, now: i64) -> Result<OrgRecord, ControlPlaneError> {
        let slug = slug.to_string();
        self.call("ensure org", move |c| {
            let tx = c.transaction()?;
            if let Some(org) = org_by_slug(&tx, &slug)? {
                return Ok(org);
            }
            let next: i64 = tx.query_row(
                "SELECT COALESCE(MAX(network_id), 0) + 1 FROM orgs",
                [],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO orgs (slug, network_id, created_at) VALUES (?1, ?2, ?3)",
                params![slug, next, now],
            )?;
            tx.commit()?;
            Ok(OrgRecord {
                slug,
                network_id: to_u32(next),
            })
        })
        .await
    }

    pub async fn org(&self, slug: &str) -> Result<Option<OrgRecord>, ControlPlaneError> {
        let slug = slug.to_string();
        self.call("read org", move |c| org_by_slug(c, &slug)).await
    }

    /// Stores a token hash for an existing org.
    pub async fn insert_token(
        &self,
        hash: String,
        org: &str,
        name: &str,
        now: i64,
    ) -> Result<(), ControlPlaneError> {
        let (org, name) = (org.to_string(), name.to_string());
        self.call("store token", move |c| {
            c.execute(
                "INSERT INTO api_tokens (token_hash, org_slug, name, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![hash, org, name, now],
            )
            .map(drop)
        })
        .await
    }

    /// The caller a token hash belongs to.
    /// The caller `token` (whose hash is `hash`) speaks for, if it is a valid token.
    pub async fn caller(
        &self,
        hash: String,
        token: ApiToken,
    ) -> Result<Option<Caller>, ControlPlaneError> {
        self.call("read token", move |c| {
            c.query_row(
                "SELECT o.slug, o.network_id, t.name FROM api_tokens t
                 JOIN orgs o ON o.slug = t.org_slug WHERE t.token_hash = ?1",
                [hash],
                |r| {
                    Ok(Caller {
                        org: OrgRecord {
                            slug: r.get(0)?,
                            network_id: to_u32(r.get(1)?),
                        },
                        token_name: r.get(2)?,
                        token: token.clone(),
                    })
                },
            )
            .optional()
        })
        .await
    }
}
