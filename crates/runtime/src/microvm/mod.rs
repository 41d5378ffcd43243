//! The microVM backend: every machine is a QEMU `-M microvm` guest booting Debian's kernel, with
//! aloft-init as PID 1 from an initramfs.
//!
//! - Kernel: `<kernel_dir>/<version>/vmlinuz` and its modules, fetched by
//!   `scripts/guest-kernel.sh`.
//! - Initramfs: aloft-init as `/init`, busybox (a rescue shell), and the modules init loads (virtio
//!   MMIO, block, net, console, ext4 and their dependencies from `modules.dep`), built once per
//!   kernel and init binary and cached; per start, a small second archive with the machine's
//!   [`aloft_types::init::InitConfig`] is appended (concatenated cpio archives are one initramfs).
//! - Disk: the image's ext4 ([`crate::PreparedImage::disk`]) is the read-only base of a
//!   per-machine qcow2 overlay, recreated on every start.
//! - Network: a TAP on the host bridge ([`crate::net`]); the guest configures `eth0` itself.
//! - Control: a virtio-serial port (`aloft.control`, this host kernel has no vhost-vsock) carries
//!   exec/signal/ps requests to init (every line read back is bounded, [`crate::bounded`]); a
//!   second port (`aloft.exit`) is a host file where init writes its exit report: init opens it
//!   before the machine's process starts and holds it (a virtio port opens once), the host reads
//!   only its first line, bounded, and QEMU runs with a file-size limit so that nothing the guest
//!   writes there grows past the size of its disk. QMP stops the VM. The serial console is the
//!   machine's log.
//! - Acceleration: KVM when a stock kernel boots under it (probed once per host with a timeout,
//!   because KVM-PVM hosts hang such kernels), else TCG emulation (slow: functional use only).
//!   Under TCG every guest is told its TSC frequency, measured once per host ([`probe`]),
//!   because the kernel's own calibration fails now and then there and the guest then hangs.

use crate::bounded::{self, CONTROL_LINE_MAX};
use crate::net::{HostNetwork, NetworkOptions};
use crate::supervise;
use crate::{Capabilities, ExitStatus, MachineSpec, Running, Runtime, RuntimeError, Stats};
use aloft_types::MachineId;
use aloft_types::api::{ExecResponse, LogLine, ProcessStat};
use aloft_types::init::{ControlOp, ControlRequest, ControlResult, ExitReport, GuestMessage};
use aloft_types::signal::Signal;
use async_trait::async_trait;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::Mutex;

mod boot;
mod initramfs;
mod probe;

pub use probe::{kvm_usable, tcg_tsc_khz};

/// Log lines kept in memory per machine.
const LOG_LINES: usize = 1000;

/// How QEMU executes the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM if the probe says a stock kernel boots under it, else TCG.
    Auto,
    Kvm,
    Tcg,
}

/// Where the backend finds its parts and keeps its state.
#[derive(Debug, Clone)]
pub struct MicrovmOptions {
    /// Machines' files (`machines/<id>/`), the cached initramfs, disks built from root
    /// filesystems, the host probes' verdicts, the network's leases.
    pub state_dir: PathBuf,
    /// The static aloft-init (`scripts/build-init.sh`): the guests' `/init` and the shim.
    pub init_binary: PathBuf,
    /// Where `scripts/guest-kernel.sh` put the kernel (`current` names the version).
    pub kernel_dir: PathBuf,
    pub network: NetworkOptions,
    pub accel: Accel,
    /// How long a guest may take until its init answers.
    pub boot_timeout: Duration,
    /// `qemu-system-x86_64`; found on `PATH` when `None`.
    pub qemu: Option<PathBuf>,
}

/// A connection to one guest's control port.
struct Control {
    stream: Option<BufReader<UnixStream>>,
}

/// The microVM [`Runtime`]: see the module doc.
pub struct MicrovmRuntime {
    opts: MicrovmOptions,
    qemu: PathBuf,
    qemu_img: PathBuf,
    kernel: PathBuf,
    initramfs: Vec<u8>,
    /// The modules in the initramfs, in load order.
    modules: Vec<String>,
    accel: Accel,
    /// Under TCG: the TSC frequency guests are told (see [`tcg_tsc_khz`]).
    tsc_khz: Option<u64>,
    net: HostNetwork,
    logs: supervise::LogRings,
    controls: parking_lot::Mutex<HashMap<MachineId, Arc<Mutex<Control>>>>,
    next_id: AtomicU64,
}

fn other(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::Other(msg.into())
}

fn io_err<'a>(op: &'static str, id: &'a MachineId) -> impl FnOnce(io::Error) -> RuntimeError + 'a {
    move |source| RuntimeError::Io {
        op,
        id: id.clone(),
        source,
    }
}

/// The kernel version `scripts/guest-kernel.sh` cached, and its directory.
fn kernel(kernel_dir: &Path) -> Result<(String, PathBuf), RuntimeError> {
    let missing = || {
        other(format!(
            "no guest kernel in {}: run scripts/guest-kernel.sh (scripts/setup.sh does)",
            kernel_dir.display()
        ))
    };
    let version = fs::read_to_string(kernel_dir.join("current")).map_err(|_| missing())?;
    let version = version.trim().to_string();
    let dir = kernel_dir.join(&version);
    if !dir.join("vmlinuz").is_file() {
        return Err(missing());
    }
    Ok((version, dir))
}

impl MicrovmRuntime {
    /// Checks the host's parts (QEMU, qemu-img, the kernel, aloft-init), builds or loads the
    /// initramfs, settles the acceleration (probing the host on first use) and sets up the
    /// bridge. Errors say what to install or run.
    pub fn new(opts: MicrovmOptions) -> Result<Self, RuntimeError> {
        let qemu = opts
            .qemu
            .clone()
            .or_else(|| crate::gvisor::which("qemu-system-x86_64"))
            .filter(|p| p.is_file())
            .ok_or_else(|| {
                other("qemu-system-x86_64 is not installed: apt-get install qemu-system-x86 (or pass --runtime gvisor)")
            })?;
        let qemu_img = crate::gvisor::which("qemu-img")
            .ok_or_else(|| other("qemu-img is not installed: apt-get install qemu-utils"))?;
        let (version, kdir) = kernel(&opts.kernel_dir)?;
        fs::create_dir_all(opts.state_dir.join("machines"))
            .map_err(|e| other(format!("creating the state dir: {e}")))?;
        let (initramfs, modules) =
            initramfs::base(&opts.state_dir, &version, &kdir, &opts.init_binary)?;
        let (accel, tsc_khz) = match opts.accel {
            Accel::Kvm => (Accel::Kvm, None),
            Accel::Tcg => (Accel::Tcg, tcg_tsc_khz(&opts.state_dir, &opts.kernel_dir)?),
            Accel::Auto if kvm_usable(&opts.state_dir, &opts.kernel_dir)? => (Accel::Kvm, None),
            Accel::Auto => (Accel::Tcg, tcg_tsc_khz(&opts.state_dir, &opts.kernel_dir)?),
        };
        let net = HostNetwork::new(&opts.state_dir, opts.network.clone())
            .map_err(|e| other(format!("setting up the host network: {e}")))?;
        tracing::info!(kernel = %version, ?accel, ?tsc_khz, "microVM backend ready");
        Ok(Self {
            kernel: kdir.join("vmlinuz"),
            logs: supervise::LogRings::new(LOG_LINES),
            opts,
            qemu,
            qemu_img,
            initramfs,
            modules,
            accel,
            tsc_khz,
            net,
            controls: Default::default(),
            // Request ids differ from an earlier agent's, whose late replies a guest may still
            // send on a new connection.
            next_id: AtomicU64::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64),
            ),
        })
    }

    /// The acceleration guests run with.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// The host network the machines are on.
    pub fn network(&self) -> &HostNetwork {
        &self.net
    }

    fn dir(&self, id: &MachineId) -> PathBuf {
        self.opts.state_dir.join("machines").join(id.as_str())
    }

    /// The image's ext4: the agent's, or one built here from the root filesystem.
    async fn disk(&self, spec: &MachineSpec) -> Result<PathBuf, RuntimeError> {
        let image = spec.image.as_ref().expect("checked by init_config");
        if let Some(d) = &image.disk {
            return Ok(d.clone());
        }
        let name = image.manifest_digest.replace(':', "-");
        let path = self
            .opts
            .state_dir
            .join("disks")
            .join(format!("{name}.ext4"));
        if path.is_file() {
            return Ok(path);
        }
        fs::create_dir_all(path.parent().expect("has a parent"))
            .map_err(io_err("creating the disk cache", &spec.id))?;
        let out = tokio::process::Command::new("du")
            .args(["-sb"])
            .arg(&image.rootfs)
            .output()
            .await
            .map_err(io_err("sizing the root filesystem", &spec.id))?;
        let bytes: u64 = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let size_mb = ((bytes * 3 / 2) >> 20) + 64;
        let tmp = path.with_extension("tmp");
        let out = tokio::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-E", "root_owner=0:0", "-d"])
            .arg(&image.rootfs)
            .arg(&tmp)
            .arg(format!("{size_mb}M"))
            .output()
            .await
            .map_err(|e| other(format!("mkfs.ext4 (apt-get install e2fsprogs): {e}")))?;
        if !out.status.success() {
            return Err(other(format!(
                "mkfs.ext4 failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        fs::rename(&tmp, &path).map_err(io_err("caching the disk", &spec.id))?;
        Ok(path)
    }

    fn control(&self, id: &MachineId) -> Arc<Mutex<Control>> {
        self.controls
            .lock()
            .entry(id.clone())
            .or_insert_with(|| Arc::new(Mutex::new(Control { stream: None })))
            .clone()
    }

    /// Sends one request to the guest's init and waits for its reply (one at a time per
    /// machine: the connection is shared).
    async fn request(
        &self,
        id: &MachineId,
        op: ControlOp,
        timeout: Duration,
    ) -> Result<ControlResult, RuntimeError> {
        let dir = self.dir(id);
        if !supervise::is_running(&dir) {
            return Err(RuntimeError::NotRunning(id.clone()));
        }
        let control = self.control(id);
        let mut c = control.lock().await;
        let req_id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let result = tokio::time::timeout(timeout, async {
            if c.stream.is_none() {
                let s = UnixStream::connect(dir.join("control.sock")).await?;
                c.stream = Some(BufReader::new(s));
            }
            let stream = c.stream.as_mut().expect("connected");
            let mut line =
                serde_json::to_vec(&ControlRequest { id: req_id, op }).expect("serializable");
            line.push(b'\n');
            stream.get_mut().write_all(&line).await?;
            // Each line the guest sends is bounded: an overlong one drops the connection.
            let mut buf = Vec::new();
            loop {
                if !bounded::read_line(stream, &mut buf, CONTROL_LINE_MAX).await? {
                    return Err(io::Error::other("the guest closed its control port"));
                }
                if let Ok(GuestMessage::Reply(r)) = serde_json::from_slice(&buf)
                    && r.id == req_id
                {
                    return Ok(r.result);
                }
            }
        })
        .await;
        match result {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                c.stream = None;
                if supervise::is_running(&dir) {
                    Err(io_err("talking to the guest's init", id)(e))
                } else {
                    Err(RuntimeError::NotRunning(id.clone()))
                }
            }
            Err(_) => {
                c.stream = None;
                Err(other(format!(
                    "machine {id}'s init did not answer within {}s",
                    timeout.as_secs()
                )))
            }
        }
    }

    /// Waits until init answers on the control port, or says why the guest did not boot.
    async fn await_boot(&self, spec: &MachineSpec, dir: &Path) -> Result<(), RuntimeError> {
        let id = &spec.id;
        let deadline = Instant::now() + self.opts.boot_timeout;
        loop {
            if !supervise::is_running(dir) {
                // The guest ended before init answered: a boot failure (init's report says
                // why, or there is none), or a process that ended at once or could not start
                // at all (127: not found, 126: not runnable). Those are runs that ended, as in
                // a container: `wait` says how and `exit_message` why.
                match bounded::exit_report(&dir.join("exit.json")) {
                    Some(ExitReport { error: None, .. }) => break,
                    Some(ExitReport {
                        exit_code: 126 | 127,
                        ..
                    }) => break,
                    Some(ExitReport { error: Some(e), .. }) => {
                        return Err(RuntimeError::StartFailed {
                            id: id.clone(),
                            reason: e,
                        });
                    }
                    None => {
                        return Err(RuntimeError::StartFailed {
                            id: id.clone(),
                            reason: "the guest stopped before it booted (see `aloft logs` for its console)".into(),
                        });
                    }
                }
            }
            match self
                .request(id, ControlOp::Sysinfo, Duration::from_secs(2))
                .await
            {
                Ok(_) => break,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => {
                    return Err(RuntimeError::StartFailed {
                        id: id.clone(),
                        reason: format!(
                            "the guest did not boot within {}s (see `aloft logs` for its console)",
                            self.opts.boot_timeout.as_secs()
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// QMP `quit`: QEMU exits at once.
    async fn qmp_quit(&self, id: &MachineId) -> io::Result<()> {
        let s = UnixStream::connect(self.dir(id).join("qmp.sock")).await?;
        let mut s = BufReader::new(s);
        let mut line = Vec::new();
        bounded::read_line(&mut s, &mut line, 64 << 10).await?;
        s.get_mut()
            .write_all(b"{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"quit\"}\n")
            .await?;
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            bounded::read_line(&mut s, &mut line, 64 << 10),
        )
        .await;
        Ok(())
    }

    fn exit_status(&self, id: &MachineId, process: supervise::ProcessExit) -> ExitStatus {
        match bounded::exit_report(&self.dir(id).join("exit.json")) {
            Some(r) => ExitStatus {
                exit_code: r.exit_code,
                signal: r.signal,
                oom_killed: r.oom_killed,
            },
            // QEMU killed (machine kill) or the guest died without a report.
            None => ExitStatus {
                exit_code: if process.signal.is_some() {
                    process.exit_code
                } else {
                    137
                },
                signal: Some(process.signal.unwrap_or(9)),
                oom_killed: false,
            },
        }
    }
}

#[async_trait]
impl Runtime for MicrovmRuntime {
    fn name(&self) -> &'static str {
        "microvm"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            suspend: false,
            disk_image: true,
        }
    }

    async fn create(&self, spec: &MachineSpec) -> Result<(), RuntimeError> {
        fs::create_dir_all(self.dir(&spec.id)).map_err(io_err("creating the machine", &spec.id))
    }

    async fn start(&self, spec: &MachineSpec) -> Result<Running, RuntimeError> {
        let id = &spec.id;
        let dir = self.dir(id);
        if supervise::is_running(&dir) {
            return Err(other(format!("machine {id} is already running")));
        }
        let result = self.boot(spec).await;
        if result.is_err() {
            // A failed start holds nothing: QEMU is stopped, the TAP and the addresses are
            // released (the files stay, for `aloft logs`, until destroy).
            if supervise::is_running(&dir) {
                let _ = self.kill(id).await;
                let _ = tokio::time::timeout(Duration::from_secs(10), supervise::wait(&dir)).await;
            }
            self.controls.lock().remove(id);
            if let Err(e) = self.net.release(id.as_str()) {
                tracing::warn!(machine = %id, "releasing the network of a failed start: {e}");
            }
        }
        result
    }

    async fn signal(&self, id: &MachineId, signal: Signal) -> Result<(), RuntimeError> {
        match self
            .request(
                id,
                ControlOp::Signal {
                    signal: signal.number(),
                },
                Duration::from_secs(10),
            )
            .await?
        {
            ControlResult::Error(e) => Err(other(format!("signal to machine {id}: {e}"))),
            _ => Ok(()),
        }
    }

    async fn kill(&self, id: &MachineId) -> Result<(), RuntimeError> {
        let dir = self.dir(id);
        if !supervise::is_running(&dir) {
            return Ok(());
        }
        // QMP `quit` ends QEMU cleanly; SIGKILL when it does not answer or does not go.
        let quit = self.qmp_quit(id).await.is_ok()
            && tokio::time::timeout(Duration::from_secs(3), supervise::wait(&dir))
                .await
                .is_ok();
        if !quit
            && let Some(pid) =
                supervise::child_pid(&dir).and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        Ok(())
    }

    async fn wait(&self, id: &MachineId) -> Result<ExitStatus, RuntimeError> {
        let dir = self.dir(id);
        if !dir.join("shim.pid").exists() && supervise::exit(&dir).is_none() {
            return Err(RuntimeError::NotRunning(id.clone()));
        }
        let process = supervise::wait(&dir).await;
        self.controls.lock().remove(id);
        Ok(self.exit_status(id, process))
    }

    async fn exec(
        &self,
        id: &MachineId,
        argv: &[String],
        stdin: Option<&str>,
        timeout: Duration,
    ) -> Result<ExecResponse, RuntimeError> {
        let op = ControlOp::Exec {
            argv: argv.to_vec(),
            stdin: stdin.map(str::to_string),
            timeout_ms: timeout.as_millis() as u64,
        };
        match self
            .request(id, op, timeout + Duration::from_secs(5))
            .await?
        {
            ControlResult::Exec(r) => Ok(r),
            ControlResult::Error(e) => Err(other(e)),
            other_reply => Err(other(format!(
                "unexpected reply from init: {other_reply:?}"
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
        let dir = self.dir(id);
        let pid = supervise::child_pid(&dir)
            .filter(|_| supervise::is_running(&dir))
            .ok_or_else(|| RuntimeError::NotRunning(id.clone()))?;
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss_kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ticks: u64 = stat
            .rsplit_once(')')
            .map(|(_, r)| {
                let f: Vec<&str> = r.split_whitespace().collect();
                f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
                    + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            })
            .unwrap_or(0);
        Ok(Stats {
            cpu_ms: ticks * 10,
            memory_bytes: rss_kb * 1024,
        })
    }

    async fn ps(&self, id: &MachineId) -> Result<Vec<ProcessStat>, RuntimeError> {
        match self
            .request(id, ControlOp::Ps, Duration::from_secs(10))
            .await?
        {
            ControlResult::Ps(p) => Ok(p),
            r => Err(other(format!("unexpected reply from init: {r:?}"))),
        }
    }

    async fn destroy(&self, id: &MachineId) -> Result<(), RuntimeError> {
        let dir = self.dir(id);
        if supervise::is_running(&dir) {
            self.kill(id).await?;
            let _ = tokio::time::timeout(Duration::from_secs(10), supervise::wait(&dir)).await;
        }
        self.controls.lock().remove(id);
        self.net
            .release(id.as_str())
            .map_err(|e| other(format!("releasing machine {id}'s network: {e}")))?;
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

    async fn reattach(&self, id: &MachineId) -> Result<Option<Running>, RuntimeError> {
        let dir = self.dir(id);
        if !supervise::is_running(&dir) {
            return Ok(None);
        }
        let instance_id = fs::read_to_string(dir.join("instance")).unwrap_or_default();
        Ok(Some(Running {
            instance_id: instance_id.trim().to_string(),
            pid: supervise::child_pid(&dir),
        }))
    }
}
