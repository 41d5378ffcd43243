//! The [`Agent`] handle: what it was opened with (config, runtime, [`AgentDeps`]), its store,
//! its owned tasks and the in-memory side of its machines, plus the helpers every operation is
//! built from (find, lock, save, run as an owned task).
//!
//! State lives in one private `Inner` behind an `Arc` (the handle is cheap to clone); other
//! modules reach it through methods. Locks: `room` (tokio, serializes capacity checks with the
//! writes that allocate), each machine's operation lock in its [`Slot`], and short `parking_lot` mutexes (slots, check results,
//! the advertised address, the secrets' caches) never held across an `.await`.
//!
//! The operations themselves are `impl Agent` blocks in the modules that own them (`machine`,
//! `images`, `volumes`, `checks`, `http` for [`Agent::router`]); this module names none of them
//! but boot reconcile and the volume thaw that [`Agent::open`] runs.

use crate::AgentConfig;
use crate::error::AgentError;
use crate::machine::slot::{CheckResults, Locked, Slot, Slots};
use crate::secrets::{SecretSource, Secrets};
use crate::store::{Record, Store};
use crate::tasks::{TaskKind, Tasks};
use aloft_catalog::Load;
use aloft_runtime::Runtime;
use aloft_types::api::HostInfo;
use aloft_types::machine::ImagePull;
use aloft_types::time::now_ms;
use aloft_types::{ApiError, MachineEvent, MachineId, MachineState};
use parking_lot::Mutex;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long shutdown lets running operations finish before aborting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The host agent: the source of truth for the machines on one host. Cheap to clone.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

struct Inner {
    config: AgentConfig,
    runtime: Arc<dyn Runtime>,
    store: Store,
    tasks: Tasks,
    /// Serializes capacity checks with the writes that allocate (create, update).
    room: tokio::sync::Mutex<()>,
    slots: Slots,
    /// The latest health check results of started machines (`checks`).
    checks: CheckResults,
    /// The address the heartbeat advertises, once one runs.
    advertise: Mutex<Option<String>>,
    /// App secrets and volume keys ([`AgentDeps::secrets`]), with the last values got.
    secrets: Secrets,
    /// [`AgentDeps::internal_dns`].
    internal_dns: Option<String>,
    /// [`AgentDeps::drain`].
    drain: Option<Arc<Load>>,
}

/// What an agent works with besides its config and runtime. All of it is given at
/// [`Agent::open`], before reconcile restarts any machine, so a machine restarted during boot
/// recovery gets its secrets, its name server and its drain like any later start.
#[derive(Clone, Default)]
pub struct AgentDeps {
    /// Where app secrets and volume keys come from (the control plane). `None`: machines start
    /// without secrets and cannot mount volumes.
    pub secrets: Option<Arc<dyn SecretSource>>,
    /// The host's internal DNS server, machines' name server unless their config names others.
    /// `None`: the host's resolvers.
    pub internal_dns: Option<String>,
    /// The proxy's requests in flight per machine, when a proxy routes to this host's machines:
    /// a stop waits for them (at most a few seconds) before signalling the machine.
    pub drain: Option<Arc<Load>>,
}

impl Agent {
    /// Opens (or creates) the store and reconciles with the runtime (reattach). A data dir that
    /// cannot be written is an error naming the path and the fix, before anything is written.
    pub async fn open(
        config: AgentConfig,
        runtime: Arc<dyn Runtime>,
        deps: AgentDeps,
    ) -> Result<Agent, AgentError> {
        let store = Store::open(&config.data_dir)?;
        let records = store.list()?;
        let agent = Agent {
            inner: Arc::new(Inner {
                config,
                runtime,
                store,
                tasks: Tasks::new(),
                room: tokio::sync::Mutex::new(()),
                slots: Slots::default(),
                checks: CheckResults::default(),
                advertise: Mutex::new(None),
                secrets: Secrets::new(deps.secrets),
                internal_dns: deps.internal_dns,
                drain: deps.drain,
            }),
        };
        for rec in &records {
            agent.slot(rec);
        }
        // A snapshot cut short by a crash may have left a volume frozen under its machine.
        agent.volume_store().thaw_all();
        agent.reconcile(records).await?;
        Ok(agent)
    }

    /// What this host tells the control plane: region, address, capacity and what is allocated.
    pub fn host_info(&self, advertise_url: &str) -> HostInfo {
        let (allocated_cpus, allocated_memory_mb) = match self.allocated(None) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("cannot sum the allocated capacity: {e}");
                (0, 0)
            }
        };
        let c = &self.inner.config;
        HostInfo {
            id: c.host_id.clone(),
            region: c.region.clone(),
            address: advertise_url.to_string(),
            runtime: self.inner.runtime.name().to_string(),
            cpus: c.cpus,
            memory_mb: c.memory_mb,
            allocated_cpus,
            allocated_memory_mb,
        }
    }

    /// Tests: drop every task at once without writing anything more (as SIGKILL would).
    pub fn crash(&self) {
        self.inner.store.close();
        self.inner.tasks.abort_all();
    }

    /// Stops background tasks; machines keep running (reattached on the next open).
    pub async fn shutdown(&self) {
        self.inner.tasks.close(SHUTDOWN_GRACE).await;
        self.inner.store.close();
    }

    /// Whether the agent still runs (it has not been shut down or crashed).
    pub(crate) fn is_running(&self) -> bool {
        !self.inner.tasks.is_closed()
    }

    pub(crate) fn set_advertise(&self, url: &str) {
        *self.inner.advertise.lock() = Some(url.to_string());
    }

    pub(crate) fn advertise(&self) -> Option<String> {
        self.inner.advertise.lock().clone()
    }

    /// The runtime, unless the agent has stopped (then nothing more may act on machines).
    pub(crate) fn runtime(&self) -> Result<&dyn Runtime, ApiError> {
        if self.is_running() {
            Ok(self.inner.runtime.as_ref())
        } else {
            Err(AgentError::Closed.into())
        }
    }

    /// The machine's slot, made from its record if it has none yet.
    pub(crate) fn slot(&self, rec: &Record) -> Arc<Slot> {
        self.inner.slots.of(rec)
    }

    /// The pull of the machine's image in progress, if one is.
    pub(crate) fn image_pull(&self, id: &MachineId) -> Option<ImagePull> {
        self.inner.slots.pull(id)
    }

    /// The machine `id` of `app`, or 404.
    pub(crate) fn find(&self, app: &str, id: &str) -> Result<Record, ApiError> {
        let not_found = || {
            ApiError::NotFound(format!(
                "machine {id} not found in app {app}; list the app's machines with `aloft machine list -a {app}`"
            ))
        };
        let mid = MachineId::parse(id).ok_or_else(not_found)?;
        match self.inner.store.get(&mid)? {
            Some(rec) if rec.app == app => Ok(rec),
            _ => Err(not_found()),
        }
    }

    /// Locks machine `id` of `app` for an operation (404 if there is none).
    pub(crate) async fn lock(&self, app: &str, id: &str) -> Result<Locked, ApiError> {
        let rec = self.find(app, id)?;
        self.lock_id(&rec.id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("machine {id} not found in app {app}")))
    }

    /// Locks a machine by id (agent-internal callers); `None` if the store does not hold it.
    pub(crate) async fn lock_id(&self, id: &MachineId) -> Result<Option<Locked>, ApiError> {
        let Some(rec) = self.inner.store.get(id)? else {
            return Ok(None);
        };
        let slot = self.slot(&rec);
        let guard = slot.lock_owned().await;
        // Fresh: another operation may have changed it while this one waited for the lock.
        let Some(rec) = self.inner.store.get(id)? else {
            return Ok(None);
        };
        Ok(Some(Locked::new(slot, rec, guard)))
    }

    /// Locks a machine that was just inserted (uncontended: nobody else knows it yet).
    pub(crate) async fn lock_new(&self, rec: Record) -> Locked {
        let slot = self.slot(&rec);
        let guard = slot.lock_owned().await;
        Locked::new(slot, rec, guard)
    }

    /// Moves the machine to `state` and records `events`, in one write, then tells waiters.
    pub(crate) fn save(
        &self,
        m: &mut Locked,
        state: MachineState,
        events: Vec<MachineEvent>,
    ) -> Result<(), ApiError> {
        self.write(m, state, events, false)
    }

    /// As [`Agent::save`], also (re)writing the config of the machine's current version.
    pub(crate) fn save_version(
        &self,
        m: &mut Locked,
        state: MachineState,
        events: Vec<MachineEvent>,
    ) -> Result<(), ApiError> {
        self.write(m, state, events, true)
    }

    fn write(
        &self,
        m: &mut Locked,
        state: MachineState,
        events: Vec<MachineEvent>,
        version: bool,
    ) -> Result<(), ApiError> {
        let mut rec = m.rec.clone();
        rec.state = state;
        rec.updated_at = now_ms();
        self.inner.store.save(&rec, &events, version)?;
        m.written(rec);
        Ok(())
    }

    /// Runs `fut` as an operation task the agent owns (so a crash interrupts it mid-way, and an
    /// HTTP client that goes away does not).
    pub(crate) async fn run_op<T, Fut>(&self, fut: Fut) -> Result<T, ApiError>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        let handle = self
            .inner
            .tasks
            .spawn(TaskKind::Operation, fut)
            .map_err(|_| ApiError::from(AgentError::Closed))?;
        match handle.await {
            Ok(result) => result,
            Err(e) if e.is_cancelled() => Err(ApiError::Unavailable(
                "the agent stopped before the operation finished; it finishes it when it starts again, check the machine's state then".into(),
            )),
            Err(e) => Err(ApiError::Internal(format!(
                "the operation failed unexpectedly ({e}); this is a bug in the agent"
            ))),
        }
    }

    /// Spawns a background operation whose result is only logged.
    pub(crate) fn spawn_op<Fut>(&self, what: &'static str, fut: Fut)
    where
        Fut: Future<Output = Result<(), ApiError>> + Send + 'static,
    {
        let spawned = self.inner.tasks.spawn(TaskKind::Operation, async move {
            if let Err(e) = fut.await {
                tracing::info!("{what}: {e}");
            }
        });
        if spawned.is_err() {
            tracing::debug!("{what}: not run, the agent is stopping; it runs on the next start");
        }
    }

    /// What the agent was set up with.
    pub(crate) fn config(&self) -> &AgentConfig {
        &self.inner.config
    }

    /// The machines' store.
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The tasks the agent owns.
    pub(crate) fn tasks(&self) -> &Tasks {
        &self.inner.tasks
    }

    /// The runtime, whether or not the agent still runs: for reads and for what a run already
    /// started needs (waiting for it, its exit message). Writes use [`Agent::runtime`].
    pub(crate) fn any_runtime(&self) -> &dyn Runtime {
        self.inner.runtime.as_ref()
    }

    /// Held by capacity checks and the writes that allocate (create, update), so two of them
    /// never both see the same room.
    pub(crate) fn room(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.room
    }

    /// The latest health check results of started machines.
    pub(crate) fn checks(&self) -> &CheckResults {
        &self.inner.checks
    }

    /// App secrets and volume keys, from the control plane or this host's last copy.
    pub(crate) fn secrets(&self) -> &Secrets {
        &self.inner.secrets
    }

    /// The name server machines get unless their config names others (`None`: the host's).
    pub(crate) fn internal_dns(&self) -> Option<String> {
        self.inner.internal_dns.clone()
    }

    /// The proxy's requests in flight per machine, when a proxy routes to this host.
    pub(crate) fn in_flight(&self) -> Option<&Load> {
        self.inner.drain.as_deref()
    }
}
