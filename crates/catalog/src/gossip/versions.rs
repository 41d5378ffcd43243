//! What this host has accepted of the other hosts' keys: per (host, key) the newest version its
//! publisher signed, and the value (or deletion) at that version. chitchat's own versions are not
//! signed, so anyone who can send a datagram can re-send a captured signed value under a higher
//! chitchat version; this is where such a replay is refused. The rules:
//!
//! - a value older than the one held, or of the same version but different, is refused, and the
//!   held one stays (a newer one replaces it);
//! - a host's record is signed once per generation (at start), so its version is where the
//!   generation starts: anything of that host signed before it is from before a restart, refused,
//!   and dropped from what is held;
//! - a deletion is a signed empty value (chitchat's own tombstones carry no signed version); when
//!   chitchat forgets it (after its grace period), the host's `forgotten` mark rises to its
//!   version, and a key that is not held is refused at or below that mark;
//! - a held value stays while its key is missing or unsigned in gossip: only a newer signed value
//!   or deletion, or the host leaving, removes it. When a host leaves, its keys (deletions too)
//!   and its `forgotten` mark are dropped; its generation floor (one number) is kept. (A mark
//!   kept would refuse its older live keys, even its record, which is never re-signed, when it
//!   comes back in the same generation after a false alarm of the failure detector.)
//!
//! State: owned by the `members` task alone (no lock).

use super::HOST_KEY;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The value of a signed deletion.
pub(super) const DELETED: &str = "";

/// One key's newest accepted value; `None` is a deletion.
struct Held {
    version: u64,
    value: Option<String>,
}

/// What is held of one host.
#[derive(Default)]
struct HostSeen {
    /// The version of the host's current generation's record: older values are refused.
    floor: u64,
    /// A key not held is refused at or below this version (a deletion that was forgotten).
    forgotten: u64,
    keys: HashMap<String, Held>,
}

/// The newest accepted version and value of every live host's keys.
#[derive(Default)]
pub(super) struct Versions {
    hosts: HashMap<String, HostSeen>,
}

impl Versions {
    /// Takes in the signed values gossip now holds for `host` (key, version, value; already
    /// opened, from all of the host's live chitchat nodes) and returns the values accepted for
    /// it: its current keys and their values, deletions left out.
    pub(super) fn update<'a>(
        &mut self,
        host: &str,
        offered: &[(&'a str, u64, &'a str)],
    ) -> BTreeMap<String, String> {
        if offered.is_empty() && !self.hosts.contains_key(host) {
            // Nothing signed: no memory is spent on a name anyone can gossip under.
            return BTreeMap::new();
        }
        let seen = self.hosts.entry(host.to_string()).or_default();
        let generations = offered.iter().filter(|(k, _, _)| *k == HOST_KEY);
        for &(key, version, value) in generations.chain(offered) {
            seen.offer(key, version, value);
        }
        let present: HashSet<&str> = offered.iter().map(|(k, _, _)| *k).collect();
        seen.forget_missing_deletions(&present);
        seen.keys
            .iter()
            .filter_map(|(k, h)| Some((k.clone(), h.value.clone()?)))
            .collect()
    }

    /// Drops the keys and `forgotten` mark of every host but those in `live`; keeps their
    /// generation floor.
    pub(super) fn retain_live(&mut self, live: &HashSet<&str>) {
        for (host, seen) in &mut self.hosts {
            if !live.contains(host.as_str()) {
                seen.keys.clear();
                seen.forgotten = 0;
            }
        }
    }
}

impl HostSeen {
    /// Accepts `value` at `version` for `key` if it is newer than what is held (or the same).
    fn offer(&mut self, key: &str, version: u64, value: &str) {
        if version < self.floor {
            return refused(key, version, "from before the host's restart");
        }
        match self.keys.get(key) {
            Some(held) if held.version > version => {
                return refused(key, version, "older than the value held");
            }
            Some(held) if held.version == version => {
                if held.value.as_deref().unwrap_or(DELETED) != value {
                    refused(key, version, "a different value under the held version");
                }
                return;
            }
            None if version <= self.forgotten => {
                return refused(key, version, "deleted before");
            }
            _ => {}
        }
        let value = (value != DELETED).then(|| value.to_string());
        self.keys.insert(key.to_string(), Held { version, value });
        if key == HOST_KEY && version > self.floor {
            self.floor = version;
            self.keys.retain(|_, h| h.version >= version);
        }
    }

    /// Forgets the held deletions of keys gossip no longer has, raising `forgotten` past them.
    fn forget_missing_deletions(&mut self, present: &HashSet<&str>) {
        let forgotten = &mut self.forgotten;
        self.keys.retain(|k, h| {
            let keep = h.value.is_some() || present.contains(k.as_str());
            if !keep {
                *forgotten = (*forgotten).max(h.version);
            }
            keep
        });
    }
}

fn refused(key: &str, version: u64, why: &str) {
    tracing::debug!(
        key,
        version,
        "a replayed or shadowed gossip value, refused: {why}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(v: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
        v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    #[test]
    fn an_older_or_conflicting_value_does_not_replace_the_held_one() {
        let mut versions = Versions::default();
        let now = versions.update("ord-1", &[("host", 10, "h"), ("m:1", 12, "started")]);
        assert_eq!(values(&now), [("host", "h"), ("m:1", "started")]);
        let now = versions.update("ord-1", &[("host", 10, "h"), ("m:1", 14, "stopped")]);
        assert_eq!(values(&now), [("host", "h"), ("m:1", "stopped")]);
        // The old value replayed (a higher chitchat version, its own signed one), or another
        // value under the held version: the held value stays.
        for replay in [("m:1", 12, "started"), ("m:1", 14, "started")] {
            let now = versions.update("ord-1", &[("host", 10, "h"), replay]);
            assert_eq!(
                values(&now),
                [("host", "h"), ("m:1", "stopped")],
                "{replay:?}"
            );
        }
        // Nor does a key going missing (shadowed by an unsigned value) remove it.
        let now = versions.update("ord-1", &[("host", 10, "h")]);
        assert_eq!(values(&now), [("host", "h"), ("m:1", "stopped")]);
    }

    #[test]
    fn a_deletion_is_not_undone_by_a_replay_even_once_gossip_forgets_it() {
        let mut versions = Versions::default();
        versions.update("ord-1", &[("host", 10, "h"), ("m:1", 12, "started")]);
        let now = versions.update("ord-1", &[("host", 10, "h"), ("m:1", 15, DELETED)]);
        assert_eq!(values(&now), [("host", "h")]);
        let now = versions.update("ord-1", &[("host", 10, "h"), ("m:1", 12, "started")]);
        assert_eq!(values(&now), [("host", "h")], "replayed over the deletion");
        // chitchat dropped the deletion after its grace period: the mark remembers it.
        versions.update("ord-1", &[("host", 10, "h")]);
        assert!(versions.hosts["ord-1"].keys.len() == 1);
        let now = versions.update("ord-1", &[("host", 10, "h"), ("m:1", 12, "started")]);
        assert_eq!(
            values(&now),
            [("host", "h")],
            "replayed after the deletion was forgotten"
        );
        let now = versions.update("ord-1", &[("host", 10, "h"), ("m:1", 16, "again")]);
        assert_eq!(values(&now), [("host", "h"), ("m:1", "again")]);
    }

    #[test]
    fn a_restarted_host_wins_over_its_old_generation() {
        let mut versions = Versions::default();
        versions.update(
            "ord-1",
            &[("host", 10, "h"), ("m:1", 12, "a"), ("m:2", 13, "b")],
        );
        // Both generations are live for a while; the new one has no m:2 (destroyed meanwhile).
        let both = [
            ("host", 10, "h"),
            ("m:1", 12, "a"),
            ("m:2", 13, "b"),
            ("host", 20, "h2"),
            ("m:1", 21, "a2"),
        ];
        let now = versions.update("ord-1", &both);
        assert_eq!(values(&now), [("host", "h2"), ("m:1", "a2")]);
        // The old generation's values replayed later change nothing.
        let now = versions.update("ord-1", &both[..3]);
        assert_eq!(values(&now), [("host", "h2"), ("m:1", "a2")]);
    }

    #[test]
    fn a_host_that_leaves_takes_its_keys_but_not_its_floor() {
        let mut versions = Versions::default();
        versions.update(
            "ord-1",
            &[("host", 10, "h"), ("m:1", 12, "a"), ("m:2", 14, DELETED)],
        );
        // Gossip forgets the deletion: the mark is above the host's record and m:1.
        versions.update("ord-1", &[("host", 10, "h"), ("m:1", 12, "a")]);
        assert_eq!(versions.hosts["ord-1"].forgotten, 14);
        versions.update("syd-1", &[("host", 11, "s")]);
        versions.retain_live(&HashSet::from(["syd-1"]));
        assert!(versions.hosts["ord-1"].keys.is_empty());
        assert_eq!(versions.hosts["syd-1"].keys.len(), 1);
        // Back (the same generation, after a false alarm): its keys return, and nothing from
        // before its generation does.
        let now = versions.update(
            "ord-1",
            &[("host", 10, "h"), ("m:1", 12, "a"), ("m:3", 9, "older")],
        );
        assert_eq!(values(&now), [("host", "h"), ("m:1", "a")]);
        // Names without a signed value cost nothing.
        versions.update("evil-1", &[]);
        assert!(!versions.hosts.contains_key("evil-1"));
    }
}
