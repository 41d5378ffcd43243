//! What the proxy routes to. A [`Catalog`] answers "which machines of this app serve this public
//! port"; on one host it is the local agent's machines, across hosts the gossip catalog. The
//! proxy never asks anything else of it on the request path.

use aloft_types::config::{ConcurrencyType, Handler, MachineConfig};
use aloft_types::{Machine, MachineState};
use std::net::IpAddr;

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
    /// Started, not cordoned, its checks passing: it may get requests now.
    pub routable: bool,
}

/// The machines the proxy may route to.
pub trait Catalog: Send + Sync + 'static {
    /// The machines of `app` whose config serves public `port` with the `http` handler, in any
    /// state ([`Target::routable`] says which may get requests). `None` when there is no such app.
    fn http_targets(&self, app: &str, port: u16) -> Option<Vec<Target>>;
}

/// The targets a machine contributes for public `port` (at most one: the first service that
/// lists the port with the `http` handler).
pub fn machine_targets(m: &Machine, port: u16) -> Option<Target> {
    let config: &MachineConfig = &m.config;
    for service in &config.services {
        for p in &service.ports {
            let covers = match (p.port, p.start_port, p.end_port) {
                (Some(one), _, _) => one == u32::from(port),
                (None, Some(a), Some(b)) => (a..=b).contains(&u32::from(port)),
                _ => false,
            };
            if !covers || !p.handlers.contains(&Handler::Http) {
                continue;
            }
            let address = m.private_ip.parse().ok()?;
            let internal_port = u16::try_from(service.internal_port).ok()?;
            let limits = service
                .concurrency
                .as_ref()
                .map_or_else(Limits::default, |c| Limits {
                    kind: c.kind,
                    soft: c.soft_limit,
                    hard: c.hard_limit.max(1),
                });
            return Some(Target {
                machine_id: m.id.to_string(),
                app: m.app_name.clone(),
                region: m.region.clone(),
                address,
                port: internal_port,
                limits,
                routable: m.state == MachineState::Started && !m.cordoned,
            });
        }
    }
    None
}
