//! A simulated backend: machines are in-memory "processes" with scripted behaviour.
//!
//! It implements the [`Runtime`] contract faithfully (one run at a time, waiters see the exit,
//! signals, kill, reattach) so the agent's state machine, the API and the CLI can be tested without
//! root or VMs, and so `aloft dev up --runtime sim` works before an image exists. Share one
//! `SimRuntime` between two agent instances to model machines outliving an agent restart.
//!
//! A machine's `config.env` scripts its process:
//! - `SIM_EXIT_AFTER_MS=N` and `SIM_EXIT_CODE=C`: the process exits by itself after N ms with C.
//! - `SIM_OOM_AFTER_MS=N`: the process is OOM-killed after N ms (exit 137, `oom_killed`).
//! - `SIM_IGNORE_SIGTERM=1`: the process ignores every signal but SIGKILL.
//! - `SIM_FAIL_START=1`: starting fails (as when the entrypoint does not exist).
//!
//! With a [`PreparedImage`](crate::PreparedImage) in the spec, the run uses it honestly (no
//! process is executed, but everything the image decides is visible): the script variables above
//! are read from the process environment (image env, machine env, platform variables), and exec
//! reads the image's root filesystem.
//!
//! Exec understands `echo`, `true`, `false`, `env` (the process environment; without an image,
//! the machine config's `env`), `hostname`, `cat` (echoes stdin; with an image, `cat PATH...`
//! prints files of the root filesystem; without one, `cat /etc/resolv.conf` names the run's
//! internal DNS server as aloft-init would write it), `ls [PATH...]` and `argv` (the main process's argv, one
//! per line) on machines with an image, `sleep N` and `exit N`; anything else exits 127, as a
//! shell would for a missing command. Paths are resolved inside the root filesystem as the
//! machine would see them (relative to the working directory; symlinks followed inside it, never
//! out of it), and it is only read.

use crate::{
    Capabilities, ExitStatus, MachineSpec, PreparedImage, Running, Runtime, RuntimeError, Stats,
};
use aloft_types::MachineId;
use aloft_types::api::{ExecResponse, LogLine, ProcessStat};
use aloft_types::signal::Signal;
use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// The commands exec knows, for the "command not found" message.
const KNOWN: &str = "echo, true, false, env, hostname, cat, ls, argv, sleep, exit";

/// The simulated backend. Cheap to clone; clones share state.
#[derive(Clone, Default)]
pub struct SimRuntime {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    machines: Mutex<HashMap<MachineId, SimMachine>>,
    /// When set, `start` pauses here until [`SimRuntime::release_starts`] (tests of crashes
    /// in the middle of a start).
    gate: Mutex<Option<Arc<Notify>>>,
    /// Counts `start` calls that reached the gate.
    gate_arrivals: watch::Sender<u64>,
}

#[derive(Default)]
struct SimMachine {
    run: Option<Run>,
    logs: Vec<LogLine>,
    starts: u64,
}

struct Run {
    instance_id: String,
    pid: u32,
    ignore_term: bool,
    env: Vec<(String, String)>,
    image: Option<PreparedImage>,
    /// The name server the run was given ([`MachineSpec::internal_dns`]).
    internal_dns: Option<String>,
    exit: watch::Sender<Option<ExitStatus>>,
    started: std::time::Instant,
    /// When it started, in seconds since the Unix epoch.
    started_at: u64,
}

impl SimRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every following `start` pause before the process runs, until `release_starts`.
    pub fn hold_starts(&self) {
        *self.inner.gate.lock() = Some(Arc::new(Notify::new()));
    }

    /// Lets paused and future starts proceed.
    pub fn release_starts(&self) {
        if let Some(n) = self.inner.gate.lock().take() {
            n.notify_waiters();
        }
    }

    /// Waits until `n` starts have arrived at the gate set by `hold_starts`.
    pub async fn starts_held(&self, n: u64) {
        let mut rx = self.inner.gate_arrivals.subscribe();
        let _ = rx.wait_for(|c| *c >= n).await;
    }

    /// How many runs of this machine are live right now (never more than one).
    pub fn live_runs(&self, id: &MachineId) -> usize {
        let m = self.inner.machines.lock();
        m.get(id)
            .and_then(|s| s.run.as_ref())
            .filter(|r| r.exit.borrow().is_none())
            .map_or(0, |_| 1)
    }

    /// How many times this machine has been started.
    pub fn starts(&self, id: &MachineId) -> u64 {
        self.inner.machines.lock().get(id).map_or(0, |s| s.starts)
    }

    /// Whether the runtime holds anything for this machine.
    pub fn knows(&self, id: &MachineId) -> bool {
        self.inner.machines.lock().contains_key(id)
    }

    fn log(&self, id: &MachineId, message: impl Into<String>) {
        if let Some(m) = self.inner.machines.lock().get_mut(id) {
            m.logs.push(LogLine {
                timestamp: aloft_types::time::now_ms(),
                stream: "stdout".into(),
                message: message.into(),
            });
            if m.logs.len() > 1000 {
                m.logs.remove(0);
            }
        }
    }

    /// Ends the current run with `status`, unless it already ended.
    fn end_run(&self, id: &MachineId, status: ExitStatus) {
        let ended = {
            let m = self.inner.machines.lock();
            match m.get(id).and_then(|s| s.run.as_ref()) {
                Some(run) if run.exit.borrow().is_none() => {
                    run.exit.send_replace(Some(status));
                    true
                }
                _ => false,
            }
        };
        if ended {
            self.log(id, format!("process exited with code {}", status.exit_code));
        }
    }

    fn with_run<T>(&self, id: &MachineId, f: impl FnOnce(&Run) -> T) -> Result<T, RuntimeError> {
        let m = self.inner.machines.lock();
        let sm = m
            .get(id)
            .ok_or_else(|| RuntimeError::NotFound(id.clone()))?;
        match &sm.run {
            Some(run) if run.exit.borrow().is_none() => Ok(f(run)),
            _ => Err(RuntimeError::NotRunning(id.clone())),
        }
    }
}

fn env_ms(env: &[(String, String)], key: &str) -> Option<u64> {
    env.iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
}

fn env_flag(env: &[(String, String)], key: &str) -> bool {
    env.iter()
        .any(|(k, v)| k == key && (v == "1" || v == "true"))
}

#[async_trait]
impl Runtime for SimRuntime {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            suspend: false,
            disk_image: false,
        }
    }

    async fn create(&self, spec: &MachineSpec) -> Result<(), RuntimeError> {
        self.inner
            .machines
            .lock()
            .entry(spec.id.clone())
            .or_default();
        Ok(())
    }

    async fn start(&self, spec: &MachineSpec) -> Result<Running, RuntimeError> {
        let gate = self.inner.gate.lock().clone();
        if let Some(gate) = gate {
            let notified = gate.notified();
            self.inner.gate_arrivals.send_modify(|c| *c += 1);
            notified.await;
        }
        let env: Vec<(String, String)> = match &spec.image {
            Some(image) => image.process.env.clone().into_iter().collect(),
            None => spec.config.env.clone().into_iter().collect(),
        };
        if env_flag(&env, "SIM_FAIL_START") {
            return Err(RuntimeError::StartFailed {
                id: spec.id.clone(),
                reason: "the entrypoint does not exist in the image (SIM_FAIL_START)".into(),
            });
        }
        let pid = {
            let mut machines = self.inner.machines.lock();
            let sm = machines.entry(spec.id.clone()).or_default();
            if let Some(run) = &sm.run
                && run.exit.borrow().is_none()
            {
                return Err(RuntimeError::Other(format!(
                    "machine {} is already running; this is a bug in the caller",
                    spec.id
                )));
            }
            sm.starts += 1;
            let pid = 1000 + sm.starts as u32;
            let (tx, _) = watch::channel(None);
            sm.run = Some(Run {
                instance_id: spec.instance_id.clone(),
                pid,
                ignore_term: env_flag(&env, "SIM_IGNORE_SIGTERM"),
                env: env.clone(),
                image: spec.image.clone(),
                internal_dns: spec.internal_dns.clone(),
                exit: tx,
                started: std::time::Instant::now(),
                started_at: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            });
            pid
        };
        let what = match &spec.image {
            Some(image) => format!(
                "{} ({}): {}",
                spec.config.image,
                image.manifest_digest,
                image.process.argv.join(" ")
            ),
            None => spec.config.image.clone(),
        };
        self.log(
            &spec.id,
            format!("starting {what} (instance {})", spec.instance_id),
        );
        let exit_after = env_ms(&env, "SIM_EXIT_AFTER_MS").map(|ms| {
            (
                ms,
                ExitStatus::code(env_ms(&env, "SIM_EXIT_CODE").unwrap_or(0) as i32),
            )
        });
        let oom_after = env_ms(&env, "SIM_OOM_AFTER_MS").map(|ms| {
            (
                ms,
                ExitStatus {
                    exit_code: 137,
                    signal: Some(9),
                    oom_killed: true,
                },
            )
        });
        if let Some((ms, status)) = exit_after.or(oom_after) {
            let this = self.clone();
            let id = spec.id.clone();
            let mut rx = {
                let m = self.inner.machines.lock();
                m[&id].run.as_ref().map(|r| r.exit.subscribe())
            };
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                // Only end the run this timer belongs to.
                if let Some(rx) = rx.as_mut()
                    && rx.borrow_and_update().is_none()
                    && this.live_runs(&id) == 1
                {
                    let same = this.with_run(&id, |r| r.pid == pid).unwrap_or(false);
                    if same {
                        this.end_run(&id, status);
                    }
                }
            });
        }
        Ok(Running {
            instance_id: spec.instance_id.clone(),
            pid: Some(pid),
        })
    }

    async fn signal(&self, id: &MachineId, signal: Signal) -> Result<(), RuntimeError> {
        let ignore = self.with_run(id, |r| r.ignore_term)?;
        self.log(id, format!("received {signal}"));
        if signal == Signal::KILL || !ignore {
            self.end_run(id, ExitStatus::signaled(signal));
        }
        Ok(())
    }

    async fn kill(&self, id: &MachineId) -> Result<(), RuntimeError> {
        match self.with_run(id, |_| ()) {
            Ok(()) => {
                self.end_run(id, ExitStatus::signaled(Signal::KILL));
                Ok(())
            }
            Err(RuntimeError::NotRunning(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn wait(&self, id: &MachineId) -> Result<ExitStatus, RuntimeError> {
        let mut rx = {
            let m = self.inner.machines.lock();
            let sm = m
                .get(id)
                .ok_or_else(|| RuntimeError::NotFound(id.clone()))?;
            sm.run
                .as_ref()
                .ok_or_else(|| RuntimeError::NotRunning(id.clone()))?
                .exit
                .subscribe()
        };
        let status = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| RuntimeError::NotRunning(id.clone()))?;
        Ok(status.unwrap_or_default())
    }

    async fn exec(
        &self,
        id: &MachineId,
        argv: &[String],
        stdin: Option<&str>,
        timeout: Duration,
    ) -> Result<ExecResponse, RuntimeError> {
        let (env, image, dns) = self.with_run(id, |r| {
            (r.env.clone(), r.image.clone(), r.internal_dns.clone())
        })?;
        let args = &argv[1.min(argv.len())..];
        if let Some(image) = image
            && let Some(command @ ("cat" | "ls" | "argv")) = argv.first().map(String::as_str)
            && (command != "cat" || !args.is_empty())
        {
            let (command, args) = (command.to_string(), args.to_vec());
            return tokio::task::spawn_blocking(move || in_image(&image, &command, &args))
                .await
                .map_err(|e| RuntimeError::Other(format!("exec in machine {id} failed: {e}")));
        }
        Ok(match argv.first().map(String::as_str) {
            Some("echo") => ok(format!("{}\n", args.join(" "))),
            Some("true") => ok(String::new()),
            Some("false") => ExecResponse {
                exit_code: 1,
                ..ok(String::new())
            },
            Some("env") => ok(env.iter().map(|(k, v)| format!("{k}={v}\n")).collect()),
            Some("hostname") => ok(format!("{id}\n")),
            Some("cat") if args == ["/etc/resolv.conf"] => ok(resolv_conf(dns.as_deref())),
            Some("cat") => ok(stdin.unwrap_or_default().to_string()),
            Some("exit") => ExecResponse {
                exit_code: args.first().and_then(|a| a.parse().ok()).unwrap_or(0),
                ..ok(String::new())
            },
            Some("sleep") => {
                let secs: f64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(0.0);
                let want = Duration::from_secs_f64(secs.max(0.0));
                if want > timeout {
                    tokio::time::sleep(timeout).await;
                    ExecResponse {
                        exit_code: 137,
                        exit_signal: 9,
                        stdout: String::new(),
                        stderr: format!("exec timed out after {}s\n", timeout.as_secs()),
                        truncated: false,
                    }
                } else {
                    tokio::time::sleep(want).await;
                    ok(String::new())
                }
            }
            Some("argv") => failed(
                1,
                "argv: this machine runs without an image (the agent pulls none), so it has no process argv\n".into(),
            ),
            Some(other) => failed(
                127,
                format!("{other}: command not found (the sim runtime knows {KNOWN})\n"),
            ),
            None => ExecResponse {
                exit_code: 127,
                exit_signal: -1,
                stdout: String::new(),
                stderr: "no command given\n".into(),
                truncated: false,
            },
        })
    }

    async fn logs(&self, id: &MachineId) -> Result<Vec<LogLine>, RuntimeError> {
        let m = self.inner.machines.lock();
        Ok(m.get(id).map(|s| s.logs.clone()).unwrap_or_default())
    }

    async fn stats(&self, id: &MachineId) -> Result<Stats, RuntimeError> {
        self.with_run(id, |r| Stats {
            cpu_ms: r.started.elapsed().as_millis() as u64 / 100,
            memory_bytes: 8 << 20,
        })
    }

    /// The one simulated process: its argv and working directory from the image (without one,
    /// `sim-process` in `/`), its start and run time; it uses no CPU, has the 8 MiB of
    /// [`Runtime::stats`] and listens on nothing (nothing is executed).
    async fn ps(&self, id: &MachineId) -> Result<Vec<ProcessStat>, RuntimeError> {
        self.with_run(id, |r| {
            let (command, directory) = match &r.image {
                Some(image) => (
                    image.process.argv.join(" "),
                    image.process.working_dir.clone(),
                ),
                None => ("sim-process".into(), "/".into()),
            };
            vec![ProcessStat {
                pid: i32::try_from(r.pid).unwrap_or(i32::MAX),
                stime: r.started_at,
                rtime: r.started.elapsed().as_secs(),
                command,
                directory,
                cpu: 0,
                rss: 8 << 20,
                listen_sockets: Vec::new(),
            }]
        })
    }

    async fn destroy(&self, id: &MachineId) -> Result<(), RuntimeError> {
        let mut m = self.inner.machines.lock();
        if let Some(sm) = m.get(id)
            && let Some(run) = &sm.run
            && run.exit.borrow().is_none()
        {
            return Err(RuntimeError::Other(format!(
                "machine {id} is still running; stop it before destroying"
            )));
        }
        m.remove(id);
        Ok(())
    }

    async fn reattach(&self, id: &MachineId) -> Result<Option<Running>, RuntimeError> {
        Ok(self
            .with_run(id, |r| Running {
                instance_id: r.instance_id.clone(),
                pid: Some(r.pid),
            })
            .ok())
    }
}

/// The name servers a machine without an image sees, as aloft-init writes them in real
/// machines: the host's internal DNS when the run was given one.
fn resolv_conf(internal_dns: Option<&str>) -> String {
    match internal_dns {
        Some(server) => format!("nameserver {server}\n"),
        None => "# the host's resolvers\n".to_string(),
    }
}

fn ok(stdout: String) -> ExecResponse {
    ExecResponse {
        exit_code: 0,
        exit_signal: -1,
        stdout,
        stderr: String::new(),
        truncated: false,
    }
}

fn failed(exit_code: i32, stderr: String) -> ExecResponse {
    ExecResponse {
        exit_code,
        exit_signal: -1,
        stdout: String::new(),
        stderr,
        truncated: false,
    }
}

/// `cat PATH...`, `ls [PATH...]` and `argv` in a machine with an image: they read its root
/// filesystem (never write it) and its process.
fn in_image(image: &PreparedImage, command: &str, args: &[String]) -> ExecResponse {
    let process = &image.process;
    let resolve = |path: &str| resolve_in(&image.rootfs, &process.working_dir, path);
    let mut stdout = String::new();
    let mut stderr = String::new();
    match command {
        "argv" => return ok(process.argv.iter().map(|a| format!("{a}\n")).collect()),
        "cat" => {
            for path in args {
                let read = resolve(path).and_then(|p| match std::fs::metadata(&p) {
                    Ok(m) if m.is_file() => std::fs::read(&p).map_err(|e| e.to_string()),
                    Ok(m) if m.is_dir() => Err("Is a directory".into()),
                    Ok(_) => Err("not a regular file (the sim reads regular files only)".into()),
                    Err(e) => Err(io_reason(&e)),
                });
                match read {
                    Ok(bytes) => stdout.push_str(&String::from_utf8_lossy(&bytes)),
                    Err(why) => stderr.push_str(&format!("cat: {path}: {why}\n")),
                }
            }
        }
        _ => {
            let paths: Vec<&str> = if args.is_empty() {
                vec!["."]
            } else {
                args.iter().map(String::as_str).collect()
            };
            for path in &paths {
                let listed = resolve(path).and_then(|p| match std::fs::metadata(&p) {
                    Ok(m) if m.is_dir() => {
                        let mut names = std::fs::read_dir(&p)
                            .and_then(|entries| {
                                entries
                                    .map(|e| {
                                        e.map(|e| e.file_name().to_string_lossy().into_owned())
                                    })
                                    .collect::<Result<Vec<_>, _>>()
                            })
                            .map_err(|e| io_reason(&e))?;
                        names.sort();
                        Ok(names)
                    }
                    Ok(_) => Ok(vec![path.to_string()]),
                    Err(e) => Err(io_reason(&e)),
                });
                match listed {
                    Ok(names) => {
                        if paths.len() > 1 {
                            stdout.push_str(&format!("{path}:\n"));
                        }
                        stdout.extend(names.into_iter().map(|n| format!("{n}\n")));
                    }
                    Err(why) => stderr.push_str(&format!("ls: {path}: {why}\n")),
                }
            }
        }
    }
    ExecResponse {
        exit_code: i32::from(!stderr.is_empty()),
        exit_signal: -1,
        stdout,
        stderr,
        truncated: false,
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "No such file or directory".into(),
        std::io::ErrorKind::NotADirectory => "Not a directory".into(),
        _ => e.to_string(),
    }
}

/// Where `path` (absolute, or relative to `cwd`) is inside `root`, as the machine would see it:
/// symlinks are followed inside `root` (an absolute target starts again at `root`, `..` stops at
/// it), so the result is always under `root`. Missing components are kept (opening the result
/// then fails as it would in the machine).
fn resolve_in(root: &Path, cwd: &str, path: &str) -> Result<PathBuf, String> {
    let full = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{cwd}/{path}")
    };
    let mut todo: VecDeque<String> = full.split('/').map(str::to_string).collect();
    let mut at = PathBuf::new();
    let mut links = 0;
    while let Some(part) = todo.pop_front() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                at.pop();
                continue;
            }
            _ => {}
        }
        let next = at.join(&part);
        match std::fs::symlink_metadata(root.join(&next)) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err("Too many levels of symbolic links".into());
                }
                let target = std::fs::read_link(root.join(&next)).map_err(|e| io_reason(&e))?;
                let target = target.to_string_lossy();
                if target.starts_with('/') {
                    at = PathBuf::new();
                }
                for part in target.split('/').rev() {
                    todo.push_front(part.to_string());
                }
            }
            _ => at = next,
        }
    }
    Ok(root.join(at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aloft_types::MachineConfig;

    fn spec(env: &[(&str, &str)]) -> MachineSpec {
        let mut config = MachineConfig::for_image("sim");
        for (k, v) in env {
            config.env.insert(k.to_string(), v.to_string());
        }
        MachineSpec {
            id: MachineId::random(),
            app: "a".into(),
            org: "o".into(),
            region: "local".into(),
            private_ip: "fdaa::2".into(),
            instance_id: "i1".into(),
            config,
            image: None,
            internal_dns: None,
            volumes: Vec::new(),
        }
    }

    async fn exec(rt: &SimRuntime, id: &MachineId, argv: &[&str]) -> ExecResponse {
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        rt.exec(id, &argv, None, Duration::from_secs(1))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn an_image_is_used_honestly() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("app/data")).unwrap();
        std::fs::write(root.join("etc/greeting"), "hello\n").unwrap();
        std::fs::write(root.join("app/data/x"), "x").unwrap();
        std::fs::write(dir.path().join("secret"), "host file").unwrap();
        let link =
            |target: &str, at: &str| std::os::unix::fs::symlink(target, root.join(at)).unwrap();
        link("/etc/greeting", "app/abs");
        link("../etc/greeting", "app/rel");
        link("../../../secret", "app/escape");
        link("/../secret", "app/escape2");
        link("loop", "app/loop");
        let mut s = spec(&[("SIM_EXIT_AFTER_MS", "60000")]);
        s.image = Some(PreparedImage {
            manifest_digest: "sha256:00".into(),
            rootfs: root.clone(),
            disk: None,
            process: crate::ProcessSpec {
                argv: vec!["/bin/serve".into(), "--port=8080".into()],
                env: [("A", "1"), ("FLY_APP_NAME", "a")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                working_dir: "/app".into(),
                user: "root".into(),
            },
        });
        let rt = SimRuntime::new();
        rt.start(&s).await.unwrap();
        assert_eq!(
            exec(&rt, &s.id, &["argv"]).await.stdout,
            "/bin/serve\n--port=8080\n"
        );
        // the process env, not the config's (which the image path already merged in)
        assert_eq!(
            exec(&rt, &s.id, &["env"]).await.stdout,
            "A=1\nFLY_APP_NAME=a\n"
        );
        assert_eq!(
            exec(&rt, &s.id, &["cat", "/etc/greeting"]).await.stdout,
            "hello\n"
        );
        for path in ["abs", "rel", "/app/rel", "data/../abs"] {
            let r = exec(&rt, &s.id, &["cat", path]).await;
            assert_eq!(
                (r.exit_code, r.stdout.as_str()),
                (0, "hello\n"),
                "{path}: {r:?}"
            );
        }
        // symlinks never lead out of the root filesystem
        for path in ["escape", "escape2", "../../secret"] {
            let r = exec(&rt, &s.id, &["cat", path]).await;
            assert_eq!(r.exit_code, 1, "{path}: {r:?}");
            assert!(r.stderr.contains("No such file"), "{path}: {r:?}");
        }
        let r = exec(&rt, &s.id, &["cat", "loop"]).await;
        assert!(r.stderr.contains("symbolic links"), "{r:?}");
        let r = exec(&rt, &s.id, &["ls"]).await;
        assert_eq!(r.stdout, "abs\ndata\nescape\nescape2\nloop\nrel\n");
        assert_eq!(exec(&rt, &s.id, &["ls", "/app/data"]).await.stdout, "x\n");
        let r = exec(&rt, &s.id, &["ls", "/nope"]).await;
        assert_eq!(
            (r.exit_code, r.stderr.as_str()),
            (1, "ls: /nope: No such file or directory\n")
        );
        let r = exec(&rt, &s.id, &["cat", "/app"]).await;
        assert!(r.stderr.contains("Is a directory"), "{r:?}");
        // cat without a path still echoes stdin
        let argv = vec!["cat".to_string()];
        let r = rt
            .exec(&s.id, &argv, Some("in"), Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(r.stdout, "in");
    }

    #[tokio::test]
    async fn without_an_image_there_is_no_argv_or_ls() {
        let rt = SimRuntime::new();
        let s = spec(&[("A", "1")]);
        rt.start(&s).await.unwrap();
        assert_eq!(exec(&rt, &s.id, &["env"]).await.stdout, "A=1\n");
        assert_eq!(exec(&rt, &s.id, &["argv"]).await.exit_code, 1);
        assert_eq!(exec(&rt, &s.id, &["ls"]).await.exit_code, 127);
    }

    #[tokio::test]
    async fn stop_with_term() {
        let rt = SimRuntime::new();
        let s = spec(&[]);
        rt.create(&s).await.unwrap();
        rt.start(&s).await.unwrap();
        assert_eq!(rt.live_runs(&s.id), 1);
        let st = rt
            .stop(&s.id, Signal::TERM, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(st.signal, Some(15));
        assert_eq!(rt.live_runs(&s.id), 0);
        assert!(rt.reattach(&s.id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn ignoring_term_gets_killed_after_timeout() {
        let rt = SimRuntime::new();
        let s = spec(&[("SIM_IGNORE_SIGTERM", "1")]);
        rt.start(&s).await.unwrap();
        let st = rt
            .stop(&s.id, Signal::TERM, Duration::from_millis(50))
            .await
            .unwrap();
        assert_eq!(st.signal, Some(9));
    }

    #[tokio::test]
    async fn exits_by_itself() {
        let rt = SimRuntime::new();
        let s = spec(&[("SIM_EXIT_AFTER_MS", "10"), ("SIM_EXIT_CODE", "3")]);
        rt.start(&s).await.unwrap();
        assert_eq!(rt.wait(&s.id).await.unwrap().exit_code, 3);
        let s = spec(&[("SIM_OOM_AFTER_MS", "10")]);
        rt.start(&s).await.unwrap();
        assert!(rt.wait(&s.id).await.unwrap().oom_killed);
    }

    #[tokio::test]
    async fn exec_and_double_start() {
        let rt = SimRuntime::new();
        let s = spec(&[("A", "1")]);
        rt.start(&s).await.unwrap();
        assert!(rt.start(&s).await.is_err());
        let r = rt
            .exec(
                &s.id,
                &["echo".into(), "hi".into()],
                None,
                Duration::from_secs(1),
            )
            .await
            .unwrap();
        assert_eq!(r.stdout, "hi\n");
        let r = rt
            .exec(&s.id, &["nope".into()], None, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(r.exit_code, 127);
    }
}
