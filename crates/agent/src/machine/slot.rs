//! The in-memory side of this host's machines, next to their records in the store: one [`Slot`]
//! per machine (its operation lock, run generation, state channel and image pull in progress),
//! the [`Locked`] guard an operation holds, the latest health check results, and the event
//! helpers every transition writes with.
//!
//! State: [`Slots`] (a `parking_lot` mutex over the map, held only to look a slot up) and
//! [`CheckResults`] (a `parking_lot` mutex over the results). The operation lock in each slot is a tokio
//! mutex held across runtime calls; reads and waits never take it.
//!
//! A leaf: it uses nothing of the crate but the store's [`Record`].

use crate::store::Record;
use aloft_types::machine::{
    CheckState, CheckStatus, EventRequest, EventSource, EventType, ImagePull,
};
use aloft_types::time::now_ms;
use aloft_types::{InstanceId, MachineEvent, MachineId, MachineState};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{OwnedMutexGuard, watch};

/// The in-memory side of one machine.
pub(crate) struct Slot {
    /// Serializes operations on the machine; held across runtime calls. Reads and waits never
    /// take it.
    lock: Arc<tokio::sync::Mutex<()>>,
    /// The generation of the current run. Every start and every requested stop moves it on, so
    /// a supervisor can tell a crash of its own run from an exit someone asked for.
    run: AtomicU64,
    /// The machine's state and version, for `wait`.
    state: watch::Sender<(MachineState, InstanceId)>,
    /// The pull of the machine's image in progress, if one is (in memory only).
    pull: Mutex<Option<ImagePull>>,
}

impl Slot {
    fn new(rec: &Record) -> Slot {
        Slot {
            lock: Arc::default(),
            run: AtomicU64::new(0),
            state: watch::Sender::new((rec.state, rec.instance_id.clone())),
            pull: Mutex::new(None),
        }
    }

    /// Starts a new run generation and returns it.
    pub fn next_run(&self) -> u64 {
        self.run.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn current_run(&self) -> u64 {
        self.run.load(Ordering::SeqCst)
    }

    pub fn subscribe(&self) -> watch::Receiver<(MachineState, InstanceId)> {
        self.state.subscribe()
    }

    /// Shows (or, with `None`, stops showing) the progress of a pull of the machine's image.
    pub fn set_pull(&self, pull: Option<ImagePull>) {
        *self.pull.lock() = pull;
    }

    /// The pull of the machine's image in progress, if one is.
    pub fn pull(&self) -> Option<ImagePull> {
        self.pull.lock().clone()
    }

    /// Tells waiters the machine's state and version.
    fn publish(&self, rec: &Record) {
        self.state
            .send_replace((rec.state, rec.instance_id.clone()));
    }

    /// Takes the machine's operation lock (waiting for the operation that holds it).
    pub async fn lock_owned(&self) -> OwnedMutexGuard<()> {
        self.lock.clone().lock_owned().await
    }
}

/// The slots of this host's machines, by id.
#[derive(Default)]
pub(crate) struct Slots(Mutex<HashMap<MachineId, Arc<Slot>>>);

impl Slots {
    /// The machine's slot, made from its record if it has none yet.
    pub fn of(&self, rec: &Record) -> Arc<Slot> {
        self.0
            .lock()
            .entry(rec.id.clone())
            .or_insert_with(|| Arc::new(Slot::new(rec)))
            .clone()
    }

    /// The pull of the machine's image in progress, if it has a slot and a pull.
    pub fn pull(&self, id: &MachineId) -> Option<ImagePull> {
        self.0.lock().get(id).and_then(|slot| slot.pull())
    }
}

/// A machine locked for an operation, with its record fresh from the store.
pub(crate) struct Locked {
    pub slot: Arc<Slot>,
    pub rec: Record,
    _guard: OwnedMutexGuard<()>,
}

impl Locked {
    /// The machine `rec` whose slot's lock `guard` is.
    pub fn new(slot: Arc<Slot>, rec: Record, guard: OwnedMutexGuard<()>) -> Locked {
        Locked {
            slot,
            rec,
            _guard: guard,
        }
    }

    /// Replaces the record with `rec`, just written, and tells waiters.
    pub fn written(&mut self, rec: Record) {
        self.slot.publish(&rec);
        self.rec = rec;
    }
}

/// The latest health check results of started machines (memory only), by machine.
#[derive(Default)]
pub(crate) struct CheckResults(Mutex<HashMap<MachineId, Vec<CheckStatus>>>);

impl CheckResults {
    /// The latest results of the machine's checks.
    pub fn of(&self, id: &MachineId) -> Vec<CheckStatus> {
        self.0.lock().get(id).cloned().unwrap_or_default()
    }

    /// Records a result; `true` when the machine moved between critical and not.
    pub fn record(&self, id: &MachineId, status: CheckStatus) -> bool {
        let mut all = self.0.lock();
        let list = all.entry(id.clone()).or_default();
        let was_critical = list.iter().any(|c| c.status == CheckState::Critical);
        match list.iter_mut().find(|c| c.name == status.name) {
            Some(c) => *c = status,
            None => {
                list.push(status);
                list.sort_by(|a, b| a.name.cmp(&b.name));
            }
        }
        let critical = list.iter().any(|c| c.status == CheckState::Critical);
        critical != was_critical
    }

    /// Keeps the results of the machines `keep` says yes to.
    pub fn retain_machines(&self, keep: impl Fn(&MachineId) -> bool) {
        self.0.lock().retain(|id, _| keep(id));
    }

    /// Keeps the machine's results of the checks `keep` says yes to.
    pub fn retain_checks(&self, id: &MachineId, keep: impl Fn(&str) -> bool) {
        if let Some(results) = self.0.lock().get_mut(id) {
            results.retain(|r| keep(&r.name));
        }
    }

    /// Forgets the machine's results.
    pub fn forget(&self, id: &MachineId) {
        self.0.lock().remove(id);
    }
}

/// A new event reaching `status`.
pub(crate) fn event(
    kind: EventType,
    status: MachineState,
    source: EventSource,
    message: Option<String>,
) -> MachineEvent {
    MachineEvent {
        id: ulid::Ulid::new().to_string(),
        kind,
        status: status.as_str().to_string(),
        source,
        timestamp: now_ms(),
        request: message.map(|message| EventRequest {
            exit_event: None,
            restart_count: None,
            message: Some(message),
        }),
    }
}

/// The event type as the API spells it.
pub(crate) fn kind_name(kind: EventType) -> &'static str {
    match kind {
        EventType::Launch => "launch",
        EventType::Start => "start",
        EventType::Stop => "stop",
        EventType::Exit => "exit",
        EventType::Restart => "restart",
        EventType::Update => "update",
        EventType::Destroy => "destroy",
        EventType::Suspend => "suspend",
    }
}
