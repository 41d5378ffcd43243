//! A machine's resource limits as a cgroup the agent owns (`aloft/<id>`), with the sandbox's
//! own cgroup (made by runsc) below it. Limits sit on the parent so that its counters, OOM kills
//! above all, survive the sandbox's cgroup being removed when the sandbox dies.
//!
//! cgroup v1 (these hosts) and v2 (most modern hosts) are both handled.
//!
//! CPU policy: a machine may use up to `cpus` cores (CFS quota). `shared` CPUs get a low weight
//! (a share of contended time, as the reference's shared CPUs do); `performance` CPUs a full one.
//! Dedicated cpusets for `performance` are not assigned yet.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";
const PERIOD_US: u64 = 100_000;

/// Which cgroup hierarchy the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn detect() -> Version {
        if Path::new(ROOT).join("cgroup.controllers").exists() {
            Version::V2
        } else {
            Version::V1
        }
    }
}

/// The limits of one machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    pub cpus: u32,
    pub performance: bool,
}

/// The cgroup `aloft/<id>` of one machine.
#[derive(Debug, Clone)]
pub struct MachineCgroup {
    version: Version,
    id: String,
}

fn write(path: PathBuf, value: &str) -> io::Result<()> {
    fs::write(&path, value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {value} to {}: {e}", path.display()),
        )
    })
}

impl MachineCgroup {
    pub fn new(id: &str) -> Self {
        Self {
            version: Version::detect(),
            id: id.to_string(),
        }
    }

    /// The cgroup path to give runsc (`linux.cgroupsPath`): a child of the machine's cgroup.
    pub fn sandbox_path(&self) -> String {
        format!("/aloft/{}/sandbox", self.id)
    }

    fn dir(&self, controller: &str) -> PathBuf {
        match self.version {
            Version::V1 => Path::new(ROOT)
                .join(controller)
                .join("aloft")
                .join(&self.id),
            Version::V2 => Path::new(ROOT).join("aloft").join(&self.id),
        }
    }

    /// Creates the cgroup with `limits` (replacing any earlier values).
    pub fn create(&self, limits: Limits) -> io::Result<()> {
        let quota = u64::from(limits.cpus.max(1)) * PERIOD_US;
        let weight_v1 = if limits.performance { 1024 } else { 256 } * u64::from(limits.cpus.max(1));
        match self.version {
            Version::V1 => {
                let mem = self.dir("memory");
                fs::create_dir_all(&mem)?;
                write(
                    mem.join("memory.limit_in_bytes"),
                    &limits.memory_bytes.to_string(),
                )?;
                // Swap would hide an OOM behind slowness; where memsw exists, cap it too.
                let memsw = mem.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    let _ = write(memsw, &limits.memory_bytes.to_string());
                }
                let cpu = self.dir("cpu");
                fs::create_dir_all(&cpu)?;
                write(cpu.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                write(cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
                write(cpu.join("cpu.shares"), &weight_v1.to_string())?;
                let acct = self.dir("cpuacct");
                fs::create_dir_all(&acct)?;
            }
            Version::V2 => {
                let root = Path::new(ROOT);
                let parent = root.join("aloft");
                fs::create_dir_all(&parent)?;
                let _ = write(root.join("cgroup.subtree_control"), "+memory +cpu");
                write(parent.join("cgroup.subtree_control"), "+memory +cpu")?;
                let dir = self.dir("");
                fs::create_dir_all(&dir)?;
                write(dir.join("cgroup.subtree_control"), "+memory +cpu")?;
                write(dir.join("memory.max"), &limits.memory_bytes.to_string())?;
                let _ = write(dir.join("memory.swap.max"), "0");
                write(dir.join("cpu.max"), &format!("{quota} {PERIOD_US}"))?;
                let weight =
                    if limits.performance { 100 } else { 25 } * u64::from(limits.cpus.max(1));
                write(dir.join("cpu.weight"), &weight.min(10_000).to_string())?;
            }
        }
        Ok(())
    }

    /// A counter that grows when the machine runs out of memory. v2: OOM kills in the subtree
    /// (`memory.events`, hierarchical). v1 counts OOM kills only in the sandbox's own cgroup,
    /// which runsc removes with the sandbox, so this is 1 when the machine's peak usage (reset
    /// by [`MachineCgroup::create`]) reached its limit, else 0: a SIGKILL after that is the OOM
    /// killer's.
    pub fn oom_counter(&self) -> u64 {
        let read = |f: &str| -> Option<u64> {
            fs::read_to_string(self.dir("memory").join(f))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        match self.version {
            Version::V1 => match (
                read("memory.max_usage_in_bytes"),
                read("memory.limit_in_bytes"),
            ) {
                (Some(peak), Some(limit)) => u64::from(peak + (1 << 20) >= limit),
                _ => 0,
            },
            Version::V2 => fs::read_to_string(self.dir("").join("memory.events"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("oom_kill "))
                        .and_then(|n| n.trim().parse().ok())
                })
                .unwrap_or(0),
        }
    }

    /// Memory in use now (bytes) and CPU time used so far (ms).
    pub fn usage(&self) -> (u64, u64) {
        let read = |p: PathBuf| -> Option<u64> { fs::read_to_string(p).ok()?.trim().parse().ok() };
        match self.version {
            Version::V1 => (
                read(self.dir("memory").join("memory.usage_in_bytes")).unwrap_or(0),
                read(self.dir("cpuacct").join("cpuacct.usage")).unwrap_or(0) / 1_000_000,
            ),
            Version::V2 => {
                let cpu_us = fs::read_to_string(self.dir("").join("cpu.stat"))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("usage_usec "))
                            .and_then(|n| n.trim().parse::<u64>().ok())
                    })
                    .unwrap_or(0);
                (
                    read(self.dir("").join("memory.current")).unwrap_or(0),
                    cpu_us / 1000,
                )
            }
        }
    }

    /// Removes the cgroup (and a sandbox cgroup runsc left behind). Only empty cgroups can go;
    /// errors are ignored, as a later destroy tries again.
    pub fn remove(&self) {
        let controllers: &[&str] = match self.version {
            Version::V1 => &["memory", "cpu", "cpuacct"],
            Version::V2 => &[""],
        };
        for c in controllers {
            let dir = self.dir(c);
            if let Ok(entries) = fs::read_dir(&dir) {
                for e in entries.flatten() {
                    if e.path().is_dir() {
                        let _ = fs::remove_dir(e.path());
                    }
                }
            }
            let _ = fs::remove_dir(&dir);
        }
    }
}
