//! The CLI's side of images. Building an app's Dockerfile for `aloft deploy`, without a Docker daemon: Debian's `buildah`
//! on the machine running the CLI (a host-side builder, like the reference's local builder), with
//! its own storage under the data dir (`<data-dir>/build`, the vfs driver, so layers are cached
//! between deploys), then a push to the org's repository in the cloud's registry. Its output is
//! the build's progress, shown as it comes.

use crate::Ctx;
use anyhow::{Context, Result, anyhow, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What to build: the Dockerfile and its context, with `[build]`'s arguments and target.
pub struct BuildSpec<'a> {
    pub dockerfile: PathBuf,
    pub context: PathBuf,
    pub args: Vec<(String, String)>,
    pub target: Option<&'a str>,
}

/// The TCP port an image exposes (its config's first `ExposedPorts` entry), read from the
/// cloud's registry: `name:tag` is in the org's repository there, `host:port/path:tag` anywhere.
/// `None` when it cannot be read or exposes none.
pub async fn exposed_port(ctx: &Ctx, org: &str, image: &str) -> Option<u16> {
    let own = registry(ctx);
    let (registry, path) = match image.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') => {
            (host.to_string(), rest.to_string())
        }
        Some(_) => (own.clone(), image.to_string()),
        None => (own.clone(), format!("{org}/{image}")),
    };
    let (repo, tag) = match path.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
        _ => (path.clone(), "latest".to_string()),
    };
    let token = ctx.client_config().ok()?.token;
    read_exposed_port(&registry, &own, &token, &repo, &tag).await
}

/// Reads the exposed port of `repo:tag` on `registry`. The org token goes only to the cloud's
/// own registry (`own`): another registry an image names is asked anonymously, so an image
/// reference cannot send the token anywhere.
async fn read_exposed_port(
    registry: &str,
    own: &str,
    token: &str,
    repo: &str,
    tag: &str,
) -> Option<u16> {
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .ok()?;
    let get = |url: String| {
        let req = http.get(url).header(
            "accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json",
        );
        if registry == own {
            req.basic_auth("x", Some(token)).send()
        } else {
            req.send()
        }
    };
    let base = format!("http://{registry}/v2/{repo}");
    let mut manifest: serde_json::Value = get(format!("{base}/manifests/{tag}"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    // An index: its linux/amd64 manifest.
    if let Some(list) = manifest["manifests"].as_array() {
        let digest = list
            .iter()
            .find(|m| m["platform"]["architecture"] == "amd64")
            .or_else(|| list.first())?["digest"]
            .as_str()?
            .to_string();
        manifest = get(format!("{base}/manifests/{digest}"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
    }
    let config_digest = manifest["config"]["digest"].as_str()?;
    let config: serde_json::Value = get(format!("{base}/blobs/{config_digest}"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let mut ports: Vec<u16> = config["config"]["ExposedPorts"]
        .as_object()?
        .keys()
        .filter_map(|k| {
            let (port, proto) = k.split_once('/').unwrap_or((k, "tcp"));
            (proto == "tcp").then(|| port.parse().ok())?
        })
        .collect();
    ports.sort_unstable();
    ports.first().copied()
}

/// The registry's `host:port`: `$ALOFT_REGISTRY`, else the one `aloft dev up` wrote to the data
/// dir, else 127.0.0.1:5000 (the dev cluster's).
fn registry(ctx: &Ctx) -> String {
    if let Ok(r) = std::env::var("ALOFT_REGISTRY")
        && !r.trim().is_empty()
    {
        return r.trim().trim_start_matches("http://").to_string();
    }
    ctx.registry_url().trim_start_matches("http://").to_string()
}

/// Builds `spec` and pushes it as `<org>/<app>:<tag>`; the image as machines name it
/// (`<app>:<tag>`, in the org's repository).
pub fn build_and_push(ctx: &Ctx, spec: &BuildSpec, org: &str, app: &str) -> Result<String> {
    if Command::new("buildah").arg("--version").output().is_err() {
        bail!(
            "building {} needs buildah, which is not installed: `apt-get install buildah` (scripts/setup.sh does), or push an image and set [build] image",
            spec.dockerfile.display()
        );
    }
    let store = ctx.data_dir()?.join("build");
    std::fs::create_dir_all(&store)
        .with_context(|| format!("creating the build store {}", store.display()))?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let tag = format!("deployment-{secs}-{}", aloft_types::ids::random_hex(3));
    let local = format!("localhost/{app}:{tag}");
    let mut bud = buildah(&store);
    bud.args(["bud", "--isolation", "chroot", "--layers", "-f"])
        .arg(&spec.dockerfile)
        .args(["-t", &local]);
    for (k, v) in &spec.args {
        bud.arg("--build-arg").arg(format!("{k}={v}"));
    }
    if let Some(t) = spec.target {
        bud.args(["--target", t]);
    }
    bud.arg(&spec.context);
    // Progress goes to stdout, or stderr when stdout is JSON.
    let say = |line: String| {
        if ctx.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    say(format!(
        "==> Building {} with buildah",
        spec.dockerfile.display()
    ));
    run(bud, ctx.json, "the build").with_context(|| {
        format!(
            "building {} failed (see buildah's output above); nothing was deployed",
            spec.dockerfile.display()
        )
    })?;
    let registry = registry(ctx);
    let token = ctx.client_config()?.token;
    let remote = format!("docker://{registry}/{org}/{app}:{tag}");
    say(format!("==> Pushing {app}:{tag} to {registry}"));
    let mut push = buildah(&store);
    push.args(["push", "--tls-verify=false", "--creds"])
        .arg(format!("x:{token}"))
        .args([&local, &remote]);
    run(push, ctx.json, "the push").with_context(|| {
        format!("pushing to {registry} failed; set ALOFT_REGISTRY=HOST:PORT if the registry is elsewhere")
    })?;
    Ok(format!("{app}:{tag}"))
}

fn buildah(store: &Path) -> Command {
    let mut c = Command::new("buildah");
    c.arg("--root")
        .arg(store.join("root"))
        .arg("--runroot")
        .arg(store.join("run"))
        .args(["--storage-driver", "vfs"])
        .stdin(Stdio::null());
    c
}

/// Runs `cmd` with its output on ours (the progress; on stderr when stdout is JSON); an error
/// when it fails.
fn run(mut cmd: Command, json: bool, what: &str) -> Result<()> {
    if json {
        cmd.stdout(Stdio::from(std::io::stderr()));
    }
    let status = cmd
        .status()
        .map_err(|e| anyhow!("starting {what} (buildah): {e}"))?;
    if !status.success() {
        bail!("{what} exited with {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A registry that records the headers of each request it gets and answers 404.
    fn capturing_registry() -> (String, std::sync::mpsc::Receiver<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let mut conn = conn.unwrap();
                let mut buf = [0u8; 4096];
                let n = conn.read(&mut buf).unwrap_or(0);
                tx.send(String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase())
                    .ok();
                conn.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    .ok();
            }
        });
        (addr, rx)
    }

    #[tokio::test]
    async fn the_org_token_goes_to_the_clouds_registry_only() {
        let (elsewhere, seen) = capturing_registry();
        let port =
            read_exposed_port(&elsewhere, "127.0.0.1:5000", "aloft_s3cret", "x/y", "v1").await;
        assert_eq!(port, None);
        let request = seen.recv().unwrap();
        assert!(request.starts_with("get /v2/x/y/manifests/v1"), "{request}");
        assert!(!request.contains("authorization"), "{request}");

        let (own, seen) = capturing_registry();
        read_exposed_port(&own, &own, "aloft_s3cret", "x/y", "v1").await;
        assert!(seen.recv().unwrap().contains("authorization: basic"));
    }
}
