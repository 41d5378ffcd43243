//! `aloft machine ...`: run, list, status, start/stop/restart/suspend/destroy, signal/kill, exec,
//! wait, cordon/uncordon, update, clone and leases. `run` shows the pull of the machine's image while it launches.
//!
//! The verbs' arguments are in [`args`]; every verb works in a [`Scope`] (an app and a client,
//! [`scope`]); `run` is [`create`] with the config from its [`flags`]; `list` and `status` are
//! [`show`]; the state changes, `signal` and `wait` are [`lifecycle`]; `update`, `clone` and
//! `kill` are [`update`]; then [`exec`] and [`leases`].

mod args;
mod create;
mod exec;
mod flags;
mod leases;
mod lifecycle;
mod scope;
mod show;
mod update;

pub use args::AppArg;
pub(crate) use create::follow_pull;
pub(crate) use scope::{Scope, WaitFailure, explain_app_error, get_app};
pub use scope::{app_missing, app_missing_then};
pub use show::{machines_table, warn_partial};

use crate::Ctx;
use aloft_types::api::{RestartQuery, StopRequest};
use anyhow::Result;
use args::{
    CloneArgs, DestroyArgs, ExecArgs, IdArgs, IdsArgs, ListArgs, RestartArgs, RunArgs, SignalArgs,
    StopArgs, UpdateArgs, WaitArgs,
};
use clap::Subcommand;
use create::run_machine;
use exec::exec;
use flags::{parse_signal, parse_timeout};
use leases::{lease_clear, lease_view};
use lifecycle::{Op, each, signal, wait};
use show::{list, status};
use std::process::ExitCode;
use std::time::Duration;

/// How long `machine run` and `machine start`/`restart` wait for a machine to be started.
const START_WAIT: Duration = Duration::from_secs(120);

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
    /// Send SIGKILL to machines' main processes.
    Kill(IdsArgs),
    /// Change a machine's config (image, env, size, command) and start its new version.
    Update(Box<UpdateArgs>),
    /// Create a new machine with another's config (a mounted volume gets a new empty one).
    Clone(CloneArgs),
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
        MachineCommand::Kill(args) => update::kill(ctx, args).await,
        MachineCommand::Update(args) => update::update(ctx, *args).await,
        MachineCommand::Clone(args) => update::clone(ctx, args).await,
        MachineCommand::Exec(args) => exec(ctx, args).await,
        MachineCommand::Wait(args) => wait(ctx, args).await,
        MachineCommand::Leases(LeasesCommand::View(args)) => lease_view(ctx, args).await,
        MachineCommand::Leases(LeasesCommand::Clear(args)) => lease_clear(ctx, args).await,
    }
}
