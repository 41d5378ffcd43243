//! `aloft apps create|list|destroy`.

use crate::Ctx;
use crate::client::ClientError;
use crate::output::{Table, print_json};
use aloft_types::ApiError;
use aloft_types::api::CreateAppRequest;
use anyhow::{Result, bail};
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Create an app. Its name is a DNS label: lowercase letters, digits and dashes.
    Create {
        name: String,
        /// The org that owns the app [default: the token's org].
        #[arg(long, value_name = "SLUG")]
        org: Option<String>,
    },
    /// List the apps of your org.
    #[command(visible_alias = "ls")]
    List {
        /// Only this org's apps (your token's org; `aloft orgs list` shows it).
        #[arg(long, short = 'o', value_name = "SLUG")]
        org: Option<String>,
    },
    /// Destroy an app and all its machines.
    Destroy {
        name: String,
        /// Do not ask for confirmation (needed when stdin is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

pub async fn run(cmd: AppsCommand, ctx: &Ctx) -> Result<ExitCode> {
    match cmd {
        AppsCommand::Create { name, org } => create(ctx, name, org).await,
        AppsCommand::List { org } => list(ctx, org.as_deref()).await,
        AppsCommand::Destroy { name, yes } => destroy(ctx, &name, yes).await,
    }
}

async fn create(ctx: &Ctx, name: String, org: Option<String>) -> Result<ExitCode> {
    let client = ctx.client()?;
    let req = CreateAppRequest {
        app_name: name,
        org_slug: org,
        network: None,
    };
    let app = client.create_app(&req).await?;
    if ctx.json {
        print_json(&app)?;
    } else {
        println!(
            "Created app `{}` in org {}. Run a machine in it with `aloft machine run IMAGE -a {}`.",
            app.name, app.organization.slug, app.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(ctx: &Ctx, org: Option<&str>) -> Result<ExitCode> {
    let list = ctx.client()?.list_apps_in(org).await?;
    if ctx.json {
        print_json(&list.apps)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&["NAME", "ORG", "STATUS", "MACHINES", "CREATED"]);
    for app in &list.apps {
        table.row(vec![
            app.name.clone(),
            app.organization.slug.clone(),
            app.status.clone(),
            app.machine_count.to_string(),
            app.created_at.clone(),
        ]);
    }
    table.print("No apps yet; create one with `aloft apps create NAME`.");
    Ok(ExitCode::SUCCESS)
}

async fn destroy(ctx: &Ctx, name: &str, yes: bool) -> Result<ExitCode> {
    let question = format!("Destroy app `{name}` and all its machines? This cannot be undone.");
    let refusal = format!(
        "refusing to destroy app `{name}` without confirmation: stdin is not a terminal; pass --yes to destroy it"
    );
    if !yes && !crate::output::confirm(&question, &refusal)? {
        bail!("not destroying app `{name}`");
    }
    let client = ctx.client()?;
    match client.destroy_app(name).await {
        Ok(()) => {}
        Err(ClientError::Api(ApiError::NotFound(_))) => {
            let next = "there is nothing to destroy";
            return Err(crate::machine::app_missing_then(&client, name, next).await);
        }
        Err(e) => return Err(e.into()),
    }
    if ctx.json {
        print_json(&serde_json::json!({ "ok": true, "app": name }))?;
    } else {
        println!("Destroyed app `{name}`.");
    }
    Ok(ExitCode::SUCCESS)
}
