//! The machine index: `machine id -> app, host, name`, and whether the gateway saw it destroyed.
//! Machine state is not here; the agents own it.

use super::Store;
use crate::error::ControlPlaneError;
use rusqlite::{OptionalExtension, params};

/// One entry of the machine index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MachineRecord {
    pub id: String,
    pub app: String,
    pub host_id: String,
    pub name: String,
    pub destroyed: bool,
}

const MACHINE_SELECT: &str = "SELECT id, app_name, host_id, name, destroyed FROM machines";

fn machine_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MachineRecord> {
    Ok(MachineRecord {
        id: r.get(0)?,
        app: r.get(1)?,
        host_id: r.get(2)?,
        name: r.get(3)?,
        destroyed: r.get(4)?,
    })
}

impl Store {
    pub async fn insert_machine(
        &self,
        m: MachineRecord,
        now: i64,
    ) -> Result<(), ControlPlaneError> {
        self.call("index machine", move |c| {
            c.execute(
                "INSERT INTO machines (id, app_name, host_id, name, destroyed, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![m.id, m.app, m.host_id, m.name, m.destroyed, now],
            )
            .map(drop)
        })
        .await
    }

    /// Whether the app has a machine that is not destroyed on the host.
    pub async fn app_has_machine_on(
        &self,
        app: &str,
        host_id: &str,
    ) -> Result<bool, ControlPlaneError> {
        let (app, host_id) = (app.to_string(), host_id.to_string());
        self.call("read machine index", move |c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM machines
                                WHERE app_name = ?1 AND host_id = ?2 AND NOT destroyed)",
                params![app, host_id],
                |r| r.get(0),
            )
        })
        .await
    }

    /// Whether `host_id` runs a machine of any app of `org` (not destroyed).
    pub async fn org_has_machine_on(
        &self,
        org: &str,
        host_id: &str,
    ) -> Result<bool, ControlPlaneError> {
        let (org, host_id) = (org.to_string(), host_id.to_string());
        self.call("read machine index", move |c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM machines m JOIN apps a ON a.name = m.app_name
                                WHERE a.org_slug = ?1 AND m.host_id = ?2 AND NOT m.destroyed)",
                params![org, host_id],
                |r| r.get(0),
            )
        })
        .await
    }

    pub async fn machine(&self, id: &str) -> Result<Option<MachineRecord>, ControlPlaneError> {
        let id = id.to_string();
        self.call("read machine index", move |c| {
            c.query_row(
                &format!("{MACHINE_SELECT} WHERE id = ?1"),
                [id],
                machine_row,
            )
            .optional()
        })
        .await
    }

    /// Every indexed machine of an app, destroyed ones included.
    pub async fn machines_of_app(
        &self,
        app: &str,
    ) -> Result<Vec<MachineRecord>, ControlPlaneError> {
        let app = app.to_string();
        self.call("list machine index", move |c| {
            let mut stmt = c.prepare(&format!(
                "{MACHINE_SELECT} WHERE app_name = ?1 ORDER BY created_at, id"
            ))?;
            let rows = stmt.query_map([app], machine_row)?;
            rows.collect()
        })
        .await
    }

    /// A machine of the app that is not destroyed and has this name.
    pub async fn live_machine_named(
        &self,
        app: &str,
        name: &str,
    ) -> Result<Option<MachineRecord>, ControlPlaneError> {
        let (app, name) = (app.to_string(), name.to_string());
        self.call("find machine by name", move |c| {
            c.query_row(
                &format!("{MACHINE_SELECT} WHERE app_name = ?1 AND name = ?2 AND NOT destroyed"),
                [app, name],
                machine_row,
            )
            .optional()
        })
        .await
    }

    /// Marks a machine destroyed; the volume it mounted is free again.
    pub async fn mark_destroyed(&self, id: &str) -> Result<(), ControlPlaneError> {
        let id = id.to_string();
        self.call("mark machine destroyed", move |c| {
            let tx = c.transaction()?;
            tx.execute("UPDATE machines SET destroyed = TRUE WHERE id = ?1", [&id])?;
            tx.execute(
                "UPDATE volumes SET attached_machine_id = NULL WHERE attached_machine_id = ?1",
                [&id],
            )?;
            tx.commit()
        })
        .await
    }

    pub async fn rename_machine(&self, id: &str, name: &str) -> Result<(), ControlPlaneError> {
        let (id, name) = (id.to_string(), name.to_string());
        self.call("rename machine", move |c| {
            c.execute("UPDATE machines SET name = ?2 WHERE id = ?1", [id, name])
                .map(drop)
        })
        .await
    }
}
