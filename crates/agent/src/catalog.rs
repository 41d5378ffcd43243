//! The catalog on one host, for the proxy and internal DNS: this agent's machines, reloaded from
//! its store only when a machine changed, with each app's targets per port (and DNS's started
//! machines) worked out once per reload, so a request or a query costs a map lookup, not a
//! store query.

use crate::Agent;
use aloft_dns::names::Entry;
use aloft_dns::server::Directory;
use aloft_proxy::catalog::{
    Catalog, PublicPort, Target, first_service_target, machine_targets, public_ports,
};
use aloft_types::{Machine, MachineState};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::watch;

/// An app's targets for one public port.
type Targets = Arc<Vec<Target>>;

/// The machines as of one reload.
#[derive(Default)]
struct Snapshot {
    by_app: HashMap<String, Vec<Machine>>,
    /// `(app, public port)` -> its targets, filled on first use.
    targets: Mutex<HashMap<(String, u16), Targets>>,
    /// The public TCP ports, worked out on first use.
    ports: OnceLock<Vec<PublicPort>>,
    /// The started machines, for internal DNS, worked out on first use.
    entries: OnceLock<Arc<Vec<Entry>>>,
}

/// This host's machines as the proxy sees them.
pub struct LocalCatalog {
    agent: Agent,
    changes: Mutex<watch::Receiver<u64>>,
    snapshot: Mutex<Option<Arc<Snapshot>>>,
}

impl LocalCatalog {
    pub fn new(agent: Agent) -> Self {
        Self {
            changes: Mutex::new(agent.machine_changes()),
            agent,
            snapshot: Mutex::new(None),
        }
    }

    fn current(&self) -> Arc<Snapshot> {
        let changed = {
            let mut rx = self.changes.lock().expect("lock");
            let changed = rx.has_changed().unwrap_or(false);
            rx.mark_unchanged();
            changed
        };
        let mut snapshot = self.snapshot.lock().expect("lock");
        if changed || snapshot.is_none() {
            match self.agent.machines() {
                Ok(machines) => {
                    let mut by_app: HashMap<String, Vec<Machine>> = HashMap::new();
                    for m in machines {
                        by_app.entry(m.app_name.clone()).or_default().push(m);
                    }
                    *snapshot = Some(Arc::new(Snapshot {
                        by_app,
                        targets: Mutex::default(),
                        ports: OnceLock::new(),
                        entries: OnceLock::new(),
                    }));
                }
                // The last good view serves until the store answers again.
                Err(e) => tracing::warn!("the proxy could not read this host's machines: {e}"),
            }
        }
        snapshot.clone().unwrap_or_default()
    }
}

#[async_trait]
impl Catalog for LocalCatalog {
    fn targets(&self, app: &str, port: u16) -> Option<Targets> {
        let snapshot = self.current();
        let machines = snapshot.by_app.get(app)?;
        let mut cache = snapshot.targets.lock().expect("lock");
        let targets = cache
            .entry((app.to_string(), port))
            .or_insert_with(|| {
                Arc::new(
                    machines
                        .iter()
                        .filter_map(|m| machine_targets(m, port))
                        .collect(),
                )
            })
            .clone();
        Some(targets)
    }

    fn ports(&self) -> Vec<PublicPort> {
        let snapshot = self.current();
        snapshot
            .ports
            .get_or_init(|| public_ports(snapshot.by_app.values().flatten()))
            .clone()
    }

    fn all_targets(&self) -> Vec<Target> {
        self.current()
            .by_app
            .values()
            .flatten()
            .filter_map(first_service_target)
            .collect()
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
        let snapshot = self.current();
        snapshot
            .entries
            .get_or_init(|| {
                let started = snapshot
                    .by_app
                    .values()
                    .flatten()
                    .filter(|m| m.state == MachineState::Started);
                Arc::new(
                    started
                        .filter_map(|m| {
                            Some(Entry {
                                id: m.id.to_string(),
                                app: m.app_name.clone(),
                                region: m.region.clone(),
                                ip: m.private_ip.parse().ok()?,
                            })
                        })
                        .collect(),
                )
            })
            .clone()
    }
}
