//! The aloft command line's client verbs: what users type to drive a cloud (`aloft apps ...`,
//! `aloft machine ...`, `aloft deploy`, `aloft image ...`, `aloft status`, ...). The server
//! roles (`aloft dev ...`, `aloft server ...`) are `aloft-node`'s; the `aloft` binary parses
//! both and hands each its verbs.
//!
//! Client commands talk to the Machines API over HTTP through `client::Client`; they print
//! tables by default and JSON with `--json`, and every error goes to stderr as a sentence that says
//! what to do next, with a non-zero exit.
//!
//! Layout: one module per command group (`apps`, `machine`, `deploy`, `image`, `status`,
//! `platform`, `registry`, `tokens`, ...), `client` (the typed HTTP client), `output` (tables and JSON)
//! and [`config`] (the only module that reads the environment).

mod app_config;
mod apps;
mod build;
mod certs;
mod client;
pub mod config;
mod deploy;
mod hosts;
mod image;
mod launch;
mod logs;
mod machine;
mod operator;
mod orgs;
mod output;
mod platform;
mod registry;
mod releases;
mod scale;
mod secrets;
mod status;
mod tokens;
mod volumes;

use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

/// The client verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list and destroy apps.
    #[command(subcommand)]
    Apps(apps::AppsCommand),
    /// Hostnames an app is served at, and their certificates.
    #[command(subcommand, visible_alias = "certificates")]
    Certs(certs::CertsCommand),
    /// Run and manage machines.
    #[command(subcommand, visible_alias = "machines", visible_alias = "m")]
    Machine(machine::MachineCommand),
    /// The cluster's hosts: list them, make join tokens for new ones, revoke a host's
    /// credential (operators).
    #[command(subcommand)]
    Hosts(hosts::HostsCommand),
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
    /// The orgs your token may act in.
    #[command(subcommand, visible_alias = "org")]
    Orgs(orgs::OrgsCommand),
    /// Facts about the platform.
    #[command(subcommand)]
    Platform(platform::PlatformCommand),
    /// Operate the OCI registry; log the org in to third-party registries.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Create, list and revoke API tokens: org-wide, or deploy tokens for one app, with expiry.
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
}

/// What every command gets: the environment, the global flags, and a way to build a client.
pub struct Ctx {
    env: config::Env,
    json: bool,
    data_dir: Option<PathBuf>,
}

impl Ctx {
    /// The environment and the global flags (`--json`, `--data-dir`).
    pub fn new(env: config::Env, json: bool, data_dir: Option<PathBuf>) -> Self {
        Self {
            env,
            json,
            data_dir,
        }
    }

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

/// Runs a client verb.
pub async fn run(command: Command, ctx: Ctx) -> Result<ExitCode> {
    match command {
        Command::Apps(cmd) => apps::run(cmd, &ctx).await,
        Command::Certs(cmd) => certs::run(cmd, &ctx).await,
        Command::Machine(cmd) => machine::run(cmd, &ctx).await,
        Command::Hosts(cmd) => hosts::run(cmd, &ctx).await,
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
        Command::Orgs(cmd) => orgs::run(cmd, &ctx).await,
        Command::Platform(cmd) => platform::run(cmd, &ctx).await,
        Command::Registry(cmd) => registry::run(cmd, &ctx).await,
        Command::Tokens(cmd) => tokens::run(cmd, &ctx).await,
    }
}
