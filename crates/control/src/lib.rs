//! The aloft control plane: the public Machines API in front of the host agents.
//!
//! It owns orgs, API tokens (stored as SHA-256 hashes), apps, the registry of hosts and a machine
//! index (`machine id -> app, host`), in SQLite at `<data_dir>/control.db`. Machine *state* lives
//! in the agents: for every machine request the control plane authenticates the org token, checks
//! that the app belongs to the token's org (another org's app is a 404, exactly like a missing
//! one), picks a host on create (by region, then the host with the most free memory), and
//! forwards the request unchanged to the owning agent with the internal headers
//! (`x-aloft-org`, `x-aloft-network-id`, `x-aloft-actor`, and `x-aloft-registry-token`: the
//! caller's own token, which the agent uses in memory for the registry pulls the request
//! triggers). Listing machines fans out to every host holding machines of the app; hosts that do
//! not answer are named in the `x-aloft-partial` response header. Operators reach each host's
//! images through `GET /internal/v1/hosts/{host}/images` and `POST .../images/prune`.
//!
//! Layers: [`http`] (routes, extractors, thin handlers) -> the app layer, one module per concern
//! (`apps`: authn, the org rule, apps and their secrets, releases and certificates; `machines`:
//! placement, index upkeep, forwarding; `volumes`; `hosts`) -> `store` (SQLite) and `forward`
//! (one pooled HTTP client to agents, each called through the typed `AgentClient` of
//! `aloft_agent_api`, which also gives the agent's paths, headers and OpenAPI document: the
//! control plane does not link the agent, its runtime or its images).
//! [`openapi_document`] describes the API; `openapi/machines-api.json` is its checked-in copy.
//!
//! Decisions:
//! - **Listing when a host is down.** The index holds no machine state, so the machines of a host
//!   that does not answer cannot be listed; the reply holds the machines of the hosts that did
//!   and the header `x-aloft-partial: <host ids>` says which are missing (status stays 200).
//! - **Index freshness.** The index learns that a machine is gone through the gateway (a
//!   `DELETE`, or a read or list that shows it `destroyed`). A machine an agent destroys on its
//!   own (`auto_destroy`) still counts in `machine_count` until then; a name clash with such a
//!   machine is confirmed with its agent before answering 409.
//! - **Capacity.** Placement uses what each host reported in its last heartbeat plus what was
//!   placed on it since; a host that refuses for lack of room (503) or cannot be connected to
//!   passes the create to the next host.
//! - **Machine paths.** Every path under `/v1/apps/{app}/machines/{id}` is forwarded, so new
//!   agent operations need no change here; paths with `.`/`..`/empty segments are refused (400)
//!   so that no request can climb out of the machine it was authorized for.

mod apps;
mod auth;
mod error;
mod forward;
mod host_credentials;
mod hostnames;
mod hosts;
pub mod http;
mod join;
mod machines;
mod placement;
mod registry_logins;
mod secrets;
mod store;
mod tokens;
mod volumes;

pub use error::ControlPlaneError;
pub use hostnames::{HostnameGrant, HostnamePolicy};
pub use http::openapi::{ControlPlaneApiDoc, openapi_document};
pub use join::derive_host_keys;

use aloft_types::api::{HostInfo, MeshJoin, MeshPeer};
use aloft_types::time::now_ms;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// How to run a control plane.
#[derive(Debug, Clone)]
pub struct ControlPlaneConfig {
    /// Holds `control.db` (SQLite); created if missing.
    pub data_dir: PathBuf,
    /// The cluster secret: the operator's credential on `/internal/v1/*`, and what every host
    /// key is derived from (see `join`). Hosts never get it.
    pub internal_token: String,
    /// The region used when a create names none.
    pub default_region: String,
    /// Which org may serve which hostnames.
    pub hostnames: HostnamePolicy,
}

/// A running control plane. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct ControlPlane {
    inner: Arc<Inner>,
}

struct Inner {
    config: ControlPlaneConfig,
    store: store::Store,
    forwarder: forward::Forwarder,
    /// One lock per app, taken while a machine name is checked and claimed.
    name_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// One lock per app, taken by a volume create that asks for a unique zone from reading the
    /// app's volumes to writing its own, so two such creates cannot both take one host.
    zone_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Moves on when a certificate (an app's hostname) is added or removed.
    certificates: tokio::sync::watch::Sender<u64>,
    /// Issues managed certificates (`POST .../certificates/acme`).
    issuer: Box<dyn apps::certificates::issuer::ManagedIssuer>,
    /// The control plane's own place in the mesh (number 0), when it has one.
    mesh_self: Mutex<Option<MeshPeer>>,
    /// Moves on when a host joins the mesh (or changes its key or endpoint).
    mesh_changes: tokio::sync::watch::Sender<u64>,
    /// Seals and opens app secrets.
    secrets: secrets::SecretBox,
    /// Creates being placed, per (host, app): see `host_credentials`.
    placing: Mutex<HashMap<(String, String), usize>>,
}

impl ControlPlane {
    /// Opens (or creates) the store in `config.data_dir`. A data dir that cannot be created or
    /// written is an error naming it, before anything is written.
    pub async fn open(config: ControlPlaneConfig) -> Result<ControlPlane, ControlPlaneError> {
        let dir = config.data_dir.clone();
        let (store, secrets) = tokio::task::spawn_blocking(move || {
            check_writable(&dir)?;
            let store = store::Store::open(&dir.join("control.db"))?;
            let sealed = store.sealed_values()?;
            let secrets = secrets::SecretBox::load_or_create(&dir.join("secrets.key"), sealed)?;
            Ok::<_, ControlPlaneError>((store, secrets))
        })
        .await
        .map_err(|source| ControlPlaneError::StoreTask { op: "open", source })??;
        let forwarder = forward::Forwarder::new(config.internal_token.clone())?;
        Ok(ControlPlane {
            inner: Arc::new(Inner {
                config,
                store,
                forwarder,
                name_locks: Mutex::default(),
                zone_locks: Mutex::default(),
                certificates: tokio::sync::watch::Sender::new(0),
                issuer: Box::new(apps::certificates::issuer::DevelopmentCa),
                mesh_self: Mutex::default(),
                mesh_changes: tokio::sync::watch::Sender::new(0),
                secrets,
                placing: Mutex::default(),
            }),
        })
    }

    /// Moves on whenever a hostname is added or removed.
    pub fn certificate_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.certificates.subscribe()
    }

    /// The public Machines API, the OpenAPI document and the internal endpoints agents use.
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// Creates the org if it does not exist (its 6PN network id is the next free one).
    pub async fn ensure_org(&self, slug: &str) -> Result<(), ControlPlaneError> {
        if !auth::is_dns_label(slug) {
            return Err(ControlPlaneError::InvalidOrgSlug(slug.to_string()));
        }
        self.inner.store.ensure_org(slug, now_ms()).await.map(drop)
    }

    /// Records a host (what `POST /internal/v1/hosts` does for agents).
    pub async fn register_host(&self, info: HostInfo) -> Result<(), ControlPlaneError> {
        self.inner.store.upsert_host(info, now_ms()).await
    }

    /// The host part of 6PN addresses for host `host_id` (the same for the host's whole life).
    pub async fn host_number(&self, host_id: &str) -> Result<u32, ControlPlaneError> {
        self.inner.store.host_number(host_id).await
    }

    /// Records how the mesh reaches host `host_id`; `false` when it has no number yet.
    pub async fn join_mesh(
        &self,
        host_id: &str,
        join: MeshJoin,
    ) -> Result<bool, ControlPlaneError> {
        let joined = self.inner.store.join_mesh(host_id, join).await?;
        if joined {
            self.inner.mesh_changes.send_modify(|n| *n += 1);
        }
        Ok(joined)
    }

    /// Moves on when a host joins the mesh: the control plane's own mesh endpoint takes new
    /// members at once (a host's first heartbeat follows its join).
    pub fn mesh_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.mesh_changes.subscribe()
    }

    /// Makes the control plane a member of the mesh (as number 0), listed with the hosts.
    pub fn set_mesh_self(&self, me: MeshPeer) {
        *self.inner.mesh_self.lock() = Some(me);
    }

    /// Every member of the mesh: the control plane (if it is one), then the hosts by number.
    pub async fn mesh_peers(&self) -> Result<Vec<MeshPeer>, ControlPlaneError> {
        let me = self.inner.mesh_self.lock().clone();
        let mut peers: Vec<MeshPeer> = me.into_iter().collect();
        peers.extend(self.inner.store.mesh_members().await?);
        Ok(peers)
    }
}

/// Creates `dir` and proves a file can be written in it.
fn check_writable(dir: &std::path::Path) -> Result<(), ControlPlaneError> {
    let err = |source| ControlPlaneError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let probe = dir.join(".write-check");
    std::fs::write(&probe, b"ok").map_err(err)?;
    std::fs::remove_file(&probe).map_err(err)
}
