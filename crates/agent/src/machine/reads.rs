//! The machine operations that never take a machine's lock: the API's reads (list, get, events,
//! versions, metadata, processes, logs), `wait` (on the slot's state channel), `exec`, and the
//! machine object every answer carries, with the capacity the host's machines hold.
//!
//! No state of its own: it reads the store, the slots and the check results.

use super::not_started;
use crate::agent::Agent;
use crate::store::Record;
use aloft_runtime::RuntimeError;
use aloft_types::api::{
    ExecRequest, ExecResponse, ListMachinesQuery, LogLine, MachineVersion, ProcessStat, WaitQuery,
    WaitResponse,
};
use aloft_types::config::CpuKind;
use aloft_types::machine::HostStatus;
use aloft_types::time::rfc3339;
use aloft_types::{ApiError, InstanceId, Machine, MachineEvent, MachineId, MachineState};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;

/// How many events the machine object carries (all of them: `GET .../events`).
const EVENTS_IN_MACHINE: u32 = 10;
/// The default and longest `exec` timeouts, in seconds.
const EXEC_TIMEOUT: u64 = 30;
const EXEC_MAX_TIMEOUT: u64 = 300;
/// The default and longest `wait` timeouts, in seconds.
const WAIT_MAX_TIMEOUT: u64 = 60;

impl Agent {
    /// `GET /v1/apps/{app}/machines`.
    pub(crate) fn list_machines(
        &self,
        app: &str,
        query: &ListMachinesQuery,
    ) -> Result<Vec<Machine>, ApiError> {
        let states = match query.state.as_deref().filter(|s| !s.trim().is_empty()) {
            None => None,
            Some(list) => Some(
                list.split(',')
                    .map(|s| {
                        MachineState::parse(s.trim()).ok_or_else(|| {
                            ApiError::BadRequest(format!(
                                "state: `{}` is not a machine state; use a comma-separated list of: {}",
                                s.trim(),
                                MachineState::ALL.map(MachineState::as_str).join(", ")
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let include_deleted = query.include_deleted.unwrap_or(false);
        self.store()
            .list()?
            .into_iter()
            .filter(|r| r.app == app)
            .filter(|r| include_deleted || r.state != MachineState::Destroyed)
            .filter(|r| {
                query
                    .region
                    .as_ref()
                    .is_none_or(|region| &r.region == region)
            })
            .filter(|r| states.as_ref().is_none_or(|s| s.contains(&r.state)))
            .filter(|r| {
                query
                    .metadata
                    .iter()
                    .all(|(k, v)| r.config.metadata.get(k) == Some(v))
            })
            .map(|r| self.machine_json(&r, None))
            .collect()
    }

    /// `GET /v1/apps/{app}/machines/{id}`.
    pub(crate) fn get_machine(&self, app: &str, id: &str) -> Result<Machine, ApiError> {
        self.machine_json(&self.find(app, id)?, None)
    }

    /// `GET .../wait`: until the machine reaches the state (and version), or the timeout.
    pub(crate) async fn wait_machine(
        &self,
        app: &str,
        id: &str,
        query: WaitQuery,
    ) -> Result<WaitResponse, ApiError> {
        let targets = wait_targets(query.state.as_deref())?;
        let secs = match query.timeout.as_deref() {
            None => WAIT_MAX_TIMEOUT,
            Some(t) => t
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=WAIT_MAX_TIMEOUT).contains(n))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "timeout: `{t}` is not allowed; give a whole number of seconds from 1 to {WAIT_MAX_TIMEOUT}"
                    ))
                })?,
        };
        let rec = self.find(app, id)?;
        let mut rx = self.slot(&rec).subscribe();
        let instance = query.instance_id;
        let reached = |(state, version): &(MachineState, InstanceId)| {
            targets.contains(state)
                && (*state == MachineState::Destroyed
                    || instance
                        .as_deref()
                        .is_none_or(|want| want == version.as_str()))
        };
        let waited = tokio::time::timeout(
            Duration::from_secs(secs),
            rx.wait_for(|v| reached(v) || v.0 == MachineState::Destroyed),
        )
        .await
        .map(|r| r.map(|v| v.clone()));
        let wanted = || {
            targets
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        };
        match waited {
            Ok(Ok(v)) if reached(&v) => Ok(WaitResponse {
                ok: true,
                state: v.0,
            }),
            Ok(Ok(_)) => Err(ApiError::Precondition(format!(
                "machine {} was destroyed; it will never be {}",
                rec.id,
                wanted()
            ))),
            Ok(Err(_)) => Err(crate::error::AgentError::Closed.into()),
            Err(_) => {
                let now = rx.borrow().0;
                Err(ApiError::Timeout(format!(
                    "machine {} did not reach {} within {secs}s (it is {now}); wait again or check its events (aloft machine status {})",
                    rec.id,
                    wanted(),
                    rec.id
                )))
            }
        }
    }

    /// `GET .../metadata`.
    pub(crate) fn metadata(
        &self,
        app: &str,
        id: &str,
    ) -> Result<BTreeMap<String, String>, ApiError> {
        Ok(self.find(app, id)?.config.metadata)
    }

    /// `GET .../events`: all of them, newest first.
    pub(crate) fn events(&self, app: &str, id: &str) -> Result<Vec<MachineEvent>, ApiError> {
        let rec = self.find(app, id)?;
        Ok(self.store().events(&rec.id, None)?)
    }

    /// `GET .../versions`: newest first.
    pub(crate) fn versions(&self, app: &str, id: &str) -> Result<Vec<MachineVersion>, ApiError> {
        let rec = self.find(app, id)?;
        Ok(self.store().versions(&rec.id)?)
    }

    /// `GET .../ps`.
    pub(crate) async fn ps(&self, app: &str, id: &str) -> Result<Vec<ProcessStat>, ApiError> {
        let rec = self.find(app, id)?;
        if rec.state != MachineState::Started {
            return Err(not_started(&rec));
        }
        self.any_runtime()
            .ps(&rec.id)
            .await
            .map_err(|e| runtime_read_error(&rec, e))
    }

    /// `POST .../exec`.
    pub(crate) async fn exec(
        &self,
        app: &str,
        id: &str,
        req: ExecRequest,
    ) -> Result<ExecResponse, ApiError> {
        let argv = req.argv();
        if argv.is_empty() {
            return Err(ApiError::invalid(
                "command",
                "command: give the program and its arguments, e.g. [\"ls\", \"-l\"]",
            ));
        }
        let secs = req.timeout.unwrap_or(EXEC_TIMEOUT);
        if !(1..=EXEC_MAX_TIMEOUT).contains(&secs) {
            return Err(ApiError::Invalid {
                message: format!(
                    "timeout: {secs} seconds is not allowed; use 1 to {EXEC_MAX_TIMEOUT}"
                ),
                field: "timeout".into(),
                allowed: vec![format!("1..={EXEC_MAX_TIMEOUT}")],
            });
        }
        let rec = self.find(app, id)?;
        if rec.state != MachineState::Started {
            return Err(not_started(&rec));
        }
        self.any_runtime()
            .exec(
                &rec.id,
                &argv,
                req.stdin.as_deref(),
                Duration::from_secs(secs),
            )
            .await
            .map_err(|e| runtime_read_error(&rec, e))
    }

    /// `GET .../logs`: the runtime's recent lines, from `since` (ms) if given.
    pub(crate) async fn logs(
        &self,
        app: &str,
        id: &str,
        since: Option<i64>,
    ) -> Result<Vec<LogLine>, ApiError> {
        let rec = self.find(app, id)?;
        match self.any_runtime().logs(&rec.id).await {
            Ok(mut lines) => {
                if let Some(since) = since {
                    lines.retain(|l| l.timestamp >= since);
                }
                Ok(lines)
            }
            Err(RuntimeError::NotFound(_)) => Ok(Vec::new()),
            Err(e) => Err(runtime_read_error(&rec, e)),
        }
    }

    /// The machine object the API returns.
    pub(crate) fn machine_json(
        &self,
        rec: &Record,
        nonce: Option<String>,
    ) -> Result<Machine, ApiError> {
        let events = self.store().events(&rec.id, Some(EVENTS_IN_MACHINE))?;
        Ok(self.machine_object(rec, nonce, events))
    }

    /// Every machine on this host that is not destroyed, without their events: what the
    /// proxy routes from ([`aloft_catalog::LocalCatalog`]).
    pub fn machines(&self) -> Result<Vec<Machine>, ApiError> {
        Ok(self
            .store()
            .list_live()?
            .into_iter()
            .map(|r| self.machine_object(&r, None, Vec::new()))
            .collect())
    }

    /// One machine as [`Agent::machines`] shows it; `None` when it is gone or destroyed.
    pub fn live_machine(&self, id: &str) -> Result<Option<Machine>, ApiError> {
        let Some(id) = MachineId::parse(id) else {
            return Ok(None);
        };
        Ok(self
            .store()
            .get(&id)?
            .filter(|r| r.state != MachineState::Destroyed)
            .map(|r| self.machine_object(&r, None, Vec::new())))
    }

    /// Moves on whenever a machine on this host changes (state, config, a new or destroyed one).
    pub fn machine_changes(&self) -> watch::Receiver<u64> {
        self.store().changes()
    }

    /// The machines that changed after change `seen` of [`Agent::machine_changes`], and the
    /// change that brings it up to date; `None` when the agent no longer remembers that far back.
    pub fn machines_changed_since(&self, seen: u64) -> Option<(u64, Vec<String>)> {
        let (to, ids) = self.store().changed_since(seen)?;
        Some((to, ids.iter().map(|id| id.as_str().to_string()).collect()))
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
            version: rec.instance_id.to_string(),
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
            host_id: self.config().host_id.clone(),
            nonce,
            image_pull: self.image_pull(&rec.id),
        }
    }

    /// Dedicated CPUs and memory (MB) held by machines that are not destroyed, leaving out
    /// `except`. `shared` CPUs are oversubscribed (as on the reference platform and in the control
    /// plane's placement), so only `performance` guests hold CPUs.
    pub(crate) fn allocated(&self, except: Option<&MachineId>) -> Result<(u32, u64), ApiError> {
        let mut cpus = 0u32;
        let mut memory = 0u64;
        for rec in self.store().list()? {
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

fn runtime_read_error(rec: &Record, e: RuntimeError) -> ApiError {
    match e {
        RuntimeError::NotRunning(_) | RuntimeError::NotFound(_) => ApiError::Precondition(format!(
            "machine {id} is not running; start it first (aloft machine start {id})",
            id = rec.id
        )),
        other => ApiError::Internal(format!("machine {}: {other}", rec.id)),
    }
}

/// The states a wait ends at: `state` as given (one, or several separated by commas; `settled`
/// is every state a machine rests in, and destroyed), `started` when absent.
fn wait_targets(state: Option<&str>) -> Result<Vec<MachineState>, ApiError> {
    let Some(state) = state else {
        return Ok(vec![MachineState::Started]);
    };
    let mut targets = Vec::new();
    for s in state.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if s == "settled" {
            targets.extend(
                MachineState::ALL
                    .into_iter()
                    .filter(|st| st.is_persistent() || *st == MachineState::Destroyed),
            );
            continue;
        }
        match MachineState::parse(s).filter(|st| MachineState::WAITABLE.contains(st)) {
            Some(st) => targets.push(st),
            None => {
                return Err(ApiError::BadRequest(format!(
                    "state: cannot wait for `{s}`; use one or more of: {}, settled",
                    MachineState::WAITABLE.map(MachineState::as_str).join(", ")
                )));
            }
        }
    }
    if targets.is_empty() {
        targets.push(MachineState::Started);
    }
    Ok(targets)
}
