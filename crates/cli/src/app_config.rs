//! `aloft config validate|show`: an app's `fly.toml` (or `aloft.toml`) as aloft reads it;
//! `aloft config save`: the config the app's last deploy applied, written back to its file; and
//! [`load`], which every command that works from the app's config uses.

use crate::Ctx;
use crate::output::print_json;
use aloft_appconfig::{ConfigError, Loaded};
use anyhow::{Context, Result};
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
    /// Write the config the app's last complete deploy applied to fly.toml (or the file -c
    /// names).
    Save {
        /// Where to write: a file, or a directory for its fly.toml (default: ./fly.toml).
        #[arg(short = 'c', long = "config", value_name = "PATH")]
        path: Option<PathBuf>,
        /// The app [default: $ALOFT_APP, else the `app` of the file being replaced].
        #[arg(short = 'a', long)]
        app: Option<String>,
        /// Replace a different file there without asking.
        #[arg(long, short = 'y')]
        yes: bool,
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
        ConfigCommand::Save { path, app, yes } => save(ctx, path, app, yes).await,
    }
}

/// `aloft config save`.
async fn save(
    ctx: &Ctx,
    path: Option<PathBuf>,
    app: Option<String>,
    yes: bool,
) -> Result<ExitCode> {
    let path = match path {
        Some(p) if p.is_dir() => p.join(aloft_appconfig::FILE_NAMES[0]),
        Some(p) => p,
        None => PathBuf::from(aloft_appconfig::FILE_NAMES[0]),
    };
    let existing = std::fs::read_to_string(&path).ok();
    let app = match app.or_else(|| ctx.app(None).ok()) {
        Some(app) => app,
        None => existing
            .as_deref()
            .and_then(|t| aloft_appconfig::parse(&path, t).ok())
            .and_then(|l| l.config.app)
            .ok_or_else(|| anyhow::anyhow!("which app's config? pass -a APP (or set ALOFT_APP)"))?,
    };
    let client = ctx.client()?;
    let deployed = match client.deployed_config(&app).await {
        Ok(d) => d,
        Err(e) => return Err(crate::machine::explain_app_error(ctx, &app, e).await),
    };
    let unchanged = existing.as_deref() == Some(deployed.config.as_str());
    if existing.is_some() && !unchanged && !yes {
        let question = format!("Replace {} with the deployed config?", path.display());
        let refusal = format!(
            "{} exists and differs from the deployed config; pass --yes to replace it (stdin is not a terminal)",
            path.display()
        );
        if !crate::output::confirm(&question, &refusal)? {
            anyhow::bail!("not replacing {}", path.display());
        }
    }
    if !unchanged {
        std::fs::write(&path, &deployed.config)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if ctx.json {
        print_json(&serde_json::json!({
            "app": app, "path": path, "version": deployed.version, "changed": !unchanged,
        }))?;
    } else {
        println!(
            "Wrote the config of {app}'s release v{} to {}{}.",
            deployed.version,
            path.display(),
            if unchanged { " (it was the same)" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
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
