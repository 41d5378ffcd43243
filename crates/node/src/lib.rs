//! aloft's server roles, started the same way everywhere.
//!
//! - [`roles`]: the control plane, a host (agent, proxy, internal DNS, catalog, mesh) and the
//!   registry, each built from a typed config.
//! - `server`: `aloft server control|host|registry`, one role per process (production).
//! - `dev`: `aloft dev up`, a control plane, a registry and one host in one process on loopback.
//! - `devcluster`: `aloft dev cluster`, several hosts in network namespaces on this machine,
//!   each an `aloft server host` process.
//! - `mesh`: the `[mesh]` section of the role configs (userspace WireGuard between hosts).
//! - `supervisor`: OS signals, one shutdown signal for every server a process runs, and how
//!   long each gets to drain.
//!
//! The `aloft` binary parses `aloft dev ...` and `aloft server ...` into [`DevCommand`] and
//! [`ServerCommand`] and runs them with [`dev`] and [`server`].

mod cluster_tls;
mod dev;
mod devcluster;
mod files;
mod host_identity;
mod host_setup;
mod listen;
mod mesh;
pub mod roles;
mod server;
pub mod supervisor;

pub use dev::DevCommand;
pub use server::ServerCommand;

use anyhow::{Result, anyhow};
use std::path::PathBuf;
use std::process::ExitCode;

/// What the roles take from the command line and the environment.
pub struct NodeCtx {
    /// `--json`: print what starts as JSON.
    pub json: bool,
    /// The dev data dir (`--data-dir`, else `$ALOFT_DATA_DIR`, else
    /// `~/.local/share/aloft/dev`), or why there is none.
    pub data_dir: Result<PathBuf>,
    /// The control plane's URL (`$ALOFT_API_URL`, else the default).
    pub api_url: String,
}

impl NodeCtx {
    /// The dev data dir, or the error that says how to name one.
    pub fn data_dir(&self) -> Result<PathBuf> {
        self.data_dir
            .as_ref()
            .cloned()
            .map_err(|e| anyhow!("{e:#}"))
    }
}

/// Runs `aloft dev ...`.
pub async fn dev(cmd: DevCommand, ctx: &NodeCtx) -> Result<ExitCode> {
    dev::run(cmd, ctx).await
}

/// Runs `aloft server ...`.
pub async fn server(cmd: ServerCommand, ctx: &NodeCtx) -> Result<ExitCode> {
    server::run(cmd, ctx).await
}

/// Prints `value` as pretty JSON on stdout.
fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
