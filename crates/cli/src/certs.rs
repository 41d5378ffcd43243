//! `aloft certs add|list|remove`: hostnames an app is served at over HTTPS (and HTTP), with the
//! user's certificate or one from the platform's development CA.

use crate::Ctx;
use crate::machine::{AppArg, explain_app_error};
use crate::output::{Table, print_json};
use aloft_types::api::CreateCertificateRequest;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Serve the app at HOSTNAME too. With --cert and --key, over HTTPS with that certificate;
    /// without, with one from the development CA (`<data-dir>/proxy/ca.pem` in `dev up`).
    Add(AddArgs),
    /// The hostnames the app is served at.
    #[command(visible_alias = "ls")]
    List {
        #[command(flatten)]
        app: AppArg,
    },
    /// Stop serving the app at HOSTNAME.
    #[command(visible_alias = "rm")]
    Remove {
        hostname: String,
        #[command(flatten)]
        app: AppArg,
    },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// e.g. `www.example.com`.
    hostname: String,
    #[command(flatten)]
    app: AppArg,
    /// The certificate chain (PEM, leaf first).
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
}

pub async fn run(cmd: CertsCommand, ctx: &Ctx) -> Result<ExitCode> {
    match cmd {
        CertsCommand::Add(args) => add(ctx, args).await,
        CertsCommand::List { app } => list(ctx, app).await,
        CertsCommand::Remove { hostname, app } => remove(ctx, &hostname, app).await,
    }
}

fn read(path: &Option<PathBuf>) -> Result<Option<String>> {
    path.as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
        .transpose()
}

async fn add(ctx: &Ctx, args: AddArgs) -> Result<ExitCode> {
    let app = ctx.app_of(&args.app)?;
    let req = CreateCertificateRequest {
        hostname: args.hostname,
        certificate: read(&args.cert)?,
        private_key: read(&args.key)?,
    };
    let client = ctx.client()?;
    let cert = match client.add_certificate(&app, &req).await {
        Ok(c) => c,
        Err(e) => return Err(explain_app_error(ctx, &app, e).await),
    };
    if ctx.json {
        print_json(&cert)?;
    } else {
        let how = if cert.source == "uploaded" {
            "with your certificate"
        } else {
            "with a certificate from the development CA"
        };
        println!(
            "App `{app}` is served at {} too, over HTTPS {how}. Point its DNS at the proxy.",
            cert.hostname
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(ctx: &Ctx, app: AppArg) -> Result<ExitCode> {
    let app = ctx.app_of(&app)?;
    let client = ctx.client()?;
    let certs = match client.certificates(&app).await {
        Ok(c) => c,
        Err(e) => return Err(explain_app_error(ctx, &app, e).await),
    };
    if ctx.json {
        print_json(&certs)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&["HOSTNAME", "SOURCE", "ADDED"]);
    for c in &certs {
        table.row(vec![
            c.hostname.clone(),
            c.source.clone(),
            c.created_at.clone(),
        ]);
    }
    table.print(&format!(
        "App `{app}` is served at {app}.localhost only; add a hostname with `aloft certs add HOSTNAME -a {app}`."
    ));
    Ok(ExitCode::SUCCESS)
}

async fn remove(ctx: &Ctx, hostname: &str, app: AppArg) -> Result<ExitCode> {
    let app = ctx.app_of(&app)?;
    let client = ctx.client()?;
    if let Err(e) = client.remove_certificate(&app, hostname).await {
        return Err(explain_app_error(ctx, &app, e).await);
    }
    if !ctx.json {
        println!("App `{app}` is no longer served at {hostname}.");
    }
    Ok(ExitCode::SUCCESS)
}
