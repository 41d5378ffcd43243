//! App secrets, stored sealed (see `crate::secrets`): names, digests and sealed values, and the
//! version of each app's secrets (`apps.secrets_version`: 1 more after every change).

use super::Store;
use crate::error::ControlPlaneError;
use rusqlite::{Transaction, params};

/// An app secret as stored: sealed (see `crate::secrets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRecord {
    pub name: String,
    pub sealed: crate::secrets::Sealed,
    pub digest: String,
    /// Milliseconds since the Unix epoch: when it was first set (kept when it is set again).
    pub created_at: i64,
    /// Milliseconds since the Unix epoch: when its value was last set.
    pub updated_at: i64,
}

/// A change to an app's secrets: set (add or replace) these, remove those.
#[derive(Debug, Clone, Default)]
pub struct SecretsChange {
    pub set: Vec<SecretRecord>,
    pub unset: Vec<String>,
}

/// Why a change was not made (nothing was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretsRefused {
    /// The app would have this many secrets, over the limit.
    TooMany(usize),
    /// Names to remove that the app has no secret of.
    Missing(Vec<String>),
}

impl Store {
    /// Makes `change`, all or none, and returns the version of the app's secrets after it (one
    /// more than before); nothing changes when the app would have more than `max` secrets or
    /// lacks a name to remove.
    pub async fn change_secrets(
        &self,
        app: &str,
        change: SecretsChange,
        max: usize,
    ) -> Result<Result<u64, SecretsRefused>, ControlPlaneError> {
        let app = app.to_string();
        self.call("change secrets", move |c| {
            let tx = c.transaction()?;
            let mut missing = Vec::new();
            for name in &change.unset {
                let n = tx.execute(
                    "DELETE FROM secrets WHERE app_name = ?1 AND name = ?2",
                    params![app, name],
                )?;
                if n == 0 {
                    missing.push(name.clone());
                }
            }
            if !missing.is_empty() {
                return Ok(Err(SecretsRefused::Missing(missing)));
            }
            for s in &change.set {
                upsert(&tx, &app, s)?;
            }
            let count: usize = tx.query_row(
                "SELECT COUNT(*) FROM secrets WHERE app_name = ?1",
                [&app],
                |r| r.get(0),
            )?;
            if count > max {
                return Ok(Err(SecretsRefused::TooMany(count)));
            }
            tx.execute(
                "UPDATE apps SET secrets_version = secrets_version + 1 WHERE name = ?1",
                [&app],
            )?;
            let version = version_in(&tx, &app)?;
            tx.commit()?;
            Ok(Ok(version))
        })
        .await
    }

    /// The app's secrets, by name, and their version, read together.
    pub async fn secrets_and_version(
        &self,
        app: &str,
    ) -> Result<(Vec<SecretRecord>, u64), ControlPlaneError> {
        let app = app.to_string();
        self.call("list secrets", move |c| {
            let tx = c.transaction()?;
            let records = records(&tx, &app)?;
            let version = version_in(&tx, &app)?;
            Ok((records, version))
        })
        .await
    }

    /// The app's secrets, by name.
    pub async fn secrets(&self, app: &str) -> Result<Vec<SecretRecord>, ControlPlaneError> {
        Ok(self.secrets_and_version(app).await?.0)
    }
}

/// Adds `s`, or replaces its value keeping when it was first set.
fn upsert(tx: &Transaction<'_>, app: &str, s: &SecretRecord) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO secrets (app_name, name, nonce, ciphertext, digest, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (app_name, name) DO UPDATE SET nonce = ?3, ciphertext = ?4,
             digest = ?5, updated_at = ?7",
        params![
            app,
            s.name,
            s.sealed.nonce,
            s.sealed.ciphertext,
            s.digest,
            s.created_at,
            s.updated_at
        ],
    )?;
    Ok(())
}

fn records(tx: &Transaction<'_>, app: &str) -> rusqlite::Result<Vec<SecretRecord>> {
    let mut stmt = tx.prepare(
        "SELECT name, nonce, ciphertext, digest, created_at, COALESCE(updated_at, created_at)
         FROM secrets WHERE app_name = ?1 ORDER BY name",
    )?;
    let rows = stmt.query_map([app], |r| {
        Ok(SecretRecord {
            name: r.get(0)?,
            sealed: crate::secrets::Sealed {
                nonce: r.get(1)?,
                ciphertext: r.get(2)?,
            },
            digest: r.get(3)?,
            created_at: r.get(4)?,
            updated_at: r.get(5)?,
        })
    })?;
    rows.collect()
}

/// The version of the app's secrets (0 for an app that is gone).
fn version_in(tx: &Transaction<'_>, app: &str) -> rusqlite::Result<u64> {
    use rusqlite::OptionalExtension;
    let v: Option<i64> = tx
        .query_row(
            "SELECT secrets_version FROM apps WHERE name = ?1",
            [app],
            |r| r.get(0),
        )
        .optional()?;
    Ok(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
}
