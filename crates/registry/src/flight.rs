//! Single flight: concurrent requests for the same key share one piece of work. The first caller
//! spawns it (so it finishes even if that caller goes away) and everyone waits for its outcome on
//! a watch channel. The map is behind a std mutex that is never held across an await.

use crate::error::{ErrorCode, RegistryError};
use crate::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The shared outcome of one flight.
pub(crate) type Outcome = Result<(), Arc<RegistryError>>;

type Slot = watch::Receiver<Option<Outcome>>;

#[derive(Default)]
pub(crate) struct Flights {
    inflight: Arc<Mutex<HashMap<String, Slot>>>,
}

impl Flights {
    /// Runs `work()` for `key` unless a flight for `key` is under way, and waits for the
    /// outcome of whichever flight runs. Returns whether this call started the flight.
    pub(crate) async fn run<F>(&self, key: &str, work: impl FnOnce() -> F) -> (bool, Outcome)
    where
        F: Future<Output = Result<(), RegistryError>> + Send + 'static,
    {
        let (mut slot, led) = {
            let mut inflight = lock(&self.inflight);
            match inflight.get(key) {
                Some(slot) => (slot.clone(), false),
                None => {
                    let (tx, rx) = watch::channel(None);
                    inflight.insert(key.to_string(), rx.clone());
                    let flight = work();
                    let map = Arc::clone(&self.inflight);
                    let key = key.to_string();
                    tokio::spawn(async move {
                        let outcome = flight.await.map_err(Arc::new);
                        tx.send_replace(Some(outcome));
                        lock(&map).remove(&key);
                    });
                    (rx, true)
                }
            }
        };
        let outcome = match slot.wait_for(Option::is_some).await {
            Ok(done) => done.clone().unwrap_or(Ok(())),
            Err(_) => Err(Arc::new(RegistryError::api(
                ErrorCode::Internal,
                "a fetch from the upstream registry stopped unexpectedly; retry",
            ))),
        };
        (led, outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_flight() {
        let flights = Arc::new(Flights::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let flights = Arc::clone(&flights);
            let runs = Arc::clone(&runs);
            tasks.push(tokio::spawn(async move {
                flights
                    .run("k", || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok(())
                    })
                    .await
            }));
        }
        let mut leaders = 0;
        for task in tasks {
            let (led, outcome) = task.await.expect("task");
            assert!(outcome.is_ok());
            leaders += usize::from(led);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(leaders, 1);
        // The key is free again afterwards.
        let (led, _) = flights.run("k", || async { Ok(()) }).await;
        assert!(led);
    }

    #[tokio::test]
    async fn a_flight_survives_its_caller() {
        let flights = Arc::new(Flights::default());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let first = {
            let flights = Arc::clone(&flights);
            tokio::spawn(async move {
                flights
                    .run("k", || async move {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let _ = tx.send(());
                        Err(RegistryError::api(ErrorCode::BlobUnknown, "gone"))
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        first.abort();
        let (led, outcome) = flights.run("k", || async { Ok(()) }).await;
        assert!(!led, "joined the running flight");
        assert_eq!(
            outcome.expect_err("shared error").code(),
            ErrorCode::BlobUnknown
        );
        rx.await.expect("the flight ran to its end");
    }
}
