//! Single flight: concurrent requests for the same key share one piece of work, and everyone
//! gets its outcome (a value or an error: a failure is handed to everyone waiting rather than
//! retried by each in turn, which with a registry down would multiply the retries).
//!
//! It lives in this crate because both of its users single-flight OCI content by digest: the
//! image store's layer, image and ext4 work, and the registry cache's upstream blob and manifest
//! fetches. Nothing in it is OCI-specific; if a user of another kind appears, it belongs in a
//! small shared utility crate instead.
//!
//! Two ways to run a flight:
//!
//! - [`Flights::join`] then [`Flight::run`]: the work runs in the caller's task. If that caller
//!   is cancelled, the next waiter runs its own work instead (nothing is left running that
//!   nobody awaits). The entry leaves the map when the first of its users is done, so it never
//!   outlives them: newcomers start afresh (and find the finished work where it was stored).
//!   A flight also carries a per-flight state `S` its users share (e.g. a progress channel).
//! - [`Flights::run_detached`]: the first caller spawns the work, so it finishes even if that
//!   caller goes away, and everyone waits for its outcome; the entry leaves the map when the
//!   work ends.
//!
//! The map is behind a `parking_lot` mutex that is never held across an await.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

type Slot<T, E> = Arc<tokio::sync::Mutex<Option<Result<T, E>>>>;
type Map<T, E, S> = Arc<Mutex<HashMap<String, Arc<Flight<T, E, S>>>>>;

/// Per-key single flights whose work yields `Result<T, E>`, each with a shared state `S`.
pub struct Flights<T, E, S = ()> {
    map: Map<T, E, S>,
}

/// One piece of work done once for everyone who asks for it at the same time. Whoever runs it
/// holds `outcome` locked until it is set; waiters queue on that lock.
pub struct Flight<T, E, S = ()> {
    state: S,
    outcome: Slot<T, E>,
}

/// A caller's membership of a flight (from [`Flights::join`]). Dropping it removes the flight
/// from the map if it is still there.
pub struct Joined<T, E, S = ()> {
    map: Map<T, E, S>,
    key: String,
    flight: Arc<Flight<T, E, S>>,
}

impl<T, E, S> Default for Flights<T, E, S> {
    fn default() -> Self {
        Flights {
            map: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<T, E, S: Default> Flights<T, E, S> {
    /// No flights yet.
    pub fn new() -> Self {
        Flights::default()
    }

    /// Joins the flight for `key`, creating it if none is under way.
    pub fn join(&self, key: &str) -> Joined<T, E, S> {
        let flight = self
            .map
            .lock()
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(Flight::new()))
            .clone();
        Joined {
            map: Arc::clone(&self.map),
            key: key.to_string(),
            flight,
        }
    }

    /// Spawns `work()` for `key` unless a flight for `key` is under way, and waits for the
    /// outcome of whichever flight runs. Returns whether this call started the flight, and the
    /// outcome (`None` if the work stopped without one: it panicked or the runtime is shutting
    /// down).
    pub async fn run_detached<F>(
        &self,
        key: &str,
        work: impl FnOnce() -> F,
    ) -> (bool, Option<Result<T, E>>)
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Clone + Send + 'static,
        E: Clone + Send + 'static,
        S: Send + Sync + 'static,
    {
        let (flight, leader) = {
            let mut map = self.map.lock();
            match map.get(key) {
                Some(flight) => (Arc::clone(flight), None),
                None => {
                    let flight = Arc::new(Flight::new());
                    // Locked before anyone else can see the flight, so waiters always queue
                    // behind the work.
                    let slot = Arc::clone(&flight.outcome)
                        .try_lock_owned()
                        .expect("a new flight's outcome is unlocked");
                    map.insert(key.to_string(), Arc::clone(&flight));
                    let member = Joined {
                        map: Arc::clone(&self.map),
                        key: key.to_string(),
                        flight: Arc::clone(&flight),
                    };
                    (flight, Some((slot, member)))
                }
            }
        };
        let led = leader.is_some();
        if let Some((mut slot, member)) = leader {
            let work = work();
            tokio::spawn(async move {
                *slot = Some(work.await);
                drop(slot);
                drop(member);
            });
        }
        let outcome = flight.outcome.lock().await.clone();
        (led, outcome)
    }
}

impl<T, E, S: Default> Flight<T, E, S> {
    fn new() -> Self {
        Flight {
            state: S::default(),
            outcome: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }
}

impl<T: Clone, E: Clone, S> Flight<T, E, S> {
    /// The state shared by everyone in this flight.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// The outcome of this flight: the one already reached, else that of `work()`, run here
    /// unless someone else is running theirs (then waits for it; if they are cancelled, the
    /// next waiter runs its own).
    pub async fn run<F: Future<Output = Result<T, E>>>(
        &self,
        work: impl FnOnce() -> F,
    ) -> Result<T, E> {
        let mut outcome = self.outcome.lock().await;
        if let Some(done) = outcome.as_ref() {
            return done.clone();
        }
        let done = work().await;
        *outcome = Some(done.clone());
        done
    }
}

impl<T, E, S> Joined<T, E, S> {
    /// The flight joined.
    pub fn flight(&self) -> &Arc<Flight<T, E, S>> {
        &self.flight
    }
}

impl<T, E, S> std::ops::Deref for Joined<T, E, S> {
    type Target = Flight<T, E, S>;

    fn deref(&self) -> &Flight<T, E, S> {
        &self.flight
    }
}

impl<T, E, S> Drop for Joined<T, E, S> {
    fn drop(&mut self) {
        let mut map = self.map.lock();
        if map
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests;
