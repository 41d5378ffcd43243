//! `aloft platform regions` and `aloft platform vm-sizes`.

use crate::Ctx;
use crate::output::{Table, print_json};
use anyhow::Result;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum PlatformCommand {
    /// List the regions machines can run in, with their free capacity.
    Regions,
    /// List the machine size presets (`--vm-size`, `[[vm]] size`).
    VmSizes,
}

pub async fn run(cmd: PlatformCommand, ctx: &Ctx) -> Result<ExitCode> {
    match cmd {
        PlatformCommand::Regions => regions(ctx).await,
        PlatformCommand::VmSizes => vm_sizes(ctx),
    }
}

fn vm_sizes(ctx: &Ctx) -> Result<ExitCode> {
    let sizes = aloft_appconfig::validate::VM_SIZES;
    if ctx.json {
        let list: Vec<serde_json::Value> = sizes
            .iter()
            .map(|(name, kind, cpus, memory)| {
                serde_json::json!({"name": name, "cpu_kind": kind, "cpus": cpus, "memory_mb": memory})
            })
            .collect();
        print_json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&["NAME", "CPU KIND", "CPUS", "MEMORY"]);
    for (name, kind, cpus, memory) in sizes {
        table.row(vec![
            name.to_string(),
            kind.to_string(),
            cpus.to_string(),
            format!("{memory} MB"),
        ]);
    }
    table.print("");
    Ok(ExitCode::SUCCESS)
}

async fn regions(ctx: &Ctx) -> Result<ExitCode> {
    let list = ctx.client()?.regions().await?;
    if ctx.json {
        print_json(&list.regions)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&["CODE", "NAME", "HOSTS", "FREE CPUS", "FREE MEMORY"]);
    for r in &list.regions {
        table.row(vec![
            r.code.clone(),
            r.name.clone(),
            r.hosts.to_string(),
            r.free_cpus.to_string(),
            format!("{} MB", r.free_memory_mb),
        ]);
    }
    table.print("No regions: no host has registered yet; is `aloft dev up` running?");
    Ok(ExitCode::SUCCESS)
}
