//! aloft-init as the PID 1 of a microVM: it starts in the initramfs, loads the virtio modules,
//! mounts the machine's disk and moves into it, configures the network, runs the machine like
//! the container init does, serves the host's control requests on a virtio-serial port, and
//! powers the VM off when the process ends (after writing its exit report to the exit port).
//!
//! The exit port is opened before the machine's process starts and held until the report is
//! written: a virtio port opens once, so the process cannot write a report of its own there.
//! Lines read from the control port and exec output are bounded (as the host bounds what it
//! reads back).

use crate::process;
use crate::run::{self, Options};
use aloft_types::api::{EXEC_OUTPUT_CAP, ExecResponse};
use aloft_types::init::{
    CONTROL_PORT, ControlOp, ControlReply, ControlRequest, ControlResult, EXIT_PORT, ExitReport,
    GuestMessage, InitConfig, Sysinfo, VM_CONFIG_PATH,
};
use parking_lot::Mutex;
use rustix::mount::{MountFlags, mount, mount_move};
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The longest request line taken from the host (requests are small; exec's stdin is the
/// largest part).
const REQUEST_LINE_MAX: u64 = 16 << 20;

/// Whether this process is the init of a microVM (PID 1 with the VM config in its initramfs).
pub fn is_vm() -> bool {
    std::process::id() == 1 && Path::new(VM_CONFIG_PATH).exists()
}

pub fn main() -> i32 {
    let cfg = match run::load_config(Path::new(VM_CONFIG_PATH)) {
        Ok(c) => c,
        Err(e) => return fatal(&e, None),
    };
    if let Err(e) = boot(&cfg) {
        return fatal(&e, None);
    }
    // Held from before the process starts until the report is written (see the module doc).
    let exit_port = open_exit_port();
    let opts = Options {
        config: "/.aloft/config.json".into(),
        exit_file: "/.aloft/exit.json".into(),
        system_setup: true,
    };
    // Requests are served once the process runs: the host counts the machine as started when
    // init answers. No unsolicited events are sent: a write to a virtio port blocks while the
    // host is not connected, and the exit report has its own port.
    let control = Control::open();
    let report = {
        let cfg2 = cfg.clone();
        run::run(&cfg, &opts, &move |_pid| {
            if let Some(c) = &control {
                c.serve(cfg2.clone());
            }
        })
    };
    finish(&report, exit_port)
}

fn fatal(message: &str, exit_port: Option<File>) -> i32 {
    eprintln!("aloft-init: {message}");
    finish(
        &ExitReport {
            exit_code: 1,
            error: Some(message.to_string()),
            ..Default::default()
        },
        exit_port,
    )
}

/// The exit port, open for writing (close-on-exec: no process init starts inherits it).
fn open_exit_port() -> Option<File> {
    let port = find_port(EXIT_PORT)?;
    OpenOptions::new().write(true).open(port).ok()
}

/// Writes the report to the exit port, syncs and powers off.
fn finish(report: &ExitReport, exit_port: Option<File>) -> i32 {
    if let Some(mut f) = exit_port.or_else(open_exit_port) {
        let mut line = serde_json::to_vec(report).expect("serializable");
        line.push(b'\n');
        let _ = f.write_all(&line);
        let _ = f.flush();
    }
    run::stop_remaining(run::STOP_GRACE);
    rustix::fs::sync();
    let _ = rustix::system::reboot(rustix::system::RebootCommand::PowerOff);
    report.exit_code
}

fn mount_fs(source: &str, target: &str, fstype: &str, flags: MountFlags) -> Result<(), String> {
    let _ = fs::create_dir_all(target);
    mount(source, target, fstype, flags, None::<&std::ffi::CStr>)
        .map_err(|e| format!("mounting {fstype} on {target}: {e}"))
}

/// From the initramfs into the machine's disk, with the network up.
fn boot(cfg: &InitConfig) -> Result<(), String> {
    let vm = cfg.vm.as_ref().ok_or("the VM config has no `vm` section")?;
    mount_fs("devtmpfs", "/dev", "devtmpfs", MountFlags::NOSUID)?;
    mount_fs("proc", "/proc", "proc", MountFlags::empty())?;
    mount_fs("sysfs", "/sys", "sysfs", MountFlags::empty())?;
    let params = CString::default();
    for m in &vm.modules {
        let image = fs::read(m).map_err(|e| format!("reading module {m}: {e}"))?;
        match rustix::system::init_module(&image, &params) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(format!("loading module {m}: {e}")),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !Path::new(&vm.root_device).exists() {
        if Instant::now() > deadline {
            return Err(format!(
                "the root disk {} did not appear within 10 s",
                vm.root_device
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    mount(
        vm.root_device.as_str(),
        "/newroot",
        "ext4",
        MountFlags::empty(),
        None::<&std::ffi::CStr>,
    )
    .or_else(|_| {
        let _ = fs::create_dir_all("/newroot");
        mount(
            vm.root_device.as_str(),
            "/newroot",
            "ext4",
            MountFlags::empty(),
            None::<&std::ffi::CStr>,
        )
    })
    .map_err(|e| format!("mounting the root disk {}: {e}", vm.root_device))?;
    for v in &vm.volumes {
        mount_volume(v)?;
    }
    if let Some(net) = &cfg.network {
        crate::netlink::configure(net)?;
    }
    fs::create_dir_all("/newroot/.aloft").map_err(|e| format!("creating /.aloft: {e}"))?;
    fs::copy(VM_CONFIG_PATH, "/newroot/.aloft/config.json")
        .map_err(|e| format!("copying the config: {e}"))?;
    for dir in ["/dev", "/proc", "/sys"] {
        let target = format!("/newroot{dir}");
        let _ = fs::create_dir_all(&target);
        mount_move(dir, target.as_str()).map_err(|e| format!("moving {dir}: {e}"))?;
    }
    std::env::set_current_dir("/newroot").map_err(|e| format!("entering the root disk: {e}"))?;
    mount_move(".", "/").map_err(|e| format!("moving the root disk to /: {e}"))?;
    rustix::process::chroot(".").map_err(|e| format!("chroot: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(())
}

/// Mounts a volume's disk (found by its serial: disk names follow probe order) under the new
/// root at its path.
fn mount_volume(v: &aloft_types::init::VmVolume) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let device = loop {
        let found = fs::read_dir("/sys/block").ok().and_then(|entries| {
            entries.flatten().find_map(|e| {
                let serial = fs::read_to_string(e.path().join("serial")).ok()?;
                (serial.trim() == v.serial)
                    .then(|| format!("/dev/{}", e.file_name().to_string_lossy()))
            })
        });
        match found {
            Some(d) => break d,
            None if Instant::now() > deadline => {
                return Err(format!(
                    "volume {}'s disk did not appear within 10 s",
                    v.serial
                ));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let target = format!("/newroot{}", v.path);
    fs::create_dir_all(&target).map_err(|e| format!("creating {}: {e}", v.path))?;
    mount_fs(
        &device,
        &target,
        "ext4",
        MountFlags::NOSUID | MountFlags::NODEV,
    )
    .map_err(|e| format!("mounting volume {} at {}: {e}", v.serial, v.path))
}

/// The device of the virtio-serial port called `name` (no udev here: found through sysfs).
fn find_port(name: &str) -> Option<PathBuf> {
    for e in fs::read_dir("/sys/class/virtio-ports").ok()?.flatten() {
        let n = fs::read_to_string(e.path().join("name")).unwrap_or_default();
        if n.trim() == name {
            return Some(Path::new("/dev").join(e.file_name()));
        }
    }
    None
}

/// The control port: requests in, replies and events out. A virtio port can be open only
/// once, so reads and writes share one descriptor.
#[derive(Clone)]
struct Control {
    reader: Arc<File>,
    writer: Arc<Mutex<File>>,
}

impl Control {
    fn open() -> Option<Control> {
        let path = find_port(CONTROL_PORT)?;
        let file = OpenOptions::new().read(true).write(true).open(&path).ok()?;
        Some(Control {
            reader: Arc::new(file.try_clone().ok()?),
            writer: Arc::new(Mutex::new(file)),
        })
    }

    fn send(&self, msg: &GuestMessage) {
        let mut line = serde_json::to_vec(msg).expect("serializable");
        line.push(b'\n');
        let _ = self.writer.lock().write_all(&line);
    }

    /// Serves requests in a thread (each request in its own thread).
    fn serve(&self, cfg: InitConfig) {
        let me = self.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(&*me.reader);
            let mut line = Vec::new();
            loop {
                match read_request(&mut reader, &mut line) {
                    // The host is not connected: wait for it.
                    Ok(0) | Err(_) => {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    Ok(_) => {}
                }
                let Ok(req) = serde_json::from_slice::<ControlRequest>(&line) else {
                    continue;
                };
                let me = me.clone();
                let cfg = cfg.clone();
                std::thread::spawn(move || {
                    let result = handle(&cfg, req.op);
                    me.send(&GuestMessage::Reply(ControlReply { id: req.id, result }));
                });
            }
        });
    }
}

/// One request line into `line` (without its `\n`), at most [`REQUEST_LINE_MAX`] bytes: the
/// rest of a longer line is skipped (and the line left empty, so it parses as nothing).
fn read_request(reader: &mut impl BufRead, line: &mut Vec<u8>) -> std::io::Result<usize> {
    line.clear();
    let n = reader
        .by_ref()
        .take(REQUEST_LINE_MAX)
        .read_until(b'\n', line)?;
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if n as u64 == REQUEST_LINE_MAX {
        line.clear();
        let mut rest = Vec::new();
        loop {
            rest.clear();
            let m = reader
                .by_ref()
                .take(64 << 10)
                .read_until(b'\n', &mut rest)?;
            if m == 0 || rest.last() == Some(&b'\n') {
                break;
            }
        }
    }
    Ok(n)
}

fn handle(cfg: &InitConfig, op: ControlOp) -> ControlResult {
    match op {
        ControlOp::Exec {
            argv,
            stdin,
            timeout_ms,
        } => match exec(
            cfg,
            &argv,
            stdin.as_deref(),
            Duration::from_millis(timeout_ms),
        ) {
            Ok(r) => ControlResult::Exec(r),
            Err(e) => ControlResult::Error(e),
        },
        ControlOp::Signal { signal } => {
            let (Some(pid), Some(sig)) = (
                run::main_pid().and_then(|p| rustix::process::Pid::from_raw(p as i32)),
                rustix::process::Signal::from_named_raw(signal),
            ) else {
                return ControlResult::Error(format!("cannot send signal {signal}"));
            };
            match rustix::process::kill_process(pid, sig) {
                Ok(()) => ControlResult::Ok(true),
                Err(e) => ControlResult::Error(e.to_string()),
            }
        }
        ControlOp::Ps => ControlResult::Ps(crate::ps::list()),
        ControlOp::Sysinfo => ControlResult::Sysinfo(sysinfo()),
    }
}

fn exec(
    cfg: &InitConfig,
    argv: &[String],
    stdin: Option<&str>,
    timeout: Duration,
) -> Result<ExecResponse, String> {
    let mut cmd = match process::command(&cfg.process, argv, Path::new("/")) {
        Ok(c) => c,
        Err(u) => {
            return Ok(ExecResponse {
                exit_code: u.code,
                exit_signal: 0,
                stdout: String::new(),
                stderr: format!("{}\n", u.message),
                truncated: false,
            });
        }
    };
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{}`: {e}", argv.join(" ")))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let input = input.to_string();
        std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    // At most the cap of each stream is kept; a command that writes more is killed then.
    let truncated = Arc::new(AtomicBool::new(false));
    let pid = rustix::process::Pid::from_raw(child.id() as i32);
    let read_capped = |r: Option<Box<dyn Read + Send>>| {
        let truncated = truncated.clone();
        std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(r) = r {
                let _ = r.take(EXEC_OUTPUT_CAP as u64 + 1).read_to_end(&mut s);
            }
            if s.len() > EXEC_OUTPUT_CAP {
                s.truncate(EXEC_OUTPUT_CAP);
                truncated.store(true, Ordering::SeqCst);
                if let Some(pid) = pid {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = read_capped(child.stdout.take().map(|p| Box::new(p) as _));
    let err = read_capped(child.stderr.take().map(|p| Box::new(p) as _));
    // Init's reaper collects the child; its status comes back through `wait_child`.
    let Some((exit_code, exit_signal)) = run::wait_child(child.id() as i32, timeout) else {
        let _ = child.kill();
        return Err(format!(
            "`{}` did not finish within {}s (killed)",
            argv.join(" "),
            timeout.as_secs()
        ));
    };
    Ok(ExecResponse {
        exit_code,
        exit_signal,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        truncated: truncated.load(Ordering::SeqCst),
    })
}

fn sysinfo() -> Sysinfo {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let first = |s: String| -> f64 {
        s.split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let meminfo = read("/proc/meminfo");
    let kb = |key: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
            * 1024
    };
    Sysinfo {
        uptime_secs: first(read("/proc/uptime")),
        load_1m: first(read("/proc/loadavg")),
        memory_total_bytes: kb("MemTotal:"),
        memory_available_bytes: kb("MemAvailable:"),
        processes: crate::ps::list().len() as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn a_request_line_past_the_limit_is_skipped_not_buffered() {
        let long = "x".repeat(REQUEST_LINE_MAX as usize + 100_000);
        let input = format!("{{\"a\":1}}\n{long}\nnext\n");
        let mut reader = BufReader::new(Cursor::new(input.into_bytes()));
        let mut line = Vec::new();
        read_request(&mut reader, &mut line).unwrap();
        assert_eq!(line, b"{\"a\":1}");
        read_request(&mut reader, &mut line).unwrap();
        assert!(line.is_empty(), "the long line is dropped");
        read_request(&mut reader, &mut line).unwrap();
        assert_eq!(line, b"next", "the line after it is read whole");
        assert_eq!(read_request(&mut reader, &mut line).unwrap(), 0);
    }
}
