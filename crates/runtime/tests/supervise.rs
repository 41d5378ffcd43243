//! The host side of the shim contract (`aloft_runtime::supervise`) against the real
//! `aloft-init shim`: logs and exit status of a finished process, a machine that outlives the
//! "agent" that started it, a shim that died without a status, pid reuse.

use aloft_runtime::{find_init_binary, supervise};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The static aloft-init, or why this test cannot run.
fn shim_binary() -> Option<PathBuf> {
    match find_init_binary() {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("\n*** SKIPPED: {e} ***\n");
            None
        }
    }
}

fn sh(script: &str) -> Vec<OsString> {
    ["/bin/sh", "-c", script].map(OsString::from).to_vec()
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry: only a live process counts.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().chars().next())
        })
        .flatten()
        .is_some_and(|state| state != 'Z' && state != 'X')
}

fn kill(pid: u32, sig: rustix::process::Signal) {
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).expect("pid"),
        sig,
    );
}

async fn wait(dir: &Path) -> supervise::ProcessExit {
    tokio::time::timeout(Duration::from_secs(20), supervise::wait(dir))
        .await
        .expect("the process did not end within 20 s")
}

#[tokio::test]
async fn logs_have_both_streams_and_the_status_has_the_exit_code() {
    let Some(init) = shim_binary() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m1");
    let pid = supervise::spawn(
        &init,
        &dir,
        None,
        &sh("echo hi; echo err >&2; sleep 0.2; exit 3"),
    )
    .await
    .unwrap();
    assert!(pid > 0);
    assert_eq!(supervise::child_pid(&dir), Some(pid));
    let exit = wait(&dir).await;
    assert_eq!(
        exit,
        supervise::ProcessExit {
            exit_code: 3,
            signal: None
        }
    );
    assert!(!supervise::is_running(&dir));
    assert_eq!(supervise::exit(&dir), Some(exit));

    let logs = supervise::LogRings::new(100).read(&dir);
    let find = |msg: &str| logs.iter().find(|l| l.message == msg);
    let hi = find("hi").expect("stdout line logged");
    assert_eq!(hi.stream, "stdout");
    let err = find("err").expect("stderr line logged");
    assert_eq!(err.stream, "stderr");
    let now = aloft_types::time::now_ms();
    assert!(hi.timestamp > now - 60_000 && hi.timestamp <= now);

    // A new run forgets the old status but keeps the logs.
    supervise::clear(&dir).unwrap();
    assert_eq!(supervise::exit(&dir), None);
    assert_eq!(supervise::child_pid(&dir), None);
    assert_eq!(supervise::LogRings::new(100).read(&dir).len(), logs.len());
}

#[tokio::test]
async fn read_logs_returns_the_last_lines_oldest_first() {
    let Some(init) = shim_binary() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m1");
    supervise::spawn(
        &init,
        &dir,
        None,
        &sh("for i in 1 2 3 4 5 6 7; do echo line$i; done"),
    )
    .await
    .unwrap();
    assert_eq!(wait(&dir).await.exit_code, 0);
    let tail: Vec<String> = supervise::LogRings::new(3)
        .read(&dir)
        .into_iter()
        .map(|l| l.message)
        .collect();
    assert_eq!(tail, ["line5", "line6", "line7"]);
}

#[tokio::test]
async fn the_machine_outlives_its_starter_and_a_killed_child_is_reported() {
    let Some(init) = shim_binary() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m1");
    // The "agent": starts the machine, then drops every handle it had (there are none to keep:
    // the shim is detached, in a session and process group of its own).
    let pid = supervise::spawn(&init, &dir, None, &["/bin/sleep", "30"].map(OsString::from))
        .await
        .unwrap();
    let shim: u32 = fs::read_to_string(dir.join("shim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let me = rustix::process::getpid();
    let shim_pid = rustix::process::Pid::from_raw(shim as i32).unwrap();
    assert_ne!(
        rustix::process::getpgid(Some(shim_pid)).unwrap(),
        rustix::process::getpgid(Some(me)).unwrap(),
        "the shim must not be in the starter's process group"
    );

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(supervise::is_running(&dir));
    assert!(alive(pid));
    assert_eq!(supervise::exit(&dir), None);

    // The agent's Ctrl-C or a SIGTERM to the shim does not end the machine.
    kill(shim, rustix::process::Signal::TERM);
    kill(shim, rustix::process::Signal::HUP);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(supervise::is_running(&dir), "the shim survives TERM/HUP");

    kill(pid, rustix::process::Signal::KILL);
    let exit = wait(&dir).await;
    assert_eq!(
        exit,
        supervise::ProcessExit {
            exit_code: 137,
            signal: Some(9)
        }
    );
    assert!(!supervise::is_running(&dir));
    // The shim exits once it has written the status.
    for _ in 0..100 {
        if !alive(shim) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive(shim), "the shim exits after its process");
}

#[tokio::test]
async fn a_shim_killed_without_a_status_counts_as_a_sigkill() {
    let Some(init) = shim_binary() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m1");
    let pid = supervise::spawn(&init, &dir, None, &["/bin/sleep", "30"].map(OsString::from))
        .await
        .unwrap();
    let shim: u32 = fs::read_to_string(dir.join("shim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    kill(shim, rustix::process::Signal::KILL);
    let exit = wait(&dir).await;
    assert_eq!(exit.signal, Some(9));
    assert_eq!(exit.exit_code, 137);
    kill(pid, rustix::process::Signal::KILL);
}

#[test]
fn a_recycled_pid_is_not_taken_for_the_shim() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m1");
    fs::create_dir_all(&dir).unwrap();
    // This test process is alive, but its command line does not name the machine's dir.
    fs::write(dir.join("shim.pid"), std::process::id().to_string()).unwrap();
    assert!(!supervise::is_running(&dir));
    fs::write(dir.join("shim.pid"), "not a pid").unwrap();
    assert!(!supervise::is_running(&dir));
    assert!(!supervise::is_running(&tmp.path().join("never-started")));
}

#[tokio::test]
async fn a_command_that_cannot_run_fails_the_spawn_with_its_reason() {
    let Some(init) = shim_binary() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m1");
    let err = supervise::spawn(&init, &dir, None, &["/no/such/qemu"].map(OsString::from))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("/no/such/qemu"), "{err}");
    assert!(!supervise::is_running(&dir));
}

#[tokio::test]
async fn the_process_runs_in_the_given_network_namespace() {
    let Some(init) = shim_binary() else { return };
    let root = fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        eprintln!("\n*** SKIPPED: network namespaces need root ***\n");
        return;
    }
    struct Netns(String);
    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }
    let ns = Netns(format!("aloft-sup-{}", std::process::id()));
    let added = std::process::Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status();
    if !added.is_ok_and(|s| s.success()) {
        eprintln!("\n*** SKIPPED: `ip netns add` failed (apt-get install iproute2) ***\n");
        return;
    }
    let path = PathBuf::from(format!("/var/run/netns/{}", ns.0));
    let inode = {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(&path).unwrap().ino()
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m1");
    supervise::spawn(
        &init,
        &dir,
        Some(&path),
        &["/bin/readlink", "/proc/self/ns/net"].map(OsString::from),
    )
    .await
    .unwrap();
    assert_eq!(wait(&dir).await.exit_code, 0);
    let logs = supervise::LogRings::new(10).read(&dir);
    assert_eq!(
        logs.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
        [format!("net:[{inode}]")]
    );

    // A namespace that does not exist fails the spawn, naming it.
    let err = supervise::spawn(
        &init,
        &tmp.path().join("m2"),
        Some(Path::new("/var/run/netns/aloft-no-such-ns")),
        &["/bin/true"].map(OsString::from),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("aloft-no-such-ns"), "{err}");
}
