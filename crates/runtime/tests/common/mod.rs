//! What the real backends' tests share: root and tool checks, a busybox root filesystem, specs,
//! and a per-test bridge and subnet so tests run in parallel.
#![allow(dead_code)] // each test binary uses its own subset

use aloft_runtime::net::NetworkOptions;
use aloft_runtime::{MachineSpec, PreparedImage, ProcessSpec};
use aloft_types::{MachineConfig, MachineId};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Why this host cannot run the test (printed as SKIPPED), if it cannot.
pub fn missing(tools: &[(&str, &str)]) -> Option<String> {
    let uid = fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string));
    if uid.as_deref() != Some("0") {
        return Some("real machines need root".into());
    }
    for (tool, package) in tools {
        let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .any(|d| d.join(tool).is_file());
        if !found {
            return Some(format!("{tool} not installed (apt-get install {package})"));
        }
    }
    if !Path::new("/bin/busybox").is_file() {
        return Some("busybox not installed (apt-get install busybox-static)".into());
    }
    if aloft_runtime::find_init_binary().is_err() {
        return Some("aloft-init not built (scripts/build-init.sh)".into());
    }
    None
}

#[macro_export]
macro_rules! skip_unless {
    ($tools:expr) => {
        if let Some(why) = common::missing($tools) {
            eprintln!("\n*** SKIPPED: {why} ***\n");
            return;
        }
    };
}

/// A bridge and subnet of this test's own: sixteen per test process (no test binary calls this
/// more often; two tests of one process sharing a bridge would delete it under each other).
pub fn network() -> NetworkOptions {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = (std::process::id() % 50) * 16 + N.fetch_add(1, Ordering::SeqCst) % 16;
    NetworkOptions {
        bridge: format!("alt{n}"),
        subnet_v4: (
            Ipv4Addr::new(172, 24 + (n / 256) as u8, (n % 256) as u8, 0),
            24,
        ),
    }
}

/// A root filesystem of busybox (sh, httpd, nc and the usual applets) and a page to serve.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "etc", "srv", "tmp", "root"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "httpd", "ls", "cat", "env", "sleep", "echo", "head", "tail", "yes", "id", "touch",
        "true", "false", "nc",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/srv:/bin/sh\n",
    )
    .unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\napp:x:1000:\n").unwrap();
    fs::write(root.join("srv/index.html"), "hello from busybox\n").unwrap();
    root
}

static MACHINE: AtomicU32 = AtomicU32::new(1);

/// A spec running `script` with `sh -c` in the rootfs, with the given memory.
pub fn spec(rootfs: &Path, script: &str, memory_mb: u32) -> MachineSpec {
    let n = MACHINE.fetch_add(1, Ordering::SeqCst);
    let id = MachineId::random();
    let mut config: MachineConfig =
        serde_json::from_value(serde_json::json!({"image": "busybox"})).unwrap();
    config.guest.memory_mb = memory_mb;
    let env: BTreeMap<String, String> = [
        ("FLY_MACHINE_ID", id.as_str()),
        ("GREETING", "hi"),
        ("PATH", "/bin"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    MachineSpec {
        id: id.clone(),
        app: "app".into(),
        org: "personal".into(),
        region: "local".into(),
        private_ip: aloft_types::sixpn::machine_address(1 + std::process::id() % 1000, 1, n)
            .to_string(),
        instance_id: "v1".into(),
        config,
        internal_dns: None,
        volumes: Vec::new(),
        image: Some(PreparedImage {
            manifest_digest: "sha256:00".into(),
            rootfs: rootfs.to_path_buf(),
            process: ProcessSpec {
                argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
                env,
                working_dir: "/".into(),
                user: String::new(),
            },
            disk: None,
        }),
    }
}

/// GET / from ip:8080; `None` while nothing answers.
pub fn get(ip: &str) -> Option<String> {
    let addr = SocketAddr::new(ip.parse().ok()?, 8080);
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.starts_with("HTTP/1").then_some(body)
}

pub fn get_eventually(ip: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Some(b) = get(ip) {
            return b;
        }
        assert!(Instant::now() < deadline, "nothing answers on {ip}:8080");
        std::thread::sleep(Duration::from_millis(100));
    }
}
