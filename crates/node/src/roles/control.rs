//! The control-plane role: the Machines API on every listener it is given, and the registry
//! beside it when asked (its org tokens checked by this control plane, in-process). Orgs and
//! their first tokens are the caller's (`dev up` keeps the `personal` token in its data dir;
//! `server control` writes `[org]`'s token file once).

use crate::roles::registry::{ControlPlaneTokens, Secret, router};
use crate::supervisor::Supervisor;
use aloft_control::{ControlPlane, ControlPlaneConfig};
use aloft_registry::{Registry, RegistryConfig};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

/// How the control plane is set up.
pub struct ControlConfig {
    pub plane: ControlPlaneConfig,
    /// Where the Machines API listens (loopback, the hosts' network, the mesh...).
    pub listeners: Vec<TcpListener>,
    /// The registry in this process.
    pub registry: Option<RegistrySetup>,
}

/// The registry a control plane serves beside it.
pub struct RegistrySetup {
    pub storage: PathBuf,
    pub listeners: Vec<TcpListener>,
}

/// A running control plane.
pub struct ControlRole {
    pub plane: ControlPlane,
}

impl ControlRole {
    /// Opens the control plane's store and serves the API (and the registry); the servers
    /// belong to `supervisor`.
    pub async fn start(config: ControlConfig, supervisor: &mut Supervisor) -> Result<ControlRole> {
        let secret = Arc::new(Secret::Fixed(config.plane.internal_token.clone()));
        let plane = ControlPlane::open(config.plane)
            .await
            .context("starting the control plane")?;
        for listener in config.listeners {
            supervisor.serve("API", listener, plane.router());
        }
        if let Some(r) = config.registry {
            let registry = Registry::open(
                RegistryConfig::new(&r.storage),
                Arc::new(ControlPlaneTokens(plane.clone())),
            )
            .await
            .context("starting the registry")?;
            supervisor.task(registry.spawn_janitor());
            for listener in r.listeners {
                supervisor.serve(
                    "registry",
                    listener,
                    router(registry.clone(), secret.clone()),
                );
            }
        }
        Ok(ControlRole { plane })
    }
}
