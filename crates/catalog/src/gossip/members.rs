//! Reading the other hosts: the live members' signed keys, turned into the copy of their hosts
//! and machines ([`Remote`]) that lookups read. Runs as one task that wakes on every change of
//! chitchat's live nodes; it never holds the chitchat lock. It owns the [`Versions`] of what it
//! accepted, which refuse replayed and shadowed values.

use super::seal::Seal;
use super::versions::Versions;
use super::{HOST_KEY, HostRecord, LOAD_PREFIX, MACHINE_PREFIX, Remote};
use crate::entry::MachineEntry;
use crate::view::Placed;
use chitchat::{ChitchatId, NodeState};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use tokio::sync::watch;

/// Keeps `remote` in step with the live members' keys (every member but `me`).
pub(super) async fn watch_members(
    me: ChitchatId,
    seal: Seal,
    mut nodes: watch::Receiver<BTreeMap<ChitchatId, NodeState>>,
    remote: watch::Sender<Arc<Remote>>,
) {
    let mut versions = Versions::default();
    loop {
        let copy = {
            let nodes = nodes.borrow_and_update();
            remote_of(&me, &seal, &mut versions, &nodes)
        };
        remote.send_replace(Arc::new(copy));
        if nodes.changed().await.is_err() {
            return;
        }
    }
}

/// The machines of every live member but `me`, routed through its worker listener. Values
/// without a valid signature (not from a member) are left out, and so are those `versions`
/// refuses (older than one accepted before); a host without an accepted, signed record naming
/// it is left out whole. A host whose node restarted may have two live chitchat nodes for a
/// while: their values are taken together, the newest of each key winning.
fn remote_of(
    me: &ChitchatId,
    seal: &Seal,
    versions: &mut Versions,
    nodes: &BTreeMap<ChitchatId, NodeState>,
) -> Remote {
    let mut by_host: BTreeMap<&str, Vec<(&str, u64, &str)>> = BTreeMap::new();
    for (id, state) in nodes {
        let host = &*id.node_id;
        if host == &*me.node_id {
            continue;
        }
        let offered = by_host.entry(host).or_default();
        for (key, signed) in state.key_values() {
            match seal.open(host, key, signed) {
                Some((version, value)) => offered.push((key, version, value)),
                None => tracing::debug!(host, key, "an unsigned gossip value: ignored"),
            }
        }
    }
    versions.retain_live(&by_host.keys().copied().collect::<HashSet<_>>());
    let mut out = Remote::default();
    for (node, offered) in by_host {
        let values = versions.update(node, &offered);
        let Some(host) = values
            .get(HOST_KEY)
            .and_then(|h| serde_json::from_str::<HostRecord>(h).ok())
            .filter(|h| h.id == node)
        else {
            tracing::debug!(
                node,
                "a gossip member without a signed host record: ignored"
            );
            continue;
        };
        for (key, value) in &values {
            let Some(machine) = key.strip_prefix(MACHINE_PREFIX) else {
                continue;
            };
            let Ok(entry) = serde_json::from_str::<MachineEntry>(value) else {
                tracing::debug!(node, key, "an unreadable machine entry: ignored");
                continue;
            };
            let load = values
                .get(&format!("{LOAD_PREFIX}{machine}"))
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            out.machines.push(Placed {
                entry,
                via: Some(host.worker),
                load,
            });
        }
        out.hosts.push(host);
    }
    out
}
