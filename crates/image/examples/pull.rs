//! Pulls an image into a store (and builds its ext4 image), printing one JSON line with the
//! timings and the bytes fetched; for benchmarks and manual tries:
//!
//! ```text
//! cargo run --release -p aloft-image --example pull -- \
//!     --data-dir DIR [--ext4] [--user U --password P] REFERENCE
//! ```
//!
//! `REFERENCE` is a full `host:port/repo:tag` (or `@sha256:...`).

use aloft_image::{Credentials, ImageConfig, ImageStore, PullProgress, Reference};
use parking_lot::Mutex;
use std::time::Instant;

const USAGE: &str =
    "usage: pull --data-dir DIR [--ext4] [--user U --password P] host:port/repo:tag";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut data_dir = None;
    let mut ext4 = false;
    let (mut user, mut password) = (None, None);
    let mut reference = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value; {USAGE}"));
        match arg.as_str() {
            "--data-dir" => data_dir = Some(value()?),
            "--ext4" => ext4 = true,
            "--user" => user = Some(value()?),
            "--password" => password = Some(value()?),
            a if a.starts_with("--") => return Err(format!("unknown flag `{a}`; {USAGE}").into()),
            a => reference = Some(a.to_string()),
        }
    }
    let data_dir = data_dir.ok_or(USAGE)?;
    let reference = reference.ok_or(USAGE)?;
    let host = reference.split('/').next().unwrap_or_default().to_string();
    let reference = Reference::parse(&reference, &host, "")?;
    let mut config = ImageConfig::new(data_dir);
    config.default_registry = host;
    let store = ImageStore::open(config)?;
    let creds = match (user, password) {
        (Some(username), Some(password)) => Credentials::Basic { username, password },
        _ => Credentials::None,
    };
    let last = Mutex::new(PullProgress::default());
    let start = Instant::now();
    let image = store.pull(&reference, &creds, |p| *last.lock() = p).await?;
    let pulled = start.elapsed().as_secs_f64();
    let (ext4_path, ext4_secs) = if ext4 {
        let start = Instant::now();
        let path = store.ext4(&image).await?;
        (Some(path), start.elapsed().as_secs_f64())
    } else {
        (None, 0.0)
    };
    let p = last.lock().clone();
    println!(
        "{}",
        serde_json::json!({
            "manifest_digest": image.manifest_digest,
            "rootfs": image.rootfs,
            "ext4": ext4_path,
            "seconds_pull": pulled,
            "seconds_ext4": ext4_secs,
            "seconds_total": pulled + ext4_secs,
            "bytes_fetched": p.bytes_fetched,
            "layers_total": p.layers_total,
            "layers_cached": p.layers_cached,
        })
    );
    Ok(())
}
