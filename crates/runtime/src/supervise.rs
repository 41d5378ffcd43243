//! The host side of `aloft-init shim`: every real machine's runtime process (runsc, qemu) runs
//! under a detached shim that outlives the agent, timestamps its output into `log.jsonl` and
//! records how it ended in `status.json`. A machine's files live in one directory; this module
//! reads and waits on them.

use aloft_types::api::LogLine;
use serde::Deserialize;
use std::ffi::OsString;
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often [`wait`] looks for the status file.
const POLL: Duration = Duration::from_millis(20);

/// How the supervised process ended (the shim's `status.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct ProcessExit {
    /// The exit code, or 128 + signal.
    pub exit_code: i32,
    pub signal: Option<i32>,
}

/// Forgets the previous run of the machine in `dir` (its status and pids; logs are kept).
pub fn clear(dir: &Path) -> io::Result<()> {
    for f in ["status.json", "shim.pid", "child.pid"] {
        match fs::remove_file(dir.join(f)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Starts `cmd` under a detached shim for the machine in `dir`, inside the network namespace
/// `netns` if given; returns the pid of `cmd` once it runs.
pub async fn spawn(
    init_binary: &Path,
    dir: &Path,
    netns: Option<&Path>,
    cmd: &[OsString],
) -> io::Result<u32> {
    fs::create_dir_all(dir)?;
    clear(dir)?;
    let mut shim = tokio::process::Command::new(init_binary);
    shim.arg("shim").arg("--dir").arg(dir);
    if let Some(ns) = netns {
        shim.arg("--netns").arg(ns);
    }
    let out = shim
        .arg("--")
        .args(cmd)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| {
            io::Error::other(format!(
                "cannot run the shim {}: {e}",
                init_binary.display()
            ))
        })?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "the shim failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    child_pid(dir).ok_or_else(|| io::Error::other("the shim started but wrote no child.pid"))
}

fn read_pid(path: PathBuf) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The pid of the supervised process, while the shim has one.
pub fn child_pid(dir: &Path) -> Option<u32> {
    read_pid(dir.join("child.pid"))
}

/// Whether the shim of the machine in `dir` is alive (checked by its command line naming `dir`,
/// so a recycled pid is not mistaken for it).
pub fn is_running(dir: &Path) -> bool {
    if dir.join("status.json").exists() {
        return false;
    }
    let Some(pid) = read_pid(dir.join("shim.pid")) else {
        return false;
    };
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let needle = dir.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|arg| arg == needle)
}

/// How the last run ended, if it has.
pub fn exit(dir: &Path) -> Option<ProcessExit> {
    serde_json::from_slice(&fs::read(dir.join("status.json")).ok()?).ok()
}

/// Waits until the supervised process ends. A shim that died without writing its status (killed,
/// or the host rebooted) counts as a SIGKILL.
pub async fn wait(dir: &Path) -> ProcessExit {
    loop {
        if let Some(e) = exit(dir) {
            return e;
        }
        if !is_running(dir) {
            // The status may have been written between the two checks.
            return exit(dir).unwrap_or(ProcessExit {
                exit_code: 137,
                signal: Some(9),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The last `max` log lines of the machine in `dir`, oldest first.
pub fn read_logs(dir: &Path, max: usize) -> Vec<LogLine> {
    let mut lines = Vec::new();
    for f in ["log.jsonl.1", "log.jsonl"] {
        let Ok(file) = fs::File::open(dir.join(f)) else {
            continue;
        };
        for line in BufReader::new(file).lines().map_while(Result::ok) {
            if let Ok(l) = serde_json::from_str::<LogLine>(&line) {
                lines.push(l);
            }
        }
    }
    let skip = lines.len().saturating_sub(max);
    lines.split_off(skip)
}
