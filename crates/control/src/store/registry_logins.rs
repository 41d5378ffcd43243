//! The orgs' stored registry logins (`registry_logins`): per org and registry host, the username
//! and the password sealed (see `crate::registry_logins`).

use super::Store;
use crate::error::ControlPlaneError;
use crate::secrets::Sealed;
use rusqlite::{OptionalExtension, params};

/// A registry login as stored: the password sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegistryLoginRecord {
    pub host: String,
    pub username: String,
    pub sealed: Sealed,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<RegistryLoginRecord> {
    Ok(RegistryLoginRecord {
        host: r.get(0)?,
        username: r.get(1)?,
        sealed: Sealed {
            nonce: r.get(2)?,
            ciphertext: r.get(3)?,
        },
        created_at: r.get(4)?,
    })
}

impl Store {
    /// Adds or replaces the org's login for `login.host`.
    pub async fn set_registry_login(
        &self,
        org: &str,
        login: RegistryLoginRecord,
    ) -> Result<(), ControlPlaneError> {
        let org = org.to_string();
        self.call("set registry login", move |c| {
            c.execute(
                "INSERT INTO registry_logins (org_slug, host, username, nonce, ciphertext, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (org_slug, host) DO UPDATE SET username = ?3, nonce = ?4,
                     ciphertext = ?5, created_at = ?6",
                params![
                    org,
                    login.host,
                    login.username,
                    login.sealed.nonce,
                    login.sealed.ciphertext,
                    login.created_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// The org's logins, by host.
    pub async fn registry_logins(
        &self,
        org: &str,
    ) -> Result<Vec<RegistryLoginRecord>, ControlPlaneError> {
        let org = org.to_string();
        self.call("list registry logins", move |c| {
            let mut stmt = c.prepare(
                "SELECT host, username, nonce, ciphertext, created_at FROM registry_logins
                 WHERE org_slug = ?1 ORDER BY host",
            )?;
            let rows = stmt.query_map([org], record)?;
            rows.collect()
        })
        .await
    }

    /// The org's login for exactly `host`, if it stored one.
    pub async fn registry_login(
        &self,
        org: &str,
        host: &str,
    ) -> Result<Option<RegistryLoginRecord>, ControlPlaneError> {
        let (org, host) = (org.to_string(), host.to_string());
        self.call("get registry login", move |c| {
            c.query_row(
                "SELECT host, username, nonce, ciphertext, created_at FROM registry_logins
                 WHERE org_slug = ?1 AND host = ?2",
                params![org, host],
                record,
            )
            .optional()
        })
        .await
    }

    /// Removes the org's login for `host`; whether there was one.
    pub async fn remove_registry_login(
        &self,
        org: &str,
        host: &str,
    ) -> Result<bool, ControlPlaneError> {
        let (org, host) = (org.to_string(), host.to_string());
        self.call("remove registry login", move |c| {
            let n = c.execute(
                "DELETE FROM registry_logins WHERE org_slug = ?1 AND host = ?2",
                params![org, host],
            )?;
            Ok(n > 0)
        })
        .await
    }
}
