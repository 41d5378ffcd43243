//! Runs of a machine: starting and stopping them through the runtime, the supervisor task that
//! waits for each run to end, and what happens when a process exits by itself (the restart
//! policy and `auto_destroy`).
//!
//! Each helper expects its caller to hold the machine's lock and to have written the intent
//! (`starting`, `stopping`, ...) first; each writes the state it reached.
//!
//! State: each slot's run generation (moved on by every start and requested stop, so a
//! supervisor tells its own run's crash from an exit someone asked for) and one watcher task per
//! run, owned by the agent. Locks: the machine's lock, taken by the exit handling a supervisor
//! spawns.

use super::slot::{Locked, event, kind_name};
use crate::agent::Agent;
use crate::store::Record;
use crate::tasks::TaskKind;
use aloft_image::Credentials;
use aloft_runtime::{ExitStatus, MachineSpec, PreparedImage, RuntimeError};
use aloft_types::config::RestartPolicy;
use aloft_types::machine::{EventRequest, EventSource, EventType, ExitEvent};
use aloft_types::signal::Signal;
use aloft_types::time::{now_ms, rfc3339};
use aloft_types::{ApiError, MachineEvent, MachineId, MachineState};
use std::time::Duration;

/// The longest a stop waits for the proxy's requests in flight before signalling the machine.
const MAX_DRAIN: Duration = Duration::from_secs(5);

/// The longest pause before the restart policy starts a machine again.
const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(1);

/// What the runtime needs to run the record's current version.
pub(crate) fn spec_of(
    rec: &Record,
    image: Option<PreparedImage>,
    internal_dns: Option<String>,
) -> MachineSpec {
    MachineSpec {
        id: rec.id.clone(),
        app: rec.app.clone(),
        org: rec.org.clone(),
        region: rec.region.clone(),
        private_ip: rec.private_ip.clone(),
        instance_id: rec.instance_id.to_string(),
        config: rec.config.clone(),
        image,
        internal_dns,
        volumes: Vec::new(),
    }
}

/// Why a run ended and what comes after: the parts of its exit event that are not its status.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ending {
    /// A user stopped it (stop, restart, update, suspend, destroy), or the agent did.
    pub(crate) requested_stop: bool,
    /// The machine is started again right after (restart, update of a started machine, the
    /// restart policy).
    pub(crate) restarting: bool,
    pub(crate) source: EventSource,
}

impl Ending {
    /// A user's request stopped the run; `restarting` when the machine starts again after it.
    pub(crate) fn by_user(restarting: bool) -> Self {
        Self {
            requested_stop: true,
            restarting,
            source: EventSource::User,
        }
    }
}

/// The `exit` event for a run that ended (`None`: how it ended is not known).
pub(crate) fn exit_events(
    status: Option<ExitStatus>,
    ending: Ending,
    restarts: u32,
    message: Option<String>,
) -> Vec<MachineEvent> {
    // aloft's runtimes report the main process itself: the guest's code and signal are the
    // exit's (the reference tells a VM's exit from its process's).
    let (exit_code, signal, oom_killed) = match status {
        Some(st) => (st.exit_code, st.signal.unwrap_or(-1), st.oom_killed),
        None => (-1, -1, false),
    };
    let exit = ExitEvent {
        exit_code,
        guest_exit_code: exit_code,
        guest_signal: signal,
        oom_killed,
        requested_stop: ending.requested_stop,
        restarting: ending.restarting,
        signal,
        exited_at: rfc3339(now_ms()),
        restarts,
    };
    let mut e = event(EventType::Exit, MachineState::Stopped, ending.source, None);
    e.request = Some(EventRequest {
        exit_event: Some(exit),
        restart_count: Some(restarts),
        message,
    });
    vec![e]
}

fn policy_name(p: RestartPolicy) -> &'static str {
    match p {
        RestartPolicy::No => "no",
        RestartPolicy::Always => "always",
        RestartPolicy::OnFailure => "on-failure",
    }
}

/// The pause before the restart policy's restart number `attempt + 1`: none for the first, then
/// growing, so a process that dies at once does not spin the host.
fn restart_backoff(attempt: u32) -> Duration {
    (Duration::from_millis(50) * attempt).min(MAX_RESTART_BACKOFF)
}

impl Agent {
    /// Runs the machine's current version: makes its image ready (pulling it with `creds`, the
    /// registry credentials of the request that starts it, if any), then starts it. Ends
    /// `started` (supervised) or `failed`, recording an event of `kind`. A failed start is also
    /// returned as an error.
    pub(crate) async fn start_run(
        &self,
        m: &mut Locked,
        kind: EventType,
        source: EventSource,
        message: Option<String>,
        creds: Option<&Credentials>,
    ) -> Result<(), ApiError> {
        let runtime = self.runtime()?;
        let image = match self.prepare_image(m, creds).await {
            Ok(image) => image,
            Err(failure) => {
                let why = failure.message(&m.rec);
                return Err(self.start_failed(m, kind, source, why));
            }
        };
        let mut spec = spec_of(&m.rec, image, self.internal_dns());
        // Secrets go into this run's environment only, never the record (the API never shows
        // them). Their names never start with FLY_ or ALOFT_: the platform's variables stay.
        let (secrets, secrets_note) = self.secrets().app_secrets(&m.rec.app).await;
        for (name, value) in secrets {
            if let Some(image) = spec.image.as_mut() {
                image.process.env.insert(name.clone(), value.clone());
            }
            spec.config.env.insert(name, value);
        }
        let message = match (message, secrets_note) {
            (Some(m), Some(n)) => Some(format!("{m}; {n}")),
            (m, n) => m.or(n),
        };
        match self.attach_volumes(&m.rec).await {
            Ok(volumes) => spec.volumes = volumes,
            Err(why) => return Err(self.start_failed(m, kind, source, why)),
        }
        let mut started = match runtime.create(&spec).await {
            Ok(()) => runtime.start(&spec).await,
            Err(e) => Err(e),
        };
        let id = m.rec.id.clone();
        if started.is_err() {
            // A start that raced this one (a crashed agent's, finishing after the crash) may
            // already run this very version: adopt it rather than fail the machine.
            if let Ok(Some(running)) = runtime.reattach(&id).await
                && running.instance_id == spec.instance_id
            {
                started = Ok(running);
            }
        }
        match started {
            Ok(_) => {
                let run = m.slot.next_run();
                self.save(
                    m,
                    MachineState::Started,
                    vec![event(kind, MachineState::Started, source, message)],
                )?;
                self.supervise(id, run);
                Ok(())
            }
            Err(e) => {
                let why = format!(
                    "{e}; fix the machine's config (aloft machine update {id}) and start it again"
                );
                Err(self.start_failed(m, kind, source, why))
            }
        }
    }

    /// A start that cannot go on: the machine is `failed`, with an event of `kind` saying why;
    /// the error to answer.
    fn start_failed(
        &self,
        m: &mut Locked,
        kind: EventType,
        source: EventSource,
        why: String,
    ) -> ApiError {
        let id = m.rec.id.clone();
        let event = event(kind, MachineState::Failed, source, Some(why.clone()));
        if let Err(e) = self.save(m, MachineState::Failed, vec![event]) {
            return e;
        }
        ApiError::Internal(format!(
            "machine {id} could not start and is now failed: {why}"
        ))
    }

    /// Ends the current run on purpose (`signal`, then SIGKILL after `timeout`) and says how it
    /// ended; `None` when nothing was running. On a runtime failure the machine is put in the
    /// state that matches what runs, with an event of `kind`, and the error is returned.
    pub(crate) async fn stop_run(
        &self,
        m: &mut Locked,
        signal: Signal,
        timeout: Duration,
        kind: EventType,
    ) -> Result<Option<ExitStatus>, ApiError> {
        // The run's supervisor must not take this exit for a crash.
        m.slot.next_run();
        let runtime = self.runtime()?;
        if !timeout.is_zero() {
            // Long-lived connections (WebSockets, raw TCP) end with the signal, not before it:
            // they are given a short while only.
            self.drain(&m.rec.id, timeout.min(MAX_DRAIN)).await;
        }
        match runtime.stop(&m.rec.id, signal, timeout).await {
            Ok(status) => Ok(Some(status)),
            Err(RuntimeError::NotRunning(_) | RuntimeError::NotFound(_)) => Ok(None),
            Err(e) => Err(self.recover(m, kind, e).await),
        }
    }

    /// Waits (at most `within`) for the proxy's requests in flight on the machine to finish, so
    /// that a stop lets them end before the signal. The machine's state says it is stopping
    /// already, so the proxy sends it nothing new.
    async fn drain(&self, id: &MachineId, within: Duration) {
        let Some(load) = self.in_flight() else {
            return;
        };
        let deadline = tokio::time::Instant::now() + within;
        let mut waited = false;
        while load.current(id.as_str()) > 0 {
            if tokio::time::Instant::now() >= deadline {
                tracing::info!(machine = %id, "stopping with requests still in flight after {within:?}");
                return;
            }
            waited = true;
            tokio::select! {
                () = load.freed() => {}
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
        if waited {
            tracing::debug!(machine = %id, "requests in flight finished; stopping");
        }
    }

    /// After the runtime failed in the middle of an operation: settles the machine in
    /// `started` (still running, supervised again) or `stopped`, records the failure, and
    /// returns the error for the caller.
    pub(crate) async fn recover(
        &self,
        m: &mut Locked,
        kind: EventType,
        err: RuntimeError,
    ) -> ApiError {
        let id = m.rec.id.clone();
        let running = matches!(self.any_runtime().reattach(&id).await, Ok(Some(_)));
        let state = if running {
            MachineState::Started
        } else {
            MachineState::Stopped
        };
        let message = format!("{} failed: {err}", kind_name(kind));
        if let Err(e) = self.save(
            m,
            state,
            vec![event(kind, state, EventSource::Agent, Some(message))],
        ) {
            return e;
        }
        if running {
            let run = m.slot.next_run();
            self.supervise(id.clone(), run);
        }
        ApiError::Internal(format!(
            "machine {id}: the runtime failed ({err}); the machine is {state} now, retry the operation"
        ))
    }

    /// Releases what the runtime holds for the machine (nothing runs) and marks it destroyed.
    pub(crate) async fn finish_destroy(
        &self,
        m: &mut Locked,
        source: EventSource,
        message: Option<String>,
    ) -> Result<(), ApiError> {
        let runtime = self.runtime()?;
        match runtime.destroy(&m.rec.id).await {
            Ok(()) | Err(RuntimeError::NotFound(_)) => {}
            Err(e) => {
                let why = format!("destroy failed: {e}");
                self.save(
                    m,
                    MachineState::Stopped,
                    vec![event(
                        EventType::Destroy,
                        MachineState::Stopped,
                        source,
                        Some(why.clone()),
                    )],
                )?;
                return Err(ApiError::Internal(format!(
                    "machine {}: {why}; it is stopped, retry the destroy",
                    m.rec.id
                )));
            }
        }
        m.rec.launch_pending = false;
        self.save(
            m,
            MachineState::Destroyed,
            vec![event(
                EventType::Destroy,
                MachineState::Destroyed,
                source,
                message,
            )],
        )?;
        self.store().delete_lease(&m.rec.id)?;
        Ok(())
    }

    /// Watches run `run` of machine `id`: when it ends, an operation handles the exit.
    pub(crate) fn supervise(&self, id: MachineId, run: u64) {
        let agent = self.clone();
        let spawned = self.tasks().spawn(TaskKind::Watcher, async move {
            let status = agent.any_runtime().wait(&id).await;
            let handler = agent.clone();
            agent.spawn_op("handling an exit", async move {
                handler.run_ended(id, run, status).await
            });
        });
        if spawned.is_err() {
            tracing::debug!("not supervising: the agent is stopping; the next start reattaches");
        }
    }

    /// Run `run` of machine `id` ended with `status`. Unless someone ended it on purpose (the
    /// run generation moved on), this is the process exiting by itself.
    async fn run_ended(
        &self,
        id: MachineId,
        run: u64,
        status: Result<ExitStatus, RuntimeError>,
    ) -> Result<(), ApiError> {
        let Some(mut m) = self.lock_id(&id).await? else {
            return Ok(());
        };
        if m.slot.current_run() != run || m.rec.state != MachineState::Started {
            return Ok(());
        }
        let status = match status {
            Ok(st) => Some(st),
            Err(e) => {
                if let Ok(Some(_)) = self.any_runtime().reattach(&id).await {
                    // It still runs; the runtime only failed to wait. Watch it again, gently.
                    tracing::warn!(machine = %id, "cannot wait for the machine's process ({e}); retrying");
                    drop(m);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    self.supervise(id, run);
                    return Ok(());
                }
                None
            }
        };
        // Why the process could not start, when the guest's init said (e.g. a missing
        // entrypoint): the exit event carries it.
        let message = self.any_runtime().exit_message(&id).await;
        self.process_exited(&mut m, status, message).await
    }

    /// The machine's process ended by itself (`status` `None`: how is not known). Records the
    /// exit, then applies the restart policy and `auto_destroy`.
    pub(crate) async fn process_exited(
        &self,
        m: &mut Locked,
        status: Option<ExitStatus>,
        message: Option<String>,
    ) -> Result<(), ApiError> {
        let failure = status.is_none_or(|s| s.is_failure());
        let (policy, max_retries) = m.rec.config.restart_policy();
        let restart = match policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => failure && m.rec.restarts < max_retries,
            RestartPolicy::No => false,
        };
        let attempt = m.rec.restarts;
        let ending = Ending {
            requested_stop: false,
            restarting: restart,
            source: EventSource::Agent,
        };
        let exit = exit_events(status, ending, attempt, message);
        if restart {
            m.rec.restarts += 1;
            // The exit and the decision to restart are written together, so a crash here still
            // restarts the machine on the next start.
            self.save(m, MachineState::Starting, exit)?;
            tokio::time::sleep(restart_backoff(attempt)).await;
            let of = match policy {
                RestartPolicy::OnFailure => format!(" of {max_retries}"),
                _ => String::new(),
            };
            let why = format!(
                "restarted by the restart policy ({}, restart {}{of})",
                policy_name(policy),
                m.rec.restarts
            );
            return self
                .start_run(m, EventType::Start, EventSource::Agent, Some(why), None)
                .await;
        }
        if m.rec.config.auto_destroy {
            self.save(m, MachineState::Destroying, exit)?;
            return self
                .finish_destroy(
                    m,
                    EventSource::Agent,
                    Some("auto_destroy: the machine exited and was not restarted".into()),
                )
                .await;
        }
        self.save(m, MachineState::Stopped, exit)
    }

    /// Creates the background launch of a machine created without `skip_launch`, with the
    /// registry credentials of the create request (held in memory by the task only).
    pub(crate) fn spawn_launch(&self, id: MachineId, creds: Option<Credentials>) {
        let agent = self.clone();
        self.spawn_op("launching a machine", async move {
            agent.launch(&id, creds.as_ref()).await
        });
    }

    /// Launches a created machine, unless something else happened to it first: pulls its image
    /// (state `starting`; a crash meanwhile is finished by reconcile, from the host's cache)
    /// and starts it.
    pub(crate) async fn launch(
        &self,
        id: &MachineId,
        creds: Option<&Credentials>,
    ) -> Result<(), ApiError> {
        let Some(mut m) = self.lock_id(id).await? else {
            return Ok(());
        };
        if m.rec.state != MachineState::Created || !m.rec.launch_pending {
            return Ok(());
        }
        m.rec.launch_pending = false;
        self.save(&mut m, MachineState::Starting, Vec::new())?;
        self.start_run(&mut m, EventType::Start, EventSource::User, None, creds)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(restart_backoff(0), Duration::ZERO);
        assert_eq!(restart_backoff(2), Duration::from_millis(100));
        assert_eq!(restart_backoff(500), MAX_RESTART_BACKOFF);
    }
}
