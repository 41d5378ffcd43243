//! `aloft-init shim --dir DIR [--netns PATH] -- CMD ARGS...`: the host-side supervisor of one
//! machine's runtime process (`runsc` or `qemu-system-x86_64`), in the manner of containerd's shim
//! or conmon.
//!
//! It detaches first (a copy of itself in its own process group, the caller's process returns
//! once the copy has written `DIR/shim.pid`), so machines outlive the agent that started them.
//! The copy enters the network namespace PATH if one is given, runs CMD with stdin on /dev/null,
//! records its pid in `DIR/child.pid` (as a child subreaper, it also adopts what CMD leaves
//! running when it daemonizes, and waits for all of it), appends every line CMD writes to stdout or stderr to
//! `DIR/log.jsonl` as a timestamped [`LogLine`] (rotated to `log.jsonl.1` past
//! [`LOG_ROTATE_BYTES`]), and when CMD exits writes `DIR/status.json` ([`ShimStatus`]) atomically
//! and exits itself.

use aloft_types::api::LogLine;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The log file is rotated (one old generation kept) when it grows past this.
pub const LOG_ROTATE_BYTES: u64 = 8 << 20;
/// Longer lines are split.
const MAX_LINE: usize = 16 << 10;

/// How the supervised process ended (`DIR/status.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimStatus {
    /// The exit code, or 128 + signal.
    pub exit_code: i32,
    pub signal: Option<i32>,
}

struct Args {
    dir: PathBuf,
    netns: Option<PathBuf>,
    foreground: bool,
    cmd: Vec<String>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut out = Args {
        dir: PathBuf::new(),
        netns: None,
        foreground: false,
        cmd: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dir" => out.dir = it.next().ok_or("--dir needs a value")?.into(),
            "--netns" => out.netns = Some(it.next().ok_or("--netns needs a value")?.into()),
            "--foreground" => out.foreground = true,
            "--" => {
                out.cmd = it.cloned().collect();
                break;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if out.dir.as_os_str().is_empty() || out.cmd.is_empty() {
        return Err("usage: aloft-init shim --dir DIR [--netns PATH] -- CMD ARGS...".into());
    }
    Ok(out)
}

pub fn main(args: &[String]) -> i32 {
    let args = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("aloft-init shim: {e}");
            return 2;
        }
    };
    let result = if args.foreground {
        supervise(&args)
    } else {
        detach(&args)
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("aloft-init shim: {e}");
            1
        }
    }
}

/// Starts the foreground copy in its own process group and returns once it runs.
fn detach(args: &Args) -> io::Result<()> {
    fs::create_dir_all(&args.dir)?;
    let pid_file = args.dir.join("shim.pid");
    let _ = fs::remove_file(&pid_file);
    let exe = std::env::current_exe()?;
    let err = File::create(args.dir.join("shim.err"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("shim")
        .arg("--foreground")
        .arg("--dir")
        .arg(&args.dir);
    if let Some(ns) = &args.netns {
        cmd.arg("--netns").arg(ns);
    }
    let mut child = cmd
        .arg("--")
        .args(&args.cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .process_group(0)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if pid_file.exists() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let why = fs::read_to_string(args.dir.join("shim.err")).unwrap_or_default();
            return Err(io::Error::other(format!(
                "the shim exited ({status}) before it started: {}",
                why.trim()
            )));
        }
        if Instant::now() > deadline {
            return Err(io::Error::other("the shim did not start within 10 s"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn write_atomic(path: &Path, content: &[u8]) -> io::Result<()> {
    aloft_durable::write(path, content, 0o644)
}

fn supervise(args: &Args) -> io::Result<()> {
    // The agent's Ctrl-C, its session ending, or a signal to its process group must not end
    // machines: these are caught (a handler, not SIG_IGN, so the child starts with defaults).
    let ignored = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ] {
        signal_hook::flag::register(sig, ignored.clone())?;
    }
    if let Some(ns) = &args.netns {
        let fd = File::open(ns).map_err(|e| {
            io::Error::other(format!(
                "cannot open network namespace {}: {e}",
                ns.display()
            ))
        })?;
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&fd),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|e| io::Error::other(format!("cannot enter {}: {e}", ns.display())))?;
    }
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .map_err(|e| io::Error::other(format!("cannot become a subreaper: {e}")))?;
    let mut child = Command::new(&args.cmd[0])
        .args(&args.cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::other(format!("cannot run {}: {e}", args.cmd[0])))?;
    write_atomic(
        &args.dir.join("child.pid"),
        child.id().to_string().as_bytes(),
    )?;
    write_atomic(
        &args.dir.join("shim.pid"),
        std::process::id().to_string().as_bytes(),
    )?;

    let (tx, rx) = mpsc::channel::<LogLine>();
    let readers: Vec<_> = [
        (
            "stdout",
            Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
        ),
        ("stderr", Box::new(child.stderr.take().expect("piped"))),
    ]
    .into_iter()
    .map(|(stream, pipe)| {
        let tx = tx.clone();
        std::thread::spawn(move || read_lines(stream, pipe, &tx))
    })
    .collect();
    drop(tx);
    let log = args.dir.join("log.jsonl");
    let writer = std::thread::spawn(move || write_log(&log, rx));

    let status = child.wait()?;
    let mut st = exit_of(status);
    // A runtime that daemonizes (`runsc run --detach`) leaves its processes to us, the
    // subreaper: the machine runs until the last of them has exited. Its status is the first
    // abnormal one (a signal or a non-zero code: the sandbox killed by the OOM killer, say),
    // else 0.
    if st.exit_code == 0 {
        while let Ok(Some((_, s))) = rustix::process::wait(rustix::process::WaitOptions::empty()) {
            let this = match (s.exit_status(), s.terminating_signal()) {
                (Some(code), _) => ShimStatus {
                    exit_code: code,
                    signal: None,
                },
                (None, Some(sig)) => ShimStatus {
                    exit_code: 128 + sig,
                    signal: Some(sig),
                },
                _ => continue,
            };
            if st.exit_code == 0 {
                st = this;
            }
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let _ = writer.join();
    write_atomic(
        &args.dir.join("status.json"),
        &serde_json::to_vec(&st).expect("serializable"),
    )
}

fn exit_of(status: std::process::ExitStatus) -> ShimStatus {
    match (status.code(), status.signal()) {
        (Some(code), _) => ShimStatus {
            exit_code: code,
            signal: None,
        },
        (None, Some(sig)) => ShimStatus {
            exit_code: 128 + sig,
            signal: Some(sig),
        },
        (None, None) => ShimStatus {
            exit_code: -1,
            signal: None,
        },
    }
}

fn read_lines(stream: &'static str, pipe: Box<dyn Read + Send>, tx: &mpsc::Sender<LogLine>) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader
            .by_ref()
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                let line = LogLine {
                    timestamp: aloft_types::time::now_ms(),
                    stream: stream.into(),
                    message: String::from_utf8_lossy(&buf).into_owned(),
                };
                if tx.send(line).is_err() {
                    return;
                }
            }
        }
    }
}

fn write_log(path: &Path, rx: mpsc::Receiver<LogLine>) {
    let open = |p: &Path| OpenOptions::new().create(true).append(true).open(p);
    let Ok(mut file) = open(path) else { return };
    let mut size = file.metadata().map(|m| m.len()).unwrap_or(0);
    for line in rx {
        let mut bytes = serde_json::to_vec(&line).expect("serializable");
        bytes.push(b'\n');
        if size + bytes.len() as u64 > LOG_ROTATE_BYTES {
            let _ = fs::rename(path, path.with_extension("jsonl.1"));
            match open(path) {
                Ok(f) => file = f,
                Err(_) => return,
            }
            size = 0;
        }
        if file.write_all(&bytes).is_ok() {
            size += bytes.len() as u64;
        }
    }
}
