//! `aloft volumes create|list|show|update|extend|destroy|snapshots`: persistent storage that lives on one
//! host, encrypted at rest, mounted by one machine at a time (`[[mounts]]` in fly.toml, or
//! `config.mounts` of a machine).

use crate::Ctx;
use crate::client::Client;
use crate::machine::{AppArg, explain_app_error};
use crate::output::{Table, megabytes, print_json};
use aloft_types::api::{CreateVolumeRequest, UpdateVolumeRequest, Volume, VolumeSnapshot};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum VolumesCommand {
    /// Create a volume on a host of the region.
    Create {
        /// Letters, digits and underscores (what `[[mounts]] source` names).
        name: String,
        #[arg(long, short)]
        region: String,
        /// Size in GB (1-500).
        #[arg(long, short, default_value_t = 1)]
        size: u32,
        /// Days each snapshot is kept (1-60; default 5).
        #[arg(long)]
        snapshot_retention: Option<u32>,
        /// Only on a host without another volume of this name (refused when the region has
        /// none); `--require-unique-zone=false` lets it share one.
        #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
        require_unique_zone: bool,
        #[command(flatten)]
        app: AppArg,
    },
    /// List the app's volumes.
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        app: AppArg,
    },
    /// Show one volume.
    Show {
        id: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// Change a volume's snapshot settings.
    Update {
        id: String,
        /// Days each new snapshot is kept (1-60; snapshots taken before keep theirs).
        #[arg(long)]
        snapshot_retention: Option<u32>,
        /// Whether scheduled snapshots are wanted (stored; aloft takes snapshots only when
        /// asked: `aloft volumes snapshots create`).
        #[arg(long, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
        scheduled_snapshots: Option<bool>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Grow a volume (the machine mounting it sees the new size after a restart).
    Extend {
        id: String,
        /// The new size in GB.
        #[arg(long, short)]
        size: u32,
        #[command(flatten)]
        app: AppArg,
    },
    /// Destroy a volume and its snapshots: its data is gone for good.
    #[command(alias = "rm")]
    Destroy {
        id: String,
        /// Do not ask (needed when stdin is not a terminal).
        #[arg(long, short)]
        yes: bool,
        #[command(flatten)]
        app: AppArg,
    },
    /// Take and list snapshots (copies kept on the volume's host).
    #[command(subcommand)]
    Snapshots(SnapshotsCommand),
}

#[derive(Debug, Subcommand)]
pub enum SnapshotsCommand {
    /// Take a snapshot of a volume now.
    Create {
        volume: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// List a volume's snapshots.
    #[command(alias = "ls")]
    List {
        volume: String,
        #[command(flatten)]
        app: AppArg,
    },
}

pub async fn run(command: VolumesCommand, ctx: &Ctx) -> Result<ExitCode> {
    match command {
        VolumesCommand::Create {
            name,
            region,
            size,
            snapshot_retention,
            require_unique_zone,
            app,
        } => {
            let app = ctx.app_of(&app)?;
            let req = CreateVolumeRequest {
                name,
                region,
                size_gb: Some(size),
                snapshot_retention,
                require_unique_zone: Some(require_unique_zone),
                ..Default::default()
            };
            let v = match ctx.client()?.create_volume(&app, &req).await {
                Ok(v) => v,
                Err(e) => return Err(explain_app_error(ctx, &app, e).await),
            };
            show(
                ctx,
                &v,
                &format!(
                    "Created volume {} ({}, {} GB, encrypted) in {} on host {}.",
                    v.id, v.name, v.size_gb, v.region, v.zone
                ),
            )
        }
        VolumesCommand::List { app } => {
            let app = ctx.app_of(&app)?;
            let list = match ctx.client()?.volumes(&app).await {
                Ok(l) => l,
                Err(e) => return Err(explain_app_error(ctx, &app, e).await),
            };
            if ctx.json {
                print_json(&list)?;
            } else {
                volume_table(&list).print(&format!(
                    "App `{app}` has no volumes; create one with `aloft volumes create data --region REGION -a {app}`."
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        VolumesCommand::Show { id, app } => {
            let app = ctx.app_of(&app)?;
            let v = ctx.client()?.volume(&app, &id).await?;
            show(ctx, &v, "")
        }
        VolumesCommand::Update {
            id,
            snapshot_retention,
            scheduled_snapshots,
            app,
        } => {
            if snapshot_retention.is_none() && scheduled_snapshots.is_none() {
                bail!(
                    "nothing to change: pass --snapshot-retention DAYS and/or --scheduled-snapshots=true|false"
                );
            }
            let app = ctx.app_of(&app)?;
            let req = UpdateVolumeRequest {
                snapshot_retention,
                auto_backup_enabled: scheduled_snapshots,
            };
            let v = ctx.client()?.update_volume(&app, &id, &req).await?;
            show(ctx, &v, &format!("Updated volume {}.", v.id))
        }
        VolumesCommand::Extend { id, size, app } => {
            let app = ctx.app_of(&app)?;
            let r = ctx.client()?.extend_volume(&app, &id, size).await?;
            if ctx.json {
                print_json(&r)?;
            } else {
                println!("Volume {id} is now {} GB.", r.volume.size_gb);
                if let Some(m) = r
                    .volume
                    .attached_machine_id
                    .as_deref()
                    .filter(|_| r.needs_restart)
                {
                    println!(
                        "Machine {m} sees the new size after a restart: aloft machine restart {m} -a {app}"
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        VolumesCommand::Destroy { id, yes, app } => {
            let app = ctx.app_of(&app)?;
            if !yes {
                confirm(&format!(
                    "Destroy volume {id} of {app} and its snapshots? Its data cannot be recovered."
                ))?;
            }
            let v = ctx.client()?.destroy_volume(&app, &id).await?;
            show(ctx, &v, &format!("Destroyed volume {} ({}).", v.id, v.name))
        }
        VolumesCommand::Snapshots(SnapshotsCommand::Create { volume, app }) => {
            let app = ctx.app_of(&app)?;
            let s = ctx.client()?.create_snapshot(&app, &volume).await?;
            if ctx.json {
                print_json(&s)?;
            } else {
                println!(
                    "Snapshot {} of volume {volume} taken ({} MB).",
                    s.id,
                    megabytes(s.size)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        VolumesCommand::Snapshots(SnapshotsCommand::List { volume, app }) => {
            let app = ctx.app_of(&app)?;
            let list = ctx.client()?.snapshots(&app, &volume).await?;
            if ctx.json {
                print_json(&list)?;
            } else {
                snapshot_table(&list).print(&format!(
                    "Volume {volume} has no snapshots; take one with `aloft volumes snapshots create {volume} -a {app}`."
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One volume: `line` then its table, or JSON.
fn show(ctx: &Ctx, v: &Volume, line: &str) -> Result<ExitCode> {
    if ctx.json {
        print_json(v)?;
    } else {
        if !line.is_empty() {
            println!("{line}");
        }
        volume_table(std::slice::from_ref(v)).print("");
        if v.state == "destroying" {
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "Snapshots are kept {} days; scheduled snapshots {} (aloft takes snapshots when asked: aloft volumes snapshots create {} -a {}).",
            v.snapshot_retention,
            if v.auto_backup_enabled {
                "asked for"
            } else {
                "off"
            },
            v.id,
            v.app
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks on the terminal; refuses without one.
fn confirm(question: &str) -> Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        bail!("{question} Pass --yes to confirm (stdin is not a terminal).");
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("reading the answer")?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        bail!("not destroyed");
    }
    Ok(())
}

fn volume_table(list: &[Volume]) -> Table {
    let mut table = Table::new(&[
        "ID",
        "NAME",
        "SIZE",
        "REGION",
        "HOST",
        "ATTACHED VM",
        "CREATED",
    ]);
    for v in list {
        table.row(vec![
            v.id.clone(),
            v.name.clone(),
            format!("{}GB", v.size_gb),
            v.region.clone(),
            v.zone.clone(),
            v.attached_machine_id.clone().unwrap_or_default(),
            v.created_at.clone(),
        ]);
    }
    table
}

fn snapshot_table(list: &[VolumeSnapshot]) -> Table {
    let mut table = Table::new(&["ID", "SIZE (MB)", "CREATED"]);
    for s in list {
        table.row(vec![s.id.clone(), megabytes(s.size), s.created_at.clone()]);
    }
    table
}

/// A volume named `name` in `region` for a new machine: one of the app's that no machine mounts
/// and that is not in `taken`, else a new one of `size_gb` (said on stdout unless `quiet`).
pub(crate) async fn volume_for(
    client: &Client,
    app: &str,
    name: &str,
    region: &str,
    size_gb: u32,
    taken: &[String],
    quiet: bool,
) -> Result<Volume> {
    let free = client.volumes(app).await?.into_iter().find(|v| {
        v.name == name
            && v.region == region
            && v.attached_machine_id.is_none()
            && !taken.contains(&v.id)
    });
    if let Some(v) = free {
        return Ok(v);
    }
    let req = CreateVolumeRequest {
        name: name.to_string(),
        region: region.to_string(),
        size_gb: Some(size_gb),
        ..Default::default()
    };
    let v = client
        .create_volume(app, &req)
        .await
        .with_context(|| format!("creating volume `{name}` in {region}"))?;
    if !quiet {
        println!(
            "  created volume {} ({name}, {} GB) in {region} on host {}",
            v.id, v.size_gb, v.zone
        );
    }
    Ok(v)
}
