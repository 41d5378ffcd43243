//! The catalog on one host, for the proxy and internal DNS: this agent's machines, reloaded from
//! its store only when a machine changed, with each app's targets per port (and DNS's started
//! machines) worked out once per reload, so a request or a query costs a map lookup, not a
//! store query.
//!
//! State: each [`LocalCatalog`] keeps its change receiver and its current view, each behind a
//! `std` mutex held only to check or swap it; the view is shared as an `Arc` and never changed.

use crate::Agent;
use aloft_dns::names::Entry;
use aloft_dns::server::Directory;
use aloft_proxy::catalog::{
    Catalog, MachineEntry, PublicPort, Target, first_service_target, machine_targets, public_ports,
};
use aloft_types::MachineState;
use async_trait::async_trait;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::watch;

/// An app's targets for one public port.
type Targets = Arc<Vec<Target>>;

/// A machine in a [`CatalogView`]: where it is and how busy its host says it is.
#[derive(Debug, Clone)]
pub struct Placed {
    pub entry: MachineEntry,
    /// The proxy of the machine's host when that is another host.
    pub via: Option<SocketAddr>,
    /// Requests in flight on it as its host last published.
    pub load: u32,
}

/// Machines as of one moment, with what the proxy and DNS ask of them worked out on first use,
/// so a request or a query costs a map lookup.
#[derive(Default)]
pub struct CatalogView {
    by_app: HashMap<String, Vec<Placed>>,
    /// `(app, public port)` -> its targets, filled on first use.
    targets: Mutex<HashMap<(String, u16), Targets>>,
    /// The public TCP ports, worked out on first use.
    ports: OnceLock<Vec<PublicPort>>,
    /// The started machines, for internal DNS, worked out on first use.
    entries: OnceLock<Arc<Vec<Entry>>>,
}

impl CatalogView {
    pub fn new(machines: impl IntoIterator<Item = Placed>) -> Self {
        let mut by_app: HashMap<String, Vec<Placed>> = HashMap::new();
        for m in machines {
            by_app.entry(m.entry.app.clone()).or_default().push(m);
        }
        Self {
            by_app,
            ..Self::default()
        }
    }

    /// Every machine in the view.
    pub fn machines(&self) -> impl Iterator<Item = &Placed> {
        self.by_app.values().flatten()
    }

    pub fn targets(&self, app: &str, port: u16) -> Option<Targets> {
        let machines = self.by_app.get(app)?;
        let mut cache = self.targets.lock().expect("lock");
        let targets = cache
            .entry((app.to_string(), port))
            .or_insert_with(|| {
                Arc::new(
                    machines
                        .iter()
                        .filter_map(|m| Some(placed(machine_targets(&m.entry, port)?, m)))
                        .collect(),
                )
            })
            .clone();
        Some(targets)
    }

    pub fn ports(&self) -> Vec<PublicPort> {
        self.ports
            .get_or_init(|| public_ports(self.machines().map(|m| &m.entry)))
            .clone()
    }

    pub fn all_targets(&self) -> Vec<Target> {
        self.machines()
            .filter_map(|m| Some(placed(first_service_target(&m.entry)?, m)))
            .collect()
    }

    /// The started machines with a 6PN address, for internal DNS.
    pub fn entries(&self) -> Arc<Vec<Entry>> {
        self.entries
            .get_or_init(|| {
                Arc::new(
                    self.machines()
                        .map(|m| &m.entry)
                        .filter(|m| m.state == MachineState::Started)
                        .filter_map(|m| match m.address {
                            IpAddr::V6(ip) => Some(Entry {
                                id: m.id.clone(),
                                app: m.app.clone(),
                                region: m.region.clone(),
                                ip,
                            }),
                            IpAddr::V4(_) => None,
                        })
                        .collect(),
                )
            })
            .clone()
    }
}

fn placed(mut t: Target, m: &Placed) -> Target {
    t.via = m.via;
    t.load = m.load;
    t
}

/// This host's machines as the proxy sees them.
pub struct LocalCatalog {
    agent: Agent,
    changes: Mutex<watch::Receiver<u64>>,
    view: Mutex<Option<Arc<CatalogView>>>,
}

impl LocalCatalog {
    pub fn new(agent: Agent) -> Self {
        Self {
            changes: Mutex::new(agent.machine_changes()),
            agent,
            view: Mutex::new(None),
        }
    }

    /// Whether the machines changed since the last call (true the first time).
    pub fn changed(&self) -> bool {
        let mut rx = self.changes.lock().expect("lock");
        let changed = rx.has_changed().unwrap_or(false);
        rx.mark_unchanged();
        changed || self.view.lock().expect("lock").is_none()
    }

    /// The agent whose machines these are.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// This host's machines now (reloaded from the store only when one changed).
    pub fn current(&self) -> Arc<CatalogView> {
        let changed = self.changed();
        let mut view = self.view.lock().expect("lock");
        if changed {
            match self.agent.machines() {
                Ok(machines) => {
                    *view = Some(Arc::new(CatalogView::new(machines.iter().filter_map(
                        |m| {
                            Some(Placed {
                                entry: MachineEntry::of(m)?,
                                via: None,
                                load: 0,
                            })
                        },
                    ))));
                }
                // The last good view serves until the store answers again.
                Err(e) => tracing::warn!("the proxy could not read this host's machines: {e}"),
            }
        }
        view.clone().unwrap_or_default()
    }
}

#[async_trait]
impl Catalog for LocalCatalog {
    fn targets(&self, app: &str, port: u16) -> Option<Targets> {
        self.current().targets(app, port)
    }

    fn ports(&self) -> Vec<PublicPort> {
        self.current().ports()
    }

    fn all_targets(&self) -> Vec<Target> {
        self.current().all_targets()
    }

    async fn start(&self, target: &Target) -> Result<(), String> {
        self.agent
            .autostart(&target.app, &target.machine_id)
            .await
            .map_err(|e| e.to_string())
    }

    async fn stop(&self, target: &Target, suspend: bool) -> Result<(), String> {
        self.agent
            .autostop(&target.app, &target.machine_id, suspend)
            .await
            .map_err(|e| e.to_string())
    }
}

impl Directory for LocalCatalog {
    fn entries(&self) -> Arc<Vec<Entry>> {
        self.current().entries()
    }
}
