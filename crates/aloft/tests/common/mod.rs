//! What the `aloft` binary's end-to-end tests share: running the binary, and `aloft dev up` as a
//! child process (ports from :0, a temp data dir), killed when dropped.
#![allow(dead_code)] // each test binary uses its own subset

use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_aloft");
/// How long `dev up` may take to be ready, or to stop.
pub const STARTUP: Duration = Duration::from_secs(60);

/// A finished `aloft` command.
pub struct Out {
    pub args: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Asserts success and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "`aloft {}` failed:\n{self}", self.args);
        &self.stdout
    }

    /// Asserts failure and returns stderr.
    pub fn fails(&self) -> &str {
        assert!(
            self.code.is_some_and(|c| c != 0),
            "`aloft {}` should have failed:\n{self}",
            self.args
        );
        assert!(
            self.stderr.contains("Error:"),
            "no error on stderr:\n{self}"
        );
        &self.stderr
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("`aloft {}` printed no JSON ({e}):\n{self}", self.args))
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs the binary with a clean aloft environment plus `env`.
pub fn aloft_with(env: &[(&str, &str)], args: &[&str]) -> Out {
    aloft_at(None, env, args)
}

/// `aloft ARGS` run in `dir` (where it looks for fly.toml), with `env`.
pub fn aloft_at(dir: Option<&Path>, env: &[(&str, &str)], args: &[&str]) -> Out {
    let mut cmd = Command::new(BIN);
    for var in [
        "ALOFT_API_URL",
        "ALOFT_API_TOKEN",
        "ALOFT_DATA_DIR",
        "ALOFT_APP",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let out = cmd
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run aloft");
    Out {
        args: args.join(" "),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `aloft dev up` as a child process; killed when dropped, whatever happened.
pub struct DevUp {
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    pub api_url: String,
    /// The registry's URL (`http://127.0.0.1:PORT`).
    pub registry_url: String,
    /// Where the proxy serves apps (`http://127.0.0.1:PORT`, `https://127.0.0.1:PORT`).
    pub proxy_url: String,
    pub proxy_https_url: String,
}

impl DevUp {
    /// Starts `dev up` on `data_dir` and waits until it has written `api-url`. `tag` names its
    /// log files (in the parent of `data_dir`).
    pub fn start(data_dir: &Path, tag: &str) -> DevUp {
        Self::start_with(data_dir, tag, &[])
    }

    /// [`DevUp::start`] with `--no-pull`: machines run without pulling their image, so any
    /// `config.image` works (tests of everything but images).
    pub fn start_no_pull(data_dir: &Path, tag: &str) -> DevUp {
        Self::start_with(data_dir, tag, &["--no-pull"])
    }

    /// [`DevUp::start`] with `extra` arguments.
    pub fn start_with(data_dir: &Path, tag: &str, extra: &[&str]) -> DevUp {
        // A killed `dev up` leaves its api-url behind; wait for the new one's.
        let _ = fs::remove_file(data_dir.join("api-url"));
        let mut dev = Self::spawn(data_dir.parent().unwrap(), data_dir, tag, extra);
        let url_file = data_dir.join("api-url");
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(url) = fs::read_to_string(&url_file)
                && url.ends_with('\n')
            {
                dev.api_url = url.trim().to_string();
                let read = |f: &str| {
                    fs::read_to_string(data_dir.join(f))
                        .map(|u| u.trim().to_string())
                        .unwrap_or_default()
                };
                dev.registry_url = read("registry-url");
                dev.proxy_url = read("proxy-url");
                dev.proxy_https_url = read("proxy-https-url");
                return dev;
            }
            if let Some(status) = dev.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "dev up exited with {status} before it was ready:\n{}",
                    dev.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "dev up did not write api-url within {STARTUP:?}:\n{}",
                dev.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts `dev up --data-dir DATA_DIR` (and `--api-addr 127.0.0.1:0` unless `extra` names
    /// one) without waiting; logs go to `<log_dir>/dev-up-<tag>.{out,err}`.
    pub fn spawn(log_dir: &Path, data_dir: &Path, tag: &str, extra: &[&str]) -> DevUp {
        fs::create_dir_all(log_dir).unwrap();
        let stdout_path = log_dir.join(format!("dev-up-{tag}.out"));
        let stderr_path = log_dir.join(format!("dev-up-{tag}.err"));
        let mut cmd = Command::new(BIN);
        for var in [
            "ALOFT_API_URL",
            "ALOFT_API_TOKEN",
            "ALOFT_DATA_DIR",
            "RUST_LOG",
        ] {
            cmd.env_remove(var);
        }
        cmd.args(["dev", "up", "--data-dir"]).arg(data_dir);
        if !extra.contains(&"--api-addr") {
            cmd.args(["--api-addr", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--registry-addr") {
            cmd.args(["--registry-addr", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--proxy-addr") {
            cmd.args(["--proxy-addr", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--proxy-https-addr") {
            cmd.args(["--proxy-https-addr", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--metrics-addr") {
            cmd.args(["--metrics-addr", "127.0.0.1:0"]);
        }
        // Tests of everything but the real backends run simulated machines.
        if !extra.contains(&"--runtime") {
            cmd.args(["--runtime", "sim"]);
        }
        let child = cmd
            .args(extra)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout_path).unwrap())
            .stderr(fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("spawn aloft dev up");
        DevUp {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            stdout_path,
            stderr_path,
            api_url: String::new(),
            registry_url: String::new(),
            proxy_url: String::new(),
            proxy_https_url: String::new(),
        }
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        format!(
            "--- dev up stdout\n{}\n--- dev up stderr\n{}",
            self.stdout(),
            fs::read_to_string(&self.stderr_path).unwrap_or_default()
        )
    }

    /// Runs a client command against this cloud.
    pub fn aloft(&self, args: &[&str]) -> Out {
        let data_dir = self.data_dir.to_str().unwrap();
        aloft_with(
            &[
                ("ALOFT_API_URL", &self.api_url),
                ("ALOFT_DATA_DIR", data_dir),
            ],
            args,
        )
    }

    /// Starts a client command without waiting for it.
    pub fn aloft_background(&self, args: &[&str]) -> Child {
        Command::new(BIN)
            .env("ALOFT_API_URL", &self.api_url)
            .env("ALOFT_DATA_DIR", &self.data_dir)
            .env_remove("ALOFT_API_TOKEN")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn aloft")
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id();
        let status = Command::new("sh")
            .args(["-c", &format!("kill -{sig} {pid}")])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{sig} {pid} failed");
    }

    /// Waits for the process to end (it must, within [`STARTUP`]).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                panic!("dev up did not exit within {STARTUP:?}:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn sigterm(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit()
    }

    pub fn sigkill(&mut self) {
        self.signal("KILL");
        self.wait_exit();
    }
}

impl Drop for DevUp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            self.kill_machines();
        }
    }
}

impl DevUp {
    /// After a failed test: machines outlive `dev up` by design, and a later test's machines
    /// would get the same private addresses, so everything of this data dir's machines goes:
    /// their processes (the shims' and runtimes' command lines name the data dir), network
    /// namespaces and mounts.
    fn kill_machines(&self) {
        let needle = self.data_dir.join("runtime");
        let needle = needle.as_os_str().as_encoded_bytes();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            if cmdline.windows(needle.len()).any(|w| w == needle) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        let machines = self.data_dir.join("runtime/machines");
        for m in fs::read_dir(&machines).into_iter().flatten().flatten() {
            let id = m.file_name().to_string_lossy().into_owned();
            let _ = Command::new("umount")
                .arg("-l")
                .arg(m.path().join("rootfs"))
                .stderr(Stdio::null())
                .status();
            let _ = Command::new("ip")
                .args(["netns", "del", &format!("aloft-{id}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A temp dir holding the data dir (`<tmp>/data`) and the logs.
pub fn temp_data_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix("aloft-cli-test-")
        .tempdir()
        .unwrap();
    let data = tmp.path().join("data");
    (tmp, data)
}

/// `machine run ... --json`, returning the new machine's id.
pub fn run_machine(dev: &DevUp, args: &[&str]) -> String {
    let mut all = vec!["machine", "run", "--json"];
    all.extend_from_slice(args);
    let m = dev.aloft(&all).json();
    m["id"].as_str().expect("machine id").to_string()
}

pub fn machine_json(dev: &DevUp, app: &str, id: &str) -> Value {
    dev.aloft(&["machine", "status", id, "-a", app, "--json"])
        .json()
}

pub fn state_of(dev: &DevUp, app: &str, id: &str) -> String {
    machine_json(dev, app, id)["state"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A raw HTTP/1.1 request to the API (for what the CLI cannot do, like taking a lease).
pub fn http(api_url: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = api_url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn skopeo_missing() -> bool {
    let found = Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("\n*** SKIPPED: skopeo not installed (apt-get install skopeo) ***\n");
    }
    !found
}

/// Pushes `oci:LAYOUT:TAG` to the dev registry as `personal/NAME:TAG` with the org's token.
pub fn push(dev: &DevUp, layout: &Path, tag: &str, name: &str) {
    let token = fs::read_to_string(dev.data_dir.join("token")).unwrap();
    let host = dev.registry_url.trim_start_matches("http://");
    let out = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--dest-creds"])
        .arg(format!("x:{}", token.trim()))
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{host}/personal/{name}:{tag}"))
        .stdin(Stdio::null())
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds a busybox image with `files` (path, contents, mode) and the command `/bin/sh -c CMD`,
/// as `oci:<tmp>/layout:v1`; the layout's path.
pub fn busybox_image(tmp: &Path, files: &[(&str, &str, u32)], cmd: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let app = tmp.join("app");
    for (path, contents, mode) in files {
        let path = app.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).unwrap();
    }
    busybox_layout(tmp, &app, &["--entrypoint", "/bin/sh -c", "--cmd", cmd])
}

/// `aloft image build --busybox` of `rootfs` with `process` (entrypoint, cmd) and port 8080
/// exposed, as `oci:<tmp>/layout:v1`; the layout's path.
fn busybox_layout(tmp: &Path, rootfs: &Path, process: &[&str]) -> PathBuf {
    let layout = tmp.join("layout");
    let out = format!("oci:{}:v1", layout.display());
    let mut args = vec![
        "image",
        "build",
        "--busybox",
        "--rootfs",
        rootfs.to_str().unwrap(),
    ];
    args.extend_from_slice(process);
    args.extend(["--expose", "8080", "-o", &out]);
    aloft_with(&[], &args).ok();
    layout
}

/// The example app (`scripts/build-hello.sh`, which `scripts/setup.sh` runs) on busybox, as
/// `oci:<tmp>/layout:v1`; its path, or None (SKIPPED printed) when the app is not built.
pub fn hello_image(tmp: &Path) -> Option<PathBuf> {
    let binary = hello_binary()?;
    let rootfs = tmp.join("hello-rootfs");
    fs::create_dir_all(&rootfs).unwrap();
    fs::copy(&binary, rootfs.join("hello")).unwrap();
    Some(busybox_layout(tmp, &rootfs, &["--entrypoint", "/hello"]))
}

/// The example app's static binary, or None (SKIPPED printed) when it is not built.
pub fn hello_binary() -> Option<PathBuf> {
    let binary = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/static/x86_64-unknown-linux-gnu/release/hello");
    if !binary.exists() {
        eprintln!("\n*** SKIPPED: the example app is not built (scripts/build-hello.sh) ***\n");
        return None;
    }
    Some(binary)
}

/// Whether what gVisor machines need is missing (root, runsc, skopeo); prints why `what` is
/// skipped.
pub fn gvisor_missing(what: &str) -> bool {
    if !is_root() {
        eprintln!("\n*** SKIPPED: {what}: needs root ***\n");
        return true;
    }
    if Command::new("runsc").arg("--version").output().is_err() {
        eprintln!("\n*** SKIPPED: runsc not installed (apt-get install runsc) ***\n");
        return true;
    }
    skopeo_missing()
}

pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
