//! The gVisor backend: every machine is a `runsc` sandbox with aloft-init as its PID 1.
//!
//! Per machine, under `<state>/machines/<id>/`:
//! - `rootfs/`: an overlayfs whose lower layer is the image's shared, read-only root filesystem
//!   and whose upper layer (`layer/upper/`, `layer/work/`) is the machine's own, on a disk of
//!   the machine's `rootfs_size_mb` ([`crate::rootdisk`]), so a machine cannot fill the host's
//!   disk; made anew on every start, so a machine starts from its image each time, as on the
//!   reference platform. aloft-init and its config are put in the upper layer (`/.aloft/`), and
//!   init's exit report comes back through it: copied (bounded, [`crate::bounded`]) to
//!   `exit.json` when the run ends.
//! - `bundle/config.json`: the OCI runtime spec (no network namespace of its own: runsc runs
//!   inside the machine's namespace from [`crate::net`] with `--network=host`, which this
//!   runsc build needs for IPv6 and for namespaces it does not consider "root").
//! - the shim's files ([`crate::supervise`]): `runsc run` runs under a detached shim, so machines
//!   keep running when the agent stops, and their output lands in `log.jsonl`.
//!
//! Limits: a cgroup per machine ([`crate::cgroup`]) with the memory limit and CPU quota; OOM
//! kills are read from its counter after the sandbox is gone.

use crate::cgroup::{CpuAllocator, Limits, MachineCgroup};
use crate::guest::init_config;
use crate::net::{HostNetwork, NetworkOptions};
use crate::volume::VolumeStore;
use crate::{Capabilities, ExitStatus, MachineSpec, Running, Runtime, RuntimeError, Stats};
use crate::{bounded, rootdisk, supervise};
use aloft_types::MachineId;
use aloft_types::api::{EXEC_OUTPUT_CAP, ExecResponse, LogLine, ProcessStat};
use aloft_types::config::CpuKind;
use aloft_types::init::{CONTAINER_INIT_PATH, ExitReport};
use aloft_types::signal::Signal;
use async_trait::async_trait;
use serde_json::json;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Log lines kept in answers to `logs`.
/// Log lines kept in memory per machine.
const LOG_LINES: usize = 1000;
/// How long a sandbox may take to report that it runs.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How to run the gVisor backend.
#[derive(Debug, Clone)]
pub struct GvisorOptions {
    pub state_dir: PathBuf,
    /// The static aloft-init binary put into every machine.
    pub init_binary: PathBuf,
    pub network: NetworkOptions,
    /// `runsc`; found on `PATH` when `None`.
    pub runsc: Option<PathBuf>,
}

pub struct GvisorRuntime {
    opts: GvisorOptions,
    runsc: PathBuf,
    platform: &'static str,
    net: HostNetwork,
    logs: supervise::LogRings,
    cpus: CpuAllocator,
}

fn io_err<'a>(op: &'static str, id: &'a MachineId) -> impl FnOnce(io::Error) -> RuntimeError + 'a {
    move |source| RuntimeError::Io {
        op,
        id: id.clone(),
        source,
    }
}

/// `program` on `PATH`.
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

impl GvisorRuntime {
    /// Checks that runsc is there, picks its fastest platform, and sets up the host network.
    pub fn new(opts: GvisorOptions) -> Result<Self, RuntimeError> {
        let runsc = opts
            .runsc
            .clone()
            .or_else(|| which("runsc"))
            .filter(|p| p.is_file())
            .ok_or_else(|| {
                RuntimeError::Other(
                    "runsc (gVisor) is not installed: apt-get install runsc (or pass --runtime microvm)".into(),
                )
            })?;
        if !opts.init_binary.is_file() {
            return Err(RuntimeError::Other(format!(
                "aloft-init is not at {}: build it with scripts/build-init.sh",
                opts.init_binary.display()
            )));
        }
        // systrap (newer runsc builds) is much faster than ptrace; the build Debian ships knows
        // only ptrace and kvm (and kvm needs a usable /dev/kvm).
        let flags = std::process::Command::new(&runsc)
            .arg("flags")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let platform = if flags.contains("systrap") {
            "systrap"
        } else {
            "ptrace"
        };
        let net = HostNetwork::new(&opts.state_dir, opts.network.clone())
            .map_err(|e| RuntimeError::Other(format!("setting up the host network: {e}")))?;
        fs::create_dir_all(opts.state_dir.join("machines"))
            .map_err(|e| RuntimeError::Other(format!("creating the state dir: {e}")))?;
        tracing::info!(runsc = %runsc.display(), platform, "gVisor backend ready");
        Ok(Self {
            cpus: CpuAllocator::new(&opts.state_dir),
            opts,
            logs: supervise::LogRings::new(LOG_LINES),
            runsc,
            platform,
            net,
        })
    }

    /// The host network the machines are on.
    pub fn network(&self) -> &HostNetwork {
        &self.net
    }

    fn dir(&self, id: &MachineId) -> PathBuf {
        self.opts.state_dir.join("machines").join(id.as_str())
    }

    fn runsc_root(&self) -> PathBuf {
        self.opts.state_dir.join("runsc")
    }

    /// `runsc --root R` for machine `id`, run inside the machine's network namespace: the
    /// sandbox's control socket is an abstract unix socket, which only that namespace sees.
    fn runsc_cmd(&self, id: &MachineId) -> tokio::process::Command {
        let netns = self.net.get(id.as_str()).and_then(|n| n.netns);
        let mut c = match netns {
            Some(ns) if ns.exists() => {
                let mut c = tokio::process::Command::new("nsenter");
                c.arg(format!("--net={}", ns.display())).arg(&self.runsc);
                c
            }
            _ => tokio::process::Command::new(&self.runsc),
        };
        c.arg("--root").arg(self.runsc_root());
        c
    }

    /// `runsc ARGS` that must succeed.
    async fn runsc(&self, id: &MachineId, args: &[&str]) -> Result<String, RuntimeError> {
        let out = self
            .runsc_cmd(id)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(io_err("running runsc", id))?;
        if !out.status.success() {
            return Err(RuntimeError::Other(format!(
                "runsc {} for machine {id} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Unmounts the machine's root filesystem if it is mounted.
    fn unmount(dir: &Path) {
        let rootfs = dir.join("rootfs");
        let mounted = fs::read_to_string("/proc/self/mounts")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(&*rootfs.to_string_lossy()));
        if mounted {
            let _ = rustix::mount::unmount(&rootfs, rustix::mount::UnmountFlags::DETACH);
        }
    }

    /// A fresh writable layer over the image (on a disk of the machine's root filesystem size),
    /// with init and its config in it; mounted.
    async fn prepare_rootfs(
        &self,
        spec: &MachineSpec,
        dir: &Path,
    ) -> Result<PathBuf, RuntimeError> {
        let id = &spec.id;
        let image = spec.image.as_ref().expect("checked by init_config");
        let cfg = init_config(spec, None, None)?;
        Self::unmount(dir);
        let _ = fs::remove_file(dir.join("exit.json"));
        let layer = rootdisk::prepare(dir, spec.config.guest.rootfs_mb())
            .await
            .map_err(|reason| RuntimeError::StartFailed {
                id: id.clone(),
                reason,
            })?;
        let (upper, work) = (layer.join("upper"), layer.join("work"));
        let aloft = upper.join(".aloft");
        fs::create_dir_all(&aloft).map_err(io_err("creating the writable layer", id))?;
        fs::create_dir_all(&work).map_err(io_err("creating the writable layer", id))?;
        let rootfs = dir.join("rootfs");
        fs::create_dir_all(&rootfs).map_err(io_err("creating the root mount", id))?;
        fs::copy(&self.opts.init_binary, aloft.join("init"))
            .map_err(io_err("copying aloft-init into the machine", id))?;
        fs::write(
            aloft.join("config.json"),
            serde_json::to_vec(&cfg).expect("serializable"),
        )
        .map_err(io_err("writing the init config", id))?;
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            image.rootfs.display(),
            upper.display(),
            work.display()
        );
        let data = std::ffi::CString::new(data).map_err(|_| RuntimeError::StartFailed {
            id: id.clone(),
            reason: "a path of the machine has a NUL byte".into(),
        })?;
        rustix::mount::mount(
            "overlay",
            &rootfs,
            "overlay",
            rustix::mount::MountFlags::empty(),
            Some(data.as_c_str()),
        )
        .map_err(|e| RuntimeError::StartFailed {
            id: id.clone(),
            reason: format!("cannot mount the machine's root filesystem (overlayfs): {e}"),
        })?;
        Ok(rootfs)
    }

    fn write_bundle(
        &self,
        spec: &MachineSpec,
        dir: &Path,
        rootfs: &Path,
        cgroup: &MachineCgroup,
        volumes: &[(PathBuf, String)],
    ) -> Result<PathBuf, RuntimeError> {
        let bundle = dir.join("bundle");
        fs::create_dir_all(&bundle).map_err(io_err("writing the OCI bundle", &spec.id))?;
        let caps = [
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FSETID",
            "CAP_FOWNER",
            "CAP_MKNOD",
            "CAP_NET_RAW",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETFCAP",
            "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE",
            "CAP_SYS_CHROOT",
            "CAP_KILL",
            "CAP_AUDIT_WRITE",
            "CAP_SYS_ADMIN",
        ];
        let mut mounts = vec![
            json!({"destination": "/proc", "type": "proc", "source": "proc"}),
            json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
            json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
            json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
            json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}),
            json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=755"]}),
        ];
        for (source, destination) in volumes {
            mounts.push(
                json!({"destination": destination, "type": "bind", "source": source,
                "options": ["rbind", "rw", "nosuid", "nodev"]}),
            );
        }
        let config = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": [CONTAINER_INIT_PATH],
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "cwd": "/",
                "capabilities": {
                    "bounding": caps, "effective": caps, "permitted": caps,
                },
                "noNewPrivileges": false,
            },
            "root": {"path": rootfs, "readonly": false},
            "hostname": spec.id.as_str(),
            "mounts": mounts,
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
                "cgroupsPath": cgroup.sandbox_path(),
            },
        });
        fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&config).expect("serializable"),
        )
        .map_err(io_err("writing the OCI bundle", &spec.id))?;
        Ok(bundle)
    }

    /// Mounts the machine's volumes on the host (each decrypted, see [`crate::volume`]) and
    /// records them for [`Self::teardown_run`]; (host directory, guest path) pairs.
    async fn mount_volumes(
        &self,
        spec: &MachineSpec,
        dir: &Path,
    ) -> Result<Vec<(PathBuf, String)>, RuntimeError> {
        let stores: Vec<(&str, &VolumeStore)> = spec
            .volumes
            .iter()
            .map(|v| (v.id.as_str(), &v.store))
            .collect();
        fs::write(
            dir.join("volumes.json"),
            serde_json::to_vec(&stores).expect("serializable"),
        )
        .map_err(io_err("recording the machine's volumes", &spec.id))?;
        let mut mounted = Vec::new();
        for v in &spec.volumes {
            let mnt = v
                .store
                .mount(&v.id, &v.key, spec.id.as_str())
                .await
                .map_err(|reason| RuntimeError::StartFailed {
                    id: spec.id.clone(),
                    reason: format!("volume {}: {reason}", v.id),
                })?;
            mounted.push((mnt, v.path.clone()));
        }
        Ok(mounted)
    }

    /// Unmounts the volumes the machine's last start mounted.
    /// Never while a sandbox of the machine runs: a late teardown of an ended run (a second
    /// `wait`) must not take the volumes of the run that followed it.
    async fn unmount_volumes(&self, id: &MachineId) {
        if supervise::is_running(&self.dir(id)) {
            return;
        }
        let recorded: Vec<(String, VolumeStore)> = fs::read(self.dir(id).join("volumes.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        for (volume, store) in recorded {
            store.unmount(&volume).await;
        }
    }

    /// After the sandbox ended: remove it, unmount its volumes and its root filesystem
    /// (idempotent).
    async fn teardown_run(&self, id: &MachineId) {
        self.cpus.release(id.as_str());
        // runsc keeps `<id>_sandbox:<id>.state` in its root while it knows the container;
        // without one there is nothing to delete (and no Go process to spawn on the start path).
        let known = fs::read_dir(self.runsc_root()).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(id.as_str()))
        });
        if known {
            let _ = self
                .runsc_cmd(id)
                .args(["delete", "--force", id.as_str()])
                .stdin(Stdio::null())
                .output()
                .await;
        }
        self.unmount_volumes(id).await;
        Self::unmount(&self.dir(id));
        rootdisk::unmount(&self.dir(id)).await;
    }

    /// How the run ended: init's report when it wrote one, else the sandbox's exit status; OOM
    /// from the machine's cgroup. The report is kept (bounded) beside the layer, which goes
    /// when the run is torn down. It is the guest's word about itself: see ARCHITECTURE.md.
    fn exit_status(&self, id: &MachineId, process: supervise::ProcessExit) -> ExitStatus {
        let dir = self.dir(id);
        keep_report(&dir);
        let report: Option<ExitReport> = bounded::exit_report(&dir.join("exit.json"));
        let oom_before: u64 = fs::read_to_string(dir.join("oom-before"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let oom = MachineCgroup::new(id.as_str()).oom_counter() > oom_before;
        match report {
            Some(r) => ExitStatus {
                exit_code: r.exit_code,
                signal: r.signal,
                oom_killed: r.oom_killed || (oom && r.signal == Some(9)),
            },
            // runsc exits with 128 + N when the sandbox's init died of signal N.
            None => ExitStatus {
                exit_code: process.exit_code,
                signal: process.signal.or_else(|| {
                    (129..=192)
                        .contains(&process.exit_code)
                        .then(|| process.exit_code - 128)
                }),
                oom_killed: oom,
            },
        }
    }
}

/// Copies init's exit report (bounded) out of the machine's layer while that is mounted.
fn keep_report(dir: &Path) {
    let layer = rootdisk::mount_point(dir);
    if rootdisk::is_mounted(&layer) {
        bounded::keep_exit_report(
            &layer.join("upper/.aloft/exit.json"),
            &dir.join("exit.json"),
        );
    }
}

#[async_trait]
impl Runtime for GvisorRuntime {
    fn name(&self) -> &'static str {
        "gvisor"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            suspend: false,
            disk_image: false,
        }
    }

    async fn create(&self, spec: &MachineSpec) -> Result<(), RuntimeError> {
        fs::create_dir_all(self.dir(&spec.id)).map_err(io_err("creating the machine", &spec.id))
    }

    async fn start(&self, spec: &MachineSpec) -> Result<Running, RuntimeError> {
        let id = &spec.id;
        let dir = self.dir(id);
        if supervise::is_running(&dir) {
            return Err(RuntimeError::Other(format!(
                "machine {id} is already running"
            )));
        }
        let t0 = Instant::now();
        fs::create_dir_all(&dir).map_err(io_err("creating the machine", id))?;
        self.teardown_run(id).await;
        let rootfs = self.prepare_rootfs(spec, &dir).await?;
        let t_rootfs = t0.elapsed();
        let ipv6 = spec
            .private_ip
            .parse()
            .map_err(|_| RuntimeError::StartFailed {
                id: id.clone(),
                reason: format!("private_ip `{}` is not an IPv6 address", spec.private_ip),
            })?;
        let net =
            self.net
                .attach_netns(id.as_str(), ipv6)
                .map_err(|e| RuntimeError::StartFailed {
                    id: id.clone(),
                    reason: format!("network: {e}"),
                })?;
        let t_network = t0.elapsed();
        let cgroup = MachineCgroup::new(id.as_str());
        let guest = &spec.config.guest;
        let performance = guest.cpu_kind == CpuKind::Performance;
        cgroup
            .create(&Limits {
                memory_bytes: u64::from(guest.memory_mb) << 20,
                cpus: guest.cpus,
                performance,
                cpuset: self.cpus.assign(id.as_str(), guest.cpus, performance),
            })
            .map_err(io_err("setting the machine's limits (cgroup)", id))?;
        let _ = fs::write(dir.join("oom-before"), cgroup.oom_counter().to_string());
        // Whatever fails from here on leaves no volume mounted (decrypted) behind.
        let launched = async {
            let volumes = self.mount_volumes(spec, &dir).await?;
            let bundle = self.write_bundle(spec, &dir, &rootfs, &cgroup, &volumes)?;
            let _ = fs::write(dir.join("instance"), &spec.instance_id);
            let cmd: Vec<OsString> = vec![
                self.runsc.clone().into(),
                "--root".into(),
                self.runsc_root().into(),
                format!("--platform={}", self.platform).into(),
                "--network=host".into(),
                "run".into(),
                // runsc returns once the container runs; the sandbox is left to the shim, which
                // adopts it. A `runsc run` in the foreground would cost ~40 MB per machine.
                "--detach".into(),
                "--bundle".into(),
                bundle.into(),
                id.as_str().into(),
            ];
            let t_bundle = t0.elapsed();
            let pid = supervise::spawn(&self.opts.init_binary, &dir, net.netns.as_deref(), &cmd)
                .await
                .map_err(|e| RuntimeError::StartFailed {
                    id: id.clone(),
                    reason: e.to_string(),
                })?;
            let t_runsc = t0.elapsed();
            // Running once init has started the machine's process (it writes `/.aloft/started`);
            // a sandbox or process that fails to start ends `runsc run`, and `wait` says how.
            let started = rootdisk::mount_point(&dir).join("upper/.aloft/started");
            let deadline = Instant::now() + START_TIMEOUT;
            while !started.exists() && supervise::is_running(&dir) {
                if Instant::now() > deadline {
                    let _ = self.kill(id).await;
                    return Err(RuntimeError::StartFailed {
                        id: id.clone(),
                        reason: format!("the sandbox did not start within {START_TIMEOUT:?}"),
                    });
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tracing::debug!(
                machine = %id,
                rootfs_ms = t_rootfs.as_millis(),
                network_ms = (t_network - t_rootfs).as_millis(),
                cgroup_bundle_ms = (t_bundle - t_network).as_millis(),
                runsc_run_ms = (t_runsc - t_bundle).as_millis(),
                process_ms = (t0.elapsed() - t_runsc).as_millis(),
                "machine started"
            );
            Ok::<u32, RuntimeError>(pid)
        }
        .await;
        let pid = match launched {
            Ok(pid) => pid,
            Err(e) => {
                self.unmount_volumes(id).await;
                return Err(e);
            }
        };
        Ok(Running {
            instance_id: spec.instance_id.clone(),
            pid: Some(pid),
        })
    }

    async fn signal(&self, id: &MachineId, signal: Signal) -> Result<(), RuntimeError> {
        if !supervise::is_running(&self.dir(id)) {
            return Err(RuntimeError::NotRunning(id.clone()));
        }
        let num = signal.number().to_string();
        match self.runsc(id, &["kill", id.as_str(), &num]).await {
            Ok(_) => Ok(()),
            // The sandbox ended in the meantime.
            Err(_) if !supervise::is_running(&self.dir(id)) => {
                Err(RuntimeError::NotRunning(id.clone()))
            }
            Err(e) => Err(e),
        }
    }

    async fn kill(&self, id: &MachineId) -> Result<(), RuntimeError> {
        let dir = self.dir(id);
        if !supervise::is_running(&dir) {
            return Ok(());
        }
        if self.runsc(id, &["kill", id.as_str(), "9"]).await.is_err() {
            // A wedged sandbox: end `runsc run` and delete the sandbox.
            if let Some(pid) =
                supervise::child_pid(&dir).and_then(|p| rustix::process::Pid::from_raw(p as i32))
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            let _ = self.runsc(id, &["delete", "--force", id.as_str()]).await;
        }
        Ok(())
    }

    async fn wait(&self, id: &MachineId) -> Result<ExitStatus, RuntimeError> {
        let dir = self.dir(id);
        if !dir.join("shim.pid").exists() && supervise::exit(&dir).is_none() {
            return Err(RuntimeError::NotRunning(id.clone()));
        }
        let process = supervise::wait(&dir).await;
        let status = self.exit_status(id, process);
        self.teardown_run(id).await;
        Ok(status)
    }

    async fn exec(
        &self,
        id: &MachineId,
        argv: &[String],
        stdin: Option<&str>,
        timeout: Duration,
    ) -> Result<ExecResponse, RuntimeError> {
        if !supervise::is_running(&self.dir(id)) {
            return Err(RuntimeError::NotRunning(id.clone()));
        }
        let mut child = self
            .runsc_cmd(id)
            .args(["exec", id.as_str(), CONTAINER_INIT_PATH, "exec", "--"])
            .args(argv)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(io_err("running runsc exec", id))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let input = input.as_bytes().to_vec();
            tokio::spawn(async move {
                let _ = pipe.write_all(&input).await;
            });
        }
        // At most the cap of each stream is kept; a command that writes more is ended then.
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let finished = async {
            let out = bounded::capture(
                stdout.expect("piped"),
                stderr.expect("piped"),
                EXEC_OUTPUT_CAP,
            )
            .await;
            if out.truncated {
                let _ = child.start_kill();
            }
            child.wait().await.map(|status| (status, out))
        };
        match tokio::time::timeout(timeout, finished).await {
            Ok(done) => {
                let (status, out) = done.map_err(io_err("running runsc exec", id))?;
                use std::os::unix::process::ExitStatusExt;
                Ok(ExecResponse {
                    exit_code: status.code().unwrap_or(-1),
                    exit_signal: status.signal().unwrap_or(0),
                    stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                    truncated: out.truncated,
                })
            }
            Err(_) => Err(RuntimeError::Other(format!(
                "the command did not finish within {}s in machine {id} (it was killed)",
                timeout.as_secs()
            ))),
        }
    }

    async fn logs(&self, id: &MachineId) -> Result<Vec<LogLine>, RuntimeError> {
        let dir = self.dir(id);
        if !dir.exists() {
            return Err(RuntimeError::NotFound(id.clone()));
        }
        Ok(self.logs.read(&dir))
    }

    async fn stats(&self, id: &MachineId) -> Result<Stats, RuntimeError> {
        if !supervise::is_running(&self.dir(id)) {
            return Err(RuntimeError::NotRunning(id.clone()));
        }
        let (memory_bytes, cpu_ms) = MachineCgroup::new(id.as_str()).usage();
        Ok(Stats {
            cpu_ms,
            memory_bytes,
        })
    }

    async fn ps(&self, id: &MachineId) -> Result<Vec<ProcessStat>, RuntimeError> {
        let out = self
            .runsc(id, &["exec", id.as_str(), CONTAINER_INIT_PATH, "ps"])
            .await
            .map_err(|e| {
                if supervise::is_running(&self.dir(id)) {
                    e
                } else {
                    RuntimeError::NotRunning(id.clone())
                }
            })?;
        serde_json::from_str(out.trim())
            .map_err(|e| RuntimeError::Other(format!("aloft-init ps answered no JSON: {e}")))
    }

    async fn destroy(&self, id: &MachineId) -> Result<(), RuntimeError> {
        let dir = self.dir(id);
        if supervise::is_running(&dir) {
            self.kill(id).await?;
            let _ = tokio::time::timeout(Duration::from_secs(10), supervise::wait(&dir)).await;
        }
        self.teardown_run(id).await;
        self.net
            .release(id.as_str())
            .map_err(|e| RuntimeError::Other(format!("releasing machine {id}'s network: {e}")))?;
        MachineCgroup::new(id.as_str()).remove();
        self.logs.forget(&dir);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(io_err("removing the machine's files", id)(e))
            }
            _ => Ok(()),
        }
    }

    async fn exit_message(&self, id: &MachineId) -> Option<String> {
        bounded::exit_report(&self.dir(id).join("exit.json"))?.error
    }

    /// A run that ended while no agent watched it still holds its layer's disk (mounted
    /// through a loop device) and maybe volumes: torn down here, its exit report kept first.
    async fn reattach(&self, id: &MachineId) -> Result<Option<Running>, RuntimeError> {
        let dir = self.dir(id);
        if !supervise::is_running(&dir) {
            if rootdisk::is_mounted(&rootdisk::mount_point(&dir)) {
                keep_report(&dir);
                self.teardown_run(id).await;
            }
            return Ok(None);
        }
        let instance_id = fs::read_to_string(dir.join("instance")).unwrap_or_default();
        Ok(Some(Running {
            instance_id: instance_id.trim().to_string(),
            pid: supervise::child_pid(&dir),
        }))
    }
}
