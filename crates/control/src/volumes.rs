//! Volumes: persistent storage that lives on one host, encrypted at rest with a key of its own.
//!
//! The control plane keeps each volume's record (app, name, region, host, size, who mounts it)
//! and its key, sealed like secrets (`crate::secrets`, with `volume:<id>` as the name). The host
//! keeps the data: an encrypted qcow2 file it makes when the volume is created
//! (`POST /internal/v1/volumes/{id}` with the key), opened at each start of a machine that mounts
//! it with the key it asks for then (`GET /internal/v1/volumes/{id}`). So a machine
//! that mounts a volume is placed on the volume's host and nowhere else: when that host does not
//! answer, the create fails saying so, and no empty volume is made elsewhere.
//!
//! Each volume also has snapshot settings (`snapshot_retention`, `auto_backup_enabled`), set at
//! create and by `PUT .../volumes/{id}`: stored and echoed, since aloft takes snapshots only when
//! asked and keeps them as long as the volume. What a create may ask for is in `rules`.

mod rules;

use crate::ControlPlane;
use crate::error::internal;

use crate::forward::AgentReply;
use crate::host_credentials::HostCaller;
use crate::placement;
use crate::store::{Caller, HostRecord, SnapshotRecord, VolumeRecord};
use aloft_agent_api::{AgentClient, AgentError};
use aloft_types::ApiError;
use aloft_types::api::{
    CreateVolumeRequest, ExtendVolumeRequest, ExtendVolumeResponse, MakeVolumeRequest,
    TakeSnapshotRequest, TakenSnapshot, UpdateVolumeRequest, Volume, VolumeAccess, VolumeSnapshot,
};
use aloft_types::config::MachineConfig;
use aloft_types::ids::{new_snapshot_id, new_volume_id, random_hex};
use aloft_types::machine::HostStatus;
use aloft_types::time::{now_ms, rfc3339};
use axum::http::StatusCode;
use std::collections::BTreeMap;
use std::future::Future;

use rules::MAX_VOLUME_GB;

/// A host heard from within this long (three heartbeats) is `ok`.
const HOST_FRESH_MS: i64 = 30_000;

/// The name a volume's key is sealed under (with the app as the rest of the AAD).
fn key_name(id: &str) -> String {
    format!("volume:{id}")
}

/// The volume as the API shows it; `host`: its host's record, if registered (`host_status`).
fn volume_json(v: VolumeRecord, host: Option<&HostRecord>, now: i64) -> Volume {
    let host_status = match host {
        Some(h) if now - h.last_seen <= HOST_FRESH_MS => HostStatus::Ok,
        Some(_) => HostStatus::Unknown,
        None => HostStatus::Unreachable,
    };
    Volume {
        id: v.id,
        name: v.name,
        app: v.app,
        state: "created".into(),
        size_gb: v.size_gb,
        region: v.region,
        zone: v.host_id,
        encrypted: true,
        attached_machine_id: v.attached_machine_id,
        attached_alloc_id: None,
        created_at: rfc3339(v.created_at),
        snapshot_retention: v.settings.snapshot_retention,
        auto_backup_enabled: v.settings.auto_backup_enabled,
        fstype: rules::FSTYPE.into(),
        host_status,
    }
}

fn snapshot_json(s: SnapshotRecord) -> VolumeSnapshot {
    VolumeSnapshot {
        id: s.id,
        volume_id: s.volume_id,
        status: "created".into(),
        size: s.size,
        volume_size: s.volume_size,
        digest: s.digest,
        retention_days: s.retention_days,
        created_at: rfc3339(s.created_at),
    }
}

/// The volume a machine config mounts, if any (a config mounts at most one).
pub(crate) fn mounted_volume(config: &MachineConfig) -> Option<&str> {
    config.mounts.first().map(|m| m.volume.as_str())
}

impl ControlPlane {
    /// `POST /v1/apps/{app}/volumes`: makes a volume on a host of the region (the one with the
    /// fewest of the app's volumes, then the most free memory, that makes its disk; with
    /// `require_unique_zone`, only hosts without a volume of its name; with `compute`, only
    /// hosts that guest fits).
    pub(crate) async fn create_volume(
        &self,
        caller: &Caller,
        app: &str,
        body: &[u8],
    ) -> Result<Volume, ApiError> {
        let app = self.app_of(caller, app).await?;
        let req: CreateVolumeRequest = ApiError::parse_json(body)?;
        let (size_gb, settings) = rules::check_create(&req)?;
        let _zones = match req.require_unique_zone {
            Some(true) => Some(self.lock_zones(&app.name).await),
            _ => None,
        };
        let hosts = self.inner.store.hosts().await?;
        let volumes = self.inner.store.volumes_of_app(&app.name).await?;
        let mut app_volumes = BTreeMap::new();
        for v in &volumes {
            *app_volumes.entry(v.host_id.clone()).or_insert(0) += 1;
        }
        let guest = req.compute.clone().unwrap_or_default();
        let candidates = placement::candidates(&hosts, &req.region, &guest, &app_volumes)?;
        let candidates = rules::unique_zones(&req, &volumes, candidates)?;
        let id = new_volume_id();
        let key = random_hex(32);
        // The host makes the encrypted disk now (a machine's first start does not wait for it);
        // the volume exists once one host has, the next host tried when one cannot.
        let make = MakeVolumeRequest {
            size_gb,
            key: key.clone(),
        };
        let (volume_id, make) = (&id, &make);
        let mut refusals = Vec::new();
        for host in candidates {
            let ask =
                move |agent: AgentClient| async move { agent.make_volume(volume_id, make).await };
            match self.inner.forwarder.ask(host, ask).await {
                Ok(reply) if reply.status.is_success() => {
                    let record = VolumeRecord {
                        key: self.inner.secrets.seal(&app.name, &key_name(&id), &key),
                        id,
                        app: app.name.clone(),
                        name: req.name,
                        region: req.region,
                        host_id: host.info.id.clone(),
                        size_gb,
                        attached_machine_id: None,
                        created_at: now_ms(),
                        settings,
                    };
                    self.inner.store.insert_volume(record.clone()).await?;
                    return self.volume_view(record).await;
                }
                Ok(reply) => refusals.push(format!("{}: {}", host.info.id, reply.error())),
                Err(e) => refusals.push(format!("{}: {e}", host.info.id)),
            }
        }
        Err(ApiError::Unavailable(format!(
            "no host in region `{}` could make the volume ({}); retry later or pick another region",
            req.region,
            refusals.join("; ")
        )))
    }

    /// The app's lock for volume creates that ask for a unique zone.
    async fn lock_zones(&self, app: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.inner.zone_locks.lock();
            std::sync::Arc::clone(locks.entry(app.to_string()).or_default())
        };
        lock.lock_owned().await
    }

    /// The volumes as the API shows them (with their hosts' status).
    async fn volume_views(&self, volumes: Vec<VolumeRecord>) -> Result<Vec<Volume>, ApiError> {
        let hosts = self.inner.store.hosts().await?;
        let now = now_ms();
        Ok(volumes
            .into_iter()
            .map(|v| {
                let host = hosts.iter().find(|h| h.info.id == v.host_id);
                volume_json(v, host, now)
            })
            .collect())
    }

    /// The volume as the API shows it (with its host's status).
    async fn volume_view(&self, v: VolumeRecord) -> Result<Volume, ApiError> {
        let host = self.inner.store.host(&v.host_id).await?;
        Ok(volume_json(v, host.as_ref(), now_ms()))
    }

    /// `GET /v1/apps/{app}/volumes`.
    pub(crate) async fn list_volumes(
        &self,
        caller: &Caller,
        app: &str,
    ) -> Result<Vec<Volume>, ApiError> {
        let app = self.app_of(caller, app).await?;
        let volumes = self.inner.store.volumes_of_app(&app.name).await?;
        self.volume_views(volumes).await
    }

    /// The app's volume `id`, 404 naming the fix otherwise.
    async fn volume_of(
        &self,
        caller: &Caller,
        app: &str,
        id: &str,
    ) -> Result<VolumeRecord, ApiError> {
        let app = self.app_of(caller, app).await?;
        match self.inner.store.volume(id).await? {
            Some(v) if v.app == app.name => Ok(v),
            _ => Err(ApiError::NotFound(format!(
                "app `{}` has no volume `{id}`; `aloft volumes list -a {}` shows its volumes",
                app.name, app.name
            ))),
        }
    }

    /// `GET /v1/apps/{app}/volumes/{id}`.
    pub(crate) async fn get_volume(
        &self,
        caller: &Caller,
        app: &str,
        id: &str,
    ) -> Result<Volume, ApiError> {
        self.volume_view(self.volume_of(caller, app, id).await?)
            .await
    }

    /// `PUT /v1/apps/{app}/volumes/{id}`: its snapshot settings (retention, scheduled
    /// snapshots); what the body leaves out stays.
    pub(crate) async fn update_volume_settings(
        &self,
        caller: &Caller,
        app: &str,
        id: &str,
        body: &[u8],
    ) -> Result<Volume, ApiError> {
        let mut v = self.volume_of(caller, app, id).await?;
        let req: UpdateVolumeRequest = ApiError::parse_json(body)?;
        v.settings = rules::apply_update(v.settings, &req)?;
        self.inner
            .store
            .set_volume_settings(&v.id, v.settings)
            .await?;
        self.volume_view(v).await
    }

    /// `PUT /v1/apps/{app}/volumes/{id}/extend`: a larger size, which the volume's host applies
    /// (image and filesystem) at the next start of the machine that mounts it.
    pub(crate) async fn extend_volume(
        &self,
        caller: &Caller,
        app: &str,
        id: &str,
        body: &[u8],
    ) -> Result<ExtendVolumeResponse, ApiError> {
        let mut v = self.volume_of(caller, app, id).await?;
        let req: ExtendVolumeRequest = ApiError::parse_json(body)?;
        if req.size_gb <= v.size_gb || req.size_gb > MAX_VOLUME_GB {
            return Err(ApiError::invalid(
                "size_gb",
                format!(
                    "size_gb {} must be larger than the volume's {} GB and at most {MAX_VOLUME_GB} (volumes only grow)",
                    req.size_gb, v.size_gb
                ),
            ));
        }
        self.inner.store.set_volume_size(&v.id, req.size_gb).await?;
        v.size_gb = req.size_gb;
        let needs_restart = v.attached_machine_id.is_some();
        Ok(ExtendVolumeResponse {
            volume: self.volume_view(v).await?,
            needs_restart,
        })
    }

    /// `DELETE /v1/apps/{app}/volumes/{id}`: refused while a machine mounts it; the host removes
    /// the data (and the snapshots) first, and the record goes only once it has.
    pub(crate) async fn destroy_volume(
        &self,
        caller: &Caller,
        app: &str,
        id: &str,
    ) -> Result<Volume, ApiError> {
        let v = self.volume_of(caller, app, id).await?;
        if let Some(machine) = &v.attached_machine_id {
            return Err(ApiError::Conflict(format!(
                "volume {} is mounted by machine {machine}; destroy that machine first (aloft machine destroy {machine} -a {})",
                v.id, v.app
            )));
        }
        self.remove_volume_data(&v).await?;
        self.inner.store.delete_volume(&v.id).await?;
        // Its data is gone already; `destroying` is what the reference answers (and its clients
        // read as destroyed).
        Ok(Volume {
            state: "destroying".into(),
            ..self.volume_view(v).await?
        })
    }

    /// Asks the volume's host to remove its data; 503 when the host cannot (the record stays).
    pub(crate) async fn remove_volume_data(&self, v: &VolumeRecord) -> Result<(), ApiError> {
        let delete = |agent: AgentClient| async move { agent.delete_volume(&v.id).await };
        let reply = self.ask_volume_host(v, delete).await?;
        if reply.status.is_success() || reply.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(reply.error())
        }
    }

    /// `POST /v1/apps/{app}/volumes/{id}/snapshots`: a copy taken now on the volume's host.
    pub(crate) async fn create_snapshot(
        &self,
        caller: &Caller,
        app: &str,
        id: &str,
    ) -> Result<VolumeSnapshot, ApiError> {
        let v = self.volume_of(caller, app, id).await?;
        let snapshot_id = new_snapshot_id();
        let take = TakeSnapshotRequest {
            snapshot_id: snapshot_id.clone(),
        };
        let (volume_id, take) = (&v.id, &take);
        let snapshot =
            move |agent: AgentClient| async move { agent.snapshot_volume(volume_id, take).await };
        let reply = self.ask_volume_host(&v, snapshot).await?;
        if !reply.status.is_success() {
            return Err(reply.error());
        }
        let taken: TakenSnapshot = serde_json::from_slice(&reply.body).map_err(|e| {
            internal(
                &format!(
                    "host {} took the snapshot but answered in a form the control plane cannot read",
                    v.host_id
                ),
                &e,
            )
        })?;
        let record = SnapshotRecord {
            id: snapshot_id,
            volume_id: v.id,
            size: taken.size,
            created_at: now_ms(),
            volume_size: Some(v.size_gb),
            digest: taken.digest,
            retention_days: Some(v.settings.snapshot_retention),
        };
        self.inner.store.insert_snapshot(record.clone()).await?;
        Ok(snapshot_json(record))
    }

    /// `GET /v1/apps/{app}/volumes/{id}/snapshots`.
    pub(crate) async fn list_snapshots(
        &self,
        caller: &Caller,
        app: &str,
        id: &str,
    ) -> Result<Vec<VolumeSnapshot>, ApiError> {
        let v = self.volume_of(caller, app, id).await?;
        let snapshots = self.inner.store.snapshots(&v.id).await?;
        Ok(snapshots.into_iter().map(snapshot_json).collect())
    }

    /// `GET /internal/v1/volumes/{id}`: what the volume's host needs to open it.
    pub(crate) async fn volume_access(
        &self,
        host: &HostCaller,
        id: &str,
    ) -> Result<VolumeAccess, ApiError> {
        let v = self
            .inner
            .store
            .volume(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no volume `{id}`")))?;
        if v.host_id != host.0 {
            return Err(ApiError::Forbidden(format!(
                "volume {id} is not on host `{}`; a host reads only its own volumes' keys",
                host.0
            )));
        }
        let key = self
            .inner
            .secrets
            .open(&v.app, &key_name(&v.id), &v.key)
            .ok_or_else(|| {
                ApiError::Internal(format!(
                    "volume {}'s key does not open with this control plane's secrets.key; its data cannot be read without the key it was made with",
                    v.id
                ))
            })?;
        Ok(VolumeAccess {
            id: v.id,
            app: v.app,
            size_gb: v.size_gb,
            host_id: v.host_id,
            key,
        })
    }

    /// For a machine create or update that mounts a volume: the volume (the app's, in the
    /// requested region, not mounted by another live machine) and its host, which must be
    /// registered; the caller then sends the request to that host only.
    pub(crate) async fn volume_placement(
        &self,
        app: &str,
        volume_id: &str,
        region: Option<&str>,
        machine: Option<&str>,
    ) -> Result<(VolumeRecord, HostRecord), ApiError> {
        let field = "config.mounts[0].volume";
        let v = match self.inner.store.volume(volume_id).await? {
            Some(v) if v.app == app => v,
            _ => {
                return Err(ApiError::invalid(
                    field,
                    format!(
                        "app `{app}` has no volume `{volume_id}`; create one with `aloft volumes create NAME --region REGION -a {app}` and mount it by its id"
                    ),
                ));
            }
        };
        if let Some(region) = region.filter(|r| *r != v.region) {
            return Err(ApiError::invalid(
                "region",
                format!(
                    "volume {} is in region `{}`, so a machine mounting it runs there, not in `{region}`",
                    v.id, v.region
                ),
            ));
        }
        if let Some(holder) = v
            .attached_machine_id
            .as_deref()
            .filter(|h| Some(*h) != machine)
            && self
                .inner
                .store
                .machine(holder)
                .await?
                .is_some_and(|m| !m.destroyed)
        {
            return Err(ApiError::Conflict(format!(
                "volume {} is mounted by machine {holder}; a volume is mounted by one machine at a time: create another volume (aloft volumes create {} --region {} -a {app}) or destroy that machine",
                v.id, v.name, v.region
            )));
        }
        let host = self.inner.store.host(&v.host_id).await?.ok_or_else(|| {
            ApiError::Unavailable(format!(
                "volume {} lives on host `{}`, which is not registered; its data is only there, so no machine can mount it until that host's agent is back",
                v.id, v.host_id
            ))
        })?;
        Ok((v, host))
    }

    /// Calls one internal endpoint of the volume's host (`op` gets its agent's client); 503
    /// naming the volume when the host does not answer.
    async fn ask_volume_host<F, Fut>(&self, v: &VolumeRecord, op: F) -> Result<AgentReply, ApiError>
    where
        F: FnOnce(AgentClient) -> Fut,
        Fut: Future<Output = Result<AgentReply, AgentError>>,
    {
        let host = self.inner.store.host(&v.host_id).await?;
        let sent = match &host {
            Some(host) => self.inner.forwarder.ask(host, op).await,
            None => return Err(volume_host_down(v, "it is not registered")),
        };
        sent.map_err(|e| volume_host_down(v, &e.to_string()))
    }
}

/// 503: the volume's host is down. Nothing is made elsewhere: the data is only there.
pub(crate) fn volume_host_down(v: &VolumeRecord, why: &str) -> ApiError {
    ApiError::Unavailable(format!(
        "volume {} ({}) lives on host `{}` in {}, which does not answer ({why}); its data is only there, so nothing was done: bring that host back, or create a new, empty volume with `aloft volumes create {} --region {} -a {}`",
        v.id, v.name, v.host_id, v.region, v.name, v.region, v.app
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::VolumeSettings;
    use aloft_types::api::HostInfo;

    fn record() -> VolumeRecord {
        VolumeRecord {
            id: "vol_0011223344556677".into(),
            app: "hello".into(),
            name: "data".into(),
            region: "ord".into(),
            host_id: "ord-1".into(),
            size_gb: 3,
            key: crate::secrets::Sealed {
                nonce: String::new(),
                ciphertext: String::new(),
            },
            attached_machine_id: None,
            created_at: 0,
            settings: VolumeSettings {
                snapshot_retention: 9,
                auto_backup_enabled: true,
            },
        }
    }

    fn host(last_seen: i64) -> HostRecord {
        HostRecord {
            info: HostInfo {
                id: "ord-1".into(),
                region: "ord".into(),
                address: String::new(),
                runtime: "sim".into(),
                cpus: 1,
                memory_mb: 1024,
                allocated_cpus: 0,
                allocated_memory_mb: 0,
            },
            last_seen,
        }
    }

    /// `host_status`: ok within three heartbeats, unknown after, unreachable unregistered.
    #[test]
    fn host_status_follows_the_hosts_heartbeat() {
        let now = 100_000;
        let status = |host: Option<&HostRecord>| volume_json(record(), host, now).host_status;
        assert_eq!(status(Some(&host(now - HOST_FRESH_MS))), HostStatus::Ok);
        assert_eq!(
            status(Some(&host(now - HOST_FRESH_MS - 1))),
            HostStatus::Unknown
        );
        assert_eq!(status(None), HostStatus::Unreachable);
        let v = volume_json(record(), None, now);
        assert_eq!((v.snapshot_retention, v.auto_backup_enabled), (9, true));
        assert_eq!((v.fstype.as_str(), v.attached_alloc_id), ("ext4", None));
    }
}
