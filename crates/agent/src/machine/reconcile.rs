//! Start-up reconciliation: the store says what each machine should be doing, the runtime says
//! what runs (`Runtime::reattach`). Running machines are adopted (never started twice); a
//! machine left in a transient state by a crash is driven to where its operation was going; a
//! `started` machine whose process is gone is treated as an exit while the agent was away.
//!
//! No state of its own: it runs once per [`Agent::open`](crate::Agent), one operation task per
//! machine, each under that machine's lock.

use super::runs::{Ending, exit_events};
use super::slot::{Locked, event};
use crate::agent::Agent;
use crate::store::Record;
use crate::tasks::TaskKind;
use aloft_runtime::Running;
use aloft_types::machine::{EventSource, EventType};
use aloft_types::{ApiError, MachineId, MachineState};

const AWAY: &str = "the process ended while the agent was not running; its exit status is unknown";

impl Agent {
    /// Reconciles every machine that is not destroyed, concurrently, and waits for all of them.
    /// A machine that cannot be reconciled is logged and left as the store has it.
    pub(crate) async fn reconcile(
        &self,
        records: Vec<Record>,
    ) -> Result<(), crate::error::AgentError> {
        let mut handles = Vec::new();
        for rec in records {
            if rec.state == MachineState::Destroyed {
                continue;
            }
            let agent = self.clone();
            let handle = self
                .tasks()
                .spawn(TaskKind::Operation, async move {
                    let result = agent.reconcile_machine(&rec.id).await;
                    (rec.id, result)
                })
                .map_err(|_| crate::error::AgentError::Closed)?;
            handles.push(handle);
        }
        for handle in handles {
            match handle.await {
                Ok((_, Ok(()))) => {}
                Ok((id, Err(e))) => {
                    tracing::warn!(machine = %id, "could not reconcile the machine: {e}");
                }
                Err(e) => tracing::warn!("reconciling a machine stopped: {e}"),
            }
        }
        Ok(())
    }

    async fn reconcile_machine(&self, id: &MachineId) -> Result<(), ApiError> {
        let Some(mut m) = self.lock_id(id).await? else {
            return Ok(());
        };
        let running = match self.runtime()?.reattach(id).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(machine = %id, "the runtime cannot say whether the machine runs ({e}); assuming it does not");
                None
            }
        };
        use MachineState::*;
        match m.rec.state {
            Started => match running {
                Some(_) => self.adopt(&mut m, None),
                None => self.process_exited(&mut m, None, Some(AWAY.into())).await,
            },
            Starting => {
                self.drive_to_started(&mut m, running, EventType::Start)
                    .await
            }
            Restarting => {
                self.drive_to_started(&mut m, running, EventType::Restart)
                    .await
            }
            Updating => {
                let target = m.rec.target_state.unwrap_or(Stopped);
                if target == Started {
                    self.drive_to_started(&mut m, running, EventType::Update)
                        .await
                } else {
                    let mut events = self
                        .ensure_stopped(&mut m, running, EventType::Update, false)
                        .await?;
                    events.push(event(
                        EventType::Update,
                        target,
                        EventSource::Agent,
                        Some("finished an update interrupted by an agent restart".into()),
                    ));
                    m.rec.target_state = None;
                    self.save(&mut m, target, events)
                }
            }
            Stopping | Suspending => {
                let kind = if m.rec.state == Stopping {
                    EventType::Stop
                } else {
                    EventType::Suspend
                };
                let mut events = self.ensure_stopped(&mut m, running, kind, false).await?;
                events.push(event(
                    kind,
                    Stopped,
                    EventSource::Agent,
                    Some("finished a stop interrupted by an agent restart".into()),
                ));
                self.save(&mut m, Stopped, events)
            }
            Destroying => {
                let events = self
                    .ensure_stopped(&mut m, running, EventType::Destroy, false)
                    .await?;
                self.save(&mut m, Destroying, events)?;
                self.finish_destroy(
                    &mut m,
                    EventSource::Agent,
                    Some("finished a destroy interrupted by an agent restart".into()),
                )
                .await
            }
            Created if m.rec.launch_pending => {
                m.rec.launch_pending = false;
                self.save(&mut m, Starting, Vec::new())?;
                self.drive_to_started(&mut m, running, EventType::Start)
                    .await
            }
            Created | Stopped | Suspended | Failed => {
                if running.is_none() {
                    return Ok(());
                }
                // The store says it does not run, yet it does: the store wins.
                let state = m.rec.state;
                let mut events = self
                    .ensure_stopped(&mut m, running, EventType::Stop, false)
                    .await?;
                events.push(event(
                    EventType::Stop,
                    state,
                    EventSource::Agent,
                    Some(format!("stopped a run of a machine that should be {state}")),
                ));
                self.save(&mut m, state, events)
            }
            Creating | Replacing | Replaced | LaunchFailed | Destroyed => {
                tracing::warn!(machine = %id, state = %m.rec.state, "this agent does not use that state; leaving the machine as it is");
                Ok(())
            }
        }
    }

    /// Adopts the machine's live run: `started`, supervised, no second start.
    fn adopt(&self, m: &mut Locked, note: Option<(EventType, &str)>) -> Result<(), ApiError> {
        let run = m.slot.next_run();
        let events = note
            .map(|(kind, msg)| {
                event(
                    kind,
                    MachineState::Started,
                    EventSource::Agent,
                    Some(msg.to_string()),
                )
            })
            .into_iter()
            .collect::<Vec<_>>();
        if m.rec.state != MachineState::Started || !events.is_empty() {
            self.save(m, MachineState::Started, events)?;
        }
        self.supervise(m.rec.id.clone(), run);
        Ok(())
    }

    /// Finishes an operation that was going to `started`: adopts the current version if it runs,
    /// replaces an older version that runs, starts it otherwise.
    async fn drive_to_started(
        &self,
        m: &mut Locked,
        running: Option<Running>,
        kind: EventType,
    ) -> Result<(), ApiError> {
        m.rec.target_state = None;
        if let Some(r) = &running
            && r.instance_id == m.rec.instance_id.as_str()
        {
            return self.adopt(
                m,
                Some((kind, "adopted the run started before the agent restarted")),
            );
        }
        let events = self.ensure_stopped(m, running, kind, true).await?;
        if !events.is_empty() {
            let state = m.rec.state;
            self.save(m, state, events)?;
        }
        self.start_run(
            m,
            kind,
            EventSource::Agent,
            Some("finished an operation interrupted by an agent restart".into()),
            None,
        )
        .await
    }

    /// Stops the run if there is one; returns the exit event to record (`restarting`: the
    /// machine is started again next).
    async fn ensure_stopped(
        &self,
        m: &mut Locked,
        running: Option<Running>,
        kind: EventType,
        restarting: bool,
    ) -> Result<Vec<aloft_types::MachineEvent>, ApiError> {
        if running.is_none() {
            return Ok(Vec::new());
        }
        let (signal, timeout) = m.rec.config.stop_signal_and_timeout();
        let status = self.stop_run(m, signal, timeout, kind).await?;
        Ok(match status {
            Some(st) => {
                let ending = Ending {
                    requested_stop: true,
                    restarting,
                    source: EventSource::Agent,
                };
                exit_events(Some(st), ending, m.rec.restarts, None)
            }
            None => Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::machine::Caller;
    use crate::store::{Record, Store};
    use crate::{Agent, AgentConfig};
    use aloft_runtime::sim::SimRuntime;
    use aloft_types::api::{CreateMachineRequest, WaitQuery};
    use aloft_types::machine::{EventSource, EventType};
    use aloft_types::{InstanceId, MachineConfig, MachineId, MachineState};
    use std::sync::Arc;

    fn config(dir: &std::path::Path) -> AgentConfig {
        AgentConfig {
            data_dir: dir.to_path_buf(),
            host_id: "h".into(),
            host_number: 1,
            region: "local".into(),
            cpus: 8,
            memory_mb: 8192,
            agent_token: "t".into(),
            peer_token: "p".into(),
            images: None,
            registry: String::new(),
        }
    }

    /// A machine made by one agent (started unless `skip_launch`), which then shuts down.
    async fn machine(skip_launch: bool) -> (tempfile::TempDir, SimRuntime, MachineId) {
        let dir = tempfile::tempdir().unwrap();
        let rt = SimRuntime::new();
        let agent = Agent::open(config(dir.path()), Arc::new(rt.clone()), Default::default())
            .await
            .unwrap();
        let mut cfg = MachineConfig::for_image("img");
        cfg.stop_config = Some(aloft_types::config::StopConfig {
            extra: Default::default(),
            timeout: Some(aloft_types::config::DurationStr("1s".into())),
            signal: None,
        });
        let req = CreateMachineRequest {
            config: cfg,
            name: None,
            region: None,
            skip_launch,
            lease_ttl: None,
            skip_service_registration: false,
        };
        let m = agent
            .create_machine("app", &Caller::default(), req)
            .await
            .unwrap();
        if !skip_launch {
            let q = WaitQuery {
                state: Some("started".into()),
                timeout: Some("5".into()),
                ..WaitQuery::default()
            };
            agent.wait_machine("app", m.id.as_str(), q).await.unwrap();
        }
        agent.shutdown().await;
        (dir, rt, m.id)
    }

    /// Rewrites the stored machine, as if an operation had written its intent and the agent
    /// had then died.
    fn rewrite(dir: &std::path::Path, id: &MachineId, f: impl FnOnce(&mut Record)) {
        let store = Store::open(dir).unwrap();
        let mut rec = store.get(id).unwrap().unwrap();
        f(&mut rec);
        store.save(&rec, &[], true).unwrap();
    }

    async fn reopen(dir: &std::path::Path, rt: &SimRuntime) -> (Agent, Record) {
        let agent = Agent::open(config(dir), Arc::new(rt.clone()), Default::default())
            .await
            .unwrap();
        let rec = agent.store().get(&agent_ids(&agent)[0]).unwrap().unwrap();
        (agent, rec)
    }

    fn agent_ids(agent: &Agent) -> Vec<MachineId> {
        agent
            .store()
            .list()
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    }

    fn last_event(agent: &Agent, rec: &Record) -> (EventType, String, EventSource) {
        let e = agent.store().events(&rec.id, Some(1)).unwrap().remove(0);
        (e.kind, e.status, e.source)
    }

    #[tokio::test]
    async fn a_pending_launch_is_launched() {
        let (dir, rt, id) = machine(true).await;
        rewrite(dir.path(), &id, |r| r.launch_pending = true);
        let (agent, rec) = reopen(dir.path(), &rt).await;
        assert_eq!(rec.state, MachineState::Started);
        assert!(!rec.launch_pending);
        assert_eq!((rt.starts(&id), rt.live_runs(&id)), (1, 1));
        assert_eq!(
            last_event(&agent, &rec),
            (EventType::Start, "started".into(), EventSource::Agent)
        );
    }

    #[tokio::test]
    async fn an_update_to_a_started_machine_runs_the_new_version() {
        let (dir, rt, id) = machine(false).await;
        let new = InstanceId::new();
        rewrite(dir.path(), &id, |r| {
            r.state = MachineState::Updating;
            r.target_state = Some(MachineState::Started);
            r.instance_id = new.clone();
        });
        let (agent, rec) = reopen(dir.path(), &rt).await;
        assert_eq!(rec.state, MachineState::Started);
        assert_eq!(rec.target_state, None);
        assert_eq!((rt.starts(&id), rt.live_runs(&id)), (2, 1));
        let running = aloft_runtime::Runtime::reattach(&rt, &id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(running.instance_id, new.as_str());
        assert_eq!(
            last_event(&agent, &rec),
            (EventType::Update, "started".into(), EventSource::Agent)
        );
    }

    #[tokio::test]
    async fn an_update_that_stops_the_machine_is_finished() {
        let (dir, rt, id) = machine(false).await;
        rewrite(dir.path(), &id, |r| {
            r.state = MachineState::Updating;
            r.target_state = Some(MachineState::Stopped);
            r.instance_id = InstanceId::new();
        });
        let (agent, rec) = reopen(dir.path(), &rt).await;
        assert_eq!(rec.state, MachineState::Stopped);
        assert_eq!(rt.live_runs(&id), 0);
        assert_eq!(
            last_event(&agent, &rec),
            (EventType::Update, "stopped".into(), EventSource::Agent)
        );
    }

    #[tokio::test]
    async fn a_destroy_is_finished() {
        let (dir, rt, id) = machine(false).await;
        rewrite(dir.path(), &id, |r| r.state = MachineState::Destroying);
        let (agent, rec) = reopen(dir.path(), &rt).await;
        assert_eq!(rec.state, MachineState::Destroyed);
        assert!(!rt.knows(&id));
        assert_eq!(
            last_event(&agent, &rec),
            (EventType::Destroy, "destroyed".into(), EventSource::Agent)
        );
    }

    #[tokio::test]
    async fn a_restart_whose_process_is_gone_starts_it() {
        let (dir, rt, id) = machine(false).await;
        aloft_runtime::Runtime::kill(&rt, &id).await.unwrap();
        rewrite(dir.path(), &id, |r| r.state = MachineState::Restarting);
        let (agent, rec) = reopen(dir.path(), &rt).await;
        assert_eq!(rec.state, MachineState::Started);
        assert_eq!((rt.starts(&id), rt.live_runs(&id)), (2, 1));
        assert_eq!(
            last_event(&agent, &rec),
            (EventType::Restart, "started".into(), EventSource::Agent)
        );
    }

    #[tokio::test]
    async fn a_suspend_of_a_running_machine_ends_stopped() {
        let (dir, rt, id) = machine(false).await;
        rewrite(dir.path(), &id, |r| r.state = MachineState::Suspending);
        let (agent, rec) = reopen(dir.path(), &rt).await;
        assert_eq!(rec.state, MachineState::Stopped);
        assert_eq!(rt.live_runs(&id), 0);
        assert_eq!(
            last_event(&agent, &rec),
            (EventType::Suspend, "stopped".into(), EventSource::Agent)
        );
    }

    #[tokio::test]
    async fn a_run_the_store_does_not_expect_is_stopped() {
        let (dir, rt, id) = machine(false).await;
        rewrite(dir.path(), &id, |r| r.state = MachineState::Stopped);
        let (agent, rec) = reopen(dir.path(), &rt).await;
        assert_eq!(rec.state, MachineState::Stopped);
        assert_eq!(rt.live_runs(&id), 0);
        assert_eq!(last_event(&agent, &rec).1, "stopped");
    }
}
