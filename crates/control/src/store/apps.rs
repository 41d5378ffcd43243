//! Apps: global names, owned by one org, with the count of live machines the index holds.

use super::{Store, to_u32};
use crate::error::ControlPlaneError;
use rusqlite::{OptionalExtension, params};

/// An app and how many live machines the index holds for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppRecord {
    pub id: String,
    pub name: String,
    pub org_slug: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub machine_count: u32,
}

const APP_SELECT: &str = "SELECT a.id, a.name, a.org_slug, a.created_at,
    (SELECT COUNT(*) FROM machines m WHERE m.app_name = a.name AND NOT m.destroyed)
    FROM apps a";

fn app_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AppRecord> {
    Ok(AppRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        org_slug: r.get(2)?,
        created_at: r.get(3)?,
        machine_count: to_u32(r.get(4)?),
    })
}

impl Store {
    /// Inserts an app; `false` when the name is taken (app names are global).
    pub async fn insert_app(&self, app: AppRecord) -> Result<bool, ControlPlaneError> {
        self.call("create app", move |c| {
            let n = c.execute(
                "INSERT INTO apps (name, id, org_slug, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO NOTHING",
                params![app.name, app.id, app.org_slug, app.created_at],
            )?;
            Ok(n == 1)
        })
        .await
    }

    pub async fn app(&self, name: &str) -> Result<Option<AppRecord>, ControlPlaneError> {
        let name = name.to_string();
        self.call("read app", move |c| {
            c.query_row(&format!("{APP_SELECT} WHERE a.name = ?1"), [name], app_row)
                .optional()
        })
        .await
    }

    pub async fn apps_of_org(&self, org: &str) -> Result<Vec<AppRecord>, ControlPlaneError> {
        let org = org.to_string();
        self.call("list apps", move |c| {
            let mut stmt = c.prepare(&format!(
                "{APP_SELECT} WHERE a.org_slug = ?1 ORDER BY a.name"
            ))?;
            let rows = stmt.query_map([org], app_row)?;
            rows.collect()
        })
        .await
    }

    /// Deletes an app and its entries in the machine index.
    pub async fn delete_app(&self, name: &str) -> Result<(), ControlPlaneError> {
        let name = name.to_string();
        self.call("delete app", move |c| {
            let tx = c.transaction()?;
            tx.execute("DELETE FROM machines WHERE app_name = ?1", [&name])?;
            tx.execute("DELETE FROM certificates WHERE app_name = ?1", [&name])?;
            tx.execute("DELETE FROM releases WHERE app_name = ?1", [&name])?;
            tx.execute("DELETE FROM secrets WHERE app_name = ?1", [&name])?;
            tx.execute(
                "DELETE FROM volume_snapshots WHERE volume_id IN
                     (SELECT id FROM volumes WHERE app_name = ?1)",
                [&name],
            )?;
            tx.execute("DELETE FROM volumes WHERE app_name = ?1", [&name])?;
            tx.execute("DELETE FROM apps WHERE name = ?1", [&name])?;
            tx.commit()
        })
        .await
    }
}
