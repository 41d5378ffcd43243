//! aloft-init as a normal process (`init --no-system-setup` makes itself a child subreaper instead
//! of being PID 1), its `exec` mode, and the shim.

use aloft_types::init::{ExitReport, InitConfig, InitFile, InitProcess};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_aloft-init");

fn config(dir: &Path, script: &str) -> InitConfig {
    InitConfig {
        machine_id: "m1".into(),
        app: "app".into(),
        region: "local".into(),
        hostname: "m1".into(),
        process: InitProcess {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: [("GREETING", "hi"), ("PATH", "/usr/bin:/bin")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            working_dir: dir.display().to_string(),
            user: String::new(),
        },
        files: vec![InitFile {
            path: dir.join("files/conf").display().to_string(),
            content_base64: "c2VjcmV0".into(),
            mode: Some(0o600),
        }],
        hosts: vec![],
        nameservers: vec![],
        network: None,
        vm: None,
    }
}

fn init(dir: &Path, cfg: &InitConfig) -> Command {
    let path = dir.join("config.json");
    fs::write(&path, serde_json::to_vec(cfg).unwrap()).unwrap();
    let mut c = Command::new(BIN);
    c.args(["init", "--no-system-setup", "--config"])
        .arg(&path)
        .arg("--exit-file")
        .arg(dir.join("exit.json"));
    c
}

fn report(dir: &Path) -> ExitReport {
    serde_json::from_slice(&fs::read(dir.join("exit.json")).unwrap()).unwrap()
}

#[test]
fn the_process_gets_its_environment_and_files_and_its_exit_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "echo $GREETING from $PWD; cat files/conf; exit 3",
    );
    let out = init(dir.path(), &cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout, format!("hi from {}\nsecret", dir.path().display()));
    assert_eq!(report(dir.path()).exit_code, 3);
    assert!(dir.path().join("started").exists());
}

#[test]
fn a_missing_entrypoint_is_reported_not_hung() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "");
    cfg.process.argv = vec!["/app/server".into()];
    let out = init(dir.path(), &cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(127));
    let r = report(dir.path());
    assert!(r.error.unwrap().contains("/app/server"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`/app/server` was not found"));
}

#[test]
fn sigterm_is_forwarded_and_orphans_are_reaped() {
    let dir = tempfile::tempdir().unwrap();
    // The process leaves an orphan behind, then waits for SIGTERM.
    let cfg = config(
        dir.path(),
        "(sleep 0.1 &); trap 'echo got TERM; exit 0' TERM; while true; do sleep 0.05; done",
    );
    let mut child = init(dir.path(), &cfg)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dir.path().join("started").exists() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let r = report(dir.path());
    assert_eq!((r.exit_code, r.signal), (0, None));
}

#[test]
fn exec_runs_with_the_main_process_environment() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "true");
    let path = dir.path().join("config.json");
    fs::write(&path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let out = Command::new(BIN)
        .args(["exec", "--config"])
        .arg(&path)
        .args(["--", "sh", "-c", "echo $GREETING; pwd"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("hi\n{}\n", dir.path().display())
    );
    let out = Command::new(BIN)
        .args(["exec", "--config"])
        .arg(&path)
        .args(["--", "no-such-tool"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
}

#[test]
fn the_shim_detaches_logs_every_line_and_records_the_exit() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("machine");
    let out = Command::new(BIN)
        .args(["shim", "--dir"])
        .arg(&m)
        .args([
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; sleep 0.3; exit 3",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let pid: u32 = fs::read_to_string(m.join("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid > 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !m.join("status.json").exists() {
        assert!(Instant::now() < deadline, "no status");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status: serde_json::Value =
        serde_json::from_slice(&fs::read(m.join("status.json")).unwrap()).unwrap();
    assert_eq!(status["exit_code"], 3);
    let log = fs::read_to_string(m.join("log.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "out" && l["stream"] == "stdout")
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "err" && l["stream"] == "stderr")
    );
    assert!(lines.iter().all(|l| l["timestamp"].as_i64().unwrap() > 0));
}
