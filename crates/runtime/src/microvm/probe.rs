//! What the microVM backend learns about its host by booting the guest kernel once, cached in
//! the state dir per kernel version and CPU model:
//!
//! - [`kvm_usable`]: whether a stock kernel boots under KVM. On KVM-PVM hosts (a "KVM" that
//!   is itself a guest's paravirtual interface) `/dev/kvm` opens but the kernel hangs right
//!   after decompression, so only a boot with a timeout tells.
//! - [`tcg_tsc_khz`]: the TSC frequency a guest sees under TCG emulation, which is the host's
//!   own (QEMU reads the host's counter). Linux measures it against the PIT at boot; under TCG
//!   that measurement fails now and then (the emulated PIT's timing follows host load), and a
//!   microvm guest has no HPET or ACPI PM timer to fall back on, so the kernel hangs before it
//!   prints anything else. Guests are therefore told the frequency (`tsc_early_khz=`), measured
//!   once here by a kernel whose calibration succeeded.

use super::{kernel, other};
use crate::RuntimeError;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a stock kernel may take to panic (no root disk) under KVM before KVM counts as
/// unusable. A working KVM needs well under a second.
const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(8);
/// How long one TCG boot may take to report its TSC (about 5 s on an idle 2-core host).
const TSC_PROBE_TIMEOUT: Duration = Duration::from_secs(40);
const TSC_PROBE_ATTEMPTS: usize = 3;

/// The machine type every guest (and probe) boots with.
pub(super) const MACHINE: &str = "microvm,x-option-roms=off,isa-serial=on,rtc=off";

/// What a cached verdict is valid for: the kernel and the host's CPU.
fn host_key(version: &str) -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(str::to_string))
        .unwrap_or_default();
    format!("{version} {}", cpu.trim_start_matches([' ', '\t', ':']))
}

/// A verdict cached as `<verdict>\n<key>` in `<state>/<file>`.
fn cached(state_dir: &Path, file: &str, key: &str) -> Option<String> {
    let s = fs::read_to_string(state_dir.join(file)).ok()?;
    let (verdict, k) = s.split_once('\n')?;
    (k.trim() == key).then(|| verdict.to_string())
}

fn store(state_dir: &Path, file: &str, key: &str, verdict: &str) {
    let _ = fs::create_dir_all(state_dir);
    let _ = aloft_durable::write(
        &state_dir.join(file),
        format!("{verdict}\n{key}").as_bytes(),
        0o644,
    );
}

fn qemu() -> Result<std::path::PathBuf, RuntimeError> {
    crate::gvisor::which("qemu-system-x86_64").ok_or_else(|| {
        other("qemu-system-x86_64 is not installed: apt-get install qemu-system-x86")
    })
}

/// A probe boot: the kernel alone (no initramfs, no disk), its console on stdout, line by line.
struct ProbeBoot {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl ProbeBoot {
    fn start(accel: &str, vmlinuz: &Path, append: &str) -> Result<Self, RuntimeError> {
        let mut child = Command::new(qemu()?)
            .args(["-M", MACHINE, "-accel", accel, "-cpu", "max", "-m", "128"])
            .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
            .arg("-kernel")
            .arg(vmlinuz)
            .args(["-append", append, "-serial", "stdio"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| other(format!("running qemu-system-x86_64 for a probe boot: {e}")))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self { child, lines })
    }

    /// The next console line before `deadline`; `None` at the deadline or when QEMU is gone.
    fn next_line(&self, deadline: Instant) -> Option<String> {
        let left = deadline.checked_duration_since(Instant::now())?;
        self.lines.recv_timeout(left).ok()
    }
}

impl Drop for ProbeBoot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a stock kernel boots under KVM here: boot it with no root disk and `panic=-1`, so a
/// working guest gets as far as mounting its root and panics within a second; a hang (KVM-PVM) or an error
/// means no. The verdict is cached in `<state>/kvm-probe`.
pub fn kvm_usable(state_dir: &Path, kernel_dir: &Path) -> Result<bool, RuntimeError> {
    if !Path::new("/dev/kvm").exists() {
        return Ok(false);
    }
    let (version, dir) = kernel(kernel_dir)?;
    let key = host_key(&version);
    if let Some(v) = cached(state_dir, "kvm-probe", &key) {
        return Ok(v == "kvm");
    }
    let boot = ProbeBoot::start(
        "kvm",
        &dir.join("vmlinuz"),
        "console=ttyS0 panic=-1 reboot=t",
    )?;
    let deadline = Instant::now() + KVM_PROBE_TIMEOUT;
    let mut usable = false;
    while let Some(line) = boot.next_line(deadline) {
        if line.contains("Kernel panic") {
            usable = true;
            break;
        }
    }
    drop(boot);
    if !usable {
        tracing::warn!(
            "a stock kernel does not boot under KVM on this host within {}s (no hardware virtualization, or KVM-PVM): microVMs run under TCG emulation, which is slow",
            KVM_PROBE_TIMEOUT.as_secs()
        );
    }
    store(
        state_dir,
        "kvm-probe",
        &key,
        if usable { "kvm" } else { "tcg" },
    );
    Ok(usable)
}

/// The TSC frequency (kHz) guests see under TCG (see the module doc), cached in
/// `<state>/tsc-probe`. Where the host kernel's own figure can be read (`cpu MHz` in
/// `/proc/cpuinfo` is the TSC's calibration on a CPU with a constant TSC and no APERF/MPERF, so
/// not a momentary clock speed; the usual case in VMs, where KVM is not there) that is it;
/// otherwise a probe boot measures it. `None` when neither works: guests then calibrate alone.
pub fn tcg_tsc_khz(state_dir: &Path, kernel_dir: &Path) -> Result<Option<u64>, RuntimeError> {
    let (version, dir) = kernel(kernel_dir)?;
    let key = host_key(&version);
    if let Some(khz) = cached(state_dir, "tsc-probe", &key).and_then(|v| v.parse().ok()) {
        return Ok(Some(khz));
    }
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if let Some(khz) = cpuinfo_khz(&cpuinfo).filter(|_| !has_flag(&cpuinfo, "aperfmperf")) {
        store(state_dir, "tsc-probe", &key, &khz.to_string());
        return Ok(Some(khz));
    }
    if let Some(khz) = measure_tsc_khz(&dir.join("vmlinuz"))? {
        store(state_dir, "tsc-probe", &key, &khz.to_string());
        return Ok(Some(khz));
    }
    // A momentary clock speed is better than nothing (it is not cached: the next start of the
    // backend measures again).
    let guess = cpuinfo_khz(&cpuinfo);
    tracing::warn!(
        guess_khz = ?guess,
        "could not measure the TSC frequency of microVM guests under TCG; guessing from /proc/cpuinfo"
    );
    Ok(guess)
}

/// Boots `vmlinuz` alone under TCG until it prints the TSC frequency it calibrated (about 5 s),
/// up to three times, since the calibration is what fails now and then.
fn measure_tsc_khz(vmlinuz: &Path) -> Result<Option<u64>, RuntimeError> {
    for attempt in 1..=TSC_PROBE_ATTEMPTS {
        let boot = ProbeBoot::start("tcg", vmlinuz, "console=ttyS0 panic=-1 reboot=t loglevel=7")?;
        let deadline = Instant::now() + TSC_PROBE_TIMEOUT;
        let mut failed = None;
        while let Some(line) = boot.next_line(deadline) {
            if let Some(khz) = detected_khz(&line) {
                return Ok(Some(khz));
            }
            if line.contains("Unable to calibrate") || line.contains("Marking TSC unstable") {
                failed = Some(line);
                break;
            }
        }
        tracing::debug!(attempt, ?failed, "the guest kernel did not measure its TSC");
    }
    Ok(None)
}

/// `[    0.000000] tsc: Detected 2596.132 MHz processor` -> 2596132.
fn detected_khz(line: &str) -> Option<u64> {
    let rest = line.split("tsc: Detected ").nth(1)?;
    let mhz = rest.strip_suffix(" MHz processor")?;
    let (int, frac) = mhz.split_once('.').unwrap_or((mhz, "0"));
    let frac = format!("{frac:0<3}");
    Some(int.parse::<u64>().ok()? * 1000 + frac.get(..3)?.parse::<u64>().ok()?)
}

/// `cpu MHz` (of the first CPU) when the CPU has a constant TSC.
fn cpuinfo_khz(cpuinfo: &str) -> Option<u64> {
    let mhz: f64 = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("cpu MHz"))?
        .trim_start_matches([' ', '\t', ':'])
        .trim()
        .parse()
        .ok()?;
    (has_flag(cpuinfo, "constant_tsc") && mhz > 0.0).then(|| (mhz * 1000.0).round() as u64)
}

fn has_flag(cpuinfo: &str, flag: &str) -> bool {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|l| l.split_whitespace().any(|f| f == flag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tsc_frequency_the_kernel_detected() {
        assert_eq!(
            detected_khz("[    0.000000] tsc: Detected 2596.132 MHz processor"),
            Some(2_596_132)
        );
        assert_eq!(
            detected_khz("tsc: Detected 3000.0 MHz processor"),
            Some(3_000_000)
        );
        assert_eq!(detected_khz("tsc: Fast TSC calibration using PIT"), None);
    }

    #[test]
    fn reads_the_hosts_tsc_calibration_from_cpuinfo() {
        let vm = "model name\t: AMD EPYC\ncpu MHz\t\t: 2596.144\nflags\t\t: fpu tsc constant_tsc nonstop_tsc\n";
        assert_eq!(cpuinfo_khz(vm), Some(2_596_144));
        assert!(!has_flag(vm, "aperfmperf"));
        let scaling = "cpu MHz\t\t: 800.000\nflags\t\t: fpu tsc constant_tsc aperfmperf\n";
        assert!(has_flag(scaling, "aperfmperf"));
        assert_eq!(
            cpuinfo_khz("cpu MHz\t\t: 2596.144\nflags\t\t: fpu tsc\n"),
            None
        );
    }

    #[test]
    fn verdicts_are_cached_per_key() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(cached(dir.path(), "tsc-probe", "k1"), None);
        store(dir.path(), "tsc-probe", "k1", "2596132");
        assert_eq!(
            cached(dir.path(), "tsc-probe", "k1").as_deref(),
            Some("2596132")
        );
        assert_eq!(cached(dir.path(), "tsc-probe", "another kernel"), None);
    }
}
