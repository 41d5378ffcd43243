//! Two clouds on one host: machines outlive `aloft dev up` by design, and every cloud numbers
//! its host and first org 1 and leases IPv4 from the same subnet, so a second `dev up` (another
//! data dir) on the bridge that carries the first one's machines would hand out the same
//! addresses, and its proxy would answer one app with the other cloud's machine. It is refused
//! at start, naming the first cloud's data dir and how to stop it; the first cloud comes back
//! and still serves its machine.
//!
//! Needs root, runsc and skopeo (installed by `scripts/setup.sh`); without them it prints
//! SKIPPED and returns.

mod common;

use common::*;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// This test's own bridge and subnet.
const NET: [&str; 6] = [
    "--runtime",
    "gvisor",
    "--bridge",
    "alt2c0",
    "--machine-subnet",
    "172.29.11.0/24",
];

/// GET / for `web.localhost` through the cloud's proxy: the reply, or "" while none comes.
fn proxy_get(dev: &DevUp) -> String {
    let addr: SocketAddr = dev.proxy_url.trim_start_matches("http://").parse().unwrap();
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: web.localhost\r\nConnection: close\r\n\r\n");
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply
}

/// The cloud's proxy answers `web.localhost` with `body` within 30 s.
fn served(dev: &DevUp, body: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let reply = proxy_get(dev);
        if reply.contains(body) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "web.localhost is not served by its machine: {reply}\n{}",
            dev.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_second_cloud_on_the_bridge_of_another_clouds_machines_is_refused() {
    if gvisor_missing("two clouds on one host") {
        return;
    }
    let (tmp, first_data) = temp_data_dir();
    let mut first = DevUp::start_with(&first_data, "first", &NET);
    let layout = busybox_image(
        tmp.path(),
        &[("srv/index.html", "served by the first cloud\n", 0o644)],
        "'exec httpd -f -p 8080 -h /srv'",
    );
    push(&first, &layout, "v1", "web");
    first.aloft(&["apps", "create", "web"]).ok();
    let id = run_machine(&first, &["web:v1", "-a", "web", "-p", "80:8080/tcp:http"]);
    served(&first, "served by the first cloud");
    // The first cloud stops; its machine keeps running.
    assert!(first.sigterm().success(), "{}", first.logs());

    let second_data = tmp.path().join("second");
    let mut second = DevUp::spawn(tmp.path(), &second_data, "second", &NET);
    let status = second.wait_exit();
    let logs = second.logs();
    assert!(!status.success(), "the second cloud started:\n{logs}");
    let first_dir = fs::canonicalize(&first_data).unwrap();
    for named in [
        format!("aloft dev up --data-dir {}", first_dir.display()),
        "alt2c0".to_string(),
        "aloft machine destroy --force".to_string(),
    ] {
        assert!(logs.contains(&named), "`{named}` missing:\n{logs}");
    }

    // The first cloud comes back, still serving its machine; then it goes.
    let mut first = DevUp::start_with(&first_data, "first-again", &NET);
    served(&first, "served by the first cloud");
    first
        .aloft(&["machine", "destroy", &id, "-a", "web", "--force"])
        .ok();
    assert!(first.sigterm().success(), "{}", first.logs());
}
