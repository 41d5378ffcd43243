//! The command line of `aloft machine ...`: each verb's arguments and flags, as clap parses
//! them (the verbs' own modules read them).

use aloft_types::MachineState;
use clap::{Args, ValueEnum};

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
    pub(super) id: String,
    #[command(flatten)]
    pub(super) app: AppArg,
}

#[derive(Debug, Args)]
pub struct IdsArgs {
    /// The machines' ids.
    #[arg(required = true, value_name = "ID")]
    pub(super) ids: Vec<String>,
    #[command(flatten)]
    pub(super) app: AppArg,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The image to run, e.g. `nginx:latest` or `127.0.0.1:5000/personal/hello:v1`.
    pub(super) image: String,
    /// The command to run instead of the image's CMD (everything after the image).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub(super) command: Vec<String>,
    #[command(flatten)]
    pub(super) app: AppArg,
    /// The region to run in [default: the platform's default region].
    #[arg(long, short = 'r')]
    pub(super) region: Option<String>,
    /// An environment variable, `NAME=VALUE` (repeatable).
    #[arg(long, short = 'e', value_name = "NAME=VALUE")]
    pub(super) env: Vec<String>,
    /// A published port: `PUBLIC[:INTERNAL][/PROTOCOL[:HANDLER...]]`, e.g. `443:8080/tcp:http:tls`
    /// or `5432/tcp` (repeatable). PROTOCOL is tcp (default) or udp; handlers are http, tls,
    /// proxy_proto and pg_tls.
    #[arg(long, short = 'p', value_name = "PORT")]
    pub(super) port: Vec<String>,
    /// Restart policy when the process exits on its own [default: on-fail].
    #[arg(long, value_enum)]
    pub(super) restart: Option<RestartArg>,
    /// What the proxy does with an idle machine of the published services.
    #[arg(long, value_enum)]
    pub(super) autostop: Option<AutostopArg>,
    /// Memory, in MB (`512`) or with a unit (`512mb`, `1gb`).
    #[arg(long, value_name = "SIZE")]
    pub(super) memory: Option<String>,
    /// Number of CPUs.
    #[arg(long)]
    pub(super) cpus: Option<u32>,
    /// CPU kind.
    #[arg(long, value_enum)]
    pub(super) cpu_kind: Option<CpuKindArg>,
    /// The machine's name [default: generated].
    #[arg(long)]
    pub(super) name: Option<String>,
    /// A metadata label, `KEY=VALUE` (repeatable).
    #[arg(long, short = 'm', value_name = "KEY=VALUE")]
    pub(super) metadata: Vec<String>,
    /// Replace the image's ENTRYPOINT, e.g. `--entrypoint "/bin/sh -c"`.
    #[arg(long, value_name = "COMMAND")]
    pub(super) entrypoint: Option<String>,
    /// Replace the image's CMD, e.g. `--cmd "sleep 100"` (or give it after the image).
    #[arg(long, value_name = "COMMAND", conflicts_with = "command")]
    pub(super) cmd: Option<String>,
    /// A health check, `NAME=tcp:PORT` or `NAME=http:PORT/PATH`, e.g. `alive=http:8080/healthz`
    /// (repeatable): every 15 s; the proxy sends nothing to a machine whose check fails.
    #[arg(long, value_name = "NAME=CHECK")]
    pub(super) check: Vec<String>,
    /// A volume to mount, `VOLUME_ID:/path` (`aloft volumes create` makes one); the machine
    /// runs on the volume's host.
    #[arg(long, short = 'v', value_name = "VOLUME:PATH")]
    pub(super) volume: Option<String>,
    /// Create the machine without starting it.
    #[arg(long)]
    pub(super) skip_launch: bool,
    /// Do not wait for the machine to start.
    #[arg(long)]
    pub(super) detach: bool,
}

/// `machine update`: flyctl's flags for what to change.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The machine's id.
    pub(super) id: String,
    #[command(flatten)]
    pub(super) app: AppArg,
    /// A new image.
    #[arg(long, short = 'i')]
    pub(super) image: Option<String>,
    /// Set an environment variable, `NAME=VALUE` (repeatable; others are kept).
    #[arg(long, short = 'e', value_name = "NAME=VALUE")]
    pub(super) env: Vec<String>,
    /// Set a metadata label, `KEY=VALUE` (repeatable; others are kept).
    #[arg(long, short = 'm', value_name = "KEY=VALUE")]
    pub(super) metadata: Vec<String>,
    /// A size preset, e.g. `shared-cpu-2x` or `performance-1x` (`aloft platform vm-sizes`).
    #[arg(long, value_name = "SIZE")]
    pub(super) vm_size: Option<String>,
    /// Memory, in MB (`512`) or with a unit (`1gb`).
    #[arg(long, alias = "memory", value_name = "SIZE")]
    pub(super) vm_memory: Option<String>,
    /// Number of CPUs.
    #[arg(long, alias = "cpus")]
    pub(super) vm_cpus: Option<u32>,
    /// CPU kind.
    #[arg(long, alias = "cpu-kind", value_enum)]
    pub(super) vm_cpu_kind: Option<CpuKindArg>,
    /// Replace the image's CMD, e.g. `--command "sleep 100"`.
    #[arg(long, short = 'C', value_name = "COMMAND")]
    pub(super) command: Option<String>,
    /// Replace the image's ENTRYPOINT.
    #[arg(long, value_name = "COMMAND")]
    pub(super) entrypoint: Option<String>,
    /// Update the config but do not start the new version (a started machine ends stopped).
    #[arg(long)]
    pub(super) skip_start: bool,
    /// Do not wait for the machine to start again.
    #[arg(long)]
    pub(super) detach: bool,
    /// Accept the change without asking (aloft does not ask; accepted as flyctl has it).
    #[arg(long, short = 'y')]
    pub(super) yes: bool,
}

/// `machine clone`.
#[derive(Debug, Args)]
pub struct CloneArgs {
    /// The machine to copy.
    pub(super) id: String,
    #[command(flatten)]
    pub(super) app: AppArg,
    /// Where the clone runs [default: the machine's region].
    #[arg(long, short = 'r')]
    pub(super) region: Option<String>,
    /// The clone's name [default: generated].
    #[arg(long)]
    pub(super) name: Option<String>,
    /// Do not wait for the clone to start.
    #[arg(long)]
    pub(super) detach: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum RestartArg {
    No,
    Always,
    #[value(name = "on-fail", alias = "on-failure")]
    OnFail,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum AutostopArg {
    Off,
    Stop,
    Suspend,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum CpuKindArg {
    Shared,
    Performance,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub(super) app: AppArg,
    /// Include destroyed machines.
    #[arg(long)]
    pub(super) all: bool,
    /// Only machines in this region.
    #[arg(long, short = 'r')]
    pub(super) region: Option<String>,
    /// Only machines in these states (comma-separated).
    #[arg(long)]
    pub(super) state: Option<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub(super) ids: IdsArgs,
    /// The signal to send first [default: the machine's stop_config, else SIGTERM].
    #[arg(long, short = 's')]
    pub(super) signal: Option<String>,
    /// How long to wait before SIGKILL, e.g. `30s`.
    #[arg(long)]
    pub(super) timeout: Option<String>,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    #[command(flatten)]
    pub(super) ids: IdsArgs,
    /// The signal that stops the machine before it starts again.
    #[arg(long, short = 's')]
    pub(super) signal: Option<String>,
    /// How long to wait before SIGKILL, e.g. `30s`.
    #[arg(long)]
    pub(super) timeout: Option<String>,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub(super) ids: IdsArgs,
    /// Kill a started machine instead of refusing.
    #[arg(long, short = 'f')]
    pub(super) force: bool,
    /// Do not ask (aloft does not ask; accepted as flyctl has it).
    #[arg(long, short = 'y')]
    pub(super) yes: bool,
}

#[derive(Debug, Args)]
pub struct SignalArgs {
    #[command(flatten)]
    pub(super) id: IdArgs,
    /// The signal, e.g. `SIGUSR1`, `HUP` or `10`.
    #[arg(long, short = 's', required = true)]
    pub(super) signal: String,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub(super) id: IdArgs,
    /// How long the command may run, e.g. `30s` (at most 300s).
    #[arg(long, default_value = "30s")]
    pub(super) timeout: String,
    /// The command and its arguments (put them after `--`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "COMMAND"
    )]
    pub(super) command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    #[command(flatten)]
    pub(super) id: IdArgs,
    /// The state to wait for.
    #[arg(long, value_enum, default_value_t = WaitState::Started)]
    pub(super) state: WaitState,
    /// How long to wait, e.g. `60s` or `5m`.
    #[arg(long, default_value = "60s")]
    pub(super) timeout: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum WaitState {
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
