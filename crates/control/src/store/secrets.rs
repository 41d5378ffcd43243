//! App secrets, stored sealed (see `crate::secrets`): names, digests and sealed values.

use super::Store;
use crate::error::ControlPlaneError;
use rusqlite::params;

/// An app secret as stored: sealed (see `crate::secrets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRecord {
    pub name: String,
    pub sealed: crate::secrets::Sealed,
    pub digest: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

impl Store {
    /// Sets (adds or replaces) the app's secrets, all or none; `Err` with the count the app
    /// would have when it would exceed `max`.
    pub async fn set_secrets(
        &self,
        app: &str,
        secrets: Vec<SecretRecord>,
        max: usize,
    ) -> Result<Result<(), usize>, ControlPlaneError> {
        let app = app.to_string();
        self.call("set secrets", move |c| {
            let tx = c.transaction()?;
            for s in &secrets {
                tx.execute(
                    "INSERT INTO secrets (app_name, name, nonce, ciphertext, digest, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (app_name, name) DO UPDATE SET nonce = ?3, ciphertext = ?4,
                         digest = ?5, created_at = ?6",
                    params![
                        app,
                        s.name,
                        s.sealed.nonce,
                        s.sealed.ciphertext,
                        s.digest,
                        s.created_at
                    ],
                )?;
            }
            let count: usize = tx.query_row(
                "SELECT COUNT(*) FROM secrets WHERE app_name = ?1",
                [&app],
                |r| r.get(0),
            )?;
            if count > max {
                return Ok(Err(count));
            }
            tx.commit()?;
            Ok(Ok(()))
        })
        .await
    }

    /// The app's secrets, by name.
    pub async fn secrets(&self, app: &str) -> Result<Vec<SecretRecord>, ControlPlaneError> {
        let app = app.to_string();
        self.call("list secrets", move |c| {
            let mut stmt = c.prepare(
                "SELECT name, nonce, ciphertext, digest, created_at FROM secrets
                 WHERE app_name = ?1 ORDER BY name",
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
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Removes the app's secrets `names`, all or none; `Err` with those it does not have.
    pub async fn unset_secrets(
        &self,
        app: &str,
        names: Vec<String>,
    ) -> Result<Result<(), Vec<String>>, ControlPlaneError> {
        let app = app.to_string();
        self.call("unset secrets", move |c| {
            let tx = c.transaction()?;
            let mut missing = Vec::new();
            for name in &names {
                let n = tx.execute(
                    "DELETE FROM secrets WHERE app_name = ?1 AND name = ?2",
                    params![app, name],
                )?;
                if n == 0 {
                    missing.push(name.clone());
                }
            }
            if !missing.is_empty() {
                return Ok(Err(missing));
            }
            tx.commit()?;
            Ok(Ok(()))
        })
        .await
    }
}
