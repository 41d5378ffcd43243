//! Reading the other hosts: the live members' signed keys, turned into the copy of their hosts
//! and machines ([`Remote`]) that lookups read. Runs as one task that wakes on every change of
//! chitchat's live nodes; it never holds the chitchat lock.

use super::seal::Seal;
use super::{HOST_KEY, HostRecord, LOAD_PREFIX, MACHINE_PREFIX, Remote};
use crate::entry::MachineEntry;
use crate::view::Placed;
use chitchat::{ChitchatId, NodeState};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;

/// Keeps `remote` in step with the live members' keys (every member but `me`).
pub(super) async fn watch_members(
    me: ChitchatId,
    seal: Seal,
    mut nodes: watch::Receiver<BTreeMap<ChitchatId, NodeState>>,
    remote: watch::Sender<Arc<Remote>>,
) {
    loop {
        let copy = {
            let nodes = nodes.borrow_and_update();
            remote_of(&me, &seal, &nodes)
        };
        remote.send_replace(Arc::new(copy));
        if nodes.changed().await.is_err() {
            return;
        }
    }
}

/// The machines of every live member but `me`, routed through its worker listener. Values
/// without a valid signature (not from a member) are left out; a host whose record is not
/// signed is left out whole.
fn remote_of(me: &ChitchatId, seal: &Seal, nodes: &BTreeMap<ChitchatId, NodeState>) -> Remote {
    let mut out = Remote::default();
    for (id, state) in nodes {
        let node = &*id.node_id;
        if node == &*me.node_id {
            continue;
        }
        let Some(host) = state
            .get(HOST_KEY)
            .and_then(|h| seal.open(node, HOST_KEY, h))
            .and_then(|h| serde_json::from_str::<HostRecord>(h).ok())
            .filter(|h| h.id == node)
        else {
            tracing::debug!(
                node,
                "a gossip member without a signed host record: ignored"
            );
            continue;
        };
        for (key, value) in state.key_values() {
            let Some(machine) = key.strip_prefix(MACHINE_PREFIX) else {
                continue;
            };
            let Some(entry) = seal
                .open(node, key, value)
                .and_then(|v| serde_json::from_str::<MachineEntry>(v).ok())
            else {
                tracing::debug!(
                    node,
                    key,
                    "an unsigned or unreadable machine entry: ignored"
                );
                continue;
            };
            let load_key = format!("{LOAD_PREFIX}{machine}");
            let load = state
                .get(&load_key)
                .and_then(|l| seal.open(node, &load_key, l))
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
