//! `aloft launch`: a new app from an image (or the Dockerfile here, which `aloft deploy` builds),
//! as the reference's `fly launch`: creates the app,
//! writes a `fly.toml` with sensible defaults (an `[http_service]` on the image's exposed port, machines
//! stopped when idle and started on the next request, the smallest size), and deploys it unless
//! `--no-deploy`. It never overwrites a config: one that exists is deployed with `aloft deploy`.

use crate::Ctx;
use crate::app_config::ConfigFile;
use crate::client::ClientError;
use crate::deploy::{self, DeployArgs};
use aloft_types::ApiError;
use aloft_types::api::CreateAppRequest;
use aloft_types::ids::is_dns_label;
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The port the app listens on unless `--internal-port` says.
const DEFAULT_PORT: u16 = 8080;

#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// The image to run, e.g. `hello:v1` (an image in your org's registry) or a full reference.
    #[arg(short = 'i', long)]
    image: Option<String>,
    /// The app's name (default: the directory's name).
    #[arg(long)]
    name: Option<String>,
    /// The primary region (default: the platform's first).
    #[arg(short = 'r', long)]
    region: Option<String>,
    /// The port the app listens on inside its machines (default: the image's first exposed TCP
    /// port, else 8080).
    #[arg(long)]
    internal_port: Option<u16>,
    /// Write the config and create the app, but do not deploy.
    #[arg(long)]
    no_deploy: bool,
    /// Where to write the config: a file, or a directory for its fly.toml (default: ./fly.toml).
    #[arg(short = 'c', long = "config", value_name = "PATH")]
    config: Option<PathBuf>,
    /// Accept every default without asking (aloft does not ask; accepted as flyctl has it).
    #[arg(long, short = 'y')]
    yes: bool,
}

pub async fn run(args: LaunchArgs, ctx: &Ctx) -> Result<ExitCode> {
    let path = match &args.config {
        Some(p) if p.is_dir() => p.join("fly.toml"),
        Some(p) => p.clone(),
        None => PathBuf::from("fly.toml"),
    };
    if path.exists() {
        bail!(
            "{} exists already: deploy it with `aloft deploy -c {}` (or move it away to launch anew)",
            path.display(),
            path.display()
        );
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // An image named, else the Dockerfile here (`aloft deploy` builds it).
    let image = match &args.image {
        Some(image) => Source::Image(image.clone()),
        None if dir.join("Dockerfile").exists() => Source::Dockerfile,
        None => bail!(
            "nothing to launch: pass --image IMAGE (an image in your org's registry, e.g. hello:v1), or run it next to a Dockerfile"
        ),
    };
    let name = match &args.name {
        Some(name) => name.clone(),
        None => name_from_dir(dir)?,
    };
    if !is_dns_label(&name) {
        bail!(
            "`{name}` cannot be an app name (lowercase letters, digits and `-`, at most 63): pass --name NAME"
        );
    }
    let client = ctx.client()?;
    let region = match &args.region {
        Some(r) => r.clone(),
        None => client
            .regions()
            .await?
            .regions
            .first()
            .map(|r| r.code.clone())
            .ok_or_else(|| {
                anyhow!(
                    "the platform has no region with a host yet: start a host, or pass --region"
                )
            })?,
    };
    let org = match client
        .create_app(&CreateAppRequest {
            app_name: name.clone(),
            org_slug: None,
            network: None,
        })
        .await
    {
        Ok(app) => app.organization.slug,
        Err(ClientError::Api(ApiError::NameTaken(_))) => bail!(
            "an app named `{name}` exists already (app names are global): pick another with --name"
        ),
        Err(e) => return Err(e.into()),
    };
    let port = match (args.internal_port, &image) {
        (Some(port), _) => port,
        (None, Source::Image(i)) => crate::build::exposed_port(ctx, &org, i)
            .await
            .unwrap_or(DEFAULT_PORT),
        (None, Source::Dockerfile) => DEFAULT_PORT,
    };
    std::fs::write(&path, config_text(&name, &region, &image, port))
        .with_context(|| format!("writing {}", path.display()))?;
    if !ctx.json {
        println!(
            "Created app `{name}` in {region} and wrote {} ({}, port {}).",
            path.display(),
            match &image {
                Source::Image(i) => format!("image {i}"),
                Source::Dockerfile => "built from the Dockerfile".into(),
            },
            port
        );
    }
    if args.no_deploy {
        if !ctx.json {
            println!("Deploy it with `aloft deploy -c {}`.", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    deploy::run(
        DeployArgs {
            file: ConfigFile { config: Some(path) },
            app: None,
            image: None,
            strategy: None,
            region: None,
            wait_timeout: None,
            lease_timeout: deploy::LEASE_TTL,
            yes: args.yes,
        },
        ctx,
    )
    .await
}

/// An app name from the directory's: lowercase, anything but letters and digits as `-`.
fn name_from_dir(dir: &Path) -> Result<String> {
    let full = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let base = full
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let name: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = name.trim_matches('-').chars().take(63).collect::<String>();
    if name.is_empty() {
        bail!("no app name in the directory's name: pass --name NAME");
    }
    Ok(name)
}

/// What the app runs.
enum Source {
    Image(String),
    Dockerfile,
}

/// The fly.toml `launch` writes.
fn config_text(name: &str, region: &str, image: &Source, port: u16) -> String {
    let build = match image {
        Source::Image(i) => format!("image = \"{i}\""),
        Source::Dockerfile => "dockerfile = \"Dockerfile\"".into(),
    };
    format!(
        "# Written by `aloft launch`; the reference platform's fly.toml schema.\n\
         app = \"{name}\"\n\
         primary_region = \"{region}\"\n\n\
         [build]\n  {build}\n\n\
         [http_service]\n  internal_port = {port}\n  auto_stop_machines = \"stop\"\n  auto_start_machines = true\n  min_machines_running = 0\n\n\
         [[vm]]\n  size = \"shared-cpu-1x\"\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_config_is_valid_and_names_come_from_directories() {
        let text = config_text("hello", "ord", &Source::Image("hello:v1".into()), 3000);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fly.toml");
        std::fs::write(&path, &text).unwrap();
        let loaded = aloft_appconfig::load(&path).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(loaded.config.app.as_deref(), Some("hello"));
        let named = dir.path().join("My_Cool App");
        std::fs::create_dir(&named).unwrap();
        assert_eq!(name_from_dir(&named).unwrap(), "my-cool-app");
    }
}
