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

use crate::Ctx;
use crate::app_config::{ConfigFile, load};
use crate::machine::{Scope, WaitFailure, app_missing};
use crate::output::print_json;
use aloft_appconfig::machines::PROCESS_GROUP_KEY;
use aloft_appconfig::schema::Strategy;
use aloft_appconfig::validate::DEFAULT_GROUP;
use aloft_appconfig::values::split_command;
use aloft_types::api::{
    CreateMachineRequest, CreateReleaseRequest, LeaseRequest, ListMachinesQuery, ReleaseStatus,
    UpdateMachineRequest, UpdateReleaseRequest,
};
use aloft_types::config::{InitConfig, Restart, RestartPolicy};
use aloft_types::machine::CheckState;
use aloft_types::{Machine, MachineConfig, MachineState};
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A lease's length when the command does not say (the reference's `--lease-timeout`).
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(13);

/// How long a machine has to start and pass its checks, unless `[deploy] wait_timeout` says.
const WAIT_TIMEOUT: Duration = Duration::from_secs(300);

/// How long the release command may run, unless `[deploy] release_command_timeout` says.
const RELEASE_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// The process group of the release command's machine (the reference's).
const RELEASE_COMMAND_GROUP: &str = "fly_app_release_command";

/// The reference's default `[deploy] max_unavailable`: a third of a group's machines at once.
const MAX_UNAVAILABLE: f64 = 0.33;

/// The machine metadata key holding the release a machine runs (the reference's).
pub const RELEASE_VERSION_KEY: &str = "fly_release_version";

/// How many of a group's `total` machines a rolling deploy changes at once: `max_unavailable`
/// (a fraction below 1, else a count), at least one, and never all of a group of two or more.
fn batch_size(max_unavailable: f64, total: usize) -> usize {
    let k = if max_unavailable < 1.0 {
        (max_unavailable * total as f64).ceil() as usize
    } else {
        max_unavailable as usize
    };
    k.clamp(1, total.saturating_sub(1).max(1))
}

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
}

/// What happened to one machine.
#[derive(Debug, Serialize)]
struct Step {
    id: String,
    group: String,
    region: String,
    /// `created` or `updated`.
    action: &'static str,
    state: MachineState,
}

pub async fn run(args: DeployArgs, ctx: &Ctx) -> Result<ExitCode> {
    let loaded = load(&args.file, args.app.clone())?;
    let config = loaded.config;
    let app = config
        .app
        .clone()
        .or_else(|| ctx.app(None).ok())
        .ok_or_else(|| {
            anyhow!(
                "no app to deploy: set `app` in {} or pass -a APP",
                loaded.path.display()
            )
        })?;
    let named_image = args
        .image
        .clone()
        .or_else(|| config.build.as_ref().and_then(|b| b.image.clone()));
    let strategy = match args.strategy.as_deref() {
        None => config
            .deploy
            .as_ref()
            .and_then(|d| d.strategy)
            .unwrap_or(Strategy::Rolling),
        Some("rolling") => Strategy::Rolling,
        Some("immediate") => Strategy::Immediate,
        Some("canary") => Strategy::Canary,
        Some("bluegreen") => Strategy::Bluegreen,
        Some(other) => bail!("--strategy {other}: use rolling, immediate, canary or bluegreen"),
    };
    // A volume is mounted by one machine at a time: no new machine can stand beside an old one.
    let strategy = match strategy {
        Strategy::Canary | Strategy::Bluegreen if !config.mounts.is_empty() => {
            if !ctx.json {
                println!(
                    "==> {app} mounts volumes ([[mounts]]), and a volume is mounted by one machine at a time, so {} (new machines beside the old) cannot be used: deploying with rolling",
                    strategy.as_str()
                );
            }
            Strategy::Rolling
        }
        s => s,
    };
    let wait = args
        .wait_timeout
        .or_else(|| {
            config
                .deploy
                .as_ref()
                .and_then(|d| d.wait_timeout)
                .map(|t| t.0)
        })
        .unwrap_or(WAIT_TIMEOUT);
    let dir = loaded.path.parent().unwrap_or(Path::new("."));
    let client = ctx.client()?;
    let org = match client.get_app(&app).await {
        Ok(found) => found.organization.slug,
        Err(crate::client::ClientError::Api(aloft_types::ApiError::NotFound(_))) => {
            return Err(app_missing(&client, &app).await);
        }
        Err(e) => return Err(e.into()),
    };
    // The image: named (--image, [build] image), else built from the Dockerfile
    // ([build] dockerfile, else one next to the config).
    let build = config.build.clone().unwrap_or_default();
    let dockerfile = match &build.dockerfile {
        Some(d) => Some(dir.join(d)),
        None => Some(dir.join("Dockerfile")).filter(|p| p.exists()),
    };
    let image = match (named_image, dockerfile) {
        (Some(image), _) => image,
        (None, Some(dockerfile)) => {
            if !dockerfile.exists() {
                bail!(
                    "{}: [build] dockerfile {} does not exist",
                    loaded.path.display(),
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
            crate::build::build_and_push(ctx, &spec, &org, &app)?
        }
        (None, None) => bail!(
            "no image to deploy: set `image` under [build] in {}, pass --image IMAGE, or put a Dockerfile next to it",
            loaded.path.display()
        ),
    };
    let scope = Scope::for_app(client, app.clone());
    let machines = scope
        .client
        .list_machines(&app, &ListMachinesQuery::default())
        .await?
        .machines;
    let region = args
        .region
        .clone()
        .or_else(|| config.primary_region.clone());
    if !ctx.json {
        println!(
            "==> Deploying {app} ({image}, {}) from {}",
            strategy.as_str(),
            loaded.path.display()
        );
    }
    let max_unavailable = config
        .deploy
        .as_ref()
        .and_then(|d| d.max_unavailable)
        .unwrap_or(MAX_UNAVAILABLE);
    let groups = config.groups();
    // Every group's config first: a config that cannot be applied stops the deploy before it
    // records a release or touches a machine.
    let mut group_configs = Vec::new();
    for group in &groups {
        let machine_config = config
            .machine_config(group, &image, dir)
            .map_err(|e| anyhow!("{}: {e}", loaded.path.display()))?;
        let checks = check_count(&machine_config);
        if strategy == Strategy::Bluegreen && checks == 0 {
            bail!(
                "the bluegreen strategy needs a health check to know the new machines work, and process group `{group}` has none: add one under [checks] or [[http_service.checks]] in {}, or deploy with --strategy rolling",
                loaded.path.display()
            );
        }
        // A machine cannot gain a volume (it lives on one host; the machine may be elsewhere).
        if !machine_config.mounts.is_empty() {
            let bare: Vec<String> = machines
                .iter()
                .filter(|m| group_of(m) == *group && m.config.mounts.is_empty())
                .map(|m| m.id.to_string())
                .collect();
            if !bare.is_empty() {
                bail!(
                    "{} now mounts a volume in process group `{group}`, but its machine{} {} {} none, and a machine cannot gain one: destroy {} (aloft machine destroy ID -a {app} --force) and deploy again, which creates machines with their volumes",
                    loaded.path.display(),
                    if bare.len() == 1 { "" } else { "s" },
                    bare.join(", "),
                    if bare.len() == 1 { "has" } else { "have" },
                    if bare.len() == 1 { "it" } else { "them" },
                );
            }
        }
        group_configs.push((group, machine_config));
    }
    let release = scope
        .client
        .create_release(
            &app,
            &CreateReleaseRequest {
                image: image.clone(),
                strategy: strategy.as_str().into(),
                description: None,
            },
        )
        .await
        .context("recording the release")?;
    if !ctx.json {
        println!("==> Release v{} of {app}", release.version);
    }
    // The leases held, for Ctrl-C to release.
    let held: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    // Leases expire on whole seconds: below 2 s a refresh could come after the expiry.
    let deploy_ttl = args.lease_timeout.max(Duration::from_secs(2));
    let mut deploy = Deploy {
        scope: &scope,
        held: held.clone(),
        wait,
        lease_ttl: deploy_ttl,
        quiet: ctx.json,
        steps: Vec::new(),
        changed: Vec::new(),
        created: Vec::new(),
        blue: Vec::new(),
        volumes_taken: Vec::new(),
    };
    let release_command = config
        .deploy
        .as_ref()
        .and_then(|d| d.release_command.clone());
    let release_timeout = config
        .deploy
        .as_ref()
        .and_then(|d| d.release_command_timeout)
        .map_or(RELEASE_COMMAND_TIMEOUT, |t| t.0);
    let work = async {
        if let (Some(command), Some((_, first))) = (&release_command, group_configs.first()) {
            let mut config = first.clone();
            config
                .metadata
                .insert(RELEASE_VERSION_KEY.into(), release.version.to_string());
            deploy
                .release_command(command, config, region.clone(), release_timeout)
                .await?;
        }
        for (group, machine_config) in &group_configs {
            let mut machine_config = machine_config.clone();
            machine_config
                .metadata
                .insert(RELEASE_VERSION_KEY.into(), release.version.to_string());
            let mine: Vec<&Machine> = machines.iter().filter(|m| group_of(m) == **group).collect();
            if mine.is_empty() {
                deploy.create(group, machine_config, region.clone()).await?;
            } else {
                let batch = match strategy {
                    Strategy::Immediate => mine.len(),
                    _ => batch_size(max_unavailable, mine.len()),
                };
                match strategy {
                    Strategy::Bluegreen => deploy.blue_green(group, &machine_config, &mine).await?,
                    Strategy::Canary => {
                        deploy
                            .canary(group, &machine_config, &mine[0].region)
                            .await?;
                        deploy.update(group, &machine_config, &mine, batch).await?;
                    }
                    Strategy::Rolling | Strategy::Immediate => {
                        deploy.update(group, &machine_config, &mine, batch).await?;
                    }
                }
            }
        }
        deploy.retire_blue().await;
        Ok::<(), anyhow::Error>(())
    };
    let result = tokio::select! {
        r = work => r.map_err(Some),
        _ = tokio::signal::ctrl_c() => Err(None),
        () = keep_leases(&scope, &held, deploy_ttl) => unreachable!("keep_leases never ends"),
    };
    // Whatever happened, no lease stays behind.
    release_held(&scope, &held).await;
    let version = release.version;
    let (status, reason, outcome) = match result {
        Ok(()) => (ReleaseStatus::Complete, None, Ok(())),
        Err(None) => (
            ReleaseStatus::Interrupted,
            Some("interrupted (Ctrl-C)".to_string()),
            Err(anyhow!(
                "the deploy of release v{version} of {app} was interrupted: machines already changed run it, the others the previous release (no lease is left held; deploy again to finish)"
            )),
        ),
        Err(Some(e)) if machines.is_empty() => (
            ReleaseStatus::Failed,
            Some(format!("{e:#}")),
            Err(e.context(format!(
                "release v{version} of {app} failed; it is the app's first, so there is nothing to roll back to (its machines stay, for `aloft logs -a {app}`)"
            ))),
        ),
        Err(Some(e)) => {
            let reason = format!("{e:#}");
            if !ctx.json {
                println!("==> Rolling back release v{version}: {reason}");
            }
            // Ctrl-C here stops the roll-back too (its leases are released below).
            let rolled_back = tokio::select! {
                r = deploy.roll_back() => r,
                _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted (Ctrl-C)")),
                () = keep_leases(&scope, &held, deploy_ttl) => unreachable!("keep_leases never ends"),
            };
            release_held(&scope, &held).await;
            let outcome = match rolled_back {
                Ok(()) => e.context(format!(
                    "release v{version} of {app} failed and was rolled back: its machines run the previous release again"
                )),
                Err(problem) => e.context(format!(
                    "release v{version} of {app} failed, and rolling it back did not finish ({problem:#}): see `aloft status -a {app}`"
                )),
            };
            (ReleaseStatus::RolledBack, Some(reason), Err(outcome))
        }
    };
    if let Err(e) = scope
        .client
        .finish_release(&app, version, &UpdateReleaseRequest { status, reason })
        .await
    {
        eprintln!(
            "Warning: recording that release v{version} is {}: {e}",
            status.as_str()
        );
    }
    outcome?;
    let steps = deploy.steps;
    for m in &machines {
        let group = group_of(m);
        if !groups.contains(&group) {
            eprintln!(
                "Warning: machine {} is in process group `{group}`, which {} no longer has: destroy it with `aloft machine destroy {} -a {app}`",
                m.id,
                loaded.path.display(),
                m.id
            );
        }
    }
    if ctx.json {
        print_json(
            &serde_json::json!({"app": app, "release": version, "image": image, "machines": steps}),
        )?;
    } else {
        println!(
            "==> Deployed release v{version} of {app}: {} machine{} on {image}",
            steps.len(),
            if steps.len() == 1 { "" } else { "s" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Updates `machines` one at a time to `config_for(machine)`, each leased and then started and
/// passing its checks before the next (for commands that change part of every machine's config,
/// `aloft scale vm|memory`); Ctrl-C stops it with no lease left held. How many were updated.
pub(crate) async fn update_each(
    scope: &Scope,
    machines: &[&Machine],
    config_for: impl Fn(&Machine) -> MachineConfig,
    quiet: bool,
) -> Result<usize> {
    let held: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut deploy = Deploy {
        scope,
        held: held.clone(),
        wait: WAIT_TIMEOUT,
        lease_ttl: LEASE_TTL,
        quiet,
        steps: Vec::new(),
        changed: Vec::new(),
        created: Vec::new(),
        blue: Vec::new(),
        volumes_taken: Vec::new(),
    };
    let work = async {
        for m in machines {
            deploy
                .update(&group_of(m), &config_for(m), &[*m], 1)
                .await?;
        }
        Ok::<(), anyhow::Error>(())
    };
    let result = tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted (Ctrl-C): machines already changed keep the change")),
        () = keep_leases(scope, &held, LEASE_TTL) => unreachable!("keep_leases never ends"),
    };
    release_held(scope, &held).await;
    result?;
    Ok(deploy.steps.len())
}

/// Refreshes every lease in `held` three times per `ttl`, for as long as it is polled: a lease
/// outlives the deploy that holds it by at most `ttl`, however long the deploy waits. A refresh
/// that fails is left to the next round (the step using the lease then says what is wrong).
async fn keep_leases(scope: &Scope, held: &Mutex<Vec<(String, String)>>, ttl: Duration) {
    let req = LeaseRequest {
        ttl: Some(ttl.as_secs()),
        description: Some("aloft deploy".into()),
    };
    loop {
        tokio::time::sleep(ttl / 3).await;
        let leases = held.lock().expect("lock").clone();
        // All at once, each bounded: one machine busy with a long operation must not hold up
        // the others' refreshes. A lease released meanwhile is not revived: the agent refuses
        // to refresh a lease that is gone.
        let mut refreshes = tokio::task::JoinSet::new();
        for (id, nonce) in leases {
            let (client, app, req) = (scope.client.clone(), scope.app.clone(), req.clone());
            refreshes.spawn(async move {
                let refreshed = tokio::time::timeout(
                    ttl / 3,
                    client.acquire_lease(&app, &id, &req, Some(&nonce)),
                )
                .await;
                (id, refreshed)
            });
        }
        while let Some(Ok((id, refreshed))) = refreshes.join_next().await {
            let still_held = held.lock().expect("lock").iter().any(|(h, _)| *h == id);
            match refreshed {
                Ok(Ok(_)) => {}
                _ if !still_held => {}
                Ok(Err(e)) => eprintln!("Warning: refreshing machine {id}'s lease: {e}"),
                Err(_) => eprintln!("Warning: refreshing machine {id}'s lease: no answer in time"),
            }
        }
    }
}

/// Releases every lease in `held` (what an interrupted or failed step left).
async fn release_held(scope: &Scope, held: &Mutex<Vec<(String, String)>>) {
    let leftover: Vec<(String, String)> = std::mem::take(&mut *held.lock().expect("lock"));
    for (id, nonce) in leftover {
        let _ = scope.client.release_lease(&scope.app, &id, &nonce).await;
    }
}

/// How many health checks a machine config has (its own and its services').
fn check_count(config: &MachineConfig) -> usize {
    config.checks.len()
        + config
            .services
            .iter()
            .map(|s| s.checks.len())
            .sum::<usize>()
}

/// An update to `config` that leaves everything else as it is.
fn new_config(config: MachineConfig) -> UpdateMachineRequest {
    UpdateMachineRequest {
        config,
        name: None,
        region: None,
        skip_launch: false,
        current_version: None,
        lease_ttl: None,
        skip_service_registration: false,
    }
}

/// A machine's process group: its `fly_process_group` metadata, else `app`.
pub(crate) fn group_of(m: &Machine) -> String {
    m.config
        .metadata
        .get(PROCESS_GROUP_KEY)
        .cloned()
        .unwrap_or_else(|| DEFAULT_GROUP.to_string())
}

/// A machine the deploy updated, and the config it had.
struct Changed {
    id: String,
    group: String,
    previous: MachineConfig,
}

struct Deploy<'a> {
    scope: &'a Scope,
    held: Arc<Mutex<Vec<(String, String)>>>,
    wait: Duration,
    /// Each lease's length; refreshed by [`keep_leases`] while held.
    lease_ttl: Duration,
    quiet: bool,
    steps: Vec<Step>,
    /// What a roll-back undoes.
    changed: Vec<Changed>,
    created: Vec<String>,
    /// bluegreen's old machines (group, id), retired once every group passed.
    blue: Vec<(String, String)>,
    /// Volumes given to machines of this deploy (not mounted yet, so not shown as attached).
    volumes_taken: Vec<String>,
}

impl Deploy<'_> {
    fn say(&self, line: String) {
        if !self.quiet {
            println!("{line}");
        }
    }

    /// Creates a machine of the group (remembered for a roll-back to destroy); its id.
    async fn launch(
        &mut self,
        group: &str,
        config: &MachineConfig,
        region: Option<String>,
    ) -> Result<String> {
        let mut config = config.clone();
        self.give_volume(&mut config, None, region.as_deref())
            .await?;
        let req = CreateMachineRequest {
            config,
            name: None,
            region,
            skip_launch: false,
            lease_ttl: None,
            skip_service_registration: false,
        };
        let created = self
            .scope
            .client
            .create_machine(&self.scope.app, &req)
            .await
            .with_context(|| format!("creating a machine for process group `{group}`"))?;
        self.say(format!(
            "  {group}: created machine {} in {}",
            created.id, created.region
        ));
        let id = created.id.to_string();
        self.created.push(id.clone());
        // Its image's pull, as `machine run` shows it (on stderr).
        crate::machine::follow_pull(self.scope, &id).await?;
        Ok(id)
    }

    async fn create(
        &mut self,
        group: &str,
        config: MachineConfig,
        region: Option<String>,
    ) -> Result<()> {
        let id = self.launch(group, &config, region).await?;
        let m = self.healthy(&id).await?;
        self.record(group, "created", &m);
        Ok(())
    }

    /// Updates the group's machines `batch` at a time: a batch's machines change together, and
    /// each must be started and passing its checks before the next batch.
    async fn update(
        &mut self,
        group: &str,
        config: &MachineConfig,
        machines: &[&Machine],
        batch: usize,
    ) -> Result<()> {
        let total = machines.len();
        let mut done = 0;
        for chunk in machines.chunks(batch.max(1)) {
            let mut leased = Vec::new();
            let mut result = Ok(());
            for m in chunk {
                match self.lease(&m.id.to_string()).await {
                    Ok(nonce) => leased.push((*m, nonce)),
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            if result.is_ok() {
                for (m, nonce) in &leased {
                    done += 1;
                    let id = m.id.to_string();
                    self.say(format!("  {group}: updating machine {id} ({done}/{total})"));
                    let mut config = config.clone();
                    if let Err(e) = self
                        .give_volume(&mut config, Some(m), Some(&m.region))
                        .await
                    {
                        result = Err(e);
                        break;
                    }
                    let req = new_config(config);
                    if let Err(e) = self
                        .scope
                        .client
                        .update_machine(&self.scope.app, &id, &req, nonce)
                        .await
                    {
                        result = Err(anyhow::Error::from(e)
                            .context(format!("updating machine {id} ({group})")));
                        break;
                    }
                    self.changed.push(Changed {
                        id,
                        group: group.to_string(),
                        previous: m.config.clone(),
                    });
                }
            }
            if result.is_ok() {
                for (m, _) in &leased {
                    match self.healthy(&m.id.to_string()).await {
                        Ok(m) => self.record(group, "updated", &m),
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
            }
            for (m, nonce) in &leased {
                self.release(&m.id.to_string(), nonce).await;
            }
            result?;
        }
        Ok(())
    }

    /// Fills in the volume of `config`'s mount (`[[mounts]]` names it, the machine needs its
    /// own): the one `machine` mounts already, else a free one of that name in `region`, else a
    /// new one.
    async fn give_volume(
        &mut self,
        config: &mut MachineConfig,
        machine: Option<&Machine>,
        region: Option<&str>,
    ) -> Result<()> {
        let Some(mount) = config.mounts.first_mut().filter(|m| m.volume.is_empty()) else {
            return Ok(());
        };
        if let Some(current) = machine.and_then(|m| m.config.mounts.first()) {
            mount.volume = current.volume.clone();
            return Ok(());
        }
        let name = mount.name.clone().unwrap_or_else(|| "data".into());
        let region = region.ok_or_else(|| {
            anyhow!(
                "a machine with volume `{name}` needs a region to put the volume in: set primary_region in the config or pass --region"
            )
        })?;
        let v = crate::volumes::volume_for(
            &self.scope.client,
            &self.scope.app,
            &name,
            region,
            mount.size_gb.unwrap_or(1),
            &self.volumes_taken,
            self.quiet,
        )
        .await?;
        self.volumes_taken.push(v.id.clone());
        mount.volume = v.id;
        Ok(())
    }

    /// Runs `[deploy] release_command` once, before any machine changes, in a temporary machine
    /// with the release's config (no services or checks, never restarted) in `region`; anything
    /// but exit code 0 (or running past `timeout`) stops the deploy with the command's last output.
    async fn release_command(
        &self,
        command: &str,
        mut config: MachineConfig,
        region: Option<String>,
        timeout: Duration,
    ) -> Result<()> {
        let cmd = split_command(command)
            .map_err(|e| anyhow!("[deploy] release_command `{command}`: {e}"))?;
        config.init = Some(InitConfig {
            cmd,
            ..config.init.unwrap_or_default()
        });
        config.services.clear();
        config.checks.clear();
        // Volumes stay with the app's machines (as the reference's release machines, none).
        config.mounts.clear();
        config.restart = Some(Restart {
            policy: RestartPolicy::No,
            max_retries: None,
        });
        config
            .metadata
            .insert(PROCESS_GROUP_KEY.into(), RELEASE_COMMAND_GROUP.into());
        let (client, app) = (&self.scope.client, self.scope.app.as_str());
        let req = CreateMachineRequest {
            config,
            name: None,
            region,
            skip_launch: false,
            lease_ttl: None,
            skip_service_registration: true,
        };
        let created = client
            .create_machine(app, &req)
            .await
            .context("creating the release command's machine")?;
        let id = created.id.to_string();
        self.say(format!(
            "  running release command `{command}` in machine {id}"
        ));
        let launched = crate::machine::follow_pull(self.scope, &id).await?;
        let started = Instant::now();
        // A machine that could not start (`failed`) never stops: no wait for it.
        let ended = if launched.state == MachineState::Failed {
            Ok(launched)
        } else {
            self.scope
                .await_state(&id, MachineState::Stopped, timeout)
                .await
        };
        let exit_code = match &ended {
            Ok(m) => m
                .events
                .iter()
                .filter_map(|e| e.request.as_ref()?.exit_event.as_ref())
                .map(|x| x.exit_code)
                .next_back(),
            Err(_) => None,
        };
        let output = match client.logs(app, &id, None).await {
            Ok(lines) => {
                let tail: Vec<&str> = lines
                    .iter()
                    .rev()
                    .take(20)
                    .map(|l| l.message.as_str())
                    .collect();
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            }
            Err(_) => String::new(),
        };
        if let Err(e) = client.destroy_machine(app, &id, true).await {
            eprintln!("Warning: destroying the release command's machine {id}: {e}");
        }
        match (ended, exit_code) {
            (Ok(_), Some(0)) => {
                self.say(format!(
                    "    release command succeeded ({:.1}s)",
                    started.elapsed().as_secs_f64()
                ));
                Ok(())
            }
            (Ok(_), code) => bail!(
                "the release command `{command}` failed (exit code {}); no machine was changed. Its last output:\n{output}",
                code.map_or("unknown".to_string(), |c| c.to_string())
            ),
            (Err(WaitFailure::NotReached(_)), _) => bail!(
                "the release command `{command}` did not finish within {}s (`[deploy] release_command_timeout`); no machine was changed. Its last output:\n{output}",
                timeout.as_secs()
            ),
            (Err(WaitFailure::Error(e)), _) => Err(e.context("waiting for the release command")),
        }
    }

    /// `bluegreen`: a new machine beside each of the group's (same region), all started and
    /// passing their checks before any old one goes; then the old ones are cordoned, stopped and
    /// destroyed. Until then a failure only has new machines to destroy.
    async fn blue_green(
        &mut self,
        group: &str,
        config: &MachineConfig,
        machines: &[&Machine],
    ) -> Result<()> {
        let mut green = Vec::new();
        for m in machines {
            let id = self.launch(group, config, Some(m.region.clone())).await?;
            self.say(format!("  {group}: green machine {id} beside {}", m.id));
            green.push(id);
        }
        for id in &green {
            let m = self.healthy(id).await?;
            self.record(group, "created", &m);
        }
        // The old ones go once every group's new machines serve (a later group's failure rolls
        // this one back too).
        self.blue.extend(
            machines
                .iter()
                .map(|m| (group.to_string(), m.id.to_string())),
        );
        Ok(())
    }

    /// After every group passed: the release is committed, and the blue machines go (cordoned
    /// first, so they take no request with them); one that will not go is only a warning.
    async fn retire_blue(&mut self) {
        self.created.clear();
        for (group, id) in std::mem::take(&mut self.blue) {
            match self.scope.retire(&id).await {
                Ok(()) => self.say(format!("  {group}: blue machine {id} destroyed")),
                Err(e) => eprintln!(
                    "Warning: destroying blue machine {id}: {e:#} (the new machines serve; destroy it with `aloft machine destroy {id} -a {} --force`)",
                    self.scope.app
                ),
            }
        }
    }

    /// `canary`: one new machine with the new config in `region`, started and passing its
    /// checks, then destroyed; the rolling update follows.
    async fn canary(&mut self, group: &str, config: &MachineConfig, region: &str) -> Result<()> {
        let id = self.launch(group, config, Some(region.to_string())).await?;
        self.say(format!("  {group}: canary machine {id} in {region}"));
        self.healthy(&id).await?;
        self.scope.retire(&id).await?;
        self.created.retain(|c| *c != id);
        self.say(format!(
            "  {group}: canary {id} passed and is gone; rolling on"
        ));
        Ok(())
    }

    /// Puts every machine the deploy changed back to its previous config (each started before
    /// the next) and destroys the ones it created.
    async fn roll_back(&mut self) -> Result<()> {
        let changed = std::mem::take(&mut self.changed);
        let mut problems = Vec::new();
        for c in changed.iter().rev() {
            let restored = async {
                let nonce = self.lease(&c.id).await?;
                let req = new_config(c.previous.clone());
                let updated = self
                    .scope
                    .client
                    .update_machine(&self.scope.app, &c.id, &req, &nonce)
                    .await
                    .map_err(anyhow::Error::from);
                let result = match updated {
                    Ok(_) => self.healthy(&c.id).await.map(drop),
                    Err(e) => Err(e),
                };
                self.release(&c.id, &nonce).await;
                result
            };
            match restored.await {
                Ok(()) => self.say(format!(
                    "  {}: machine {} is back on the previous release",
                    c.group, c.id
                )),
                Err(e) => problems.push(format!("machine {}: {e:#}", c.id)),
            }
        }
        for id in std::mem::take(&mut self.created) {
            match self
                .scope
                .client
                .destroy_machine(&self.scope.app, &id, true)
                .await
            {
                Ok(_) => self.say(format!(
                    "  destroyed machine {id}, which the release created"
                )),
                Err(e) => problems.push(format!("destroying machine {id}: {e}")),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("{}", problems.join("; "))
        }
    }

    /// Takes the machine's lease (for as long as a wait may take) and remembers it for Ctrl-C.
    async fn lease(&self, id: &str) -> Result<String> {
        let req = LeaseRequest {
            ttl: Some(self.lease_ttl.as_secs()),
            description: Some("aloft deploy".into()),
        };
        let lease = self
            .scope
            .client
            .acquire_lease(&self.scope.app, id, &req, None)
            .await
            .with_context(|| {
                format!(
                    "taking machine {id}'s lease (another deploy or command holds it? `aloft machine leases view {id} -a {}` shows who)",
                    self.scope.app
                )
            })?;
        self.held
            .lock()
            .expect("lock")
            .push((id.to_string(), lease.data.nonce.clone()));
        Ok(lease.data.nonce)
    }

    async fn release(&self, id: &str, nonce: &str) {
        self.held
            .lock()
            .expect("lock")
            .retain(|(held, _)| held != id);
        if let Err(e) = self
            .scope
            .client
            .release_lease(&self.scope.app, id, nonce)
            .await
        {
            eprintln!("Warning: releasing machine {id}'s lease: {e} (it expires on its own)");
        }
    }

    /// Waits for the machine to be started and its checks to pass.
    async fn healthy(&self, id: &str) -> Result<Machine> {
        let started = Instant::now();
        let machine = match self
            .scope
            .await_state(id, MachineState::Started, self.wait)
            .await
        {
            Ok(m) => m,
            Err(WaitFailure::NotReached(m)) => bail!(
                "machine {id} is {} after {}s, not started: see `aloft logs -a {} -m {id}`",
                m.state.as_str(),
                started.elapsed().as_secs(),
                self.scope.app
            ),
            Err(WaitFailure::Error(e)) => return Err(e),
        };
        // Every check of the config has to report passing (one not run yet counts as failing).
        let expected = check_count(&machine.config);
        let mut machine = machine;
        loop {
            let mut failing: Vec<&str> = machine
                .checks
                .iter()
                .filter(|c| c.status != CheckState::Passing)
                .map(|c| c.name.as_str())
                .collect();
            if machine.checks.len() < expected {
                failing.push("(not run yet)");
            }
            if failing.is_empty() {
                self.say(format!(
                    "    machine {id} is started{} ({:.1}s)",
                    if machine.checks.is_empty() {
                        ""
                    } else {
                        ", checks passing"
                    },
                    started.elapsed().as_secs_f64()
                ));
                return Ok(machine);
            }
            if started.elapsed() >= self.wait {
                bail!(
                    "machine {id}'s checks did not pass within {}s (failing: {}): see `aloft machine status {id} -a {}`",
                    self.wait.as_secs(),
                    failing.join(", "),
                    self.scope.app
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            machine = self.scope.client.get_machine(&self.scope.app, id).await?;
        }
    }

    fn record(&mut self, group: &str, action: &'static str, m: &Machine) {
        self.steps.push(Step {
            id: m.id.to_string(),
            group: group.to_string(),
            region: m.region.clone(),
            action,
            state: m.state,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::batch_size;

    #[test]
    fn batches_take_a_share_or_a_count_and_never_a_whole_group() {
        assert_eq!(batch_size(0.33, 1), 1);
        assert_eq!(batch_size(0.33, 2), 1);
        assert_eq!(batch_size(0.33, 6), 2);
        assert_eq!(batch_size(0.5, 5), 3);
        assert_eq!(batch_size(2.0, 6), 2);
        assert_eq!(batch_size(10.0, 3), 2);
        assert_eq!(batch_size(0.99, 4), 3);
        assert_eq!(batch_size(0.0, 4), 1);
    }
}
