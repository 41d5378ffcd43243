//! Real machines end to end: `aloft dev up --runtime gvisor` runs an image pushed to its registry
//! as gVisor sandboxes with aloft-init as PID 1. Each machine serves HTTP on its private address,
//! gets the platform's environment, logs through `aloft logs`, keeps running when `dev up` is
//! SIGKILLed and is reattached by the next one, resets its root filesystem on start, reports a
//! failing process's exit code, and leaves nothing behind when destroyed.
//!
//! Needs root, runsc and skopeo (installed by `scripts/setup.sh`); without them it prints
//! SKIPPED and returns.

mod common;

use common::*;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Every `dev up` numbers its host 1 and its first org 1, so two at once would give machines the
/// same 6PN addresses (the host's route to one would hide the other): one test at a time.
static ONE_CLOUD: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// This test's own bridge and subnet, so it can run beside other tests and a running `dev up`;
/// autostop looks for idle machines every second.
const NET: [&str; 8] = [
    "--runtime",
    "gvisor",
    "--bridge",
    "alte2e0",
    "--machine-subnet",
    "172.29.7.0/24",
    "--autostop-interval",
    "1s",
];

/// GET / from a machine's address; `None` while nothing answers.
fn get(ip: &str) -> Option<String> {
    let addr = SocketAddr::new(ip.parse().ok()?, 8080);
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: machine\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.starts_with("HTTP/1").then_some(body)
}

/// GET `path` for `host` through the dev proxy.
/// The public port the gVisor test publishes without a handler (raw TCP through the proxy):
/// below the ephemeral range, so no test's `:0` listener takes it.
const RAW_PORT: u16 = 24817;

fn proxy_get(dev: &DevUp, host: &str, path: &str) -> String {
    let addr: SocketAddr = dev.proxy_url.trim_start_matches("http://").parse().unwrap();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

fn get_eventually(ip: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(body) = get(ip) {
            return body;
        }
        assert!(Instant::now() < deadline, "nothing answers on [{ip}]:8080");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn private_ip(dev: &DevUp, id: &str) -> String {
    machine_json(dev, "web", id)["private_ip"]
        .as_str()
        .unwrap()
        .to_string()
}

fn exec(dev: &DevUp, id: &str, script: &str) -> String {
    dev.aloft(&["machine", "exec", id, "-a", "web", "--", "sh", "-c", script])
        .ok()
        .to_string()
}

/// Processes whose command line mentions `needle` (other than this test).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) && !cmdline.contains("machines-") {
            found.push(format!(
                "{}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    found
}

fn build_and_push(dev: &DevUp, tmp: &Path) {
    let layout = busybox_image(
        tmp,
        &[("srv/index.html", "served by busybox httpd\n", 0o644)],
        "'echo booted $FLY_MACHINE_ID; exec httpd -f -v -p 8080 -h /srv'",
    );
    push(dev, &layout, "v1", "web");
}

#[test]
fn gvisor_machines_serve_survive_the_agent_and_leave_nothing_behind() {
    if gvisor_missing("real machines") {
        return;
    }
    let _one = ONE_CLOUD.lock();
    let (tmp, data) = temp_data_dir();
    let mut dev = DevUp::start_with(&data, "gvisor", &NET);
    build_and_push(&dev, tmp.path());
    let ids = two_web_machines(&dev);
    each_machine_serves_on_its_private_address(&dev, &ids);
    internal_dns_names_the_apps_machines(&dev, &ids);
    the_proxy_reaches_both_machines(&dev, &ids);
    the_proxy_counts_what_it_served(&data);
    https_with_the_dev_ca_and_an_apps_own_hostname(&dev, &data);
    a_port_without_handlers_passes_through(&ids);
    a_failing_check_gets_no_requests(&dev, &ids);
    the_root_filesystem_resets(&dev, &ids);
    machines_serve_on_through_a_sigkill(&mut dev, &ids);
    let dev = DevUp::start_with(&data, "gvisor-again", &NET);
    the_next_dev_up_reattaches_them(&dev, &ids);
    let failing = a_failing_process_stops_its_machine(&dev);
    let missing = a_missing_entrypoint_is_named(&dev);
    let idle = autostop_and_autostart(&dev, &ids);
    destroy_leaves_nothing_behind(&dev, &data, &ids, failing, missing, idle);
}

/// Creates the app `web` and runs two machines of web:v1 with an HTTP, a TLS+HTTP and a raw port.
/// Returns their ids.
fn two_web_machines(dev: &DevUp) -> Vec<String> {
    dev.aloft(&["apps", "create", "web"]).ok();
    let ids: Vec<String> = (1..=2)
        .map(|i| {
            run_machine(
                dev,
                &[
                    "web:v1",
                    "-a",
                    "web",
                    "--name",
                    &format!("web-{i}"),
                    "-p",
                    "80:8080/tcp:http",
                    "-p",
                    "443:8080/tcp:tls:http",
                    "-p",
                    &format!("{RAW_PORT}:8080/tcp"),
                ],
            )
        })
        .collect();
    ids
}

/// Each machine answers on its private address with the image's content, and has the platform's
/// variables.
fn each_machine_serves_on_its_private_address(dev: &DevUp, ids: &[String]) {
    for id in ids {
        let ip = private_ip(dev, id);
        assert!(ip.starts_with("fdaa:"), "{ip}");
        let body = get_eventually(&ip);
        assert!(body.contains("served by busybox httpd"), "{body}");
        let env = exec(dev, id, "echo $FLY_MACHINE_ID $FLY_REGION $FLY_APP_NAME");
        assert_eq!(env.trim(), format!("{id} local web"));
    }
}

/// Internal DNS at fdaa::3: the app's machines by name, from inside one of them; a name it does
/// not know is NXDOMAIN.
fn internal_dns_names_the_apps_machines(dev: &DevUp, ids: &[String]) {
    let resolv = exec(dev, &ids[0], "cat /etc/resolv.conf");
    assert!(resolv.contains("nameserver fdaa::3"), "{resolv}");
    let ips: Vec<String> = ids.iter().map(|id| private_ip(dev, id)).collect();
    let found = exec(dev, &ids[0], "nslookup -type=aaaa web.internal fdaa::3");
    for ip in &ips {
        assert!(found.contains(ip.as_str()), "{ip} missing from:\n{found}");
    }
    let found = exec(
        dev,
        &ids[0],
        &format!("nslookup -type=aaaa {}.vm.web.internal fdaa::3", ids[1]),
    );
    assert!(found.contains(ips[1].as_str()), "{found}");
    let found = exec(dev, &ids[0], "nslookup -type=txt vms.web.internal fdaa::3");
    assert!(found.contains(&format!("{} local", ids[1])), "{found}");
    let missing = dev.aloft(&[
        "machine",
        "exec",
        &ids[0],
        "-a",
        "web",
        "--",
        "nslookup",
        "-type=aaaa",
        "nope.internal",
        "fdaa::3",
    ]);
    assert!(
        format!("{}{}", missing.stdout, missing.stderr).contains("NXDOMAIN"),
        "{missing}"
    );
}

/// Through the proxy, as web.localhost: requests reach both machines; an unknown host is a 404.
fn the_proxy_reaches_both_machines(dev: &DevUp, ids: &[String]) {
    for id in ids {
        exec(dev, id, "echo $FLY_MACHINE_ID > /srv/id.txt");
    }
    let mut served = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let resp = proxy_get(dev, "web.localhost", "/id.txt");
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(
            resp.to_ascii_lowercase().contains("fly-request-id: "),
            "{resp}"
        );
        served.insert(resp.lines().last().unwrap_or_default().trim().to_string());
    }
    let expected: std::collections::BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(served, expected, "both machines serve the app");
    let resp = proxy_get(dev, "nope.localhost", "/");
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
}

/// The proxy's metrics count what it served.
fn the_proxy_counts_what_it_served(data: &Path) {
    let metrics_url = fs::read_to_string(data.join("metrics-url")).unwrap();
    let out = Command::new("curl")
        .args(["-sS", metrics_url.trim()])
        .output()
        .expect("curl");
    let metrics = String::from_utf8_lossy(&out.stdout);
    assert!(
        metrics.contains("aloft_proxy_requests_total{app=\"web\",status=\"200\"}"),
        "{metrics}"
    );
}

/// HTTPS, with a certificate from dev up's CA, which curl is told to trust; then a hostname of the
/// app's own (`aloft certs add`), served with a certificate from the CA, and removed.
fn https_with_the_dev_ca_and_an_apps_own_hostname(dev: &DevUp, data: &Path) {
    let port = dev.proxy_https_url.rsplit(':').next().unwrap().to_string();
    let ca = data.join("proxy/ca.pem");
    let out = Command::new("curl")
        .args(["-sS", "--http1.1", "--cacert"])
        .arg(&ca)
        .args(["--resolve", &format!("web.localhost:{port}:127.0.0.1")])
        .arg(format!("https://web.localhost:{port}/index.html"))
        .output()
        .expect("curl");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.contains("served by busybox httpd"),
        "{body}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A hostname of the app's own (`aloft certs add`), served with a certificate from the CA.
    dev.aloft(&["certs", "add", "www.web.test", "-a", "web"])
        .ok();
    let https = |host: &str| {
        Command::new("curl")
            .args(["-sS", "--http1.1", "--cacert"])
            .arg(&ca)
            .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
            .arg(format!("https://{host}:{port}/index.html"))
            .output()
            .expect("curl")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = https("www.web.test");
        if String::from_utf8_lossy(&out.stdout).contains("served by busybox httpd") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "www.web.test is not served: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    dev.aloft(&["certs", "remove", "www.web.test", "-a", "web"])
        .ok();
}

/// A port with no handler: connections pass through whole to a machine (so the answer is httpd's
/// own, without the proxy's headers).
fn a_port_without_handlers_passes_through(ids: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let raw = loop {
        let out = Command::new("curl")
            .args(["-sS", "-i", &format!("http://127.0.0.1:{RAW_PORT}/id.txt")])
            .output()
            .expect("curl");
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).to_string();
        }
        assert!(
            Instant::now() < deadline,
            "port {RAW_PORT} is not served: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(raw.starts_with("HTTP/1.") && raw.contains(" 200 "), "{raw}");
    assert!(
        !raw.to_ascii_lowercase().contains("fly-request-id"),
        "{raw}"
    );
    assert!(
        ids.iter().any(|id| raw.trim_end().ends_with(id.as_str())),
        "{raw}"
    );
}

/// A machine whose health check fails gets no requests, and its status says why; then the first
/// machine's logs show its boot.
fn a_failing_check_gets_no_requests(dev: &DevUp, ids: &[String]) {
    let sick = run_machine(
        dev,
        &[
            "web:v1",
            "-a",
            "web",
            "--name",
            "sick",
            "-p",
            "80:8080/tcp:http",
            "--check",
            "ready=http:8080/missing.html",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = machine_json(dev, "web", &sick);
        // (Its first runs may find httpd not listening yet: refused, not 404.)
        let output = m["checks"][0]["output"].as_str().unwrap_or("");
        if m["checks"][0]["status"] == "critical" && output.contains("404") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the check never failed with a 404: {m:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = dev
        .aloft(&["machine", "status", &sick, "-a", "web"])
        .ok()
        .to_string();
    assert!(
        status.contains("ready") && status.contains("critical"),
        "{status}"
    );
    for _ in 0..10 {
        let resp = proxy_get(dev, "web.localhost", "/id.txt");
        assert!(
            resp.starts_with("HTTP/1.1 200"),
            "routed to the sick machine: {resp}"
        );
    }
    dev.aloft(&["machine", "destroy", &sick, "-a", "web", "--force"])
        .ok();
    let logs = dev
        .aloft(&["logs", "-a", "web", "-m", &ids[0], "--no-tail"])
        .ok()
        .to_string();
    assert!(logs.contains(&format!("booted {}", ids[0])), "{logs}");
}

/// A file written in the machine is gone after a stop and start: the root filesystem resets.
fn the_root_filesystem_resets(dev: &DevUp, ids: &[String]) {
    exec(dev, &ids[0], "echo scratch > /srv/scratch.txt");
    assert_eq!(exec(dev, &ids[0], "cat /srv/scratch.txt").trim(), "scratch");
    dev.aloft(&["machine", "stop", &ids[0], "-a", "web"]).ok();
    assert_eq!(state_of(dev, "web", &ids[0]), "stopped");
    dev.aloft(&["machine", "start", &ids[0], "-a", "web"]).ok();
    get_eventually(&private_ip(dev, &ids[0]));
    let after = exec(dev, &ids[0], "ls /srv");
    assert!(!after.contains("scratch.txt"), "{after}");
}

/// SIGKILL the whole cloud: the machines keep serving without it.
fn machines_serve_on_through_a_sigkill(dev: &mut DevUp, ids: &[String]) {
    let ips: Vec<String> = ids.iter().map(|id| private_ip(dev, id)).collect();
    dev.sigkill();
    for ip in &ips {
        // (This gVisor build's read(2) makes busybox httpd drop a connection now and then:
        // see ARCHITECTURE.md, known gaps. One answer out of three tries is "still serving".)
        assert!(
            (0..3).any(|_| get(ip).is_some()),
            "[{ip}] stopped answering with dev up"
        );
    }
}

/// The next `dev up` reattaches the machines that served through the SIGKILL.
fn the_next_dev_up_reattaches_them(dev: &DevUp, ids: &[String]) {
    for id in ids {
        assert_eq!(state_of(dev, "web", id), "started");
        let env = exec(dev, id, "echo $FLY_MACHINE_ID");
        assert_eq!(env.trim(), id.as_str());
    }
}

/// A process that fails: the exit code is in the events and the machine stops (restart policy
/// `no`). Returns its id.
fn a_failing_process_stops_its_machine(dev: &DevUp) -> String {
    let (failing, exit) = run_to_exit(
        dev,
        "failing",
        &["--entrypoint", "/bin/sh -c", "--cmd", "'exit 3'"],
    );
    assert_eq!(exit["request"]["exit_event"]["exit_code"], 3, "{exit:#}");
    failing
}

/// An entrypoint that is not in the image: the exit event says so (127, and init's sentence).
/// Returns the machine's id.
fn a_missing_entrypoint_is_named(dev: &DevUp) -> String {
    let (missing, exit) = run_to_exit(dev, "missing", &["--entrypoint", "/app/server"]);
    assert_eq!(exit["request"]["exit_event"]["exit_code"], 127, "{exit:#}");
    let message = exit["request"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("`/app/server` was not found"), "{exit:#}");
    missing
}

/// Autostop: an idle machine of a service with autostop is stopped by the proxy; and autostart
/// starts one machine for a request that finds none running. Returns the idle machine's id.
fn autostop_and_autostart(dev: &DevUp, ids: &[String]) -> String {
    let idle = run_machine(
        dev,
        &[
            "web:v1",
            "-a",
            "web",
            "--name",
            "web-3",
            "-p",
            "80:8080/tcp:http",
            "--autostop",
            "stop",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while state_of(dev, "web", &idle) != "stopped" {
        assert!(Instant::now() < deadline, "autostop never stopped {idle}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // ...and autostart starts a machine for a request that finds none running.
    for id in ids {
        dev.aloft(&["machine", "stop", id, "-a", "web"]).ok();
    }
    let resp = proxy_get(dev, "web.localhost", "/");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("served by busybox httpd"), "{resp}");
    let started = ids
        .iter()
        .chain([&idle])
        .filter(|id| state_of(dev, "web", id) == "started")
        .count();
    assert_eq!(started, 1, "one machine woken for the request");
    idle
}

/// Destroy: no process, network namespace or file of the machines is left.
fn destroy_leaves_nothing_behind(
    dev: &DevUp,
    data: &Path,
    ids: &[String],
    failing: String,
    missing: String,
    idle: String,
) {
    let runtime_dir = data.join("runtime/machines");
    for id in ids.iter().chain([&failing, &missing, &idle]) {
        dev.aloft(&["machine", "destroy", id, "-a", "web", "--force"])
            .ok();
        assert!(
            processes_mentioning(id).is_empty(),
            "{:?}",
            processes_mentioning(id)
        );
        assert!(!Path::new(&format!("/var/run/netns/aloft-{id}")).exists());
        assert!(!runtime_dir.join(id).exists());
    }
}

/// Runs web:v1 as machine `name` with `extra` flags and restart policy `no`, waits until it has
/// stopped by itself, and returns its id and exit event. (Whether `machine run` sees the start or
/// already the exit is a race, so its own outcome is not checked.)
fn run_to_exit(dev: &DevUp, name: &str, extra: &[&str]) -> (String, serde_json::Value) {
    let mut args = vec![
        "machine",
        "run",
        "web:v1",
        "-a",
        "web",
        "--name",
        name,
        "--restart",
        "no",
    ];
    args.extend_from_slice(extra);
    let _ = dev.aloft(&args);
    let list = dev
        .aloft(&["machine", "list", "-a", "web", "--json"])
        .json();
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["id"].as_str())
        .unwrap_or_else(|| panic!("no machine {name}: {list:#}"))
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while state_of(dev, "web", &id) != "stopped" {
        assert!(Instant::now() < deadline, "machine {name} never stopped");
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = machine_json(dev, "web", &id);
    let exit = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "exit")
        .cloned()
        .unwrap_or_else(|| panic!("no exit event: {m:#}"));
    (id, exit)
}

/// The example app (examples/hello, built by scripts/build-hello.sh) as a QEMU microVM through
/// `dev up --runtime microvm`: the agent builds the image's ext4, the guest boots (TCG here, so
/// slowly), answers HTTP on its private address with its machine id, and runs commands.
#[test]
fn the_example_app_runs_as_a_microvm() {
    if gvisor_missing("real machines") {
        return;
    }
    let _one = ONE_CLOUD.lock();
    let kernel = std::env::var("ALOFT_KERNEL_DIR").unwrap_or("/var/cache/aloft/kernel".into());
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok();
    if !qemu || !Path::new(&kernel).join("current").exists() {
        eprintln!(
            "\n*** SKIPPED: qemu-system-x86 or the guest kernel missing (scripts/setup.sh) ***\n"
        );
        return;
    }
    let (tmp, data) = temp_data_dir();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let layout = tmp.path().join("hello");
    let built = Command::new(root.join("scripts/build-hello.sh"))
        .arg(BIN)
        .arg(&layout)
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    let dev = DevUp::start_with(
        &data,
        "microvm",
        &[
            "--runtime",
            "microvm",
            "--bridge",
            "altvm0",
            "--machine-subnet",
            "172.29.8.0/24",
        ],
    );
    push(&dev, &layout, "latest", "hello");
    dev.aloft(&["apps", "create", "hello"]).ok();
    let out = dev.aloft(&[
        "machine",
        "run",
        "--json",
        "hello:latest",
        "-a",
        "hello",
        "--env",
        "GREETING=hi",
    ]);
    if out.code != Some(0) {
        let logs = dev.aloft(&["logs", "-a", "hello", "--no-tail"]);
        panic!(
            "{out}\n--- machine logs:\n{logs}\n--- dev up:\n{}",
            dev.logs()
        );
    }
    let id = out.json()["id"].as_str().unwrap().to_string();
    let ip = machine_json(&dev, "hello", &id)["private_ip"]
        .as_str()
        .unwrap()
        .to_string();
    let body = get_eventually(&ip);
    assert!(
        body.contains("hi!") && body.contains(&format!("machine: {id}")),
        "{body}"
    );
    let out = dev
        .aloft(&[
            "machine",
            "exec",
            &id,
            "-a",
            "hello",
            "--",
            "sh",
            "-c",
            "echo $FLY_REGION",
        ])
        .ok()
        .to_string();
    assert_eq!(out.trim(), "local");
    dev.aloft(&["machine", "destroy", &id, "-a", "hello", "--force"])
        .ok();
    assert!(processes_mentioning(&id).is_empty());
}
