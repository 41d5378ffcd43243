//! `aloft machine list` and `status`: machines as a table, a machine's fields, its checks and its
//! recent events.

use super::args::{IdArgs, ListArgs};
use super::scope::Scope;
use crate::Ctx;
use crate::client::MachineList;
use crate::output::{Table, json_name, or_dash, print_fields, print_json};
use aloft_types::api::ListMachinesQuery;
use aloft_types::config::RestartPolicy;
use aloft_types::time::rfc3339;
use aloft_types::{Machine, MachineEvent};
use anyhow::Result;
use std::collections::BTreeMap;
use std::process::ExitCode;

/// The key facts about a machine, for `run` and `status`.
pub(super) fn summary(m: &Machine) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("id", m.id.to_string()),
        ("name", m.name.clone()),
        ("state", m.state.to_string()),
        ("region", m.region.clone()),
        ("image", m.config.image.clone()),
        ("image digest", or_dash(&m.image_ref.digest)),
        (
            "size",
            format!(
                "{}, {} MB",
                m.config.guest.size_name(),
                m.config.guest.memory_mb
            ),
        ),
        ("private ip", or_dash(&m.private_ip)),
        ("version", m.instance_id.to_string()),
    ];
    if let Some(init) = &m.config.init {
        if !init.entrypoint.is_empty() {
            fields.push(("entrypoint", init.entrypoint.join(" ")));
        }
        if !init.cmd.is_empty() {
            fields.push(("cmd", init.cmd.join(" ")));
        }
    }
    for s in &m.config.services {
        for p in &s.ports {
            let public = match (p.port, p.start_port, p.end_port) {
                (Some(port), _, _) => port.to_string(),
                (None, Some(a), Some(b)) => format!("{a}-{b}"),
                _ => "?".into(),
            };
            let handlers: Vec<String> = p.handlers.iter().map(json_name).collect();
            fields.push((
                "service",
                format!(
                    "{public} -> {}/{} [{}] autostop {}",
                    s.internal_port,
                    json_name(&s.protocol),
                    handlers.join(","),
                    s.autostop.as_str()
                ),
            ));
        }
    }
    let (policy, retries) = m.config.restart_policy();
    let policy = match policy {
        RestartPolicy::No => "no".to_string(),
        RestartPolicy::Always => "always".to_string(),
        RestartPolicy::OnFailure => format!("on-failure (up to {retries} retries)"),
    };
    fields.push(("restart", policy));
    if !m.config.metadata.is_empty() {
        let md: Vec<String> = m
            .config
            .metadata
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        fields.push(("metadata", md.join(", ")));
    }
    if m.cordoned {
        fields.push(("cordoned", "yes (no proxy traffic)".into()));
    }
    fields.push(("checks", checks_summary(m)));
    fields.push((
        "host",
        format!("{} ({})", or_dash(&m.host_id), json_name(&m.host_status)),
    ));
    fields.push(("created", m.created_at.clone()));
    fields.push(("updated", m.updated_at.clone()));
    fields
}

/// `2 passing, 1 critical`, or `-`.
pub fn checks_summary(m: &Machine) -> String {
    if m.checks.is_empty() {
        return "-".into();
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for c in &m.checks {
        *counts.entry(json_name(&c.status)).or_default() += 1;
    }
    counts
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Says on stderr which hosts did not answer, so a short list is not mistaken for the whole.
pub fn warn_partial(list: &MachineList) {
    if !list.unreachable_hosts.is_empty() {
        eprintln!(
            "Warning: hosts {} did not answer; their machines are missing below. Try again shortly.",
            list.unreachable_hosts.join(", ")
        );
    }
}

/// The machines table of `machine list` and `status`.
pub fn machines_table(machines: &[Machine]) -> Table {
    let mut table = Table::new(&[
        "ID", "NAME", "STATE", "REGION", "IMAGE", "IP", "CHECKS", "UPDATED",
    ]);
    for m in machines {
        let state = if m.cordoned {
            format!("{} (cordoned)", m.state)
        } else {
            m.state.to_string()
        };
        table.row(vec![
            m.id.to_string(),
            m.name.clone(),
            state,
            m.region.clone(),
            m.config.image.clone(),
            or_dash(&m.private_ip),
            checks_summary(m),
            m.updated_at.clone(),
        ]);
    }
    table
}

fn events_table(events: &[MachineEvent]) -> Table {
    let mut table = Table::new(&["TIME", "TYPE", "STATUS", "SOURCE", "DETAILS"]);
    for e in events {
        let details = match &e.request {
            Some(r) => match (&r.exit_event, &r.message) {
                (Some(x), _) => {
                    let mut d = format!("exit code {}", x.exit_code);
                    if x.signal > 0 {
                        d.push_str(&format!(", signal {}", x.signal));
                    }
                    if x.oom_killed {
                        d.push_str(", out of memory");
                    }
                    if x.requested_stop {
                        d.push_str(", requested stop");
                    }
                    if x.restarts > 0 {
                        d.push_str(&format!(", restarts {}", x.restarts));
                    }
                    d
                }
                (None, Some(msg)) => msg.clone(),
                (None, None) => String::new(),
            },
            None => String::new(),
        };
        table.row(vec![
            rfc3339(e.timestamp),
            json_name(&e.kind),
            e.status.clone(),
            json_name(&e.source),
            details,
        ]);
    }
    table
}

pub(super) fn print_events_to_stderr(events: &[MachineEvent]) {
    if events.is_empty() {
        return;
    }
    let recent: Vec<MachineEvent> = events.iter().take(10).cloned().collect();
    eprint!("{}", events_table(&recent).render());
}

pub(super) async fn list(ctx: &Ctx, args: ListArgs) -> Result<ExitCode> {
    let scope = Scope::new(ctx, &args.app)?;
    let query = ListMachinesQuery {
        include_deleted: args.all.then_some(true),
        region: args.region,
        state: args.state,
        metadata: BTreeMap::new(),
    };
    let list = match scope.client.list_machines(&scope.app, &query).await {
        Ok(list) => list,
        Err(e) => return Err(scope.explain(e, None).await),
    };
    warn_partial(&list);
    let machines = list.machines;
    if ctx.json {
        print_json(&machines)?;
    } else {
        machines_table(&machines).print(&format!(
            "No machines in app `{}`; run one with `aloft machine run IMAGE -a {}`.",
            scope.app, scope.app
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn status(ctx: &Ctx, args: IdArgs) -> Result<ExitCode> {
    let scope = Scope::new(ctx, &args.app)?;
    let machine = match scope.client.get_machine(&scope.app, &args.id).await {
        Ok(m) => m,
        Err(e) => return Err(scope.explain(e, Some(&args.id)).await),
    };
    if ctx.json {
        print_json(&machine)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("Machine {}", machine.id);
    print_fields(&summary(&machine));
    if !machine.checks.is_empty() {
        println!();
        println!("Checks");
        let mut table = Table::new(&["NAME", "STATUS", "UPDATED", "OUTPUT"]);
        for c in &machine.checks {
            table.row(vec![
                c.name.clone(),
                c.status.as_str().to_string(),
                c.updated_at.clone(),
                c.output.clone(),
            ]);
        }
        table.print("");
    }
    println!();
    println!("Events (newest first)");
    events_table(&machine.events).print("No events yet.");
    Ok(ExitCode::SUCCESS)
}
