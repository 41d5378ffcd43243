//! The registry as users reach it: `aloft dev up` serves it, stock clients (skopeo) push and pull
//! with the org's API token, `aloft registry gc` runs inside it, and `aloft server registry
//! --upstream` is a regional pull-through, write-through cache of it.
//!
//! skopeo is installed by `scripts/setup.sh`; without it these tests print SKIPPED and return.

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

fn skopeo_missing() -> bool {
    let found = Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("\n*** SKIPPED: skopeo not installed (apt-get install skopeo) ***\n");
    }
    !found
}

/// Runs skopeo; returns (success, stdout + stderr).
fn skopeo(args: &[&str]) -> (bool, String) {
    let out = Command::new("skopeo")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run skopeo");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn copy(creds_flag: &str, creds: &str, from: &str, to: &str) -> (bool, String) {
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        creds_flag,
        creds,
        from,
        to,
    ])
}

/// The manifest digest an OCI layout's index names.
fn layout_digest(dir: &Path) -> String {
    let index: Value = serde_json::from_str(&fs::read_to_string(dir.join("index.json")).unwrap())
        .expect("index.json");
    index["manifests"][0]["digest"]
        .as_str()
        .expect("a manifest")
        .to_string()
}

fn token(data: &Path) -> String {
    fs::read_to_string(data.join("token"))
        .unwrap()
        .trim()
        .to_string()
}

fn host(url: &str) -> &str {
    url.trim_start_matches("http://")
}

#[test]
fn skopeo_pushes_and_pulls_with_the_org_token() {
    if skopeo_missing() {
        return;
    }
    let (tmp, data) = temp_data_dir();
    let dev = DevUp::start(&data, "registry");
    let source = tmp.path().join("source");
    let built = aloft_oci::layout::build_busybox_layout(&source, "v1").expect("layout");
    let token = token(&data);
    let creds = format!("x:{token}");
    let remote = format!("docker://{}/personal/busybox:v1", host(&dev.registry_url));

    let (ok, out) = copy(
        "--dest-creds",
        &creds,
        &format!("oci:{}:v1", source.display()),
        &remote,
    );
    assert!(ok, "push: {out}");
    let back = tmp.path().join("back");
    let (ok, out) = copy(
        "--src-creds",
        &creds,
        &remote,
        &format!("oci:{}:v1", back.display()),
    );
    assert!(ok, "pull: {out}");
    assert_eq!(layout_digest(&back), built.manifest_digest);
    assert_eq!(layout_digest(&source), built.manifest_digest);

    // A wrong token, and another org's token, are refused.
    let (ok, out) = copy(
        "--src-creds",
        "x:aloft_0000",
        &remote,
        &format!("oci:{}:v1", tmp.path().join("no").display()),
    );
    assert!(!ok, "a bad token pulled: {out}");
    let internal = fs::read_to_string(data.join("internal-token")).unwrap();
    let (status, body) = http(
        &dev.api_url,
        "POST",
        "/internal/v1/orgs",
        internal.trim(),
        r#"{"slug":"acme"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let acme: Value = serde_json::from_str(&body).unwrap();
    let acme_creds = format!("x:{}", acme["token"].as_str().unwrap());
    let (ok, out) = copy(
        "--src-creds",
        &acme_creds,
        &remote,
        &format!("oci:{}:v1", tmp.path().join("acme").display()),
    );
    assert!(!ok, "another org's token pulled personal's image: {out}");

    // GC inside the registry keeps everything a manifest references.
    let gc = dev.aloft(&["registry", "gc", "--json"]).json();
    assert_eq!(gc["blobs_deleted"], 0, "{gc}");
    assert!(gc["manifests"].as_u64().unwrap() >= 1, "{gc}");
    let table = dev.aloft(&["registry", "gc", "--dry-run"]);
    assert!(table.ok().contains("dry run"), "{table}");
    let (ok, out) = copy(
        "--src-creds",
        &creds,
        &remote,
        &format!("oci:{}:v1", tmp.path().join("after-gc").display()),
    );
    assert!(ok, "pull after gc: {out}");
}

/// `aloft server registry` as a child process, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_registry(dev: &DevUp, storage: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aloft"))
        .args(["server", "registry", "--addr", "127.0.0.1:0", "--storage"])
        .arg(storage)
        .args(["--upstream", &dev.registry_url])
        .args(["--control-plane", &dev.api_url])
        .arg("--internal-token-file")
        .arg(dev.data_dir.join("internal-token"))
        .env_remove("ALOFT_API_URL")
        .env_remove("ALOFT_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn aloft server registry");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .trim()
        .strip_prefix("aloft registry listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
        .to_string();
    Server { child, url }
}

#[test]
fn a_regional_cache_pulls_through_and_writes_through() {
    if skopeo_missing() {
        return;
    }
    let (tmp, data) = temp_data_dir();
    let dev = DevUp::start(&data, "cache");
    let cache = server_registry(&dev, &tmp.path().join("cache"));
    let creds = format!("x:{}", token(&data));
    let source = tmp.path().join("source");
    let built = aloft_oci::layout::build_busybox_layout(&source, "v1").expect("layout");

    // A push through the cache lands in the upstream.
    let (ok, out) = copy(
        "--dest-creds",
        &creds,
        &format!("oci:{}:v1", source.display()),
        &format!("docker://{}/personal/app:v1", host(&cache.url)),
    );
    assert!(ok, "push through the cache: {out}");
    let (ok, out) = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &creds,
        &format!("docker://{}/personal/app:v1", host(&dev.registry_url)),
    ]);
    assert!(ok, "the upstream does not have the pushed image: {out}");

    // An image pushed to the upstream only is pulled through the cache, with the same digest.
    let (ok, out) = copy(
        "--dest-creds",
        &creds,
        &format!("oci:{}:v1", source.display()),
        &format!("docker://{}/personal/other:v1", host(&dev.registry_url)),
    );
    assert!(ok, "push upstream: {out}");
    let back = tmp.path().join("back");
    let (ok, out) = copy(
        "--src-creds",
        &creds,
        &format!("docker://{}/personal/other:v1", host(&cache.url)),
        &format!("oci:{}:v1", back.display()),
    );
    assert!(ok, "pull through the cache: {out}");
    assert_eq!(layout_digest(&back), built.manifest_digest);

    // The cache checks tokens with the control plane: a bad one is refused.
    let (ok, out) = copy(
        "--src-creds",
        "x:aloft_0000",
        &format!("docker://{}/personal/other:v1", host(&cache.url)),
        &format!("oci:{}:v1", tmp.path().join("no").display()),
    );
    assert!(!ok, "the cache accepted a bad token: {out}");
}
