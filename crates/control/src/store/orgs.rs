//! Orgs: their slugs and 6PN network ids (the tokens that speak for them are `tokens`).

use super::{Store, to_u32};
use crate::error::ControlPlaneError;
use rusqlite::{Connection, OptionalExtension, params};

/// An org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OrgRecord {
    pub slug: String,
    /// The org's 6PN network id, assigned in creation order from 1.
    pub network_id: u32,
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
}
