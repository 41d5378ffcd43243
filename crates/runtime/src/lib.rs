//! The `Runtime` trait: what a host agent needs from an isolation backend.
//!
//! A backend turns a [`MachineSpec`] into a running guest and reports how it ended. The agent owns
//! every decision (state machine, restart policy, leases); a backend only does what it is told and
//! answers truthfully about what is running. Backends must let machines outlive the agent process:
//! [`Runtime::reattach`] finds a machine that is still running after the agent restarts.
//!
//! The agent prepares the machine's image before it asks a backend to start it (pulled once per
//! host by `aloft-image`) and hands it over as a [`PreparedImage`] in the [`MachineSpec`]: the
//! root filesystem and the process to run (argv, environment, working directory, user), already
//! merged from the image config, the machine config and the platform's variables.
//!
//! Backends here: [`gvisor`] (runsc sandboxes), [`microvm`] (QEMU microVMs), and
//! [`sim::SimRuntime`], a simulated twin used by tests of other parts. Both real backends run
//! `aloft-init` as the machine's PID 1 and supervise their runtime process through a detached
//! shim ([`supervise`]) so machines outlive the agent; [`net`] gives every machine its addresses
//! on the host's bridge.

pub mod bounded;
pub mod cgroup;
mod guest;
pub mod gvisor;
mod host;
pub mod microvm;
pub mod net;
mod rootdisk;
pub mod sim;
pub mod supervise;
pub mod volume;

pub use host::{Backend, DEFAULT_KERNEL_DIR, HostOptions, find_init_binary, open};

use aloft_types::api::{ExecResponse, LogLine, ProcessStat};
use aloft_types::signal::Signal;
use aloft_types::{MachineConfig, MachineId};
use async_trait::async_trait;
use std::path::PathBuf;
use std::time::Duration;

/// The process a machine runs (argv, env, working directory, user): what the guest init execs.
pub use aloft_image::ProcessSpec;

/// Everything a backend needs to run one version of a machine.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineSpec {
    pub id: MachineId,
    pub app: String,
    pub org: String,
    pub region: String,
    /// The machine's 6PN address.
    pub private_ip: String,
    /// The version being run.
    pub instance_id: String,
    pub config: MachineConfig,
    /// The machine's image, ready on this host. `None` when the agent pulls no images (tests
    /// of other parts, `aloft dev up --no-pull`): only the sim backend runs such a machine.
    pub image: Option<PreparedImage>,
    /// The host's internal DNS server (`fdaa::3`), when one serves its machines: their name
    /// server unless their config names others. `None`: the host's upstream resolvers.
    pub internal_dns: Option<String>,
    /// The volumes it mounts, ready on this host ([`volume::VolumeStore::prepare`]).
    pub volumes: Vec<volume::AttachedVolume>,
}

/// An image pulled and assembled on this host, and the process to run from it.
///
/// `rootfs` is a **read-only base shared by every machine of the image**: its files are hard
/// links into the host's layer cache, so writing one would change it for every machine and
/// every later pull. A backend must never write into it: gVisor mounts it as the lower layer
/// of a per-machine writable overlay; the microVM backend boots the ext4 image built from it
/// (`aloft_image::ImageStore::ext4`) with a per-machine copy-on-write disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedImage {
    /// The digest of the image's manifest (its identity on the host).
    pub manifest_digest: String,
    /// The assembled root filesystem (read-only, shared; see above).
    pub rootfs: PathBuf,
    /// What to run: the image's Entrypoint/Cmd/Env/WorkingDir/User merged with the machine
    /// config's `init` and `env`, plus the platform's variables (`FLY_APP_NAME`, ...).
    pub process: ProcessSpec,
    /// The image's root filesystem as an ext4 disk image (read-only, shared), when the backend
    /// boots block devices ([`Capabilities::disk_image`]) and the agent built one.
    pub disk: Option<PathBuf>,
}

/// How a run of a machine ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code, or 128 + signal when a signal ended it.
    pub exit_code: i32,
    /// The signal that ended the process, if one did.
    pub signal: Option<i32>,
    pub oom_killed: bool,
}

impl ExitStatus {
    pub fn code(code: i32) -> Self {
        Self {
            exit_code: code,
            signal: None,
            oom_killed: false,
        }
    }

    pub fn signaled(signal: Signal) -> Self {
        Self {
            exit_code: 128 + signal.number(),
            signal: Some(signal.number()),
            oom_killed: false,
        }
    }

    /// Whether the run counts as a failure for the `on-failure` restart policy.
    pub fn is_failure(&self) -> bool {
        self.exit_code != 0 || self.oom_killed
    }
}

/// A machine the backend has found running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// The version that is running.
    pub instance_id: String,
    /// The backend's process id for it, if it has one.
    pub pid: Option<u32>,
}

/// Resource usage of a running machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub cpu_ms: u64,
    pub memory_bytes: u64,
}

/// What a backend reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Can save a machine's memory and resume it later.
    pub suspend: bool,
    /// Boots the root filesystem from an ext4 disk image ([`PreparedImage::disk`]).
    pub disk_image: bool,
}

/// Failures of a backend. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("machine {0} is not known to the runtime")]
    NotFound(MachineId),
    #[error("machine {0} is not running")]
    NotRunning(MachineId),
    #[error("the runtime cannot do that: {0}")]
    Unsupported(String),
    #[error("starting machine {id} failed: {reason}")]
    StartFailed { id: MachineId, reason: String },
    #[error("{op} on machine {id} failed: {source}")]
    Io {
        op: &'static str,
        id: MachineId,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// An isolation backend. Every method is about one machine and may be called concurrently for
/// different machines; the agent never calls two mutating methods for the same machine at once.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// The backend's name (`sim`, `gvisor`, `microvm`).
    fn name(&self) -> &'static str;

    fn capabilities(&self) -> Capabilities;

    /// Prepares what the machine needs (root filesystem, network) without running it.
    async fn create(&self, spec: &MachineSpec) -> Result<(), RuntimeError>;

    /// Runs the machine; returns once its process is running. A machine that is already running
    /// is an error: the agent checks with [`Runtime::reattach`] first.
    async fn start(&self, spec: &MachineSpec) -> Result<Running, RuntimeError>;

    /// Sends a signal to the machine's main process.
    async fn signal(&self, id: &MachineId, signal: Signal) -> Result<(), RuntimeError>;

    /// Ends the machine at once (SIGKILL, or the backend's equivalent).
    async fn kill(&self, id: &MachineId) -> Result<(), RuntimeError>;

    /// Waits until the current run ends and says how. Several callers may wait at once; a run that
    /// already ended answers at once. `NotRunning` when there is no run to wait for.
    async fn wait(&self, id: &MachineId) -> Result<ExitStatus, RuntimeError>;

    /// Runs a command inside the running machine.
    async fn exec(
        &self,
        id: &MachineId,
        argv: &[String],
        stdin: Option<&str>,
        timeout: Duration,
    ) -> Result<ExecResponse, RuntimeError>;

    /// The machine's recent log lines, oldest first.
    async fn logs(&self, id: &MachineId) -> Result<Vec<LogLine>, RuntimeError>;

    /// Resource usage of the running machine.
    async fn stats(&self, id: &MachineId) -> Result<Stats, RuntimeError>;

    /// The processes inside the running machine.
    async fn ps(&self, id: &MachineId) -> Result<Vec<ProcessStat>, RuntimeError>;

    /// Saves the machine's memory and stops it, to resume on the next start. Backends without
    /// [`Capabilities::suspend`] return `Unsupported` and the agent stops the machine instead.
    async fn suspend(&self, id: &MachineId) -> Result<(), RuntimeError> {
        Err(RuntimeError::Unsupported(format!(
            "machine {id}: this backend cannot suspend"
        )))
    }

    /// After a run ended: why its process could not start, when the guest said (init's
    /// report), for the machine's exit event.
    async fn exit_message(&self, id: &MachineId) -> Option<String> {
        let _ = id;
        None
    }

    /// Releases everything the machine holds (it must not be running).
    async fn destroy(&self, id: &MachineId) -> Result<(), RuntimeError>;

    /// After an agent restart: is this machine still running, and which version? `None` when it
    /// is not running (its run ended, or the host restarted).
    async fn reattach(&self, id: &MachineId) -> Result<Option<Running>, RuntimeError>;

    /// Stops the machine: `signal`, then SIGKILL when it has not exited after `timeout`.
    /// Returns how the run ended.
    async fn stop(
        &self,
        id: &MachineId,
        signal: Signal,
        timeout: Duration,
    ) -> Result<ExitStatus, RuntimeError> {
        match self.signal(id, signal).await {
            Ok(()) => {}
            Err(RuntimeError::NotRunning(_)) => return self.wait(id).await,
            Err(e) => return Err(e),
        }
        match tokio::time::timeout(timeout, self.wait(id)).await {
            Ok(r) => r,
            Err(_) => {
                if signal != Signal::KILL {
                    tracing::info!(machine = %id, ?timeout, "machine ignored {signal}; killing it");
                }
                self.kill(id).await?;
                self.wait(id).await
            }
        }
    }
}
