//! `aloft deploy`: the app's config (`fly.toml`) applied to its machines, process group by
//! process group, as a new release (`aloft releases`). A group without machines gets one in the
//! primary region; a group's machines are updated a batch at a time (`rolling`: `[deploy]
//! max_unavailable` of them, never all of a group of two or more, each batch started and passing
//! its checks before the next) or all at once (`immediate`). Each machine is leased while it
//! changes, and the lease is released whatever happens, Ctrl-C included.
//!
//! When a step fails (an update refused, a machine that does not start or whose checks do not
//! pass within `wait_timeout`), the machines the deploy changed go back to their previous config
//! and the ones it created are destroyed: the release is `rolled_back` and the app keeps serving
//! the previous one. The app's first release has nothing to go back to: it is `failed`, and its
//! machines stay for their logs. Ctrl-C stops the deploy where it is (`interrupted`).
//!
//! The deploy is worked out first, with no I/O ([`plan`]: each group's config and what happens to
//! its machines), then carried out ([`execute`], machine by machine in [`steps`], with the
//! [`release_command`] and the [`leases`]), and what it did is printed ([`report`]).

mod execute;
mod leases;
mod plan;
mod release_command;
mod report;
mod steps;

pub(crate) use execute::{LEASE_TTL, update_each};
pub(crate) use plan::group_of;

use crate::Ctx;
use crate::app_config::{ConfigFile, load};
use crate::client::Client;
use crate::machine::Scope;
use aloft_appconfig::AppConfig;
use aloft_types::api::ListMachinesQuery;
use anyhow::{Result, anyhow, bail};
use clap::Args;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// The machine metadata key holding the release a machine runs (the reference's).
pub const RELEASE_VERSION_KEY: &str = "fly_release_version";

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub file: ConfigFile,
    /// The app (overrides the config's `app`).
    #[arg(short = 'a', long)]
    pub app: Option<String>,
    /// The image to deploy (default: the config's `[build] image`).
    #[arg(short = 'i', long)]
    pub image: Option<String>,
    /// `rolling`, `immediate`, `canary` or `bluegreen` (default: `[deploy] strategy`, else
    /// rolling).
    #[arg(long)]
    pub strategy: Option<String>,
    /// Where a process group without machines gets its first (default: `primary_region`).
    #[arg(short = 'r', long)]
    pub region: Option<String>,
    /// How long each machine has to start and pass its checks, e.g. `2m` (default:
    /// `[deploy] wait_timeout`, else 5m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub wait_timeout: Option<Duration>,
    /// How long each machine's lease lasts: the deploy refreshes it while it works, so a deploy
    /// that is killed leaves no lease for longer than this (as the reference's, default 13s).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "13s")]
    pub lease_timeout: Duration,
    /// Accept every confirmation (aloft does not ask; accepted as flyctl has it).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

pub async fn run(args: DeployArgs, ctx: &Ctx) -> Result<ExitCode> {
    let loaded = load(&args.file, args.app.clone())?;
    let (config, path) = (&loaded.config, loaded.path.as_path());
    let app = config
        .app
        .clone()
        .or_else(|| ctx.app(None).ok())
        .ok_or_else(|| {
            anyhow!(
                "no app to deploy: set `app` in {} or pass -a APP",
                path.display()
            )
        })?;
    let named_image = args
        .image
        .clone()
        .or_else(|| config.build.as_ref().and_then(|b| b.image.clone()));
    let strategy = plan::strategy(args.strategy.as_deref(), config)?;
    report::strategy(ctx.json, &app, &strategy);
    let client = ctx.client()?;
    let org = org_of(&client, &app).await?;
    let image = image_to_deploy(ctx, config, path, named_image, &org, &app)?;
    let scope = Scope::for_app(client, app.clone());
    let machines = scope
        .client
        .list_machines(&app, &ListMachinesQuery::default())
        .await?
        .machines;
    report::deploying(ctx.json, &app, &image, strategy.used, path);
    // Every group's config first: a config that cannot be applied stops the deploy before it
    // records a release or touches a machine.
    let plan = plan::plan(&plan::Inputs {
        config,
        path,
        app: &app,
        image: &image,
        machines: &machines,
        strategy: strategy.requested,
        region: args.region.clone(),
        wait_timeout: args.wait_timeout,
    })?;
    // The file as deployed, for `aloft config save` (`app` set to the app deployed to).
    let text = std::fs::read_to_string(path).ok();
    let deployed = text.and_then(|t| aloft_appconfig::load::set_app(&t, &app).ok());
    let release = (image.as_str(), deployed);
    let done = execute::execute(&scope, &plan, release, args.lease_timeout, ctx.json).await?;
    report::deployed(
        ctx.json,
        &app,
        &image,
        done.version,
        &plan,
        path,
        &done.steps,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The org of `app`, or the app-missing sentence when there is no such app.
async fn org_of(client: &Client, app: &str) -> Result<String> {
    Ok(crate::machine::get_app(client, app)
        .await?
        .organization
        .slug)
}

/// The image: named (--image, [build] image), else built from the Dockerfile ([build]
/// dockerfile, else one next to the config at `path`) and pushed to the app's repository.
fn image_to_deploy(
    ctx: &Ctx,
    config: &AppConfig,
    path: &Path,
    named: Option<String>,
    org: &str,
    app: &str,
) -> Result<String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let build = config.build.clone().unwrap_or_default();
    let dockerfile = match &build.dockerfile {
        Some(d) => Some(dir.join(d)),
        None => Some(dir.join("Dockerfile")).filter(|p| p.exists()),
    };
    Ok(match (named, dockerfile) {
        (Some(image), _) => image,
        (None, Some(dockerfile)) => {
            if !dockerfile.exists() {
                bail!(
                    "{}: [build] dockerfile {} does not exist",
                    path.display(),
                    dockerfile.display()
                );
            }
            let spec = crate::build::BuildSpec {
                dockerfile,
                context: dir.to_path_buf(),
                args: build
                    .args
                    .iter()
                    .map(|(k, v)| (k.clone(), v.0.clone()))
                    .collect(),
                target: build.build_target.as_deref(),
            };
            crate::build::build_and_push(ctx, &spec, org, app)?
        }
        (None, None) => bail!(
            "no image to deploy: set `image` under [build] in {}, pass --image IMAGE, or put a Dockerfile next to it",
            path.display()
        ),
    })
}
