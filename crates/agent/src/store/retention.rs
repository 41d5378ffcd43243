//! What the agent's store keeps, and for how long, so that its database does not grow with
//! every machine, event and version ever made on the host: the newest [`KEEP_EVENTS`] events and
//! [`KEEP_VERSIONS`] versions of each machine (trimmed in the transaction that adds one), and a
//! destroyed machine for [`KEEP_DESTROYED_MS`] after it was destroyed (forgotten, with its
//! events, versions and lease, when the next machine is created or the store opens).

use super::q;
use crate::error::AgentError;
use aloft_types::{MachineId, MachineState};
use rusqlite::{Transaction, params};

/// Events kept per machine (the API shows the newest ten in a machine object).
pub(crate) const KEEP_EVENTS: i64 = 100;
/// Versions kept per machine (the current one is always the newest).
pub(crate) const KEEP_VERSIONS: i64 = 20;
/// How long a destroyed machine stays listable (`include_deleted`), in milliseconds: a day.
pub(crate) const KEEP_DESTROYED_MS: i64 = 24 * 60 * 60 * 1000;

/// Drops the machine's events and versions beyond the newest ones kept.
pub(super) fn trim(tx: &Transaction<'_>, id: &MachineId) -> Result<(), AgentError> {
    tx.execute(
        "DELETE FROM events WHERE machine_id = ?1 AND seq <= (
             SELECT seq FROM events WHERE machine_id = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
        params![id.as_str(), KEEP_EVENTS],
    )
    .map_err(q("trimmed events"))?;
    tx.execute(
        "DELETE FROM versions WHERE machine_id = ?1 AND seq <= (
             SELECT seq FROM versions WHERE machine_id = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
        params![id.as_str(), KEEP_VERSIONS],
    )
    .map_err(q("trimmed versions"))?;
    Ok(())
}

/// Forgets the machines destroyed before `cutoff` (milliseconds since the Unix epoch), with
/// their events, versions and leases. Returns how many machines it forgot.
pub(super) fn forget_destroyed(tx: &Transaction<'_>, cutoff: i64) -> Result<usize, AgentError> {
    const GONE: &str = "SELECT id FROM machines WHERE state = ?1 AND updated_at < ?2";
    let destroyed = MachineState::Destroyed.as_str();
    for table in ["events", "versions", "leases"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE machine_id IN ({GONE})"),
            params![destroyed, cutoff],
        )
        .map_err(q("forgot destroyed machines"))?;
    }
    tx.execute(
        "DELETE FROM machines WHERE state = ?1 AND updated_at < ?2",
        params![destroyed, cutoff],
    )
    .map_err(q("forgot destroyed machines"))
}

/// Now minus [`KEEP_DESTROYED_MS`].
pub(super) fn destroyed_cutoff() -> i64 {
    aloft_types::time::now_ms() - KEEP_DESTROYED_MS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::tests::{event, record};
    use aloft_types::InstanceId;
    use aloft_types::machine::EventType;

    #[test]
    fn a_machine_keeps_its_newest_events_and_versions_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut rec = store.create_machine(record, &[]).unwrap();
        let mut last = Vec::new();
        for i in 0..(KEEP_EVENTS + 50) {
            let e = event(EventType::Update, &format!("e{i}"));
            last.push(e.id.clone());
            rec.instance_id = InstanceId::new();
            store.save(&rec, &[e], true).unwrap();
        }
        let events = store.events(&rec.id, None).unwrap();
        assert_eq!(events.len(), KEEP_EVENTS as usize);
        assert_eq!(events[0].id, *last.last().unwrap(), "the newest is kept");
        let versions = store.versions(&rec.id).unwrap();
        assert_eq!(versions.len(), KEEP_VERSIONS as usize);
        assert_eq!(
            versions[0].version,
            rec.instance_id.as_str(),
            "the current one is kept"
        );
    }

    #[test]
    fn destroyed_machines_are_forgotten_after_a_day_with_everything_of_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = aloft_types::time::now_ms();
        let mut old = store.create_machine(record, &[]).unwrap();
        old.state = MachineState::Destroyed;
        old.updated_at = now - KEEP_DESTROYED_MS - 1;
        store
            .save(&old, &[event(EventType::Destroy, "destroyed")], true)
            .unwrap();
        let lease = aloft_types::api::Lease {
            nonce: "n".into(),
            expires_at: 9,
            owner: "o".into(),
            description: String::new(),
            version: "v".into(),
        };
        store.put_lease(&old.id, &lease).unwrap();
        let mut recent = store.create_machine(record, &[]).unwrap();
        recent.state = MachineState::Destroyed;
        recent.updated_at = now;
        store.save(&recent, &[], false).unwrap();
        let live = store.create_machine(record, &[]).unwrap();

        // The next create forgets the old one, and only it.
        assert_eq!(store.get(&old.id).unwrap(), None);
        assert!(store.events(&old.id, None).unwrap().is_empty());
        assert!(store.versions(&old.id).unwrap().is_empty());
        assert_eq!(store.lease(&old.id).unwrap(), None);
        assert!(store.get(&recent.id).unwrap().is_some());
        let live_ids: Vec<_> = store
            .list_live()
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(live_ids, vec![live.id]);
    }

    #[test]
    fn the_change_log_names_the_machines_that_changed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = store.create_machine(record, &[]).unwrap();
        let seen = *store.changes().borrow();
        let b = store.create_machine(record, &[]).unwrap();
        store.touch(&b.id);
        store.save(&a, &[], false).unwrap();
        let (to, ids) = store.changed_since(seen).unwrap();
        assert_eq!(to, *store.changes().borrow());
        assert_eq!(ids, [a.id.clone(), b.id.clone()].into_iter().collect());
        assert!(store.changed_since(to).unwrap().1.is_empty());
        // A reader further behind than the log reaches reloads everything.
        for _ in 0..super::super::CHANGE_LOG {
            store.touch(&a.id);
        }
        assert!(store.changed_since(seen).is_none());
    }
}
