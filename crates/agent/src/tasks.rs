//! The tasks an agent owns, so that shutdown can wait for them and a simulated crash can drop
//! them all at once.
//!
//! Two kinds: *operations* (anything that writes: API operations, launches, exit handling,
//! reconciling) and *watchers* (supervisors waiting for a process to exit). Shutdown refuses new
//! tasks, aborts the watchers, and lets running operations finish; a crash aborts everything.
//!
//! State: the abort handles of the running tasks by kind, behind a `parking_lot` mutex held only to add,
//! remove or abort, and the count of running operations (a `watch` channel shutdown waits on).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Weak};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskKind {
    Operation,
    Watcher,
}

/// The agent no longer accepts tasks (it is shutting down, or crashed).
#[derive(Debug)]
pub(crate) struct Closed;

#[derive(Default)]
struct TaskSet {
    next_id: u64,
    closed: bool,
    operations: HashMap<u64, AbortHandle>,
    watchers: HashMap<u64, AbortHandle>,
}

impl TaskSet {
    fn of(&mut self, kind: TaskKind) -> &mut HashMap<u64, AbortHandle> {
        match kind {
            TaskKind::Operation => &mut self.operations,
            TaskKind::Watcher => &mut self.watchers,
        }
    }
}

pub(crate) struct Tasks {
    set: Arc<Mutex<TaskSet>>,
    /// How many operations are running.
    running: watch::Sender<usize>,
    /// How many operations were ever spawned (tests use it to tell "idle" from "between two
    /// operations").
    #[cfg(test)]
    spawned: std::sync::atomic::AtomicU64,
}

impl Tasks {
    pub fn new() -> Self {
        Self {
            set: Arc::default(),
            running: watch::Sender::new(0),
            #[cfg(test)]
            spawned: Default::default(),
        }
    }

    /// Runs `fut` as a task of this agent.
    pub fn spawn<F>(&self, kind: TaskKind, fut: F) -> Result<JoinHandle<F::Output>, Closed>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let mut set = self.set.lock();
        if set.closed {
            return Err(Closed);
        }
        set.next_id += 1;
        let id = set.next_id;
        if kind == TaskKind::Operation {
            self.running.send_modify(|n| *n += 1);
            #[cfg(test)]
            self.spawned
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        let done = Done {
            set: Arc::downgrade(&self.set),
            running: self.running.clone(),
            id,
            kind,
        };
        let handle = tokio::spawn(async move {
            let _done = done;
            fut.await
        });
        // The task cannot finish (and remove itself) before this insert: its `Done` needs the
        // lock held here.
        set.of(kind).insert(id, handle.abort_handle());
        Ok(handle)
    }

    pub fn is_closed(&self) -> bool {
        self.set.lock().closed
    }

    /// Refuses new tasks and aborts every running one at once.
    pub fn abort_all(&self) {
        let (operations, watchers) = {
            let mut set = self.set.lock();
            set.closed = true;
            (
                std::mem::take(&mut set.operations),
                std::mem::take(&mut set.watchers),
            )
        };
        for handle in operations.into_values().chain(watchers.into_values()) {
            handle.abort();
        }
    }

    /// Refuses new tasks, aborts the watchers, waits up to `grace` for running operations, then
    /// aborts what is left.
    pub async fn close(&self, grace: std::time::Duration) {
        let watchers = {
            let mut set = self.set.lock();
            set.closed = true;
            std::mem::take(&mut set.watchers)
        };
        for handle in watchers.into_values() {
            handle.abort();
        }
        let mut running = self.running.subscribe();
        if tokio::time::timeout(grace, running.wait_for(|n| *n == 0))
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "operations still running at shutdown; aborting them (the next start finishes them)"
            );
        }
        self.abort_all();
    }

    /// (operations running now, operations ever spawned).
    #[cfg(test)]
    pub fn activity(&self) -> (usize, u64) {
        (
            *self.running.borrow(),
            self.spawned.load(std::sync::atomic::Ordering::SeqCst),
        )
    }
}

/// Removes a finished (or aborted) task from the set.
struct Done {
    set: Weak<Mutex<TaskSet>>,
    running: watch::Sender<usize>,
    id: u64,
    kind: TaskKind,
}

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(set) = self.set.upgrade() {
            set.lock().of(self.kind).remove(&self.id);
        }
        if self.kind == TaskKind::Operation {
            self.running.send_modify(|n| *n = n.saturating_sub(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn abort_all_drops_everything_and_refuses_more() {
        let tasks = Tasks::new();
        let op = tasks
            .spawn(TaskKind::Operation, std::future::pending::<()>())
            .unwrap();
        let w = tasks
            .spawn(TaskKind::Watcher, std::future::pending::<()>())
            .unwrap();
        assert_eq!(tasks.activity().0, 1);
        tasks.abort_all();
        assert!(op.await.unwrap_err().is_cancelled());
        assert!(w.await.unwrap_err().is_cancelled());
        assert!(tasks.spawn(TaskKind::Operation, async {}).is_err());
        assert_eq!(tasks.activity().0, 0);
    }

    #[tokio::test]
    async fn close_lets_operations_finish() {
        let tasks = Tasks::new();
        let op = tasks
            .spawn(TaskKind::Operation, async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                7
            })
            .unwrap();
        let w = tasks
            .spawn(TaskKind::Watcher, std::future::pending::<()>())
            .unwrap();
        tasks.close(Duration::from_secs(5)).await;
        assert_eq!(op.await.unwrap(), 7);
        assert!(w.await.unwrap_err().is_cancelled());
        assert!(tasks.is_closed());
    }
}
