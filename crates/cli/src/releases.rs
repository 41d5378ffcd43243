//! `aloft releases -a APP`: the app's deploys, newest first, with how each ended.

use crate::Ctx;
use crate::machine::{AppArg, explain_app_error};
use crate::output::{Table, print_json};
use anyhow::Result;
use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ReleasesArgs {
    #[command(flatten)]
    app: AppArg,
}

pub async fn run(args: ReleasesArgs, ctx: &Ctx) -> Result<ExitCode> {
    let app = ctx.app_of(&args.app)?;
    let client = ctx.client()?;
    let releases = match client.releases(&app).await {
        Ok(r) => r,
        Err(e) => return Err(explain_app_error(ctx, &app, e).await),
    };
    if ctx.json {
        print_json(&releases)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&[
        "VERSION", "STATUS", "STRATEGY", "IMAGE", "CREATED", "REASON",
    ]);
    for r in &releases {
        table.row(vec![
            format!("v{}", r.version),
            r.status.as_str().to_string(),
            r.strategy.clone(),
            r.image.clone(),
            r.created_at.clone(),
            r.reason.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    table.print(&format!(
        "App `{app}` has no releases yet; `aloft deploy -a {app}` makes one."
    ));
    Ok(ExitCode::SUCCESS)
}
