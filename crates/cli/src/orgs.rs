//! `aloft orgs list`: the orgs the token may act in (a token belongs to one org).

use crate::Ctx;
use crate::output::{Table, print_json};
use anyhow::Result;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum OrgsCommand {
    /// List the orgs your token may act in.
    #[command(visible_alias = "ls")]
    List,
}

pub async fn run(cmd: OrgsCommand, ctx: &Ctx) -> Result<ExitCode> {
    match cmd {
        OrgsCommand::List => list(ctx).await,
    }
}

async fn list(ctx: &Ctx) -> Result<ExitCode> {
    let list = ctx.client()?.list_orgs().await?;
    if ctx.json {
        print_json(&list.orgs)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&["NAME", "SLUG"]);
    for org in &list.orgs {
        table.row(vec![org.name.clone(), org.slug.clone()]);
    }
    table.print("No orgs.");
    Ok(ExitCode::SUCCESS)
}
