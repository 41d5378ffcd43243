//! The gVisor backend with real runsc sandboxes, aloft-init as PID 1, real network namespaces
//! and cgroups. Needs root, runsc, iproute2, nftables, busybox-static and a built aloft-init
//! (`scripts/setup.sh`); otherwise each test prints SKIPPED.

mod common;

use aloft_runtime::cgroup::{MachineCgroup, Version};
use aloft_runtime::gvisor::{GvisorOptions, GvisorRuntime};
use aloft_runtime::net::NetworkOptions;
use aloft_runtime::{Runtime, find_init_binary};
use aloft_types::signal::Signal;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TOOLS: &[(&str, &str)] = &[("runsc", "runsc"), ("ip", "iproute2"), ("nft", "nftables")];

fn options(state: &Path, network: NetworkOptions) -> GvisorOptions {
    GvisorOptions {
        state_dir: state.to_path_buf(),
        init_binary: find_init_binary().unwrap(),
        network,
        runsc: None,
    }
}

/// A runtime on a bridge of the test's own, and a guard that tears everything down if the test
/// fails half-way (the passing path cleans up itself, and checks that it did).
fn runtime(state: &Path) -> (GvisorRuntime, Cleanup) {
    let opts = options(state, network());
    let guard = Cleanup(opts.clone());
    (GvisorRuntime::new(opts).unwrap(), guard)
}

/// On a panic: destroys the machines left in the state dir and removes the test's bridge, so a
/// failed test leaves no sandboxes, namespaces, mounts or bridges behind.
struct Cleanup(GvisorOptions);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let opts = self.0.clone();
        // A runtime of its own on another thread: the test's runtime is unwinding.
        let _ = std::thread::spawn(move || {
            let Ok(tokio) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            let machines: Vec<PathBuf> = std::fs::read_dir(opts.state_dir.join("machines"))
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            let Ok(rt) = GvisorRuntime::new(opts) else {
                return;
            };
            tokio.block_on(async {
                for dir in machines {
                    let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
                        continue;
                    };
                    if let Some(id) = aloft_types::MachineId::parse(name) {
                        let _ = rt.destroy(&id).await;
                    }
                }
            });
            let _ = rt.network().remove();
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_machine_serves_execs_logs_and_restarts_from_its_image() {
    skip_unless!(TOOLS);
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(tmp.path());
    let (rt, _cleanup) = runtime(&tmp.path().join("state"));
    let mut spec = spec(
        &rootfs,
        "echo started $FLY_MACHINE_ID; echo to-stderr >&2; exec httpd -f -p 8080 -h /srv",
        256,
    );
    spec.config.dns = Some(aloft_types::config::DnsConfig {
        nameservers: vec!["192.0.2.53".into()],
        searches: vec!["corp.example".into()],
        ..Default::default()
    });
    rt.create(&spec).await.unwrap();
    let t0 = Instant::now();
    let running = rt.start(&spec).await.unwrap();
    eprintln!("started in {:?}", t0.elapsed());
    assert_eq!(running.instance_id, "v1");

    // HTTP on the machine's 6PN address and its IPv4 address, from the host.
    let body = get_eventually(&spec.private_ip, Duration::from_secs(20));
    assert!(body.contains("hello from busybox"), "{body}");

    execs_see_the_machine(&rt, &spec).await;
    logs_have_both_streams(&rt, &spec).await;
    the_writable_layer_is_reset_on_start(&rt, &spec).await;
    let rt = a_new_runtime_reattaches(&tmp, rt, &spec).await;
    destroy_leaves_nothing(&tmp, &rt, &spec).await;
}

/// Phase of the test above: execs see the machine's environment, hosts, DNS, processes and stats.
async fn execs_see_the_machine(rt: &GvisorRuntime, spec: &aloft_runtime::MachineSpec) {
    // Exec gets the machine's environment; stdin and exit codes come back.
    let out = rt
        .exec(
            &spec.id,
            &[
                "sh".into(),
                "-c".into(),
                "echo $GREETING $FLY_MACHINE_ID; cat; exit 4".into(),
            ],
            Some("from stdin"),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, 4, "{out:?}");
    assert_eq!(out.stdout, format!("hi {}\nfrom stdin", spec.id));
    let out = rt
        .exec(
            &spec.id,
            &["no-such-tool".into()],
            None,
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, 127, "{out:?}");
    assert!(out.stderr.contains("no-such-tool"), "{out:?}");
    let hosts = rt
        .exec(
            &spec.id,
            &["cat".into(), "/etc/hosts".into()],
            None,
            Duration::from_secs(20),
        )
        .await
        .unwrap()
        .stdout;
    assert!(
        hosts.contains("fly-local-6pn") && hosts.contains(&spec.private_ip),
        "{hosts}"
    );
    let resolv = rt
        .exec(
            &spec.id,
            &["cat".into(), "/etc/resolv.conf".into()],
            None,
            Duration::from_secs(20),
        )
        .await
        .unwrap()
        .stdout;
    assert_eq!(resolv, "search corp.example\nnameserver 192.0.2.53\n");
    let ps = rt.ps(&spec.id).await.unwrap();
    assert!(ps.iter().any(|p| p.command.contains("httpd")), "{ps:?}");
    let stats = rt.stats(&spec.id).await.unwrap();
    assert!(stats.memory_bytes > 0, "{stats:?}");
}

/// Phase of the test above: the logs have every line, with its stream.
async fn logs_have_both_streams(rt: &GvisorRuntime, spec: &aloft_runtime::MachineSpec) {
    // Logs: every line, with its stream.
    let logs = rt.logs(&spec.id).await.unwrap();
    assert!(
        logs.iter()
            .any(|l| l.message == format!("started {}", spec.id) && l.stream == "stdout"),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.message == "to-stderr" && l.stream == "stderr"),
        "{logs:?}"
    );
}

/// Phase of the test above: a restart begins from the image again.
async fn the_writable_layer_is_reset_on_start(
    rt: &GvisorRuntime,
    spec: &aloft_runtime::MachineSpec,
) {
    // A file written in one run is gone in the next: the writable layer is reset on start.
    rt.exec(
        &spec.id,
        &["touch".into(), "/srv/scratch".into()],
        None,
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    let status = rt
        .stop(&spec.id, Signal::TERM, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(status.signal, Some(15), "{status:?}");
    assert!(rt.reattach(&spec.id).await.unwrap().is_none());
    rt.start(spec).await.unwrap();
    get_eventually(&spec.private_ip, Duration::from_secs(20));
    let ls = rt
        .exec(
            &spec.id,
            &["ls".into(), "/srv".into()],
            None,
            Duration::from_secs(20),
        )
        .await
        .unwrap()
        .stdout;
    assert!(!ls.contains("scratch"), "{ls}");
}

/// Phase of the test above: a new runtime object finds the machine running (returned).
async fn a_new_runtime_reattaches(
    tmp: &tempfile::TempDir,
    rt: GvisorRuntime,
    spec: &aloft_runtime::MachineSpec,
) -> GvisorRuntime {
    // The agent goes away; a new runtime object (same state dir and bridge) finds the machine
    // running and can wait on it.
    let opts = options(&tmp.path().join("state"), rt.network().options().clone());
    drop(rt);
    let rt = GvisorRuntime::new(opts).unwrap();
    let found = rt.reattach(&spec.id).await.unwrap().expect("still running");
    assert_eq!(found.instance_id, "v1");
    assert!(get(&spec.private_ip).is_some());
    rt.kill(&spec.id).await.unwrap();
    let status = rt.wait(&spec.id).await.unwrap();
    assert_eq!(status.signal, Some(9), "{status:?}");
    rt
}

/// Phase of the test above: destroy leaves nothing behind.
async fn destroy_leaves_nothing(
    tmp: &tempfile::TempDir,
    rt: &GvisorRuntime,
    spec: &aloft_runtime::MachineSpec,
) {
    // Destroy leaves nothing: no process, namespace, mount or file.
    rt.destroy(&spec.id).await.unwrap();
    assert!(!Path::new(&format!("/var/run/netns/aloft-{}", spec.id)).exists());
    assert!(
        !tmp.path()
            .join("state/machines")
            .join(spec.id.as_str())
            .exists()
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(spec.id.as_str()), "{mounts}");
    assert!(
        MachineCgroup::new(spec.id.as_str()).is_removed(),
        "no cgroup left in any hierarchy"
    );
    assert!(get(&spec.private_ip).is_none());
    let bridge = rt.network().options().bridge.clone();
    rt.network().remove().unwrap();
    assert!(!Path::new("/sys/class/net").join(&bridge).exists());
}

async fn wait_exit(
    rt: &GvisorRuntime,
    spec: &aloft_runtime::MachineSpec,
) -> aloft_runtime::ExitStatus {
    tokio::time::timeout(Duration::from_secs(60), rt.wait(&spec.id))
        .await
        .expect("the machine ended")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_are_reported_with_their_cause() {
    skip_unless!(TOOLS);
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(tmp.path());
    let (rt, _cleanup) = runtime(&tmp.path().join("state"));

    // An entrypoint that does not exist: the run ends at once with 127 and a log line naming it.
    let mut missing = spec(&rootfs, "unused", 256);
    missing.image.as_mut().unwrap().process.argv = vec!["/app/server".into()];
    rt.start(&missing).await.unwrap();
    let status = wait_exit(&rt, &missing).await;
    assert_eq!(status.exit_code, 127, "{status:?}");
    let logs = rt.logs(&missing.id).await.unwrap();
    assert!(
        logs.iter()
            .any(|l| l.message.contains("/app/server") && l.stream == "stderr"),
        "{logs:?}"
    );

    // Exit code 3 is reported as such.
    let three = spec(&rootfs, "exit 3", 256);
    rt.start(&three).await.unwrap();
    let status = wait_exit(&rt, &three).await;
    assert_eq!(
        (status.exit_code, status.signal, status.oom_killed),
        (3, None, false)
    );

    // A process that ignores SIGTERM is killed after the stop timeout.
    let stubborn = spec(&rootfs, "trap '' TERM; while true; do sleep 1; done", 256);
    rt.start(&stubborn).await.unwrap();
    let t0 = std::time::Instant::now();
    let status = rt
        .stop(&stubborn.id, Signal::TERM, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(status.signal, Some(9), "{status:?}");
    assert!(t0.elapsed() >= Duration::from_secs(1));

    // A memory hog is OOM-killed by its 64 MB limit, and reported as such.
    let hog = spec(
        &rootfs,
        "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done",
        64,
    );
    rt.start(&hog).await.unwrap();
    let status = wait_exit(&rt, &hog).await;
    assert!(status.oom_killed, "{status:?}");

    for s in [&missing, &three, &stubborn, &hog] {
        rt.destroy(&s.id).await.unwrap();
    }
    rt.network().remove().unwrap();

    // Without runsc, the error names the package.
    let err = GvisorRuntime::new(GvisorOptions {
        state_dir: tmp.path().join("other"),
        init_binary: find_init_binary().unwrap(),
        network: network(),
        runsc: Some("/nonexistent/runsc".into()),
    })
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("apt-get install runsc"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn machines_of_different_orgs_cannot_reach_each_other() {
    skip_unless!(TOOLS);
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(tmp.path());
    let (rt, _cleanup) = runtime(&tmp.path().join("state"));
    let serve = "exec httpd -f -p 8080 -h /srv";
    let with_org = |org: u32, n: u32| {
        let mut s = spec(&rootfs, serve, 256);
        s.private_ip = aloft_types::sixpn::machine_address(org, 1, n).to_string();
        s
    };
    let base = 50_000 + std::process::id() % 10_000;
    let a1 = with_org(base, 1);
    let a2 = with_org(base, 2);
    let b1 = with_org(base + 1, 1);
    for s in [&a1, &a2, &b1] {
        rt.start(s).await.unwrap();
        get_eventually(&s.private_ip, Duration::from_secs(20));
    }
    let fetch = |from: &aloft_runtime::MachineSpec, to: &aloft_runtime::MachineSpec| {
        let script = format!(
            "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {} 8080",
            to.private_ip
        );
        let rt = &rt;
        let id = from.id.clone();
        async move {
            rt.exec(
                &id,
                &["sh".into(), "-c".into(), script],
                None,
                Duration::from_secs(20),
            )
            .await
            .unwrap()
        }
    };
    let same_org = fetch(&a1, &a2).await;
    assert!(
        same_org.stdout.contains("hello from busybox"),
        "{same_org:?}"
    );
    let other_org = fetch(&a1, &b1).await;
    assert!(!other_org.stdout.contains("hello"), "{other_org:?}");
    let back = fetch(&b1, &a2).await;
    assert!(!back.stdout.contains("hello"), "{back:?}");
    for s in [&a1, &a2, &b1] {
        rt.destroy(&s.id).await.unwrap();
    }
    rt.network().remove().unwrap();
}

/// The CPUs the sandbox's processes may run on (`Cpus_allowed_list` of one of them).
fn allowed_cpus(id: &aloft_types::MachineId) -> String {
    let procs = match Version::detect() {
        Version::V1 => format!("/sys/fs/cgroup/cpuset/aloft/{id}/sandbox/cgroup.procs"),
        Version::V2 => format!("/sys/fs/cgroup/aloft/{id}/sandbox/cgroup.procs"),
    };
    let pid = std::fs::read_to_string(&procs).unwrap();
    let pid = pid.lines().next().expect("the sandbox has processes");
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn performance_machines_get_cores_of_their_own() {
    skip_unless!(TOOLS);
    let host = aloft_runtime::cgroup::parse_cpu_list(
        &std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap(),
    );
    if host.len() < 2 {
        eprintln!("SKIPPED: one CPU, no core to dedicate");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(tmp.path());
    let (rt, _cleanup) = runtime(&tmp.path().join("state"));
    let all = aloft_runtime::cgroup::cpu_list(&host);
    let shared = spec(&rootfs, "exec sleep 1000", 128);
    rt.start(&shared).await.unwrap();
    assert_eq!(allowed_cpus(&shared.id), all);

    // One core of its own (the host's first stays with the host); the shared machine leaves it.
    let mut fast = spec(&rootfs, "exec sleep 1000", 128);
    fast.config.guest.cpu_kind = aloft_types::config::CpuKind::Performance;
    fast.config.guest.cpus = 1;
    rt.start(&fast).await.unwrap();
    let own = allowed_cpus(&fast.id);
    assert_eq!(own, host[1].to_string());
    let rest: Vec<u32> = host.iter().copied().filter(|c| *c != host[1]).collect();
    assert_eq!(
        allowed_cpus(&shared.id),
        aloft_runtime::cgroup::cpu_list(&rest)
    );

    // No core left for a second one with as many CPUs as the host: it shares.
    let mut greedy = spec(&rootfs, "exec sleep 1000", 128);
    greedy.config.guest.cpu_kind = aloft_types::config::CpuKind::Performance;
    greedy.config.guest.cpus = host.len() as u32;
    rt.start(&greedy).await.unwrap();
    assert_eq!(
        allowed_cpus(&greedy.id),
        aloft_runtime::cgroup::cpu_list(&rest)
    );

    // Its core comes back when it stops.
    rt.kill(&fast.id).await.unwrap();
    rt.wait(&fast.id).await.unwrap();
    assert_eq!(allowed_cpus(&shared.id), all);
    for s in [&shared, &fast, &greedy] {
        rt.destroy(&s.id).await.unwrap();
        assert!(MachineCgroup::new(s.id.as_str()).is_removed());
    }
    rt.network().remove().unwrap();
}

/// Free bytes on the filesystem holding `path`.
fn free_bytes(path: &Path) -> u64 {
    let s = rustix::fs::statvfs(path).unwrap();
    s.f_bavail * s.f_frsize
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_cannot_fill_the_hosts_disk_nor_the_agents_memory() {
    skip_unless!(TOOLS);
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(tmp.path());
    let state = tmp.path().join("state");
    let (rt, _cleanup) = runtime(&state);
    let mut spec = spec(&rootfs, "exec sleep 3600", 256);
    spec.config.guest.rootfs_size_mb = Some(64);
    rt.create(&spec).await.unwrap();
    rt.start(&spec).await.unwrap();
    root_writes_stop_at_the_quota(&rt, &spec, &state).await;
    exec_output_is_capped(&rt, &spec).await;

    // Stopped and destroyed: no mount and no loop device of the machine's layer is left.
    rt.kill(&spec.id).await.unwrap();
    wait_exit(&rt, &spec).await;
    let layer = state.join("machines").join(spec.id.as_str()).join("layer");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(&*layer.to_string_lossy()), "{mounts}");
    rt.destroy(&spec.id).await.unwrap();
    assert!(!layer.exists());
    let loops = std::process::Command::new("losetup")
        .arg("-a")
        .output()
        .unwrap();
    let loops = String::from_utf8_lossy(&loops.stdout);
    assert!(!loops.contains(spec.id.as_str()), "{loops}");
    a_run_that_ended_unwatched_is_torn_down_on_reattach(&rt, &rootfs, &state).await;
    rt.network().remove().unwrap();
}

/// Phase of the test above: a run that ended while no agent watched (found by `reattach`
/// after an agent restart) gives back its layer's mount and loop device, and its exit report
/// still says how it ended.
async fn a_run_that_ended_unwatched_is_torn_down_on_reattach(
    rt: &GvisorRuntime,
    rootfs: &Path,
    state: &Path,
) {
    let mut spec = spec(rootfs, "sleep 1; exit 3", 256);
    spec.config.guest.rootfs_size_mb = Some(64);
    rt.start(&spec).await.unwrap();
    let layer = state.join("machines").join(spec.id.as_str()).join("layer");
    let deadline = Instant::now() + Duration::from_secs(30);
    while rt.reattach(&spec.id).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the machine did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(&*layer.to_string_lossy()), "{mounts}");
    assert_eq!(wait_exit(rt, &spec).await.exit_code, 3);
    rt.destroy(&spec.id).await.unwrap();
}

/// Phase of the test above: writing 1 GB to the root filesystem fails with ENOSPC at the
/// machine's 64 MB quota, and the host's disk does not hold the rest.
async fn root_writes_stop_at_the_quota(
    rt: &GvisorRuntime,
    spec: &aloft_runtime::MachineSpec,
    state: &Path,
) {
    let free_before = free_bytes(state);
    assert!(
        free_before > 3 << 30,
        "the test needs 3 GB free on the host"
    );
    let out = rt
        .exec(
            &spec.id,
            &[
                "sh".into(),
                "-c".into(),
                "busybox dd if=/dev/zero of=/fill bs=1M count=1000; echo size=$(busybox wc -c < /fill)"
                    .into(),
            ],
            None,
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    assert!(
        out.stderr.contains("No space left on device"),
        "the write did not fail at the quota: {out:?}"
    );
    let size: u64 = out
        .stdout
        .trim()
        .strip_prefix("size=")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(size <= 64 << 20, "the machine wrote {size} bytes");
    // The host holds at most the quota of it (other writers on the host blur this: a margin).
    let dropped = free_before.saturating_sub(free_bytes(state));
    assert!(dropped < 512 << 20, "the host lost {dropped} bytes");
}

/// Phase of the test above: an exec writing 1 GB returns the first MiB of it, says so, and
/// does so within a bounded time.
async fn exec_output_is_capped(rt: &GvisorRuntime, spec: &aloft_runtime::MachineSpec) {
    let t0 = Instant::now();
    let out = rt
        .exec(
            &spec.id,
            &[
                "head".into(),
                "-c".into(),
                "1000000000".into(),
                "/dev/zero".into(),
            ],
            None,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(out.truncated, "exit {} {}", out.exit_code, out.stderr);
    assert_eq!(out.stdout.len(), aloft_types::api::EXEC_OUTPUT_CAP);
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
    // The machine is still there and answers.
    let out = rt
        .exec(
            &spec.id,
            &["echo".into(), "ok".into()],
            None,
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert_eq!((out.stdout.as_str(), out.truncated), ("ok\n", false));
}
