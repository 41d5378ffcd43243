//! The gVisor backend with real runsc sandboxes, aloft-init as PID 1, real network namespaces
//! and cgroups. Needs root, runsc, iproute2, nftables, busybox-static and a built aloft-init
//! (`scripts/setup.sh`); otherwise each test prints SKIPPED.

mod common;

use aloft_runtime::gvisor::{GvisorOptions, GvisorRuntime};
use aloft_runtime::{Runtime, find_init_binary};
use aloft_types::signal::Signal;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

const TOOLS: &[(&str, &str)] = &[("runsc", "runsc"), ("ip", "iproute2"), ("nft", "nftables")];

fn runtime(state: &Path) -> GvisorRuntime {
    GvisorRuntime::new(GvisorOptions {
        state_dir: state.to_path_buf(),
        init_binary: find_init_binary().unwrap(),
        network: network(),
        runsc: None,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_machine_serves_execs_logs_and_restarts_from_its_image() {
    skip_unless!(TOOLS);
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(tmp.path());
    let rt = runtime(&tmp.path().join("state"));
    let spec = spec(
        &rootfs,
        "echo started $FLY_MACHINE_ID; echo to-stderr >&2; exec httpd -f -p 8080 -h /srv",
        256,
    );
    rt.create(&spec).await.unwrap();
    let t0 = Instant::now();
    let running = rt.start(&spec).await.unwrap();
    eprintln!("started in {:?}", t0.elapsed());
    assert_eq!(running.instance_id, "v1");

    // HTTP on the machine's 6PN address and its IPv4 address, from the host.
    let body = get_eventually(&spec.private_ip, Duration::from_secs(20));
    assert!(body.contains("hello from busybox"), "{body}");

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
    let ps = rt.ps(&spec.id).await.unwrap();
    assert!(ps.iter().any(|p| p.command.contains("httpd")), "{ps:?}");
    let stats = rt.stats(&spec.id).await.unwrap();
    assert!(stats.memory_bytes > 0, "{stats:?}");

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
    rt.start(&spec).await.unwrap();
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

    // The agent goes away; a new runtime object finds the machine running and can wait on it.
    drop(rt);
    let rt = runtime(&tmp.path().join("state"));
    let found = rt.reattach(&spec.id).await.unwrap().expect("still running");
    assert_eq!(found.instance_id, "v1");
    assert!(get(&spec.private_ip).is_some());
    rt.kill(&spec.id).await.unwrap();
    let status = rt.wait(&spec.id).await.unwrap();
    assert_eq!(status.signal, Some(9), "{status:?}");

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
    assert!(get(&spec.private_ip).is_none());
}
