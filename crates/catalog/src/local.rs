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
//! After the first load, a change reads only the machines it was about ([`MachineSource::changed_since`]),
//! so the cost of a change does not grow with the machines the host ever had.
//!
//! State: each [`LocalCatalog`] keeps its change receiver, and the machines as of the last
//! change it saw with the view made of them, each behind a `parking_lot` mutex (the second is
//! held while a change is read in); the view is shared as an `Arc` and never changed.

use crate::entry::MachineEntry;
use crate::route::Catalog;
use crate::target::{PublicPort, Target};
use crate::view::{CatalogView, Placed, Targets};
use aloft_dns::names::Entry;
use aloft_dns::server::Directory;
use aloft_types::{Machine, MachineState};
use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;

/// What the local catalog needs from the machines of one host (the host agent implements it).
/// Errors are the source's own, as text: the catalog logs them or hands them to the proxy.
#[async_trait]
pub trait MachineSource: Send + Sync + 'static {
    /// Every machine on the host now that is not destroyed.
    fn machines(&self) -> Result<Vec<Machine>, String>;

    /// One machine now; `None` when it does not exist or is destroyed.
    fn machine(&self, id: &str) -> Result<Option<Machine>, String> {
        Ok(self.machines()?.into_iter().find(|m| m.id.as_str() == id))
    }

    /// Bumped whenever a machine changes (created, its state, its config, destroyed).
    fn changes(&self) -> watch::Receiver<u64>;

    /// The machines that changed after change `seen` (a value of [`changes`](Self::changes)),
    /// with the change that brings it up to date; `None` when the source cannot tell, and the
    /// catalog reloads every machine.
    fn changed_since(&self, _seen: u64) -> Option<(u64, Vec<String>)> {
        None
    }

    /// Starts a stopped or suspended machine for a request (autostart).
    async fn autostart(&self, app: &str, machine: &str) -> Result<(), String>;

    /// Stops, or with `suspend` suspends, an idle machine (autostop).
    async fn autostop(&self, app: &str, machine: &str, suspend: bool) -> Result<(), String>;
}

/// This host's machines as the proxy sees them.
pub struct LocalCatalog {
    source: Box<dyn MachineSource>,
    changes: Mutex<watch::Receiver<u64>>,
    loaded: Mutex<Option<Loaded>>,
}

/// The machines as of change `seen`, and the view made of them.
struct Loaded {
    seen: u64,
    machines: BTreeMap<String, Placed>,
    view: Arc<CatalogView>,
}

impl Loaded {
    fn new(seen: u64, machines: BTreeMap<String, Placed>) -> Self {
        let view = Arc::new(CatalogView::new(machines.values().cloned()));
        Self {
            seen,
            machines,
            view,
        }
    }
}

/// A machine as the view holds it; none for a destroyed one.
fn placed(m: &Machine) -> Option<Placed> {
    if m.state == MachineState::Destroyed {
        return None;
    }
    Some(Placed {
        entry: MachineEntry::of(m)?,
        via: None,
        load: 0,
    })
}

impl LocalCatalog {
    pub fn new(source: impl MachineSource) -> Self {
        Self {
            changes: Mutex::new(source.changes()),
            source: Box::new(source),
            loaded: Mutex::new(None),
        }
    }

    /// Where these machines come from (the host's agent).
    pub fn source(&self) -> &dyn MachineSource {
        &*self.source
    }

    /// This host's machines now. After the first load only the machines that changed are read
    /// again (all of them when the source cannot say which); the last good view serves while
    /// the source fails.
    pub fn current(&self) -> Arc<CatalogView> {
        let now = *self.changes.lock().borrow_and_update();
        let mut loaded = self.loaded.lock();
        if let Some(l) = loaded.as_mut() {
            if l.seen == now {
                return l.view.clone();
            }
            if let Some((to, ids)) = self.source.changed_since(l.seen) {
                let mut machines = l.machines.clone();
                match self.reread(&mut machines, &ids) {
                    Ok(()) => *l = Loaded::new(to, machines),
                    Err(e) => tracing::warn!("the proxy could not read this host's machines: {e}"),
                }
                return l.view.clone();
            }
        }
        match self.source.machines() {
            Ok(all) => {
                let machines = all
                    .iter()
                    .filter_map(placed)
                    .map(|p| (p.entry.id.clone(), p))
                    .collect();
                *loaded = Some(Loaded::new(now, machines));
            }
            Err(e) => tracing::warn!("the proxy could not read this host's machines: {e}"),
        }
        loaded.as_ref().map(|l| l.view.clone()).unwrap_or_default()
    }

    /// Reads the machines `ids` again into `machines`.
    fn reread(
        &self,
        machines: &mut BTreeMap<String, Placed>,
        ids: &[String],
    ) -> Result<(), String> {
        for id in ids {
            match self.source.machine(id)?.as_ref().and_then(placed) {
                Some(p) => machines.insert(id.clone(), p),
                None => machines.remove(id),
            };
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A host's machines, counting how the catalog reads them.
    struct Counting {
        machines: Mutex<BTreeMap<String, Machine>>,
        changes: watch::Sender<u64>,
        log: Mutex<Vec<(u64, String)>>,
        full: AtomicUsize,
        one: AtomicUsize,
    }

    impl Counting {
        fn put(&self, m: Machine) {
            let id = m.id.to_string();
            self.machines.lock().insert(id.clone(), m);
            let n = *self.changes.borrow() + 1;
            self.log.lock().push((n, id));
            self.changes.send_replace(n);
        }
    }

    #[async_trait]
    impl MachineSource for Arc<Counting> {
        fn machines(&self) -> Result<Vec<Machine>, String> {
            self.full.fetch_add(1, Ordering::SeqCst);
            Ok(self.machines.lock().values().cloned().collect())
        }
        fn machine(&self, id: &str) -> Result<Option<Machine>, String> {
            self.one.fetch_add(1, Ordering::SeqCst);
            Ok(self.machines.lock().get(id).cloned())
        }
        fn changes(&self) -> watch::Receiver<u64> {
            self.changes.subscribe()
        }
        fn changed_since(&self, seen: u64) -> Option<(u64, Vec<String>)> {
            let log = self.log.lock();
            let ids = log
                .iter()
                .filter(|(n, _)| *n > seen)
                .map(|(_, id)| id.clone());
            Some((*self.changes.borrow(), ids.collect()))
        }
        async fn autostart(&self, _: &str, _: &str) -> Result<(), String> {
            Ok(())
        }
        async fn autostop(&self, _: &str, _: &str, _: bool) -> Result<(), String> {
            Ok(())
        }
    }

    fn machine(n: u32, state: &str) -> Machine {
        serde_json::from_value(serde_json::json!({
            "id": format!("{n:014x}"), "name": "m", "state": state, "region": "local",
            "instance_id": "01HZZZZZZZZZZZZZZZZZZZZZZZ", "private_ip": format!("fdaa:0:1:a7b:1:{n:x}::2"),
            "config": {"image": "hello"}, "image_ref": {"registry": "", "repository": "", "tag": "", "digest": ""}, "created_at": "", "updated_at": "",
            "host_status": "ok", "app_name": "hello",
        }))
        .unwrap()
    }

    #[test]
    fn a_change_rereads_only_the_machine_it_was_about() {
        let source = Arc::new(Counting {
            machines: Mutex::default(),
            changes: watch::Sender::new(0),
            log: Mutex::default(),
            full: AtomicUsize::new(0),
            one: AtomicUsize::new(0),
        });
        for n in 1..=500 {
            source.put(machine(n, "started"));
        }
        let catalog = LocalCatalog::new(source.clone());
        assert_eq!(catalog.current().machines().count(), 500);
        assert_eq!(source.full.load(Ordering::SeqCst), 1);

        source.put(machine(501, "started"));
        source.put(machine(7, "destroyed"));
        let view = catalog.current();
        assert_eq!(view.machines().count(), 500, "one more, one destroyed");
        assert!(view.machines().all(|m| m.entry.id != format!("{:014x}", 7)));
        assert_eq!(source.full.load(Ordering::SeqCst), 1, "no second full load");
        assert_eq!(
            source.one.load(Ordering::SeqCst),
            2,
            "each changed machine read once"
        );
        // No change: the same view, nothing read.
        assert!(Arc::ptr_eq(&view, &catalog.current()));
        assert_eq!(source.one.load(Ordering::SeqCst), 2);
    }
}
