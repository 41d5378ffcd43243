//! Helpers shared by the integration tests.

#![allow(dead_code)] // each test binary uses a different part

pub mod server;

use aloft_image::oci_layout::{LayerEntry, LayoutBuilder};
use aloft_image::{ImageConfig, ImageDefaults, ImageStore, Reference};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const REPO: &str = "personal/app";

/// A store in `dir` with fast retries, allowed to pull from the test registries on loopback
/// (any port of 127.0.0.1), as a dev or test configuration must say explicitly.
pub fn config(dir: &Path) -> ImageConfig {
    let mut c = ImageConfig::new(dir);
    c.private_registries = vec!["127.0.0.1".into()];
    c.retries = 2;
    c.retry_backoff = Duration::from_millis(20);
    c
}

pub fn store(dir: &Path) -> ImageStore {
    ImageStore::open(config(dir)).unwrap()
}

pub fn reference(host: &str, tag: &str) -> Reference {
    Reference::parse(&format!("{host}/{REPO}:{tag}"), host, "personal").unwrap()
}

/// A small image: a base layer, a middle layer and a top layer whose content is `top`.
pub fn three_layers(top: &str) -> LayoutBuilder {
    LayoutBuilder::new()
        .layer(vec![
            LayerEntry::dir("bin", 0o755),
            LayerEntry::file("bin/tool", "#!/bin/sh\necho tool\n", 0o755),
            LayerEntry::symlink("bin/sh", "tool"),
            LayerEntry::dir("etc", 0o755),
            LayerEntry::file("etc/os-release", "ID=test\n", 0o644),
        ])
        .layer(vec![
            LayerEntry::dir("usr", 0o755),
            LayerEntry::file("usr/data", vec![b'd'; 64 << 10], 0o644),
        ])
        .layer(vec![
            LayerEntry::dir("app", 0o755),
            LayerEntry::file("app/version", top, 0o644),
        ])
        .config(ImageDefaults {
            entrypoint: vec!["/bin/tool".into()],
            cmd: vec!["--serve".into()],
            env: vec!["MODE=test".into()],
            working_dir: "/app".into(),
            exposed_ports: vec!["8080/tcp".into()],
            ..Default::default()
        })
}

/// Every file under `dir`, relative, sorted (to compare trees).
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Names directly inside `dir`.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Whether a binary is installed; prints a loud SKIPPED line when not.
pub fn have(binary: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
                .any(|d| d.join(binary).is_file())
        })
        .unwrap_or(false);
    if !found {
        println!("SKIPPED: {binary} not installed (apt-get install {package})");
    }
    found
}

pub fn is_root() -> bool {
    // /proc/self is owned by the effective uid
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0
}

/// A raw tar stream whose names are written as is (hostile archives). Entries:
/// (name, type, data, link target).
pub fn raw_tar(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

/// Checks that the store holds no layer, no image, no temporary.
pub fn assert_cache_empty(data: &Path) {
    assert_eq!(names(&data.join("layers/sha256")), Vec::<String>::new());
    assert_eq!(names(&data.join("layers")), ["sha256"]);
    assert_eq!(names(&data.join("images")), Vec::<String>::new());
    assert_eq!(names(&data.join("blobs")), Vec::<String>::new());
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

fn put_blob(layout: &Path, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(&digest[7..]), bytes).unwrap();
    digest
}

/// Adds `descriptor` to the layout's index.json under `tag`.
pub fn tag_in_index(layout: &Path, tag: &str, mut descriptor: serde_json::Value) {
    let path = layout.join("index.json");
    let mut index: serde_json::Value = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| serde_json::json!({"schemaVersion": 2, "manifests": []}));
    descriptor["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": tag });
    index["manifests"].as_array_mut().unwrap().push(descriptor);
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Writes an image whose layer blobs are given as is (already compressed, or hostile), with
/// `config` as the image config. Returns the manifest digest.
pub fn write_raw_image(
    layout: &Path,
    tag: &str,
    layers: &[(Vec<u8>, &str)],
    config: serde_json::Value,
) -> String {
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = put_blob(layout, &config_bytes);
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|(blob, media_type)| {
            serde_json::json!({"mediaType": media_type, "digest": put_blob(layout, blob), "size": blob.len()})
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len()},
        "layers": layers,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = put_blob(layout, &manifest_bytes);
    tag_in_index(
        layout,
        tag,
        serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": manifest_bytes.len()}),
    );
    digest
}

/// A minimal linux/amd64 image config.
pub fn plain_config() -> serde_json::Value {
    serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/true"]}, "rootfs": {"type": "layers", "diff_ids": []}})
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}
