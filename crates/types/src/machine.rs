//! The machine object the API returns, its events and its check results.

use crate::config::MachineConfig;
use crate::ids::{InstanceId, MachineId};
use crate::state::MachineState;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A machine, as `GET /v1/apps/{app}/machines/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Machine {
    pub id: MachineId,
    pub name: String,
    pub state: MachineState,
    pub region: String,
    /// The current version of the machine's config.
    pub instance_id: InstanceId,
    /// The machine's version, as the reference's clients read it: the same ULID-like id as
    /// `instance_id` (a new one on every update; what `wait?version=` and a lease's
    /// `data.version` name).
    #[serde(default)]
    pub version: String,
    /// The machine's 6PN address.
    pub private_ip: String,
    pub config: MachineConfig,
    pub image_ref: ImageRef,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// The most recent events, newest first.
    #[serde(default)]
    pub events: Vec<MachineEvent>,
    #[serde(default)]
    pub checks: Vec<CheckStatus>,
    /// `ok`, `unknown` or `unreachable`: whether the machine's host answers. A machine object
    /// comes from its host, so it is always `ok` and `config` is complete: the reference's
    /// `incomplete_config` (a config rebuilt while the host is away) is never sent; a host that
    /// does not answer is named instead (`x-aloft-partial` on lists, 503 on one machine).
    pub host_status: HostStatus,
    /// The app the machine belongs to.
    #[serde(default)]
    pub app_name: String,
    /// Out of proxy routing (`cordon`).
    #[serde(default)]
    pub cordoned: bool,
    /// The host the machine lives on.
    #[serde(default)]
    pub host_id: String,
    /// Set when the machine was created with `lease_ttl`: the nonce of the lease it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Present while the host pulls the machine's image (before it starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull: Option<ImagePull>,
}

/// Where the pull of a machine's image is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImagePullPhase {
    /// Talking to the registry: authentication, manifest.
    #[default]
    Resolving,
    /// Downloading and unpacking layers.
    Fetching,
    /// Assembling the root filesystem.
    Assembling,
    /// Finished.
    Done,
}

/// Progress of the pull of a machine's image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImagePull {
    pub phase: ImagePullPhase,
    /// Distinct layers of the image (0 until the manifest is read).
    pub layers_total: u32,
    /// Layers ready (already on the host, or fetched and unpacked).
    pub layers_done: u32,
    /// Layers that were already on the host.
    pub layers_cached: u32,
    /// Compressed bytes of the layers that have to be fetched.
    pub bytes_total: u64,
    /// Bytes received so far.
    pub bytes_fetched: u64,
}

/// Whether the machine's host answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    #[default]
    Ok,
    Unknown,
    Unreachable,
}

/// The image a machine runs, split into its parts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    pub tag: String,
    pub digest: String,
}

impl ImageRef {
    /// Splits `registry/repo:tag@digest`. A first component without a `.`, `:` or `localhost` is
    /// part of the repository (there is no registry in the reference).
    pub fn parse(image: &str) -> Self {
        let (rest, digest) = match image.split_once('@') {
            Some((r, d)) => (r, d.to_string()),
            None => (image, String::new()),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path)
            }
            _ => (String::new(), rest),
        };
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
            _ => (
                path.to_string(),
                if digest.is_empty() {
                    "latest".into()
                } else {
                    String::new()
                },
            ),
        };
        Self {
            registry,
            repository,
            tag,
            digest,
        }
    }
}

/// `launch`, `start`, `stop`, `exit`, `restart`, `update` or `destroy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Launch,
    Start,
    Stop,
    Exit,
    Restart,
    Update,
    Destroy,
    Suspend,
}

/// Who caused an event: the `user` (an API call) or the `agent` (restart policy, reconciling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    User,
    Agent,
}

/// Something that happened to a machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MachineEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The state the machine reached (or `failed`).
    pub status: String,
    pub source: EventSource,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<EventRequest>,
}

/// Details of an event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_event: Option<ExitEvent>,
    /// On exits: how many times the restart policy has restarted the machine since a user last
    /// started it (the reference's `restart_count`; the same as `exit_event.restarts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<u32>,
    /// A sentence about what happened, for events that are not exits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// How a machine's process ended.
///
/// The reference tells the VM's exit (`exit_code`, `signal`) from its main process's
/// (`guest_exit_code`, `guest_signal`); aloft's runtimes report the main process itself, so each
/// pair holds the same values. -1 where how it ended is not known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExitEvent {
    /// The exit code, or 128 + the signal when a signal ended the process.
    pub exit_code: i32,
    /// The main process's exit code (the same as `exit_code`).
    #[serde(default)]
    pub guest_exit_code: i32,
    /// The signal that ended the main process, or -1 (the same as `signal`).
    #[serde(default)]
    pub guest_signal: i32,
    pub oom_killed: bool,
    /// A user stopped (or restarted, updated, destroyed) the machine.
    pub requested_stop: bool,
    /// The machine is started again after this exit: a restart, an update of a started machine,
    /// or the restart policy.
    #[serde(default)]
    pub restarting: bool,
    /// The signal that ended the process, or -1.
    pub signal: i32,
    /// RFC 3339.
    pub exited_at: String,
    /// How many times the restart policy has restarted the machine since it was last started by
    /// a user.
    #[serde(default)]
    pub restarts: u32,
}

/// `passing`, `warning` or `critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    Passing,
    Warning,
    Critical,
}

impl CheckState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passing => "passing",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// The latest result of one health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckStatus {
    pub name: String,
    pub status: CheckState,
    pub output: String,
    pub updated_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs() {
        let r = ImageRef::parse("127.0.0.1:5000/personal/hello:v1");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_str()),
            ("127.0.0.1:5000", "personal/hello", "v1")
        );
        let r = ImageRef::parse("nginx");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_str()),
            ("", "nginx", "latest")
        );
        let r = ImageRef::parse("hello@sha256:abc");
        assert_eq!(
            (r.repository.as_str(), r.tag.as_str(), r.digest.as_str()),
            ("hello", "", "sha256:abc")
        );
    }
}
