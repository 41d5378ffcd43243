//! `aloft config validate|show`: an app's `fly.toml` (or `aloft.toml`) as aloft reads it, and
//! [`load`], which every command that works from the app's config uses.

use crate::Ctx;
use crate::output::print_json;
use aloft_appconfig::{ConfigError, Loaded};
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where the app's config is: `-c/--config`, as in the reference CLI.
#[derive(Debug, Args)]
pub struct ConfigFile {
    /// The app's config file, or a directory holding one (default: ./fly.toml, else ./aloft.toml).
    #[arg(short = 'c', long = "config", value_name = "PATH")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the app's config: every problem with its file, line and key; unknown keys are
    /// warnings.
    Validate {
        #[command(flatten)]
        file: ConfigFile,
    },
    /// Print the app's config as aloft reads it, as JSON.
    Show {
        #[command(flatten)]
        file: ConfigFile,
        /// The app (overrides the config's `app`).
        #[arg(short = 'a', long)]
        app: Option<String>,
    },
}

pub async fn run(cmd: ConfigCommand, ctx: &Ctx) -> Result<ExitCode> {
    match cmd {
        ConfigCommand::Validate { file } => validate(&file, ctx),
        ConfigCommand::Show { file, app } => {
            let loaded = load(&file, app)?;
            print_json(&loaded.config)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The app's config, its warnings printed to stderr; `app` (from `-a`) overrides its `app`.
pub fn load(file: &ConfigFile, app: Option<String>) -> Result<Loaded> {
    let path = find(file)?;
    let mut loaded = aloft_appconfig::load(&path)?;
    print_warnings(&loaded);
    if app.is_some() {
        loaded.config.app = app;
    }
    Ok(loaded)
}

/// The `app` of the config `-c` names, or of the one in the current directory (`None` when
/// there is no such file there, or it names no app). A file that does not parse is an error.
pub fn app_name(file: &ConfigFile) -> Result<Option<String>> {
    let path = match find(file) {
        Ok(path) => path,
        Err(_) if file.config.is_none() => return Ok(None),
        Err(e) => return Err(e),
    };
    let loaded = aloft_appconfig::load(&path)?;
    Ok(loaded.config.app)
}

/// The config file; one found in the current directory is named relative to it (`fly.toml`).
fn find(file: &ConfigFile) -> Result<PathBuf> {
    aloft_appconfig::find(file.config.as_deref(), Path::new("")).map_err(|e| match e {
        ConfigError::NotFound(_) => {
            let cwd = std::env::current_dir().unwrap_or_default();
            ConfigError::NotFound(cwd).into()
        }
        e => e.into(),
    })
}

fn print_warnings(loaded: &Loaded) {
    for w in &loaded.warnings {
        eprintln!("Warning: {w}");
    }
}

fn validate(file: &ConfigFile, ctx: &Ctx) -> Result<ExitCode> {
    let path = find(file)?;
    let (loaded, problems) = match aloft_appconfig::load(&path) {
        Ok(loaded) => (Some(loaded), Vec::new()),
        Err(ConfigError::Invalid(problems)) => (None, problems),
        Err(e) => return Err(e.into()),
    };
    let code = if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if ctx.json {
        print_json(&serde_json::json!({
            "path": path,
            "valid": problems.is_empty(),
            "errors": problems,
            "warnings": loaded.as_ref().map(|l| l.warnings.as_slice()).unwrap_or_default(),
        }))?;
        return Ok(code);
    }
    match loaded {
        Some(loaded) => {
            print_warnings(&loaded);
            println!("{} is valid", path.display());
        }
        None => {
            for p in &problems {
                eprintln!("Error: {p}");
            }
            eprintln!(
                "{} has {} problem{}: fix {} and run `aloft config validate` again",
                path.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                if problems.len() == 1 { "it" } else { "them" }
            );
        }
    }
    Ok(code)
}
