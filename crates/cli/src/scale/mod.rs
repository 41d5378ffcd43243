//! `aloft scale count` ([`count`]): the number of machines of each process group in each region;
//! `aloft scale vm SIZE` and `aloft scale memory MB`: every machine's size, one machine at a time
//! (each started and passing its checks before the next). The control plane spreads an app's
//! machines across the hosts of a region.

mod count;

use crate::Ctx;
use crate::deploy::{group_of, update_each};
use crate::machine::{AppArg, Scope};
use crate::output::print_json;
use aloft_appconfig::validate::vm_size;
use aloft_types::Machine;
use aloft_types::api::ListMachinesQuery;
use aloft_types::config::CpuKind;
use anyhow::{Result, anyhow, bail};
use clap::{Args, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum ScaleCommand {
    /// Set how many machines of a process group run in each region.
    Count(count::CountArgs),
    /// Set the machines' size (shared-cpu-1x ... performance-16x); memory with --vm-memory.
    Vm {
        size: String,
        /// Memory in MB (default: the size's).
        #[arg(long = "vm-memory", value_name = "MB")]
        memory: Option<u32>,
        #[command(flatten)]
        target: Target,
    },
    /// Set the machines' memory in MB, keeping their CPUs.
    Memory {
        memory: u32,
        #[command(flatten)]
        target: Target,
    },
}

/// Which machines a size change applies to.
#[derive(Debug, Args)]
pub struct Target {
    /// Only this process group's machines (default: every group's).
    #[arg(long = "process-group", value_name = "GROUP")]
    process_group: Option<String>,
    #[command(flatten)]
    app: AppArg,
}

pub async fn run(command: ScaleCommand, ctx: &Ctx) -> Result<ExitCode> {
    match command {
        ScaleCommand::Count(args) => count::count(args, ctx).await,
        ScaleCommand::Vm {
            size,
            memory,
            target,
        } => {
            let (kind, cpus, default_memory) = vm_size(&size).map_err(|e| anyhow!(e))?;
            let cpu_kind = if kind == "performance" {
                CpuKind::Performance
            } else {
                CpuKind::Shared
            };
            let memory = memory.unwrap_or(default_memory);
            resize(ctx, target, &format!("{size}, {memory} MB"), |g| {
                g.cpu_kind = cpu_kind;
                g.cpus = cpus;
                g.memory_mb = memory;
            })
            .await
        }
        ScaleCommand::Memory { memory, target } => {
            resize(ctx, target, &format!("{memory} MB"), |g| {
                g.memory_mb = memory
            })
            .await
        }
    }
}

/// Changes every targeted machine's guest with `change`, one machine at a time.
async fn resize(
    ctx: &Ctx,
    target: Target,
    what: &str,
    change: impl Fn(&mut aloft_types::config::Guest),
) -> Result<ExitCode> {
    let app = ctx.app_of(&target.app)?;
    let (scope, machines) = app_machines(ctx, &app).await?;
    let chosen: Vec<&Machine> = machines
        .iter()
        .filter(|m| {
            target
                .process_group
                .as_ref()
                .is_none_or(|g| group_of(m) == *g)
        })
        .collect();
    if chosen.is_empty() {
        bail!(
            "{app} has no machines{} to resize: deploy it first (`aloft deploy -a {app}`)",
            target
                .process_group
                .as_ref()
                .map(|g| format!(" in process group `{g}`"))
                .unwrap_or_default()
        );
    }
    if !ctx.json {
        println!("Resizing {} machine(s) of {app} to {what}", chosen.len());
    }
    let updated = update_each(
        &scope,
        &chosen,
        |m| {
            let mut config = m.config.clone();
            change(&mut config.guest);
            config
        },
        ctx.json,
    )
    .await?;
    if ctx.json {
        print_json(&serde_json::json!({"app": app, "size": what, "updated": updated}))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A scope for the app, and its machines.
pub(super) async fn app_machines(ctx: &Ctx, app: &str) -> Result<(Scope, Vec<Machine>)> {
    let scope = Scope::for_app(ctx.client()?, app.to_string());
    match scope
        .client
        .list_machines(app, &ListMachinesQuery::default())
        .await
    {
        Ok(list) => Ok((scope, list.machines)),
        Err(e) => Err(crate::machine::explain_app_error(ctx, app, e).await),
    }
}
