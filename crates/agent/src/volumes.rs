//! The volumes on this host (`<data_dir>/volumes`, see `aloft_runtime::volume`): made when the
//! control plane creates one (`POST /internal/v1/volumes/{id}`), grown and handed to the runtime
//! when a machine that mounts one starts; removed and snapshotted when the control plane asks
//! (`DELETE /internal/v1/volumes/{id}`, `POST .../snapshots`).
//!
//! A volume's key is asked of the control plane at each start and kept in memory only: when the
//! control plane does not answer, the last key this agent was given is used (restarts and
//! autostarts go on), and a volume this agent never opened does not start (its start event
//! says why). Machines already running keep running.
//!
//! State: the volumes' disks under `<data_dir>/volumes` (`VolumeStore`) and, through the
//! agent's `secrets`, the last key per volume. No lock of its own: attaching runs under the
//! starting machine's lock; a volume is mounted by one machine at a time, checked against the
//! store.

use crate::agent::Agent;
use crate::store::Record;
use aloft_runtime::volume::{AttachedVolume, SnapshotCopy, VolumeKey, VolumeStore};
use aloft_types::{ApiError, MachineState};

impl Agent {
    /// This host's volumes.
    pub(crate) fn volume_store(&self) -> VolumeStore {
        VolumeStore::new(self.config().data_dir.join("volumes"))
    }

    /// The volumes the machine's config mounts, made or grown as the control plane says and
    /// ready for the runtime. `Err` says why the machine cannot start.
    pub(crate) async fn attach_volumes(&self, rec: &Record) -> Result<Vec<AttachedVolume>, String> {
        let mut attached = Vec::new();
        for m in &rec.config.mounts {
            if !aloft_types::ids::is_volume_id(&m.volume) {
                return Err(format!(
                    "config.mounts: `{}` is not a volume id (vol_ + 16 hex digits): `aloft volumes list` shows them",
                    m.volume
                ));
            }
            // One machine at a time per volume, whatever the control plane believed.
            let users = self
                .machines_mounting(&m.volume)
                .map_err(|e| e.to_string())?;
            if let Some(other) = users
                .iter()
                .find(|r| r.id != rec.id && holds_volume(r.state))
            {
                return Err(format!(
                    "volume {} is mounted by machine {}, which is running; a volume is mounted by one machine at a time",
                    m.volume, other.id
                ));
            }
            let access = self.secrets().volume_access(&m.volume).await?;
            if access.app != rec.app || access.host_id != self.config().host_id {
                return Err(format!(
                    "volume {} belongs to app `{}` on host `{}`, not to this machine's app `{}` on `{}`",
                    m.volume,
                    access.app,
                    access.host_id,
                    rec.app,
                    self.config().host_id
                ));
            }
            let store = self.volume_store();
            let key = VolumeKey::new(access.key);
            store
                .prepare(&m.volume, access.size_gb, &key)
                .await
                .map_err(|e| format!("volume {}: {e}", m.volume))?;
            attached.push(AttachedVolume {
                id: m.volume.clone(),
                path: m.path.clone(),
                store,
                key,
            });
        }
        Ok(attached)
    }

    /// Machines of this host (not destroyed) whose config mounts `volume`.
    fn machines_mounting(&self, volume: &str) -> Result<Vec<Record>, ApiError> {
        Ok(self
            .store()
            .list()
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .into_iter()
            .filter(|r| r.state != MachineState::Destroyed)
            .filter(|r| r.config.mounts.iter().any(|m| m.volume == volume))
            .collect())
    }

    /// Makes a new volume's encrypted disk (at `volumes create`, so a machine's first start
    /// does not wait for it).
    pub async fn make_volume(
        &self,
        id: &str,
        req: aloft_types::api::MakeVolumeRequest,
    ) -> Result<(), ApiError> {
        check_volume_id(id)?;
        if !(1..=500).contains(&req.size_gb) || req.key.len() != 64 {
            return Err(ApiError::invalid(
                "size_gb",
                "a volume is 1 to 500 GB with a 64-hex-digit key",
            ));
        }
        let store = self.volume_store();
        store
            .prepare(id, req.size_gb, &VolumeKey::new(req.key))
            .await
            .map_err(|e| ApiError::Unavailable(format!("making volume {id} on this host: {e}")))?;
        Ok(())
    }

    /// Removes a volume's data and snapshots; 409 while a machine here mounts it, 404 when this
    /// host has none of it.
    pub async fn delete_volume(&self, id: &str) -> Result<(), ApiError> {
        check_volume_id(id)?;
        let users: Vec<String> = self
            .machines_mounting(id)?
            .iter()
            .map(|r| r.id.to_string())
            .collect();
        if !users.is_empty() {
            return Err(ApiError::Conflict(format!(
                "volume {id} is mounted by machine {}; destroy it first",
                users.join(", ")
            )));
        }
        match self.volume_store().delete(id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ApiError::NotFound(format!(
                "this host has no data of volume {id}"
            ))),
            Err(e) => Err(ApiError::Internal(e)),
        }
    }

    /// Copies the volume's disk as snapshot `snapshot`; its size and digest. 409 when the volume
    /// has no data yet.
    pub async fn snapshot_volume(
        &self,
        id: &str,
        snapshot: &str,
    ) -> Result<SnapshotCopy, ApiError> {
        check_volume_id(id)?;
        if !aloft_types::ids::is_snapshot_id(snapshot) {
            return Err(ApiError::invalid(
                "snapshot_id",
                format!("`{snapshot}` is not a snapshot id (vs_ + 16 hex digits)"),
            ));
        }
        // A microVM writes the disk itself (QEMU caches qcow2 metadata): a copy taken under it
        // would be torn. gVisor volumes are frozen for the copy by the store.
        if self.any_runtime().name() == "microvm"
            && let Some(m) = self
                .machines_mounting(id)?
                .into_iter()
                .find(|r| holds_volume(r.state))
        {
            return Err(ApiError::Conflict(format!(
                "volume {id} is in use by microVM {}, whose disk cannot be copied consistently while it runs: stop it (aloft machine stop {}), take the snapshot, start it again",
                m.id, m.id
            )));
        }
        let store = self.volume_store();
        if !store.exists(id) {
            return Err(ApiError::Conflict(format!(
                "this host has no data of volume {id} yet (its disk was not made here): nothing to snapshot"
            )));
        }
        store
            .snapshot(id, snapshot)
            .await
            .map_err(ApiError::Internal)
    }
}

/// Whether a machine in `state` may be running, and so holding its volume: all but the states
/// with no run.
fn holds_volume(state: MachineState) -> bool {
    !matches!(
        state,
        MachineState::Created
            | MachineState::Stopped
            | MachineState::Failed
            | MachineState::Destroyed
    )
}

fn check_volume_id(id: &str) -> Result<(), ApiError> {
    if aloft_types::ids::is_volume_id(id) {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!(
            "`{id}` is not a volume id (vol_ + 16 hex digits)"
        )))
    }
}
