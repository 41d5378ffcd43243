//! The verbs flyctl users type, against `aloft dev up` (sim machines): `orgs list`, `apps list
//! -o`, `machine update|clone|kill`, `scale count web=2 worker=1`, `status --all`, `config save`
//! and `-y/--yes` where flyctl has it.

mod common;

use common::*;
use std::fs;

const CONFIG: &str = "# the team's comments stay\napp = \"hello\"\nprimary_region = \"local\"\n\n[build]\n  image = \"hello:v1\"\n\n[processes]\n  web = \"/hello\"\n  worker = \"/hello --worker\"\n\n[http_service]\n  internal_port = 8080\n  processes = [\"web\"]\n";

#[test]
fn flyctl_verbs_work_as_flyctl_users_type_them() {
    let (tmp, data) = temp_data_dir();
    let dev = DevUp::start_no_pull(&data, "flyctl-verbs");
    orgs_and_apps_by_org(&dev);
    let dir = tmp.path().join("site");
    fs::create_dir(&dir).unwrap();
    let config = dir.join("fly.toml");
    fs::write(&config, CONFIG).unwrap();
    dev.aloft(&["deploy", "-y", "-c", config.to_str().unwrap()])
        .ok();
    config_save_writes_the_deployed_file(&dev, &tmp);
    scale_count_takes_a_count_per_group(&dev);
    machine_update_clone_and_kill(&dev);
}

/// `orgs list` shows the token's org; `apps list -o` lists its apps and names the fix for another.
fn orgs_and_apps_by_org(dev: &DevUp) {
    dev.aloft(&["apps", "create", "hello"]).ok();
    let orgs = dev.aloft(&["--json", "orgs", "list"]).json();
    assert_eq!(orgs[0]["slug"], "personal", "{orgs}");
    let out = dev.aloft(&["orgs", "list"]);
    assert!(out.ok().contains("personal"), "{out}");
    let apps = dev
        .aloft(&["--json", "apps", "list", "-o", "personal"])
        .json();
    assert_eq!(apps[0]["name"], "hello", "{apps}");
    let out = dev.aloft(&["apps", "list", "-o", "someone-else"]);
    assert!(
        out.fails()
            .contains("your token belongs to the org `personal`"),
        "{out}"
    );
}

/// `config save` writes what the last deploy applied (comments kept, `app` as deployed to); a
/// different file there is replaced only with `--yes` (no terminal to ask on).
fn config_save_writes_the_deployed_file(dev: &DevUp, tmp: &tempfile::TempDir) {
    let elsewhere = tmp.path().join("saved");
    fs::create_dir(&elsewhere).unwrap();
    let out = dev.aloft(&[
        "config",
        "save",
        "-a",
        "hello",
        "-c",
        elsewhere.to_str().unwrap(),
    ]);
    assert!(out.ok().contains("release v1"), "{out}");
    assert_eq!(
        fs::read_to_string(elsewhere.join("fly.toml")).unwrap(),
        CONFIG
    );
    let saved = elsewhere.join("fly.toml");
    fs::write(&saved, "app = \"hello\"\n# edited\n").unwrap();
    let path = saved.to_str().unwrap();
    let out = dev.aloft(&["config", "save", "-c", path]);
    assert!(out.fails().contains("pass --yes to replace it"), "{out}");
    assert_eq!(
        fs::read_to_string(&saved).unwrap(),
        "app = \"hello\"\n# edited\n"
    );
    let report = dev
        .aloft(&["--json", "config", "save", "-y", "-c", path])
        .json();
    assert_eq!(
        (&report["app"], &report["changed"]),
        (&serde_json::json!("hello"), &serde_json::json!(true))
    );
    assert_eq!(fs::read_to_string(&saved).unwrap(), CONFIG);
    let out = dev.aloft(&["config", "save", "-a", "nope", "-c", path]);
    assert!(out.fails().contains("nope"), "{out}");
}

fn groups(dev: &DevUp, all: bool) -> Vec<(String, String)> {
    let mut args = vec!["--json", "status", "-a", "hello"];
    if all {
        args.push("--all");
    }
    let status = dev.aloft(&args).json();
    let mut list: Vec<(String, String)> = status["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["config"]["metadata"]["fly_process_group"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                m["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    list.sort();
    list
}

/// `scale count web=2 worker=0`: each group to its count; `status --all` shows the destroyed one.
fn scale_count_takes_a_count_per_group(dev: &DevUp) {
    let started = |g: &str| (g.to_string(), "started".to_string());
    assert_eq!(groups(dev, false), [started("web"), started("worker")]);
    let report = dev
        .aloft(&[
            "--json", "scale", "count", "web=2", "worker=0", "-a", "hello", "-y",
        ])
        .json();
    assert_eq!(report["counts"], serde_json::json!({"web": 2, "worker": 0}));
    let actions: Vec<(&str, &str)> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["group"].as_str().unwrap(), c["action"].as_str().unwrap()))
        .collect();
    assert_eq!(actions, [("web", "created"), ("worker", "destroyed")]);
    assert_eq!(groups(dev, false), [started("web"), started("web")]);
    let all = groups(dev, true);
    assert!(
        all.contains(&("worker".to_string(), "destroyed".to_string())),
        "{all:?}"
    );
    let out = dev.aloft(&["scale", "count", "web=2", "3", "-a", "hello"]);
    assert!(out.fails().contains("is not GROUP=N"), "{out}");
}

/// `machine update` changes env under the lease (a new version), `clone` copies a machine,
/// `kill` sends SIGKILL.
fn machine_update_clone_and_kill(dev: &DevUp) {
    let list = dev
        .aloft(&["--json", "machine", "list", "-a", "hello"])
        .json();
    let web = list[0]["id"].as_str().unwrap().to_string();
    let before = machine_json(dev, "hello", &web);
    let out = dev.aloft(&[
        "machine",
        "update",
        &web,
        "-a",
        "hello",
        "-e",
        "MODE=blue",
        "-y",
    ]);
    assert!(out.ok().contains("updated to version"), "{out}");
    let after = machine_json(dev, "hello", &web);
    assert_eq!(after["config"]["env"]["MODE"], "blue", "{after}");
    assert_ne!(after["instance_id"], before["instance_id"]);
    assert_eq!(after["state"], "started");
    // No lease is left behind.
    let lease = dev.aloft(&["--json", "machine", "leases", "view", &web, "-a", "hello"]);
    assert!(!lease.stdout.contains("aloft machine update"), "{lease}");
    let out = dev.aloft(&["machine", "update", &web, "-a", "hello"]);
    assert!(out.fails().contains("nothing to change"), "{out}");
    let out = dev.aloft(&[
        "machine",
        "update",
        &web,
        "-a",
        "hello",
        "--vm-size",
        "huge",
    ]);
    assert!(out.fails().contains("unknown size `huge`"), "{out}");

    let clone = dev
        .aloft(&["--json", "machine", "clone", &web, "-a", "hello"])
        .json();
    let clone_id = clone["id"].as_str().unwrap();
    assert_ne!(clone_id, web);
    assert_eq!(clone["state"], "started", "{clone}");
    assert_eq!(clone["config"]["env"]["MODE"], "blue", "{clone}");

    let out = dev.aloft(&["machine", "kill", clone_id, "-a", "hello"]);
    assert!(out.ok().contains("Sent SIGKILL"), "{out}");
    let out = dev.aloft(&["machine", "kill", "nope", "-a", "hello"]);
    assert!(out.fails().contains("no machine `nope`"), "{out}");
}
