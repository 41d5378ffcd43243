//! schemathesis (PyPI) against `aloft dev up` (sim machines): every operation of
//! `/v1/openapi.json`, with every check (`--checks all`, set in the config), a throwaway app and
//! machine as test data, and
//! bounded examples (`compat/schemathesis/schemathesis.toml`); it must find nothing. It checks
//! that no request gets a 5xx, that every answer is one the document lists with the body it
//! describes, that schema-valid requests are accepted and invalid ones refused, and that 405s
//! carry `Allow`.
//!
//! `scripts/setup.sh` installs schemathesis into a virtualenv in the cache; without it this
//! prints SKIPPED and returns.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// schemathesis's `st`: `$ALOFT_SCHEMATHESIS`, else where `scripts/setup.sh` installs it.
fn st() -> Option<PathBuf> {
    let path = match std::env::var_os("ALOFT_SCHEMATHESIS") {
        Some(p) => PathBuf::from(p),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
            cache.join("aloft/schemathesis/bin/st")
        }
    };
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "\n*** SKIPPED: schemathesis is not installed at {} (scripts/setup.sh installs it) ***\n",
            path.display()
        );
        None
    }
}

#[test]
fn schemathesis_finds_nothing_in_the_machines_api() {
    let Some(st) = st() else {
        return;
    };
    let (tmp, data) = temp_data_dir();
    let dev = DevUp::start_no_pull(&data, "schemathesis");
    let token = std::fs::read_to_string(data.join("token")).unwrap();
    dev.aloft(&["apps", "create", "st-app"]).ok();
    let machine = run_machine(&dev, &["hello:v1", "-a", "st-app"]);
    let config =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../compat/schemathesis/schemathesis.toml");
    // schemathesis keeps a cache (`.schemathesis/`) in its working directory: the test's own, so
    // nothing is written into the repository and every run starts from the config alone.
    let run = Command::new(&st)
        .current_dir(tmp.path())
        .arg("--config-file")
        .arg(&config)
        .args(["run", "--no-color"])
        .arg(format!("{}/v1/openapi.json", dev.api_url))
        .env("ST_TOKEN", token.trim())
        .env("ST_APP", "st-app")
        .env("ST_MACHINE", &machine)
        .output()
        .expect("running schemathesis");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
}
