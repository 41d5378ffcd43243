//! `aloft-init` as PID 1: set the machine up, run its process, forward signals to it, reap every
//! orphan, and report how the process ended.

use crate::process::{self, Unrunnable};
use crate::setup;
use aloft_types::init::{ExitReport, InitConfig};
use rustix::process::{Pid, Signal, WaitOptions};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Where init finds its config and reports, and how much of the system it sets up.
pub struct Options {
    pub config: PathBuf,
    pub exit_file: PathBuf,
    /// Mounts, hostname, /etc/hosts, resolv.conf (off in tests run as a normal process).
    pub system_setup: bool,
}

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
    let mut reaped = REAPED.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(st) = reaped.remove(&pid) {
            return Some(st);
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        reaped = REAPED_CHANGED
            .wait_timeout(reaped, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// Reaps every child until `main` exits; returns its status. Other children's statuses go to
/// [`REAPED`] (bounded: orphans nobody waits for are forgotten).
fn reap_until(main: i32) -> Option<rustix::process::WaitStatus> {
    loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid.as_raw_nonzero().get() == main => return Some(status),
            Ok(Some((pid, status))) => {
                let mut reaped = REAPED.lock().unwrap_or_else(|e| e.into_inner());
                if reaped.len() > 1024 {
                    reaped.pop_first();
                }
                reaped.insert(pid.as_raw_nonzero().get(), code_and_signal(status));
                REAPED_CHANGED.notify_all();
            }
            Ok(None) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return None,
        }
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

/// Writes the report where the host reads it (temp file + rename: never half a report).
pub fn write_report(path: &Path, report: &ExitReport) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, serde_json::to_vec(report).expect("serializable"))?;
    fs::rename(&tmp, path)
}

/// The main process's pid while it runs (for the VM's control service).
pub fn main_pid() -> Option<u32> {
    let p = MAIN_PID.load(Ordering::SeqCst);
    (p > 0).then_some(p as u32)
}
