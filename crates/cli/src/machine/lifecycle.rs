//! The verbs that change a machine's state: start, stop, restart, suspend, destroy, cordon and
//! uncordon (each over several ids), `signal`, and `wait` for a state.

use super::START_WAIT;
use super::args::{IdsArgs, SignalArgs, WaitArgs};
use super::flags::parse_signal;
use super::scope::{Scope, WaitFailure};
use super::show::print_events_to_stderr;
use crate::Ctx;
use crate::client::ClientError;
use crate::output::print_json;
use aloft_types::api::{RestartQuery, SignalRequest, StopRequest};
use aloft_types::config::DurationStr;
use aloft_types::time::parse_duration;
use aloft_types::{ApiError, MachineState};
use anyhow::{Result, anyhow, bail};
use serde_json::json;
use std::process::ExitCode;
use std::time::Duration;

/// An operation applied to each machine named on the command line.
pub(super) enum Op {
    Start,
    Stop(StopRequest),
    Restart(RestartQuery),
    Suspend,
    Destroy(bool),
    Cordon(bool),
}

impl Op {
    fn verb(&self) -> &'static str {
        match self {
            Op::Start => "start",
            Op::Stop(_) => "stop",
            Op::Restart(_) => "restart",
            Op::Suspend => "suspend",
            Op::Destroy(_) => "destroy",
            Op::Cordon(true) => "cordon",
            Op::Cordon(false) => "uncordon",
        }
    }
}

pub(super) async fn each(ctx: &Ctx, args: IdsArgs, op: Op) -> Result<ExitCode> {
    let scope = Scope::new(ctx, &args.app)?;
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for id in &args.ids {
        match apply(&scope, id, &op).await {
            Ok((value, line)) => {
                if !ctx.json {
                    println!("{line}");
                }
                results.push(value);
            }
            Err(e) => failures.push(e),
        }
    }
    if ctx.json && !results.is_empty() {
        print_json(&results)?;
    }
    let total = args.ids.len();
    match failures.len() {
        0 => Ok(ExitCode::SUCCESS),
        1 if total == 1 => Err(failures.remove(0)),
        n => {
            for e in &failures {
                eprintln!("Error: {e:#}");
            }
            bail!(
                "could not {} {n} of {total} machines (see above)",
                op.verb()
            )
        }
    }
}

/// Does `op` on one machine; returns its JSON result and a line for people.
async fn apply(scope: &Scope, id: &str, op: &Op) -> Result<(serde_json::Value, String)> {
    let c = &scope.client;
    let app = scope.app.as_str();
    // Each answer: the JSON result, a line for people, and the state to wait for (operations may
    // answer once the change is under way).
    let started = Some((MachineState::Started, START_WAIT));
    let result = match op {
        Op::Start => c.start(app, id).await.map(|r| {
            let value = json!({"id": id, "ok": true, "previous_state": r.previous_state});
            if r.previous_state == MachineState::Started {
                (value, format!("Machine {id} was already started."), None)
            } else {
                let line = format!("Machine {id} started (it was {}).", r.previous_state);
                (value, line, started)
            }
        }),
        Op::Stop(req) => c.stop(app, id, req).await.map(|note| {
            let value = json!({"id": id, "ok": true, "note": note});
            match note {
                // A no-op (the machine was not started): the note says why.
                Some(note) => (value, sentence(&note), None),
                None => {
                    let grace = req.timeout.as_ref().map(DurationStr::get);
                    let limit = grace.unwrap_or_default() + Duration::from_secs(60);
                    let line = format!("Machine {id} stopped.");
                    (value, line, Some((MachineState::Stopped, limit)))
                }
            }
        }),
        Op::Restart(q) => c.restart(app, id, q).await.map(|note| {
            (
                json!({"id": id, "ok": true, "note": note}),
                with_note(format!("Machine {id} restarted."), note),
                started,
            )
        }),
        Op::Suspend => c.suspend(app, id).await.map(|r| {
            let line = if r.suspended {
                format!("Machine {id} suspended.")
            } else {
                with_note(format!("Machine {id} was stopped, not suspended."), r.note.clone())
            };
            let value = json!({"id": id, "ok": r.ok, "suspended": r.suspended, "note": r.note});
            (value, line, None)
        }),
        Op::Destroy(force) => c.destroy_machine(app, id, *force).await.map(|note| {
            (
                json!({"id": id, "ok": true, "note": note}),
                with_note(format!("Machine {id} destroyed."), note),
                None,
            )
        }),
        Op::Cordon(on) => c.cordon(app, id, *on).await.map(|()| {
            let line = if *on {
                format!("Machine {id} cordoned: the proxy sends it no traffic (undo with `aloft machine uncordon {id} -a {app}`).")
            } else {
                format!("Machine {id} uncordoned: the proxy routes to it again.")
            };
            (json!({"id": id, "ok": true, "cordoned": on}), line, None)
        }),
    };
    let (value, line, settle) = match result {
        Ok(done) => done,
        Err(ClientError::Api(ApiError::Precondition(msg))) => {
            return Err(precondition_hint(scope, id, op, &msg).await);
        }
        Err(e) => return Err(scope.explain(e, Some(id)).await),
    };
    if let Some((target, limit)) = settle {
        match scope.await_state(id, target, limit).await {
            Ok(_) => {}
            Err(WaitFailure::Error(e)) => return Err(e),
            Err(WaitFailure::NotReached(m)) => {
                print_events_to_stderr(&m.events);
                bail!(
                    "machine {id} did not reach `{target}`: it is {} (its last events are above); see `aloft machine status {id} -a {app}`",
                    m.state
                );
            }
        }
    }
    Ok((value, line))
}

/// `machine x is stopped` -> `Machine x is stopped.`
fn sentence(s: &str) -> String {
    let mut chars = s.trim().trim_end_matches('.').chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

fn with_note(line: String, note: Option<String>) -> String {
    match note {
        Some(n) => format!("{line} {n}"),
        None => line,
    }
}

/// A 412. The API's messages say what to do, in API terms; destroying a started machine gets the
/// CLI's own words (`--force`).
async fn precondition_hint(scope: &Scope, id: &str, op: &Op, msg: &str) -> anyhow::Error {
    let app = &scope.app;
    if let Op::Destroy(false) = op
        && let Ok(m) = scope.client.get_machine(app, id).await
        && m.state == MachineState::Started
    {
        return anyhow!(
            "machine {id} is started: stop it first with `aloft machine stop {id} -a {app}`, or pass --force to destroy it anyway"
        );
    }
    anyhow!("{msg}")
}

pub(super) async fn signal(ctx: &Ctx, args: SignalArgs) -> Result<ExitCode> {
    let scope = Scope::new(ctx, &args.id.app)?;
    let id = &args.id.id;
    let sig = parse_signal(&args.signal)?;
    if let Err(e) = scope
        .client
        .signal(&scope.app, id, &SignalRequest { signal: sig })
        .await
    {
        return Err(scope.explain(e, Some(id)).await);
    }
    if ctx.json {
        print_json(&json!({"id": id, "ok": true, "signal": sig.name()}))?;
    } else {
        println!("Sent {} to machine {id}.", sig.name());
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn wait(ctx: &Ctx, args: WaitArgs) -> Result<ExitCode> {
    let scope = Scope::new(ctx, &args.id.app)?;
    let id = &args.id.id;
    let limit = parse_duration(&args.timeout).map_err(|e| anyhow!("--timeout: {e}"))?;
    let target = MachineState::from(args.state);
    let machine = match scope.await_state(id, target, limit).await {
        Ok(m) => m,
        Err(WaitFailure::Error(e)) => return Err(e),
        Err(WaitFailure::NotReached(m)) => bail!(
            "machine {id} did not reach `{target}` within {} (it is {}); `aloft machine status {id} -a {}` shows its events",
            args.timeout,
            m.state,
            scope.app
        ),
    };
    if ctx.json {
        print_json(&json!({"id": id, "ok": true, "state": machine.state}))?;
    } else {
        println!("Machine {id} is {}.", machine.state);
    }
    Ok(ExitCode::SUCCESS)
}
