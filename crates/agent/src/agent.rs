//! The [`Agent`] handle: its store, runtime, per-machine slots (lock, run generation, state
//! channel) and owned tasks, plus the helpers every operation is built from.

use crate::AgentConfig;
use crate::error::AgentError;
use crate::store::{Record, Store};
use crate::tasks::{TaskKind, Tasks};
use aloft_runtime::Runtime;
use aloft_types::api::HostInfo;
use aloft_types::config::CpuKind;
use aloft_types::machine::{
    CheckStatus, EventRequest, EventSource, EventType, HostStatus, ImagePull,
};
use aloft_types::time::{now_ms, rfc3339};
use aloft_types::{ApiError, InstanceId, Machine, MachineEvent, MachineId, MachineState};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedMutexGuard, watch};

/// How long shutdown lets running operations finish before aborting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How many events the machine object carries (all of them: `GET .../events`).
const EVENTS_IN_MACHINE: u32 = 10;

/// The host agent: the source of truth for the machines on one host. Cheap to clone.
#[derive(Clone)]
pub struct Agent {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: AgentConfig,
    pub runtime: Arc<dyn Runtime>,
    pub store: Store,
    pub tasks: Tasks,
    /// Serializes capacity checks with the writes that allocate (create, update).
    pub room: tokio::sync::Mutex<()>,
    /// Held shared from the start of a pull until the machine record names the image, and
    /// exclusively by prune: prune never removes an image a machine is about to use.
    pub image_gc: tokio::sync::RwLock<()>,
    slots: Mutex<HashMap<MachineId, Arc<Slot>>>,
    /// The latest health check results of started machines ([`crate::checks`]).
    pub checks: Mutex<HashMap<MachineId, Vec<CheckStatus>>>,
    /// The address the heartbeat advertises, once one runs.
    advertise: Mutex<Option<String>>,
    /// The collaborators it was opened with.
    pub deps: AgentDeps,
    /// The last secret values got per app (memory only), for starts while the control plane
    /// does not answer.
    pub secret_cache: Mutex<HashMap<String, std::collections::BTreeMap<String, String>>>,
    /// The last size, host and key the control plane gave per volume (memory only), for starts
    /// while it does not answer.
    pub volume_cache: Mutex<HashMap<String, aloft_types::api::VolumeAccess>>,
}

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
        *lock(&self.pull) = pull;
    }
}

/// A machine locked for an operation, with its record fresh from the store.
pub(crate) struct Locked {
    pub slot: Arc<Slot>,
    pub rec: Record,
    _guard: OwnedMutexGuard<()>,
}

/// What an agent works with besides its config and runtime. All of it is given at
/// [`Agent::open`], before reconcile restarts any machine, so a machine restarted during boot
/// recovery gets its secrets, its name server and its drain like any later start.
#[derive(Clone, Default)]
pub struct AgentDeps {
    /// Where app secrets and volume keys come from (the control plane). `None`: machines start
    /// without secrets and cannot mount volumes.
    pub secrets: Option<Arc<dyn crate::secrets::SecretSource>>,
    /// The host's internal DNS server, machines' name server unless their config names others.
    /// `None`: the host's resolvers.
    pub internal_dns: Option<String>,
    /// The proxy's requests in flight per machine, when a proxy routes to this host's machines:
    /// a stop waits for them (at most a few seconds) before signalling the machine.
    pub drain: Option<Arc<aloft_proxy::load::Load>>,
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
                image_gc: tokio::sync::RwLock::new(()),
                slots: Mutex::new(HashMap::new()),
                checks: Mutex::new(HashMap::new()),
                advertise: Mutex::new(None),
                deps,
                secret_cache: Mutex::default(),
                volume_cache: Mutex::default(),
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

    /// The internal HTTP API: the machine endpoints on the public paths
    /// (/v1/apps/{app}/machines/...) plus GET /internal/v1/host; bearer `internal_token` required.
    pub fn router(&self) -> axum::Router {
        crate::http::router(self.clone())
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
        *lock(&self.inner.advertise) = Some(url.to_string());
    }

    pub(crate) fn advertise(&self) -> Option<String> {
        lock(&self.inner.advertise).clone()
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
        lock(&self.inner.slots)
            .entry(rec.id.clone())
            .or_insert_with(|| {
                Arc::new(Slot {
                    lock: Arc::default(),
                    run: AtomicU64::new(0),
                    state: watch::Sender::new((rec.state, rec.instance_id.clone())),
                    pull: Mutex::new(None),
                })
            })
            .clone()
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
        let guard = slot.lock.clone().lock_owned().await;
        // Fresh: another operation may have changed it while this one waited for the lock.
        let Some(rec) = self.inner.store.get(id)? else {
            return Ok(None);
        };
        Ok(Some(Locked {
            slot,
            rec,
            _guard: guard,
        }))
    }

    /// Locks a machine that was just inserted (uncontended: nobody else knows it yet).
    pub(crate) async fn lock_new(&self, rec: Record) -> Locked {
        let slot = self.slot(&rec);
        let guard = slot.lock.clone().lock_owned().await;
        Locked {
            slot,
            rec,
            _guard: guard,
        }
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
        m.slot
            .state
            .send_replace((rec.state, rec.instance_id.clone()));
        m.rec = rec;
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

    /// The machine object the API returns.
    pub(crate) fn machine_json(
        &self,
        rec: &Record,
        nonce: Option<String>,
    ) -> Result<Machine, ApiError> {
        let events = self.inner.store.events(&rec.id, Some(EVENTS_IN_MACHINE))?;
        Ok(self.machine_object(rec, nonce, events))
    }

    /// Every machine on this host that is not destroyed, without their events: what the
    /// proxy routes from ([`crate::LocalCatalog`]).
    pub fn machines(&self) -> Result<Vec<Machine>, ApiError> {
        Ok(self
            .inner
            .store
            .list()?
            .into_iter()
            .filter(|r| r.state != MachineState::Destroyed)
            .map(|r| self.machine_object(&r, None, Vec::new()))
            .collect())
    }

    /// Moves on whenever a machine on this host changes (state, config, a new or destroyed one).
    pub fn machine_changes(&self) -> watch::Receiver<u64> {
        self.inner.store.changes()
    }

    fn machine_object(
        &self,
        rec: &Record,
        nonce: Option<String>,
        events: Vec<MachineEvent>,
    ) -> Machine {
        Machine {
            id: rec.id.clone(),
            name: rec.name.clone(),
            state: rec.state,
            region: rec.region.clone(),
            instance_id: rec.instance_id.clone(),
            private_ip: rec.private_ip.clone(),
            config: rec.config.clone(),
            image_ref: rec
                .image_ref
                .clone()
                .unwrap_or_else(|| self.unpulled_image_ref(rec)),
            created_at: rfc3339(rec.created_at),
            updated_at: rfc3339(rec.updated_at),
            events,
            checks: self.check_results(&rec.id),
            host_status: HostStatus::Ok,
            app_name: rec.app.clone(),
            cordoned: rec.cordoned,
            host_id: self.inner.config.host_id.clone(),
            nonce,
            image_pull: lock(&self.inner.slots)
                .get(&rec.id)
                .and_then(|slot| lock(&slot.pull).clone()),
        }
    }

    /// Dedicated CPUs and memory (MB) held by machines that are not destroyed, leaving out
    /// `except`. `shared` CPUs are oversubscribed (as on the reference platform and in the control
    /// plane's placement), so only `performance` guests hold CPUs.
    pub(crate) fn allocated(&self, except: Option<&MachineId>) -> Result<(u32, u64), ApiError> {
        let mut cpus = 0u32;
        let mut memory = 0u64;
        for rec in self.inner.store.list()? {
            if rec.state != MachineState::Destroyed && Some(&rec.id) != except {
                if rec.config.guest.cpu_kind == CpuKind::Performance {
                    cpus = cpus.saturating_add(rec.config.guest.cpus);
                }
                memory = memory.saturating_add(u64::from(rec.config.guest.memory_mb));
            }
        }
        Ok((cpus, memory))
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

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
