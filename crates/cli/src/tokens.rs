//! `aloft tokens create deploy|org`, `aloft tokens list` and `aloft tokens revoke ID...`: the
//! org's API tokens, modelled on flyctl's deploy tokens. A deploy token reaches one app (its
//! machines, secrets, volumes, certificates, releases and registry repository); an org token
//! reaches the whole org. The token is printed once, alone on stdout, so it can be captured:
//! `ALOFT_API_TOKEN=$(aloft tokens create deploy -a web)`.

use crate::Ctx;
use crate::machine::{AppArg, explain_app_error};
use crate::output::{Table, print_json};
use aloft_types::api::{CreateTokenRequest, ListTokensQuery, TokenInfo, TokenScope};
use anyhow::{Result, anyhow};
use clap::{Args, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

/// flyctl's default expiry for tokens: 20 years.
const DEFAULT_EXPIRY: &str = "175200h";

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token; it is printed once and cannot be shown again.
    #[command(subcommand)]
    Create(CreateCommand),
    /// List the org's tokens (ids, names, scopes, expiry; never the tokens).
    List {
        /// Only the deploy tokens of this app.
        #[arg(short = 'a', long = "app", value_name = "APP")]
        app: Option<String>,
    },
    /// Revoke tokens by id (from `aloft tokens list`); they stop working at once.
    Revoke {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CreateCommand {
    /// A deploy token: one app's machines, secrets, volumes, releases and registry repository.
    Deploy {
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        opts: CreateOpts,
    },
    /// An org token: every app of the org, new apps and tokens.
    Org {
        #[command(flatten)]
        opts: CreateOpts,
    },
}

#[derive(Debug, Args)]
pub struct CreateOpts {
    /// What the token is for (shown in `aloft tokens list`).
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    name: Option<String>,
    /// How long until it expires, e.g. 720h, 30d, 1h30m.
    #[arg(short = 'x', long = "expiry", value_name = "DURATION", default_value = DEFAULT_EXPIRY)]
    expiry: String,
}

pub async fn run(command: TokensCommand, ctx: &Ctx) -> Result<ExitCode> {
    match command {
        TokensCommand::Create(CreateCommand::Deploy { app, opts }) => {
            let app = ctx.app_of(&app)?;
            create(ctx, TokenScope::Deploy, Some(app), opts).await
        }
        TokensCommand::Create(CreateCommand::Org { opts }) => {
            create(ctx, TokenScope::Org, None, opts).await
        }
        TokensCommand::List { app } => list(ctx, app).await,
        TokensCommand::Revoke { ids } => revoke(ctx, &ids).await,
    }
}

/// `720h` -> seconds (at least one).
fn expiry_secs(text: &str) -> Result<u64> {
    let d: Duration = humantime::parse_duration(text).map_err(|e| {
        anyhow!("--expiry `{text}` is not a duration ({e}): write it like 720h, 30d or 1h30m")
    })?;
    if d.as_secs() == 0 {
        return Err(anyhow!(
            "--expiry `{text}` is less than a second: give a duration like 720h"
        ));
    }
    Ok(d.as_secs())
}

async fn create(
    ctx: &Ctx,
    scope: TokenScope,
    app: Option<String>,
    opts: CreateOpts,
) -> Result<ExitCode> {
    let req = CreateTokenRequest {
        name: opts.name,
        scope,
        app: app.clone(),
        expiry_secs: Some(expiry_secs(&opts.expiry)?),
    };
    let client = ctx.client()?;
    let created = match (client.create_token(&req).await, &app) {
        (Ok(c), _) => c,
        (Err(e), Some(app)) => return Err(explain_app_error(ctx, app, e).await),
        (Err(e), None) => return Err(e.into()),
    };
    if ctx.json {
        print_json(&created)?;
    } else {
        let info = &created.info;
        let what = match &info.app {
            Some(app) => format!("deploy token for app `{app}`"),
            None => "org token".to_string(),
        };
        let expires = info.expires_at.as_deref().unwrap_or("never");
        eprintln!(
            "Created {what} `{}` (id {}), expires {expires}. It is shown only this once; \
             revoke it with `aloft tokens revoke {}`.",
            info.name, info.id, info.id
        );
        println!("{}", created.token);
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(ctx: &Ctx, app: Option<String>) -> Result<ExitCode> {
    let query = ListTokensQuery { app: app.clone() };
    let client = ctx.client()?;
    let tokens = match (client.list_tokens(&query).await, &app) {
        (Ok(t), _) => t,
        (Err(e), Some(app)) => return Err(explain_app_error(ctx, app, e).await),
        (Err(e), None) => return Err(e.into()),
    };
    if ctx.json {
        print_json(&tokens)?;
    } else {
        table(&tokens).print("No tokens; create one with `aloft tokens create deploy -a APP`.");
    }
    Ok(ExitCode::SUCCESS)
}

fn table(tokens: &[TokenInfo]) -> Table {
    let mut table = Table::new(&["ID", "NAME", "SCOPE", "APP", "CREATED", "EXPIRES"]);
    for t in tokens {
        let scope = match t.scope {
            TokenScope::Org => "org",
            TokenScope::Deploy => "deploy",
        };
        let expires = match (&t.expires_at, t.expired) {
            (Some(at), true) => format!("{at} (expired)"),
            (Some(at), false) => at.clone(),
            (None, _) => "never".into(),
        };
        table.row(vec![
            t.id.clone(),
            t.name.clone(),
            scope.into(),
            t.app.clone().unwrap_or_default(),
            t.created_at.clone(),
            expires,
        ]);
    }
    table
}

/// Revokes every id given; the ones that fail are named at the end (non-zero exit).
async fn revoke(ctx: &Ctx, ids: &[String]) -> Result<ExitCode> {
    let client = ctx.client()?;
    let mut failed = Vec::new();
    for id in ids {
        match client.revoke_token(id).await {
            Ok(()) if !ctx.json => println!("Revoked token {id}."),
            Ok(()) => {}
            Err(e) => failed.push(format!("{id}: {e}")),
        }
    }
    if ctx.json {
        let revoked: Vec<&String> = ids
            .iter()
            .filter(|id| !failed.iter().any(|f| f.starts_with(&format!("{id}:"))))
            .collect();
        print_json(&serde_json::json!({ "revoked": revoked }))?;
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(anyhow!("not revoked: {}", failed.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_read_like_flyctls() {
        assert_eq!(expiry_secs("720h").unwrap(), 720 * 3600);
        assert_eq!(expiry_secs("1h30m").unwrap(), 5400);
        assert_eq!(expiry_secs(DEFAULT_EXPIRY).unwrap(), 175_200 * 3600);
        assert!(
            expiry_secs("soon")
                .unwrap_err()
                .to_string()
                .contains("720h")
        );
        assert!(expiry_secs("0s").is_err());
    }
}
