//! `aloft platform regions`.

use crate::Ctx;
use crate::output::{Table, print_json};
use anyhow::Result;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum PlatformCommand {
    /// List the regions machines can run in, with their free capacity.
    Regions,
}

pub async fn run(cmd: PlatformCommand, ctx: &Ctx) -> Result<ExitCode> {
    match cmd {
        PlatformCommand::Regions => regions(ctx).await,
    }
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
