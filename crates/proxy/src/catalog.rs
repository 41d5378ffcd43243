//! What the proxy routes to. A [`Catalog`] answers "which machines of this app serve this public
//! port" and can start and stop them (autostart, autostop); on one host it is the local agent's
//! machines, across hosts the gossip catalog. Lookups are synchronous: they are on every
//! request's path and must be answered from memory.

use aloft_types::config::{Autostop, ConcurrencyType, Handler, Service};
use aloft_types::machine::CheckState;
use aloft_types::{Machine, MachineState};
use async_trait::async_trait;
use std::net::IpAddr;
use std::sync::Arc;

/// How a machine's service counts its load, and its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub kind: ConcurrencyType,
    /// At or over it, the machine gets traffic only when every other one is over too.
    pub soft: u32,
    /// At it, the machine gets nothing more.
    pub hard: u32,
}

impl Default for Limits {
    /// The reference's defaults: 20 soft, 25 hard, counting connections.
    fn default() -> Self {
        Self {
            kind: ConcurrencyType::Connections,
            soft: 20,
            hard: 25,
        }
    }
}

/// One machine serving an app's public port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub machine_id: String,
    pub app: String,
    pub region: String,
    /// The machine's private (6PN) address and the service's internal port.
    pub address: IpAddr,
    pub port: u16,
    pub limits: Limits,
    pub state: MachineState,
    /// Started, not cordoned, its checks passing: it may get requests now.
    pub routable: bool,
    /// Started by the proxy when a request finds no room (default on).
    pub autostart: bool,
    /// Stopped (or suspended) by the proxy when idle.
    pub autostop: Autostop,
    /// Autostop leaves at least this many machines running in the app's primary region.
    pub min_machines_running: u32,
    /// The app's primary region (`PRIMARY_REGION` of the machine's env, else its own region).
    pub primary_region: String,
    /// Plain HTTP requests for the port are redirected to HTTPS.
    pub force_https: bool,
}

impl Target {
    /// A stopped or suspended machine the proxy may start for a request.
    pub fn wakeable(&self) -> bool {
        self.autostart && matches!(self.state, MachineState::Stopped | MachineState::Suspended)
    }
}

/// The machines the proxy may route to, and the machine operations it needs.
#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    /// The machines of `app` whose config serves public `port` with the `http` handler, in any
    /// state. `None` when there is no such app.
    fn http_targets(&self, app: &str, port: u16) -> Option<Arc<Vec<Target>>>;

    /// Every machine with a service, as a target for its first service (for autostop).
    fn all_targets(&self) -> Vec<Target>;

    /// Starts a stopped or suspended machine (autostart).
    async fn start(&self, target: &Target) -> Result<(), String>;

    /// Stops, or with `suspend` suspends, an idle machine (autostop).
    async fn stop(&self, target: &Target, suspend: bool) -> Result<(), String>;
}

/// The target a machine is for public `port` over HTTP: its first service listing the port with
/// the `http` handler.
pub fn machine_targets(m: &Machine, port: u16) -> Option<Target> {
    m.config.services.iter().find_map(|service| {
        let entry = service.ports.iter().find(|p| {
            let covers = match (p.port, p.start_port, p.end_port) {
                (Some(one), _, _) => one == u32::from(port),
                (None, Some(a), Some(b)) => (a..=b).contains(&u32::from(port)),
                _ => false,
            };
            covers && p.handlers.contains(&Handler::Http)
        })?;
        let mut t = target(m, service)?;
        t.force_https = entry.force_https;
        Some(t)
    })
}

/// The target a machine is for its first service, if it has one.
pub fn first_service_target(m: &Machine) -> Option<Target> {
    m.config.services.first().and_then(|s| target(m, s))
}

fn target(m: &Machine, service: &Service) -> Option<Target> {
    let limits = service
        .concurrency
        .as_ref()
        .map_or_else(Limits::default, |c| Limits {
            kind: c.kind,
            soft: c.soft_limit,
            hard: c.hard_limit.max(1),
        });
    Some(Target {
        machine_id: m.id.to_string(),
        app: m.app_name.clone(),
        region: m.region.clone(),
        address: m.private_ip.parse().ok()?,
        port: u16::try_from(service.internal_port).ok()?,
        limits,
        state: m.state,
        routable: m.state == MachineState::Started
            && !m.cordoned
            && !m.checks.iter().any(|c| c.status == CheckState::Critical),
        autostart: service.autostart.unwrap_or(true),
        autostop: service.autostop,
        min_machines_running: service.min_machines_running.unwrap_or(0),
        primary_region: m
            .config
            .env
            .get("PRIMARY_REGION")
            .cloned()
            .unwrap_or_else(|| m.region.clone()),
        force_https: false,
    })
}
