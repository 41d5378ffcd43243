//! Releases: one row per deploy of an app, numbered per app, ended once.

use super::Store;
use crate::error::ControlPlaneError;
use rusqlite::{OptionalExtension, params};

/// One deploy of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRecord {
    pub app: String,
    pub version: u32,
    pub image: String,
    pub strategy: String,
    /// A [`aloft_types::api::ReleaseStatus`] name.
    pub status: String,
    pub description: Option<String>,
    pub reason: Option<String>,
    /// The config file it deployed; only [`Store::insert_release`] and
    /// [`Store::deployed_config`] read or write it (listings leave it out).
    pub config: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub updated_at: i64,
}

const RELEASE_SELECT: &str = "SELECT app_name, version, image, strategy, status, description, \
     reason, created_at, updated_at FROM releases";

fn release_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReleaseRecord> {
    Ok(ReleaseRecord {
        app: r.get(0)?,
        version: r.get(1)?,
        image: r.get(2)?,
        strategy: r.get(3)?,
        status: r.get(4)?,
        description: r.get(5)?,
        reason: r.get(6)?,
        config: None,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

impl Store {
    /// Records a new release of `r.app`, numbered one past its last; returns it.
    pub async fn insert_release(
        &self,
        mut r: ReleaseRecord,
    ) -> Result<ReleaseRecord, ControlPlaneError> {
        self.call("add release", move |c| {
            let tx = c.transaction()?;
            let last: Option<u32> = tx.query_row(
                "SELECT MAX(version) FROM releases WHERE app_name = ?1",
                [&r.app],
                |row| row.get(0),
            )?;
            r.version = last.unwrap_or(0) + 1;
            tx.execute(
                "INSERT INTO releases (app_name, version, image, strategy, status, description,
                                       reason, created_at, updated_at, config)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    r.app,
                    r.version,
                    r.image,
                    r.strategy,
                    r.status,
                    r.description,
                    r.reason,
                    r.created_at,
                    r.updated_at,
                    r.config
                ],
            )?;
            tx.commit()?;
            Ok(r)
        })
        .await
    }

    /// The config of the app's newest complete release that recorded one: (version, config,
    /// created_at).
    pub async fn deployed_config(
        &self,
        app: &str,
    ) -> Result<Option<(u32, String, i64)>, ControlPlaneError> {
        let app = app.to_string();
        self.call("read deployed config", move |c| {
            c.query_row(
                "SELECT version, config, created_at FROM releases
                 WHERE app_name = ?1 AND status = 'complete' AND config IS NOT NULL
                 ORDER BY version DESC LIMIT 1",
                [app],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
        })
        .await
    }

    /// The app's releases, newest first.
    pub async fn releases(&self, app: &str) -> Result<Vec<ReleaseRecord>, ControlPlaneError> {
        let app = app.to_string();
        self.call("list releases", move |c| {
            let mut stmt = c.prepare(&format!(
                "{RELEASE_SELECT} WHERE app_name = ?1 ORDER BY version DESC"
            ))?;
            let rows = stmt.query_map([app], release_row)?;
            rows.collect()
        })
        .await
    }

    /// Sets a release's status and reason if its status is still `from`; the release as it is
    /// afterwards (`None`: no such release).
    pub async fn finish_release(
        &self,
        app: &str,
        version: u32,
        from: &str,
        status: &str,
        reason: Option<String>,
        now: i64,
    ) -> Result<Option<ReleaseRecord>, ControlPlaneError> {
        let (app, from, status) = (app.to_string(), from.to_string(), status.to_string());
        self.call("update release", move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE releases SET status = ?4, reason = ?5, updated_at = ?6
                 WHERE app_name = ?1 AND version = ?2 AND status = ?3",
                params![app, version, from, status, reason, now],
            )?;
            let r = tx
                .query_row(
                    &format!("{RELEASE_SELECT} WHERE app_name = ?1 AND version = ?2"),
                    params![app, version],
                    release_row,
                )
                .optional()?;
            tx.commit()?;
            Ok(r)
        })
        .await
    }
}
