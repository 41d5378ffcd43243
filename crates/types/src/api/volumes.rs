//! Volumes and their snapshots (`/v1/apps/{app}/volumes`), with the bodies the control plane and
//! a volume's host exchange (`/internal/v1/volumes/{id}`).

use crate::config::Guest;
use crate::machine::HostStatus;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Days a volume's snapshots are kept, at least and at most (the reference's bounds).
pub const SNAPSHOT_RETENTION_DAYS: (u32, u32) = (1, 60);

/// The snapshot retention of a volume created without one (the reference's default).
pub const DEFAULT_SNAPSHOT_RETENTION: u32 = 5;

/// `POST /v1/apps/{app}/volumes`: a new volume on one host of `region`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateVolumeRequest {
    /// Letters, digits and underscores, at most 30; several volumes may share a name (a deploy
    /// gives each machine its own volume of the name `[[mounts]] source` says).
    #[schema(pattern = "^[A-Za-z0-9_]{1,30}$")]
    pub name: String,
    pub region: String,
    /// Gigabytes, 1 to 500 (default 1).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 500)]
    pub size_gb: Option<u32>,
    /// Accepted and ignored: every aloft volume is encrypted.
    #[serde(default)]
    pub encrypted: Option<bool>,
    /// Days each of its snapshots is kept, 1 to 60 (default 5).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 60)]
    pub snapshot_retention: Option<u32>,
    /// Whether scheduled snapshots are wanted (default false). Stored and echoed; aloft takes
    /// snapshots only when asked (`POST .../snapshots`).
    #[serde(default)]
    pub auto_backup_enabled: Option<bool>,
    /// Put the volume on a host (aloft's zone) that holds no other volume of the app with this
    /// name; 422 when the region has none. Absent or false: such a host is preferred.
    #[serde(default)]
    pub require_unique_zone: Option<bool>,
    /// With `require_unique_zone`: a host that holds no volume of the app at all.
    #[serde(default)]
    pub unique_zone_app_wide: Option<bool>,
    /// `ext4` (the default) only; `raw` is a 422.
    #[serde(default)]
    #[schema(pattern = "^(ext4)?$")]
    pub fstype: Option<String>,
    /// Restoring a snapshot into a new volume: not supported (422 unless empty).
    #[serde(default)]
    #[schema(max_length = 0)]
    pub snapshot_id: Option<String>,
    /// Forking a volume: not supported (422 unless empty).
    #[serde(default)]
    #[schema(max_length = 0)]
    pub source_volume_id: Option<String>,
    /// The guest of the machine that will mount it (its `cpus` and `memory_mb` are read): the
    /// volume goes to a host that guest fits.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub compute: Option<Guest>,
    /// The image of the machine that will mount it; accepted and ignored.
    #[serde(default)]
    pub compute_image: Option<String>,
}

/// `PUT /v1/apps/{app}/volumes/{id}`: a volume's snapshot settings; absent fields keep theirs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UpdateVolumeRequest {
    /// Days each new snapshot is kept, 1 to 60 (snapshots taken before keep theirs).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 60)]
    pub snapshot_retention: Option<u32>,
    /// Whether scheduled snapshots are wanted; stored (aloft takes snapshots only when asked).
    #[serde(default)]
    pub auto_backup_enabled: Option<bool>,
}

/// `PUT /v1/apps/{app}/volumes/{id}/extend`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExtendVolumeRequest {
    /// The new size in gigabytes: larger than the current one, at most 500.
    pub size_gb: u32,
}

/// The answer to an extend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExtendVolumeResponse {
    pub volume: Volume,
    /// The machine using the volume sees the new size after its next start.
    pub needs_restart: bool,
}

/// A volume: persistent storage on one host, encrypted at rest, mounted by one machine at a
/// time (the machine runs on the volume's host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Volume {
    /// `vol_` + 16 lowercase letters and digits.
    pub id: String,
    pub name: String,
    pub app: String,
    /// `created` (`destroying` in a destroy's answer).
    pub state: String,
    pub size_gb: u32,
    pub region: String,
    /// The host the volume lives on (the reference's `zone`).
    pub zone: String,
    /// Always true.
    pub encrypted: bool,
    /// The live machine that mounts it, if any.
    pub attached_machine_id: Option<String>,
    /// Always null: aloft has no allocations (the reference's pre-Machines workloads).
    #[serde(default)]
    pub attached_alloc_id: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// Days each new snapshot is kept (1 to 60).
    #[serde(default)]
    pub snapshot_retention: u32,
    /// Whether scheduled snapshots were asked for (aloft takes snapshots only when asked).
    #[serde(default)]
    pub auto_backup_enabled: bool,
    /// `ext4`.
    #[serde(default)]
    pub fstype: String,
    /// Whether the volume's host is heard from: `ok` (a heartbeat within 30 s), `unknown`
    /// (none since), `unreachable` (the host is not registered).
    #[serde(default)]
    pub host_status: HostStatus,
}

/// A copy of a volume taken on its host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VolumeSnapshot {
    /// `vs_` + 16 lowercase letters and digits.
    pub id: String,
    pub volume_id: String,
    /// `created`.
    pub status: String,
    /// Bytes the snapshot takes on its host.
    pub size: u64,
    /// The volume's size in GB when the snapshot was taken (absent for snapshots recorded
    /// before aloft kept it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_size: Option<u32>,
    /// `sha256:` + the hex SHA-256 of the snapshot's bytes on its host (ciphertext; absent for
    /// snapshots recorded before aloft kept it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The volume's `snapshot_retention` when it was taken (null before aloft kept it). aloft
    /// does not delete snapshots when it passes: they go with their volume.
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// RFC 3339.
    pub created_at: String,
}

/// What a host agent needs to open a volume (internal API, `GET /internal/v1/volumes/{id}`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeAccess {
    pub id: String,
    pub app: String,
    pub size_gb: u32,
    /// The host the volume lives on.
    pub host_id: String,
    /// The volume's encryption key (64 hex digits).
    pub key: String,
}

impl std::fmt::Debug for VolumeAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeAccess")
            .field("id", &self.id)
            .field("app", &self.app)
            .field("size_gb", &self.size_gb)
            .field("host_id", &self.host_id)
            .finish_non_exhaustive()
    }
}

/// Internal API: `POST /internal/v1/volumes/{id}` on the chosen host: make the volume's disk.
#[derive(Clone, Serialize, Deserialize)]
pub struct MakeVolumeRequest {
    pub size_gb: u32,
    /// The volume's encryption key (64 hex digits).
    pub key: String,
}

/// Internal API: `POST /internal/v1/volumes/{id}/snapshots` on the volume's host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TakeSnapshotRequest {
    pub snapshot_id: String,
}

/// Internal API: what the host answers to a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TakenSnapshot {
    /// Bytes on the host's disk.
    pub size: u64,
    /// `sha256:` + hex of those bytes (absent from agents before it was kept).
    #[serde(default)]
    pub digest: Option<String>,
}
