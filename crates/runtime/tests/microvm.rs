//! The microVM backend with real QEMU guests (TCG emulation on hosts without usable KVM, so this
//! tier is kept to one boot-heavy test and a cheap one). Needs root, qemu-system-x86, qemu-utils,
//! e2fsprogs, busybox-static, the guest kernel (`scripts/guest-kernel.sh`) and a built aloft-init
//! (`scripts/setup.sh` does all of it); otherwise the tests print SKIPPED.

mod common;

use aloft_runtime::microvm::{Accel, MicrovmOptions, MicrovmRuntime, kvm_usable, tcg_tsc_khz};
use aloft_runtime::volume::{AttachedVolume, VolumeKey, VolumeStore};
use aloft_runtime::{DEFAULT_KERNEL_DIR, Runtime, find_init_binary};
use aloft_types::signal::Signal;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("qemu-img", "qemu-utils"),
    ("mkfs.ext4", "e2fsprogs"),
    ("ip", "iproute2"),
    ("nft", "nftables"),
];

fn kernel_dir() -> PathBuf {
    std::env::var_os("ALOFT_KERNEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_KERNEL_DIR))
}

fn options(state: &Path, boot_timeout: Duration) -> MicrovmOptions {
    MicrovmOptions {
        state_dir: state.to_path_buf(),
        init_binary: find_init_binary().unwrap(),
        kernel_dir: kernel_dir(),
        network: network(),
        accel: Accel::Auto,
        boot_timeout,
        qemu: None,
    }
}

#[test]
fn a_missing_qemu_is_named_with_its_package() {
    let tmp = tempfile::tempdir().unwrap();
    let err = MicrovmRuntime::new(MicrovmOptions {
        state_dir: tmp.path().join("state"),
        init_binary: tmp.path().join("aloft-init"),
        kernel_dir: tmp.path().join("kernel"),
        network: network(),
        accel: Accel::Auto,
        boot_timeout: Duration::from_secs(1),
        qemu: Some(tmp.path().join("qemu-system-x86_64")),
    })
    .err()
    .expect("no QEMU, no backend")
    .to_string();
    assert!(err.contains("apt-get install qemu-system-x86"), "{err}");
}

/// One emulated guest at a time: two TCG guests on a 2-core host slow each other past timeouts.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

macro_rules! skip_without_kernel {
    () => {
        if !kernel_dir().join("current").exists() {
            eprintln!("\n*** SKIPPED: no guest kernel (scripts/guest-kernel.sh) ***\n");
            return;
        }
    };
}

#[tokio::test(flavor = "multi_thread")]
async fn a_microvm_boots_serves_execs_and_reports_its_exit() {
    skip_unless!(TOOLS);
    skip_without_kernel!();
    let _one = ONE_AT_A_TIME.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(tmp.path());
    let rt =
        MicrovmRuntime::new(options(&tmp.path().join("state"), Duration::from_secs(120))).unwrap();
    eprintln!("accel: {:?}", rt.accel());
    let mut spec = spec(
        &rootfs,
        "touch /ran; echo persisted > /data/f; sync; echo booted $FLY_MACHINE_ID; trap 'echo bye; exit 0' TERM; httpd -f -p 8080 -h /srv & wait",
        256,
    );
    // A volume at /data: an encrypted disk QEMU opens with its key, mounted by init.
    let volumes = VolumeStore::new(tmp.path().join("volumes"));
    let key = VolumeKey::new("v".repeat(64));
    let disk = volumes
        .prepare("vol_0123456789abcdef", 1, &key)
        .await
        .unwrap();
    spec.volumes = vec![AttachedVolume {
        id: "vol_0123456789abcdef".into(),
        path: "/data".into(),
        store: volumes.clone(),
        key,
    }];
    rt.create(&spec).await.unwrap();
    let t0 = Instant::now();
    if let Err(e) = rt.start(&spec).await {
        let logs = rt.logs(&spec.id).await.unwrap_or_default();
        let console: Vec<&str> = logs.iter().map(|l| l.message.as_str()).collect();
        panic!("{e}\nconsole:\n{}", console.join("\n"));
    }
    eprintln!("booted in {:?}", t0.elapsed());

    it_serves_and_execs(&rt, &spec).await;
    let rt = a_new_runtime_reattaches(&tmp, rt, &spec).await;
    sigterm_reaches_the_process(&rt, &spec).await;

    // The volume's data is on its disk, encrypted; its key is not left on the host.
    let on_disk = std::fs::read(&disk).unwrap();
    assert!(!on_disk.windows(9).any(|w| w == b"persisted"));
    let machine_dir = tmp.path().join("state/machines").join(spec.id.as_str());
    assert!(!machine_dir.join("volkey0").exists());

    later_runs_report_their_exit(&rt, &spec).await;

    rt.destroy(&spec.id).await.unwrap();
    assert!(
        !tmp.path()
            .join("state/machines")
            .join(spec.id.as_str())
            .exists()
    );
    rt.network().remove().unwrap();
}

/// Phase of the test above: it serves HTTP on both addresses, and execs and stats reach it.
async fn it_serves_and_execs(rt: &MicrovmRuntime, spec: &aloft_runtime::MachineSpec) {
    // Served on its 6PN address and on its IPv4 address on the bridge.
    let body = get_eventually(&spec.private_ip, Duration::from_secs(30));
    assert!(body.contains("hello from busybox"), "{body}");
    let ipv4 = rt.network().get(spec.id.as_str()).unwrap().ipv4.to_string();
    let body = get_eventually(&ipv4, Duration::from_secs(30));
    assert!(body.contains("hello from busybox"), "{body}");
    let out = rt
        .exec(
            &spec.id,
            &[
                "sh".into(),
                "-c".into(),
                "echo $GREETING $FLY_MACHINE_ID; cat; exit 4".into(),
            ],
            Some("from stdin"),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, 4, "{out:?}");
    assert_eq!(out.stdout, format!("hi {}\nfrom stdin", spec.id));
    let ps = rt.ps(&spec.id).await.unwrap();
    assert!(ps.iter().any(|p| p.command.contains("httpd")), "{ps:?}");
    assert!(rt.stats(&spec.id).await.unwrap().memory_bytes > 0);
    the_guest_is_bounded(rt, spec).await;
}

/// Phase of the test above: an exec's output is capped, and the guest's processes cannot
/// write to the exit port (init holds it).
async fn the_guest_is_bounded(rt: &MicrovmRuntime, spec: &aloft_runtime::MachineSpec) {
    let t0 = Instant::now();
    let out = rt
        .exec(
            &spec.id,
            &["sh".into(), "-c".into(), "yes | head -c 1000000000".into()],
            None,
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    assert!(out.truncated, "exit {} {}", out.exit_code, out.stderr);
    assert_eq!(out.stdout.len(), aloft_types::api::EXEC_OUTPUT_CAP);
    eprintln!("1 GB exec answered in {:?}", t0.elapsed());
    let forge = concat!(
        "cd /sys/class/virtio-ports && for d in $(ls); do ",
        "if [ \"$(cat $d/name)\" = aloft.exit ]; then ",
        "echo '{\"exit_code\":42}' > /dev/$d && echo forged; fi; done",
    );
    let out = rt
        .exec(
            &spec.id,
            &["sh".into(), "-c".into(), forge.into()],
            None,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(
        !out.stdout.contains("forged") && out.stderr.contains("busy"),
        "{out:?}"
    );
}

/// Phase of the test above: a new runtime object finds the guest running (returned).
async fn a_new_runtime_reattaches(
    tmp: &tempfile::TempDir,
    rt: MicrovmRuntime,
    spec: &aloft_runtime::MachineSpec,
) -> MicrovmRuntime {
    // The agent goes away: a new runtime object finds the guest running and talks to it.
    // (Same bridge and subnet as before: the machine is on them.)
    let network = rt.network().options().clone();
    drop(rt);
    let rt = MicrovmRuntime::new(MicrovmOptions {
        network,
        ..options(&tmp.path().join("state"), Duration::from_secs(120))
    })
    .unwrap();
    assert!(rt.reattach(&spec.id).await.unwrap().is_some());
    let out = rt
        .exec(
            &spec.id,
            &["echo".into(), "again".into()],
            None,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, "again\n");
    rt
}

/// Phase of the test above: a stop's SIGTERM reaches the process, and the logs have its lines.
async fn sigterm_reaches_the_process(rt: &MicrovmRuntime, spec: &aloft_runtime::MachineSpec) {
    // SIGTERM goes to the process through init; its exit comes back through the exit port.
    let status = rt
        .stop(&spec.id, Signal::TERM, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!((status.exit_code, status.signal), (0, None), "{status:?}");
    let logs = rt.logs(&spec.id).await.unwrap();
    assert!(
        logs.iter()
            .any(|l| l.message.contains(&format!("booted {}", spec.id))),
        "{logs:?}"
    );
    assert!(logs.iter().any(|l| l.message.contains("bye")), "{logs:?}");
}

/// Phase of the test above: later runs of the machine (an exit code, a missing program, an OOM
/// kill) report how they ended.
async fn later_runs_report_their_exit(rt: &MicrovmRuntime, spec: &aloft_runtime::MachineSpec) {
    // The same machine again, from a fresh disk (no /ran) but with its volume's data, with a
    // process that exits with 3.
    let mut three = spec.clone();
    three.image.as_mut().unwrap().process.argv = vec![
        "/bin/sh".into(),
        "-c".into(),
        "test -e /ran && exit 5; test \"$(cat /data/f)\" = persisted || exit 6; exit 3".into(),
    ];
    let t0 = Instant::now();
    rt.start(&three).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(120), rt.wait(&three.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((status.exit_code, status.signal), (3, None), "{status:?}");
    eprintln!("second run (boot + exit) in {:?}", t0.elapsed());

    // An entrypoint that does not exist: a run that ends at once with 127, and init's reason.
    let mut missing = spec.clone();
    missing.image.as_mut().unwrap().process.argv = vec!["/no/such/program".into()];
    rt.start(&missing).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(120), rt.wait(&missing.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.exit_code, 127, "{status:?}");
    let why = rt.exit_message(&missing.id).await.unwrap_or_default();
    assert!(why.contains("/no/such/program"), "{why}");

    // A memory hog: the guest kernel's OOM killer ends it, and init says so.
    let mut hog = spec.clone();
    hog.image.as_mut().unwrap().process.argv = vec![
        "/bin/sh".into(),
        "-c".into(),
        "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done".into(),
    ];
    rt.start(&hog).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(120), rt.wait(&hog.id))
        .await
        .unwrap()
        .unwrap();
    assert!(status.oom_killed && status.signal == Some(9), "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_never_boots_fails_its_start_and_releases_everything() {
    skip_unless!(TOOLS);
    skip_without_kernel!();
    let _one = ONE_AT_A_TIME.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(tmp.path());

    // A kernel that is not one: QEMU stops at once, and start says so.
    let fake = tmp.path().join("kernel");
    std::fs::create_dir_all(fake.join("v1/root/lib/modules/v1")).unwrap();
    std::fs::write(fake.join("current"), "v1").unwrap();
    std::fs::write(fake.join("v1/vmlinuz"), vec![0u8; 4096]).unwrap();
    std::fs::write(fake.join("v1/root/lib/modules/v1/modules.dep"), "").unwrap();
    let mut opts = options(&tmp.path().join("fake-state"), Duration::from_secs(5));
    opts.kernel_dir = fake;
    opts.accel = Accel::Tcg;
    let rt = MicrovmRuntime::new(opts).unwrap();
    let bogus = spec(&rootfs, "sleep 1000", 128);
    let err = rt.start(&bogus).await.unwrap_err().to_string();
    assert!(err.contains("stopped before it booted"), "{err}");
    rt.destroy(&bogus.id).await.unwrap();
    rt.network().remove().unwrap();

    // The host probes ran once for this state dir and are cached: KVM (a hang on KVM-PVM
    // hosts, so TCG here) and, under TCG, the TSC frequency guests are given.
    let state = tmp.path().join("state");
    let rt = MicrovmRuntime::new(options(&state, Duration::from_secs(15))).unwrap();
    let kernels = kernel_dir();
    if std::path::Path::new("/dev/kvm").exists() {
        assert!(state.join("kvm-probe").is_file());
        let t0 = Instant::now();
        let kvm = kvm_usable(&state, &kernels).unwrap();
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "the verdict is cached"
        );
        assert_eq!(kvm, rt.accel() == Accel::Kvm);
    }
    if rt.accel() == Accel::Tcg {
        // Guests are told the TSC frequency (their own calibration fails now and then under
        // TCG, and they hang): the host's, give or take 0.1%.
        let khz = tcg_tsc_khz(&state, &kernels).unwrap().unwrap();
        assert!(state.join("tsc-probe").is_file());
        let host_mhz: f64 = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("cpu MHz"))
            .and_then(|v| v.trim_start_matches([' ', '\t', ':']).trim().parse().ok())
            .unwrap();
        let host_khz = (host_mhz * 1000.0) as u64;
        assert!(
            khz.abs_diff(host_khz) * 1000 < host_khz,
            "{khz} vs {host_khz} kHz"
        );
    }

    // A guest whose init never answers (the kernel runs `sleep` instead of aloft-init): start
    // gives up after the boot timeout, stops QEMU and releases the network.
    let mut spec = spec(&rootfs, "sleep 1000", 128);
    spec.config.guest.kernel_args = ["rdinit=/bin/busybox", "--", "sleep", "1000"]
        .map(String::from)
        .to_vec();
    let t0 = Instant::now();
    let err = rt.start(&spec).await.unwrap_err().to_string();
    assert!(err.contains("did not boot within 15s"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(60));
    assert!(
        rt.reattach(&spec.id).await.unwrap().is_none(),
        "QEMU was stopped"
    );
    assert!(rt.network().get(spec.id.as_str()).is_none(), "TAP released");
    rt.destroy(&spec.id).await.unwrap();
    rt.network().remove().unwrap();
    assert!(
        !tmp.path()
            .join("state/machines")
            .join(spec.id.as_str())
            .exists()
    );
}
