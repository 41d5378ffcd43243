//! Writing this host's keys: its machines whenever they change, and their load every gossip
//! interval, each value signed with a version from this host's [`Clock`]; only keys whose value
//! changed are written. A key is deleted by writing a signed deletion (an empty value, kept by
//! chitchat for its grace period), so receivers learn the deletion's version. Runs as one task,
//! which takes the chitchat lock only to write.

use super::seal::{Clock, Seal};
use super::versions::DELETED;
use super::{LOAD_PREFIX, MACHINE_PREFIX};
use crate::load::Load;
use crate::local::LocalCatalog;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Writes this host's keys, signed.
pub(super) struct Publisher {
    pub(super) chitchat: Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
    pub(super) host: String,
    pub(super) seal: Seal,
    /// The versions this host's values are signed with (the host record's came first).
    pub(super) clock: Clock,
}

/// Publishes this host's machines whenever they change, and their load every `interval`: only
/// the keys whose value changed are written.
pub(super) async fn publish(
    mut to: Publisher,
    local: Arc<LocalCatalog>,
    load: Arc<Load>,
    interval: Duration,
) {
    let mut changes = local.source().changes();
    let mut published: HashMap<String, String> = HashMap::new();
    loop {
        let view = local.current();
        let mut wanted: HashMap<String, String> = HashMap::new();
        for m in view.machines() {
            match serde_json::to_string(&m.entry) {
                Ok(json) => {
                    wanted.insert(format!("{MACHINE_PREFIX}{}", m.entry.id), json);
                }
                Err(e) => tracing::warn!(machine = m.entry.id, "cannot publish: {e}"),
            }
            let n = load.current(&m.entry.id);
            if n > 0 {
                wanted.insert(format!("{LOAD_PREFIX}{}", m.entry.id), n.to_string());
            }
        }
        if wanted != published {
            let mut c = to.chitchat.lock().await;
            let state = c.self_node_state();
            for (k, v) in &wanted {
                if published.get(k) != Some(v) {
                    state.set(k, to.seal.sign(&to.host, k, to.clock.tick(), v));
                }
            }
            for k in published.keys() {
                if !wanted.contains_key(k) {
                    let deleted = to.seal.sign(&to.host, k, to.clock.tick(), DELETED);
                    state.set_with_ttl(k, deleted);
                }
            }
            drop(c);
            published = wanted;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(interval) => {}
        }
    }
}
