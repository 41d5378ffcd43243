//! The host side of `aloft-init shim`: every real machine's runtime process (runsc, qemu) runs
//! under a detached shim that outlives the agent, timestamps its output into `log.jsonl` and
//! records how it ended in `status.json`. A machine's files live in one directory; this module
//! reads and waits on them.

use aloft_types::api::LogLine;
use serde::Deserialize;
use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
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

/// Machines' recent log lines kept in memory: per machine a ring of the last `cap` lines, fed
/// by reading only what the shim appended to `log.jsonl` since the last call (the file survives
/// the agent; the ring is rebuilt from it after a restart).
pub struct LogRings {
    cap: usize,
    rings: parking_lot::Mutex<HashMap<PathBuf, Ring>>,
}

#[derive(Default)]
struct Ring {
    lines: VecDeque<LogLine>,
    /// The inode of the `log.jsonl` read so far and the offset after its last whole line.
    read: Option<(u64, u64)>,
}

impl LogRings {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            rings: Default::default(),
        }
    }

    /// The last lines of the machine in `dir`, oldest first.
    pub fn read(&self, dir: &Path) -> Vec<LogLine> {
        let mut rings = self.rings.lock();
        let ring = rings.entry(dir.to_path_buf()).or_default();
        ring.refresh(dir, self.cap);
        ring.lines.iter().cloned().collect()
    }

    /// Drops the ring of a destroyed machine.
    pub fn forget(&self, dir: &Path) {
        self.rings.lock().remove(dir);
    }
}

impl Ring {
    fn refresh(&mut self, dir: &Path, cap: usize) {
        let current = dir.join("log.jsonl");
        let Ok(meta) = fs::metadata(&current) else {
            return;
        };
        let ino = meta.ino();
        match self.read {
            Some((seen, _)) if seen == ino => {}
            Some((seen, offset)) => {
                // Rotated: the rest of the file read so far is now `log.jsonl.1`.
                let old = dir.join("log.jsonl.1");
                if fs::metadata(&old).is_ok_and(|m| m.ino() == seen) {
                    self.append(&old, offset, cap);
                }
                self.read = Some((ino, 0));
            }
            None => {
                // First read: the previous generation, then the current file.
                self.append(&dir.join("log.jsonl.1"), 0, cap);
                self.read = Some((ino, 0));
            }
        }
        let (_, offset) = self.read.expect("set above");
        if meta.len() < offset {
            // Truncated (a new machine in the same directory): start over.
            self.lines.clear();
            self.read = Some((ino, 0));
        }
        let (_, offset) = self.read.expect("set above");
        let end = self.append(&current, offset, cap);
        self.read = Some((ino, end));
    }

    /// Appends the whole lines of `path` from `offset`; returns the offset after the last one.
    fn append(&mut self, path: &Path, offset: u64, cap: usize) -> u64 {
        let Ok(mut file) = fs::File::open(path) else {
            return offset;
        };
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(offset)).is_err() || file.read_to_end(&mut bytes).is_err() {
            return offset;
        }
        // A line the shim is still writing is read next time.
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        for line in bytes[..whole].split(|b| *b == b'\n') {
            if let Ok(l) = serde_json::from_slice::<LogLine>(line) {
                if self.lines.len() == cap {
                    self.lines.pop_front();
                }
                self.lines.push_back(l);
            }
        }
        offset + whole as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, messages: &[&str], partial: &str) {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        for (i, m) in messages.iter().enumerate() {
            let line = LogLine {
                timestamp: i as i64,
                stream: "stdout".into(),
                message: m.to_string(),
            };
            writeln!(f, "{}", serde_json::to_string(&line).unwrap()).unwrap();
        }
        write!(f, "{partial}").unwrap();
    }

    fn messages(rings: &LogRings, dir: &Path) -> Vec<String> {
        rings.read(dir).into_iter().map(|l| l.message).collect()
    }

    #[test]
    fn the_ring_follows_the_file_across_partial_lines_and_rotation() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let log = dir.join("log.jsonl");
        let rings = LogRings::new(3);
        assert!(rings.read(dir).is_empty(), "no file yet");

        append(&log, &["a", "b"], r#"{"timestamp":9,"stream":"std"#);
        assert_eq!(
            messages(&rings, dir),
            ["a", "b"],
            "a half-written line waits"
        );
        append(&log, &[], "out\",\"message\":\"c\"}\n");
        append(&log, &["d"], "");
        assert_eq!(messages(&rings, dir), ["b", "c", "d"], "the last 3 lines");

        // The shim rotates: lines written to the old file before the rename are not lost.
        append(&log, &["e"], "");
        fs::rename(&log, dir.join("log.jsonl.1")).unwrap();
        append(&log, &["f"], "");
        assert_eq!(messages(&rings, dir), ["d", "e", "f"]);

        // A fresh reader (an agent restart) starts from both generations.
        let fresh = LogRings::new(10);
        assert_eq!(messages(&fresh, dir), ["a", "b", "c", "d", "e", "f"]);

        // The machine is destroyed and a new one writes to the same place.
        rings.forget(dir);
        fs::remove_file(dir.join("log.jsonl.1")).unwrap();
        fs::write(&log, "").unwrap();
        append(&log, &["g"], "");
        assert_eq!(messages(&rings, dir), ["g"]);
    }
}
