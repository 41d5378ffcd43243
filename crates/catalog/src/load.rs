//! The worker side's count of what each machine is serving: the source of truth for load. A
//! request (or connection) takes a slot with [`Load::try_acquire`], which refuses at the
//! machine's hard limit, and gives it back when its [`Slot`] is dropped. Autostop asks how long
//! a machine has served nothing ([`Load::idle_for`]).
//!
//! One count per host, shared by three parts, which is why it is the catalog's: the proxy's
//! worker side counts, the agent waits for a stopping machine's count to drain, gossip publishes
//! it with the machines. State: a `parking_lot` mutex over the map of counters, held only to find or
//! compact them; the counts themselves are atomics.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// One machine's count.
#[derive(Default)]
struct Counter {
    in_flight: AtomicU32,
    /// When the last slot was given back, in ms since [`Load::epoch`].
    released_ms: AtomicU64,
}

/// In-flight requests or connections per machine.
pub struct Load {
    machines: Mutex<HashMap<String, Arc<Counter>>>,
    epoch: Instant,
    /// Woken whenever a slot is given back: requests queued at the hard limit try again.
    freed: Notify,
}

impl std::fmt::Debug for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Load")
            .field("machines", &self.snapshot().len())
            .finish_non_exhaustive()
    }
}

impl Default for Load {
    fn default() -> Self {
        Self {
            machines: Mutex::default(),
            epoch: Instant::now(),
            freed: Notify::new(),
        }
    }
}

/// One request's or connection's place on a machine.
pub struct Slot {
    load: Arc<Load>,
    counter: Arc<Counter>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let now = self.load.epoch.elapsed().as_millis() as u64;
        self.counter.released_ms.store(now, Ordering::SeqCst);
        self.counter.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.load.freed.notify_waiters();
    }
}

impl Load {
    fn counter(&self, machine: &str) -> Arc<Counter> {
        self.machines
            .lock()
            .entry(machine.to_string())
            .or_default()
            .clone()
    }

    /// What the machine is serving now.
    pub fn current(&self, machine: &str) -> u32 {
        self.machines
            .lock()
            .get(machine)
            .map_or(0, |c| c.in_flight.load(Ordering::SeqCst))
    }

    /// How long the machine has served nothing: zero while it serves something; since its last
    /// request ended, or since this proxy started when it had none.
    pub fn idle_for(&self, machine: &str) -> Duration {
        let machines = self.machines.lock();
        let Some(c) = machines.get(machine) else {
            return self.epoch.elapsed();
        };
        if c.in_flight.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        let released = Duration::from_millis(c.released_ms.load(Ordering::SeqCst));
        self.epoch.elapsed().saturating_sub(released)
    }

    /// A slot on the machine, or `None` when it is at `hard` already (the worker refuses).
    pub fn try_acquire(self: &Arc<Self>, machine: &str, hard: u32) -> Option<Slot> {
        let counter = self.counter(machine);
        counter
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < hard).then_some(n + 1)
            })
            .ok()?;
        Some(Slot {
            load: self.clone(),
            counter,
        })
    }

    /// Every machine with a count, and what it serves now.
    pub fn snapshot(&self) -> Vec<(String, u32)> {
        let mut all: Vec<(String, u32)> = self
            .machines
            .lock()
            .iter()
            .map(|(id, c)| (id.clone(), c.in_flight.load(Ordering::SeqCst)))
            .collect();
        all.sort();
        all
    }

    /// Resolves the next time any slot is given back.
    pub async fn freed(&self) {
        self.freed.notified().await;
    }

    /// Forgets machines that serve nothing and were last used over `idle` ago (called now and
    /// then; counters are recreated on use).
    pub fn compact(&self, idle: Duration) {
        let now = self.epoch.elapsed();
        self.machines.lock().retain(|_, c| {
            let released = Duration::from_millis(c.released_ms.load(Ordering::SeqCst));
            c.in_flight.load(Ordering::SeqCst) > 0
                || Arc::strong_count(c) > 1
                || now.saturating_sub(released) < idle
        });
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
        assert_eq!(load.idle_for("m1"), Duration::ZERO);
        assert!(load.try_acquire("m2", 2).is_some(), "machines count apart");
        drop(a);
        assert_eq!(load.current("m1"), 1);
        assert!(load.try_acquire("m1", 2).is_some());
    }

    #[test]
    fn idleness_counts_from_the_last_request() {
        let load = Arc::new(Load::default());
        std::thread::sleep(Duration::from_millis(30));
        assert!(load.idle_for("never") >= Duration::from_millis(30));
        drop(load.try_acquire("m1", 1).unwrap());
        assert!(load.idle_for("m1") < Duration::from_millis(30));
    }

    #[test]
    fn compaction_keeps_only_machines_in_use() {
        let load = Arc::new(Load::default());
        let held = load.try_acquire("busy", 2).unwrap();
        drop(load.try_acquire("idle", 2).unwrap());
        load.compact(Duration::ZERO);
        assert_eq!(load.machines.lock().len(), 1);
        assert_eq!(load.current("busy"), 1);
        drop(held);
        load.compact(Duration::ZERO);
        assert!(load.machines.lock().is_empty());
    }
}
