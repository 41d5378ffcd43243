//! `aloft registry gc`: garbage collection of the registry, run inside the registry process
//! (`POST /internal/v1/registry/gc`, behind the cluster's internal token) so it takes the same
//! lock as pushes. The registry itself is served by the node roles (`aloft dev up`,
//! `aloft server control|registry`).

use crate::Ctx;
use crate::output::{Table, print_json};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::process::ExitCode;

pub(crate) use aloft_types::datadir::{DEFAULT_REGISTRY_URL, REGISTRY_URL_FILE};

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
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

pub async fn run(cmd: RegistryCommand, ctx: &Ctx) -> Result<ExitCode> {
    let RegistryCommand::Gc(args) = cmd;
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
