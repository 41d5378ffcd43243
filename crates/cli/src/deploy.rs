//! `aloft deploy`: the app's config (`fly.toml`) applied to its machines, process group by
//! process group. A group without machines gets one in the primary region; a group's machines are
//! updated one at a time (`rolling`, each started and passing its checks before the next) or all
//! at once (`immediate`). Each machine is leased while it changes, and the lease is released
//! whatever happens, Ctrl-C included.

use crate::Ctx;
use crate::app_config::{ConfigFile, load};
use crate::machine::{Scope, WaitFailure, app_missing};
use crate::output::print_json;
use aloft_appconfig::machines::PROCESS_GROUP_KEY;
use aloft_appconfig::schema::Strategy;
use aloft_appconfig::validate::DEFAULT_GROUP;
use aloft_types::api::{
    CreateMachineRequest, LeaseRequest, ListMachinesQuery, UpdateMachineRequest,
};
use aloft_types::machine::CheckState;
use aloft_types::{Machine, MachineConfig, MachineState};
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a machine has to start and pass its checks, unless `[deploy] wait_timeout` says.
const WAIT_TIMEOUT: Duration = Duration::from_secs(300);

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
    /// `rolling` or `immediate` (default: `[deploy] strategy`, else rolling).
    #[arg(long)]
    pub strategy: Option<String>,
    /// Where a process group without machines gets its first (default: `primary_region`).
    #[arg(short = 'r', long)]
    pub region: Option<String>,
    /// How long each machine has to start and pass its checks, e.g. `2m` (default:
    /// `[deploy] wait_timeout`, else 5m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub wait_timeout: Option<Duration>,
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
    let image = args
        .image
        .clone()
        .or_else(|| config.build.as_ref().and_then(|b| b.image.clone()))
        .ok_or_else(|| {
            anyhow!(
                "no image to deploy: set `image` under [build] in {} or pass --image IMAGE (building a Dockerfile is not supported yet)",
                loaded.path.display()
            )
        })?;
    let strategy = match args.strategy.as_deref() {
        None => config
            .deploy
            .as_ref()
            .and_then(|d| d.strategy)
            .unwrap_or(Strategy::Rolling),
        Some("rolling") => Strategy::Rolling,
        Some("immediate") => Strategy::Immediate,
        Some(other) => bail!(
            "--strategy {other}: use rolling or immediate (canary and bluegreen are not supported yet)"
        ),
    };
    if matches!(strategy, Strategy::Canary | Strategy::Bluegreen) {
        bail!(
            "the {} strategy is not supported yet: deploy with --strategy rolling or immediate",
            strategy.as_str()
        );
    }
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
    if let Err(e) = client.get_app(&app).await {
        return Err(match e {
            crate::client::ClientError::Api(aloft_types::ApiError::NotFound(_)) => {
                app_missing(&client, &app).await
            }
            e => e.into(),
        });
    }
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
    // The machine whose lease is held, for Ctrl-C to release.
    let held: Arc<Mutex<Option<(String, String)>>> = Arc::default();
    let mut deploy = Deploy {
        scope: &scope,
        held: held.clone(),
        wait,
        quiet: ctx.json,
        steps: Vec::new(),
    };
    let groups = config.groups();
    let work = async {
        for group in &groups {
            let machine_config = config
                .machine_config(group, &image, dir)
                .map_err(|e| anyhow!("{}: {e}", loaded.path.display()))?;
            let mine: Vec<&Machine> = machines.iter().filter(|m| group_of(m) == *group).collect();
            if mine.is_empty() {
                deploy.create(group, machine_config, region.clone()).await?;
            } else {
                deploy
                    .update(group, &machine_config, &mine, strategy)
                    .await?;
            }
        }
        Ok::<(), anyhow::Error>(())
    };
    let result = tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    // Whatever happened, no lease stays behind.
    let leftover = held.lock().expect("lock").take();
    if let Some((id, nonce)) = leftover {
        let _ = scope.client.release_lease(&app, &id, &nonce).await;
    }
    if let Err(e) = result {
        return Err(e.context(format!(
            "the deploy of {app} stopped; machines already changed keep the new config, the others the old (no lease is left held)"
        )));
    }
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
        print_json(&serde_json::json!({"app": app, "image": image, "machines": steps}))?;
    } else {
        println!(
            "==> Deployed {app}: {} machine{} on {image}",
            steps.len(),
            if steps.len() == 1 { "" } else { "s" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A machine's process group: its `fly_process_group` metadata, else `app`.
fn group_of(m: &Machine) -> String {
    m.config
        .metadata
        .get(PROCESS_GROUP_KEY)
        .cloned()
        .unwrap_or_else(|| DEFAULT_GROUP.to_string())
}

struct Deploy<'a> {
    scope: &'a Scope,
    held: Arc<Mutex<Option<(String, String)>>>,
    wait: Duration,
    quiet: bool,
    steps: Vec<Step>,
}

impl Deploy<'_> {
    fn say(&self, line: String) {
        if !self.quiet {
            println!("{line}");
        }
    }

    async fn create(
        &mut self,
        group: &str,
        config: MachineConfig,
        region: Option<String>,
    ) -> Result<()> {
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
        let m = self.healthy(&created.id.to_string()).await?;
        self.record(group, "created", &m);
        Ok(())
    }

    async fn update(
        &mut self,
        group: &str,
        config: &MachineConfig,
        machines: &[&Machine],
        strategy: Strategy,
    ) -> Result<()> {
        let total = machines.len();
        let mut updated = Vec::new();
        for (i, m) in machines.iter().enumerate() {
            let id = m.id.to_string();
            let nonce = self.lease(&id).await?;
            let req = UpdateMachineRequest {
                config: config.clone(),
                name: None,
                region: None,
                skip_launch: false,
                current_version: None,
                lease_ttl: None,
                skip_service_registration: false,
            };
            self.say(format!(
                "  {group}: updating machine {id} ({}/{total})",
                i + 1
            ));
            let result = self
                .scope
                .client
                .update_machine(&self.scope.app, &id, &req, &nonce)
                .await
                .with_context(|| format!("updating machine {id} ({group})"));
            let result = match (result, strategy) {
                (Ok(_), Strategy::Rolling) => self.healthy(&id).await.map(Some),
                (Ok(_), _) => Ok(None),
                (Err(e), _) => Err(e),
            };
            self.release(&id, &nonce).await;
            if let Some(m) = result? {
                self.record(group, "updated", &m);
            } else {
                updated.push(id);
            }
        }
        // Immediate: every machine changed at once; then each must come up.
        for id in updated {
            let m = self.healthy(&id).await?;
            self.record(group, "updated", &m);
        }
        Ok(())
    }

    /// Takes the machine's lease (for as long as a wait may take) and remembers it for Ctrl-C.
    async fn lease(&self, id: &str) -> Result<String> {
        let req = LeaseRequest {
            ttl: Some(self.wait.as_secs() + 60),
            description: Some("aloft deploy".into()),
        };
        let lease = self
            .scope
            .client
            .acquire_lease(&self.scope.app, id, &req)
            .await
            .with_context(|| {
                format!(
                    "taking machine {id}'s lease (another deploy or command holds it? `aloft machine leases view {id} -a {}` shows who)",
                    self.scope.app
                )
            })?;
        *self.held.lock().expect("lock") = Some((id.to_string(), lease.data.nonce.clone()));
        Ok(lease.data.nonce)
    }

    async fn release(&self, id: &str, nonce: &str) {
        self.held.lock().expect("lock").take();
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
        let expected = machine.config.checks.len()
            + machine
                .config
                .services
                .iter()
                .map(|s| s.checks.len())
                .sum::<usize>();
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
