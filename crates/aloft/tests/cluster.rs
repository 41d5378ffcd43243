//! A three-region dev cluster end to end: `aloft dev cluster up --regions ord,ams,syd` (one
//! network namespace per host and per region's clients, gVisor machines), an image pushed to its
//! registry, machines in ord and ams; each region's users reach their own edge, which serves them
//! from the nearest region with a machine; a host killed leaves routing while requests keep being
//! answered; `down` leaves nothing behind.
//!
//! Needs root, runsc and skopeo (installed by `scripts/setup.sh`); without them it prints SKIPPED
//! and returns.

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// `aloft --data-dir DIR ARGS`.
fn aloft_in(dir: &Path, args: &[&str]) -> Out {
    let mut all = vec!["--data-dir", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    aloft_with(&[], &all)
}

/// `curl` of `http://web.localhost/` as a user in `region`: the region that served it, or the
/// error.
fn from_region(dir: &Path, region: &str) -> String {
    from_region_preferring(dir, region, None)
}

/// The region of the example app's machine that answered (its `region:` line), or all of
/// `output` when no machine did (curl's or the proxy's error).
fn served_in(output: &str) -> String {
    output
        .lines()
        .find_map(|l| l.strip_prefix("region: "))
        .unwrap_or(output)
        .trim()
        .to_string()
}

/// `curl ARGS` as a user in `region` (trusting the cluster's CA for HTTPS): the region that
/// served it, or the error.
fn curl_from(dir: &Path, region: &str, args: &[&str]) -> String {
    let ca = dir.join("ca/ca.pem");
    let mut all = vec![
        "dev",
        "cluster",
        "exec",
        "--region",
        region,
        "--",
        "curl",
        "-sS",
        "-m",
        "20",
        "--cacert",
        ca.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let out = aloft_in(dir, &all);
    served_in(&format!("{}{}", out.stdout.trim(), out.stderr.trim()))
}

/// `curl URL` as a user in `region`: the region that served it, or the error.
fn get_from(dir: &Path, region: &str, url: &str) -> String {
    curl_from(dir, region, &[url])
}

/// The same, asking for `prefer` first (`fly-prefer-region`).
fn from_region_preferring(dir: &Path, region: &str, prefer: Option<&str>) -> String {
    let header = format!("fly-prefer-region: {}", prefer.unwrap_or(""));
    let mut args = vec![
        "dev", "cluster", "exec", "--region", region, "--", "curl", "-sS",
    ];
    if prefer.is_some() {
        args.extend(["-H", header.as_str()]);
    }
    args.extend(["-m", "10", "http://web.localhost/"]);
    let out = aloft_in(dir, &args);
    served_in(&format!("{}{}", out.stdout.trim(), out.stderr.trim()))
}

/// Pushes the layout's `v1` as `<org>/web:v1` to the cluster's registry.
fn push(layout: &Path, token: &str, org: &str) {
    let pushed = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--dest-creds"])
        .arg(format!("x:{token}"))
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://127.0.0.1:5000/{org}/web:v1"))
        .output()
        .unwrap();
    assert!(pushed.status.success(), "{pushed:?}");
}

/// Runs `web:v1` for `app` in `region` (with `env`, e.g. another org's token), its primary
/// region ord; its id.
fn run(dir: &Path, env: &[(&str, &str)], app: &str, region: &str) -> String {
    let out = aloft_with(
        env,
        &[
            "--data-dir",
            dir.to_str().unwrap(),
            "--json",
            "machine",
            "run",
            "web:v1",
            "-a",
            app,
            "--region",
            region,
            "-p",
            "80:8080/tcp:http",
            "-p",
            "443:8080/tcp:tls:http",
            "-p",
            "8081:8080/tcp",
            "--env",
            "PRIMARY_REGION=ord",
        ],
    )
    .json();
    out["id"].as_str().unwrap().to_string()
}

/// Takes the cluster down whatever happened.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What each part said, before `down` removes it.
            for log in [
                "control.log",
                "hosts/ord-1/host.log",
                "hosts/ams-1/host.log",
                "hosts/syd-1/host.log",
            ] {
                let text = fs::read_to_string(self.0.join(log)).unwrap_or_default();
                // Its warnings and failed requests, and how it ended.
                let notable = text.lines().filter(|l| {
                    l.contains("WARN")
                        || l.contains("ERROR")
                        || l.contains("status=5")
                        || l.contains("resending")
                        || l.contains("trying another")
                });
                let tail: Vec<&str> = text
                    .lines()
                    .rev()
                    .take(10)
                    .chain(notable.rev().take(20))
                    .collect();
                eprintln!(
                    "--- {log}:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        let out = aloft_in(self.0, &["dev", "cluster", "down"]);
        eprintln!("dev cluster down: {}{}", out.stdout, out.stderr);
    }
}

#[test]
fn a_three_region_cluster_serves_each_region_nearest_and_survives_a_host() {
    if gvisor_missing("a dev cluster") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // The example app: its page says which region served it; writes outside ord are replayed
    // to ord; `?sleep=MS` is slow.
    let Some(layout) = hello_image(tmp.path()) else {
        return;
    };
    let dir = tmp.path().join("cluster");
    let started = Instant::now();
    let phase = |what: &str| eprintln!("[{:>6.1?}] {what}", started.elapsed());
    let up = aloft_in(
        &dir,
        &[
            "dev",
            "cluster",
            "up",
            "--regions",
            "ord,ams,syd",
            "--runtime",
            "gvisor",
        ],
    );
    let _down = Down(&dir);
    let status = up.ok();
    assert!(status.contains("syd-1"), "{status}");
    hosts_joined_without_the_cluster_secret(&dir);
    phase("up");
    the_image_is_pushed(&dir, &layout);
    phase("pushed");
    let ids = web_runs_in_ord_and_ams(&dir);
    phase("machines started");
    each_region_is_served_by_its_own(&dir);
    phase("each region served by its own");
    writes_are_replayed_to_ord(&dir);
    phase("fly-replay across regions");
    let ips = internal_dns_knows_the_other_hosts_machine(&dir, &ids);
    let (other_token, spy) = another_org_resolves_none_of_them(&dir, &layout, &ips);
    phase("internal DNS across hosts, per org");
    six_pn_reaches_across_hosts_per_org(&dir, &ids, &ips, &other_token, &spy);
    phase("6PN across hosts, per org");
    a_burst_overflows_to_the_next_region(&dir);
    phase("a burst overflows to the next region");
    a_partition_and_its_healing(&dir);
    phase("partition and heal");
    syd_is_served_by_the_nearest_region(&dir);
    phase("nearest region, HTTPS, raw TCP");
    syd_is_served_after_ams_dies(&dir);
    phase("ams killed, syd served");
    drop(_down);
    nothing_of_the_cluster_is_left(&dir);
}

/// Every host joined over TLS with its own one-time join token: each keeps its own credential
/// (0600), none has the cluster secret in its config or credential file, and a used join token
/// does not join again.
fn hosts_joined_without_the_cluster_secret(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let secret = fs::read_to_string(dir.join("internal-token")).unwrap();
    let secret = secret.trim();
    let mut credentials = Vec::new();
    for host in ["ord-1", "ams-1", "syd-1"] {
        let hdir = dir.join("hosts").join(host);
        let config = fs::read_to_string(hdir.join("host.toml")).unwrap();
        assert!(config.contains("control_plane = \"https://"), "{config}");
        assert!(!config.contains("internal-token"), "{config}");
        let file = hdir.join("host-credential.json");
        let text = fs::read_to_string(&file).unwrap();
        assert!(!text.contains(secret), "{host} holds the cluster secret");
        let mode = fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        let joined: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(joined["host"], host);
        credentials.push(joined["credential"].as_str().unwrap().to_string());
        // Its join token is used up.
        let token = fs::read_to_string(hdir.join("join-token")).unwrap();
        let again = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .args(["-H", &format!("Authorization: Bearer {}", token.trim())])
            .arg(format!(
                "http://127.0.0.1:4280/internal/v1/hosts/{host}/join"
            ))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&again.stdout),
            "401",
            "{host}'s token joined twice"
        );
    }
    credentials.sort();
    credentials.dedup();
    assert_eq!(credentials.len(), 3, "each host has its own credential");
}

/// The example image is pushed to the cluster's registry for the personal org.
fn the_image_is_pushed(dir: &Path, layout: &Path) {
    let token = fs::read_to_string(dir.join("token")).unwrap();
    push(layout, token.trim(), "personal");
}

/// The app `web` gets a machine in ord and one in ams, and its status shows both. Returns their ids.
fn web_runs_in_ord_and_ams(dir: &Path) -> Vec<String> {
    aloft_in(dir, &["apps", "create", "web"]).ok();
    let ids: Vec<String> = ["ord", "ams"]
        .iter()
        .map(|region| run(dir, &[], "web", region))
        .collect();
    let status = aloft_in(dir, &["status", "-a", "web"]).ok().to_string();
    assert!(
        status.contains("ord      1 machine on ord-1")
            && status.contains("ams      1 machine on ams-1"),
        "{status}"
    );
    ids
}

/// Each region's users are served by their own region's machine once every edge knows it.
fn each_region_is_served_by_its_own(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for region in ["ord", "ams"] {
        loop {
            let body = from_region(dir, region);
            if body == region {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{region}'s users got `{body}`, not their region's machine"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// A write reaching ams's machine is replayed by ams's edge to ord's machine, on another host
/// (once gossip has brought ord's machine to ams's edge); reads stay.
fn writes_are_replayed_to_ord(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let written = curl_from(dir, "ams", &["-d", "x", "http://web.localhost/items"]);
        if written == "ord" {
            break;
        }
        assert!(Instant::now() < deadline, "not replayed to ord: {written}");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        get_from(dir, "ams", "http://web.localhost/"),
        "ams",
        "reads stay"
    );
}

/// Internal DNS on ord's host knows ams's machine (the gossip catalog). Returns the machines'
/// private addresses.
fn internal_dns_knows_the_other_hosts_machine(dir: &Path, ids: &[String]) -> Vec<String> {
    let ips: Vec<String> = ids
        .iter()
        .map(|id| {
            let m = aloft_in(dir, &["--json", "machine", "status", id, "-a", "web"]).json();
            m["private_ip"].as_str().unwrap().to_string()
        })
        .collect();
    // (Once gossip has brought ams's machine to ord's host: a fraction of a second.)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = aloft_in(
            dir,
            &[
                "machine",
                "exec",
                &ids[0],
                "-a",
                "web",
                "--",
                "nslookup",
                "-type=aaaa",
                "web.internal",
            ],
        );
        if ips.iter().all(|ip| found.stdout.contains(ip.as_str())) {
            break;
        }
        assert!(Instant::now() < deadline, "{ips:?} missing: {found}");
        std::thread::sleep(Duration::from_millis(200));
    }
    ips
}

/// Internal DNS answers for its own org only: a machine of another org (`spy`, in ams) gets
/// NXDOMAIN and none of `web`'s addresses. Returns the other org's token and its machine's id.
fn another_org_resolves_none_of_them(
    dir: &Path,
    layout: &Path,
    ips: &[String],
) -> (String, String) {
    let (status, body) = http(
        "http://127.0.0.1:4280",
        "POST",
        "/internal/v1/orgs",
        fs::read_to_string(dir.join("internal-token"))
            .unwrap()
            .trim(),
        r#"{"slug":"other"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let other: serde_json::Value = serde_json::from_str(&body).unwrap();
    let other_token = other["token"].as_str().unwrap();
    push(layout, other_token, "other");
    let env = [("ALOFT_API_TOKEN", other_token)];
    aloft_with(&env, &["apps", "create", "spy"]).ok();
    let spy = run(dir, &env, "spy", "ams");
    let asked = aloft_with(
        &env,
        &[
            "--data-dir",
            dir.to_str().unwrap(),
            "machine",
            "exec",
            &spy,
            "-a",
            "spy",
            "--",
            "nslookup",
            "-type=aaaa",
            "web.internal",
        ],
    );
    let answer = format!("{}{}", asked.stdout, asked.stderr);
    assert!(answer.contains("NXDOMAIN"), "{answer}");
    for ip in ips {
        assert!(
            !answer.contains(ip.as_str()),
            "another org saw {ip}: {answer}"
        );
    }
    (other_token.to_string(), spy)
}

/// 6PN across hosts, over the encrypted mesh: ord's machine reaches ams's by its private address;
/// the other org's machine reaches neither (ord's through the mesh, ams's on its own host).
fn six_pn_reaches_across_hosts_per_org(
    dir: &Path,
    ids: &[String],
    ips: &[String],
    other_token: &str,
    spy: &str,
) {
    let env = [("ALOFT_API_TOKEN", other_token)];
    let fetch = |env: &[(&str, &str)], app: &str, id: &str, ip: &str| {
        let out = aloft_with(
            env,
            &[
                "--data-dir",
                dir.to_str().unwrap(),
                "machine",
                "exec",
                id,
                "-a",
                app,
                "--",
                "sh",
                "-c",
                // (busybox's wget crashes under gVisor; nc does not.)
                &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 8080"),
            ],
        );
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix("region: "))
            .unwrap_or("")
            .to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = fetch(&[], "web", &ids[0], &ips[1]);
        if got == "ams" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ord's machine did not reach ams's: `{got}`"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for ip in ips {
        assert_eq!(fetch(&env, "spy", spy, ip), "", "another org reached {ip}");
    }
}

/// A burst larger than ord's machine takes (two at a time) overflows to ams: every request is
/// answered, none with an error.
fn a_burst_overflows_to_the_next_region(dir: &Path) {
    let token = fs::read_to_string(dir.join("token")).unwrap();
    aloft_in(dir, &["apps", "create", "burst"]).ok();
    for (region, hard) in [("ord", 2), ("ams", 20)] {
        let body = serde_json::json!({"region": region, "config": {"image": "web:v1",
            "services": [{"internal_port": 8080, "ports": [{"port": 80, "handlers": ["http"]}],
                          "concurrency": {"type": "requests", "soft_limit": 1, "hard_limit": hard}}]}});
        let (status, reply) = http(
            "http://127.0.0.1:4280",
            "POST",
            "/v1/apps/burst/machines",
            token.trim(),
            &body.to_string(),
        );
        assert_eq!(status, 200, "{reply}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while ["ord", "ams"]
        .iter()
        .any(|r| get_from(dir, "ord", &format!("http://burst.localhost/?{r}")) != "ord")
    {
        assert!(Instant::now() < deadline, "burst's machines never served");
        std::thread::sleep(Duration::from_millis(250));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while get_from(dir, "ams", "http://burst.localhost/") != "ams" {
        assert!(
            Instant::now() < deadline,
            "ams's burst machine never served"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let burst: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| s.spawn(|| get_from(dir, "ord", "http://burst.localhost/?sleep=1000")))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert!(
        burst.iter().all(|b| b == "ord" || b == "ams"),
        "errors in the burst: {burst:?}"
    );
    assert!(
        burst.iter().any(|b| b == "ams"),
        "nothing overflowed: {burst:?}"
    );
    assert!(burst.iter().any(|b| b == "ord"), "{burst:?}");
}

/// ord and ams cut off from each other: each keeps serving its own users; ord's users asking for
/// ams are served in ord (slowly while ord still believes in ams, then at once). Healed: ord's edge
/// learns of ams's machine again.
fn a_partition_and_its_healing(dir: &Path) {
    aloft_in(dir, &["dev", "cluster", "partition", "ord", "ams"]).ok();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(8) {
        let body = from_region_preferring(dir, "ord", Some("ams"));
        assert_eq!(body, "ord", "ord's users during the partition");
    }
    assert_eq!(from_region(dir, "ams"), "ams");
    // Healed: ord's edge learns of ams's machine again.
    aloft_in(dir, &["dev", "cluster", "heal"]).ok();
    let deadline = Instant::now() + Duration::from_secs(20);
    while from_region_preferring(dir, "ord", Some("ams")) != "ams" {
        assert!(
            Instant::now() < deadline,
            "ord never reached ams again after healing"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// syd has no machine: its edge sends its users to the nearest region's, as measured over the
/// mesh (ord at 200 ms, not ams at 280 ms), over HTTPS as well, and a raw TCP port through ord's
/// worker.
fn syd_is_served_by_the_nearest_region(dir: &Path) {
    assert_eq!(from_region(dir, "syd"), "ord");
    assert_eq!(get_from(dir, "syd", "https://web.localhost/"), "ord");
    assert_eq!(get_from(dir, "ams", "https://web.localhost/"), "ams");
    // A raw TCP port: syd's edge passes the connection to ord's machine through ord's worker.
    assert_eq!(get_from(dir, "syd", "http://127.0.0.1:8081/"), "ord");
}

/// ams's host dies: its users' edge is gone with it, but syd's users are still served, from ord,
/// without an error.
fn syd_is_served_after_ams_dies(dir: &Path) {
    let state: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("cluster.json")).unwrap()).unwrap();
    let ams = state["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["region"] == "ams")
        .unwrap();
    let pid = ams["pid"].as_u64().unwrap();
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let t0 = Instant::now();
    let mut answers = Vec::new();
    while t0.elapsed() < Duration::from_secs(6) {
        answers.push(from_region(dir, "syd"));
    }
    assert!(
        answers.iter().all(|a| a == "ord" || a == "ams"),
        "a request failed after ams died: {answers:?}"
    );
    assert_eq!(
        answers.last().map(String::as_str),
        Some("ord"),
        "{answers:?}"
    );
}

/// After `dev cluster down`: no network namespace, bridge, data dir or process of the cluster is
/// left.
fn nothing_of_the_cluster_is_left(dir: &Path) {
    let namespaces = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let namespaces = String::from_utf8_lossy(&namespaces.stdout);
    assert!(!namespaces.contains("alc-"), "{namespaces}");
    assert!(!Path::new("/sys/class/net/alcl0").exists());
    assert!(!dir.exists(), "the data dir is left");
    let left = Command::new("pgrep")
        .args(["-f", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "processes left: {left:?}");
}
