//! `aloft deploy` from a fly.toml against `aloft dev up` (sim machines): a process group without
//! machines gets one, a second deploy updates it in place under a lease that is always released,
//! a lease someone else holds stops the deploy with the way out, and machines of a group the
//! config no longer has are named. Each deploy is a release; one that fails is rolled back.

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
    a_deploy_needs_its_app(&dev, &config);
    let (id, first) = the_first_deploy_creates_a_machine(&dev, &config);
    let config = the_second_deploy_updates_it(&dev, &tmp, &token, &id, &first);
    a_held_lease_stops_the_deploy(&dev, &token, &id, &config);
    let config = process_groups_get_their_machines(&dev, &tmp, &id);
    releases_are_listed_newest_first(&dev, &config);
    the_releases_api_refuses_bad_endings(&dev, &token);
    a_deploy_without_an_image_says_where(&dev, &tmp);
}

/// A deploy names the app it needs when there is none; then the app is created.
fn a_deploy_needs_its_app(dev: &DevUp, config: &str) {
    let out = dev.aloft(&["deploy", "-c", config]);
    assert!(out.fails().contains("no app named `hello`"), "{out}");
    dev.aloft(&["apps", "create", "hello"]).ok();
}

/// First deploy: one machine for the `app` group, in the primary region. Returns its id and its
/// JSON.
fn the_first_deploy_creates_a_machine(dev: &DevUp, config: &str) -> (String, serde_json::Value) {
    let out = dev.aloft(&["deploy", "-c", config]);
    let text = out.ok();
    assert!(
        text.contains("==> Deploying hello (hello:v1, rolling)"),
        "{out}"
    );
    assert!(text.contains("app: created machine"), "{out}");
    assert!(text.contains("==> Release v1 of hello"), "{out}");
    assert!(
        text.contains("==> Deployed release v1 of hello: 1 machine on hello:v1"),
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
    assert_eq!(first["config"]["metadata"]["fly_release_version"], "1");
    assert_eq!(first["config"]["env"]["GREETING"], "v1");
    assert_eq!(first["config"]["services"][0]["ports"][1]["port"], 443);
    (id, first)
}

/// Second deploy: the same machine, a new version; no lease left behind. Returns the v2 config.
fn the_second_deploy_updates_it(
    dev: &DevUp,
    tmp: &tempfile::TempDir,
    token: &str,
    id: &str,
    first: &serde_json::Value,
) -> String {
    let config = fly_toml(tmp.path(), "v2", "");
    let out = dev.aloft(&["--json", "deploy", "-c", &config]);
    let report = out.json();
    assert_eq!(report["machines"][0]["id"], id);
    assert_eq!(report["machines"][0]["action"], "updated");
    assert_eq!(report["release"], 2);
    let m = dev
        .aloft(&["--json", "machine", "status", id, "-a", "hello"])
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
    config
}

/// Someone else's lease: the deploy stops and says how to see who holds it.
fn a_held_lease_stops_the_deploy(dev: &DevUp, token: &str, id: &str, config: &str) {
    let (status, body) = http(
        &dev.api_url,
        "POST",
        &format!("/v1/apps/hello/machines/{id}/lease"),
        token.trim(),
        r#"{"ttl": 60}"#,
    );
    assert_eq!(status, 200, "{body}");
    let out = dev.aloft(&["deploy", "-c", config]);
    let err = out.fails();
    assert!(err.contains("aloft machine leases view"), "{out}");
    assert!(
        err.contains("release v3 of hello failed and was rolled back"),
        "{out}"
    );
    let nonce: serde_json::Value = serde_json::from_str(&body).unwrap();
    dev.aloft(&["machine", "leases", "clear", id, "-a", "hello"])
        .ok();
    let _ = nonce;
}

/// Process groups: each gets its machine; the old `app` group's machine is named. Returns the v3
/// config.
fn process_groups_get_their_machines(dev: &DevUp, tmp: &tempfile::TempDir, id: &str) -> String {
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
    config
}

/// The releases, newest first; `-c` names the app for every app command.
fn releases_are_listed_newest_first(dev: &DevUp, config: &str) {
    let releases = dev.aloft(&["--json", "releases", "-c", config]).json();
    let statuses: Vec<(u64, &str)> = releases
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["version"].as_u64().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            (4, "complete"),
            (3, "rolled_back"),
            (2, "complete"),
            (1, "complete")
        ]
    );
    assert!(
        releases[1]["reason"].as_str().unwrap().contains("lease"),
        "{releases}"
    );
    let table = dev.aloft(&["releases", "-c", config]).ok().to_string();
    assert!(
        table.contains("v4") && table.contains("rolled_back"),
        "{table}"
    );
    let status = dev.aloft(&["status", "-c", config]).ok().to_string();
    assert!(status.contains("release  v4 (hello:v1)"), "{status}");
    let status = dev.aloft(&["--json", "status", "-c", config]).json();
    assert_eq!(status["release"]["version"], 4);
}

/// The releases API refuses what is not a release's ending, once.
fn the_releases_api_refuses_bad_endings(dev: &DevUp, token: &str) {
    let (status, body) = http(
        &dev.api_url,
        "POST",
        "/v1/apps/hello/releases",
        token.trim(),
        r#"{"image": "hello:v9", "strategy": "sideways"}"#,
    );
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("rolling, immediate, canary, bluegreen"),
        "{body}"
    );
    for (version, body, expected) in [
        (4, r#"{"status": "failed"}"#, 409),
        (4, r#"{"status": "running"}"#, 422),
        (99, r#"{"status": "failed"}"#, 404),
        (4, r#"{"status": "done"}"#, 422),
        (4, "{", 400),
    ] {
        let (status, reply) = http(
            &dev.api_url,
            "PATCH",
            &format!("/v1/apps/hello/releases/{version}"),
            token.trim(),
            body,
        );
        assert_eq!(status, expected, "{body}: {reply}");
    }
}

/// Without an image anywhere, the deploy says where to put one.
fn a_deploy_without_an_image_says_where(dev: &DevUp, tmp: &tempfile::TempDir) {
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

/// Waits (at most 10 s) until a deploy in the background holds `id`'s lease.
fn await_lease(dev: &DevUp, token: &str, id: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while lease_status(dev, token, id) != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the deploy never took the lease"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The statuses of the app's releases, newest first.
fn release_statuses(dev: &DevUp) -> Vec<String> {
    dev.aloft(&["--json", "releases", "-a", "hello"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_deploy_whose_checks_fail_is_rolled_back_and_an_interrupted_one_releases_its_lease() {
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
    // wait timeout, saying which check failed, puts the machine back on the previous release,
    // and holds no lease.
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
    assert!(
        err.contains("release v2 of hello failed and was rolled back"),
        "{out}"
    );
    assert!(out.stdout.contains("back on the previous release"), "{out}");
    assert_eq!(lease_status(&dev, token.trim(), &id), 404);
    let m = dev
        .aloft(&["--json", "machine", "status", &id, "-a", "hello"])
        .json();
    assert_eq!(m["state"], "started");
    assert_eq!(m["config"]["env"]["GREETING"], "v1");
    assert_eq!(m["config"]["metadata"]["fly_release_version"], "1");
    assert_eq!(release_statuses(&dev), ["rolled_back", "complete"]);

    // Ctrl-C while it waits: the lease is released, and the next deploy goes through.
    let mut deploy = dev.aloft_background(&["deploy", "-c", &failing, "--wait-timeout", "60s"]);
    await_lease(&dev, token.trim(), &id);
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
    assert!(out.ok().contains("Deployed release v4 of hello"), "{out}");
    assert_eq!(
        release_statuses(&dev),
        ["complete", "interrupted", "rolled_back", "complete"]
    );

    // A release command that fails (the sim process exits 3): nothing changes, and its machine
    // is gone.
    let migrating = fly_toml(
        tmp.path(),
        "v5",
        "\n[deploy]\n  release_command = \"migrate --all\"\n",
    );
    let text = fs::read_to_string(&migrating).unwrap().replace(
        "[env]",
        "[env]\n  SIM_EXIT_AFTER_MS = \"100\"\n  SIM_EXIT_CODE = \"3\"",
    );
    fs::write(&migrating, text).unwrap();
    let out = dev.aloft(&["deploy", "-c", &migrating]);
    let err = out.fails();
    assert!(
        err.contains(
            "the release command `migrate --all` failed (exit code 3); no machine was changed"
        ),
        "{out}"
    );
    let list = dev
        .aloft(&["--json", "machine", "list", "-a", "hello"])
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["config"]["env"]["GREETING"], "v3");
    assert_eq!(release_statuses(&dev)[0], "rolled_back");

    // One whose machine cannot even start: said at once, not after the timeout.
    let text = fs::read_to_string(&migrating)
        .unwrap()
        .replace("SIM_EXIT_CODE = \"3\"", "SIM_FAIL_START = \"1\"");
    fs::write(&migrating, text).unwrap();
    let started = std::time::Instant::now();
    let out = dev.aloft(&["deploy", "-c", &migrating]);
    assert!(
        out.fails()
            .contains("the release command `migrate --all` failed"),
        "{out}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{out}"
    );

    // Leases are short and refreshed while the deploy works: held past their length while it
    // waits, and gone soon after a deploy that is killed outright (no stale lease blocks the
    // next one).
    let failing = fly_toml(
        tmp.path(),
        "v6",
        "\n[checks.alive]\n  type = \"tcp\"\n  port = 8080\n  interval = \"1s\"\n",
    );
    let mut deploy = dev.aloft_background(&[
        "deploy",
        "-c",
        &failing,
        "--wait-timeout",
        "60s",
        "--lease-timeout",
        "2s",
    ]);
    await_lease(&dev, token.trim(), &id);
    for _ in 0..8 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert_eq!(
            lease_status(&dev, token.trim(), &id),
            200,
            "the lease was not refreshed"
        );
    }
    deploy.kill().unwrap();
    deploy.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(
        lease_status(&dev, token.trim(), &id),
        404,
        "a killed deploy's lease outlived its length"
    );
    let config = fly_toml(tmp.path(), "v7", "");
    let out = dev.aloft(&["deploy", "-c", &config]);
    assert!(out.ok().contains("Deployed release"), "{out}");
}

/// The app's machines, as `(id, GREETING)`.
fn greetings(dev: &DevUp) -> Vec<(String, String)> {
    dev.aloft(&["--json", "machine", "list", "-a", "hello"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_string(),
                m["config"]["env"]["GREETING"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn canary_and_bluegreen_deploys_try_new_machines_first() {
    let (tmp, data) = temp_data_dir();
    let dev = DevUp::start_no_pull(&data, "deploy-strategies");
    dev.aloft(&["apps", "create", "hello"]).ok();
    let config = fly_toml(tmp.path(), "v1", "");
    dev.aloft(&["deploy", "-c", &config]).ok();
    let id = greetings(&dev)[0].0.clone();

    // Canary: a new machine first, gone once it works; then the old one is updated.
    let config = fly_toml(tmp.path(), "v2", "");
    let out = dev.aloft(&["deploy", "-c", &config, "--strategy", "canary"]);
    let text = out.ok();
    assert!(text.contains("app: canary machine"), "{out}");
    assert!(text.contains("passed and is gone; rolling on"), "{out}");
    assert!(
        text.contains(&format!("updating machine {id} (1/1)")),
        "{out}"
    );
    assert_eq!(greetings(&dev), [(id.clone(), "v2".to_string())]);

    // Bluegreen needs a check; without one nothing happens (not even a release).
    let out = dev.aloft(&["deploy", "-c", &config, "--strategy", "bluegreen"]);
    assert!(out.fails().contains("needs a health check"), "{out}");
    assert_eq!(release_statuses(&dev), ["complete", "complete"]);

    // A green machine whose check never passes: it is destroyed, the blue one never changed.
    let failing = fly_toml(
        tmp.path(),
        "v3",
        "\n[checks.alive]\n  type = \"tcp\"\n  port = 8080\n  interval = \"1s\"\n",
    );
    let out = dev.aloft(&[
        "deploy",
        "-c",
        &failing,
        "--strategy",
        "bluegreen",
        "--wait-timeout",
        "3s",
    ]);
    let err = out.fails();
    assert!(err.contains("failed and was rolled back"), "{out}");
    assert!(out.stdout.contains("which the release created"), "{out}");
    assert_eq!(greetings(&dev), [(id.clone(), "v2".to_string())]);
    assert_eq!(
        release_statuses(&dev),
        ["rolled_back", "complete", "complete"]
    );
}

#[test]
fn scale_count_copies_the_group_and_retires_the_newest_first() {
    let (tmp, data) = temp_data_dir();
    let dev = DevUp::start_no_pull(&data, "scale");
    dev.aloft(&["apps", "create", "hello"]).ok();
    let out = dev.aloft(&["scale", "count", "2", "-a", "hello"]);
    assert!(out.fails().contains("deploy it first"), "{out}");
    let config = fly_toml(tmp.path(), "v1", "");
    dev.aloft(&["deploy", "-c", &config]).ok();
    let first = greetings(&dev)[0].0.clone();

    let report = dev
        .aloft(&["--json", "scale", "count", "3", "-c", &config])
        .json();
    assert_eq!(report["changes"].as_array().unwrap().len(), 2, "{report}");
    let machines = greetings(&dev);
    assert_eq!(machines.len(), 3);
    assert!(machines.iter().all(|(_, g)| g == "v1"), "{machines:?}");
    let list = dev
        .aloft(&["--json", "machine", "list", "-a", "hello"])
        .json();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|m| m["state"] == "started"
                && m["config"]["metadata"]["fly_release_version"] == "1"),
        "{list}"
    );

    let out = dev.aloft(&["scale", "count", "1", "-c", &config]);
    assert!(out.ok().contains("local: 3 machines -> 1"), "{out}");
    assert_eq!(greetings(&dev), [(first.clone(), "v1".to_string())]);

    // Size: every machine, one at a time, keeping the rest of its config.
    let guest = |dev: &DevUp| machine_json(dev, "hello", &first)["config"]["guest"].clone();
    let out = dev.aloft(&["scale", "vm", "shared-cpu-2x", "-a", "hello"]);
    assert!(out.ok().contains("to shared-cpu-2x, 512 MB"), "{out}");
    assert_eq!(guest(&dev)["cpus"], 2);
    assert_eq!(guest(&dev)["memory_mb"], 512);
    dev.aloft(&["scale", "memory", "1024", "-a", "hello"]).ok();
    assert_eq!(guest(&dev)["cpus"], 2);
    assert_eq!(guest(&dev)["memory_mb"], 1024);
    assert_eq!(greetings(&dev), [(first.clone(), "v1".to_string())]);
    assert_eq!(state_of(&dev, "hello", &first), "started");
    let out = dev.aloft(&["scale", "vm", "huge", "-a", "hello"]);
    assert!(
        out.fails()
            .contains("unknown size `huge`: use one of shared-cpu-1x"),
        "{out}"
    );
}

#[test]
fn launch_writes_a_config_creates_the_app_and_deploys_it() {
    let (tmp, data) = temp_data_dir();
    let dev = DevUp::start_no_pull(&data, "launch");
    let dir = tmp.path().join("site");
    fs::create_dir(&dir).unwrap();
    let d = dir.to_str().unwrap();

    let out = dev.aloft(&["launch", "-c", d]);
    assert!(out.fails().contains("pass --image IMAGE"), "{out}");

    let out = dev.aloft(&[
        "launch",
        "--image",
        "hello:v1",
        "--internal-port",
        "3000",
        "-c",
        d,
    ]);
    let text = out.ok();
    assert!(text.contains("Created app `site` in local"), "{out}");
    assert!(
        text.contains("==> Deployed release v1 of site: 1 machine"),
        "{out}"
    );
    let config = fs::read_to_string(dir.join("fly.toml")).unwrap();
    assert!(config.contains("internal_port = 3000"), "{config}");
    let validated = dev.aloft(&["config", "validate", "-c", d]);
    assert!(validated.ok().contains("is valid"), "{validated}");
    let m = dev
        .aloft(&["--json", "machine", "list", "-a", "site"])
        .json();
    assert_eq!(m[0]["config"]["services"][0]["internal_port"], 3000, "{m}");

    // Never over an existing config; names are global; --no-deploy only writes and creates.
    let out = dev.aloft(&["launch", "--image", "hello:v1", "-c", d]);
    assert!(
        out.fails()
            .contains("exists already: deploy it with `aloft deploy"),
        "{out}"
    );
    let other = tmp.path().join("other");
    fs::create_dir(&other).unwrap();
    let o = other.to_str().unwrap();
    let out = dev.aloft(&["launch", "--image", "hello:v1", "--name", "site", "-c", o]);
    assert!(out.fails().contains("pick another with --name"), "{out}");
    assert!(!other.join("fly.toml").exists());
    let out = dev.aloft(&["launch", "--image", "hello:v1", "--no-deploy", "-c", o]);
    assert!(
        out.ok().contains("Deploy it with `aloft deploy -c"),
        "{out}"
    );
    let m = dev
        .aloft(&["--json", "machine", "list", "-a", "other"])
        .json();
    assert!(m.as_array().unwrap().is_empty(), "{m}");
}

#[test]
fn a_dockerfile_is_built_pushed_and_deployed_and_a_failed_build_changes_nothing() {
    if std::process::Command::new("buildah")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("\n*** SKIPPED: buildah is not installed (scripts/setup.sh installs it) ***\n");
        return;
    }
    let Some(hello) = hello_binary() else {
        return;
    };
    let (tmp, data) = temp_data_dir();
    let dev = DevUp::start_no_pull(&data, "build");
    let dir = tmp.path().join("built");
    fs::create_dir(&dir).unwrap();
    fs::copy(&hello, dir.join("hello")).unwrap();
    let d = dir.to_str().unwrap();
    // A build that fails: nothing is created but the app.
    fs::write(dir.join("Dockerfile"), "FROM scratch\nCOPY not-here /x\n").unwrap();
    let out = dev.aloft(&["launch", "--region", "local", "-c", d]);
    let err = out.fails();
    assert!(
        err.contains("failed (see buildah's output above); nothing was deployed"),
        "{out}"
    );
    let releases = dev.aloft(&["--json", "releases", "-a", "built"]).json();
    assert!(releases.as_array().unwrap().is_empty(), "{releases}");

    // The real one: built with buildah, pushed to the org's repository, deployed.
    fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY hello /hello\nENV GREETING=built\nEXPOSE 9090\nENTRYPOINT [\"/hello\"]\n",
    )
    .unwrap();
    let out = dev.aloft(&["deploy", "-c", d]);
    let text = out.ok();
    assert!(
        text.contains("==> Building") && text.contains("==> Pushing built:deployment-"),
        "{out}"
    );
    assert!(text.contains("Deployed release v1 of built"), "{out}");
    let m = dev
        .aloft(&["--json", "machine", "list", "-a", "built"])
        .json();
    let image = m[0]["config"]["image"].as_str().unwrap();
    assert!(image.starts_with("built:deployment-"), "{m}");

    // Launching that image reads its exposed port from the registry.
    let again = tmp.path().join("again");
    fs::create_dir(&again).unwrap();
    let a = again.to_str().unwrap();
    dev.aloft(&["launch", "--image", image, "--no-deploy", "-c", a])
        .ok();
    let config = fs::read_to_string(again.join("fly.toml")).unwrap();
    assert!(config.contains("internal_port = 9090"), "{config}");
}

#[test]
fn machines_without_a_volume_cannot_gain_one_through_a_deploy() {
    let (tmp, data) = temp_data_dir();
    let dev = DevUp::start_no_pull(&data, "deploy-mounts");
    dev.aloft(&["apps", "create", "hello"]).ok();
    dev.aloft(&["deploy", "-c", &fly_toml(tmp.path(), "v1", "")])
        .ok();
    let id = dev
        .aloft(&["--json", "machine", "list", "-a", "hello"])
        .json()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mounting = fly_toml(
        tmp.path(),
        "v2",
        "\n[[mounts]]\n  source = \"data\"\n  destination = \"/data\"\n",
    );
    let out = dev.aloft(&["deploy", "-c", &mounting]);
    let err = out.fails();
    assert!(
        err.contains(&format!(
            "its machine {id} has none, and a machine cannot gain one"
        )),
        "{out}"
    );
    // Nothing was made: no release, no volume.
    assert_eq!(release_statuses(&dev), ["complete"]);
    let volumes = dev
        .aloft(&["--json", "volumes", "list", "-a", "hello"])
        .json();
    assert_eq!(volumes.as_array().unwrap().len(), 0, "{volumes}");
}
