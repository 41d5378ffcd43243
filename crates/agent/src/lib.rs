//! The aloft host agent: the source of truth for the machines on one host.
//!
//! The agent keeps its machines in its own SQLite store (`<data_dir>/agent.db`), drives them
//! through a [`Runtime`](aloft_runtime::Runtime) with the state machine in ARCHITECTURE.md, and
//! serves the machine endpoints of the Machines API on the same paths and JSON as the public API
//! (the control plane forwards requests to it unchanged), behind a cluster-internal bearer token.
//!
//! - `store`: the SQLite store; every transition is written before it is acted on, and the
//!   state it reached after.
//! - `agent`: the [`Agent`] handle, opened with everything it works with ([`AgentDeps`]).
//! - `machine`: the machines' in-memory side (`slot`), the API's operations (`ops`, `reads`) and
//!   leases (`lease`); each write runs as a task the agent owns, under the machine's lock.
//!   `runs`: starting and stopping runs, the supervisor per run, restart policies. `reconcile`: at
//!   start-up, adopt what still runs and finish what a crash interrupted.
//! - `images`: machines' images — `config.image` resolved, pulled with the caller's registry
//!   token (in memory, for that request only) while the machine shows the pull's progress,
//!   pinned per version by manifest digest, the process and the platform's environment; the
//!   host's image list and prune.
//! - `secrets`, `volumes`, `checks`: app secrets and volume keys from the control plane, the
//!   host's volumes, health checks.
//! - [`http`]: the axum router and its OpenAPI document ([`http::MachinesApiDoc`]).
//! - [`spawn_heartbeat`]: registration with the control plane every 10 s.
//! - `catalog`: the agent as the [`MachineSource`](aloft_catalog::MachineSource) of its host's
//!   [`LocalCatalog`](aloft_catalog::LocalCatalog).
//!
//! Restarting the agent never stops machines: [`Agent::open`] reattaches to them.

mod agent;
mod catalog;
mod checks;
mod error;
mod heartbeat;
pub mod http;
mod images;
mod machine;
pub mod secrets;
mod store;
mod tasks;
mod volumes;

#[cfg(test)]
mod proptests;

pub use agent::{Agent, AgentDeps};
pub use checks::spawn_health_checks;
pub use error::AgentError;
pub use heartbeat::spawn_heartbeat;

use std::path::PathBuf;

/// How an agent is set up.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Holds agent.db (SQLite).
    pub data_dir: PathBuf,
    /// This host's id, e.g. "local-1".
    pub host_id: String,
    /// The host part of 6PN addresses.
    pub host_number: u32,
    /// The region this host serves.
    pub region: String,
    /// CPU capacity advertised for placement.
    pub cpus: u32,
    /// Memory capacity (MB) advertised for placement.
    pub memory_mb: u64,
    /// The bearer token the control plane must send (this host's agent key, see
    /// `aloft_types::join::HostKeys`): it opens every endpoint.
    pub agent_token: String,
    /// The bearer token other hosts send (the peer key): it opens only the autostart of a
    /// stopped machine (`POST /internal/v1/apps/{app}/machines/{id}/autostart`).
    pub peer_token: String,
    /// Where machines' images come from. `None`: no pulls — a machine's spec carries no image
    /// (only the sim runtime runs such machines; tests of other parts, `dev up --no-pull`).
    pub images: Option<aloft_image::ImageStore>,
    /// The registry a `name:tag` image is on (`host:port`, e.g. `127.0.0.1:5000`): `name:tag`
    /// means `<registry>/<org>/name:tag`. Only used with `images`.
    pub registry: String,
}
