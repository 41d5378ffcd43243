//! The `aloft` binary: one command line for every verb. `aloft dev ...` and `aloft server ...`
//! run server roles (`aloft_node`); every other verb is a client of a cloud (`aloft_cli`). This
//! file parses the command line, sets up logging and the async runtime, and hands each verb to
//! its crate.

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
    #[command(flatten)]
    Client(aloft_cli::Command),
    /// Run aloft on this computer.
    #[command(subcommand)]
    Dev(aloft_node::DevCommand),
    /// Run one server role on its own.
    #[command(subcommand)]
    Server(aloft_node::ServerCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = aloft_cli::config::Env::read();
    let default_level = match cli.command {
        Command::Dev(_) | Command::Server(_) => "info",
        Command::Client(_) => "warn",
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
    let result = runtime.block_on(async {
        match cli.command {
            Command::Client(cmd) => {
                aloft_cli::run(cmd, aloft_cli::Ctx::new(env, cli.json, cli.data_dir)).await
            }
            Command::Dev(cmd) => {
                aloft_node::dev(cmd, &node_ctx(&env, cli.json, cli.data_dir)).await
            }
            Command::Server(cmd) => {
                aloft_node::server(cmd, &node_ctx(&env, cli.json, cli.data_dir)).await
            }
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What the server roles take from the environment and the global flags.
fn node_ctx(
    env: &aloft_cli::config::Env,
    json: bool,
    data_dir: Option<PathBuf>,
) -> aloft_node::NodeCtx {
    aloft_node::NodeCtx {
        json,
        data_dir: env.data_dir(data_dir.as_deref()),
        api_url: env.api_url(),
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
        let Command::Client(client) = cli.command else {
            panic!("not a client verb: {:?}", cli.command);
        };
        let dbg = format!("{client:?}");
        assert!(dbg.starts_with("Machine(Run("), "not a run: {dbg}");
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

    #[test]
    fn dev_and_server_verbs_go_to_the_node_roles() {
        let cli = Cli::try_parse_from(["aloft", "dev", "up", "--region", "ord"]).unwrap();
        assert!(matches!(cli.command, Command::Dev(_)), "{:?}", cli.command);
        let cli = Cli::try_parse_from(["aloft", "server", "host", "--config", "h.toml"]).unwrap();
        assert!(
            matches!(cli.command, Command::Server(_)),
            "{:?}",
            cli.command
        );
    }
}
