//! Volumes and their snapshots: where each volume lives, its sealed key, and who mounts it.

use super::{Store, to_i64, to_u64};
use crate::error::ControlPlaneError;
use rusqlite::{OptionalExtension, params};

/// A volume: where it lives, its key (sealed, see `crate::secrets`) and who mounts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRecord {
    pub id: String,
    pub app: String,
    pub name: String,
    pub region: String,
    pub host_id: String,
    pub size_gb: u32,
    pub key: crate::secrets::Sealed,
    pub attached_machine_id: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub settings: VolumeSettings,
}

/// A volume's snapshot settings, as `PUT /v1/apps/{app}/volumes/{id}` changes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeSettings {
    /// Days each new snapshot is kept.
    pub snapshot_retention: u32,
    /// Whether scheduled snapshots are wanted.
    pub auto_backup_enabled: bool,
}

const VOLUME_SELECT: &str = "SELECT id, app_name, name, region, host_id, size_gb, key_nonce, \
     key_ciphertext, attached_machine_id, created_at, snapshot_retention, auto_backup_enabled \
     FROM volumes";

fn volume_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VolumeRecord> {
    Ok(VolumeRecord {
        id: r.get(0)?,
        app: r.get(1)?,
        name: r.get(2)?,
        region: r.get(3)?,
        host_id: r.get(4)?,
        size_gb: r.get(5)?,
        key: crate::secrets::Sealed {
            nonce: r.get(6)?,
            ciphertext: r.get(7)?,
        },
        attached_machine_id: r.get(8)?,
        created_at: r.get(9)?,
        settings: VolumeSettings {
            snapshot_retention: r.get(10)?,
            auto_backup_enabled: r.get(11)?,
        },
    })
}

/// A snapshot of a volume, kept on the volume's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    pub id: String,
    pub volume_id: String,
    pub size: u64,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// The volume's size (GB) when it was taken; `None` for snapshots recorded before schema 8.
    pub volume_size: Option<u32>,
    /// `sha256:<hex>` of its bytes on the host; `None` before schema 8 (or from an older agent).
    pub digest: Option<String>,
    /// The volume's retention when it was taken; `None` before schema 8.
    pub retention_days: Option<u32>,
}

impl Store {
    pub async fn insert_volume(&self, v: VolumeRecord) -> Result<(), ControlPlaneError> {
        self.call("create volume", move |c| {
            c.execute(
                "INSERT INTO volumes (id, app_name, name, region, host_id, size_gb, key_nonce,
                     key_ciphertext, attached_machine_id, created_at, snapshot_retention,
                     auto_backup_enabled)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    v.id,
                    v.app,
                    v.name,
                    v.region,
                    v.host_id,
                    v.size_gb,
                    v.key.nonce,
                    v.key.ciphertext,
                    v.attached_machine_id,
                    v.created_at,
                    v.settings.snapshot_retention,
                    v.settings.auto_backup_enabled
                ],
            )
            .map(drop)
        })
        .await
    }

    pub async fn volume(&self, id: &str) -> Result<Option<VolumeRecord>, ControlPlaneError> {
        let id = id.to_string();
        self.call("find volume", move |c| {
            c.query_row(&format!("{VOLUME_SELECT} WHERE id = ?1"), [id], volume_row)
                .optional()
        })
        .await
    }

    /// The app's volumes, oldest first.
    pub async fn volumes_of_app(&self, app: &str) -> Result<Vec<VolumeRecord>, ControlPlaneError> {
        let app = app.to_string();
        self.call("list volumes", move |c| {
            let mut stmt = c.prepare(&format!(
                "{VOLUME_SELECT} WHERE app_name = ?1 ORDER BY created_at, id"
            ))?;
            let rows = stmt.query_map([app], volume_row)?;
            rows.collect()
        })
        .await
    }

    /// Records which volume `machine` mounts (`None`: none): any other it held is free again.
    /// `Err` with the live machine that mounts `volume` already, changing nothing.
    pub async fn set_machine_volume(
        &self,
        machine: &str,
        volume: Option<&str>,
    ) -> Result<Result<(), String>, ControlPlaneError> {
        let (machine, volume) = (machine.to_string(), volume.map(str::to_string));
        self.call("attach volume", move |c| {
            let tx = c.transaction()?;
            if let Some(volume) = &volume {
                let holder: Option<String> = tx
                    .query_row(
                        "SELECT v.attached_machine_id FROM volumes v JOIN machines m
                         ON m.id = v.attached_machine_id WHERE v.id = ?1 AND NOT m.destroyed",
                        [volume],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(holder) = holder.filter(|h| *h != machine) {
                    return Ok(Err(holder));
                }
            }
            tx.execute(
                "UPDATE volumes SET attached_machine_id = NULL WHERE attached_machine_id = ?1",
                [&machine],
            )?;
            if let Some(volume) = &volume {
                tx.execute(
                    "UPDATE volumes SET attached_machine_id = ?2 WHERE id = ?1",
                    params![volume, machine],
                )?;
            }
            tx.commit()?;
            Ok(Ok(()))
        })
        .await
    }

    pub async fn set_volume_size(&self, id: &str, size_gb: u32) -> Result<(), ControlPlaneError> {
        let id = id.to_string();
        self.call("extend volume", move |c| {
            c.execute(
                "UPDATE volumes SET size_gb = ?2 WHERE id = ?1",
                params![id, size_gb],
            )
            .map(drop)
        })
        .await
    }

    /// Stores a volume's snapshot settings.
    pub async fn set_volume_settings(
        &self,
        id: &str,
        settings: VolumeSettings,
    ) -> Result<(), ControlPlaneError> {
        let id = id.to_string();
        self.call("update volume", move |c| {
            c.execute(
                "UPDATE volumes SET snapshot_retention = ?2, auto_backup_enabled = ?3 WHERE id = ?1",
                params![
                    id,
                    settings.snapshot_retention,
                    settings.auto_backup_enabled
                ],
            )
            .map(drop)
        })
        .await
    }

    /// Removes a volume and its snapshots' records.
    pub async fn delete_volume(&self, id: &str) -> Result<(), ControlPlaneError> {
        let id = id.to_string();
        self.call("destroy volume", move |c| {
            let tx = c.transaction()?;
            tx.execute("DELETE FROM volume_snapshots WHERE volume_id = ?1", [&id])?;
            tx.execute("DELETE FROM volumes WHERE id = ?1", [&id])?;
            tx.commit()
        })
        .await
    }

    pub async fn insert_snapshot(&self, s: SnapshotRecord) -> Result<(), ControlPlaneError> {
        self.call("record snapshot", move |c| {
            c.execute(
                "INSERT INTO volume_snapshots (id, volume_id, size, created_at, volume_size,
                     digest, retention_days)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    s.id,
                    s.volume_id,
                    to_i64(s.size),
                    s.created_at,
                    s.volume_size,
                    s.digest,
                    s.retention_days
                ],
            )
            .map(drop)
        })
        .await
    }

    /// The volume's snapshots, oldest first.
    pub async fn snapshots(&self, volume: &str) -> Result<Vec<SnapshotRecord>, ControlPlaneError> {
        let volume = volume.to_string();
        self.call("list snapshots", move |c| {
            let mut stmt = c.prepare(
                "SELECT id, volume_id, size, created_at, volume_size, digest, retention_days
                 FROM volume_snapshots WHERE volume_id = ?1 ORDER BY created_at, id",
            )?;
            let rows = stmt.query_map([volume], |r| {
                Ok(SnapshotRecord {
                    id: r.get(0)?,
                    volume_id: r.get(1)?,
                    size: to_u64(r.get(2)?),
                    created_at: r.get(3)?,
                    volume_size: r.get(4)?,
                    digest: r.get(5)?,
                    retention_days: r.get(6)?,
                })
            })?;
            rows.collect()
        })
        .await
    }
}
