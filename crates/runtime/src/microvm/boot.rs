//! A microVM's start, step by step: its TAP and the guest's network, its init config, a fresh
//! disk overlay, its initrd, the QEMU command line (with its volumes' keys), then QEMU under the
//! supervisor until init answers.

use super::initramfs::Cpio;
use super::{Accel, MicrovmRuntime, io_err, probe};
use crate::guest::init_config;
use crate::net::MachineNet;
use crate::supervise;
use crate::volume::KeyFile;
use crate::{MachineSpec, Running, RuntimeError};
use aloft_types::config::Guest;
use aloft_types::init::{
    CONTROL_PORT, EXIT_PORT, InitConfig, NetworkConfig, Route, VM_CONFIG_PATH, VmBoot, VmVolume,
};
use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

impl MicrovmRuntime {
    /// Everything of a start but the clean-up after a failure.
    pub(super) async fn boot(&self, spec: &MachineSpec) -> Result<Running, RuntimeError> {
        let id = &spec.id;
        let dir = self.dir(id);
        fs::create_dir_all(&dir).map_err(io_err("creating the machine", id))?;
        let tap = self.attach_tap(spec)?;
        let vm = self.vm_boot(spec);
        let cfg = init_config(spec, Some(guest_network(&tap)), Some(vm))?;
        let disk_bytes = self.make_overlay(spec, &dir).await?;
        self.write_initrd(spec, &dir, &cfg)?;
        let append = self.kernel_append(&spec.config.guest);
        let mut cmd = file_size_limit(disk_bytes)?;
        cmd.extend(self.qemu_command(&dir, &spec.config.guest, append, &tap));
        let keys = volume_args(spec, &dir, &mut cmd)?;
        let pid = supervise::spawn(&self.opts.init_binary, &dir, None, &cmd)
            .await
            .map_err(|e| RuntimeError::StartFailed {
                id: id.clone(),
                reason: e.to_string(),
            })?;
        drop_keys_once_read(&dir, keys).await;
        // Started when init answers on the control port (it serves once the process runs).
        self.await_boot(spec, &dir).await?;
        Ok(Running {
            instance_id: spec.instance_id.clone(),
            pid: Some(pid),
        })
    }

    /// The machine's TAP on the host bridge, for its 6PN address.
    fn attach_tap(&self, spec: &MachineSpec) -> Result<MachineNet, RuntimeError> {
        let id = &spec.id;
        let ipv6 = spec
            .private_ip
            .parse()
            .map_err(|_| RuntimeError::StartFailed {
                id: id.clone(),
                reason: format!("private_ip `{}` is not an IPv6 address", spec.private_ip),
            })?;
        self.net
            .attach_tap(id.as_str(), ipv6)
            .map_err(|e| RuntimeError::StartFailed {
                id: id.clone(),
                reason: format!("network: {e}"),
            })
    }

    /// What init needs to know of the VM: the modules to load, its root and its volumes' disks.
    fn vm_boot(&self, spec: &MachineSpec) -> VmBoot {
        VmBoot {
            modules: self.modules.clone(),
            root_device: "/dev/vda".into(),
            volumes: spec
                .volumes
                .iter()
                .map(|v| VmVolume {
                    serial: v.id.clone(),
                    path: v.path.clone(),
                })
                .collect(),
        }
    }

    /// A fresh copy-on-write layer over the image's disk: every start begins from the image.
    /// Returns the disk's size: the most the guest can write to its root.
    async fn make_overlay(&self, spec: &MachineSpec, dir: &Path) -> Result<u64, RuntimeError> {
        let id = &spec.id;
        let disk = self.disk(spec).await?;
        let disk_bytes = fs::metadata(&disk)
            .map_err(io_err("reading the image's disk", id))?
            .len();
        let overlay = dir.join("overlay.qcow2");
        let _ = fs::remove_file(&overlay);
        let out = tokio::process::Command::new(&self.qemu_img)
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&disk)
            .arg(&overlay)
            .output()
            .await
            .map_err(io_err("running qemu-img", id))?;
        if !out.status.success() {
            return Err(RuntimeError::StartFailed {
                id: id.clone(),
                reason: format!(
                    "qemu-img create failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(disk_bytes)
    }

    /// The cached initramfs with the machine's init config appended; the previous run's files
    /// removed and the instance noted.
    fn write_initrd(
        &self,
        spec: &MachineSpec,
        dir: &Path,
        cfg: &InitConfig,
    ) -> Result<(), RuntimeError> {
        let mut initrd = self.initramfs.clone();
        initrd.extend(Cpio::config(
            VM_CONFIG_PATH,
            &serde_json::to_vec(cfg).expect("serializable"),
        ));
        fs::write(dir.join("initrd"), &initrd).map_err(io_err("writing the initrd", &spec.id))?;
        for f in ["exit.json", "control.sock", "qmp.sock"] {
            let _ = fs::remove_file(dir.join(f));
        }
        let _ = fs::write(dir.join("instance"), &spec.instance_id);
        Ok(())
    }

    /// The guest kernel's command line.
    fn kernel_append(&self, guest: &Guest) -> String {
        let mut append = String::from("console=ttyS0 panic=-1 reboot=t quiet loglevel=3");
        if let (Accel::Tcg, Some(khz)) = (self.accel, self.tsc_khz) {
            // Under TCG the kernel's own TSC calibration fails now and then and the guest
            // hangs (see `probe`); the guest's TSC is the host's, steadier than any emulated
            // timer it could be checked against.
            append.push_str(&format!(" tsc_early_khz={khz} tsc=reliable"));
        }
        for a in &guest.kernel_args {
            append.push(' ');
            append.push_str(a);
        }
        append
    }

    /// QEMU's command line but the volumes: the VM, its kernel and initrd, root disk, NIC,
    /// control and exit ports, and QMP.
    fn qemu_command(
        &self,
        dir: &Path,
        guest: &Guest,
        append: String,
        tap: &MachineNet,
    ) -> Vec<OsString> {
        let accel = if self.accel == Accel::Kvm {
            "kvm"
        } else {
            "tcg"
        };
        let d = |f: &str| dir.join(f).to_string_lossy().into_owned();
        [
            self.qemu.to_string_lossy().into_owned(),
            "-M".into(),
            probe::MACHINE.into(),
            "-accel".into(),
            accel.into(),
            "-cpu".into(),
            "max".into(),
            "-m".into(),
            guest.memory_mb.to_string(),
            "-smp".into(),
            guest.cpus.to_string(),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-nographic".into(),
            "-no-reboot".into(),
            "-kernel".into(),
            self.kernel.to_string_lossy().into_owned(),
            "-initrd".into(),
            d("initrd"),
            "-append".into(),
            append,
            "-serial".into(),
            "stdio".into(),
            "-drive".into(),
            format!("id=root,file={},format=qcow2,if=none", d("overlay.qcow2")),
            "-device".into(),
            "virtio-blk-device,drive=root".into(),
            "-netdev".into(),
            format!("tap,id=n0,ifname={},script=no,downscript=no", tap.host_if),
            "-device".into(),
            format!("virtio-net-device,netdev=n0,mac={}", tap.mac),
            "-device".into(),
            "virtio-serial-device".into(),
            "-chardev".into(),
            format!(
                "socket,id=ctl,path={},server=on,wait=off",
                d("control.sock")
            ),
            "-device".into(),
            format!("virtserialport,chardev=ctl,name={CONTROL_PORT}"),
            "-chardev".into(),
            format!("file,id=ex,path={}", d("exit.json")),
            "-device".into(),
            format!("virtserialport,chardev=ex,name={EXIT_PORT}"),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", d("qmp.sock")),
        ]
        .into_iter()
        .map(OsString::from)
        .collect()
    }
}

/// `prlimit --fsize=N --`: QEMU runs with a file-size limit, so no file it writes for the guest
/// grows past the guest's disk: the root overlay stays under it (a qcow2 holds its virtual size
/// plus some metadata) and the exit port's file (only init's one report) could not grow past it
/// either if a guest got hold of the port; QEMU is ended (SIGXFSZ) when it would.
fn file_size_limit(disk_bytes: u64) -> Result<Vec<OsString>, RuntimeError> {
    let prlimit = crate::gvisor::which("prlimit").ok_or_else(|| {
        RuntimeError::Other("prlimit is not installed: apt-get install util-linux".into())
    })?;
    let limit = disk_bytes + disk_bytes / 8 + (64 << 20);
    Ok(vec![
        prlimit.into(),
        format!("--fsize={limit}").into(),
        "--".into(),
    ])
}

/// The guest's `eth0`: the TAP lease's addresses and routes.
fn guest_network(tap: &MachineNet) -> NetworkConfig {
    NetworkConfig {
        interface: "eth0".into(),
        addresses: vec![tap.ipv4_cidr(), tap.ipv6_cidr()],
        gateway_v4: Some(tap.gateway_v4.to_string()),
        routes_v6: tap
            .routes_v6()
            .into_iter()
            .map(|(destination, gateway)| Route {
                destination,
                gateway: gateway.map(str::to_string),
            })
            .collect(),
        mtu: None,
    }
}

/// Volumes: encrypted disks QEMU opens with their keys (files removed once it runs). Adds their
/// arguments to `cmd` and returns the key files.
fn volume_args(
    spec: &MachineSpec,
    dir: &Path,
    cmd: &mut Vec<OsString>,
) -> Result<Vec<KeyFile>, RuntimeError> {
    let mut keys = Vec::new();
    for (i, v) in spec.volumes.iter().enumerate() {
        let key = dir.join(format!("volkey{i}"));
        keys.push(
            KeyFile::write(key.clone(), &v.key)
                .map_err(io_err("writing a volume key", &spec.id))?,
        );
        cmd.extend(
            [
                "-object".to_string(),
                format!("secret,id=volkey{i},file={}", key.display()),
                "-blockdev".into(),
                crate::volume::blockdev(
                    &format!("vol{i}"),
                    &v.store.disk(&v.id),
                    &format!("volkey{i}"),
                ),
                "-device".into(),
                format!("virtio-blk-device,drive=vol{i},serial={}", v.id),
            ]
            .map(OsString::from),
        );
    }
    Ok(keys)
}

/// QEMU reads the secrets' files when it makes the objects, before it opens its QMP socket: the
/// keys go as soon as the socket is there (or the guest answers, or fails).
async fn drop_keys_once_read(dir: &Path, keys: Vec<KeyFile>) {
    if !keys.is_empty() {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dir.join("qmp.sock").exists()
            && supervise::is_running(dir)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    drop(keys);
}
