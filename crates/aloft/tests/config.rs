//! `aloft config validate|show` on fly.toml files in a directory, as a user runs them.

mod common;

use common::*;
use std::fs;

const GOOD: &str = "app = \"hello\"\nprimary_region = \"ord\"\n\n[http_service]\n  internal_port = 8080\n  force_https = true\n  auto_stop_machines = \"stop\"\n\n[mystery]\n  x = 1\n";
const BAD: &str = "app = \"hello\"\n\n[http_service]\n  internal_port = \"eighty\"\n";

#[test]
fn validate_finds_fly_toml_here_and_says_what_is_wrong_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let out = aloft_at(Some(dir.path()), &[], &["config", "validate"]);
    assert!(
        out.fails().contains("no fly.toml or aloft.toml in"),
        "{out}"
    );

    fs::write(dir.path().join("fly.toml"), GOOD).unwrap();
    let out = aloft_at(Some(dir.path()), &[], &["config", "validate"]);
    assert!(out.ok().contains("fly.toml is valid"), "{out}");
    assert!(
        out.stderr
            .contains("Warning: fly.toml:9:2: `mystery`: unknown key"),
        "{out}"
    );

    fs::write(dir.path().join("fly.toml"), BAD).unwrap();
    let out = aloft_at(Some(dir.path()), &[], &["config", "validate"]);
    let err = out.fails();
    assert!(
        err.contains("Error: fly.toml:4:19: `http_service.internal_port`: invalid type"),
        "{out}"
    );
    assert!(err.contains("fly.toml has 1 problem"), "{out}");
    let out = aloft_at(Some(dir.path()), &[], &["--json", "config", "validate"]);
    assert_eq!(out.code, Some(1), "{out}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["errors"][0]["line"], 4);
    assert_eq!(report["errors"][0]["key"], "http_service.internal_port");
}

#[test]
fn show_prints_the_config_as_read_with_the_app_overridden() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staging.toml");
    fs::write(&path, GOOD).unwrap();
    let out = aloft_with(
        &[],
        &[
            "config",
            "show",
            "-c",
            path.to_str().unwrap(),
            "-a",
            "hello-staging",
        ],
    );
    let config = out.json();
    assert_eq!(config["app"], "hello-staging");
    assert_eq!(config["http_service"]["internal_port"], 8080);
    assert_eq!(config["http_service"]["auto_stop_machines"], "stop");
    assert!(out.stderr.contains("`mystery`: unknown key"), "{out}");
}
