//! `aloft deploy` from a fly.toml against `aloft dev up` (sim machines): a process group without
//! machines gets one, a second deploy updates it in place under a lease that is always released,
//! a lease someone else holds stops the deploy with the way out, and machines of a group the
//! config no longer has are named.

mod common;

use common::*;
use std::fs;
use std::path::Path;

fn fly_toml(dir: &Path, greeting: &str, extra: &str) -> String {
    let path = dir.join("fly.toml");
    fs::write(
        &path,
        format!(
            "app = \"hello\"\nprimary_region = \"local\"\n\n[build]\n  image = \"hello:v1\"\n\n[env]\n  GREETING = \"{greeting}\"\n\n[http_service]\n  internal_port = 8080\n{extra}"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn deploys_create_then_update_machines_per_process_group() {
    let (tmp, data) = temp_data_dir();
    let dev = DevUp::start_no_pull(&data, "deploy");
    let token = fs::read_to_string(data.join("token")).unwrap();
    let config = fly_toml(tmp.path(), "v1", "");

    let out = dev.aloft(&["deploy", "-c", &config]);
    assert!(out.fails().contains("no app named `hello`"), "{out}");
    dev.aloft(&["apps", "create", "hello"]).ok();

    // First deploy: one machine for the `app` group, in the primary region.
    let out = dev.aloft(&["deploy", "-c", &config]);
    let text = out.ok();
    assert!(
        text.contains("==> Deploying hello (hello:v1, rolling)"),
        "{out}"
    );
    assert!(text.contains("app: created machine"), "{out}");
    assert!(
        text.contains("==> Deployed hello: 1 machine on hello:v1"),
        "{out}"
    );
    let list = dev
        .aloft(&["--json", "machine", "list", "-a", "hello"])
        .json();
    let machines = list.as_array().unwrap();
    assert_eq!(machines.len(), 1);
    let first = machines[0].clone();
    let id = first["id"].as_str().unwrap().to_string();
    assert_eq!(first["state"], "started");
    assert_eq!(first["region"], "local");
    assert_eq!(first["config"]["metadata"]["fly_process_group"], "app");
    assert_eq!(first["config"]["env"]["GREETING"], "v1");
    assert_eq!(first["config"]["services"][0]["ports"][1]["port"], 443);

    // Second deploy: the same machine, a new version; no lease left behind.
    let config = fly_toml(tmp.path(), "v2", "");
    let out = dev.aloft(&["--json", "deploy", "-c", &config]);
    let report = out.json();
    assert_eq!(report["machines"][0]["id"], id.as_str());
    assert_eq!(report["machines"][0]["action"], "updated");
    let m = dev
        .aloft(&["--json", "machine", "status", &id, "-a", "hello"])
        .json();
    assert_eq!(m["config"]["env"]["GREETING"], "v2");
    assert_ne!(m["instance_id"], first["instance_id"]);
    let (status, body) = http(
        &dev.api_url,
        "GET",
        &format!("/v1/apps/hello/machines/{id}/lease"),
        token.trim(),
        "",
    );
    assert_eq!(status, 404, "a lease was left: {body}");

    // Someone else's lease: the deploy stops and says how to see who holds it.
    let (status, body) = http(
        &dev.api_url,
        "POST",
        &format!("/v1/apps/hello/machines/{id}/lease"),
        token.trim(),
        r#"{"ttl": 60}"#,
    );
    assert_eq!(status, 200, "{body}");
    let out = dev.aloft(&["deploy", "-c", &config]);
    let err = out.fails();
    assert!(err.contains("aloft machine leases view"), "{out}");
    assert!(err.contains("no lease is left held"), "{out}");
    let nonce: serde_json::Value = serde_json::from_str(&body).unwrap();
    dev.aloft(&["machine", "leases", "clear", &id, "-a", "hello"])
        .ok();
    let _ = nonce;

    // Process groups: each gets its machine; the old `app` group's machine is named.
    let config = fly_toml(
        tmp.path(),
        "v3",
        "  processes = [\"web\"]\n\n[processes]\n  web = \"/hello\"\n  worker = \"/hello --worker\"\n",
    );
    let out = dev.aloft(&["deploy", "-c", &config]);
    let text = out.ok();
    assert!(text.contains("web: created machine"), "{out}");
    assert!(text.contains("worker: created machine"), "{out}");
    assert!(
        out.stderr
            .contains(&format!("machine {id} is in process group `app`, which")),
        "{out}"
    );
    let list = dev
        .aloft(&["--json", "machine", "list", "-a", "hello"])
        .json();
    let worker = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["config"]["metadata"]["fly_process_group"] == "worker")
        .unwrap();
    assert_eq!(
        worker["config"]["init"]["cmd"],
        serde_json::json!(["/hello", "--worker"])
    );
    assert!(
        worker["config"]["services"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{worker}"
    );

    // Without an image anywhere, the deploy says where to put one.
    fs::write(tmp.path().join("bare.toml"), "app = \"hello\"\n").unwrap();
    let bare = tmp.path().join("bare.toml");
    let out = dev.aloft(&["deploy", "-c", bare.to_str().unwrap()]);
    assert!(out.fails().contains("set `image` under [build]"), "{out}");
}

/// The lease of `id`, as the API answers for it: 404 when none is held.
fn lease_status(dev: &DevUp, token: &str, id: &str) -> u16 {
    http(
        &dev.api_url,
        "GET",
        &format!("/v1/apps/hello/machines/{id}/lease"),
        token,
        "",
    )
    .0
}

#[test]
fn a_deploy_whose_checks_fail_or_that_is_interrupted_releases_its_lease() {
    let (tmp, data) = temp_data_dir();
    let dev = DevUp::start_no_pull(&data, "deploy-fail");
    let token = fs::read_to_string(data.join("token")).unwrap();
    dev.aloft(&["apps", "create", "hello"]).ok();
    let config = fly_toml(tmp.path(), "v1", "");
    dev.aloft(&["deploy", "-c", &config]).ok();
    let id = dev
        .aloft(&["--json", "machine", "list", "-a", "hello"])
        .json()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // A check nothing answers (sim machines listen on nothing): the deploy gives up after the
    // wait timeout, saying which check failed, and holds no lease.
    let failing = fly_toml(
        tmp.path(),
        "v2",
        "\n[checks.alive]\n  type = \"tcp\"\n  port = 8080\n  interval = \"1s\"\n",
    );
    let out = dev.aloft(&["deploy", "-c", &failing, "--wait-timeout", "3s"]);
    let err = out.fails();
    assert!(
        err.contains(&format!(
            "machine {id}'s checks did not pass within 3s (failing: alive)"
        )),
        "{out}"
    );
    assert_eq!(lease_status(&dev, token.trim(), &id), 404);

    // Ctrl-C while it waits: the lease is released, and the next deploy goes through.
    let mut deploy = dev.aloft_background(&["deploy", "-c", &failing, "--wait-timeout", "60s"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while lease_status(&dev, token.trim(), &id) != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the deploy never took the lease"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let killed = std::process::Command::new("kill")
        .args(["-INT", &deploy.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = deploy.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        lease_status(&dev, token.trim(), &id),
        404,
        "the lease outlived Ctrl-C"
    );
    let config = fly_toml(tmp.path(), "v3", "");
    let out = dev.aloft(&["deploy", "-c", &config]);
    assert!(out.ok().contains("Deployed hello"), "{out}");
}
