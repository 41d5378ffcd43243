//! `aloft registry gc`: garbage collection of the registry, run inside the registry process
//! (`POST /internal/v1/registry/gc`, behind the cluster's internal token) so it takes the same
//! lock as pushes. The registry itself is served by the node roles (`aloft dev up`,
//! `aloft server control|registry`).
//!
//! `aloft registry login|logout|list`: the org's logins to third-party registries, modelled on
//! `docker login` (the password only from stdin, never as an argument), stored in the control
//! plane (`/v1/registry-logins`) and used by the org's machines for pulls from exactly that host.

use crate::Ctx;
use crate::output::{Table, print_json};
use aloft_types::api::RegistryLoginRequest;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::process::ExitCode;

pub(crate) use aloft_types::datadir::{DEFAULT_REGISTRY_URL, REGISTRY_URL_FILE};

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Store the org's username and password (or access token) for a third-party registry
    /// (e.g. ghcr.io); the org's machines pull images from exactly that host with them.
    Login(LoginArgs),
    /// Forget the org's login for a registry host: pulls from it are anonymous again.
    Logout {
        /// The registry host (and port), as in image references.
        host: String,
    },
    /// The org's registry logins: hosts and usernames, never passwords.
    List,
    /// Delete blobs no manifest references (never one a manifest references; blobs younger than
    /// an hour are kept so pushes in progress are safe).
    Gc(GcArgs),
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Report what would be deleted without deleting it.
    #[arg(long)]
    dry_run: bool,
    /// The registry [default: <dev data dir>/registry-url, else http://127.0.0.1:5000].
    #[arg(long, value_name = "URL")]
    registry: Option<String>,
}

/// `aloft registry login HOST --username U --password-stdin`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry host (and port), as in image references: `ghcr.io`, `registry.example.com:5000`.
    host: String,
    #[arg(short = 'u', long = "username", value_name = "USER")]
    username: String,
    /// Read the password (or access token) from stdin, e.g.
    /// `echo "$GHCR_TOKEN" | aloft registry login ghcr.io -u me --password-stdin`.
    #[arg(long)]
    password_stdin: bool,
}

pub async fn run(cmd: RegistryCommand, ctx: &Ctx) -> Result<ExitCode> {
    match cmd {
        RegistryCommand::Gc(args) => gc(args, ctx).await,
        RegistryCommand::Login(args) => login(args, ctx).await,
        RegistryCommand::Logout { host } => {
            ctx.client()?.registry_logout(&host).await?;
            if ctx.json {
                print_json(&serde_json::json!({ "removed": host }))?;
            } else {
                println!("Removed the org's login for {host}.");
            }
            Ok(ExitCode::SUCCESS)
        }
        RegistryCommand::List => {
            let logins = ctx.client()?.registry_logins().await?;
            if ctx.json {
                print_json(&logins)?;
            } else {
                let mut table = Table::new(&["HOST", "USERNAME", "STORED"]);
                for l in logins {
                    table.row(vec![l.host, l.username, l.created_at]);
                }
                table.print(
                    "No registry logins; add one with `aloft registry login HOST -u USER --password-stdin`.",
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The password as read from stdin: without its trailing line break (as `docker login`).
fn password_from(input: &str) -> Result<String> {
    let password = input.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        bail!(
            "no password on stdin: pipe it in, e.g. `echo \"$TOKEN\" | aloft registry login HOST -u USER --password-stdin`"
        );
    }
    Ok(password.to_string())
}

async fn login(args: LoginArgs, ctx: &Ctx) -> Result<ExitCode> {
    if !args.password_stdin {
        bail!(
            "give the password on stdin, never as an argument: `echo \"$TOKEN\" | aloft registry login {} -u {} --password-stdin`",
            args.host,
            args.username
        );
    }
    let mut input = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut input)
        .context("cannot read the password from stdin")?;
    let req = RegistryLoginRequest {
        username: args.username,
        password: password_from(&input)?,
    };
    let stored = ctx.client()?.registry_login(&args.host, &req).await?;
    if ctx.json {
        print_json(&stored)?;
    } else {
        println!(
            "Stored the org's login for {} (user {}); machines pull images on {} with it.",
            stored.host, stored.username, stored.host
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn gc(args: GcArgs, ctx: &Ctx) -> Result<ExitCode> {
    let url = args.registry.unwrap_or_else(|| ctx.registry_url());
    let internal_token = ctx.env.internal_token(ctx.data_dir.as_deref())?;
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/internal/v1/registry/gc?dry_run={}",
            url.trim_end_matches('/'),
            args.dry_run
        ))
        .bearer_auth(internal_token)
        .send()
        .await
        .with_context(|| {
            format!("cannot reach the registry at {url}: is `aloft dev up` running? (pass --registry to use another)")
        })?;
    let status = resp.status();
    let body: serde_json::Value = resp
        .json()
        .await
        .with_context(|| format!("the registry at {url} sent a reply that is not JSON"))?;
    if !status.is_success() {
        bail!(
            "registry GC failed ({status}): {}",
            body["error"].as_str().unwrap_or("no reason given")
        );
    }
    if ctx.json {
        print_json(&body)?;
    } else {
        let n = |k: &str| body[k].to_string();
        let mut table = Table::new(&[
            "MANIFESTS",
            "BLOBS KEPT",
            "KEPT (YOUNG)",
            "DELETED",
            "BYTES FREED",
        ]);
        table.row(vec![
            n("manifests"),
            n("blobs_referenced"),
            n("blobs_young"),
            n("blobs_deleted"),
            n("bytes_deleted"),
        ]);
        table.print("");
        if args.dry_run {
            println!("(dry run: nothing was deleted)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::password_from;

    #[test]
    fn the_password_loses_only_its_line_break() {
        assert_eq!(password_from("s3cret\n").unwrap(), "s3cret");
        assert_eq!(password_from("s3 cret\r\n").unwrap(), "s3 cret");
        assert!(password_from("\n").is_err());
    }
}
