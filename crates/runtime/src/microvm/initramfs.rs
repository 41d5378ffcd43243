//! The guests' initramfs: a `newc` cpio archive (the format Linux unpacks at boot) holding
//! aloft-init as `/init`, the kernel modules it loads before it can mount the machine's disk, and
//! the host's static busybox as a rescue shell (`rdinit=/bin/busybox`) when there is one.
//!
//! The shared part is built once per kernel version and init binary (by content) and cached in
//! the state dir; each start appends a small second archive with the machine's config
//! ([`Cpio::config`]): concatenated archives are one initramfs to the kernel.

use super::other;
use crate::RuntimeError;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

/// Modules init loads, by name; their dependencies (from `modules.dep`) come first. Debian's
/// kernel builds all of these as modules; a name missing from `modules.dep` is taken to be
/// built in.
const MODULES: [&str; 6] = [
    "crc32c_generic",
    "virtio_mmio",
    "virtio_blk",
    "virtio_net",
    "virtio_console",
    "ext4",
];

/// The module files for `names` and everything they need, dependencies first.
pub(super) fn module_files(
    modules_dir: &Path,
    names: &[&str],
) -> Result<Vec<PathBuf>, RuntimeError> {
    let dep = fs::read_to_string(modules_dir.join("modules.dep")).map_err(|e| {
        other(format!(
            "reading {}/modules.dep: {e} (run scripts/guest-kernel.sh again)",
            modules_dir.display()
        ))
    })?;
    let mut deps: HashMap<String, (String, Vec<String>)> = HashMap::new();
    for line in dep.lines() {
        let Some((path, rest)) = line.split_once(':') else {
            continue;
        };
        let d = rest.split_whitespace().map(module_name).collect();
        deps.insert(module_name(path), (path.to_string(), d));
    }
    fn visit(
        name: &str,
        deps: &HashMap<String, (String, Vec<String>)>,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) {
        if !seen.insert(name.to_string()) {
            return;
        }
        // Not in modules.dep: built into the kernel.
        let Some((path, d)) = deps.get(name) else {
            return;
        };
        for dep in d.iter().rev() {
            visit(dep, deps, seen, out);
        }
        out.push(path.clone());
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for n in names {
        visit(n, &deps, &mut seen, &mut out);
    }
    Ok(out.into_iter().map(|p| modules_dir.join(p)).collect())
}

/// A static busybox (Debian's `busybox-static`).
const BUSYBOX: &str = "/bin/busybox";

/// `kernel/fs/ext4/ext4.ko.xz` -> `ext4` (dashes and underscores are one to modprobe).
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

/// A `newc` cpio archive, the format of Linux initramfs.
#[derive(Default)]
pub(super) struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        self.ino += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0, // uid
            0, // gid
            1, // nlink
            0, // mtime
            data.len(),
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() + 1,
            0 // checksum (unused by newc)
        );
        self.buf.extend_from_slice(header.as_bytes());
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    pub(super) fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, &[], (0, 0));
    }

    pub(super) fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, 0o100000 | mode, data, (0, 0));
    }

    fn char_device(&mut self, name: &str, mode: u32, rdev: (u32, u32)) {
        self.entry(name, 0o020000 | mode, &[], rdev);
    }

    pub(super) fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        // Concatenated archives start on a 512-byte boundary, as the kernel's own do.
        while !self.buf.len().is_multiple_of(512) {
            self.buf.push(0);
        }
        self.buf
    }

    /// The per-start archive: the machine's config where init looks for it.
    pub(super) fn config(config_path: &str, json: &[u8]) -> Vec<u8> {
        let mut c = Cpio::default();
        let path = config_path.trim_start_matches('/');
        if let Some((dir, _)) = path.rsplit_once('/') {
            c.dir(dir);
        }
        c.file(path, 0o600, json);
        c.finish()
    }
}

/// The shared part of every guest's initramfs, and the modules in it (guest paths, in load
/// order). Cached in `state_dir` per kernel version and init binary; older cached builds are
/// removed.
pub(super) fn base(
    state_dir: &Path,
    version: &str,
    kernel_dir: &Path,
    init_binary: &Path,
) -> Result<(Vec<u8>, Vec<String>), RuntimeError> {
    let modules_dir = kernel_dir.join("root/lib/modules").join(version);
    let files = module_files(&modules_dir, &MODULES)?;
    let guest_paths: Vec<String> = files
        .iter()
        .map(|f| {
            let name = f.file_name().unwrap_or_default().to_string_lossy();
            format!("/lib/modules/{}.ko", module_name(&name))
        })
        .collect();
    let init = fs::read(init_binary).map_err(|e| {
        other(format!(
            "reading aloft-init at {}: {e} (build it with scripts/build-init.sh)",
            init_binary.display()
        ))
    })?;
    let digest = hex::encode(&Sha256::digest(&init)[..8]);
    let name = format!("initramfs-{version}-{digest}.cpio");
    let cache = state_dir.join(&name);
    if let Ok(bytes) = fs::read(&cache) {
        return Ok((bytes, guest_paths));
    }
    let mut cpio = Cpio::default();
    for d in [
        "dev",
        "proc",
        "sys",
        "newroot",
        "aloft",
        "bin",
        "lib",
        "lib/modules",
    ] {
        cpio.dir(d);
    }
    // The kernel opens /dev/console for init's stdio before anything is mounted.
    cpio.char_device("dev/console", 0o600, (5, 1));
    cpio.file("init", 0o755, &init);
    match fs::read(BUSYBOX) {
        Ok(busybox) => cpio.file("bin/busybox", 0o755, &busybox),
        Err(e) => tracing::debug!("no rescue shell in the initramfs: {BUSYBOX}: {e}"),
    }
    for (file, guest) in files.iter().zip(&guest_paths) {
        // init_module(2) takes a plain ELF: decompress what Debian ships compressed.
        let data = if file.extension().is_some_and(|e| e == "xz") {
            let out = std::process::Command::new("xz")
                .arg("-dc")
                .arg(file)
                .output()
                .map_err(|e| other(format!("running xz (apt-get install xz-utils): {e}")))?;
            if !out.status.success() {
                return Err(other(format!(
                    "xz -dc {}: {}",
                    file.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            out.stdout
        } else {
            fs::read(file).map_err(|e| other(format!("reading {}: {e}", file.display())))?
        };
        cpio.file(guest.trim_start_matches('/'), 0o644, &data);
    }
    let bytes = cpio.finish();
    aloft_durable::write(&cache, &bytes, 0o644)
        .map_err(|e| other(format!("caching the initramfs in {}: {e}", cache.display())))?;
    // Builds for another kernel or init binary are not used again.
    for e in fs::read_dir(state_dir).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("initramfs-") && n.ends_with(".cpio") && n != name {
            let _ = fs::remove_file(e.path());
        }
    }
    Ok((bytes, guest_paths))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_entries_are_aligned_and_terminated() {
        let bytes = Cpio::config("/aloft/config.json", b"{}");
        assert_eq!(bytes.len() % 512, 0);
        assert!(bytes.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("aloft\0"));
        assert!(text.contains("aloft/config.json\0"));
        assert!(text.contains("TRAILER!!!"));
        // Every header starts on a 4-byte boundary.
        for (i, _) in text.match_indices("070701") {
            assert_eq!(i % 4, 0);
        }
    }

    #[test]
    fn modules_come_after_their_dependencies() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("modules.dep"),
            "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n\
             kernel/lib/crc16.ko:\nkernel/fs/mbcache.ko:\nkernel/fs/jbd2/jbd2.ko:\n\
             kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n\
             kernel/drivers/virtio/virtio_ring.ko:\nkernel/drivers/virtio/virtio.ko:\n",
        )
        .unwrap();
        let files = module_files(dir.path(), &["virtio_mmio", "ext4", "builtin_one"]).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "virtio.ko",
                "virtio_ring.ko",
                "virtio_mmio.ko",
                "jbd2.ko",
                "mbcache.ko",
                "crc16.ko",
                "ext4.ko"
            ]
        );
        assert_eq!(module_name("kernel/lib/crc-t10dif.ko.xz"), "crc_t10dif");
    }
}
