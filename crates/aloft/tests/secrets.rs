//! `aloft secrets` against `aloft dev up` (sim machines): values reach machines' environment at
//! start (a restart without `--stage`), never the API's machine config, and are stored encrypted;
//! bad names and unknown secrets are refused with what to do.

mod common;

use common::*;
use std::fs;
use std::path::Path;

/// The machine's environment, as its process sees it.
fn env_of(dev: &DevUp, id: &str) -> String {
    dev.aloft(&["machine", "exec", id, "-a", "hello", "--", "env"])
        .ok()
        .to_string()
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            found.push(path.display().to_string());
        }
    }
    found
}

#[test]
fn secrets_reach_machines_encrypted_and_never_shown() {
    let (_tmp, data) = temp_data_dir();
    let dev = DevUp::start_no_pull(&data, "secrets");
    dev.aloft(&["apps", "create", "hello"]).ok();
    let id = run_machine(&dev, &["hello:v1", "-a", "hello", "--env", "GREETING=hi"]);

    // Set: the machine restarts with them.
    let value = "postgres://u:very-secret-pw@db/x";
    let out = dev.aloft(&[
        "secrets",
        "set",
        &format!("DATABASE_URL={value}"),
        "API_KEY=k1",
        "-a",
        "hello",
    ]);
    let text = out.ok();
    assert!(
        text.contains("Set API_KEY, DATABASE_URL on hello."),
        "{out}"
    );
    assert!(text.contains(&format!("restarting machine {id}")), "{out}");
    let env = env_of(&dev, &id);
    assert!(env.contains(&format!("DATABASE_URL={value}")), "{env}");
    assert!(
        env.contains("API_KEY=k1") && env.contains("GREETING=hi"),
        "{env}"
    );
    let m = machine_json(&dev, "hello", &id);
    assert!(!m.to_string().contains("very-secret-pw"), "{m}");

    // Listed by name and digest only; stored sealed.
    let list = dev
        .aloft(&["--json", "secrets", "list", "-a", "hello"])
        .json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["API_KEY", "DATABASE_URL"]);
    assert_eq!(list[0]["digest"].as_str().unwrap().len(), 16);
    assert!(!list.to_string().contains("very-secret-pw"), "{list}");
    let table = dev
        .aloft(&["secrets", "list", "-a", "hello"])
        .ok()
        .to_string();
    assert!(
        table.contains("DATABASE_URL") && !table.contains("very-secret"),
        "{table}"
    );
    let leaks = files_containing(&data, b"very-secret-pw");
    assert!(leaks.is_empty(), "the value is in plain text in {leaks:?}");

    // Staged: nothing restarts until the machine does.
    let out = dev.aloft(&["secrets", "set", "LATER=1", "--stage", "-a", "hello"]);
    assert!(out.ok().contains("Staged"), "{out}");
    assert!(!env_of(&dev, &id).contains("LATER=1"));
    dev.aloft(&["machine", "restart", &id, "-a", "hello"]).ok();
    assert!(env_of(&dev, &id).contains("LATER=1"));

    // Unset: gone after the restart it causes.
    dev.aloft(&["secrets", "unset", "API_KEY", "-a", "hello"])
        .ok();
    assert!(!env_of(&dev, &id).contains("API_KEY="));

    // Mistakes: nothing changes, and the error says what to do.
    for (args, expected) in [
        (
            vec!["set", "BAD-NAME=x"],
            "is not an environment variable name",
        ),
        (vec!["set", "FLY_REGION=x"], "are the platform's"),
        (vec!["set", "NOEQUALS"], "is not NAME=VALUE"),
        (
            vec!["unset", "NOPE", "DATABASE_URL"],
            "has no secret named NOPE",
        ),
    ] {
        let mut all = vec!["secrets"];
        all.extend(args);
        all.extend(["-a", "hello"]);
        let out = dev.aloft(&all);
        assert!(out.fails().contains(expected), "{all:?}: {out}");
    }
    let list = dev
        .aloft(&["--json", "secrets", "list", "-a", "hello"])
        .json();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
}
