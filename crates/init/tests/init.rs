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
        dns_searches: vec![],
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

fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with(['Z', 'X']))
        })
        .is_some_and(|zombie| !zombie)
}

#[test]
fn what_the_process_leaves_running_is_stopped_when_it_exits() {
    let dir = tempfile::tempdir().unwrap();
    // Two processes outlive the main one: one ends on SIGTERM, one ignores it.
    let cfg = config(
        dir.path(),
        "sleep 30 & echo $! > polite.pid; \
         sh -c 'trap \"\" TERM; echo $$ > stubborn.pid; while true; do sleep 0.05; done' & \
         while [ ! -s stubborn.pid ]; do sleep 0.01; done; \
         exit 4",
    );
    let started = Instant::now();
    let out = init(dir.path(), &cfg).output().unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(report(dir.path()).exit_code, 4);
    // The one ignoring SIGTERM had its grace period, then SIGKILL.
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    for f in ["polite.pid", "stubborn.pid"] {
        let pid: u32 = fs::read_to_string(dir.path().join(f))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(!alive(pid), "{f} ({pid}) still runs");
    }
}

#[test]
fn the_process_runs_as_the_configured_user_without_roots_groups() {
    let euid = fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")
                .map(|r| r.split_whitespace().nth(1).map(str::to_string))
        })
        .flatten();
    let has_nobody = fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("nobody:x:65534:65534:"));
    if euid.as_deref() != Some("0") || !has_nobody {
        eprintln!("\n*** SKIPPED: needs root and a `nobody` (65534) user ***\n");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "echo $(id -u) $(id -g) $(id -G) $HOME");
    cfg.files.clear();
    cfg.process.working_dir = "/".into();
    cfg.process.user = "nobody".into();
    let out = init(dir.path(), &cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let home = fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("nobody:"))
        .and_then(|l| l.split(':').nth(5).map(str::to_string))
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("65534 65534 65534 {home}")
    );

    cfg.process.user = "1234:4321".into();
    cfg.process.argv = vec!["sh".into(), "-c".into(), "echo $(id -u) $(id -g)".into()];
    let out = init(dir.path(), &cfg).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1234 4321");
}

#[test]
fn an_unknown_user_is_reported_with_code_126() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "true");
    cfg.process.user = "no-such-user-here".into();
    let out = init(dir.path(), &cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(126));
    let r = report(dir.path());
    assert!(r.error.unwrap().contains("no-such-user-here"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-user-here"));
}

#[test]
fn ps_lists_processes_as_json() {
    let out = Command::new(BIN).arg("ps").output().unwrap();
    assert!(out.status.success());
    let list: Vec<aloft_types::api::ProcessStat> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(list.iter().any(|p| p.command.contains("aloft-init")));
}
