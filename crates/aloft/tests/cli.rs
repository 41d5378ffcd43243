//! The `aloft` binary end to end: `aloft dev up` runs as a child process (sim runtime, ports from
//! :0, a temp data dir) and the client commands run against it, exactly as a user would type them.
//! Machines here name images no registry holds, so `dev up` runs with `--no-pull`; machines
//! from real images are tested in `images.rs`.

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

#[test]
fn version_is_printed() {
    let out = aloft_with(&[], &["--version"]);
    assert!(
        out.ok()
            .starts_with(&format!("aloft {}", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
}

#[test]
fn apps_and_machines_from_create_to_destroy() {
    let (_tmp, data) = temp_data_dir();
    let dev = DevUp::start_no_pull(&data, "main");
    dev_up_says_how_to_connect(&dev);
    apps_are_created_and_listed(&dev);
    let web = a_machine_with_every_flag_and_its_logs(&dev);
    let worker_id = a_plain_machine(&dev, &web);
    machines_are_listed(&dev, &web);
    stop_start_and_restart(&dev, &web);
    exec_prints_and_exits_with_the_status(&dev, &web);
    wait_for_a_state(&dev, &web);
    cordon_and_uncordon(&dev, &web);
    leases_are_viewed_and_cleared(&dev, &data, &web);
    signal_and_suspend(&dev, &web, &worker_id);
    status_of_a_machine_and_the_app(&dev, &data, &web);
    regions_are_listed(&dev);
    destroy_a_started_machine_needs_force(&dev, &web);
    destroying_the_app_needs_yes(&dev, &worker_id);
}

/// `dev up` prints the line that exports the token and names the proxy and the registry.
fn dev_up_says_how_to_connect(dev: &DevUp) {
    let stdout = dev.stdout();
    assert!(stdout.contains("export ALOFT_API_TOKEN=$(cat "), "{stdout}");
    assert!(
        stdout.contains("proxy") && stdout.contains("registry"),
        "{stdout}"
    );
}

/// Apps: none at first; `hello` is created in the personal org and listed as a table and as JSON.
fn apps_are_created_and_listed(dev: &DevUp) {
    let out = dev.aloft(&["apps", "list"]);
    assert!(out.ok().contains("No apps yet"), "{out}");
    let out = dev.aloft(&["apps", "create", "hello"]);
    assert!(
        out.ok().contains("Created app `hello` in org personal"),
        "{out}"
    );
    let out = dev.aloft(&["apps", "list"]);
    let table = out.ok();
    assert!(table.starts_with("NAME"), "{out}");
    assert!(table.lines().any(|l| l.starts_with("hello ")), "{out}");
    let apps = dev.aloft(&["apps", "list", "--json"]).json();
    assert_eq!(apps[0]["name"], "hello");
    assert_eq!(apps[0]["organization"]["slug"], "personal");
}

/// A machine with every flag `machine run` has: each lands in its config. Then its log lines,
/// from every machine of the app or one, as text or JSON. Returns the machine's id.
fn a_machine_with_every_flag_and_its_logs(dev: &DevUp) -> String {
    let web = run_machine(
        dev,
        &[
            "-a",
            "hello",
            "--region",
            "local",
            "--env",
            "GREETING=hi there",
            "-e",
            "MODE=prod",
            "-p",
            "443:8080/tcp:http:tls",
            "-p",
            "80:8080/tcp:http",
            "-p",
            "5432/tcp",
            "--autostop",
            "suspend",
            "--restart",
            "on-fail",
            "--memory",
            "1gb",
            "--cpus",
            "2",
            "--cpu-kind",
            "shared",
            "--name",
            "web-1",
            "--metadata",
            "role=web",
            "-m",
            "tier=front",
            "--entrypoint",
            "/bin/sh -c",
            "--cmd",
            "'sleep 1000'",
            "nginx:latest",
        ],
    );
    let m = machine_json(dev, "hello", &web);
    let c = &m["config"];
    assert_eq!(m["state"], "started", "{m:#}");
    assert_eq!(m["name"], "web-1");
    assert_eq!(m["region"], "local");
    assert_eq!(c["image"], "nginx:latest");
    assert_eq!(c["env"]["GREETING"], "hi there");
    assert_eq!(c["env"]["MODE"], "prod");
    assert_eq!(c["guest"]["memory_mb"], 1024);
    assert_eq!(c["guest"]["cpus"], 2);
    assert_eq!(c["guest"]["cpu_kind"], "shared");
    assert_eq!(c["metadata"]["role"], "web");
    assert_eq!(c["metadata"]["tier"], "front");
    assert_eq!(
        c["init"]["entrypoint"],
        serde_json::json!(["/bin/sh", "-c"])
    );
    assert_eq!(c["init"]["cmd"], serde_json::json!(["sleep 1000"]));
    assert_eq!(c["restart"]["policy"], "on-failure");
    let services = c["services"].as_array().unwrap();
    assert_eq!(services.len(), 2, "{c:#}");
    assert_eq!(services[0]["internal_port"], 8080);
    assert_eq!(services[0]["protocol"], "tcp");
    assert_eq!(services[0]["autostop"], "suspend");
    assert_eq!(services[0]["ports"][0]["port"], 443);
    assert_eq!(
        services[0]["ports"][0]["handlers"],
        serde_json::json!(["http", "tls"])
    );
    assert_eq!(services[0]["ports"][1]["port"], 80);

    // Its log lines, from every machine of the app or one, as text or JSON.
    let out = dev.aloft(&["logs", "-a", "hello", "--no-tail"]);
    let text = out.ok();
    assert!(
        text.lines().any(|l| l.contains(&format!("local[{web}]"))),
        "{out}"
    );
    let out = dev.aloft(&["logs", "-a", "hello", "-m", &web, "--no-tail", "--json"]);
    let first: serde_json::Value = serde_json::from_str(out.ok().lines().next().unwrap()).unwrap();
    assert_eq!(first["machine"], web.as_str());
    assert_eq!(first["region"], "local");
    assert_eq!(first["stream"], "stdout");
    let out = dev.aloft(&["logs", "-a", "hello", "-m", "nope", "--no-tail"]);
    assert!(out.fails().contains("aloft machine list -a hello"), "{out}");
    assert_eq!(
        services[0]["ports"][1]["handlers"],
        serde_json::json!(["http"])
    );
    assert_eq!(services[1]["internal_port"], 5432);
    assert_eq!(services[1]["ports"][0]["port"], 5432);
    web
}

/// A plain one: the command after the image, the restart policy given the reference's way.
/// Returns its id.
fn a_plain_machine(dev: &DevUp, web: &str) -> String {
    let out = dev.aloft(&[
        "machine",
        "run",
        "-a",
        "hello",
        "--restart",
        "no",
        "busybox",
        "sleep",
        "1000",
    ]);
    let text = out.ok();
    assert!(out.stderr.contains("Waiting for machine"), "{out}");
    assert!(text.contains("is started in region local"), "{out}");
    let worker = dev
        .aloft(&["machine", "list", "-a", "hello", "--json"])
        .json();
    let worker = worker
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] != web)
        .expect("the second machine")
        .clone();
    let worker_id = worker["id"].as_str().unwrap().to_string();
    assert_eq!(
        worker["config"]["init"]["cmd"],
        serde_json::json!(["sleep", "1000"])
    );
    assert_eq!(worker["config"]["restart"]["policy"], "no");
    assert_eq!(worker["config"]["guest"]["memory_mb"], 256);
    worker_id
}

/// List: both machines started, as JSON and as a table; none in `stopped`.
fn machines_are_listed(dev: &DevUp, web: &str) {
    let list = dev
        .aloft(&["machine", "list", "-a", "hello", "--json"])
        .json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|m| m["state"] == "started"), "{list:#?}");
    let out = dev.aloft(&["machine", "list", "-a", "hello"]);
    assert!(out.ok().starts_with("ID"), "{out}");
    assert!(
        out.stdout.contains(web) && out.stdout.contains("web-1"),
        "{out}"
    );
    let out = dev.aloft(&[
        "machine", "list", "-a", "hello", "--state", "stopped", "--json",
    ]);
    assert_eq!(out.json(), serde_json::json!([]));
}

/// Stop (with a signal and a timeout), a second stop that says it is a no-op, start, restart.
fn stop_start_and_restart(dev: &DevUp, web: &str) {
    let out = dev.aloft(&[
        "machine",
        "stop",
        web,
        "-a",
        "hello",
        "--signal",
        "SIGINT",
        "--timeout",
        "5s",
    ]);
    assert!(
        out.ok().contains(&format!("Machine {web} stopped")),
        "{out}"
    );
    assert_eq!(state_of(dev, "hello", web), "stopped");
    let out = dev.aloft(&["machine", "stop", web, "-a", "hello"]);
    assert!(
        out.ok().contains("is already stopped"),
        "a no-op says so: {out}"
    );
    let out = dev.aloft(&["machine", "start", web, "-a", "hello"]);
    assert!(out.ok().contains("started (it was stopped)"), "{out}");
    assert_eq!(state_of(dev, "hello", web), "started");
    let out = dev.aloft(&["machine", "restart", web, "-a", "hello"]);
    assert!(out.ok().contains("restarted"), "{out}");
    assert_eq!(state_of(dev, "hello", web), "started");
}

/// Exec prints the output and exits with the command's status.
fn exec_prints_and_exits_with_the_status(dev: &DevUp, web: &str) {
    let out = dev.aloft(&[
        "machine", "exec", web, "-a", "hello", "--", "echo", "hello", "world",
    ]);
    assert_eq!(out.ok(), "hello world\n");
    let out = dev.aloft(&["machine", "exec", web, "-a", "hello", "--", "exit", "3"]);
    assert_eq!(out.code, Some(3), "{out}");
    let out = dev.aloft(&[
        "machine", "exec", web, "-a", "hello", "--json", "--", "echo", "x",
    ]);
    assert_eq!(out.json()["stdout"], "x\n");
}

/// Wait: for the state the machine is in, and a timeout for one it never reaches.
fn wait_for_a_state(dev: &DevUp, web: &str) {
    let out = dev.aloft(&[
        "machine",
        "wait",
        web,
        "-a",
        "hello",
        "--state",
        "started",
        "--timeout",
        "10s",
    ]);
    assert!(out.ok().contains("is started"), "{out}");
    let out = dev.aloft(&[
        "machine",
        "wait",
        web,
        "-a",
        "hello",
        "--state",
        "stopped",
        "--timeout",
        "2s",
    ]);
    assert!(out.fails().contains("did not reach `stopped`"), "{out}");
}

/// Cordon and uncordon, as the machine's JSON shows them.
fn cordon_and_uncordon(dev: &DevUp, web: &str) {
    let out = dev.aloft(&["machine", "cordon", web, "-a", "hello"]);
    assert!(out.ok().contains("cordoned"), "{out}");
    assert_eq!(machine_json(dev, "hello", web)["cordoned"], true);
    dev.aloft(&["machine", "uncordon", web, "-a", "hello"]).ok();
    assert_eq!(machine_json(dev, "hello", web)["cordoned"], false);
}

/// Leases: none to view or clear; one taken through the API is shown, blocks `machine stop`
/// with the way out, and is cleared.
fn leases_are_viewed_and_cleared(dev: &DevUp, data: &Path, web: &str) {
    let out = dev.aloft(&["machine", "leases", "view", web, "-a", "hello"]);
    assert!(out.ok().contains("no lease"), "{out}");
    assert_eq!(
        dev.aloft(&["machine", "leases", "view", web, "-a", "hello", "--json"])
            .json(),
        Value::Null
    );
    let out = dev.aloft(&["machine", "leases", "clear", web, "-a", "hello"]);
    assert!(out.ok().contains("nothing to clear"), "{out}");
    let token = fs::read_to_string(data.join("token")).unwrap();
    let (status, body) = http(
        &dev.api_url,
        "POST",
        &format!("/v1/apps/hello/machines/{web}/lease"),
        token.trim(),
        r#"{"ttl":120,"description":"deploy in progress"}"#,
    );
    assert!(status == 200 || status == 201, "{status} {body}");
    let nonce = serde_json::from_str::<Value>(&body).unwrap()["data"]["nonce"]
        .as_str()
        .unwrap()
        .to_string();
    let out = dev.aloft(&["machine", "leases", "view", web, "-a", "hello"]);
    assert!(out.ok().starts_with("NONCE"), "{out}");
    assert!(
        out.stdout.contains(&nonce) && out.stdout.contains("deploy in progress"),
        "{out}"
    );
    let lease = dev
        .aloft(&["machine", "leases", "view", web, "-a", "hello", "--json"])
        .json();
    assert_eq!(lease["nonce"], nonce.as_str());
    let out = dev.aloft(&["machine", "stop", web, "-a", "hello"]);
    assert!(out.fails().contains("aloft machine leases clear"), "{out}");
    let out = dev.aloft(&["machine", "leases", "clear", web, "-a", "hello"]);
    assert!(out.ok().contains("Cleared the lease"), "{out}");
    let out = dev.aloft(&["machine", "leases", "view", web, "-a", "hello"]);
    assert!(out.ok().contains("no lease"), "{out}");
}

/// Signal and suspend (the sim runtime cannot suspend: it stops instead and says so).
fn signal_and_suspend(dev: &DevUp, web: &str, worker_id: &str) {
    let out = dev.aloft(&["machine", "signal", web, "-a", "hello", "-s", "SIGUSR1"]);
    assert!(out.ok().contains("Sent SIGUSR1"), "{out}");
    let out = dev.aloft(&["machine", "suspend", worker_id, "-a", "hello"]);
    assert!(out.ok().contains(worker_id), "{out}");
    let state = state_of(dev, "hello", worker_id);
    assert!(state == "suspended" || state == "stopped", "{state}");
}

/// Status of a machine and of the app, as text and JSON, and the app taken from `ALOFT_APP`.
fn status_of_a_machine_and_the_app(dev: &DevUp, data: &Path, web: &str) {
    let out = dev.aloft(&["machine", "status", web, "-a", "hello"]);
    let text = out.ok();
    assert!(text.contains("web-1") && text.contains("Events"), "{out}");
    assert!(text.contains("launch") || text.contains("start"), "{out}");
    let out = dev.aloft(&["status", "-a", "hello"]);
    let text = out.ok();
    assert!(text.contains("hello") && text.contains("personal"), "{out}");
    assert!(text.contains(web) && text.contains("nginx:latest"), "{out}");
    assert!(text.contains("local    2 machines on local-1"), "{out}");
    let status = dev.aloft(&["status", "-a", "hello", "--json"]).json();
    assert_eq!(status["app"]["organization"]["slug"], "personal");
    assert_eq!(status["machines"].as_array().unwrap().len(), 2);
    let out = aloft_with(
        &[
            ("ALOFT_API_URL", &dev.api_url),
            ("ALOFT_DATA_DIR", data.to_str().unwrap()),
            ("ALOFT_APP", "hello"),
        ],
        &["status"],
    );
    assert!(out.ok().contains(web), "ALOFT_APP is read: {out}");
}

/// Regions: `local` listed as text and as JSON.
fn regions_are_listed(dev: &DevUp) {
    let out = dev.aloft(&["platform", "regions"]);
    assert!(out.ok().lines().any(|l| l.starts_with("local ")), "{out}");
    let regions = dev.aloft(&["platform", "regions", "--json"]).json();
    assert!(
        regions
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["code"] == "local"),
        "{regions:#}"
    );
}

/// Destroy: a started machine only with --force; `--all` still lists it, as destroyed.
fn destroy_a_started_machine_needs_force(dev: &DevUp, web: &str) {
    let out = dev.aloft(&["machine", "destroy", web, "-a", "hello"]);
    let err = out.fails();
    assert!(
        err.contains("--force") && err.contains("aloft machine stop"),
        "{out}"
    );
    assert_eq!(state_of(dev, "hello", web), "started");
    let out = dev.aloft(&["machine", "destroy", web, "-a", "hello", "--force"]);
    assert!(out.ok().contains("destroyed"), "{out}");
    let list = dev
        .aloft(&["machine", "list", "-a", "hello", "--json"])
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list:#}");
    let all = dev
        .aloft(&["machine", "list", "-a", "hello", "--all", "--json"])
        .json();
    let gone = all
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == web)
        .expect("--all lists destroyed machines");
    assert_eq!(gone["state"], "destroyed");
}

/// Destroying an app asks first; without a terminal it needs --yes.
fn destroying_the_app_needs_yes(dev: &DevUp, worker_id: &str) {
    let out = dev.aloft(&["apps", "destroy", "hello"]);
    assert!(out.fails().contains("--yes"), "{out}");
    dev.aloft(&["machine", "destroy", worker_id, "-a", "hello", "--force"])
        .ok();
    dev.aloft(&["apps", "destroy", "hello", "--yes"]).ok();
    let apps = dev.aloft(&["apps", "list", "--json"]).json();
    assert_eq!(apps, serde_json::json!([]));
}

/// `aloft certs` in `fly certs` habits: `add` (managed), `import` (and `add --cert --key`),
/// `list`, `show`, `check`, `remove` (whole, `--custom`, `--acme`, `-y`), and bad input.
#[test]
fn certs_add_list_and_remove_hostnames() {
    let (tmp, data) = temp_data_dir();
    let dev = DevUp::start_no_pull(&data, "certs");
    dev.aloft(&["apps", "create", "hello"]).ok();
    let out = dev.aloft(&["certs", "add", "www.hello.test", "-a", "hello"]);
    assert!(out.ok().contains("development CA"), "{out}");

    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["api.hello.test".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (chain, key_pem) = (tmp.path().join("chain.pem"), tmp.path().join("key.pem"));
    fs::write(&chain, cert.pem()).unwrap();
    fs::write(&key_pem, key.serialize_pem()).unwrap();
    let (c, k) = (chain.to_str().unwrap(), key_pem.to_str().unwrap());
    let out = dev.aloft(&[
        "certs",
        "import",
        "api.hello.test",
        "-a",
        "hello",
        "--fullchain",
        c,
        "--private-key",
        k,
    ]);
    assert!(out.ok().contains("with your certificate"), "{out}");
    // `add --cert --key` is the same as `import`; the hostname now has both certificates.
    dev.aloft(&["certs", "add", "api.hello.test", "-a", "hello"])
        .ok();
    let out = dev.aloft(&[
        "certs",
        "add",
        "api.hello.test",
        "-a",
        "hello",
        "--cert",
        c,
        "--key",
        k,
    ]);
    assert!(out.ok().contains("with your certificate"), "{out}");

    let list = dev
        .aloft(&["certs", "list", "-a", "hello", "--json"])
        .json();
    assert_eq!(list[0]["hostname"], "api.hello.test", "{list}");
    assert_eq!(list[0]["has_custom_certificate"], true);
    assert_eq!(list[1]["hostname"], "www.hello.test");
    assert_eq!(list[1]["has_fly_certificate"], true);
    let out = dev.aloft(&["certs", "list", "-a", "hello"]);
    assert!(out.ok().contains("custom+managed"), "{out}");
    let shown = dev
        .aloft(&["certs", "show", "api.hello.test", "-a", "hello", "--json"])
        .json();
    assert_eq!(shown["status"], "active", "{shown}");
    let out = dev.aloft(&["certs", "check", "api.hello.test", "-a", "hello"]);
    let text = out.ok();
    assert!(
        text.contains("Custom certificate") && text.contains("Managed certificate"),
        "{out}"
    );

    // Bad input: a key without a certificate, a certificate that is junk, an unknown app.
    let out = dev.aloft(&[
        "certs",
        "add",
        "a.hello.test",
        "-a",
        "hello",
        "--key",
        "k.pem",
    ]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("--cert"), "{out}");
    let junk = tmp.path().join("junk.pem");
    fs::write(&junk, "not a certificate").unwrap();
    let j = junk.to_str().unwrap();
    let out = dev.aloft(&[
        "certs",
        "import",
        "a.hello.test",
        "-a",
        "hello",
        "--fullchain",
        j,
        "--private-key",
        j,
    ]);
    assert!(out.fails().contains("no certificate"), "{out}");
    let out = dev.aloft(&["certs", "add", "www.example.com", "-a", "hello"]);
    assert!(
        out.fails().contains("aloft certs import www.example.com"),
        "{out}"
    );
    let out = dev.aloft(&["certs", "add", "www.hello.test", "-a", "nope"]);
    assert!(out.fails().contains("aloft apps create nope"), "{out}");

    // Partial removals, then the hostname.
    let out = dev.aloft(&[
        "certs",
        "remove",
        "api.hello.test",
        "-a",
        "hello",
        "--custom",
    ]);
    assert!(out.ok().contains("custom certificate"), "{out}");
    let out = dev.aloft(&[
        "certs",
        "rm",
        "api.hello.test",
        "-a",
        "hello",
        "--acme",
        "-y",
    ]);
    assert!(out.ok().contains("managed certificate"), "{out}");
    let out = dev.aloft(&["certs", "remove", "api.hello.test", "-a", "hello", "--acme"]);
    assert!(out.fails().contains("no managed certificate"), "{out}");
    for host in ["api.hello.test", "www.hello.test"] {
        let out = dev.aloft(&["certs", "remove", host, "-a", "hello", "--yes"]);
        assert!(out.ok().contains("no longer served"), "{out}");
    }
    let out = dev.aloft(&["certs", "list", "-a", "hello"]);
    assert!(out.ok().contains("aloft certs add"), "{out}");
    let out = dev.aloft(&["certs", "remove", "www.hello.test", "-a", "hello"]);
    assert!(out.fails().contains("aloft certs list -a hello"), "{out}");
}

#[test]
fn errors_say_what_to_do() {
    let (_tmp, data) = temp_data_dir();
    let dev = DevUp::start_no_pull(&data, "errors");
    dev.aloft(&["apps", "create", "errs"]).ok();

    let out = dev.aloft(&["machine", "list", "-a", "nope"]);
    let err = out.fails();
    assert!(err.contains("no app named `nope` in org personal"), "{out}");
    assert!(err.contains("aloft apps create nope"), "{out}");
    let out = dev.aloft(&["status", "-a", "nope"]);
    assert!(out.fails().contains("aloft apps create nope"), "{out}");
    // An app the token may not see (the API's terse 403 `unauthorized`): the CLI names the fix.
    dev.aloft(&["apps", "create", "errs-other"]).ok();
    let deploy = dev.aloft(&["tokens", "create", "deploy", "-a", "errs"]);
    let deploy = deploy.ok().trim().to_string();
    let data_dir = dev.data_dir.to_str().unwrap();
    let out = aloft_with(
        &[
            ("ALOFT_API_URL", &dev.api_url),
            ("ALOFT_DATA_DIR", data_dir),
            ("ALOFT_API_TOKEN", &deploy),
        ],
        &["status", "-a", "errs-other"],
    );
    let err = out.fails();
    assert!(
        err.contains("app `errs-other` exists but not in your token's org")
            && err.contains("ALOFT_API_TOKEN"),
        "{out}"
    );

    let out = dev.aloft(&["machine", "run", "-a", "errs", "--memory", "300", "nginx"]);
    assert!(out.fails().contains("guest.memory_mb"), "{out}");
    let out = dev.aloft(&["machine", "run", "-a", "errs", "--memory", "lots", "nginx"]);
    assert!(out.fails().contains("512mb"), "{out}");
    let out = dev.aloft(&[
        "machine",
        "run",
        "-a",
        "errs",
        "-p",
        "80/tcp:gopher",
        "nginx",
    ]);
    assert!(out.fails().contains("use http, tls"), "{out}");
    let out = dev.aloft(&[
        "machine",
        "run",
        "-a",
        "errs",
        "--restart",
        "sometimes",
        "nginx",
    ]);
    assert_eq!(out.code, Some(2), "clap rejects it: {out}");
    assert!(out.stderr.contains("on-fail"), "{out}");

    let out = dev.aloft(&["machine", "status", "00000000000000", "-a", "errs"]);
    let err = out.fails();
    assert!(
        err.contains("no machine `00000000000000` in app `errs`"),
        "{out}"
    );
    assert!(err.contains("aloft machine list -a errs"), "{out}");

    let out = dev.aloft(&["machine", "list"]);
    assert!(out.fails().contains("-a APP"), "{out}");

    // A machine that cannot start: the events and a hint.
    let out = dev.aloft(&[
        "machine",
        "run",
        "-a",
        "errs",
        "-e",
        "SIM_FAIL_START=1",
        "nginx",
    ]);
    let err = out.fails();
    assert!(err.contains("did not start"), "{out}");
    assert!(
        err.contains("TYPE") && err.contains("aloft machine status"),
        "{out}"
    );

    // Exec on a stopped machine.
    let id = run_machine(&dev, &["-a", "errs", "nginx"]);
    dev.aloft(&["machine", "stop", &id, "-a", "errs"]).ok();
    let out = dev.aloft(&["machine", "exec", &id, "-a", "errs", "--", "echo", "hi"]);
    assert!(out.fails().contains("aloft machine start"), "{out}");

    // A token the API does not know.
    let out = aloft_with(
        &[
            ("ALOFT_API_URL", &dev.api_url),
            ("ALOFT_API_TOKEN", "bogus"),
        ],
        &["apps", "list"],
    );
    assert!(out.fails().contains("ALOFT_API_TOKEN"), "{out}");
}

#[test]
fn client_errors_without_a_cloud() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let out = aloft_with(
        &[("ALOFT_API_URL", &url), ("ALOFT_API_TOKEN", "t")],
        &["apps", "list"],
    );
    let err = out.fails();
    assert!(
        err.contains(&format!("cannot reach the aloft API at {url}")),
        "{out}"
    );
    assert!(
        err.contains("aloft dev up") && err.contains("ALOFT_API_URL"),
        "{out}"
    );

    let (_tmp, data) = temp_data_dir();
    let out = aloft_with(
        &[
            ("ALOFT_API_URL", &url),
            ("ALOFT_DATA_DIR", data.to_str().unwrap()),
        ],
        &["apps", "list"],
    );
    let err = out.fails();
    assert!(
        err.contains("ALOFT_API_TOKEN") && err.contains("aloft dev up"),
        "{out}"
    );
}

#[test]
fn dev_up_survives_a_clean_stop_and_start() {
    let (_tmp, data) = temp_data_dir();
    let mut dev = DevUp::start_no_pull(&data, "first");
    dev.aloft(&["apps", "create", "keep"]).ok();
    let default_policy = run_machine(&dev, &["-a", "keep", "nginx"]);
    let never = run_machine(&dev, &["-a", "keep", "--restart", "no", "nginx"]);
    let created = run_machine(&dev, &["-a", "keep", "--skip-launch", "nginx"]);
    assert_eq!(state_of(&dev, "keep", &created), "created");
    let token = fs::read_to_string(data.join("token")).unwrap();
    let internal = fs::read_to_string(data.join("internal-token")).unwrap();
    for file in ["token", "internal-token"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(data.join(file)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }

    let status = dev.sigterm();
    assert!(
        status.success(),
        "dev up exited with {status}:\n{}",
        dev.logs()
    );
    let stdout = dev.stdout();
    assert!(
        stdout.contains(
            "the next `aloft dev up` reattaches those still running and applies the restart policy to the others"
        ),
        "{}",
        dev.logs()
    );
    assert!(
        !data.join("api-url").exists(),
        "api-url is removed on a clean stop"
    );

    let dev = DevUp::start_no_pull(&data, "second");
    assert_eq!(fs::read_to_string(data.join("token")).unwrap(), token);
    assert_eq!(
        fs::read_to_string(data.join("internal-token")).unwrap(),
        internal
    );
    let apps = dev.aloft(&["apps", "list", "--json"]).json();
    assert_eq!(apps[0]["name"], "keep");
    let list = dev
        .aloft(&["machine", "list", "-a", "keep", "--json"])
        .json();
    assert_eq!(list.as_array().unwrap().len(), 3, "{list:#}");

    // The default policy (on-failure) starts the machine whose process went away again; `no`
    // leaves it stopped; a machine that never ran stays created.
    let out = dev.aloft(&[
        "machine",
        "wait",
        &default_policy,
        "-a",
        "keep",
        "--state",
        "started",
        "--timeout",
        "30s",
    ]);
    out.ok();
    let out = dev.aloft(&[
        "machine",
        "wait",
        &never,
        "-a",
        "keep",
        "--state",
        "stopped",
        "--timeout",
        "30s",
    ]);
    out.ok();
    assert_eq!(state_of(&dev, "keep", &created), "created");
    let out = dev.aloft(&[
        "machine",
        "exec",
        &default_policy,
        "-a",
        "keep",
        "--",
        "echo",
        "back",
    ]);
    assert_eq!(out.ok(), "back\n");
}

#[test]
fn dev_up_survives_sigkill_in_the_middle_of_operations() {
    let (_tmp, data) = temp_data_dir();
    let mut dev = DevUp::start_no_pull(&data, "before-kill");
    dev.aloft(&["apps", "create", "crashy"]).ok();
    // Machines whose process ignores SIGTERM stay `stopping`/`restarting` for the whole stop
    // timeout, so those operations are surely in flight when the process is killed.
    let stubborn = ["-e", "SIM_IGNORE_SIGTERM=1"];
    let mut ids = Vec::new();
    for (policy, env) in [
        ("always", &stubborn[..]),
        ("no", &stubborn[..]),
        ("on-fail", &stubborn[..]),
        ("always", &[][..]),
        ("no", &[][..]),
        ("on-fail", &[][..]),
    ] {
        let mut args = vec!["-a", "crashy", "--restart", policy];
        args.extend_from_slice(env);
        args.push("nginx");
        ids.push(run_machine(&dev, &args));
    }
    ids.push(run_machine(
        &dev,
        &["-a", "crashy", "--skip-launch", "nginx"],
    ));

    let ops: [&[&str]; 7] = [
        &["stop", "--timeout", "60s"],
        &["restart", "--timeout", "60s"],
        &["stop", "--timeout", "60s"],
        &["destroy", "--force"],
        &["restart"],
        &["signal", "-s", "SIGKILL"],
        &["start"],
    ];
    let mut clients = Vec::new();
    for (id, op) in ids.iter().zip(ops) {
        let mut args = vec!["machine", op[0], id.as_str(), "-a", "crashy"];
        args.extend_from_slice(&op[1..]);
        clients.push(dev.aloft_background(&args));
    }
    // Kill once the slow operations are visibly under way.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = dev
            .aloft(&["machine", "list", "-a", "crashy", "--json"])
            .json();
        let busy = list
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| matches!(m["state"].as_str(), Some("stopping" | "restarting")))
            .count();
        if busy >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the operations never got under way: {list:#}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    dev.sigkill();
    for mut c in clients {
        let _ = c.wait();
    }
    assert!(
        data.join("api-url").exists(),
        "a killed dev up leaves api-url behind"
    );
    let _ = fs::remove_file(data.join("api-url"));

    let dev = DevUp::start_no_pull(&data, "after-kill");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = dev
            .aloft(&["machine", "list", "-a", "crashy", "--all", "--json"])
            .json();
        let machines = list.as_array().unwrap();
        let found: Vec<&str> = machines.iter().map(|m| m["id"].as_str().unwrap()).collect();
        for id in &ids {
            assert!(
                found.contains(&id.as_str()),
                "machine {id} was lost: {list:#}"
            );
        }
        let transient: Vec<String> = machines
            .iter()
            .filter(|m| {
                !matches!(
                    m["state"].as_str().unwrap(),
                    "created" | "started" | "stopped" | "suspended" | "failed" | "destroyed"
                )
            })
            .map(|m| format!("{} {}", m["id"], m["state"]))
            .collect();
        if transient.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "machines still transient 30s after the restart: {transient:?}\n{}",
            dev.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every machine still takes the operations users need next.
    for id in &ids {
        let state = state_of(&dev, "crashy", id);
        if state == "stopped" || state == "created" {
            dev.aloft(&["machine", "start", id, "-a", "crashy"]).ok();
        }
        if state != "destroyed" {
            dev.aloft(&["machine", "destroy", id, "-a", "crashy", "--force"])
                .ok();
        }
    }
}

#[test]
fn dev_up_stops_at_once_on_a_second_signal() {
    let (_tmp, data) = temp_data_dir();
    let mut dev = DevUp::start_no_pull(&data, "impatient");
    dev.aloft(&["apps", "create", "slow"]).ok();
    let id = run_machine(&dev, &["-a", "slow", "-e", "SIM_IGNORE_SIGTERM=1", "nginx"]);
    let mut stop =
        dev.aloft_background(&["machine", "stop", &id, "-a", "slow", "--timeout", "60s"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while state_of(&dev, "slow", &id) != "stopping" {
        assert!(Instant::now() < deadline, "the stop never got under way");
        std::thread::sleep(Duration::from_millis(20));
    }
    dev.signal("TERM");
    std::thread::sleep(Duration::from_secs(1));
    let asked = Instant::now();
    dev.signal("INT");
    let status = dev.wait_exit();
    assert_eq!(status.code(), Some(130), "{}", dev.logs());
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "took {:?}",
        asked.elapsed()
    );
    assert!(dev.logs().contains("stopped at once"), "{}", dev.logs());
    let _ = stop.wait();

    let dev = DevUp::start_no_pull(&data, "after-impatient");
    let out = dev.aloft(&[
        "machine",
        "wait",
        &id,
        "-a",
        "slow",
        "--state",
        "stopped",
        "--timeout",
        "30s",
    ]);
    out.ok();
}

#[test]
fn dev_up_refuses_a_data_dir_another_dev_up_uses() {
    let (tmp, data) = temp_data_dir();
    let first = DevUp::start_no_pull(&data, "owner");
    let pid = first.child.as_ref().unwrap().id();
    let mut second = DevUp::spawn(tmp.path(), &data, "intruder", &[]);
    assert!(!second.wait_exit().success());
    let logs = second.logs();
    assert!(
        logs.contains(&format!(
            "another `aloft dev up` (pid {pid}) is using the data directory"
        )),
        "{logs}"
    );
    first.aloft(&["apps", "list"]).ok();
}

#[test]
fn dev_up_replaces_a_token_it_does_not_accept() {
    let (_tmp, data) = temp_data_dir();
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("token"), "left-over-from-another-cloud\n").unwrap();
    let dev = DevUp::start_no_pull(&data, "stale-token");
    let token = fs::read_to_string(data.join("token")).unwrap();
    assert!(!token.contains("left-over"), "{token}");
    dev.aloft(&["apps", "list"]).ok();
}

#[test]
fn dev_up_refuses_a_data_dir_it_cannot_create() {
    let (tmp, _) = temp_data_dir();
    let file = tmp.path().join("a-file");
    fs::write(&file, "not a directory").unwrap();
    let data = file.join("data");
    let mut dev = DevUp::spawn(tmp.path(), &data, "bad-dir", &[]);
    let status = dev.wait_exit();
    assert!(!status.success());
    let logs = dev.logs();
    assert!(
        logs.contains(&format!(
            "cannot create the data directory {}",
            data.display()
        )),
        "{logs}"
    );
    assert!(logs.contains("--data-dir"), "{logs}");
    assert_eq!(fs::read_to_string(&file).unwrap(), "not a directory");
}

#[test]
fn dev_up_refuses_a_port_in_use() {
    let (tmp, data) = temp_data_dir();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let mut dev = DevUp::spawn(tmp.path(), &data, "busy", &["--api-addr", &addr]);
    let status = dev.wait_exit();
    assert!(!status.success());
    let logs = dev.logs();
    assert!(
        logs.contains(&format!(
            "{addr} is in use: is another `aloft dev up` running? stop it or pass --api-addr"
        )),
        "{logs}"
    );
    assert!(!data.exists(), "nothing is written when the port is taken");
}
