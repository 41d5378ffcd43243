//! Fly's own Go client against `aloft dev up`: `compat/flygo` drives the Machines API through
//! fly-go's `flaps` package exactly as flyctl does (apps and the app-name check; a machine's
//! launch, waits, lease, stop and its exit event, update, start, exec, metadata, cordon,
//! restart, ps, kill and destroy, a size preset; volumes; regions and placements; secrets;
//! certificates; IP assignments) and fails on any error flaps returns or any field it decodes
//! wrongly. No group is skipped.
//!
//! Needs Go (the module's dependencies come from the Go module proxy; `scripts/setup.sh`
//! downloads them); without it this prints SKIPPED and returns.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `compat/flygo` into the test's temp dir; `None` (SKIPPED) without Go.
fn build_flygo() -> Option<PathBuf> {
    if Command::new("go").arg("version").output().is_err() {
        eprintln!("\n*** SKIPPED: Go is not installed (the fly-go client is a Go program) ***\n");
        return None;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../compat/flygo");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("flygo");
    let built = Command::new("go")
        .arg("-C")
        .arg(&root)
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .output()
        .expect("running go build");
    assert!(
        built.status.success(),
        "go build of compat/flygo failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    Some(out)
}

#[test]
fn fly_gos_flaps_client_drives_aloft_as_flyctl_does() {
    let Some(flygo) = build_flygo() else {
        return;
    };
    let (_tmp, data) = temp_data_dir();
    let dev = DevUp::start_no_pull(&data, "flygo");
    let token = std::fs::read_to_string(data.join("token")).unwrap();
    // A token that may not see the app the run creates: a deploy token of another app (its
    // GET of that app is 403 `unauthorized`, as another org's would be).
    dev.aloft(&["apps", "create", "flygo-elsewhere"]).ok();
    let other = dev.aloft(&["tokens", "create", "deploy", "-a", "flygo-elsewhere"]);
    let run = Command::new(&flygo)
        .env("FLY_FLAPS_BASE_URL", &dev.api_url)
        .env("FLY_API_TOKEN", token.trim())
        .env("FLY_COMPAT_OTHER_TOKEN", other.ok().trim())
        .output()
        .expect("running compat/flygo");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    eprintln!("{stdout}");
    assert!(
        run.status.success(),
        "fly-go failed against aloft:\n{}\n{stderr}",
        stdout
            .lines()
            .filter(|l| l.starts_with("FAIL"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for step in [
        "ok   apps: CreateApp",
        "ok   apps: AppNameAvailable is true for a fresh name",
        "ok   apps: AppNameAvailable is false for an app the token cannot see (403 unauthorized)",
        "ok   machines: Launch",
        "ok   machines: Get response fields",
        "ok   machines: the exit event of a Stop (guest_exit_code, guest_signal, restarting)",
        "ok   machines: GetProcesses fields (ProcessStat)",
        "ok   machines: Launch with the performance-6x preset",
        "ok   machines: Wait with two states",
        "ok   machines: Destroy (?kill=true)",
        "ok   volumes: CreateVolume",
        "ok   volumes: UpdateVolume (PUT, snapshot_retention=7)",
        "ok   volumes: GetVolumeSnapshots response fields",
        "ok   secrets: UpdateAppSecrets set",
        "ok   secrets: SetAppSecret",
        "ok   secrets: DeleteAppSecret",
        "ok   certs: CreateCustomCertificate (POST /certificates/custom)",
        "ok   certs: CheckCertificate (POST /certificates/{host}/check)",
        "ok   ips: GetIPAssignments is empty",
        "ok   ips: AssignIP is refused saying why",
    ] {
        assert!(stdout.contains(step), "`{step}` did not run:\n{stdout}");
    }
}
