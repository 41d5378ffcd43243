//! `aloft secrets set|unset|list`: values machines get as environment variables, kept encrypted
//! by the control plane and listed by name and digest only. Without `--stage`, the app's started
//! machines are restarted one at a time (each started again before the next) so that they get
//! the change; with it, machines get it at their next start or deploy.

use crate::Ctx;
use crate::machine::{AppArg, Scope, WaitFailure, explain_app_error};
use crate::output::{Table, print_json};
use aloft_types::MachineState;
use aloft_types::api::{AppSecrets, ListMachinesQuery, RestartQuery, Secret, SetSecretsRequest};
use anyhow::{Result, anyhow, bail};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Set secrets: NAME=VALUE ... (`NAME=-` reads the value from stdin).
    Set {
        #[arg(required = true, value_name = "NAME=VALUE")]
        pairs: Vec<String>,
        #[command(flatten)]
        change: Change,
    },
    /// Remove secrets by name.
    Unset {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        #[command(flatten)]
        change: Change,
    },
    /// List the app's secrets: names and digests, never values.
    List {
        #[command(flatten)]
        app: AppArg,
    },
}

#[derive(Debug, Args)]
pub struct Change {
    /// Store the change only: machines get it at their next start or deploy.
    #[arg(long)]
    stage: bool,
    #[command(flatten)]
    app: AppArg,
}

pub async fn run(command: SecretsCommand, ctx: &Ctx) -> Result<ExitCode> {
    match command {
        SecretsCommand::Set { pairs, change } => {
            let secrets = parse_pairs(&pairs)?;
            let names: Vec<String> = secrets.keys().cloned().collect();
            let values = secrets.into_iter().map(|(k, v)| (k, Some(v))).collect();
            let (app, now) = update(ctx, &change, values).await?;
            if !ctx.json {
                println!("Set {} on {app}.", names.join(", "));
            }
            apply(ctx, app, change.stage, now).await
        }
        SecretsCommand::Unset { names, change } => {
            let values = names.iter().map(|n| (n.clone(), None)).collect();
            let (app, now) = update(ctx, &change, values).await?;
            if !ctx.json {
                println!("Removed {} from {app}.", names.join(", "));
            }
            apply(ctx, app, change.stage, now).await
        }
        SecretsCommand::List { app } => {
            let app = ctx.app_of(&app)?;
            let list = match ctx.client()?.secrets(&app).await {
                Ok(l) => l.secrets,
                Err(e) => return Err(explain_app_error(ctx, &app, e).await),
            };
            if ctx.json {
                print_json(&list)?;
            } else {
                table(&list).print(&format!(
                    "App `{app}` has no secrets; set one with `aloft secrets set NAME=VALUE -a {app}`."
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Sends `values` (a `None` removes that secret) to the app of `change`, all or none: its name
/// and its secrets now.
async fn update(
    ctx: &Ctx,
    change: &Change,
    values: BTreeMap<String, Option<String>>,
) -> Result<(String, AppSecrets)> {
    let app = ctx.app_of(&change.app)?;
    let req = SetSecretsRequest { values };
    match ctx.client()?.update_secrets(&app, &req).await {
        Ok(now) => Ok((app, now)),
        Err(e) => Err(explain_app_error(ctx, &app, e).await),
    }
}

/// `NAME=VALUE` pairs; `NAME=-` takes the value from stdin (once).
fn parse_pairs(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut stdin_used = false;
    for pair in pairs {
        let (name, value) = pair.split_once('=').ok_or_else(|| {
            anyhow!("`{pair}` is not NAME=VALUE: write it like DATABASE_URL=postgres://...")
        })?;
        let value = if value == "-" {
            if stdin_used {
                bail!("only one secret can read its value from stdin (`NAME=-`)");
            }
            stdin_used = true;
            let mut v = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut v)?;
            v.trim_end_matches('\n').to_string()
        } else {
            value.to_string()
        };
        if out.insert(name.to_string(), value).is_some() {
            bail!("{name} is given twice: give each secret once");
        }
    }
    Ok(out)
}

fn table(list: &[Secret]) -> Table {
    let mut table = Table::new(&["NAME", "DIGEST", "SET"]);
    for s in list {
        table.row(vec![s.name.clone(), s.digest.clone(), s.updated_at.clone()]);
    }
    table
}

/// After a change: restart the app's started machines one at a time, unless staged.
async fn apply(ctx: &Ctx, app: String, stage: bool, now: AppSecrets) -> Result<ExitCode> {
    let scope = Scope::for_app(ctx.client()?, app.clone());
    let machines = scope
        .client
        .list_machines(&app, &ListMachinesQuery::default())
        .await?
        .machines;
    let started: Vec<String> = machines
        .iter()
        .filter(|m| m.state == MachineState::Started)
        .map(|m| m.id.to_string())
        .collect();
    let mut restarted = Vec::new();
    if stage {
        if !ctx.json {
            println!(
                "Staged: machines get it at their next start or deploy (`aloft deploy`, or `aloft machine restart ID -a {app}`)."
            );
        }
    } else {
        for id in &started {
            if !ctx.json {
                println!("  restarting machine {id} with the new secrets");
            }
            scope
                .client
                .restart(&app, id, &RestartQuery::default())
                .await?;
            match scope
                .await_state(id, MachineState::Started, Duration::from_secs(300))
                .await
            {
                Ok(_) => restarted.push(id.clone()),
                Err(WaitFailure::NotReached(m)) => bail!(
                    "machine {id} is {} after its restart, not started: see `aloft logs -a {app} -m {id}`",
                    m.state.as_str()
                ),
                Err(WaitFailure::Error(e)) => return Err(e),
            }
        }
    }
    if ctx.json {
        print_json(
            &serde_json::json!({"app": app, "secrets": now.secrets, "version": now.version,
                "staged": stage, "restarted": restarted}),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
