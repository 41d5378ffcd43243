//! `aloft scale count N`: the number of machines of a process group in each region, as the
//! reference's `fly scale count`; `aloft scale vm SIZE` and `aloft scale memory MB`: every machine's
//! size, one machine at a time (each started and passing its checks before the next). New machines copy the config of the group's newest machine (its
//! release, image and size); extra ones are retired newest first (cordoned, stopped, destroyed).
//! The control plane spreads an app's machines across the hosts of a region.

use crate::Ctx;
use crate::deploy::{group_of, update_each};
use crate::machine::{AppArg, Scope, WaitFailure};
use crate::output::print_json;
use aloft_appconfig::validate::vm_size;
use aloft_types::api::{CreateMachineRequest, ListMachinesQuery};
use aloft_types::config::CpuKind;
use aloft_types::{Machine, MachineState};
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::Duration;

/// How long a new machine has to start.
const START_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Subcommand)]
pub enum ScaleCommand {
    /// Set how many machines of a process group run in each region.
    Count(CountArgs),
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

#[derive(Debug, Args)]
pub struct CountArgs {
    /// Machines per region.
    count: usize,
    /// The regions, comma-separated (default: those where the group has machines).
    #[arg(short = 'r', long, value_delimiter = ',')]
    region: Vec<String>,
    /// The process group (default: the app's only one).
    #[arg(long = "process-group", value_name = "GROUP")]
    process_group: Option<String>,
    #[command(flatten)]
    app: AppArg,
}

/// One machine scaling made or removed.
#[derive(Debug, Serialize)]
struct Change {
    id: String,
    region: String,
    /// `created` or `destroyed`.
    action: &'static str,
}

pub async fn run(command: ScaleCommand, ctx: &Ctx) -> Result<ExitCode> {
    match command {
        ScaleCommand::Count(args) => count(args, ctx).await,
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
async fn app_machines(ctx: &Ctx, app: &str) -> Result<(Scope, Vec<Machine>)> {
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

async fn count(args: CountArgs, ctx: &Ctx) -> Result<ExitCode> {
    let app = ctx.app_of(&args.app)?;
    let (scope, machines) = app_machines(ctx, &app).await?;
    let groups: BTreeSet<String> = machines.iter().map(group_of).collect();
    let group = match (&args.process_group, groups.len()) {
        (Some(g), _) => g.clone(),
        (None, 1) => groups.first().cloned().expect("one group"),
        (None, 0) => {
            bail!("{app} has no machines to copy: deploy it first (`aloft deploy -a {app}`)")
        }
        (None, _) => bail!(
            "{app} has several process groups ({}): name one with --process-group",
            groups.into_iter().collect::<Vec<_>>().join(", ")
        ),
    };
    let mut mine: Vec<&Machine> = machines.iter().filter(|m| group_of(m) == group).collect();
    // Oldest first (by their first event, in milliseconds): the newest is the template, and the
    // first to go.
    let born = |m: &Machine| {
        m.events
            .iter()
            .map(|e| e.timestamp)
            .min()
            .unwrap_or(i64::MAX)
    };
    mine.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then(born(a).cmp(&born(b)))
            .then(a.id.cmp(&b.id))
    });
    let template = mine.last().ok_or_else(|| {
        anyhow!(
            "process group `{group}` of {app} has no machines to copy: deploy it first (`aloft deploy -a {app}`)"
        )
    })?;
    let regions: Vec<String> = if args.region.is_empty() {
        mine.iter()
            .map(|m| m.region.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    } else {
        args.region.clone()
    };
    let mut by_region: BTreeMap<&str, Vec<&Machine>> = BTreeMap::new();
    for m in &mine {
        by_region.entry(m.region.as_str()).or_default().push(m);
    }
    let mut changes = Vec::new();
    for region in &regions {
        let have = by_region.get(region.as_str()).cloned().unwrap_or_default();
        if !ctx.json {
            println!(
                "{group} in {region}: {} machine{} -> {}",
                have.len(),
                if have.len() == 1 { "" } else { "s" },
                args.count
            );
        }
        let mut volumes_taken = Vec::new();
        for _ in have.len()..args.count {
            let mut config = template.config.clone();
            // Each machine mounts a volume of its own: of the template's volume's name.
            if let Some(mount) = config.mounts.first_mut() {
                let (name, size) = match (&mount.name, mount.size_gb) {
                    (Some(n), Some(size)) => (n.clone(), size),
                    // A machine given its volume by hand (`machine run --volume`): as that one.
                    _ => {
                        let v = scope.client.volume(&app, &mount.volume).await?;
                        (v.name, v.size_gb)
                    }
                };
                let v = crate::volumes::volume_for(
                    &scope.client,
                    &app,
                    &name,
                    region,
                    size,
                    &volumes_taken,
                    ctx.json,
                )
                .await?;
                volumes_taken.push(v.id.clone());
                mount.volume = v.id;
            }
            let req = CreateMachineRequest {
                config,
                name: None,
                region: Some(region.clone()),
                skip_launch: false,
                lease_ttl: None,
                skip_service_registration: false,
            };
            let created = scope
                .client
                .create_machine(&app, &req)
                .await
                .with_context(|| format!("creating a machine of `{group}` in {region}"))?;
            let id = created.id.to_string();
            match scope
                .await_state(&id, MachineState::Started, START_TIMEOUT)
                .await
            {
                Ok(_) => {}
                Err(WaitFailure::NotReached(m)) => bail!(
                    "machine {id} is {}, not started: see `aloft logs -a {app} -m {id}`",
                    m.state.as_str()
                ),
                Err(WaitFailure::Error(e)) => return Err(e),
            }
            if !ctx.json {
                println!("  created machine {id} (started)");
            }
            changes.push(Change {
                id,
                region: region.clone(),
                action: "created",
            });
        }
        for m in have
            .iter()
            .rev()
            .take(have.len().saturating_sub(args.count))
        {
            let id = m.id.to_string();
            scope
                .retire(&id)
                .await
                .with_context(|| format!("retiring machine {id}"))?;
            if !ctx.json {
                println!("  destroyed machine {id}");
            }
            changes.push(Change {
                id,
                region: region.clone(),
                action: "destroyed",
            });
        }
    }
    if ctx.json {
        print_json(
            &serde_json::json!({"app": app, "group": group, "count": args.count, "changes": changes}),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
