//! `aloft machine update` (a machine's config changed by flags, under its lease, then started
//! again), `aloft machine clone` (a new machine with another's config, in any region) and
//! `aloft machine kill` (SIGKILL), as flyctl has them.

use super::START_WAIT;
use super::args::{CloneArgs, IdsArgs, UpdateArgs};
use super::flags::{cpu_kind, parse_memory, parse_pairs};
use super::scope::{Scope, WaitFailure};
use super::show::print_events_to_stderr;
use crate::Ctx;
use crate::output::print_json;
use aloft_appconfig::values::split_command;
use aloft_types::api::{
    CreateMachineRequest, CreateVolumeRequest, LeaseRequest, SignalRequest, UpdateMachineRequest,
};
use aloft_types::config::{CpuKind, Guest, InitConfig};
use aloft_types::signal::Signal;
use aloft_types::{Machine, MachineConfig, MachineState};
use anyhow::{Result, anyhow, bail};
use serde_json::json;
use std::process::ExitCode;

/// How long `machine update` holds the machine's lease (released when it is done).
const UPDATE_LEASE_SECS: u64 = 60;

/// `config` with the changes `args` asks for; `false` when nothing changed.
pub(super) fn apply_flags(config: &mut MachineConfig, args: &UpdateArgs) -> Result<bool> {
    let before = serde_json::to_value(&*config)?;
    if let Some(image) = &args.image {
        config.image = image.clone();
    }
    config.env.extend(parse_pairs("--env", &args.env)?);
    config
        .metadata
        .extend(parse_pairs("--metadata", &args.metadata)?);
    if let Some(size) = &args.vm_size {
        let (kind, cpus, memory_mb) =
            aloft_appconfig::validate::vm_size(size).map_err(|e| anyhow!("--vm-size: {e}"))?;
        config.guest = Guest {
            cpu_kind: if kind == "performance" {
                CpuKind::Performance
            } else {
                CpuKind::Shared
            },
            cpus,
            memory_mb,
            ..config.guest.clone()
        };
    }
    if let Some(kind) = args.vm_cpu_kind {
        config.guest.cpu_kind = cpu_kind(Some(kind));
    }
    if let Some(cpus) = args.vm_cpus {
        config.guest.cpus = cpus;
    }
    if let Some(memory) = &args.vm_memory {
        config.guest.memory_mb = parse_memory(memory)?;
    }
    if args.command.is_some() || args.entrypoint.is_some() {
        let init = config.init.get_or_insert_with(InitConfig::default);
        if let Some(c) = &args.command {
            init.cmd = split_command(c).map_err(|e| anyhow!("--command: {e}"))?;
        }
        if let Some(e) = &args.entrypoint {
            init.entrypoint = split_command(e).map_err(|e| anyhow!("--entrypoint: {e}"))?;
        }
    }
    Ok(serde_json::to_value(&*config)? != before)
}

/// `aloft machine update ID [flags]`: the machine's current config, changed by the flags,
/// applied under its lease (refused if someone else holds it), then waited for.
pub(super) async fn update(ctx: &Ctx, args: UpdateArgs) -> Result<ExitCode> {
    let scope = Scope::new(ctx, &args.app)?;
    let (app, id) = (scope.app.clone(), args.id.clone());
    let machine = match scope.client.get_machine(&app, &id).await {
        Ok(m) => m,
        Err(e) => return Err(scope.explain(e, Some(&id)).await),
    };
    let mut config = machine.config.clone();
    if !apply_flags(&mut config, &args)? {
        bail!(
            "nothing to change: give the machine a new --image, --env, --metadata, --vm-size, --vm-memory, --vm-cpus, --command or --entrypoint"
        );
    }
    let lease = LeaseRequest {
        ttl: Some(UPDATE_LEASE_SECS),
        description: Some("aloft machine update".into()),
    };
    let nonce = match scope.client.acquire_lease(&app, &id, &lease, None).await {
        Ok(l) => l.data.nonce,
        Err(e) => return Err(scope.explain(e, Some(&id)).await),
    };
    let req = UpdateMachineRequest {
        config,
        name: None,
        region: None,
        skip_launch: args.skip_start,
        current_version: Some(machine.instance_id.to_string()),
        lease_ttl: None,
        skip_service_registration: false,
    };
    let updated = scope.client.update_machine(&app, &id, &req, &nonce).await;
    let _ = scope.client.release_lease(&app, &id, &nonce).await;
    let updated = match updated {
        Ok(m) => m,
        Err(e) => return Err(scope.explain(e, Some(&id)).await),
    };
    let wait_for = (machine.state == MachineState::Started && !args.skip_start && !args.detach)
        .then_some(MachineState::Started);
    let updated = settle(&scope, updated, wait_for).await?;
    if ctx.json {
        print_json(&updated)?;
    } else {
        println!(
            "Machine {id} updated to version {} (it is {}).",
            updated.instance_id, updated.state
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `machine` once it is in `target` (when there is one to wait for).
async fn settle(scope: &Scope, machine: Machine, target: Option<MachineState>) -> Result<Machine> {
    let Some(target) = target else {
        return Ok(machine);
    };
    let id = machine.id.to_string();
    match scope.await_state(&id, target, START_WAIT).await {
        Ok(m) => Ok(m),
        Err(WaitFailure::Error(e)) => Err(e),
        Err(WaitFailure::NotReached(m)) => {
            print_events_to_stderr(&m.events);
            bail!(
                "machine {id} did not reach `{target}`: it is {} (its last events are above); see `aloft machine status {id} -a {}`",
                m.state,
                scope.app
            )
        }
    }
}

/// `aloft machine clone ID [--region R] [--name N]`: a new machine with the same config. A
/// mounted volume is not shared: the clone gets a new empty volume of the same name and size in
/// its region (as flyctl's default).
pub(super) async fn clone(ctx: &Ctx, args: CloneArgs) -> Result<ExitCode> {
    let scope = Scope::new(ctx, &args.app)?;
    let (app, id) = (scope.app.clone(), args.id.clone());
    let source = match scope.client.get_machine(&app, &id).await {
        Ok(m) => m,
        Err(e) => return Err(scope.explain(e, Some(&id)).await),
    };
    let region = args.region.clone().unwrap_or(source.region.clone());
    let mut config = source.config.clone();
    for mount in &mut config.mounts {
        let size = match scope.client.volume(&app, &mount.volume).await {
            Ok(v) => v.size_gb,
            Err(e) => return Err(scope.explain(e, None).await),
        };
        let req: CreateVolumeRequest = serde_json::from_value(json!({
            "name": mount.name.clone().unwrap_or_else(|| "data".into()),
            "region": region,
            "size_gb": size,
        }))?;
        let volume = match scope.client.create_volume(&app, &req).await {
            Ok(v) => v,
            Err(e) => return Err(scope.explain(e, None).await),
        };
        if !ctx.json {
            println!(
                "Created volume {} ({} GB) in {region} for the clone (mounted at {}).",
                volume.id, volume.size_gb, mount.path
            );
        }
        mount.volume = volume.id.to_string();
    }
    let req = CreateMachineRequest {
        config,
        name: args.name.clone(),
        region: Some(region),
        skip_launch: false,
        lease_ttl: None,
        skip_service_registration: false,
    };
    let created = match scope.client.create_machine(&app, &req).await {
        Ok(m) => m,
        Err(e) => return Err(scope.explain(e, None).await),
    };
    let wait_for = (!args.detach).then_some(MachineState::Started);
    let created = settle(&scope, created, wait_for).await?;
    if ctx.json {
        print_json(&created)?;
    } else {
        println!(
            "Machine {} cloned from {id} in {} (it is {}).",
            created.id, created.region, created.state
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `aloft machine kill ID...`: SIGKILL to each machine's main process.
pub(super) async fn kill(ctx: &Ctx, args: IdsArgs) -> Result<ExitCode> {
    let scope = Scope::new(ctx, &args.app)?;
    let mut killed = Vec::new();
    for id in &args.ids {
        let req = SignalRequest {
            signal: Signal::parse("SIGKILL").map_err(|e| anyhow!("{e}"))?,
        };
        if let Err(e) = scope.client.signal(&scope.app, id, &req).await {
            return Err(scope.explain(e, Some(id)).await);
        }
        if !ctx.json {
            println!("Sent SIGKILL to machine {id}.");
        }
        killed.push(json!({"id": id, "ok": true, "signal": "SIGKILL"}));
    }
    if ctx.json {
        print_json(&killed)?;
    }
    Ok(ExitCode::SUCCESS)
}
