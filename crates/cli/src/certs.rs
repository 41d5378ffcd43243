//! `aloft certs add|import|list|show|check|remove`: hostnames an app is served at over HTTPS
//! (and HTTP), with a managed certificate (from the platform's issuer: the development CA, for
//! reserved names) or the user's own, through the reference's routes (`fly certs` habits).

use crate::Ctx;
use crate::machine::{AppArg, explain_app_error};
use crate::output::{Table, print_fields, print_json};
use aloft_types::certificates::{
    CertificateDetailResponse, CertificateSummary, ImportCertificateRequest, ListCertificatesQuery,
};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Serve the app at HOSTNAME too, with a managed certificate (from the development CA:
    /// `<data-dir>/proxy/ca.pem` in `dev up`). With --cert and --key, the same as `import`.
    Add(AddArgs),
    /// Serve the app at HOSTNAME too, with your own certificate and key.
    Import(ImportArgs),
    /// The hostnames the app is served at.
    #[command(visible_alias = "ls")]
    List {
        #[command(flatten)]
        app: AppArg,
    },
    /// HOSTNAME's certificates and their status.
    Show(HostArgs),
    /// Check HOSTNAME's certificates again (the custom one still loads, names the hostname and
    /// is valid now) and show them.
    Check(HostArgs),
    /// Stop serving the app at HOSTNAME (or remove only one of its certificates).
    #[command(visible_alias = "rm")]
    Remove(RemoveArgs),
}

#[derive(Debug, Args)]
pub struct HostArgs {
    /// e.g. `www.example.com`.
    hostname: String,
    #[command(flatten)]
    app: AppArg,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    #[command(flatten)]
    host: HostArgs,
    /// The certificate chain (PEM, leaf first): the same as `import --fullchain`.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// Its private key (PEM): the same as `import --private-key`.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    host: HostArgs,
    /// The certificate chain (PEM, leaf first).
    #[arg(long, value_name = "FILE")]
    fullchain: PathBuf,
    /// Its private key (PEM).
    #[arg(long, value_name = "FILE")]
    private_key: PathBuf,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    host: HostArgs,
    /// Remove only the custom certificate (a managed one stays).
    #[arg(long, conflicts_with = "acme")]
    custom: bool,
    /// Stop only the managed certificate (a custom one stays).
    #[arg(long)]
    acme: bool,
    /// Accepted for `fly certs remove` habits; nothing is asked.
    #[arg(long, short = 'y')]
    yes: bool,
}

pub async fn run(cmd: CertsCommand, ctx: &Ctx) -> Result<ExitCode> {
    match cmd {
        CertsCommand::Add(AddArgs {
            host,
            cert: Some(fullchain),
            key: Some(private_key),
        }) => {
            let args = ImportArgs {
                host,
                fullchain,
                private_key,
            };
            import(ctx, args).await
        }
        CertsCommand::Add(args) => add(ctx, args.host).await,
        CertsCommand::Import(args) => import(ctx, args).await,
        CertsCommand::List { app } => list(ctx, app).await,
        CertsCommand::Show(args) => show(ctx, args, false).await,
        CertsCommand::Check(args) => show(ctx, args, true).await,
        CertsCommand::Remove(args) => remove(ctx, args).await,
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

async fn add(ctx: &Ctx, args: HostArgs) -> Result<ExitCode> {
    let app = ctx.app_of(&args.app)?;
    let client = ctx.client()?;
    let detail = match client.request_certificate(&app, &args.hostname).await {
        Ok(d) => d,
        Err(e) => return Err(explain_app_error(ctx, &app, e).await),
    };
    if ctx.json {
        print_json(&detail)?;
        return Ok(ExitCode::SUCCESS);
    }
    let issuer = detail
        .certificates
        .iter()
        .find_map(|c| c.issuer.clone())
        .unwrap_or_else(|| "the platform".into());
    println!(
        "App `{app}` is served at {} too, over HTTPS with a managed certificate from the {issuer}. \
         Point its DNS at the proxy.",
        detail.hostname
    );
    Ok(ExitCode::SUCCESS)
}

async fn import(ctx: &Ctx, args: ImportArgs) -> Result<ExitCode> {
    let app = ctx.app_of(&args.host.app)?;
    let req = ImportCertificateRequest {
        hostname: args.host.hostname,
        fullchain: read(&args.fullchain)?,
        private_key: read(&args.private_key)?,
    };
    let client = ctx.client()?;
    let detail = match client.import_certificate(&app, &req).await {
        Ok(d) => d,
        Err(e) => return Err(explain_app_error(ctx, &app, e).await),
    };
    if ctx.json {
        print_json(&detail)?;
        return Ok(ExitCode::SUCCESS);
    }
    let expires = detail
        .certificates
        .iter()
        .find(|c| c.source == "custom")
        .and_then(|c| c.expires_at.clone())
        .unwrap_or_default();
    println!(
        "App `{app}` is served at {} too, over HTTPS with your certificate (valid until \
         {expires}). Point its DNS at the proxy.",
        detail.hostname
    );
    Ok(ExitCode::SUCCESS)
}

async fn list(ctx: &Ctx, app: AppArg) -> Result<ExitCode> {
    let app = ctx.app_of(&app)?;
    let client = ctx.client()?;
    let mut all: Vec<CertificateSummary> = Vec::new();
    let mut query = ListCertificatesQuery {
        limit: Some(1000),
        ..Default::default()
    };
    loop {
        let page = match client.certificates(&app, &query).await {
            Ok(p) => p,
            Err(e) => return Err(explain_app_error(ctx, &app, e).await),
        };
        all.extend(page.certificates);
        match page.next_cursor {
            Some(next) => query.cursor = Some(next),
            None => break,
        }
    }
    if ctx.json {
        print_json(&all)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&["HOSTNAME", "SOURCE", "STATUS", "ADDED"]);
    for c in &all {
        let source = match (c.has_custom_certificate, c.acme_requested) {
            (true, true) => "custom+managed",
            (true, false) => "custom",
            (false, true) => "managed",
            (false, false) => "-",
        };
        table.row(vec![
            c.hostname.clone(),
            source.into(),
            c.status.clone(),
            c.created_at.clone(),
        ]);
    }
    table.print(&format!(
        "App `{app}` is served at {app}.localhost only; add a hostname with `aloft certs add HOSTNAME -a {app}`."
    ));
    Ok(ExitCode::SUCCESS)
}

async fn show(ctx: &Ctx, args: HostArgs, check: bool) -> Result<ExitCode> {
    let app = ctx.app_of(&args.app)?;
    let client = ctx.client()?;
    let detail = match client.certificate(&app, &args.hostname, check).await {
        Ok(d) => d,
        Err(e) => return Err(explain_app_error(ctx, &app, e).await),
    };
    if ctx.json {
        print_json(&detail)?;
    } else {
        print_detail(&detail);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_detail(d: &CertificateDetailResponse) {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    let mut fields = vec![
        ("Hostname", d.hostname.clone()),
        ("Status", d.status.clone()),
        ("Managed requested", yes_no(d.acme_requested)),
    ];
    for c in &d.certificates {
        let name = if c.source == "custom" {
            "Custom certificate"
        } else {
            "Managed certificate"
        };
        let mut text = c.status.clone();
        if let Some(issuer) = &c.issuer {
            text.push_str(&format!(", from the {issuer}"));
        }
        if let Some(expires) = &c.expires_at {
            text.push_str(&format!(", valid until {expires}"));
        }
        fields.push((name, text));
    }
    print_fields(&fields);
    for e in &d.validation_errors {
        println!("{}\n  {}", e.message, e.remediation);
    }
}

async fn remove(ctx: &Ctx, args: RemoveArgs) -> Result<ExitCode> {
    let app = ctx.app_of(&args.host.app)?;
    let hostname = &args.host.hostname;
    let (part, done) = if args.custom {
        (
            Some("custom"),
            format!("The custom certificate of {hostname} is removed from app `{app}`."),
        )
    } else if args.acme {
        (
            Some("acme"),
            format!("The managed certificate of {hostname} is stopped on app `{app}`."),
        )
    } else {
        (
            None,
            format!("App `{app}` is no longer served at {hostname}."),
        )
    };
    let client = ctx.client()?;
    if let Err(e) = client.remove_certificate(&app, hostname, part).await {
        return Err(explain_app_error(ctx, &app, e).await);
    }
    if !ctx.json {
        println!("{done}");
    }
    Ok(ExitCode::SUCCESS)
}
