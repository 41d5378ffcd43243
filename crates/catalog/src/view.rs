//! Machines as of one moment ([`CatalogView`]), each [`Placed`] on its host, with what the proxy
//! and internal DNS ask of them worked out on first use: a request or a query costs a map lookup.
//!
//! State: a view is never changed once made; its caches (targets per port, public ports, DNS
//! entries) fill on first use, the targets' behind a `parking_lot` mutex held only for the lookup.

use crate::entry::MachineEntry;
use crate::target::{PublicPort, Target, first_service_target, machine_targets, public_ports};
use aloft_dns::names::Entry;
use aloft_types::MachineState;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

/// An app's targets for one public port.
pub(crate) type Targets = Arc<Vec<Target>>;

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
        let mut cache = self.targets.lock();
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
