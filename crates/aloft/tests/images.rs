//! Machines from pushed images, end to end: `aloft image build` writes an OCI layout with no
//! Docker, skopeo pushes it into `aloft dev up`'s registry, `aloft machine run` shows the pull
//! while the host fetches it, and the machine has the image's root filesystem and defaults (the
//! sim runtime shows them through exec); `aloft image list|prune` see and keep it.
//!
//! skopeo and busybox-static are installed by `scripts/setup.sh`; without them this test prints
//! SKIPPED and returns.

mod common;

use common::*;
use serde_json::{Value, json};
use std::fs;
use std::path::Path;

/// The manifest digest an OCI layout's index names for `tag`.
fn layout_digest(layout: &Path, tag: &str) -> String {
    let index: Value =
        serde_json::from_str(&fs::read_to_string(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .and_then(|m| m["digest"].as_str())
        .expect("the tag's manifest")
        .to_string()
}

fn exec(dev: &DevUp, id: &str, command: &[&str]) -> String {
    let mut args = vec!["machine", "exec", id, "-a", "hello", "--"];
    args.extend_from_slice(command);
    dev.aloft(&args).ok().to_string()
}

#[test]
fn machines_run_images_pushed_to_the_dev_registry() {
    if skopeo_missing() {
        return;
    }
    let (tmp, data) = temp_data_dir();
    let dev = DevUp::start(&data, "images");
    let host = dev.registry_url.trim_start_matches("http://").to_string();

    // An app directory on top of busybox.
    let app = tmp.path().join("app");
    fs::create_dir_all(app.join("srv")).unwrap();
    fs::write(app.join("srv/index.html"), "<h1>hello</h1>\n").unwrap();
    let layout = tmp.path().join("hello-image");
    let out = dev.aloft(&[
        "image",
        "build",
        "--busybox",
        "--rootfs",
        app.to_str().unwrap(),
        "--cmd",
        "-c 'httpd -f -p 8080'",
        "--env",
        "GREETING=hi",
        "--expose",
        "8080",
        "--workdir",
        "/srv",
        "-o",
        &format!("oci:{}:v1", layout.display()),
    ]);
    if out.code != Some(0) && out.stderr.contains("busybox-static") {
        eprintln!("\n*** SKIPPED: {} ***\n", out.stderr.trim());
        return;
    }
    let text = out.ok();
    assert!(
        text.contains(&format!("Built image oci:{}:v1 (sha256:", layout.display())),
        "{out}"
    );
    assert!(text.contains("skopeo copy"), "{out}");
    let digest = layout_digest(&layout, "v1");
    push(&dev, &layout, "v1", "hello");
    dev.aloft(&["apps", "create", "hello"]).ok();

    // `name:tag` is the org's repository on the dev registry; the pull is shown on stderr.
    let out = dev.aloft(&["machine", "run", "hello:v1", "-a", "hello"]);
    assert!(out.ok().contains("is started in region local"), "{out}");
    let name = format!("{host}/personal/hello:v1");
    assert!(
        out.stderr.contains(&format!("Pulling {name}")),
        "no pull progress:\n{out}"
    );
    assert!(
        out.stderr.contains(&format!("Pulled {name}")),
        "no end of the pull:\n{out}"
    );
    let machines = dev
        .aloft(&["machine", "list", "-a", "hello", "--json"])
        .json();
    let id = machines[0]["id"].as_str().unwrap().to_string();
    let m = machine_json(&dev, "hello", &id);
    assert_eq!(
        m["image_ref"],
        json!({"registry": host, "repository": "personal/hello", "tag": "v1", "digest": digest})
    );

    // The machine has the image's files and defaults.
    let bin = exec(&dev, &id, &["ls", "/bin"]);
    for applet in ["busybox", "sh", "httpd", "ls"] {
        assert!(bin.lines().any(|l| l == applet), "{applet} missing:\n{bin}");
    }
    assert_eq!(exec(&dev, &id, &["cat", "index.html"]), "<h1>hello</h1>\n");
    assert_eq!(
        exec(&dev, &id, &["argv"]),
        "/bin/sh\n-c\nhttpd -f -p 8080\n"
    );
    let env = exec(&dev, &id, &["env"]);
    for want in ["GREETING=hi", "FLY_APP_NAME=hello", "FLY_REGION=local"] {
        assert!(env.lines().any(|l| l == want), "{want} missing:\n{env}");
    }

    // A second machine of it, by its full reference: already on the host.
    let again = run_machine(&dev, &["-a", "hello", &name]);
    assert_eq!(state_of(&dev, "hello", &again), "started");

    // The operators' view: one image, both machines on it; prune keeps it.
    let images = dev.aloft(&["image", "list", "--json"]).json();
    let images = images.as_array().unwrap();
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0]["host"], "local-1");
    assert_eq!(images[0]["manifest_digest"], digest);
    assert!(
        images[0]["references"]
            .as_array()
            .unwrap()
            .contains(&json!(name)),
        "{images:?}"
    );
    let mut users: Vec<&str> = images[0]["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    users.sort();
    let mut both = vec![id.as_str(), again.as_str()];
    both.sort();
    assert_eq!(users, both);
    let table = dev.aloft(&["image", "list"]);
    assert!(table.ok().contains(&digest[..19]), "{table}");
    let pruned = dev.aloft(&["image", "prune", "--json"]).json();
    assert_eq!(pruned[0]["host"], "local-1");
    assert_eq!(pruned[0]["images_removed"], json!([]));
    assert_eq!(pruned[0]["images_kept"], json!([digest]));
    assert_eq!(
        dev.aloft(&["image", "list", "--json"]).json(),
        json!(images)
    );

    // Without machines on it, prune removes it.
    for m in [&id, &again] {
        dev.aloft(&["machine", "destroy", m, "-a", "hello", "--force"])
            .ok();
    }
    let pruned = dev.aloft(&["image", "prune", "--json"]).json();
    assert_eq!(pruned[0]["images_removed"], json!([digest]));
    let out = dev.aloft(&["image", "list"]);
    assert!(out.ok().contains("No images"), "{out}");

    // An image that is not in the registry: the machine fails and says what to do.
    let out = dev.aloft(&["machine", "run", "hello:nope", "-a", "hello"]);
    let err = out.fails();
    assert!(
        err.contains("not found") && err.contains("push it first"),
        "{out}"
    );
}

#[test]
fn image_commands_explain_their_mistakes() {
    let (tmp, data) = temp_data_dir();
    let out = aloft_with(&[], &["image", "build", "--busybox", "-o", "/tmp/x:v1"]);
    assert!(out.fails().contains("oci:DIR:TAG"), "{out}");
    let out = aloft_with(&[], &["image", "build", "-o", "oci:/tmp/x:v1"]);
    assert!(out.stderr.contains("--busybox"), "{out}");
    let missing = tmp.path().join("missing");
    let out = aloft_with(
        &[],
        &[
            "image",
            "build",
            "--rootfs",
            missing.to_str().unwrap(),
            "-o",
            "oci:/tmp/x:v1",
        ],
    );
    assert!(out.fails().contains("not a directory"), "{out}");
    // Operator commands need the cluster's internal token.
    let out = aloft_with(
        &[("ALOFT_DATA_DIR", data.to_str().unwrap())],
        &["image", "list"],
    );
    assert!(out.fails().contains("internal token"), "{out}");
}
