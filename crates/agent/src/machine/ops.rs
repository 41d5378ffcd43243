//! The machine operations the API offers, as the state machine in ARCHITECTURE.md defines them.
//!
//! Each write runs as an operation task the agent owns ([`Agent::run_op`]), under the machine's
//! lock, after the lease check; it writes its intent (`starting`, `stopping`, ...) before acting
//! and the state it reached after. Reads and `wait` (in `reads`) never take the lock.
//!
//! No state of its own. Locks, in order: the machine's lock (held for the whole operation),
//! then the agent's `room` (while capacity is checked and allocated). Create takes `room`
//! alone, and the new machine's lock only once it is written. An update's new image stays
//! pinned (a prune keeps it) from its pull until the new version naming it is written.

use super::lease::validate_ttl;
use super::runs::{Ending, exit_events};
use super::slot::{Locked, event};
use super::{Caller, busy, destroyed, not_started};
use crate::agent::Agent;
use crate::store::Record;
use aloft_runtime::RuntimeError;
use aloft_types::api::{
    CreateMachineRequest, OkResponse, RestartQuery, SignalRequest, StartResponse, StopRequest,
    SuspendResponse, UpdateMachineRequest,
};
use aloft_types::config::{CpuKind, Guest};
use aloft_types::ids::random_hex;
use aloft_types::machine::{EventSource, EventType};
use aloft_types::signal::Signal;
use aloft_types::time::now_ms;
use aloft_types::{ApiError, InstanceId, Machine, MachineEvent, MachineId, MachineState};
use std::future::Future;
use std::time::Duration;

/// The org a machine belongs to when the request does not say (direct calls, tests).
const DEFAULT_ORG: &str = "personal";

impl Agent {
    /// Runs `op` as an operation task on the locked machine, after the lease check.
    pub(crate) async fn with_machine<T, F, Fut>(
        &self,
        app: &str,
        id: &str,
        caller: &Caller,
        op: F,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(Agent, Locked) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        let nonce = caller.nonce.clone();
        self.with_machine_unleased(app, id, move |agent, m| async move {
            agent.check_lease(&m.rec, nonce.as_deref())?;
            op(agent, m).await
        })
        .await
    }

    /// As [`Agent::with_machine`], without the lease check (the lease endpoints do their own).
    pub(crate) async fn with_machine_unleased<T, F, Fut>(
        &self,
        app: &str,
        id: &str,
        op: F,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(Agent, Locked) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        let agent = self.clone();
        let (app, id) = (app.to_string(), id.to_string());
        self.run_op(async move {
            let m = agent.lock(&app, &id).await?;
            op(agent, m).await
        })
        .await
    }

    /// 503 unless this host has room for `guest` (besides machine `except`, being replaced).
    fn check_room(&self, guest: &Guest, except: Option<&MachineId>) -> Result<(), ApiError> {
        let (cpus, memory) = self.allocated(except)?;
        let c = &self.config();
        let dedicated = if guest.cpu_kind == CpuKind::Performance {
            guest.cpus
        } else {
            0
        };
        if cpus.saturating_add(dedicated) > c.cpus
            || memory.saturating_add(u64::from(guest.memory_mb)) > c.memory_mb
        {
            return Err(ApiError::NoCapacity(format!(
                "host {} has no room for {} ({} cpus, {} MB); {cpus} of {} dedicated cpus and {memory} of {} MB are allocated; destroy machines you no longer need or choose a smaller guest",
                c.host_id,
                guest.size_name(),
                guest.cpus,
                guest.memory_mb,
                c.cpus,
                c.memory_mb,
            )));
        }
        Ok(())
    }

    fn check_region(&self, region: Option<&str>) -> Result<(), ApiError> {
        match region {
            Some(r) if r != self.config().region => Err(ApiError::invalid(
                "region",
                format!(
                    "region: this host serves region `{}`, not `{r}`; machines stay in the region they were created in",
                    self.config().region
                ),
            )),
            _ => Ok(()),
        }
    }

    /// `POST /v1/apps/{app}/machines`: checks `config.image` (422 when it is not a reference),
    /// writes the machine (`created`, launch pending), answers, and launches it in the background
    /// unless `skip_launch` (pulling its image with the caller's registry token).
    pub(crate) async fn create_machine(
        &self,
        app: &str,
        caller: &Caller,
        req: CreateMachineRequest,
    ) -> Result<Machine, ApiError> {
        req.config.validate()?;
        self.check_region(req.region.as_deref())?;
        let org = caller.org.clone().unwrap_or_else(|| DEFAULT_ORG.into());
        self.check_image(&req.config, &org)?;
        let name = match req.name {
            Some(name) => validate_name(name)?,
            None => generated_name(),
        };
        let ttl = req
            .lease_ttl
            .map(|t| validate_ttl("lease_ttl", t))
            .transpose()?;
        let network_id = caller.network_id()?;
        let owner = caller.owner();
        let creds = caller.registry.clone();
        let app = app.to_string();
        let agent = self.clone();
        self.run_op(async move {
            let room = agent.room().lock().await;
            agent.check_room(&req.config.guest, None)?;
            let mut id = MachineId::random();
            while agent.store().get(&id)?.is_some() {
                id = MachineId::random();
            }
            let now = now_ms();
            let host_number = agent.config().host_number;
            let region = agent.config().region.clone();
            let rec = agent.store().create_machine(
                |n| Record {
                    id,
                    app,
                    org,
                    network_id,
                    name,
                    region,
                    state: MachineState::Created,
                    target_state: None,
                    instance_id: InstanceId::new(),
                    private_ip: aloft_types::sixpn::machine_address(network_id, host_number, n)
                        .to_string(),
                    config: req.config,
                    cordoned: false,
                    launch_pending: !req.skip_launch,
                    restarts: 0,
                    created_at: now,
                    updated_at: now,
                    image_ref: None,
                },
                &[event(
                    EventType::Launch,
                    MachineState::Created,
                    EventSource::User,
                    None,
                )],
            )?;
            drop(room);
            // Held until the reply is built, so the launch cannot overtake it.
            let m = agent.lock_new(rec).await;
            let nonce = match ttl {
                Some(ttl) => Some(agent.take_lease(&m.rec, ttl, owner, None, None)?.nonce),
                None => None,
            };
            if m.rec.launch_pending {
                agent.spawn_launch(m.rec.id.clone(), creds);
            }
            agent.machine_json(&m.rec, nonce)
        })
        .await
    }

    /// `POST /v1/apps/{app}/machines/{id}`: a new version with the full new config. Its image is
    /// pulled first, with the caller's registry token: a pull that fails changes nothing. A
    /// started machine is restarted on it (or stopped, with `skip_launch`); any other keeps its
    /// state (a suspended one is stopped: its saved memory belongs to the old version).
    pub(crate) async fn update_machine(
        &self,
        app: &str,
        id: &str,
        caller: &Caller,
        req: UpdateMachineRequest,
    ) -> Result<Machine, ApiError> {
        req.config.validate()?;
        self.check_region(req.region.as_deref())?;
        let name = req.name.map(validate_name).transpose()?;
        let ttl = req
            .lease_ttl
            .map(|t| validate_ttl("lease_ttl", t))
            .transpose()?;
        let owner = caller.owner();
        let nonce = caller.nonce.clone();
        let creds = caller.registry.clone();
        self.with_machine(app, id, caller, move |agent, mut m| async move {
            if m.rec.state == MachineState::Destroyed {
                return Err(destroyed(&m.rec));
            }
            if !m.rec.state.is_persistent() {
                return Err(busy(&m.rec));
            }
            if let Some(want) = &req.current_version
                && want != m.rec.instance_id.as_str()
            {
                return Err(ApiError::Precondition(format!(
                    "machine {} is at version {}, not {want}; fetch the machine again and retry with its current instance_id",
                    m.rec.id, m.rec.instance_id
                )));
            }
            // The new image first: a pull that fails leaves the machine as it is. A prune keeps
            // it (pinned) until the new version naming it is written.
            let pulled = agent
                .pull_for_update(&m, &req.config, creds.as_ref())
                .await
                .map_err(|e| e.into_api_error(&m.rec))?;
            let (image_ref, in_use) = pulled.unzip();
            let was = m.rec.state;
            let (old_signal, old_timeout) = m.rec.config.stop_signal_and_timeout();
            let target = match was {
                MachineState::Started if req.skip_launch => MachineState::Stopped,
                MachineState::Suspended => MachineState::Stopped,
                other => other,
            };
            {
                let _room = agent.room().lock().await;
                agent.check_room(&req.config.guest, Some(&m.rec.id))?;
                m.rec.config = req.config;
                m.rec.instance_id = InstanceId::new();
                m.rec.image_ref = image_ref;
                if let Some(name) = name {
                    m.rec.name = name;
                }
                m.rec.target_state = Some(target);
                agent.save_version(&mut m, MachineState::Updating, Vec::new())?;
            }
            drop(in_use);
            if was == MachineState::Started {
                let exit = agent
                    .stop_run(&mut m, old_signal, old_timeout, EventType::Update)
                    .await?;
                if exit.is_some() {
                    let ending = Ending::by_user(target == MachineState::Started);
                    let events = exit_events(exit, ending, m.rec.restarts, None);
                    agent.save(&mut m, MachineState::Updating, events)?;
                }
            }
            m.rec.target_state = None;
            if target == MachineState::Started {
                m.rec.restarts = 0;
                agent
                    .start_run(&mut m, EventType::Update, EventSource::User, None, creds.as_ref())
                    .await?;
            } else {
                agent.save(
                    &mut m,
                    target,
                    vec![event(EventType::Update, target, EventSource::User, None)],
                )?;
            }
            let nonce = match ttl {
                Some(ttl) => Some(agent.take_lease(&m.rec, ttl, owner, None, nonce.as_deref())?.nonce),
                None => None,
            };
            agent.machine_json(&m.rec, nonce)
        })
        .await
    }

    /// `DELETE /v1/apps/{app}/machines/{id}`.
    pub(crate) async fn destroy_machine(
        &self,
        app: &str,
        id: &str,
        caller: &Caller,
        force: bool,
    ) -> Result<OkResponse, ApiError> {
        self.with_machine(app, id, caller, move |agent, mut m| async move {
            match m.rec.state {
                MachineState::Destroyed => return Ok(OkResponse::ok()),
                MachineState::Started if !force => {
                    return Err(ApiError::Precondition(format!(
                        "machine is started; stop it first (aloft machine stop {}) or pass force=true",
                        m.rec.id
                    )));
                }
                MachineState::Started => {
                    agent.save(&mut m, MachineState::Destroying, Vec::new())?;
                    let exit = agent
                        .stop_run(&mut m, Signal::KILL, Duration::ZERO, EventType::Destroy)
                        .await?;
                    if exit.is_some() {
                        let events =
                            exit_events(exit, Ending::by_user(false), m.rec.restarts, None);
                        agent.save(&mut m, MachineState::Destroying, events)?;
                    }
                }
                s if s.is_persistent() => {
                    m.rec.launch_pending = false;
                    agent.save(&mut m, MachineState::Destroying, Vec::new())?;
                }
                _ => return Err(busy(&m.rec)),
            }
            agent
                .finish_destroy(&mut m, EventSource::User, None)
                .await?;
            Ok(OkResponse::ok())
        })
        .await
    }

    /// `POST .../start`: idempotent on a started machine.
    pub(crate) async fn start_machine(
        &self,
        app: &str,
        id: &str,
        caller: &Caller,
    ) -> Result<StartResponse, ApiError> {
        let creds = caller.registry.clone();
        self.with_machine(app, id, caller, |agent, mut m| async move {
            let previous_state = m.rec.state;
            match previous_state {
                MachineState::Started => {}
                MachineState::Destroyed => return Err(destroyed(&m.rec)),
                MachineState::Created
                | MachineState::Stopped
                | MachineState::Suspended
                | MachineState::Failed => {
                    m.rec.restarts = 0;
                    m.rec.launch_pending = false;
                    agent.save(&mut m, MachineState::Starting, Vec::new())?;
                    agent
                        .start_run(
                            &mut m,
                            EventType::Start,
                            EventSource::User,
                            None,
                            creds.as_ref(),
                        )
                        .await?;
                }
                _ => return Err(busy(&m.rec)),
            }
            Ok(StartResponse { previous_state })
        })
        .await
    }

    /// The proxy's autostart: starts a stopped or suspended machine (refused while someone
    /// holds its lease).
    pub async fn autostart(&self, app: &str, id: &str) -> Result<(), ApiError> {
        self.start_machine(app, id, &proxy_caller()).await.map(drop)
    }

    /// The proxy's autostop: stops (or suspends) an idle machine with its `stop_config`.
    pub async fn autostop(&self, app: &str, id: &str, suspend: bool) -> Result<(), ApiError> {
        let caller = proxy_caller();
        if suspend {
            self.suspend_machine(app, id, &caller).await.map(drop)
        } else {
            self.stop_machine(app, id, &caller, StopRequest::default())
                .await
                .map(drop)
        }
    }

    /// `POST .../stop`: the request's signal and timeout, else the machine's `stop_config`, else
    /// SIGTERM and 5 s; then SIGKILL.
    pub(crate) async fn stop_machine(
        &self,
        app: &str,
        id: &str,
        caller: &Caller,
        req: StopRequest,
    ) -> Result<OkResponse, ApiError> {
        self.with_machine(app, id, caller, move |agent, mut m| async move {
            match m.rec.state {
                MachineState::Started => {
                    let (signal, timeout) = m.rec.config.stop_signal_and_timeout();
                    let signal = req.signal.unwrap_or(signal);
                    let timeout = req.timeout.as_ref().map_or(timeout, |t| t.get());
                    agent.save(&mut m, MachineState::Stopping, Vec::new())?;
                    let exit = agent
                        .stop_run(&mut m, signal, timeout, EventType::Stop)
                        .await?;
                    let mut events = match exit {
                        Some(_) => exit_events(exit, Ending::by_user(false), m.rec.restarts, None),
                        None => Vec::new(),
                    };
                    events.push(stopped_event(None));
                    agent.save(&mut m, MachineState::Stopped, events)?;
                    Ok(OkResponse::ok())
                }
                MachineState::Suspended => {
                    agent.save(
                        &mut m,
                        MachineState::Stopped,
                        vec![stopped_event(Some("discarded the suspended state".into()))],
                    )?;
                    Ok(OkResponse::ok())
                }
                MachineState::Created if m.rec.launch_pending => {
                    m.rec.launch_pending = false;
                    agent.save(&mut m, MachineState::Created, Vec::new())?;
                    Ok(OkResponse {
                        ok: true,
                        note: Some(format!(
                            "machine {} had not launched yet; it stays created",
                            m.rec.id
                        )),
                    })
                }
                MachineState::Created | MachineState::Stopped | MachineState::Failed => {
                    Ok(OkResponse {
                        ok: true,
                        note: Some(format!("machine {} is already {}", m.rec.id, m.rec.state)),
                    })
                }
                MachineState::Destroyed => Err(destroyed(&m.rec)),
                _ => Err(busy(&m.rec)),
            }
        })
        .await
    }

    /// `POST .../restart`: stop (the query's signal and timeout, else the machine's), then start.
    pub(crate) async fn restart_machine(
        &self,
        app: &str,
        id: &str,
        caller: &Caller,
        query: RestartQuery,
    ) -> Result<OkResponse, ApiError> {
        // Empty values are the defaults, as a client leaving them blank means.
        let signal = query
            .signal
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                Signal::parse(s).map_err(|e| ApiError::invalid("signal", format!("signal: {e}")))
            })
            .transpose()?;
        let timeout = query
            .timeout
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .map(|t| {
                aloft_types::time::parse_duration(t)
                    .map_err(|e| ApiError::invalid("timeout", format!("timeout: {e}")))
            })
            .transpose()?;
        let force = query.force_stop.unwrap_or(false);
        let creds = caller.registry.clone();
        self.with_machine(app, id, caller, move |agent, mut m| async move {
            if m.rec.state != MachineState::Started {
                return Err(match m.rec.state {
                    MachineState::Destroyed => destroyed(&m.rec),
                    state => ApiError::Precondition(format!(
                        "machine {id} is {state}; only a started machine restarts, start it instead (aloft machine start {id})",
                        id = m.rec.id
                    )),
                });
            }
            let (default_signal, default_timeout) = m.rec.config.stop_signal_and_timeout();
            let (signal, timeout) = if force {
                (Signal::KILL, Duration::ZERO)
            } else {
                (
                    signal.unwrap_or(default_signal),
                    timeout.unwrap_or(default_timeout),
                )
            };
            agent.save(&mut m, MachineState::Restarting, Vec::new())?;
            let exit = agent
                .stop_run(&mut m, signal, timeout, EventType::Restart)
                .await?;
            if exit.is_some() {
                let events = exit_events(exit, Ending::by_user(true), m.rec.restarts, None);
                agent.save(&mut m, MachineState::Restarting, events)?;
            }
            m.rec.restarts = 0;
            agent
                .start_run(
                    &mut m,
                    EventType::Restart,
                    EventSource::User,
                    None,
                    creds.as_ref(),
                )
                .await?;
            Ok(OkResponse::ok())
        })
        .await
    }

    /// `POST .../signal`. A signal that ends the process counts as the process exiting by
    /// itself: the restart policy applies.
    pub(crate) async fn signal_machine(
        &self,
        app: &str,
        id: &str,
        caller: &Caller,
        req: SignalRequest,
    ) -> Result<OkResponse, ApiError> {
        self.with_machine(app, id, caller, move |agent, m| async move {
            if m.rec.state != MachineState::Started {
                return Err(not_started(&m.rec));
            }
            match agent.runtime()?.signal(&m.rec.id, req.signal).await {
                Ok(()) => Ok(OkResponse::ok()),
                Err(RuntimeError::NotRunning(_) | RuntimeError::NotFound(_)) => {
                    Err(ApiError::Precondition(format!(
                        "machine {} has no running process to signal; it is being handled as an exit",
                        m.rec.id
                    )))
                }
                Err(e) => Err(ApiError::Internal(format!(
                    "machine {}: sending {} failed: {e}",
                    m.rec.id, req.signal
                ))),
            }
        })
        .await
    }

    /// `POST .../suspend`: on a backend that cannot suspend, stops the machine and says so.
    pub(crate) async fn suspend_machine(
        &self,
        app: &str,
        id: &str,
        caller: &Caller,
    ) -> Result<SuspendResponse, ApiError> {
        self.with_machine(app, id, caller, |agent, mut m| async move {
            match m.rec.state {
                MachineState::Started => {}
                MachineState::Suspended => {
                    return Ok(SuspendResponse {
                        ok: true,
                        suspended: true,
                        note: None,
                    });
                }
                _ => return Err(not_started(&m.rec)),
            }
            agent.save(&mut m, MachineState::Suspending, Vec::new())?;
            let runtime = agent.runtime()?;
            if runtime.capabilities().suspend {
                m.slot.next_run();
                match runtime.suspend(&m.rec.id).await {
                    Ok(()) => {
                        agent.save(
                            &mut m,
                            MachineState::Suspended,
                            vec![event(
                                EventType::Suspend,
                                MachineState::Suspended,
                                EventSource::User,
                                None,
                            )],
                        )?;
                        return Ok(SuspendResponse {
                            ok: true,
                            suspended: true,
                            note: None,
                        });
                    }
                    Err(RuntimeError::Unsupported(_)) => {}
                    Err(e) => return Err(agent.recover(&mut m, EventType::Suspend, e).await),
                }
            }
            let note = format!(
                "the {} runtime cannot suspend machines; machine {} was stopped instead and boots afresh on its next start",
                runtime.name(),
                m.rec.id
            );
            let (signal, timeout) = m.rec.config.stop_signal_and_timeout();
            let exit = agent
                .stop_run(&mut m, signal, timeout, EventType::Suspend)
                .await?;
            let mut events = match exit {
                Some(_) => exit_events(exit, Ending::by_user(false), m.rec.restarts, None),
                None => Vec::new(),
            };
            events.push(event(
                EventType::Suspend,
                MachineState::Stopped,
                EventSource::User,
                Some(note.clone()),
            ));
            agent.save(&mut m, MachineState::Stopped, events)?;
            Ok(SuspendResponse {
                ok: true,
                suspended: false,
                note: Some(note),
            })
        })
        .await
    }

    /// `POST .../cordon` and `.../uncordon`.
    pub(crate) async fn set_cordoned(
        &self,
        app: &str,
        id: &str,
        caller: &Caller,
        cordoned: bool,
    ) -> Result<OkResponse, ApiError> {
        self.with_machine(app, id, caller, move |agent, mut m| async move {
            if m.rec.state == MachineState::Destroyed {
                return Err(destroyed(&m.rec));
            }
            m.rec.cordoned = cordoned;
            let state = m.rec.state;
            agent.save(&mut m, state, Vec::new())?;
            Ok(OkResponse::ok())
        })
        .await
    }

    /// `POST .../metadata/{key}` (`Some`) and `DELETE .../metadata/{key}` (`None`). Metadata is
    /// not a new version: the current version's config changes in place. A lease does not hold
    /// it back (the reference's clients send no nonce for it).
    pub(crate) async fn write_metadata(
        &self,
        app: &str,
        id: &str,
        key: String,
        value: Option<String>,
    ) -> Result<(), ApiError> {
        validate_metadata_key(&key)?;
        self.with_machine_unleased(app, id, move |agent, mut m| async move {
            if m.rec.state == MachineState::Destroyed {
                return Err(destroyed(&m.rec));
            }
            match value {
                Some(v) => m.rec.config.metadata.insert(key, v),
                None => m.rec.config.metadata.remove(&key),
            };
            let state = m.rec.state;
            agent.save_version(&mut m, state, Vec::new())
        })
        .await
    }
}

/// The proxy, as a caller of machine operations: no lease, no registry credentials (the
/// machine's image is on the host already).
fn proxy_caller() -> Caller {
    Caller {
        actor: Some("proxy".into()),
        ..Caller::default()
    }
}

fn stopped_event(message: Option<String>) -> MachineEvent {
    event(
        EventType::Stop,
        MachineState::Stopped,
        EventSource::User,
        message,
    )
}

/// A machine name: 1 to 63 letters, digits, `-`, `_` or `.`.
fn validate_name(name: String) -> Result<String, ApiError> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(name)
    } else {
        Err(ApiError::invalid(
            "name",
            format!(
                "name: `{name}` is not a machine name; use 1 to 63 letters, digits, `-`, `_` or `.`"
            ),
        ))
    }
}

/// A metadata key: 1 to 128 letters, digits, `-`, `_`, `.` or `/`.
fn validate_metadata_key(key: &str) -> Result<(), ApiError> {
    let ok = (1..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "key",
            format!(
                "key: `{key}` is not a metadata key; use 1 to 128 letters, digits, `-`, `_`, `.` or `/`"
            ),
        ))
    }
}

/// A readable name for a machine created without one, like `quiet-river-4821`.
fn generated_name() -> String {
    const ADJECTIVES: [&str; 16] = [
        "bold", "brave", "calm", "crisp", "eager", "fancy", "gentle", "happy", "lively", "lucky",
        "misty", "proud", "quiet", "shy", "swift", "wild",
    ];
    const NOUNS: [&str; 16] = [
        "brook", "cloud", "dawn", "dune", "field", "fog", "frost", "grove", "lake", "meadow",
        "moon", "pine", "river", "shadow", "star", "wave",
    ];
    let r = u32::from_str_radix(&random_hex(4), 16).unwrap_or_default();
    format!(
        "{}-{}-{}",
        ADJECTIVES[(r & 0xf) as usize],
        NOUNS[((r >> 4) & 0xf) as usize],
        1000 + (r >> 8) % 9000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for _ in 0..20 {
            let n = generated_name();
            assert!(validate_name(n.clone()).is_ok(), "{n}");
        }
        assert!(validate_name("has space".into()).is_err());
        assert!(validate_name(String::new()).is_err());
        assert!(validate_metadata_key("role").is_ok());
        assert!(validate_metadata_key("a=b").is_err());
    }
}
