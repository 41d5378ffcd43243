//! fly.toml files as users write them: read whole, and each kind of mistake reported with its file,
//! line, key and fix.

use aloft_appconfig::schema::{RestartPolicy, Strategy};
use aloft_appconfig::{ConfigError, Loaded, Problem, find, parse};
use std::path::Path;

/// A fly.toml using every section of the reference.
const FULL: &str = include_str!("full.fly.toml");

fn ok(text: &str) -> Loaded {
    match parse(Path::new("fly.toml"), text) {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    }
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(Path::new("fly.toml"), text) {
        Ok(l) => panic!("accepted: {:?}", l.config),
        Err(ConfigError::Invalid(p)) => p,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn every_section_of_the_reference_is_read() {
    let l = ok(FULL);
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let c = l.config;
    assert_eq!(c.app.as_deref(), Some("hello"));
    assert_eq!(c.kill_signal.unwrap().name(), "SIGTERM");
    assert_eq!(c.kill_timeout.unwrap().0.as_secs(), 10);
    let build = c.build.unwrap();
    assert_eq!(build.build_target.as_deref(), Some("prod"));
    assert_eq!(build.args["VERSION"].0, "2");
    let deploy = c.deploy.unwrap();
    assert_eq!(deploy.strategy, Some(Strategy::Bluegreen));
    assert_eq!(deploy.wait_timeout.unwrap().0.as_secs(), 120);
    assert_eq!(c.env["PORT"].0, "8080");
    assert_eq!(c.env["DEBUG"].0, "false");
    assert_eq!(c.processes["web"].0, ["bin/server", "--port", "8080"]);
    assert_eq!(
        c.processes["worker"].0,
        ["bin/worker", "--queue", "default jobs"]
    );
    let http = c.http_service.unwrap();
    assert!(http.force_https);
    assert_eq!(http.checks[0].path.as_deref(), Some("/healthz"));
    assert_eq!(http.concurrency.unwrap().hard_limit, Some(25));
    assert_eq!(c.services[0].ports[1].end_port.unwrap().0, 6002);
    assert_eq!(c.checks["alive"].port.unwrap().0, 8080);
    assert_eq!(c.vm[0].memory.unwrap().0, 1024);
    assert_eq!(c.vm[1].memory_mb, Some(4096));
    assert_eq!(c.restart[0].policy, RestartPolicy::Never);
    assert_eq!(c.metrics[0].port.0, 9091);
    assert_eq!(c.experimental.unwrap().auto_rollback, Some(true));
}

#[test]
fn a_type_error_names_the_file_line_key_and_what_is_expected() {
    let p = problems("app = \"hello\"\n\n[http_service]\n  internal_port = \"eighty\"\n");
    assert_eq!(p.len(), 1);
    let text = p[0].to_string();
    assert_eq!((p[0].line, p[0].column), (4, 19), "{text}");
    assert!(
        text.starts_with("fly.toml:4:19: `http_service.internal_port`: "),
        "{text}"
    );
    assert!(text.contains("expected a port number"), "{text}");

    let p = problems("[deploy]\nstrategy = \"fast\"\n");
    let text = p[0].to_string();
    assert!(text.contains("fly.toml:2:"), "{text}");
    assert!(text.contains("`deploy.strategy`"), "{text}");
    assert!(
        text.contains("`rolling`, `immediate`, `canary`, `bluegreen`"),
        "the allowed values: {text}"
    );

    let p = problems("[[vm]]\nmemory = \"lots\"\n");
    assert!(
        p[0].to_string().contains("\"512mb\" or \"1gb\""),
        "{}",
        p[0]
    );
    let p = problems("[[services]]\nprotocol = \"tcp\"\n");
    assert!(
        p[0].to_string().contains("missing field `internal_port`"),
        "{}",
        p[0]
    );
}

#[test]
fn broken_toml_is_an_error_at_its_line() {
    let p = problems("app = \"hello\"\n[env\nA = 1\n");
    assert_eq!(p[0].line, 2, "{}", p[0]);
}

#[test]
fn unknown_sections_and_keys_are_warnings_with_their_lines() {
    let l =
        ok("app = \"hello\"\n\n[http_service]\n  internal_prot = 8080\n\n[frobnicate]\n  x = 1\n");
    let w: Vec<String> = l.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].starts_with("fly.toml:4:3: `http_service.internal_prot`: unknown key"),
        "{w:?}"
    );
    assert!(
        w[1].starts_with("fly.toml:6:2: `frobnicate`: unknown key"),
        "{w:?}"
    );
    // The default internal port stands.
    assert_eq!(l.config.http_service.unwrap().internal_port.0, 8080);
}

#[test]
fn a_public_port_used_twice_is_a_clash() {
    let p = problems(
        "[http_service]\ninternal_port = 8080\n\n[[services]]\ninternal_port = 9000\n[[services.ports]]\nport = 443\nhandlers = [\"tls\"]\n",
    );
    let text = p[0].to_string();
    assert!(text.contains("fly.toml:6:"), "{text}");
    assert!(text.contains("`services[0].ports[0]`"), "{text}");
    assert!(
        text.contains("public port 443 is used by [http_service] already"),
        "{text}"
    );
}

#[test]
fn a_check_on_a_port_no_service_uses_is_refused() {
    let p = problems(
        "[http_service]\ninternal_port = 8080\n\n[checks.db]\ntype = \"tcp\"\nport = 5432\n",
    );
    let text = p[0].to_string();
    assert!(text.starts_with("fly.toml:6:1: `checks.db.port`: no service has internal_port 5432 (services listen on 8080)"), "{text}");
}

#[test]
fn every_cross_key_problem_is_reported_at_once() {
    let p = problems(
        r#"
[env]
FLY_REGION = "ord"

[processes]
web = "bin/web"

[http_service]
processes = ["api"]

[[mounts]]
source = "data"
destination = "/data"

[deploy]
strategy = "canary"

[[vm]]
size = "huge"
"#,
    );
    let all = p
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(p.len(), 4, "{all}");
    assert!(
        all.contains("`env.FLY_REGION`: names starting with FLY_"),
        "{all}"
    );
    assert!(
        all.contains("`http_service.processes`: no process group `api`: the groups are web"),
        "{all}"
    );
    assert!(
        all.contains("`deploy.strategy`: canary needs new machines"),
        "{all}"
    );
    assert!(
        all.contains("`vm[0].size`: unknown size `huge`: use one of shared-cpu-1x"),
        "{all}"
    );
}

#[test]
fn bluegreen_needs_a_check() {
    let p = problems("[http_service]\n[deploy]\nstrategy = \"bluegreen\"\n");
    assert!(
        p[0].message.contains("bluegreen needs a health check"),
        "{}",
        p[0]
    );
}

#[test]
fn mounts_may_be_one_table_or_many() {
    let one = ok("[mounts]\nsource = \"data\"\ndestination = \"/data\"\ninitial_size = \"10gb\"\n");
    assert_eq!(one.config.mounts.len(), 1);
    assert_eq!(one.config.mounts[0].initial_size.unwrap().0, 10);
    let two = ok(
        "[processes]\nweb = \"web\"\ndb = \"db\"\n[[mounts]]\nsource = \"a\"\ndestination = \"/a\"\nprocesses = [\"web\"]\n[[mounts]]\nsource = \"b\"\ndestination = \"/b\"\nprocesses = [\"db\"]\n",
    );
    assert_eq!(two.config.mounts.len(), 2);
    // A machine mounts one volume, at an absolute path.
    let p = problems(
        "[[mounts]]\nsource = \"a\"\ndestination = \"/a\"\n[[mounts]]\nsource = \"b\"\ndestination = \"data\"\n",
    );
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p.iter()
            .any(|p| p.message.contains("already mounts a volume")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|p| p.message.contains("absolute path")),
        "{p:?}"
    );

    // A machine's mount names the volume by name and size; a deploy picks the volume itself.
    let dir = tempfile::tempdir().unwrap();
    let m = one
        .config
        .machine_config("app", "hello:v1", dir.path())
        .unwrap();
    assert_eq!(m.mounts.len(), 1);
    assert_eq!(m.mounts[0].volume, "");
    assert_eq!(m.mounts[0].path, "/data");
    assert_eq!(m.mounts[0].name.as_deref(), Some("data"));
    assert_eq!(m.mounts[0].size_gb, Some(10));
}

#[test]
fn the_file_is_fly_toml_then_aloft_toml_or_the_one_given() {
    let dir = tempfile::tempdir().unwrap();
    let err = find(None, dir.path()).unwrap_err().to_string();
    assert!(err.contains("no fly.toml or aloft.toml in"), "{err}");
    assert!(err.contains("-c PATH"), "{err}");
    std::fs::write(dir.path().join("aloft.toml"), "").unwrap();
    assert_eq!(
        find(None, dir.path()).unwrap(),
        dir.path().join("aloft.toml")
    );
    std::fs::write(dir.path().join("fly.toml"), "").unwrap();
    assert_eq!(find(None, dir.path()).unwrap(), dir.path().join("fly.toml"));
    let other = dir.path().join("staging.toml");
    assert_eq!(find(Some(&other), Path::new("/")).unwrap(), other);
    assert_eq!(
        find(Some(dir.path()), Path::new("/")).unwrap(),
        dir.path().join("fly.toml")
    );
}

#[test]
fn each_process_group_gets_the_machine_config_its_sections_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.conf"), "level = 2\n").unwrap();
    let c = ok(FULL).config;
    assert_eq!(c.groups(), ["web", "worker"]);

    let web = c.machine_config("web", "hello:v2", dir.path()).unwrap();
    web.validate().unwrap();
    assert_eq!(web.image, "hello:v2");
    assert_eq!(web.metadata["fly_process_group"], "web");
    assert_eq!(web.env["PRIMARY_REGION"], "ord");
    assert_eq!(web.env["PORT"], "8080");
    assert_eq!(
        web.init.as_ref().unwrap().cmd,
        ["bin/server", "--port", "8080"]
    );
    assert_eq!((web.guest.cpus, web.guest.memory_mb), (2, 1024));
    let json = serde_json::to_value(&web).unwrap();
    let http = &json["services"][0];
    assert_eq!(http["internal_port"], 8080);
    assert_eq!(http["autostop"], "suspend");
    assert_eq!(http["ports"][0]["port"], 80);
    assert_eq!(http["ports"][0]["force_https"], true);
    assert_eq!(
        http["ports"][1]["handlers"],
        serde_json::json!(["tls", "http"])
    );
    assert_eq!(http["checks"][0]["path"], "/healthz");
    assert_eq!(http["concurrency"]["type"], "requests");
    assert_eq!(json["services"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json["checks"]["alive"]["port"], 8080);
    assert_eq!(json["stop_config"]["signal"], "SIGTERM");
    assert_eq!(json["stop_config"]["timeout"], "10s");
    // local_path is read next to the config and sent as base64.
    assert_eq!(json["files"][0]["raw_value"], "bGV2ZWwgPSAyCg==");

    let worker = c.machine_config("worker", "hello:v2", dir.path()).unwrap();
    worker.validate().unwrap();
    let json = serde_json::to_value(&worker).unwrap();
    assert_eq!(
        json["init"]["cmd"],
        serde_json::json!(["bin/worker", "--queue", "default jobs"])
    );
    assert_eq!(json["services"][0]["internal_port"], 5432);
    assert_eq!(json["services"][0]["ports"][1]["start_port"], 6000);
    assert_eq!(json["services"][0]["checks"][0]["type"], "tcp");
    assert_eq!(json["guest"]["cpu_kind"], "performance");
    assert_eq!(json["guest"]["memory_mb"], 4096);
    assert_eq!(json["restart"]["policy"], "no");

    // An app without [processes] is one group, `app`, with the reference's stop defaults.
    let plain = ok("app = \"hello\"\n[http_service]\n").config;
    assert_eq!(plain.groups(), ["app"]);
    let m = plain.machine_config("app", "hello:v1", dir.path()).unwrap();
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["stop_config"]["signal"], "SIGINT");
    assert_eq!(json["stop_config"]["timeout"], "5s");
    assert_eq!(json["guest"]["memory_mb"], 256);
    assert!(json.get("init").is_none(), "{json}");
}
