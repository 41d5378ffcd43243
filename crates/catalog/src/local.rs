//! The catalog on one host, for the proxy and internal DNS: this host's machines, reloaded from
//! their source only when a machine changed, with each app's targets per port (and DNS's started
//! machines) worked out once per reload ([`CatalogView`]), so a request or a query costs a map
//! lookup, not a store query.
//!
//! The machines come from a [`MachineSource`]: the host agent implements it (in `aloft-agent`),
//! so this crate does not depend on the agent, a service, and the agent depends on this crate
//! for what it shares with the proxy and gossip (the [`Load`](crate::Load) it drains by). The
//! local catalog itself lives here rather than in the agent because gossip (the `gossip`
//! module) publishes from it and merges it with the other hosts': keeping it in the agent would
//! make this crate depend on the agent, or move gossip out of the catalog.
//!
//! State: each [`LocalCatalog`] keeps its change receiver and its current view, each behind a
//! `parking_lot` mutex held only to check or swap it; the view is shared as an `Arc` and never changed.

use crate::entry::MachineEntry;
use crate::route::Catalog;
use crate::target::{PublicPort, Target};
use crate::view::{CatalogView, Placed, Targets};
use aloft_dns::names::Entry;
use aloft_dns::server::Directory;
use aloft_types::Machine;
use async_trait::async_trait;
use parking_lot::Mutex;
use std::sync::Arc;
use tokio::sync::watch;

/// What the local catalog needs from the machines of one host (the host agent implements it).
/// Errors are the source's own, as text: the catalog logs them or hands them to the proxy.
#[async_trait]
pub trait MachineSource: Send + Sync + 'static {
    /// Every machine on the host now.
    fn machines(&self) -> Result<Vec<Machine>, String>;

    /// Bumped whenever a machine changes (created, its state, its config, destroyed).
    fn changes(&self) -> watch::Receiver<u64>;

    /// Starts a stopped or suspended machine for a request (autostart).
    async fn autostart(&self, app: &str, machine: &str) -> Result<(), String>;

    /// Stops, or with `suspend` suspends, an idle machine (autostop).
    async fn autostop(&self, app: &str, machine: &str, suspend: bool) -> Result<(), String>;
}

/// This host's machines as the proxy sees them.
pub struct LocalCatalog {
    source: Box<dyn MachineSource>,
    changes: Mutex<watch::Receiver<u64>>,
    view: Mutex<Option<Arc<CatalogView>>>,
}

impl LocalCatalog {
    pub fn new(source: impl MachineSource) -> Self {
        Self {
            changes: Mutex::new(source.changes()),
            source: Box::new(source),
            view: Mutex::new(None),
        }
    }

    /// Whether the machines changed since the last call (true the first time).
    pub fn changed(&self) -> bool {
        let mut rx = self.changes.lock();
        let changed = rx.has_changed().unwrap_or(false);
        rx.mark_unchanged();
        changed || self.view.lock().is_none()
    }

    /// Where these machines come from (the host's agent).
    pub fn source(&self) -> &dyn MachineSource {
        &*self.source
    }

    /// This host's machines now (reloaded from the store only when one changed).
    pub fn current(&self) -> Arc<CatalogView> {
        let changed = self.changed();
        let mut view = self.view.lock();
        if changed {
            match self.source.machines() {
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
        self.source.autostart(&target.app, &target.machine_id).await
    }

    async fn stop(&self, target: &Target, suspend: bool) -> Result<(), String> {
        self.source
            .autostop(&target.app, &target.machine_id, suspend)
            .await
    }
}

impl Directory for LocalCatalog {
    fn entries(&self) -> Arc<Vec<Entry>> {
        self.current().entries()
    }
}
