//! The worker side's count of what each machine is serving: the source of truth for load. A
//! request (or connection) takes a slot with [`Load::try_acquire`], which refuses at the
//! machine's hard limit, and gives it back when its [`Slot`] is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// In-flight requests or connections per machine.
#[derive(Default)]
pub struct Load {
    machines: Mutex<HashMap<String, Arc<AtomicU32>>>,
    /// Woken whenever a slot is given back: requests queued at the hard limit try again.
    freed: Notify,
}

/// One request's or connection's place on a machine.
pub struct Slot {
    load: Arc<Load>,
    counter: Arc<AtomicU32>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::SeqCst);
        self.load.freed.notify_waiters();
    }
}

impl Load {
    fn counter(&self, machine: &str) -> Arc<AtomicU32> {
        self.machines
            .lock()
            .expect("lock")
            .entry(machine.to_string())
            .or_default()
            .clone()
    }

    /// What the machine is serving now.
    pub fn current(&self, machine: &str) -> u32 {
        self.machines
            .lock()
            .expect("lock")
            .get(machine)
            .map_or(0, |c| c.load(Ordering::SeqCst))
    }

    /// A slot on the machine, or `None` when it is at `hard` already (the worker refuses).
    pub fn try_acquire(self: &Arc<Self>, machine: &str, hard: u32) -> Option<Slot> {
        let counter = self.counter(machine);
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < hard).then_some(n + 1)
            })
            .ok()?;
        Some(Slot {
            load: self.clone(),
            counter,
        })
    }

    /// Resolves the next time any slot is given back.
    pub async fn freed(&self) {
        self.freed.notified().await;
    }

    /// Forgets machines that serve nothing (called now and then; counters are recreated on use).
    pub fn compact(&self) {
        self.machines
            .lock()
            .expect("lock")
            .retain(|_, c| c.load(Ordering::SeqCst) > 0 || Arc::strong_count(c) > 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_stop_at_the_hard_limit_and_come_back_when_dropped() {
        let load = Arc::new(Load::default());
        let a = load.try_acquire("m1", 2).unwrap();
        let _b = load.try_acquire("m1", 2).unwrap();
        assert!(load.try_acquire("m1", 2).is_none(), "at the hard limit");
        assert_eq!(load.current("m1"), 2);
        assert!(load.try_acquire("m2", 2).is_some(), "machines count apart");
        drop(a);
        assert_eq!(load.current("m1"), 1);
        assert!(load.try_acquire("m1", 2).is_some());
    }

    #[test]
    fn compaction_keeps_only_machines_in_use() {
        let load = Arc::new(Load::default());
        let held = load.try_acquire("busy", 2).unwrap();
        drop(load.try_acquire("idle", 2).unwrap());
        load.compact();
        assert_eq!(load.machines.lock().unwrap().len(), 1);
        assert_eq!(load.current("busy"), 1);
        drop(held);
        load.compact();
        assert!(load.machines.lock().unwrap().is_empty());
    }
}
