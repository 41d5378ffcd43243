//! The proxy's catalog on one host: this agent's machines, reloaded from its store only when a
//! machine changed (so a request costs a map lookup, not a query).

use crate::Agent;
use aloft_proxy::catalog::{Catalog, Target, first_service_target, machine_targets};
use aloft_types::Machine;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Machines by app.
type ByApp = Arc<HashMap<String, Vec<Machine>>>;

/// This host's machines as the proxy sees them.
pub struct LocalCatalog {
    agent: Agent,
    changes: Mutex<watch::Receiver<u64>>,
    by_app: Mutex<Option<ByApp>>,
}

impl LocalCatalog {
    pub fn new(agent: Agent) -> Self {
        Self {
            changes: Mutex::new(agent.machine_changes()),
            agent,
            by_app: Mutex::new(None),
        }
    }

    fn current(&self) -> ByApp {
        let changed = {
            let mut rx = self.changes.lock().expect("lock");
            let changed = rx.has_changed().unwrap_or(false);
            rx.mark_unchanged();
            changed
        };
        let mut by_app = self.by_app.lock().expect("lock");
        if changed || by_app.is_none() {
            match self.agent.machines() {
                Ok(machines) => {
                    let mut map: HashMap<String, Vec<Machine>> = HashMap::new();
                    for m in machines {
                        map.entry(m.app_name.clone()).or_default().push(m);
                    }
                    *by_app = Some(Arc::new(map));
                }
                // The last good view serves until the store answers again.
                Err(e) => tracing::warn!("the proxy could not read this host's machines: {e}"),
            }
        }
        by_app.clone().unwrap_or_default()
    }
}

#[async_trait]
impl Catalog for LocalCatalog {
    fn all_targets(&self) -> Vec<Target> {
        self.current()
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

    fn http_targets(&self, app: &str, port: u16) -> Option<Vec<Target>> {
        let by_app = self.current();
        let machines = by_app.get(app)?;
        Some(
            machines
                .iter()
                .filter_map(|m| machine_targets(m, port))
                .collect(),
        )
    }
}
