//! `aloft-init` as PID 1: set the machine up, run its process, forward signals to it, reap every
//! orphan, and report how the process ended.

use crate::process::{self, Unrunnable};
use crate::setup;
use aloft_types::init::{ExitReport, InitConfig};
use parking_lot::{Condvar, Mutex};
use rustix::process::{Pid, Signal, WaitOptions};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// Where init finds its config and reports, and how much of the system it sets up.
pub struct Options {
    pub config: PathBuf,
    pub exit_file: PathBuf,
    /// Mounts, hostname, /etc/hosts, resolv.conf (off in tests run as a normal process).
    pub system_setup: bool,
}

/// How long processes left behind by the main process get between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// The pid of the main process, for the signal forwarder (0 until it runs).
static MAIN_PID: AtomicI32 = AtomicI32::new(0);

/// Signals init passes on to the main process.
const FORWARDED: [i32; 7] = [
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGHUP,
    signal_hook::consts::SIGQUIT,
    signal_hook::consts::SIGUSR1,
    signal_hook::consts::SIGUSR2,
    signal_hook::consts::SIGWINCH,
];

pub fn load_config(path: &Path) -> Result<InitConfig, String> {
    let text = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("{} is not valid: {e}", path.display()))
}

/// Runs the machine described by `cfg` to the end; returns init's exit code.
pub fn run(cfg: &InitConfig, opts: &Options, on_started: &dyn Fn(u32)) -> ExitReport {
    if std::process::id() != 1 {
        // Orphans of the process re-parent to us, as they would to PID 1.
        let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    }
    if opts.system_setup
        && let Err(e) = setup::system(cfg)
    {
        eprintln!("aloft-init: {e}");
    }
    if let Err(e) = setup::write_files(&cfg.files, Path::new("/")) {
        return failed(126, format!("writing config.files: {e}"));
    }
    let oom_before = oom_kills();
    let mut cmd = match process::command(&cfg.process, &cfg.process.argv, Path::new("/")) {
        Ok(c) => c,
        Err(Unrunnable { code, message }) => return failed(code, message),
    };
    let forwarder = start_forwarder();
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return failed(
                code,
                format!("cannot start `{}`: {e}", cfg.process.argv.join(" ")),
            );
        }
    };
    let main = child.id() as i32;
    MAIN_PID.store(main, Ordering::SeqCst);
    on_started(main as u32);
    let status = reap_until(main);
    MAIN_PID.store(0, Ordering::SeqCst);
    if let Some(h) = forwarder {
        h.close();
    }
    let mut report = match status {
        Some(s) => match (s.exit_status(), s.terminating_signal()) {
            (Some(code), _) => ExitReport {
                exit_code: code,
                ..Default::default()
            },
            (None, Some(sig)) => ExitReport {
                exit_code: 128 + sig,
                signal: Some(sig),
                ..Default::default()
            },
            _ => ExitReport {
                exit_code: -1,
                ..Default::default()
            },
        },
        None => failed(-1, "lost track of the main process".into()),
    };
    report.oom_killed = report.signal == Some(9) && oom_kills() > oom_before;
    report
}

/// A report for a process that could not start; the reason is also printed for the logs.
fn failed(code: i32, message: String) -> ExitReport {
    eprintln!("aloft-init: {message}");
    ExitReport {
        exit_code: code,
        signal: None,
        oom_killed: false,
        error: Some(message),
    }
}

/// How other children ended (exec'd commands): init reaps every child, so whoever started one
/// finds its status here ([`wait_child`]).
static REAPED: Mutex<BTreeMap<i32, (i32, i32)>> = Mutex::new(BTreeMap::new());
static REAPED_CHANGED: Condvar = Condvar::new();

/// (exit code, signal) of a reaped status.
fn code_and_signal(s: rustix::process::WaitStatus) -> (i32, i32) {
    match (s.exit_status(), s.terminating_signal()) {
        (Some(code), _) => (code, 0),
        (None, Some(sig)) => (128 + sig, sig),
        _ => (-1, 0),
    }
}

/// Waits until init has reaped child `pid`; (exit code, signal), or `None` after `timeout`.
pub fn wait_child(pid: i32, timeout: Duration) -> Option<(i32, i32)> {
    let deadline = Instant::now() + timeout;
    let mut reaped = REAPED.lock();
    loop {
        if let Some(st) = reaped.remove(&pid) {
            return Some(st);
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        REAPED_CHANGED.wait_for(&mut reaped, left);
    }
}

/// Reaps every child until `main` exits; returns its status. Other children's statuses go to
/// [`REAPED`].
fn reap_until(main: i32) -> Option<rustix::process::WaitStatus> {
    loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid.as_raw_nonzero().get() == main => return Some(status),
            Ok(Some((pid, status))) => record(pid.as_raw_nonzero().get(), status),
            Ok(None) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return None,
        }
    }
}

/// Records a reaped child for [`wait_child`] (bounded: orphans nobody waits for are forgotten).
fn record(pid: i32, status: rustix::process::WaitStatus) {
    let mut reaped = REAPED.lock();
    if reaped.len() > 1024 {
        reaped.pop_first();
    }
    reaped.insert(pid, code_and_signal(status));
    REAPED_CHANGED.notify_all();
}

/// Reaps every child that has exited, without waiting.
fn reap_exited() {
    while let Ok(Some((pid, status))) = rustix::process::wait(WaitOptions::NOHANG) {
        record(pid.as_raw_nonzero().get(), status);
    }
}

/// The live (not zombie) processes below `ancestor`, from `/proc`. As PID 1 that is every
/// process of the machine but kernel threads; as a subreaper, what the main process left.
fn descendants(ancestor: u32) -> Vec<u32> {
    let mut parent = BTreeMap::new();
    let mut live = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().unwrap_or("");
        let Some(ppid) = f.next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        parent.insert(pid, ppid);
        if state != "Z" && state != "X" {
            live.push(pid);
        }
    }
    live.retain(|&pid| {
        let mut p = pid;
        // Bounded walk: a pid reused mid-scan cannot make it loop.
        for _ in 0..64 {
            match parent.get(&p) {
                Some(&pp) if pp == ancestor => return true,
                Some(&pp) if pp > 1 && pp != p => p = pp,
                _ => return false,
            }
        }
        false
    });
    live
}

/// After the main process: SIGTERM to every process still running below init, up to `grace`
/// for them to exit, then SIGKILL; reaps them all. Returns how many were left.
pub fn stop_remaining(grace: Duration) -> usize {
    let me = std::process::id();
    reap_exited();
    let left = descendants(me);
    let count = left.len();
    let signal_all = |pids: &[u32], sig: Signal| {
        for &p in pids {
            if let Some(pid) = Pid::from_raw(p as i32) {
                let _ = rustix::process::kill_process(pid, sig);
            }
        }
    };
    signal_all(&left, Signal::TERM);
    let mut deadline = Instant::now() + grace;
    let mut killed = false;
    loop {
        reap_exited();
        let left = descendants(me);
        if left.is_empty() {
            return count;
        }
        if Instant::now() > deadline {
            if killed {
                eprintln!(
                    "aloft-init: {} processes did not end after SIGKILL",
                    left.len()
                );
                return count;
            }
            signal_all(&left, Signal::KILL);
            killed = true;
            deadline = Instant::now() + Duration::from_secs(2);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A thread passing [`FORWARDED`] signals to the main process.
fn start_forwarder() -> Option<signal_hook::iterator::Handle> {
    let mut signals = signal_hook::iterator::Signals::new(FORWARDED).ok()?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            let pid = MAIN_PID.load(Ordering::SeqCst);
            if let (Some(pid), Some(sig)) = (Pid::from_raw(pid), Signal::from_named_raw(sig)) {
                let _ = rustix::process::kill_process(pid, sig);
            }
        }
    });
    Some(handle)
}

/// The kernel's count of OOM kills (`/proc/vmstat`), to tell an OOM kill from another SIGKILL.
fn oom_kills() -> u64 {
    fs::read_to_string("/proc/vmstat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Writes the report where the host reads it (whole or not at all: never half a report).
pub fn write_report(path: &Path, report: &ExitReport) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let bytes = serde_json::to_vec(report).expect("serializable");
    aloft_durable::write(path, &bytes, 0o644)
}

/// The main process's pid while it runs (for the VM's control service).
pub fn main_pid() -> Option<u32> {
    let p = MAIN_PID.load(Ordering::SeqCst);
    (p > 0).then_some(p as u32)
}
