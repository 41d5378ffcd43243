//! The aloft command line: the verbs users type (`aloft apps ...`, `aloft machine ...`,
//! `aloft image ...`, `aloft status`, `aloft platform regions`) and the server roles
//! (`aloft dev up`, `aloft server registry`).
//!
//! Client commands talk to the Machines API over HTTP through [`client::Client`]; they print
//! tables by default and JSON with `--json`, and every error goes to stderr as a sentence that says
//! what to do next, with a non-zero exit. `aloft dev up` runs a control plane and one host agent
//! in this process, exactly as they would run on separate hosts (loopback HTTP between them).
//!
//! Layout: one module per command group (`apps`, `machine`, `image`, `status`, `platform`,
//! `dev`, `registry`), `client` (the typed HTTP client), `output` (tables and JSON) and `config`
//! (the only module that reads the environment).

mod app_config;
mod apps;
mod build;
mod certs;
mod client;
mod cluster;
mod config;
mod deploy;
mod dev;
mod image;
mod launch;
mod logs;
mod machine;
mod mesh;
mod output;
mod platform;
mod registry;
mod releases;
mod scale;
mod secrets;
mod server;
mod status;
mod volumes;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// aloft: run OCI images as machines, close to your users, on servers you own.
#[derive(Debug, Parser)]
#[command(
    name = "aloft",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    /// Print JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    json: bool,

    /// The dev data directory [default: $ALOFT_DATA_DIR, else ~/.local/share/aloft/dev].
    /// `aloft dev up` keeps its state there; other commands read the API token from its `token`
    /// file when ALOFT_API_TOKEN is not set.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list and destroy apps.
    #[command(subcommand)]
    Apps(apps::AppsCommand),
    /// Hostnames an app is served at, and their certificates.
    #[command(subcommand, visible_alias = "certificates")]
    Certs(certs::CertsCommand),
    /// Run and manage machines.
    #[command(subcommand, visible_alias = "machines")]
    Machine(machine::MachineCommand),
    /// Build images; list and prune the images on hosts.
    #[command(subcommand, visible_alias = "images")]
    Image(image::ImageCommand),
    /// Create an app from an image: write its fly.toml and deploy it.
    Launch(launch::LaunchArgs),
    /// Apply the app's config (fly.toml) to its machines, process group by process group.
    Deploy(deploy::DeployArgs),
    /// Check and show an app's config (fly.toml).
    #[command(subcommand)]
    Config(app_config::ConfigCommand),
    /// Show an app and its machines.
    Status(status::StatusArgs),
    /// List the app's releases (one per deploy) and how each ended.
    Releases(releases::ReleasesArgs),
    /// Set, remove and list an app's secrets (environment variables kept encrypted).
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// Create, list, extend and destroy an app's volumes, and take snapshots.
    #[command(subcommand, alias = "volume", alias = "vol")]
    Volumes(volumes::VolumesCommand),
    /// Change how many machines an app runs in each region.
    #[command(subcommand)]
    Scale(scale::ScaleCommand),
    /// Show (and follow) the log lines of an app's machines.
    Logs(logs::LogsArgs),
    /// Facts about the platform.
    #[command(subcommand)]
    Platform(platform::PlatformCommand),
    /// Run aloft on this computer.
    #[command(subcommand)]
    Dev(dev::DevCommand),
    /// Run one server role on its own.
    #[command(subcommand)]
    Server(server::ServerCommand),
    /// Operate the OCI registry.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
}

/// What every command gets: the environment, the global flags, and a way to build a client.
pub(crate) struct Ctx {
    env: config::Env,
    json: bool,
    data_dir: Option<PathBuf>,
}

impl Ctx {
    /// A client of the Machines API, configured from the environment.
    fn client(&self) -> Result<client::Client> {
        Ok(client::Client::new(&self.client_config()?)?)
    }

    /// The API's URL and token.
    fn client_config(&self) -> Result<config::ClientConfig> {
        self.env.client(self.data_dir.as_deref())
    }

    /// The registry's URL: the one `aloft dev up` wrote to the data dir, else
    /// `http://127.0.0.1:5000` (the dev cluster's).
    fn registry_url(&self) -> String {
        self.data_dir()
            .ok()
            .and_then(|d| std::fs::read_to_string(d.join(registry::REGISTRY_URL_FILE)).ok())
            .map(|u| u.trim().to_string())
            .unwrap_or_else(|| registry::DEFAULT_REGISTRY_URL.to_string())
    }

    /// The dev data dir (`--data-dir`, `$ALOFT_DATA_DIR`, `~/.local/share/aloft/dev`).
    fn data_dir(&self) -> Result<PathBuf> {
        self.env.data_dir(self.data_dir.as_deref())
    }

    /// The app named by `-a/--app`, else `$ALOFT_APP`.
    fn app(&self, flag: Option<String>) -> Result<String> {
        self.env.app(flag)
    }

    /// The app a command works on: `-a`, else `-c`'s config's `app`, else `$ALOFT_APP`, else
    /// the `app` of `./fly.toml` (or `./aloft.toml`) when there is one.
    fn app_of(&self, arg: &machine::AppArg) -> Result<String> {
        if arg.app.is_some() || (arg.file.config.is_none() && self.env.app(None).is_ok()) {
            return self.app(arg.app.clone());
        }
        match app_config::app_name(&arg.file)? {
            Some(app) => Ok(app),
            None => self.app(None),
        }
    }
}

/// Runs the `aloft` command line with the process's arguments and environment.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = config::Env::read();
    let default_level = match cli.command {
        Command::Dev(_) | Command::Server(_) => "info",
        _ => "warn",
    };
    init_logging(&env.log_filter(default_level), default_level);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ctx = Ctx {
        env,
        json: cli.json,
        data_dir: cli.data_dir,
    };
    let result = runtime.block_on(run(cli.command, ctx));
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, ctx: Ctx) -> Result<ExitCode> {
    match command {
        Command::Apps(cmd) => apps::run(cmd, &ctx).await,
        Command::Certs(cmd) => certs::run(cmd, &ctx).await,
        Command::Machine(cmd) => machine::run(cmd, &ctx).await,
        Command::Image(cmd) => image::run(cmd, &ctx).await,
        Command::Config(cmd) => app_config::run(cmd, &ctx).await,
        Command::Deploy(args) => deploy::run(args, &ctx).await,
        Command::Launch(args) => launch::run(args, &ctx).await,
        Command::Status(args) => status::run(args, &ctx).await,
        Command::Releases(args) => releases::run(args, &ctx).await,
        Command::Scale(command) => scale::run(command, &ctx).await,
        Command::Secrets(command) => secrets::run(command, &ctx).await,
        Command::Volumes(command) => volumes::run(command, &ctx).await,
        Command::Logs(args) => logs::run(&ctx, args).await,
        Command::Platform(cmd) => platform::run(cmd, &ctx).await,
        Command::Dev(cmd) => dev::run(cmd, &ctx).await,
        Command::Server(cmd) => server::run(cmd, &ctx).await,
        Command::Registry(cmd) => registry::run(cmd, &ctx).await,
    }
}

/// Logs to stderr; `filter` is `$RUST_LOG` or the command's default level.
fn init_logging(filter: &str, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let (filter, bad) = match EnvFilter::try_new(filter) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new(default_level), Some(e)),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Some(e) = bad {
        tracing::warn!("RUST_LOG is not a valid filter ({e}); logging at {default_level}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_options_after_the_image_and_a_command_after_them() {
        let cli = Cli::try_parse_from([
            "aloft",
            "machine",
            "run",
            "hello:latest",
            "-a",
            "hello",
            "--region",
            "local",
            "-p",
            "80:8080/tcp:http",
            "--env",
            "GREETING=hi",
            "--json",
            "sleep",
            "-x",
            "--detach",
        ])
        .unwrap();
        assert!(cli.json);
        let Command::Machine(machine::MachineCommand::Run(args)) = cli.command else {
            panic!("not a run: {:?}", cli.command);
        };
        let dbg = format!("{args:?}");
        assert!(dbg.contains(r#"app: Some("hello")"#), "{dbg}");
        assert!(
            dbg.contains(r#"command: ["sleep", "-x", "--detach"]"#),
            "{dbg}"
        );
        assert!(dbg.contains("detach: false"), "{dbg}");
    }

    #[test]
    fn exec_takes_the_command_after_dashes() {
        let cli = Cli::try_parse_from([
            "aloft", "machine", "exec", "abc", "-a", "x", "--", "ls", "-la", "--json",
        ])
        .unwrap();
        assert!(!cli.json, "--json after -- belongs to the command");
        let dbg = format!("{:?}", cli.command);
        assert!(dbg.contains(r#"command: ["ls", "-la", "--json"]"#), "{dbg}");
    }
}
