//! `aloft machine ...`: run, list, status, start/stop/restart/suspend/destroy, signal, exec, wait,
//! cordon/uncordon and leases. `run` shows the pull of the machine's image while it launches.

use crate::Ctx;
use crate::client::{Client, ClientError, MachineList};
use crate::output::{Table, json_name, megabytes, or_dash, print_fields, print_json};
use aloft_appconfig::values::split_command;
use aloft_types::api::{
    ExecRequest, ListMachinesQuery, RestartQuery, SignalRequest, StopRequest, WaitQuery,
};
use aloft_types::config::{
    Autostop, Check, CheckType, CpuKind, DurationStr, Guest, Handler, InitConfig, Mount, Port,
    Protocol, Restart, RestartPolicy, Service,
};
use aloft_types::machine::{ImagePull, ImagePullPhase, ImageRef};
use aloft_types::signal::Signal;
use aloft_types::time::{parse_duration, rfc3339};
use aloft_types::{ApiError, Machine, MachineConfig, MachineEvent, MachineState};
use anyhow::{Result, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long `machine run` and `machine start`/`restart` wait for a machine to be started.
const START_WAIT: Duration = Duration::from_secs(120);
/// Seconds each `wait` call asks for (the API accepts up to 60); between calls the machine is
/// checked, so a machine that cannot reach the state is noticed early.
const WAIT_CHUNK: u64 = 10;
/// How often `machine run` looks at a launching machine to show the pull of its image.
const PULL_POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Subcommand)]
pub enum MachineCommand {
    /// Create a machine from an image and start it.
    Run(Box<RunArgs>),
    /// List an app's machines.
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show a machine's details and its recent events.
    Status(IdArgs),
    /// Start stopped machines.
    Start(IdsArgs),
    /// Stop started machines: a signal, then SIGKILL after the timeout.
    Stop(StopArgs),
    /// Restart started machines.
    Restart(RestartArgs),
    /// Suspend started machines (stopped instead where the backend cannot suspend).
    Suspend(IdsArgs),
    /// Destroy machines.
    #[command(visible_alias = "rm")]
    Destroy(DestroyArgs),
    /// Send a signal to a machine's main process.
    Signal(SignalArgs),
    /// Run a command in a started machine; exits with the command's exit code.
    Exec(ExecArgs),
    /// Wait until a machine reaches a state.
    Wait(WaitArgs),
    /// Take machines out of proxy routing.
    Cordon(IdsArgs),
    /// Put machines back into proxy routing.
    Uncordon(IdsArgs),
    /// View or clear a machine's lease.
    #[command(subcommand)]
    Leases(LeasesCommand),
}

#[derive(Debug, Subcommand)]
pub enum LeasesCommand {
    /// Show who holds the lease on a machine.
    View(IdArgs),
    /// Release the lease on a machine, whoever holds it.
    Clear(IdArgs),
}

/// The client's error, or the app-missing sentence when the app is not there.
pub(crate) async fn explain_app_error(
    ctx: &Ctx,
    app: &str,
    e: crate::client::ClientError,
) -> anyhow::Error {
    match (e.api(), ctx.client()) {
        (Some(ApiError::NotFound(m)), Ok(client)) if m.contains("aloft apps list") => {
            app_missing(&client, app).await
        }
        _ => e.into(),
    }
}

/// `-a/--app`, and `-c/--config` for a config file whose `app` it is.
#[derive(Debug, Args)]
pub struct AppArg {
    /// The app [default: $ALOFT_APP, else the config's `app`].
    #[arg(short = 'a', long = "app", value_name = "APP")]
    pub app: Option<String>,
    #[command(flatten)]
    pub file: crate::app_config::ConfigFile,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// The machine's id.
    id: String,
    #[command(flatten)]
    app: AppArg,
}

#[derive(Debug, Args)]
pub struct IdsArgs {
    /// The machines' ids.
    #[arg(required = true, value_name = "ID")]
    ids: Vec<String>,
    #[command(flatten)]
    app: AppArg,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The image to run, e.g. `nginx:latest` or `127.0.0.1:5000/personal/hello:v1`.
    image: String,
    /// The command to run instead of the image's CMD (everything after the image).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<String>,
    #[command(flatten)]
    app: AppArg,
    /// The region to run in [default: the platform's default region].
    #[arg(long, short = 'r')]
    region: Option<String>,
    /// An environment variable, `NAME=VALUE` (repeatable).
    #[arg(long, short = 'e', value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// A published port: `PUBLIC[:INTERNAL][/PROTOCOL[:HANDLER...]]`, e.g. `443:8080/tcp:http:tls`
    /// or `5432/tcp` (repeatable). PROTOCOL is tcp (default) or udp; handlers are http, tls,
    /// proxy_proto and pg_tls.
    #[arg(long, short = 'p', value_name = "PORT")]
    port: Vec<String>,
    /// Restart policy when the process exits on its own [default: on-fail].
    #[arg(long, value_enum)]
    restart: Option<RestartArg>,
    /// What the proxy does with an idle machine of the published services.
    #[arg(long, value_enum)]
    autostop: Option<AutostopArg>,
    /// Memory, in MB (`512`) or with a unit (`512mb`, `1gb`).
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    /// Number of CPUs.
    #[arg(long)]
    cpus: Option<u32>,
    /// CPU kind.
    #[arg(long, value_enum)]
    cpu_kind: Option<CpuKindArg>,
    /// The machine's name [default: generated].
    #[arg(long)]
    name: Option<String>,
    /// A metadata label, `KEY=VALUE` (repeatable).
    #[arg(long, short = 'm', value_name = "KEY=VALUE")]
    metadata: Vec<String>,
    /// Replace the image's ENTRYPOINT, e.g. `--entrypoint "/bin/sh -c"`.
    #[arg(long, value_name = "COMMAND")]
    entrypoint: Option<String>,
    /// Replace the image's CMD, e.g. `--cmd "sleep 100"` (or give it after the image).
    #[arg(long, value_name = "COMMAND", conflicts_with = "command")]
    cmd: Option<String>,
    /// A health check, `NAME=tcp:PORT` or `NAME=http:PORT/PATH`, e.g. `alive=http:8080/healthz`
    /// (repeatable): every 15 s; the proxy sends nothing to a machine whose check fails.
    #[arg(long, value_name = "NAME=CHECK")]
    check: Vec<String>,
    /// A volume to mount, `VOLUME_ID:/path` (`aloft volumes create` makes one); the machine
    /// runs on the volume's host.
    #[arg(long, short = 'v', value_name = "VOLUME:PATH")]
    volume: Option<String>,
    /// Create the machine without starting it.
    #[arg(long)]
    skip_launch: bool,
    /// Do not wait for the machine to start.
    #[arg(long)]
    detach: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RestartArg {
    No,
    Always,
    #[value(name = "on-fail", alias = "on-failure")]
    OnFail,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AutostopArg {
    Off,
    Stop,
    Suspend,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CpuKindArg {
    Shared,
    Performance,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    app: AppArg,
    /// Include destroyed machines.
    #[arg(long)]
    all: bool,
    /// Only machines in this region.
    #[arg(long, short = 'r')]
    region: Option<String>,
    /// Only machines in these states (comma-separated).
    #[arg(long)]
    state: Option<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    #[command(flatten)]
    ids: IdsArgs,
    /// The signal to send first [default: the machine's stop_config, else SIGTERM].
    #[arg(long, short = 's')]
    signal: Option<String>,
    /// How long to wait before SIGKILL, e.g. `30s`.
    #[arg(long)]
    timeout: Option<String>,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    #[command(flatten)]
    ids: IdsArgs,
    /// The signal that stops the machine before it starts again.
    #[arg(long, short = 's')]
    signal: Option<String>,
    /// How long to wait before SIGKILL, e.g. `30s`.
    #[arg(long)]
    timeout: Option<String>,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    ids: IdsArgs,
    /// Kill a started machine instead of refusing.
    #[arg(long, short = 'f')]
    force: bool,
}

#[derive(Debug, Args)]
pub struct SignalArgs {
    #[command(flatten)]
    id: IdArgs,
    /// The signal, e.g. `SIGUSR1`, `HUP` or `10`.
    #[arg(long, short = 's', required = true)]
    signal: String,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    id: IdArgs,
    /// How long the command may run, e.g. `30s` (at most 300s).
    #[arg(long, default_value = "30s")]
    timeout: String,
    /// The command and its arguments (put them after `--`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "COMMAND"
    )]
    command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    #[command(flatten)]
    id: IdArgs,
    /// The state to wait for.
    #[arg(long, value_enum, default_value_t = WaitState::Started)]
    state: WaitState,
    /// How long to wait, e.g. `60s` or `5m`.
    #[arg(long, default_value = "60s")]
    timeout: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum WaitState {
    Started,
    Stopped,
    Suspended,
    Destroyed,
}

impl From<WaitState> for MachineState {
    fn from(s: WaitState) -> Self {
        match s {
            WaitState::Started => MachineState::Started,
            WaitState::Stopped => MachineState::Stopped,
            WaitState::Suspended => MachineState::Suspended,
            WaitState::Destroyed => MachineState::Destroyed,
        }
    }
}

pub async fn run(cmd: MachineCommand, ctx: &Ctx) -> Result<ExitCode> {
    match cmd {
        MachineCommand::Run(args) => run_machine(ctx, *args).await,
        MachineCommand::List(args) => list(ctx, args).await,
        MachineCommand::Status(args) => status(ctx, args).await,
        MachineCommand::Start(args) => each(ctx, args, Op::Start).await,
        MachineCommand::Stop(args) => {
            let req = StopRequest {
                signal: args.signal.as_deref().map(parse_signal).transpose()?,
                timeout: args.timeout.as_deref().map(parse_timeout).transpose()?,
            };
            each(ctx, args.ids, Op::Stop(req)).await
        }
        MachineCommand::Restart(args) => {
            let query = RestartQuery {
                signal: args
                    .signal
                    .as_deref()
                    .map(|s| parse_signal(s).map(|s| s.name().to_string()))
                    .transpose()?,
                timeout: args
                    .timeout
                    .as_deref()
                    .map(|t| parse_timeout(t).map(|t| t.0))
                    .transpose()?,
                force_stop: None,
            };
            each(ctx, args.ids, Op::Restart(query)).await
        }
        MachineCommand::Suspend(args) => each(ctx, args, Op::Suspend).await,
        MachineCommand::Destroy(args) => each(ctx, args.ids, Op::Destroy(args.force)).await,
        MachineCommand::Cordon(args) => each(ctx, args, Op::Cordon(true)).await,
        MachineCommand::Uncordon(args) => each(ctx, args, Op::Cordon(false)).await,
        MachineCommand::Signal(args) => signal(ctx, args).await,
        MachineCommand::Exec(args) => exec(ctx, args).await,
        MachineCommand::Wait(args) => wait(ctx, args).await,
        MachineCommand::Leases(LeasesCommand::View(args)) => lease_view(ctx, args).await,
        MachineCommand::Leases(LeasesCommand::Clear(args)) => lease_clear(ctx, args).await,
    }
}

/// An app and a client: what every machine command works with.
pub(crate) struct Scope {
    pub(crate) client: Client,
    pub(crate) app: String,
}

impl Scope {
    /// A scope for `app` with an existing client.
    pub(crate) fn for_app(client: Client, app: String) -> Self {
        Self { client, app }
    }

    fn new(ctx: &Ctx, app: &AppArg) -> Result<Self> {
        let app = ctx.app_of(app)?;
        Ok(Self {
            client: ctx.client()?,
            app,
        })
    }

    /// Turns a 404 into a sentence that says whether the app or the machine is missing, and how
    /// to go on.
    async fn explain(&self, err: ClientError, machine: Option<&str>) -> anyhow::Error {
        let app = &self.app;
        if let (Some(ApiError::Conflict(msg)), Some(id)) = (err.api(), machine) {
            return anyhow!(
                "{msg}. If its holder is gone, clear it with `aloft machine leases clear {id} -a {app}`"
            );
        }
        if !matches!(err.api(), Some(ApiError::NotFound(_))) {
            return err.into();
        }
        match self.client.get_app(app).await {
            Err(e) if matches!(e.api(), Some(ApiError::NotFound(_))) => {
                app_missing(&self.client, app).await
            }
            Ok(found) => match machine {
                Some(id) => anyhow!(
                    "no machine `{id}` in app `{app}` (org {}); `aloft machine list -a {app}` shows its machines",
                    found.organization.slug
                ),
                None => err.into(),
            },
            Err(_) => err.into(),
        }
    }

    /// Takes a machine out of service gently: cordoned (no new requests), stopped with its own
    /// signal and timeout, then destroyed.
    pub(crate) async fn retire(&self, id: &str) -> Result<()> {
        self.client.cordon(&self.app, id, true).await?;
        self.client
            .stop(&self.app, id, &StopRequest::default())
            .await?;
        if let Err(WaitFailure::Error(e)) = self
            .await_state(id, MachineState::Stopped, Duration::from_secs(60))
            .await
        {
            return Err(e);
        }
        self.client.destroy_machine(&self.app, id, true).await?;
        Ok(())
    }

    /// Waits until the machine is in `target`, for at most `limit`. Gives up early when the
    /// machine cannot get there (failed or destroyed while waiting to be started).
    pub(crate) async fn await_state(
        &self,
        id: &str,
        target: MachineState,
        limit: Duration,
    ) -> Result<Machine, WaitFailure> {
        let started = Instant::now();
        let mut stopped_checks = 0;
        loop {
            let remaining = limit.saturating_sub(started.elapsed());
            let chunk = remaining.as_secs().clamp(1, WAIT_CHUNK);
            let query = WaitQuery {
                state: Some(target.as_str().to_string()),
                timeout: Some(chunk.to_string()),
                ..WaitQuery::default()
            };
            match self
                .client
                .wait(&self.app, id, &query, Duration::from_secs(chunk))
                .await
            {
                Ok(_) => {}
                Err(ClientError::Api(ApiError::Timeout(_) | ApiError::Precondition(_))) => {}
                Err(e) => return Err(WaitFailure::Error(self.explain(e, Some(id)).await)),
            }
            let machine = match self.client.get_machine(&self.app, id).await {
                Ok(m) => m,
                Err(e) => return Err(WaitFailure::Error(self.explain(e, Some(id)).await)),
            };
            if machine.state == target {
                return Ok(machine);
            }
            if target == MachineState::Started {
                stopped_checks = match machine.state {
                    MachineState::Stopped => stopped_checks + 1,
                    _ => 0,
                };
                let hopeless = matches!(
                    machine.state,
                    MachineState::Failed | MachineState::Destroyed | MachineState::Destroying
                ) || stopped_checks >= 2;
                if hopeless {
                    return Err(WaitFailure::NotReached(Box::new(machine)));
                }
            }
            if started.elapsed() >= limit {
                return Err(WaitFailure::NotReached(Box::new(machine)));
            }
        }
    }
}

/// The error for an app the API does not know, naming the org when it can (the token's org is
/// the org of every app the token lists).
pub async fn app_missing(client: &Client, app: &str) -> anyhow::Error {
    app_missing_then(
        client,
        app,
        &format!("create it with `aloft apps create {app}`"),
    )
    .await
}

/// [`app_missing`] with another next step.
pub async fn app_missing_then(client: &Client, app: &str, next: &str) -> anyhow::Error {
    match client.list_apps().await {
        Ok(list) if !list.apps.is_empty() => {
            let org = &list.apps[0].organization.slug;
            let names: Vec<&str> = list.apps.iter().map(|a| a.name.as_str()).collect();
            anyhow!(
                "no app named `{app}` in org {org}; {next} (your apps: {})",
                names.join(", ")
            )
        }
        Ok(_) => anyhow!("no app named `{app}`: your org has no apps yet; {next}"),
        Err(_) => {
            anyhow!("no app named `{app}` in your org; {next} (`aloft apps list` shows your apps)")
        }
    }
}

/// Why a machine did not reach the state waited for.
pub(crate) enum WaitFailure {
    /// It is somewhere else (the machine as last seen).
    NotReached(Box<Machine>),
    /// The API could not be asked.
    Error(anyhow::Error),
}

async fn run_machine(ctx: &Ctx, args: RunArgs) -> Result<ExitCode> {
    let scope = Scope::new(ctx, &args.app)?;
    let config = build_config(&args)?;
    let req = aloft_types::api::CreateMachineRequest {
        config,
        name: args.name.clone(),
        region: args.region.clone(),
        skip_launch: args.skip_launch,
        lease_ttl: None,
        skip_service_registration: false,
    };
    let machine = match scope.client.create_machine(&scope.app, &req).await {
        Ok(m) => m,
        Err(e) => return Err(scope.explain(e, None).await),
    };
    let id = machine.id.to_string();
    let machine = if args.detach || args.skip_launch {
        machine
    } else {
        eprintln!("Waiting for machine {id} to start...");
        let launched = follow_pull(&scope, &id).await?;
        let waited = match launched.state {
            MachineState::Started => Ok(launched),
            // A launch that failed (its image could not be pulled, say) will not start.
            MachineState::Failed | MachineState::Destroyed => {
                Err(WaitFailure::NotReached(Box::new(launched)))
            }
            _ => {
                scope
                    .await_state(&id, MachineState::Started, START_WAIT)
                    .await
            }
        };
        match waited {
            Ok(m) => m,
            Err(WaitFailure::Error(e)) => return Err(e),
            Err(WaitFailure::NotReached(m)) => {
                print_events_to_stderr(&m.events);
                bail!(
                    "machine {id} did not start: it is {} (its last events are above); see `aloft machine status {id} -a {}`, and `aloft machine destroy {id} -a {}` to remove it",
                    m.state,
                    scope.app,
                    scope.app
                );
            }
        }
    };
    if ctx.json {
        print_json(&machine)?;
        return Ok(ExitCode::SUCCESS);
    }
    let app = &scope.app;
    let (verb, next) = match machine.state {
        MachineState::Started => (
            "is started",
            format!("See it with `aloft machine status {id} -a {app}`."),
        ),
        MachineState::Created if args.skip_launch => (
            "is created (not started)",
            format!("Start it with `aloft machine start {id} -a {app}`."),
        ),
        _ => (
            "is launching",
            format!("`aloft machine wait {id} -a {app}` waits until it is started."),
        ),
    };
    println!("Machine {id} {verb} in region {}.", machine.region);
    print_fields(&summary(&machine));
    println!("{next}");
    Ok(ExitCode::SUCCESS)
}

/// While the machine launches (`created`, `starting`), looks at it every [`PULL_POLL`] and shows
/// the pull of its image on stderr. Returns the machine once it has left those states, or when
/// nothing has changed for [`START_WAIT`].
pub(crate) async fn follow_pull(scope: &Scope, id: &str) -> Result<Machine> {
    let mut line = PullLine::new(std::io::stderr().is_terminal());
    let mut last: Option<ImagePull> = None;
    let mut changed = Instant::now();
    loop {
        let m = match scope.client.get_machine(&scope.app, id).await {
            Ok(m) => m,
            Err(e) => return Err(scope.explain(e, Some(id)).await),
        };
        if m.image_pull != last {
            changed = Instant::now();
            last = m.image_pull.clone();
        }
        if let Some(pull) = &m.image_pull {
            line.show(&m.image_ref, pull);
        }
        let launching = matches!(m.state, MachineState::Created | MachineState::Starting);
        if !launching || changed.elapsed() >= START_WAIT {
            line.finish(&m);
            return Ok(m);
        }
        let pulling = m
            .image_pull
            .as_ref()
            .is_some_and(|p| p.phase != ImagePullPhase::Done);
        if pulling {
            tokio::time::sleep(PULL_POLL).await;
        } else {
            // Nothing to show until it runs: a long poll answers the moment it does (a sleep
            // here would add up to a whole poll to every `machine run`).
            let query = WaitQuery {
                state: Some(MachineState::Started.as_str().to_string()),
                timeout: Some("1".into()),
                ..WaitQuery::default()
            };
            let asked = Instant::now();
            let answer = scope
                .client
                .wait(&scope.app, id, &query, Duration::from_secs(1))
                .await;
            if answer.is_err() && asked.elapsed() < PULL_POLL {
                tokio::time::sleep(PULL_POLL - asked.elapsed()).await;
            }
        }
    }
}

/// The pull progress line: redrawn in place on a terminal; elsewhere one line per phase or layer
/// change, so logs stay short.
struct PullLine {
    tty: bool,
    /// What the last line was about (`None`: nothing shown yet).
    last: Option<(ImagePullPhase, u32)>,
}

impl PullLine {
    fn new(tty: bool) -> Self {
        Self { tty, last: None }
    }

    fn show(&mut self, image: &ImageRef, p: &ImagePull) {
        let text = pull_text(image, p);
        if self.tty {
            eprint!("\r\x1b[2K{text}");
            let _ = std::io::stderr().flush();
        } else if self.last != Some((p.phase, p.layers_done)) {
            eprintln!("{text}");
        }
        self.last = Some((p.phase, p.layers_done));
    }

    /// Ends what was shown: with the image the machine got, when the pull was seen to start but
    /// not to end (it may end between two looks).
    fn finish(&mut self, m: &Machine) {
        let Some((phase, _)) = self.last.take() else {
            return;
        };
        let pulled = !m.image_ref.digest.is_empty() && m.state != MachineState::Failed;
        if phase != ImagePullPhase::Done && pulled {
            let text = format!(
                "Pulled {} ({})",
                image_name(&m.image_ref),
                m.image_ref.digest
            );
            if self.tty {
                eprintln!("\r\x1b[2K{text}");
            } else {
                eprintln!("{text}");
            }
        } else if self.tty {
            eprintln!();
        }
    }
}

/// `registry/repository:tag`.
fn image_name(image: &ImageRef) -> String {
    let mut name = image.repository.clone();
    if !image.registry.is_empty() {
        name = format!("{}/{name}", image.registry);
    }
    if !image.tag.is_empty() {
        name = format!("{name}:{}", image.tag);
    }
    name
}

/// `Pulling 127.0.0.1:5000/personal/hello:latest: 2/3 layers, 12.1/40.3 MB`.
fn pull_text(image: &ImageRef, p: &ImagePull) -> String {
    let name = image_name(image);
    let layers = format!("{}/{} layers", p.layers_done, p.layers_total);
    match p.phase {
        ImagePullPhase::Resolving => format!("Pulling {name}: resolving"),
        ImagePullPhase::Fetching => format!(
            "Pulling {name}: {layers}, {}/{} MB",
            megabytes(p.bytes_fetched),
            megabytes(p.bytes_total)
        ),
        ImagePullPhase::Assembling => {
            format!("Pulling {name}: {layers}, assembling the root filesystem")
        }
        ImagePullPhase::Done => format!(
            "Pulled {name}: {} layers ({} already on the host)",
            p.layers_total, p.layers_cached
        ),
    }
}

/// The machine config `machine run` sends.
fn build_config(args: &RunArgs) -> Result<MachineConfig> {
    let mut config = MachineConfig::for_image(args.image.clone());
    config.env = parse_pairs("--env", &args.env)?;
    config.metadata = parse_pairs("--metadata", &args.metadata)?;
    let cpu_kind = match args.cpu_kind {
        Some(CpuKindArg::Performance) => CpuKind::Performance,
        Some(CpuKindArg::Shared) | None => CpuKind::Shared,
    };
    let cpus = args.cpus.unwrap_or(1);
    let memory_mb = match &args.memory {
        Some(m) => parse_memory(m)?,
        None => Guest::memory_range(cpu_kind, cpus).0,
    };
    config.guest = Guest {
        cpu_kind,
        cpus,
        memory_mb,
        kernel_args: Vec::new(),
    };
    let cmd = match &args.cmd {
        Some(c) => split_command(c).map_err(|e| anyhow!("--cmd: {e}"))?,
        None => args.command.clone(),
    };
    let entrypoint = match &args.entrypoint {
        Some(e) => split_command(e).map_err(|e| anyhow!("--entrypoint: {e}"))?,
        None => Vec::new(),
    };
    if !cmd.is_empty() || !entrypoint.is_empty() {
        config.init = Some(InitConfig {
            entrypoint,
            cmd,
            ..InitConfig::default()
        });
    }
    let autostop = match args.autostop {
        None | Some(AutostopArg::Off) => Autostop::Off,
        Some(AutostopArg::Stop) => Autostop::Stop,
        Some(AutostopArg::Suspend) => Autostop::Suspend,
    };
    config.services = services(&args.port, autostop)?;
    if autostop != Autostop::Off && config.services.is_empty() {
        bail!(
            "--autostop applies to published services; publish a port with -p too (e.g. -p 80:8080/tcp:http)"
        );
    }
    for spec in &args.check {
        let (name, check) = parse_check(spec)?;
        config.checks.insert(name, check);
    }
    if let Some(v) = &args.volume {
        let (volume, path) = v.split_once(':').filter(|(v, p)| !v.is_empty() && p.starts_with('/')).ok_or_else(|| {
            anyhow!("--volume `{v}` is not VOLUME_ID:/path; write it like --volume vol_0123456789abcdef:/data")
        })?;
        config.mounts = vec![Mount {
            volume: volume.to_string(),
            path: path.to_string(),
            name: None,
            size_gb: None,
            encrypted: None,
        }];
    }
    config.restart = args.restart.map(|r| Restart {
        policy: match r {
            RestartArg::No => RestartPolicy::No,
            RestartArg::Always => RestartPolicy::Always,
            RestartArg::OnFail => RestartPolicy::OnFailure,
        },
        max_retries: None,
    });
    Ok(config)
}

/// `NAME=VALUE` pairs of a repeatable flag.
fn parse_pairs(flag: &str, items: &[String]) -> Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(anyhow!(
                "{flag} `{item}` is not NAME=VALUE; write it like {flag} NAME=value"
            )),
        })
        .collect()
}

/// `512`, `512mb`, `1gb`, `1.5GB` -> MB.
fn parse_memory(s: &str) -> Result<u32> {
    let lower = s.trim().to_ascii_lowercase();
    const UNITS: [(&str, f64); 6] = [
        ("gib", 1024.0),
        ("gb", 1024.0),
        ("g", 1024.0),
        ("mib", 1.0),
        ("mb", 1.0),
        ("m", 1.0),
    ];
    let (number, factor) = UNITS
        .iter()
        .find_map(|(unit, f)| lower.strip_suffix(unit).map(|n| (n, *f)))
        .unwrap_or((lower.as_str(), 1.0));
    let mb = number.trim().parse::<f64>().ok().map(|n| n * factor);
    match mb {
        Some(mb) if mb >= 1.0 && mb.fract() == 0.0 && mb <= f64::from(u32::MAX) => Ok(mb as u32),
        _ => bail!(
            "--memory `{s}` is not a memory size; write MB as a number (512) or with a unit (512mb, 1gb)"
        ),
    }
}

/// `-p` specs grouped into services: ports with the same internal port and protocol share one.
/// `alive=http:8080/healthz` or `db=tcp:5432`.
fn parse_check(spec: &str) -> Result<(String, Check)> {
    let bad = || {
        anyhow!(
            "--check `{spec}`: write NAME=tcp:PORT or NAME=http:PORT/PATH, e.g. alive=http:8080/healthz"
        )
    };
    let (name, rest) = spec.split_once('=').ok_or_else(bad)?;
    let (kind, target) = rest.split_once(':').ok_or_else(bad)?;
    let (port, path) = match target.split_once('/') {
        Some((port, path)) => (port, Some(format!("/{path}"))),
        None => (target, None),
    };
    let port: u32 = port.parse().map_err(|_| bad())?;
    let kind = match kind {
        "tcp" if path.is_none() => CheckType::Tcp,
        "http" => CheckType::Http,
        _ => return Err(bad()),
    };
    if name.is_empty() {
        return Err(bad());
    }
    Ok((
        name.to_string(),
        Check {
            kind,
            port: Some(port),
            interval: None,
            timeout: None,
            grace_period: None,
            method: None,
            path,
            protocol: None,
            headers: Vec::new(),
        },
    ))
}

fn services(specs: &[String], autostop: Autostop) -> Result<Vec<Service>> {
    let mut services: Vec<Service> = Vec::new();
    for spec in specs {
        let (public, internal, protocol, handlers) = parse_port(spec)?;
        let port = Port {
            port: Some(public),
            handlers,
            ..Port::default()
        };
        match services
            .iter_mut()
            .find(|s| s.internal_port == internal && s.protocol == protocol)
        {
            Some(service) => service.ports.push(port),
            None => services.push(Service {
                protocol,
                internal_port: internal,
                autostop,
                ports: vec![port],
                ..Service::default()
            }),
        }
    }
    Ok(services)
}

/// `PUBLIC[:INTERNAL][/PROTOCOL[:HANDLER...]]`.
fn parse_port(spec: &str) -> Result<(u32, u32, Protocol, Vec<Handler>)> {
    let usage = "write it as PUBLIC[:INTERNAL][/PROTOCOL[:HANDLER...]], e.g. 443:8080/tcp:http:tls or 5432/tcp";
    let (ports, rest) = spec.split_once('/').unwrap_or((spec, ""));
    let (public, internal) = ports.split_once(':').unwrap_or((ports, ports));
    let number = |s: &str| -> Result<u32> {
        match s.trim().parse::<u16>() {
            Ok(p) if p > 0 => Ok(u32::from(p)),
            _ => bail!("--port `{spec}`: `{s}` is not a port (1 to 65535); {usage}"),
        }
    };
    let (public, internal) = (number(public)?, number(internal)?);
    let mut parts = rest.split(':');
    let protocol = match parts.next().unwrap_or("") {
        "" | "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => bail!("--port `{spec}`: unknown protocol `{other}`; use tcp or udp"),
    };
    let handlers = parts
        .filter(|h| !h.is_empty())
        .map(|h| match h {
            "http" => Ok(Handler::Http),
            "tls" => Ok(Handler::Tls),
            "proxy_proto" => Ok(Handler::ProxyProto),
            "pg_tls" => Ok(Handler::PgTls),
            other => Err(anyhow!(
                "--port `{spec}`: unknown handler `{other}`; use http, tls, proxy_proto or pg_tls"
            )),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((public, internal, protocol, handlers))
}

fn parse_signal(s: &str) -> Result<Signal> {
    Signal::parse(s).map_err(|e| anyhow!("{e}"))
}

fn parse_timeout(s: &str) -> Result<DurationStr> {
    parse_duration(s).map_err(|e| anyhow!("--timeout: {e}"))?;
    Ok(DurationStr(s.trim().to_string()))
}

/// The key facts about a machine, for `run` and `status`.
fn summary(m: &Machine) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("id", m.id.to_string()),
        ("name", m.name.clone()),
        ("state", m.state.to_string()),
        ("region", m.region.clone()),
        ("image", m.config.image.clone()),
        ("image digest", or_dash(&m.image_ref.digest)),
        (
            "size",
            format!(
                "{}, {} MB",
                m.config.guest.size_name(),
                m.config.guest.memory_mb
            ),
        ),
        ("private ip", or_dash(&m.private_ip)),
        ("version", m.instance_id.to_string()),
    ];
    if let Some(init) = &m.config.init {
        if !init.entrypoint.is_empty() {
            fields.push(("entrypoint", init.entrypoint.join(" ")));
        }
        if !init.cmd.is_empty() {
            fields.push(("cmd", init.cmd.join(" ")));
        }
    }
    for s in &m.config.services {
        for p in &s.ports {
            let public = match (p.port, p.start_port, p.end_port) {
                (Some(port), _, _) => port.to_string(),
                (None, Some(a), Some(b)) => format!("{a}-{b}"),
                _ => "?".into(),
            };
            let handlers: Vec<String> = p.handlers.iter().map(json_name).collect();
            fields.push((
                "service",
                format!(
                    "{public} -> {}/{} [{}] autostop {}",
                    s.internal_port,
                    json_name(&s.protocol),
                    handlers.join(","),
                    s.autostop.as_str()
                ),
            ));
        }
    }
    let (policy, retries) = m.config.restart_policy();
    let policy = match policy {
        RestartPolicy::No => "no".to_string(),
        RestartPolicy::Always => "always".to_string(),
        RestartPolicy::OnFailure => format!("on-failure (up to {retries} retries)"),
    };
    fields.push(("restart", policy));
    if !m.config.metadata.is_empty() {
        let md: Vec<String> = m
            .config
            .metadata
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        fields.push(("metadata", md.join(", ")));
    }
    if m.cordoned {
        fields.push(("cordoned", "yes (no proxy traffic)".into()));
    }
    fields.push(("checks", checks_summary(m)));
    fields.push((
        "host",
        format!("{} ({})", or_dash(&m.host_id), json_name(&m.host_status)),
    ));
    fields.push(("created", m.created_at.clone()));
    fields.push(("updated", m.updated_at.clone()));
    fields
}

/// `2 passing, 1 critical`, or `-`.
pub fn checks_summary(m: &Machine) -> String {
    if m.checks.is_empty() {
        return "-".into();
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for c in &m.checks {
        *counts.entry(json_name(&c.status)).or_default() += 1;
    }
    counts
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Says on stderr which hosts did not answer, so a short list is not mistaken for the whole.
pub fn warn_partial(list: &MachineList) {
    if !list.unreachable_hosts.is_empty() {
        eprintln!(
            "Warning: hosts {} did not answer; their machines are missing below. Try again shortly.",
            list.unreachable_hosts.join(", ")
        );
    }
}

/// The machines table of `machine list` and `status`.
pub fn machines_table(machines: &[Machine]) -> Table {
    let mut table = Table::new(&[
        "ID", "NAME", "STATE", "REGION", "IMAGE", "IP", "CHECKS", "UPDATED",
    ]);
    for m in machines {
        let state = if m.cordoned {
            format!("{} (cordoned)", m.state)
        } else {
            m.state.to_string()
        };
        table.row(vec![
            m.id.to_string(),
            m.name.clone(),
            state,
            m.region.clone(),
            m.config.image.clone(),
            or_dash(&m.private_ip),
            checks_summary(m),
            m.updated_at.clone(),
        ]);
    }
    table
}

fn events_table(events: &[MachineEvent]) -> Table {
    let mut table = Table::new(&["TIME", "TYPE", "STATUS", "SOURCE", "DETAILS"]);
    for e in events {
        let details = match &e.request {
            Some(r) => match (&r.exit_event, &r.message) {
                (Some(x), _) => {
                    let mut d = format!("exit code {}", x.exit_code);
                    if x.signal > 0 {
                        d.push_str(&format!(", signal {}", x.signal));
                    }
                    if x.oom_killed {
                        d.push_str(", out of memory");
                    }
                    if x.requested_stop {
                        d.push_str(", requested stop");
                    }
                    if x.restarts > 0 {
                        d.push_str(&format!(", restarts {}", x.restarts));
                    }
                    d
                }
                (None, Some(msg)) => msg.clone(),
                (None, None) => String::new(),
            },
            None => String::new(),
        };
        table.row(vec![
            rfc3339(e.timestamp),
            json_name(&e.kind),
            e.status.clone(),
            json_name(&e.source),
            details,
        ]);
    }
    table
}

fn print_events_to_stderr(events: &[MachineEvent]) {
    if events.is_empty() {
        return;
    }
    let recent: Vec<MachineEvent> = events.iter().take(10).cloned().collect();
    eprint!("{}", events_table(&recent).render());
}

async fn list(ctx: &Ctx, args: ListArgs) -> Result<ExitCode> {
    let scope = Scope::new(ctx, &args.app)?;
    let query = ListMachinesQuery {
        include_deleted: args.all.then_some(true),
        region: args.region,
        state: args.state,
        metadata: BTreeMap::new(),
    };
    let list = match scope.client.list_machines(&scope.app, &query).await {
        Ok(list) => list,
        Err(e) => return Err(scope.explain(e, None).await),
    };
    warn_partial(&list);
    let machines = list.machines;
    if ctx.json {
        print_json(&machines)?;
    } else {
        machines_table(&machines).print(&format!(
            "No machines in app `{}`; run one with `aloft machine run IMAGE -a {}`.",
            scope.app, scope.app
        ));
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(ctx: &Ctx, args: IdArgs) -> Result<ExitCode> {
    let scope = Scope::new(ctx, &args.app)?;
    let machine = match scope.client.get_machine(&scope.app, &args.id).await {
        Ok(m) => m,
        Err(e) => return Err(scope.explain(e, Some(&args.id)).await),
    };
    if ctx.json {
        print_json(&machine)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("Machine {}", machine.id);
    print_fields(&summary(&machine));
    if !machine.checks.is_empty() {
        println!();
        println!("Checks");
        let mut table = Table::new(&["NAME", "STATUS", "UPDATED", "OUTPUT"]);
        for c in &machine.checks {
            table.row(vec![
                c.name.clone(),
                c.status.as_str().to_string(),
                c.updated_at.clone(),
                c.output.clone(),
            ]);
        }
        table.print("");
    }
    println!();
    println!("Events (newest first)");
    events_table(&machine.events).print("No events yet.");
    Ok(ExitCode::SUCCESS)
}

/// An operation applied to each machine named on the command line.
enum Op {
    Start,
    Stop(StopRequest),
    Restart(RestartQuery),
    Suspend,
    Destroy(bool),
    Cordon(bool),
}

impl Op {
    fn verb(&self) -> &'static str {
        match self {
            Op::Start => "start",
            Op::Stop(_) => "stop",
            Op::Restart(_) => "restart",
            Op::Suspend => "suspend",
            Op::Destroy(_) => "destroy",
            Op::Cordon(true) => "cordon",
            Op::Cordon(false) => "uncordon",
        }
    }
}

async fn each(ctx: &Ctx, args: IdsArgs, op: Op) -> Result<ExitCode> {
    let scope = Scope::new(ctx, &args.app)?;
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for id in &args.ids {
        match apply(&scope, id, &op).await {
            Ok((value, line)) => {
                if !ctx.json {
                    println!("{line}");
                }
                results.push(value);
            }
            Err(e) => failures.push(e),
        }
    }
    if ctx.json && !results.is_empty() {
        print_json(&results)?;
    }
    let total = args.ids.len();
    match failures.len() {
        0 => Ok(ExitCode::SUCCESS),
        1 if total == 1 => Err(failures.remove(0)),
        n => {
            for e in &failures {
                eprintln!("Error: {e:#}");
            }
            bail!(
                "could not {} {n} of {total} machines (see above)",
                op.verb()
            )
        }
    }
}

/// Does `op` on one machine; returns its JSON result and a line for people.
async fn apply(scope: &Scope, id: &str, op: &Op) -> Result<(serde_json::Value, String)> {
    let c = &scope.client;
    let app = scope.app.as_str();
    // Each answer: the JSON result, a line for people, and the state to wait for (operations may
    // answer once the change is under way).
    let started = Some((MachineState::Started, START_WAIT));
    let result = match op {
        Op::Start => c.start(app, id).await.map(|r| {
            let value = json!({"id": id, "ok": true, "previous_state": r.previous_state});
            if r.previous_state == MachineState::Started {
                (value, format!("Machine {id} was already started."), None)
            } else {
                let line = format!("Machine {id} started (it was {}).", r.previous_state);
                (value, line, started)
            }
        }),
        Op::Stop(req) => c.stop(app, id, req).await.map(|note| {
            let value = json!({"id": id, "ok": true, "note": note});
            match note {
                // A no-op (the machine was not started): the note says why.
                Some(note) => (value, sentence(&note), None),
                None => {
                    let grace = req.timeout.as_ref().map(DurationStr::get);
                    let limit = grace.unwrap_or_default() + Duration::from_secs(60);
                    let line = format!("Machine {id} stopped.");
                    (value, line, Some((MachineState::Stopped, limit)))
                }
            }
        }),
        Op::Restart(q) => c.restart(app, id, q).await.map(|note| {
            (
                json!({"id": id, "ok": true, "note": note}),
                with_note(format!("Machine {id} restarted."), note),
                started,
            )
        }),
        Op::Suspend => c.suspend(app, id).await.map(|r| {
            let line = if r.suspended {
                format!("Machine {id} suspended.")
            } else {
                with_note(format!("Machine {id} was stopped, not suspended."), r.note.clone())
            };
            let value = json!({"id": id, "ok": r.ok, "suspended": r.suspended, "note": r.note});
            (value, line, None)
        }),
        Op::Destroy(force) => c.destroy_machine(app, id, *force).await.map(|note| {
            (
                json!({"id": id, "ok": true, "note": note}),
                with_note(format!("Machine {id} destroyed."), note),
                None,
            )
        }),
        Op::Cordon(on) => c.cordon(app, id, *on).await.map(|()| {
            let line = if *on {
                format!("Machine {id} cordoned: the proxy sends it no traffic (undo with `aloft machine uncordon {id} -a {app}`).")
            } else {
                format!("Machine {id} uncordoned: the proxy routes to it again.")
            };
            (json!({"id": id, "ok": true, "cordoned": on}), line, None)
        }),
    };
    let (value, line, settle) = match result {
        Ok(done) => done,
        Err(ClientError::Api(ApiError::Precondition(msg))) => {
            return Err(precondition_hint(scope, id, op, &msg).await);
        }
        Err(e) => return Err(scope.explain(e, Some(id)).await),
    };
    if let Some((target, limit)) = settle {
        match scope.await_state(id, target, limit).await {
            Ok(_) => {}
            Err(WaitFailure::Error(e)) => return Err(e),
            Err(WaitFailure::NotReached(m)) => {
                print_events_to_stderr(&m.events);
                bail!(
                    "machine {id} did not reach `{target}`: it is {} (its last events are above); see `aloft machine status {id} -a {app}`",
                    m.state
                );
            }
        }
    }
    Ok((value, line))
}

/// `machine x is stopped` -> `Machine x is stopped.`
fn sentence(s: &str) -> String {
    let mut chars = s.trim().trim_end_matches('.').chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

fn with_note(line: String, note: Option<String>) -> String {
    match note {
        Some(n) => format!("{line} {n}"),
        None => line,
    }
}

/// A 412. The API's messages say what to do, in API terms; destroying a started machine gets the
/// CLI's own words (`--force`).
async fn precondition_hint(scope: &Scope, id: &str, op: &Op, msg: &str) -> anyhow::Error {
    let app = &scope.app;
    if let Op::Destroy(false) = op
        && let Ok(m) = scope.client.get_machine(app, id).await
        && m.state == MachineState::Started
    {
        return anyhow!(
            "machine {id} is started: stop it first with `aloft machine stop {id} -a {app}`, or pass --force to destroy it anyway"
        );
    }
    anyhow!("{msg}")
}

async fn signal(ctx: &Ctx, args: SignalArgs) -> Result<ExitCode> {
    let scope = Scope::new(ctx, &args.id.app)?;
    let id = &args.id.id;
    let sig = parse_signal(&args.signal)?;
    if let Err(e) = scope
        .client
        .signal(&scope.app, id, &SignalRequest { signal: sig })
        .await
    {
        return Err(scope.explain(e, Some(id)).await);
    }
    if ctx.json {
        print_json(&json!({"id": id, "ok": true, "signal": sig.name()}))?;
    } else {
        println!("Sent {} to machine {id}.", sig.name());
    }
    Ok(ExitCode::SUCCESS)
}

async fn exec(ctx: &Ctx, args: ExecArgs) -> Result<ExitCode> {
    let scope = Scope::new(ctx, &args.id.app)?;
    let id = &args.id.id;
    let timeout = parse_duration(&args.timeout).map_err(|e| anyhow!("--timeout: {e}"))?;
    let req = ExecRequest {
        command: args.command.clone(),
        cmd: None,
        timeout: Some(timeout.as_secs().max(1)),
        stdin: None,
    };
    let resp = match scope.client.exec(&scope.app, id, &req).await {
        Ok(r) => r,
        Err(e) => return Err(scope.explain(e, Some(id)).await),
    };
    if ctx.json {
        print_json(&resp)?;
    } else {
        print!("{}", resp.stdout);
        eprint!("{}", resp.stderr);
        std::io::stdout().flush()?;
    }
    let code = match resp.exit_code {
        c @ 0..=255 => c,
        _ if resp.exit_signal > 0 => 128 + resp.exit_signal,
        _ => 1,
    };
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

async fn wait(ctx: &Ctx, args: WaitArgs) -> Result<ExitCode> {
    let scope = Scope::new(ctx, &args.id.app)?;
    let id = &args.id.id;
    let limit = parse_duration(&args.timeout).map_err(|e| anyhow!("--timeout: {e}"))?;
    let target = MachineState::from(args.state);
    let machine = match scope.await_state(id, target, limit).await {
        Ok(m) => m,
        Err(WaitFailure::Error(e)) => return Err(e),
        Err(WaitFailure::NotReached(m)) => bail!(
            "machine {id} did not reach `{target}` within {} (it is {}); `aloft machine status {id} -a {}` shows its events",
            args.timeout,
            m.state,
            scope.app
        ),
    };
    if ctx.json {
        print_json(&json!({"id": id, "ok": true, "state": machine.state}))?;
    } else {
        println!("Machine {id} is {}.", machine.state);
    }
    Ok(ExitCode::SUCCESS)
}

async fn lease_view(ctx: &Ctx, args: IdArgs) -> Result<ExitCode> {
    let scope = Scope::new(ctx, &args.app)?;
    let id = &args.id;
    let lease = match scope.client.lease(&scope.app, id).await {
        Ok(l) => Some(l.data),
        Err(e) => {
            no_lease(&scope, id, e).await?;
            None
        }
    };
    if ctx.json {
        print_json(&lease)?;
        return Ok(ExitCode::SUCCESS);
    }
    match lease {
        None => println!("Machine {id} has no lease."),
        Some(l) => {
            let mut table = Table::new(&["NONCE", "OWNER", "EXPIRES", "DESCRIPTION", "VERSION"]);
            table.row(vec![
                l.nonce,
                l.owner,
                rfc3339(l.expires_at.saturating_mul(1000)),
                or_dash(&l.description),
                l.version,
            ]);
            table.print("");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn lease_clear(ctx: &Ctx, args: IdArgs) -> Result<ExitCode> {
    let scope = Scope::new(ctx, &args.app)?;
    let id = &args.id;
    let lease = match scope.client.lease(&scope.app, id).await {
        Ok(l) => l.data,
        Err(e) => {
            no_lease(&scope, id, e).await?;
            if ctx.json {
                print_json(&json!({"id": id, "ok": true, "cleared": false}))?;
            } else {
                println!("Machine {id} has no lease; nothing to clear.");
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    if let Err(e) = scope
        .client
        .release_lease(&scope.app, id, &lease.nonce)
        .await
    {
        return Err(scope.explain(e, Some(id)).await);
    }
    if ctx.json {
        print_json(&json!({"id": id, "ok": true, "cleared": true, "owner": lease.owner}))?;
    } else {
        println!(
            "Cleared the lease on machine {id} (held by {}).",
            lease.owner
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A 404 from `GET .../lease` means "no lease" (`Ok`) when the machine exists; any other error
/// stays one.
async fn no_lease(scope: &Scope, id: &str, err: ClientError) -> Result<()> {
    if matches!(err.api(), Some(ApiError::NotFound(_)))
        && scope.client.get_machine(&scope.app, id).await.is_ok()
    {
        return Ok(());
    }
    Err(scope.explain(err, Some(id)).await)
}

#[cfg(test)]
mod tests {
    #[test]
    fn checks_from_the_command_line() {
        let (name, c) = parse_check("alive=http:8080/healthz").unwrap();
        assert_eq!(name, "alive");
        assert_eq!(
            (c.kind, c.port, c.path.as_deref()),
            (CheckType::Http, Some(8080), Some("/healthz"))
        );
        let (_, c) = parse_check("db=tcp:5432").unwrap();
        assert_eq!((c.kind, c.port, c.path), (CheckType::Tcp, Some(5432), None));
        for bad in [
            "alive",
            "alive=http",
            "alive=udp:53",
            "=tcp:1",
            "x=tcp:1/path",
            "x=http:port/",
        ] {
            let e = parse_check(bad).unwrap_err().to_string();
            assert!(e.contains("NAME=tcp:PORT"), "{bad}: {e}");
        }
    }

    use super::*;

    #[test]
    fn ports_follow_the_reference_syntax() {
        let (p, i, proto, h) = parse_port("443:8080/tcp:http:tls").unwrap();
        assert_eq!((p, i, proto), (443, 8080, Protocol::Tcp));
        assert_eq!(h, vec![Handler::Http, Handler::Tls]);
        let (p, i, proto, h) = parse_port("5432/tcp").unwrap();
        assert_eq!((p, i, proto, h.len()), (5432, 5432, Protocol::Tcp, 0));
        let (p, i, proto, _) = parse_port("53:5353/udp").unwrap();
        assert_eq!((p, i, proto), (53, 5353, Protocol::Udp));
        assert_eq!(parse_port("80").unwrap().1, 80);
        for bad in ["0", "x:80", "80/sctp", "80/tcp:gopher", "70000"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
        let s = services(
            &[
                "80:8080/tcp:http".into(),
                "443:8080/tcp:http:tls".into(),
                "5432/tcp".into(),
            ],
            Autostop::Stop,
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].ports.len(), 2);
        assert_eq!(s[0].autostop, Autostop::Stop);
        assert_eq!(s[1].internal_port, 5432);
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512").unwrap(), 512);
        assert_eq!(parse_memory("512mb").unwrap(), 512);
        assert_eq!(parse_memory("1gb").unwrap(), 1024);
        assert_eq!(parse_memory("1.5GB").unwrap(), 1536);
        assert_eq!(parse_memory("2g").unwrap(), 2048);
        for bad in ["", "lots", "0", "-1", "1.5"] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pull_lines() {
        let image = ImageRef {
            registry: "127.0.0.1:5000".into(),
            repository: "personal/hello".into(),
            tag: "latest".into(),
            digest: String::new(),
        };
        let p = ImagePull {
            phase: ImagePullPhase::Fetching,
            layers_total: 3,
            layers_done: 2,
            layers_cached: 1,
            bytes_total: 40_300_000,
            bytes_fetched: 12_100_000,
        };
        assert_eq!(
            pull_text(&image, &p),
            "Pulling 127.0.0.1:5000/personal/hello:latest: 2/3 layers, 12.1/40.3 MB"
        );
        let done = ImagePull {
            phase: ImagePullPhase::Done,
            ..p
        };
        assert_eq!(
            pull_text(&image, &done),
            "Pulled 127.0.0.1:5000/personal/hello:latest: 3 layers (1 already on the host)"
        );
    }

    #[test]
    fn pairs() {
        let m = parse_pairs("--env", &["A=1".into(), "B=x=y".into(), "C=".into()]).unwrap();
        assert_eq!(m["B"], "x=y");
        assert_eq!(m["C"], "");
        assert!(parse_pairs("--env", &["A".into()]).is_err());
        assert!(parse_pairs("--env", &["=1".into()]).is_err());
    }
}
