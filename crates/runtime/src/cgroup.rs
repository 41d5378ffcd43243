//! A machine's resource limits as a cgroup the agent owns (`aloft/<id>`), with the sandbox's
//! own cgroup (made by runsc) below it. Limits sit on the parent so that its counters, OOM kills
//! above all, survive the sandbox's cgroup being removed when the sandbox dies.
//!
//! cgroup v1 (these hosts) and v2 (most modern hosts) are both handled.
//!
//! CPU policy: a machine may use up to `cpus` cores (CFS quota). `shared` CPUs get a low weight
//! (a share of contended time, as the reference's shared CPUs do); `performance` CPUs a full one
//! and, where the host has cores to give, cores of their own ([`CpuAllocator`]): the host's
//! first CPU is kept for the host and shared machines, the others are handed out whole to
//! performance machines, and shared machines are pinned to what is not handed out.

use parking_lot::Mutex;
use std::collections::BTreeMap;
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    pub cpus: u32,
    pub performance: bool,
    /// The host CPUs it may run on ([`CpuAllocator::assign`]).
    pub cpuset: Vec<u32>,
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
    pub fn create(&self, limits: &Limits) -> io::Result<()> {
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
                // A v1 cpuset starts empty: the parent gets the root's CPUs and memory nodes.
                let cpusets = Path::new(ROOT).join("cpuset");
                let parent = cpusets.join("aloft");
                fs::create_dir_all(&parent)?;
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    if read_trimmed(&parent.join(f)).is_empty() {
                        write(parent.join(f), &read_trimmed(&cpusets.join(f)))?;
                    }
                }
                let own = self.dir("cpuset");
                fs::create_dir_all(&own)?;
                write(
                    own.join("cpuset.mems"),
                    &read_trimmed(&parent.join("cpuset.mems")),
                )?;
                self.set_cpus(&limits.cpuset)?;
            }
            Version::V2 => {
                let root = Path::new(ROOT);
                let parent = root.join("aloft");
                fs::create_dir_all(&parent)?;
                let _ = write(root.join("cgroup.subtree_control"), "+memory +cpu +cpuset");
                write(
                    parent.join("cgroup.subtree_control"),
                    "+memory +cpu +cpuset",
                )?;
                let dir = self.dir("");
                fs::create_dir_all(&dir)?;
                write(dir.join("cgroup.subtree_control"), "+memory +cpu +cpuset")?;
                self.set_cpus(&limits.cpuset)?;
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

    /// Pins the machine (and the sandbox's cgroups below it) to `cpus`. In v1 a child's CPUs
    /// must stay within its parent's: a wider set goes to the parent first, a narrower one to
    /// the children first.
    pub fn set_cpus(&self, cpus: &[u32]) -> io::Result<()> {
        let list = cpu_list(cpus);
        let own = match self.version {
            Version::V1 => self.dir("cpuset"),
            Version::V2 => self.dir(""),
        };
        let children: Vec<PathBuf> = fs::read_dir(&own)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        let file = |dir: &Path| dir.join("cpuset.cpus");
        if self.version == Version::V2 || write(file(&own), &list).is_ok() {
            if self.version == Version::V2 {
                write(file(&own), &list)?;
            }
            for c in &children {
                if file(c).exists() {
                    write(file(c), &list)?;
                }
            }
            return Ok(());
        }
        for c in &children {
            if file(c).exists() {
                write(file(c), &list)?;
            }
        }
        write(file(&own), &list)
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

    /// Removes the cgroup (and a sandbox cgroup runsc left behind), in every v1 hierarchy:
    /// runsc makes `aloft/<id>` in all of them (pids, devices, freezer...) and removes only the
    /// sandbox's own. Only empty cgroups can go; errors are ignored, as a later destroy tries
    /// again.
    pub fn remove(&self) {
        let dirs: Vec<PathBuf> = match self.version {
            Version::V1 => fs::read_dir(ROOT)
                .map(|entries| {
                    entries
                        .flatten()
                        .map(|e| e.path().join("aloft").join(&self.id))
                        .collect()
                })
                .unwrap_or_default(),
            Version::V2 => vec![self.dir("")],
        };
        for dir in dirs {
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

    /// Whether the machine's cgroup is there (it is while the machine runs).
    pub fn exists(&self) -> bool {
        match self.version {
            Version::V1 => self.dir("cpuset").is_dir(),
            Version::V2 => self.dir("").is_dir(),
        }
    }

    /// Whether the cgroup is gone from every hierarchy.
    pub fn is_removed(&self) -> bool {
        match self.version {
            Version::V1 => fs::read_dir(ROOT).is_ok_and(|entries| {
                entries
                    .flatten()
                    .all(|e| !e.path().join("aloft").join(&self.id).exists())
            }),
            Version::V2 => !self.dir("").exists(),
        }
    }
}

fn read_trimmed(path: &Path) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `[0, 1, 2, 5]` -> `0-2,5`.
pub fn cpu_list(cpus: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        while i + 1 < cpus.len() && cpus[i + 1] == cpus[i] + 1 {
            i += 1;
        }
        out.push(if cpus[i] == start {
            start.to_string()
        } else {
            format!("{start}-{}", cpus[i])
        });
        i += 1;
    }
    out.join(",")
}

/// `0-2,5` -> `[0, 1, 2, 5]`.
pub fn parse_cpu_list(list: &str) -> Vec<u32> {
    let mut cpus = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
            cpus.extend(a..=b);
        }
    }
    cpus
}

/// Hands out the host's CPUs: whole cores to `performance` machines while there are cores to
/// give (all but the first, kept for the host and shared machines), the rest to everything else.
/// Assignments are kept in `<state>/cpus.json`, so an agent restart keeps them.
pub struct CpuAllocator {
    file: PathBuf,
    /// `<state>/machines`: the machines this allocator pins.
    machines: PathBuf,
    host: Vec<u32>,
    dedicated: Mutex<BTreeMap<String, Vec<u32>>>,
}

impl CpuAllocator {
    pub fn new(state_dir: &Path) -> Self {
        let version = Version::detect();
        let root_cpus = match version {
            Version::V1 => read_trimmed(&Path::new(ROOT).join("cpuset/cpuset.cpus")),
            Version::V2 => read_trimmed(&Path::new(ROOT).join("cpuset.cpus.effective")),
        };
        let mut host = parse_cpu_list(&root_cpus);
        if host.is_empty() {
            host = parse_cpu_list(&read_trimmed(Path::new("/sys/devices/system/cpu/online")));
        }
        let file = state_dir.join("cpus.json");
        let dedicated = fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            file,
            machines: state_dir.join("machines"),
            host,
            dedicated: Mutex::new(dedicated),
        }
    }

    /// The CPUs machine `id` runs on: `cpus` cores of its own for a performance machine when
    /// that many are free, else the shared ones. Shared machines already running are re-pinned
    /// when cores are handed out.
    pub fn assign(&self, id: &str, cpus: u32, performance: bool) -> Vec<u32> {
        let mut dedicated = self.dedicated.lock();
        dedicated.remove(id);
        if performance {
            if let Some(cores) = free_cores(&self.host, &dedicated, cpus) {
                dedicated.insert(id.to_string(), cores.clone());
                self.save(&dedicated);
                self.repin_shared(&dedicated);
                return cores;
            }
            tracing::info!(
                machine = id,
                cpus,
                "no cores free for a performance machine: it shares the host's CPUs"
            );
        }
        self.save(&dedicated);
        shared_cores(&self.host, &dedicated)
    }

    /// Gives machine `id`'s cores back (its run ended or it is destroyed).
    pub fn release(&self, id: &str) {
        let mut dedicated = self.dedicated.lock();
        if dedicated.remove(id).is_some() {
            self.save(&dedicated);
            self.repin_shared(&dedicated);
        }
    }

    fn save(&self, dedicated: &BTreeMap<String, Vec<u32>>) {
        let bytes = serde_json::to_vec(dedicated).expect("serializable");
        if let Err(e) = aloft_durable::write(&self.file, &bytes, 0o644) {
            tracing::warn!(
                "cannot save the CPU assignments to {}: {e}",
                self.file.display()
            );
        }
    }

    /// Pins every machine of this host that has no cores of its own to the shared CPUs.
    fn repin_shared(&self, dedicated: &BTreeMap<String, Vec<u32>>) {
        let shared = shared_cores(&self.host, dedicated);
        let Ok(entries) = fs::read_dir(&self.machines) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let cgroup = MachineCgroup::new(&name);
            if !dedicated.contains_key(&name)
                && cgroup.exists()
                && let Err(err) = cgroup.set_cpus(&shared)
            {
                tracing::warn!(machine = name, "re-pinning to the shared CPUs: {err}");
            }
        }
    }
}

/// `n` cores no one else has, leaving the host's first CPU alone.
fn free_cores(host: &[u32], dedicated: &BTreeMap<String, Vec<u32>>, n: u32) -> Option<Vec<u32>> {
    let taken: Vec<u32> = dedicated.values().flatten().copied().collect();
    let free: Vec<u32> = host
        .iter()
        .skip(1)
        .copied()
        .filter(|c| !taken.contains(c))
        .collect();
    (free.len() >= n.max(1) as usize).then(|| free[..n.max(1) as usize].to_vec())
}

/// The host's CPUs that are no one's own.
fn shared_cores(host: &[u32], dedicated: &BTreeMap<String, Vec<u32>>) -> Vec<u32> {
    let taken: Vec<u32> = dedicated.values().flatten().copied().collect();
    host.iter()
        .copied()
        .filter(|c| !taken.contains(c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_round_trip() {
        assert_eq!(parse_cpu_list("0-2,5\n"), [0, 1, 2, 5]);
        assert_eq!(cpu_list(&[0, 1, 2, 5]), "0-2,5");
        assert_eq!(cpu_list(&[3]), "3");
        assert!(parse_cpu_list("").is_empty());
    }

    #[test]
    fn performance_machines_get_cores_of_their_own_while_there_are_any() {
        let host = [0, 1, 2, 3];
        let mut dedicated = BTreeMap::new();
        assert_eq!(free_cores(&host, &dedicated, 2), Some(vec![1, 2]));
        dedicated.insert("a".to_string(), vec![1, 2]);
        assert_eq!(shared_cores(&host, &dedicated), [0, 3]);
        assert_eq!(free_cores(&host, &dedicated, 2), None, "one core left");
        assert_eq!(free_cores(&host, &dedicated, 1), Some(vec![3]));
        // A one-CPU host has nothing to give.
        assert_eq!(free_cores(&[0], &BTreeMap::new(), 1), None);
    }
}
