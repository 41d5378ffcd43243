//! `aloft deploy` of the example app on real gVisor machines behind the proxy: a rolling, a
//! canary and a bluegreen deploy of a two-machine app while a client loop asks the proxy the
//! whole time. Not one request may fail.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// This test's own bridge and subnet.
const NET: [&str; 6] = [
    "--runtime",
    "gvisor",
    "--bridge",
    "altdep0",
    "--machine-subnet",
    "172.29.9.0/24",
];

fn fly_toml(dir: &Path, greeting: &str) -> String {
    let path = dir.join("fly.toml");
    std::fs::write(
        &path,
        format!(
            "app = \"hello\"\nprimary_region = \"local\"\n\n[build]\n  image = \"hello:v1\"\n\n[env]\n  GREETING = \"{greeting}\"\n\n[deploy]\n  wait_timeout = \"90s\"\n  release_command = \"release\"\n  release_command_timeout = \"60s\"\n\n[http_service]\n  internal_port = 8080\n\n  [[http_service.checks]]\n    interval = \"1s\"\n    timeout = \"2s\"\n    path = \"/\"\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

/// GET / for hello.localhost through the proxy: the status and the body's first line (its
/// greeting), or the error.
fn get(proxy: SocketAddr) -> Result<(u16, String), String> {
    let mut s =
        TcpStream::connect_timeout(&proxy, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: hello.localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).map_err(|e| e.to_string())?;
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line: {reply:?}"))?;
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or("");
    Ok((status, body.lines().next().unwrap_or("").to_string()))
}

#[test]
fn rolling_canary_and_bluegreen_deploys_fail_no_request() {
    if gvisor_missing("deploys under load") {
        return;
    }
    let (tmp, data) = temp_data_dir();
    let Some(layout) = hello_image(tmp.path()) else {
        return;
    };
    let dev = DevUp::start_with(&data, "deploy-live", &NET);
    push(&dev, &layout, "v1", "hello");
    dev.aloft(&["apps", "create", "hello"]).ok();
    dev.aloft(&["deploy", "-c", &fly_toml(tmp.path(), "one")])
        .ok();
    dev.aloft(&["scale", "count", "2", "-a", "hello"]).ok();
    let proxy: SocketAddr = dev.proxy_url.trim_start_matches("http://").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(proxy).ok() != Some((200, "one!".into())) {
        assert!(Instant::now() < deadline, "the app never served");
        std::thread::sleep(Duration::from_millis(200));
    }

    let stop = AtomicBool::new(false);
    let answers = std::thread::scope(|s| {
        let client = s.spawn(|| {
            let mut answers = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                answers.push(get(proxy));
                std::thread::sleep(Duration::from_millis(20));
            }
            answers
        });
        for (greeting, strategy) in [
            ("two", "rolling"),
            ("three", "canary"),
            ("four", "bluegreen"),
        ] {
            let config = fly_toml(tmp.path(), greeting);
            let out = dev.aloft(&["deploy", "-c", &config, "--strategy", strategy]);
            let text = out.ok();
            assert!(text.contains("Deployed release"), "{out}");
            assert!(text.contains("release command succeeded"), "{out}");
        }
        // A little more load on the final machines.
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        client.join().unwrap()
    });
    let failed: Vec<&Result<(u16, String), String>> = answers
        .iter()
        .filter(|a| !matches!(a, Ok((200, _))))
        .collect();
    eprintln!(
        "{} requests during three deploys, {} failed",
        answers.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "failed requests: {failed:?}\n{}",
        dev.logs()
    );
    let seen: std::collections::BTreeSet<&str> = answers
        .iter()
        .filter_map(|a| a.as_ref().ok().map(|(_, g)| g.as_str()))
        .collect();
    for greeting in ["one!", "two!", "three!", "four!"] {
        assert!(seen.contains(greeting), "{greeting} never served: {seen:?}");
    }
    assert_eq!(
        answers.last().unwrap().as_ref().unwrap().1,
        "four!",
        "the last release is not the one served"
    );
    let list = dev
        .aloft(&["--json", "machine", "list", "-a", "hello"])
        .json();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");

    // A Dockerfile instead of an image: buildah builds it, and the machines run what it built.
    if std::process::Command::new("buildah")
        .arg("--version")
        .output()
        .is_ok()
    {
        let site = tmp.path().join("site");
        std::fs::create_dir(&site).unwrap();
        std::fs::copy(hello_binary().unwrap(), site.join("hello")).unwrap();
        std::fs::write(
            site.join("Dockerfile"),
            "FROM scratch\nCOPY hello /hello\nENV GREETING=built\nENTRYPOINT [\"/hello\"]\n",
        )
        .unwrap();
        // The same config without an image, and the greeting from the Dockerfile's ENV.
        let path = fly_toml(&site, "unused");
        let config = std::fs::read_to_string(&path)
            .unwrap()
            .replace("  image = \"hello:v1\"\n", "")
            .replace("  GREETING = \"unused\"\n", "");
        std::fs::write(&path, config).unwrap();
        dev.aloft(&["deploy", "-c", site.to_str().unwrap()]).ok();
        assert_eq!(get(proxy).unwrap(), (200, "built!".to_string()));
    }
    // Machines outlive `dev up`: nothing of this test's stays.
    dev.aloft(&["apps", "destroy", "hello", "--yes"]).ok();
}
