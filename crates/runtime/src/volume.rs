//! Volumes on a host: one encrypted disk per volume, the same format for every backend.
//!
//! A volume is a qcow2 file encrypted with LUKS (`qemu-img`), holding an ext4 filesystem, under
//! `<state>/volumes/<id>/disk.qcow2`. Its key comes from the control plane at each start and is
//! only on this host's disk for the moment a QEMU process reads it (`key`, 0600, removed right
//! after, and at agent start after a crash), so the data on the host's disk is ciphertext.
//!
//! - A **microVM** attaches the disk as a virtio block device (QEMU decrypts it); aloft-init
//!   mounts it at the config's path.
//! - A **gVisor** machine gets the filesystem as a bind mount: `qemu-storage-daemon` decrypts the
//!   disk into a FUSE file (`export`), which is mounted through a loop device at `mnt/` and
//!   bound into the sandbox at the config's path. gVisor cannot open block devices itself, and
//!   these hosts have no device-mapper (so no dm-crypt); the FUSE export keeps one disk format
//!   for both backends, so a volume does not care which backend mounts it.
//!
//! The disk is made (and formatted) when the volume is created (or at the first start of a
//! machine that mounts it, if it is not there), grown when the volume was extended, and outlives
//! every machine. Snapshots are copies of the
//! disk kept beside it (`snapshots/<id>.qcow2`), encrypted with the same key.

use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::process::Command;

/// LUKS key derivation time. The key is 32 random bytes, not a password, so stretching it buys
/// nothing; QEMU's default (2 s) would be paid at every open.
const LUKS_ITER_TIME_MS: u32 = 10;

/// A snapshot as written on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotCopy {
    /// Bytes.
    pub size: u64,
    /// `sha256:` + the hex SHA-256 of those bytes.
    pub digest: String,
}

/// Copies `from` to `to` (0600; a leftover of a cut-short copy is overwritten), hashing the
/// bytes on the way.
fn copy_hashing(from: &Path, to: &Path) -> io::Result<SnapshotCopy> {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Write};
    let mut src = fs::File::open(from)?;
    let mut dst = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(to)?;
    let (mut hash, mut size) = (Sha256::new(), 0u64);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hash.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
        size += n as u64;
    }
    dst.sync_all()?;
    Ok(SnapshotCopy {
        size,
        digest: format!("sha256:{}", hex::encode(hash.finalize())),
    })
}

/// A volume's key: the passphrase of its LUKS header. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct VolumeKey(String);

impl VolumeKey {
    pub fn new(key: String) -> Self {
        Self(key)
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for VolumeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VolumeKey(..)")
    }
}

/// A volume a machine mounts, ready on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedVolume {
    pub id: String,
    /// Where the machine sees it.
    pub path: String,
    /// The store holding it.
    pub store: VolumeStore,
    pub key: VolumeKey,
}

/// A volume's key in a file (0600) for as long as a QEMU process needs to read it: removed
/// when dropped.
pub(crate) struct KeyFile(PathBuf);

impl KeyFile {
    pub(crate) fn write(path: PathBuf, key: &VolumeKey) -> io::Result<Self> {
        let _ = fs::remove_file(&path);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        io::Write::write_all(&mut f, key.as_bytes())?;
        Ok(Self(path))
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// The volume's key in `<volume>/key` for the QEMU process about to run.
fn key_file(dir: &Path, key: &VolumeKey) -> Result<KeyFile, String> {
    KeyFile::write(dir.join("key"), key).map_err(|e| format!("writing the volume key: {e}"))
}

/// QEMU's block-device JSON for an encrypted disk, with its key in the secret `secret`.
pub(crate) fn blockdev(node: &str, disk: &Path, secret: &str) -> String {
    serde_json::json!({
        "driver": "qcow2",
        "node-name": node,
        "encrypt": {"format": "luks", "key-secret": secret},
        "file": {"driver": "file", "filename": disk},
    })
    .to_string()
}

/// One operation at a time per volume (a restart's unmount must not meet a snapshot's freeze,
/// nor two starts one disk), for every store of the process.
static BUSY: std::sync::LazyLock<
    parking_lot::Mutex<std::collections::HashMap<PathBuf, std::sync::Arc<tokio::sync::Mutex<()>>>>,
> = std::sync::LazyLock::new(Default::default);

/// The volumes of one host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VolumeStore {
    dir: PathBuf,
}

impl VolumeStore {
    /// Volumes under `dir` (`<state>/volumes`).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn dir_of(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Waits until no other operation works on the volume; it is this one's until dropped.
    async fn hold(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = BUSY.lock().entry(self.dir_of(id)).or_default().clone();
        lock.lock_owned().await
    }

    /// The volume's encrypted disk (it may not exist yet).
    pub fn disk(&self, id: &str) -> PathBuf {
        self.dir_of(id).join("disk.qcow2")
    }

    /// Whether the volume has data on this host.
    pub fn exists(&self, id: &str) -> bool {
        self.disk(id).exists()
    }

    /// Makes the volume's disk when it has none (encrypted, formatted ext4) and grows it (and
    /// its filesystem) to `size_gb` when it is smaller. Returns the disk.
    pub async fn prepare(
        &self,
        id: &str,
        size_gb: u32,
        key: &VolumeKey,
    ) -> Result<PathBuf, String> {
        let _busy = self.hold(id).await;
        let dir = self.dir_of(id);
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let disk = self.disk(id);
        let bytes = u64::from(size_gb) << 30;
        if !disk.exists() {
            // Made under another name and renamed once formatted: a crash half-way leaves no
            // disk that looks ready.
            let fresh = dir.join("disk.new.qcow2");
            let _ = fs::remove_file(&fresh);
            let keyfile = key_file(&dir, key)?;
            let mut attempt = 0;
            loop {
                let created = run(Command::new("qemu-img")
                    .args(["create", "-q", "-f", "qcow2", "--object"])
                    .arg(format!("secret,id=k,file={}", keyfile.0.display()))
                    .arg("-o")
                    .arg(format!(
                        "encrypt.format=luks,encrypt.key-secret=k,encrypt.iter-time={LUKS_ITER_TIME_MS},encrypt.hash-alg=sha512"
                    ))
                    .arg(&fresh)
                    .arg(bytes.to_string()))
                .await;
                match created {
                    // QEMU before 9.2 fails its own PBKDF benchmark when a round takes "0 ms"
                    // of thread CPU time ("crypto: fix bogus error benchmarking pbkdf on fast
                    // machines"): with SHA-256 in 4 of 10 runs on a busy host here, never in
                    // 40 with SHA-512, whose rounds take longer. A new run measures again.
                    Err(e) if e.contains("accurate CPU usage") && attempt < 5 => attempt += 1,
                    other => {
                        other?;
                        break;
                    }
                }
            }
            drop(keyfile);
            let export = self.open_export(id, &fresh, key).await?;
            let formatted = run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&export)).await;
            self.close_export(id).await;
            formatted?;
            fs::rename(&fresh, &disk).map_err(|e| format!("keeping the new volume: {e}"))?;
            return Ok(disk);
        }
        // Growing is two steps (the image, then its filesystem); `growing` marks a grow that
        // was cut short (the agent killed), so the next start finishes it.
        let growing = dir.join("growing");
        let small = virtual_size(&disk).await? < bytes;
        if small {
            fs::write(&growing, b"").map_err(|e| format!("marking the grow: {e}"))?;
            let keyfile = key_file(&dir, key)?;
            run(Command::new("qemu-img")
                .args(["resize", "-q", "--object"])
                .arg(format!("secret,id=k,file={}", keyfile.0.display()))
                .arg("--image-opts")
                .arg(format!(
                    "driver=qcow2,encrypt.key-secret=k,file.filename={}",
                    disk.display()
                ))
                .arg(bytes.to_string()))
            .await?;
            drop(keyfile);
        }
        if small || growing.exists() {
            let export = self.open_export(id, &disk, key).await?;
            let grown = async {
                // resize2fs wants a freshly checked filesystem; -p repairs only what is safe
                // (exit 1 and 2: repaired; 4 and up: it needs a person).
                fsck(&export).await?;
                run(Command::new("resize2fs").arg(&export)).await
            }
            .await;
            self.close_export(id).await;
            grown?;
            let _ = fs::remove_file(&growing);
        }
        Ok(disk)
    }

    /// Opens the disk's filesystem on this host for `machine` (gVisor): decrypted into a FUSE
    /// file, mounted through a loop device at `<volume>/mnt`, which is returned. Refused while
    /// another machine has it mounted; `machine`'s own leftover mount is replaced.
    pub async fn mount(&self, id: &str, key: &VolumeKey, machine: &str) -> Result<PathBuf, String> {
        let _busy = self.hold(id).await;
        let owner_file = self.dir_of(id).join("owner");
        let mnt = self.dir_of(id).join("mnt");
        if is_mounted(&mnt) {
            let owner = fs::read_to_string(&owner_file).unwrap_or_default();
            if !owner.is_empty() && owner != machine {
                return Err(format!(
                    "it is mounted by machine {owner} on this host; a volume is mounted by one machine at a time"
                ));
            }
        }
        self.unmount_held(id).await;
        let export = self.open_export(id, &self.disk(id), key).await?;
        fs::create_dir_all(&mnt).map_err(|e| format!("creating {}: {e}", mnt.display()))?;
        let mounted = run(Command::new("mount")
            .args(["-t", "ext4", "-o", "loop,nodev,nosuid"])
            .arg(&export)
            .arg(&mnt))
        .await;
        if let Err(e) = mounted {
            self.close_export(id).await;
            return Err(e);
        }
        let _ = fs::write(&owner_file, machine);
        Ok(mnt)
    }

    /// Undoes [`VolumeStore::mount`] (whatever part of it is there).
    pub async fn unmount(&self, id: &str) {
        let _busy = self.hold(id).await;
        self.unmount_held(id).await;
    }

    async fn unmount_held(&self, id: &str) {
        let mnt = self.dir_of(id).join("mnt");
        if is_mounted(&mnt) {
            let plain = run(Command::new("umount").arg(&mnt)).await;
            if let Err(e) = plain {
                tracing::warn!(volume = id, error = %e, "volume busy; detaching it");
                let _ = rustix::mount::unmount(&mnt, rustix::mount::UnmountFlags::DETACH);
            }
        }
        // The loop device lets go of the export a moment after the unmount: until it has, the
        // export cannot be unmounted and the daemon does not end.
        let export = self.dir_of(id).join("export");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let devices = loop_devices_of(&export);
            if devices.is_empty() || Instant::now() > deadline {
                break;
            }
            for device in devices {
                let _ = run(Command::new("losetup").arg("-d").arg(device)).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.close_export(id).await;
        let _ = fs::remove_file(self.dir_of(id).join("owner"));
    }

    /// Whether the volume's filesystem is mounted on this host.
    pub fn is_mounted(&self, id: &str) -> bool {
        is_mounted(&self.dir_of(id).join("mnt"))
    }

    /// A copy of the disk as snapshot `snapshot`: its size and digest. A mounted filesystem is
    /// frozen for the copy, so the snapshot is consistent.
    /// The copy is made under another name and renamed once whole. The filesystem stays frozen
    /// for the copy (writes in the machine wait): thawed when this returns or is dropped, and by
    /// [`VolumeStore::thaw_all`] after a crash.
    pub async fn snapshot(&self, id: &str, snapshot: &str) -> Result<SnapshotCopy, String> {
        let _busy = self.hold(id).await;
        let disk = self.disk(id);
        let dir = self.dir_of(id).join("snapshots");
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let target = dir.join(format!("{snapshot}.qcow2"));
        let partial = dir.join(format!("{snapshot}.partial"));
        // A full copy: refused unless the host keeps a tenth of its disk free after it.
        let need = fs::metadata(&disk)
            .map_err(|e| format!("reading {}: {e}", disk.display()))?
            .len();
        if let Ok(fs) = rustix::fs::statvfs(&dir) {
            let free = fs.f_bavail.saturating_mul(fs.f_frsize);
            let total = fs.f_blocks.saturating_mul(fs.f_frsize);
            if free < need.saturating_add(total / 10) {
                return Err(format!(
                    "this host has {} MB free and the snapshot needs {} MB (plus a tenth of the disk kept free): destroy volumes or snapshots you no longer need",
                    free / 1_000_000,
                    need / 1_000_000
                ));
            }
        }
        let mnt = self.dir_of(id).join("mnt");
        let _frozen = match is_mounted(&mnt) {
            true => {
                run(Command::new("fsfreeze").arg("-f").arg(&mnt)).await?;
                Some(Thaw(mnt))
            }
            false => None,
        };
        let (from, to) = (disk.clone(), partial.clone());
        let copied = tokio::task::spawn_blocking(move || copy_hashing(&from, &to))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)))
            .and_then(|copy| fs::rename(&partial, &target).map(|()| copy));
        if copied.is_err() {
            let _ = fs::remove_file(&partial);
        }
        copied.map_err(|e| format!("copying {} to {}: {e}", disk.display(), target.display()))
    }

    /// Thaws every volume filesystem of this host that a snapshot cut short left frozen (an
    /// agent killed during the copy), and removes key files such a crash left. For agent start.
    pub fn thaw_all(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let _ = fs::remove_file(e.path().join("key"));
            let mnt = e.path().join("mnt");
            if is_mounted(&mnt) {
                drop(Thaw(mnt));
            }
        }
    }

    /// Removes the volume's data and snapshots from this host; whether it had any.
    pub async fn delete(&self, id: &str) -> Result<bool, String> {
        let _busy = self.hold(id).await;
        self.unmount_held(id).await;
        match fs::remove_dir_all(self.dir_of(id)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(format!("removing volume {id}'s data: {e}")),
        }
    }

    /// Starts `qemu-storage-daemon` serving `disk` decrypted at `<volume>/export`.
    async fn open_export(&self, id: &str, disk: &Path, key: &VolumeKey) -> Result<PathBuf, String> {
        let dir = self.dir_of(id);
        self.close_export(id).await;
        let export = dir.join("export");
        fs::write(&export, b"").map_err(|e| format!("creating {}: {e}", export.display()))?;
        let _ = fs::set_permissions(&export, fs::Permissions::from_mode(0o600));
        let keyfile = key_file(&dir, key)?;
        // --daemonize returns once the export is up; the daemon outlives the agent, like the
        // machine using it. It keeps the descriptors it was given: none that a caller waits on.
        let log = dir.join("qsd.log");
        let stderr =
            fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let status = Command::new("qemu-storage-daemon")
            .arg("--daemonize")
            .arg("--pidfile")
            .arg(dir.join("qsd.pid"))
            .arg("--object")
            .arg(format!("secret,id=k,file={}", keyfile.0.display()))
            .arg("--blockdev")
            .arg(blockdev("v", disk, "k"))
            .arg("--export")
            .arg(format!(
                "type=fuse,id=e,node-name=v,mountpoint={},writable=on",
                export.display()
            ))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .status()
            .await
            .map_err(|e| {
                format!(
                    "cannot run qemu-storage-daemon: {e} (install qemu-utils: scripts/setup.sh)"
                )
            })?;
        if !status.success() {
            return Err(format!(
                "opening volume {id} failed (a wrong key, or a damaged disk?): {}",
                fs::read_to_string(&log).unwrap_or_default().trim()
            ));
        }
        Ok(export)
    }

    /// Stops serving the decrypted disk: unmounts the FUSE file, then ends the daemon.
    async fn close_export(&self, id: &str) {
        let dir = self.dir_of(id);
        let export = dir.join("export");
        if is_mounted(&export) {
            let _ = rustix::mount::unmount(&export, rustix::mount::UnmountFlags::empty())
                .or_else(|_| rustix::mount::unmount(&export, rustix::mount::UnmountFlags::DETACH));
        }
        let pidfile = dir.join("qsd.pid");
        let pid = fs::read_to_string(&pidfile)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            // This volume's daemon only: a pid from before a reboot may be another's now.
            let mine = format!("mountpoint={},", export.display());
            let is_ours = fs::read(format!("/proc/{}/cmdline", pid.as_raw_nonzero()))
                .is_ok_and(|c| c.windows(mine.len()).any(|w| w == mine.as_bytes()));
            if is_ours {
                let alive = || Path::new(&format!("/proc/{}", pid.as_raw_nonzero())).exists();
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                let deadline = Instant::now() + Duration::from_secs(5);
                while alive() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                if alive() {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    while alive() && Instant::now() < deadline + Duration::from_secs(5) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
        let _ = fs::remove_file(pidfile);
    }
}

/// The loop devices (`/dev/loopN`) backed by `file`.
fn loop_devices_of(file: &Path) -> Vec<PathBuf> {
    let file = file.to_string_lossy();
    let Ok(entries) = fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            fs::read_to_string(e.path().join("loop/backing_file")).is_ok_and(|b| b.trim() == file)
        })
        .map(|e| Path::new("/dev").join(e.file_name()))
        .collect()
}

/// Whether something is mounted at `path`.
fn is_mounted(path: &Path) -> bool {
    let path = path.to_string_lossy();
    fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(&*path))
}

/// The disk's size as its guest sees it.
async fn virtual_size(disk: &Path) -> Result<u64, String> {
    let out = run(Command::new("qemu-img")
        .args(["info", "--output=json", "-U"])
        .arg(disk))
    .await?;
    let info: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("qemu-img info answered no JSON: {e}"))?;
    info["virtual-size"]
        .as_u64()
        .ok_or_else(|| format!("qemu-img info says no size for {}", disk.display()))
}

/// `e2fsck -f -p` of the volume's filesystem: fine when it is clean or was repaired.
async fn fsck(export: &Path) -> Result<(), String> {
    let out = Command::new("e2fsck")
        .args(["-f", "-p"])
        .arg(export)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run e2fsck: {e} (install e2fsprogs: scripts/setup.sh)"))?;
    match out.status.code() {
        Some(0..=2) => Ok(()),
        _ => Err(format!(
            "the volume's filesystem has errors e2fsck cannot repair on its own ({}): {} {}; take a snapshot, then repair it by hand (e2fsck -f on the volume's decrypted export)",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// Thaws a frozen filesystem when dropped (also when the snapshot that froze it is cancelled).
struct Thaw(PathBuf);

impl Drop for Thaw {
    fn drop(&mut self) {
        let _ = std::process::Command::new("fsfreeze")
            .arg("-u")
            .arg(&self.0)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Runs a command to the end; its stdout, or an error with its stderr.
async fn run(cmd: &mut Command) -> Result<String, String> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .map_err(|e| {
            format!(
                "cannot run {program}: {e} (install qemu-utils and e2fsprogs: scripts/setup.sh)"
            )
        })?;
    if !out.status.success() {
        return Err(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
