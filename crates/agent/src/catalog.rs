//! The agent as the source of its host's catalog: [`aloft_catalog::LocalCatalog`] reads this
//! host's machines, their changes, and starts and stops them (autostart, autostop) through the
//! [`MachineSource`] the agent implements here, so the catalog does not depend on the agent.

use crate::Agent;
use aloft_catalog::MachineSource;
use aloft_types::Machine;
use async_trait::async_trait;
use tokio::sync::watch;

#[async_trait]
impl MachineSource for Agent {
    fn machines(&self) -> Result<Vec<Machine>, String> {
        Agent::machines(self).map_err(|e| e.to_string())
    }

    fn machine(&self, id: &str) -> Result<Option<Machine>, String> {
        self.live_machine(id).map_err(|e| e.to_string())
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.machine_changes()
    }

    fn changed_since(&self, seen: u64) -> Option<(u64, Vec<String>)> {
        self.machines_changed_since(seen)
    }

    async fn autostart(&self, app: &str, machine: &str) -> Result<(), String> {
        Agent::autostart(self, app, machine)
            .await
            .map_err(|e| e.to_string())
    }

    async fn autostop(&self, app: &str, machine: &str, suspend: bool) -> Result<(), String> {
        Agent::autostop(self, app, machine, suspend)
            .await
            .map_err(|e| e.to_string())
    }
}
