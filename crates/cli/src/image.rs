//! `aloft image ...`: the images on hosts and `build`.
//!
//! `list` and `prune` are operator commands: they ask each host's agent through the control
//! plane's internal API (`GET /internal/v1/hosts/{host}/images`, `POST .../images/prune`) with
//! the cluster's internal token. `build` writes an OCI layout with no Docker and no network (a
//! busybox root filesystem and/or a directory as layers, plus the run settings), ready for
//! `skopeo copy oci:DIR:TAG docker://<registry>/<org>/NAME:TAG`.

use crate::Ctx;
use crate::operator::Operator;
use crate::output::{Table, megabytes, or_dash, print_json};
use aloft_appconfig::values::split_command;
use aloft_oci::ImageDefaults;
use aloft_oci::layout::{self as oci_layout, LayoutBuilder};
use aloft_types::api::{HostImage, PruneImagesResponse};
use anyhow::{Context, Result, anyhow, bail};
use clap::{ArgGroup, Args, Subcommand};
use reqwest::Method;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List the images on hosts and the machines that use them (operators: reads the internal
    /// token from the dev data dir).
    #[command(visible_alias = "ls")]
    List(HostArgs),
    /// Remove from hosts the images no machine uses (operators: reads the internal token from
    /// the dev data dir).
    Prune(HostArgs),
    /// Build an image into an OCI layout, without Docker; push it with skopeo.
    Build(BuildArgs),
}

#[derive(Debug, Args)]
pub struct HostArgs {
    /// Only this host [default: every registered host].
    #[arg(long, value_name = "ID")]
    host: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("content").required(true).multiple(true).args(["rootfs", "busybox"])))]
pub struct BuildArgs {
    /// Start from a busybox root filesystem (Debian's static busybox: /bin/sh and the usual
    /// applets, /etc/passwd); its Entrypoint is /bin/sh unless --entrypoint says otherwise.
    #[arg(long)]
    busybox: bool,
    /// A directory whose content becomes a layer (on top of busybox with --busybox).
    #[arg(long, value_name = "DIR")]
    rootfs: Option<PathBuf>,
    /// The image's Entrypoint, e.g. `--entrypoint "/bin/sh -c"`.
    #[arg(long, value_name = "COMMAND", allow_hyphen_values = true)]
    entrypoint: Option<String>,
    /// The image's Cmd, e.g. `--cmd "httpd -f -p 8080"`.
    #[arg(long, value_name = "COMMAND", allow_hyphen_values = true)]
    cmd: Option<String>,
    /// An environment variable, `NAME=VALUE` (repeatable).
    #[arg(long, short = 'e', value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// A port the image listens on, `8080` or `8080/udp` (repeatable).
    #[arg(long, value_name = "PORT")]
    expose: Vec<String>,
    /// The working directory of the process.
    #[arg(long, value_name = "DIR")]
    workdir: Option<String>,
    /// The user the process runs as (`name`, `uid`, `uid:gid`).
    #[arg(long)]
    user: Option<String>,
    /// Where to write the image: `oci:DIR:TAG`, an OCI layout (created if needed; its other
    /// tags are kept).
    #[arg(long, short = 'o', value_name = "oci:DIR:TAG")]
    output: String,
}

pub async fn run(cmd: ImageCommand, ctx: &Ctx) -> Result<ExitCode> {
    match cmd {
        ImageCommand::List(args) => list(ctx, args).await,
        ImageCommand::Prune(args) => prune(ctx, args).await,
        ImageCommand::Build(args) => build(ctx, args).await,
    }
}

/// Runs `ask` for every host; returns the answers of those that answered, and fails (after
/// printing every failure) when any did not.
async fn each_host<T, F, Fut>(hosts: Vec<String>, ask: F) -> Result<Vec<(String, T)>>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let total = hosts.len();
    let mut answers = Vec::new();
    let mut failures = Vec::new();
    for host in hosts {
        match ask(host.clone()).await {
            Ok(a) => answers.push((host, a)),
            Err(e) => failures.push(format!("host {host}: {e:#}")),
        }
    }
    match failures.len() {
        0 => Ok(answers),
        1 if total == 1 => Err(anyhow!("{}", failures.remove(0))),
        n => {
            for f in &failures {
                eprintln!("Error: {f}");
            }
            bail!("{n} of {total} hosts did not answer (see above)")
        }
    }
}

/// An image as `image list --json` prints it: its host, then the image.
#[derive(Serialize)]
struct Listed {
    host: String,
    #[serde(flatten)]
    image: HostImage,
}

async fn list(ctx: &Ctx, args: HostArgs) -> Result<ExitCode> {
    let op = Operator::new(ctx)?;
    let hosts = op.hosts(args.host).await?;
    let answers = each_host(hosts, |host| {
        let op = &op;
        async move {
            op.call::<Vec<HostImage>>(Method::GET, &format!("/internal/v1/hosts/{host}/images"))
                .await
        }
    })
    .await?;
    let listed: Vec<Listed> = answers
        .into_iter()
        .flat_map(|(host, images)| {
            images.into_iter().map(move |image| Listed {
                host: host.clone(),
                image,
            })
        })
        .collect();
    if ctx.json {
        print_json(&listed)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&[
        "HOST",
        "DIGEST",
        "REFERENCES",
        "SIZE (MB)",
        "MACHINES",
        "CREATED",
    ]);
    for l in &listed {
        let i = &l.image;
        table.row(vec![
            l.host.clone(),
            short_digest(&i.manifest_digest),
            or_dash(&i.references.join(", ")),
            megabytes(i.unpacked_bytes),
            or_dash(&i.machines.join(", ")),
            i.created_at.clone(),
        ]);
    }
    table.print("No images on the hosts yet; machines pull theirs when they start.");
    Ok(ExitCode::SUCCESS)
}

/// A prune's answer, as `image prune --json` prints it.
#[derive(Serialize)]
struct Pruned {
    host: String,
    #[serde(flatten)]
    report: PruneImagesResponse,
}

async fn prune(ctx: &Ctx, args: HostArgs) -> Result<ExitCode> {
    let op = Operator::new(ctx)?;
    let hosts = op.hosts(args.host).await?;
    let answers = each_host(hosts, |host| {
        let op = &op;
        async move {
            op.call::<PruneImagesResponse>(
                Method::POST,
                &format!("/internal/v1/hosts/{host}/images/prune"),
            )
            .await
        }
    })
    .await?;
    let pruned: Vec<Pruned> = answers
        .into_iter()
        .map(|(host, report)| Pruned { host, report })
        .collect();
    if ctx.json {
        print_json(&pruned)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&[
        "HOST",
        "IMAGES REMOVED",
        "IMAGES KEPT (IN USE)",
        "LAYERS REMOVED",
        "FREED (MB)",
    ]);
    for p in &pruned {
        let r = &p.report;
        table.row(vec![
            p.host.clone(),
            r.images_removed.len().to_string(),
            r.images_kept.len().to_string(),
            r.layers_removed.to_string(),
            megabytes(r.bytes_freed),
        ]);
    }
    table.print("");
    Ok(ExitCode::SUCCESS)
}

/// `sha256:0123456789ab` (12 hex digits, as `docker images` shows).
fn short_digest(digest: &str) -> String {
    digest.chars().take("sha256:".len() + 12).collect()
}

/// `oci:DIR:TAG` (`oci:DIR` means the tag `latest`).
fn parse_output(output: &str) -> Result<(PathBuf, String)> {
    let usage = "write it as oci:DIR:TAG, e.g. -o oci:/tmp/hello-image:v1";
    let Some(rest) = output.strip_prefix("oci:") else {
        bail!("-o `{output}`: only OCI layouts can be written; {usage}");
    };
    let (dir, tag) = match rest.rsplit_once(':') {
        Some((dir, tag)) if !tag.contains('/') => (dir, tag),
        _ => (rest, "latest"),
    };
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && !tag.starts_with(['.', '-']);
    if dir.is_empty() || !tag_ok {
        bail!(
            "-o `{output}`: a directory and a tag of letters, digits, `_`, `.` or `-` are needed; {usage}"
        );
    }
    Ok((PathBuf::from(dir), tag.to_string()))
}

/// `8080` -> `8080/tcp`; `53/udp` stays.
fn parse_expose(spec: &str) -> Result<String> {
    let (port, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    if !port_ok || !matches!(proto, "tcp" | "udp") {
        bail!("--expose `{spec}` is not a port; write it like 8080 or 53/udp");
    }
    Ok(format!("{port}/{proto}"))
}

/// The run settings: busybox's (with --busybox) overridden by the flags.
fn image_config(args: &BuildArgs) -> Result<ImageDefaults> {
    let mut config = if args.busybox {
        oci_layout::busybox_config()
    } else {
        ImageDefaults::default()
    };
    if let Some(e) = &args.entrypoint {
        config.entrypoint = split_command(e).map_err(|e| anyhow!("--entrypoint: {e}"))?;
    }
    if let Some(c) = &args.cmd {
        config.cmd = split_command(c).map_err(|e| anyhow!("--cmd: {e}"))?;
    }
    for item in &args.env {
        let Some((name, _)) = item.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            bail!("--env `{item}` is not NAME=VALUE; write it like --env NAME=value");
        };
        config
            .env
            .retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != name);
        config.env.push(item.clone());
    }
    config.exposed_ports = args
        .expose
        .iter()
        .map(|p| parse_expose(p))
        .collect::<Result<_>>()?;
    config.exposed_ports.sort();
    config.exposed_ports.dedup();
    if let Some(w) = &args.workdir {
        config.working_dir = w.clone();
    }
    if let Some(u) = &args.user {
        config.user = u.clone();
    }
    Ok(config)
}

async fn build(ctx: &Ctx, args: BuildArgs) -> Result<ExitCode> {
    let (dir, tag) = parse_output(&args.output)?;
    let config = image_config(&args)?;
    if let Some(root) = &args.rootfs
        && !root.is_dir()
    {
        bail!(
            "--rootfs {}: not a directory; give the directory whose content the image holds",
            root.display()
        );
    }
    let runs_nothing = config.entrypoint.is_empty() && config.cmd.is_empty();
    let mut builder = LayoutBuilder::new().config(config);
    if args.busybox {
        builder = builder.layer(oci_layout::busybox_entries()?);
    }
    if let Some(root) = &args.rootfs {
        builder = builder.layer_from_dir(root);
    }
    let (layout, tag_name) = (dir.clone(), tag.clone());
    let image = tokio::task::spawn_blocking(move || builder.write(&layout, &tag_name))
        .await
        .context("building the image stopped unexpectedly")?
        .with_context(|| format!("writing the image into {}", dir.display()))?;

    let registry = ctx.registry_url();
    let registry = registry.trim_start_matches("http://");
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .filter(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        })
        .unwrap_or_else(|| "NAME".to_string());
    let source = format!("oci:{}:{tag}", dir.display());
    let push = format!(
        "skopeo copy --dest-tls-verify=false --dest-creds x:$ALOFT_API_TOKEN {source} docker://{registry}/personal/{name}:{tag}"
    );
    if ctx.json {
        print_json(&serde_json::json!({
            "layout": dir,
            "tag": tag,
            "manifest_digest": image.manifest_digest,
            "config_digest": image.config_digest,
            "layers": image.layers,
            "push": push,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Built image {source} ({}, {} layer{}).",
        image.manifest_digest,
        image.layers.len(),
        if image.layers.len() == 1 { "" } else { "s" }
    );
    println!(
        "Push it to the dev registry (org `personal`; another org's token pushes to that org):"
    );
    println!("  {push}");
    println!("Then run it: aloft machine run {name}:{tag} -a APP");
    if runs_nothing {
        println!(
            "Note: the image sets no Entrypoint or Cmd, so its machines need one (`aloft machine run ... --cmd \"...\"`, or build with --cmd)."
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs() {
        assert_eq!(
            parse_output("oci:/tmp/x:v1").unwrap(),
            (PathBuf::from("/tmp/x"), "v1".to_string())
        );
        assert_eq!(
            parse_output("oci:/tmp/x").unwrap(),
            (PathBuf::from("/tmp/x"), "latest".to_string())
        );
        assert_eq!(
            parse_output("oci:rel/dir:1.0").unwrap(),
            (PathBuf::from("rel/dir"), "1.0".to_string())
        );
        for bad in [
            "/tmp/x:v1",
            "docker://x",
            "oci::v1",
            "oci:/tmp/x:-v",
            "oci:/x:a b",
        ] {
            assert!(parse_output(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exposed_ports() {
        assert_eq!(parse_expose("8080").unwrap(), "8080/tcp");
        assert_eq!(parse_expose("53/udp").unwrap(), "53/udp");
        for bad in ["0", "x", "80/sctp", "70000"] {
            assert!(parse_expose(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_override_the_busybox_settings() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            build: BuildArgs,
        }
        let cli = Cli::try_parse_from([
            "x",
            "--busybox",
            "--cmd",
            "-c 'echo hi'",
            "-e",
            "PATH=/bin",
            "-e",
            "MODE=prod",
            "--expose",
            "8080",
            "--workdir",
            "/srv",
            "-o",
            "oci:/tmp/x:v1",
        ])
        .unwrap();
        let c = image_config(&cli.build).unwrap();
        assert_eq!(c.entrypoint, ["/bin/sh"]);
        assert_eq!(c.cmd, ["-c", "echo hi"]);
        assert_eq!(c.env, ["PATH=/bin", "MODE=prod"]);
        assert_eq!(c.exposed_ports, ["8080/tcp"]);
        assert_eq!(c.working_dir, "/srv");
        // Neither --busybox nor --rootfs: nothing to build.
        assert!(Cli::try_parse_from(["x", "-o", "oci:/tmp/x:v1"]).is_err());
    }
}
