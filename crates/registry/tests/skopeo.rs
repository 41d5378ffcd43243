//! A real client: skopeo (Debian package `skopeo`) pushes an OCI layout built here to the
//! registry, inspects it, and pulls it back; digests must be identical. Skipped, loudly, when
//! skopeo is not installed.

mod common;

use aloft_registry::Upstream;
use common::*;
use std::path::Path;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

fn skopeo_missing() -> bool {
    let found = std::process::Command::new("skopeo")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("\n*** SKIPPED: skopeo not installed (apt-get install skopeo) ***\n");
    }
    !found
}

/// Runs skopeo with `args`; returns (success, stdout, stderr).
async fn skopeo(args: &[&str]) -> (bool, String, String) {
    let output = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .await
        .expect("run skopeo");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A ustar archive holding one file.
fn tar_with_file(name: &str, content: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    let mut put =
        |offset: usize, value: &[u8]| header[offset..offset + value.len()].copy_from_slice(value);
    put(0, name.as_bytes());
    put(100, b"0000644\0");
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{:011o}\0", content.len()).as_bytes());
    put(136, b"00000000000\0");
    put(148, b"        ");
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    let checksum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{checksum:06o}\0 ").as_bytes());
    let mut archive = header.to_vec();
    archive.extend_from_slice(content);
    archive.resize(archive.len().div_ceil(512) * 512, 0);
    archive.extend_from_slice(&[0u8; 1024]);
    archive
}

async fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .args(["-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = data.to_vec();
    let writer = tokio::spawn(async move {
        stdin.write_all(&data).await.expect("write to gzip");
    });
    let output = child.wait_with_output().await.expect("gzip output");
    writer.await.expect("writer");
    assert!(output.status.success());
    output.stdout
}

fn write_blob(layout: &Path, bytes: &[u8]) -> String {
    let digest = digest_of(bytes);
    let path = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    std::fs::write(path, bytes).expect("write blob");
    digest
}

/// An OCI image layout with two gzipped layers, tagged `v1`; returns the manifest digest.
async fn build_layout(layout: &Path, seed: u64) -> String {
    std::fs::create_dir_all(layout.join("blobs/sha256")).expect("layout dir");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for i in 0..2 {
        let tar = tar_with_file(&format!("file-{i}.bin"), &random_bytes(seed + i, 150_000));
        diff_ids.push(digest_of(&tar));
        let gz = gzip(&tar).await;
        let digest = write_blob(layout, &gz);
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": gz.len()
        }));
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/file-0.bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string();
    let config_digest = write_blob(layout, config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": layers,
    })
    .to_string();
    let manifest_digest = write_blob(layout, manifest.as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "v1"},
        }],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).expect("index.json");
    manifest_digest
}

fn layout_manifest_digest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
            .expect("json");
    index["manifests"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_string()
}

fn blob_names(layout: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(layout.join("blobs/sha256"))
        .expect("blobs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn skopeo_push_inspect_and_pull_keep_every_digest() {
    if skopeo_missing() {
        return;
    }
    let reg = TestRegistry::start().await;
    let work = tempfile::tempdir().expect("tempdir");
    let source = work.path().join("source");
    let digest = build_layout(&source, 40).await;
    let host = reg.addr.to_string();
    let creds = format!("x:{ACME_TOKEN}");
    let remote = format!("docker://{host}/acme/skopeo-app:v1");

    let (ok, _, stderr) = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &format!("oci:{}:v1", source.display()),
        &remote,
    ])
    .await;
    assert!(ok, "skopeo push failed: {stderr}");

    let (ok, raw, stderr) = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &creds,
        &remote,
    ])
    .await;
    assert!(ok, "skopeo inspect --raw failed: {stderr}");
    assert_eq!(
        digest_of(raw.as_bytes()),
        digest,
        "the manifest is stored byte for byte"
    );
    let (ok, inspected, stderr) =
        skopeo(&["inspect", "--tls-verify=false", "--creds", &creds, &remote]).await;
    assert!(ok, "skopeo inspect failed: {stderr}");
    let inspected: serde_json::Value = serde_json::from_str(&inspected).expect("inspect json");
    assert_eq!(inspected["Digest"], serde_json::json!(digest));
    assert_eq!(inspected["Layers"].as_array().expect("layers").len(), 2);

    let back = work.path().join("back");
    let (ok, _, stderr) = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &remote,
        &format!("oci:{}:v1", back.display()),
    ])
    .await;
    assert!(ok, "skopeo pull failed: {stderr}");
    assert_eq!(layout_manifest_digest(&back), digest);
    assert_eq!(blob_names(&back), blob_names(&source), "identical blobs");

    // The same image by digest.
    let (ok, _, stderr) = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &creds,
        &format!("docker://{host}/acme/skopeo-app@{digest}"),
    ])
    .await;
    assert!(ok, "inspect by digest failed: {stderr}");
}

#[tokio::test]
async fn skopeo_with_another_orgs_token_is_refused() {
    if skopeo_missing() {
        return;
    }
    let reg = TestRegistry::start().await;
    let work = tempfile::tempdir().expect("tempdir");
    let source = work.path().join("source");
    build_layout(&source, 50).await;
    let host = reg.addr.to_string();
    let (ok, _, stderr) = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &format!("x:{OTHER_TOKEN}"),
        &format!("oci:{}:v1", source.display()),
        &format!("docker://{host}/acme/app:v1"),
    ])
    .await;
    assert!(!ok, "pushing into another org must fail");
    let stderr = stderr.to_lowercase();
    assert!(
        stderr.contains("denied") || stderr.contains("403 (forbidden)"),
        "{stderr}"
    );
    let (ok, _, stderr) = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        "x:not-a-token",
        &format!("docker://{host}/acme/app:v1"),
    ])
    .await;
    assert!(!ok);
    assert!(stderr.to_lowercase().contains("unauthorized"), "{stderr}");
}

#[tokio::test]
async fn skopeo_through_a_regional_cache() {
    if skopeo_missing() {
        return;
    }
    let upstream = TestRegistry::start().await;
    let upstream_config = Upstream::new(&upstream.url);
    let cache = TestRegistry::start_with(move |c| c.upstream = Some(upstream_config)).await;
    let work = tempfile::tempdir().expect("tempdir");
    let source = work.path().join("source");
    let digest = build_layout(&source, 60).await;
    let creds = format!("x:{ACME_TOKEN}");

    // Push to the cache: it lands upstream.
    let (ok, _, stderr) = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &format!("oci:{}:v1", source.display()),
        &format!("docker://{}/acme/app:v1", cache.addr),
    ])
    .await;
    assert!(ok, "push through the cache failed: {stderr}");
    let (ok, raw, stderr) = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &creds,
        &format!("docker://{}/acme/app:v1", upstream.addr),
    ])
    .await;
    assert!(ok, "inspect upstream failed: {stderr}");
    assert_eq!(digest_of(raw.as_bytes()), digest);

    // Pull through a fresh cache.
    let upstream_config = Upstream::new(&upstream.url);
    let fresh = TestRegistry::start_with(move |c| c.upstream = Some(upstream_config)).await;
    let back = work.path().join("back");
    let (ok, _, stderr) = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &format!("docker://{}/acme/app:v1", fresh.addr),
        &format!("oci:{}:v1", back.display()),
    ])
    .await;
    assert!(ok, "pull through the cache failed: {stderr}");
    assert_eq!(layout_manifest_digest(&back), digest);
    assert_eq!(blob_names(&back), blob_names(&source));
}
