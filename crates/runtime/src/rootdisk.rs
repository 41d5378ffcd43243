//! A gVisor machine's writable layer on a disk of its own size: a sparse ext4 file
//! (`<machine>/layer.ext4`, `rootfs_size_mb` long, [`aloft_types::config::Guest::rootfs_mb`])
//! mounted through a loop device at `<machine>/layer`, which holds the overlay's `upper/` and
//! `work/`. A machine that writes past its size gets "no space left on device" inside the
//! machine; the host's own disk holds at most that much of it (the file is sparse: only what
//! the machine wrote takes space). Made anew on every start (the layer is emptied then anyway);
//! unmounted when a run is torn down (the loop device goes with it: `mount -o loop` sets it to
//! clear itself), removed with the machine. Stateless apart from those files; no locks.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use tokio::process::Command;

/// The layer's mount point in the machine's directory.
pub fn mount_point(dir: &Path) -> PathBuf {
    dir.join("layer")
}

fn image(dir: &Path) -> PathBuf {
    dir.join("layer.ext4")
}

/// Whether `path` is a mount point (as this process's mount table says).
pub(crate) fn is_mounted(path: &Path) -> bool {
    let path = path.to_string_lossy();
    fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(&*path))
}

async fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{:?} failed: {}",
            cmd.as_std().get_program(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A fresh, empty layer of `size_mb` MB, mounted; returns its mount point. Whatever the last
/// run left is unmounted and dropped first.
pub async fn prepare(dir: &Path, size_mb: u32) -> Result<PathBuf, String> {
    unmount(dir).await;
    let img = image(dir);
    match fs::remove_file(&img) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(format!("removing the last run's layer: {e}"));
        }
        _ => {}
    }
    fs::File::create(&img)
        .and_then(|f| f.set_len(u64::from(size_mb) << 20))
        .map_err(|e| format!("creating the layer's disk: {e}"))?;
    run(Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-m",
            "0",
            "-E",
            "nodiscard,lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0",
        ])
        .arg(&img))
    .await
    .map_err(|e| format!("formatting the layer's disk (apt-get install e2fsprogs): {e}"))?;
    let mnt = mount_point(dir);
    fs::create_dir_all(&mnt).map_err(|e| format!("creating the layer's mount point: {e}"))?;
    run(Command::new("mount")
        .args(["-t", "ext4", "-o", "loop,nodev,nosuid"])
        .arg(&img)
        .arg(&mnt))
    .await
    .map_err(|e| format!("mounting the layer's disk: {e}"))?;
    Ok(mnt)
}

/// Unmounts the layer if it is mounted (detached if busy); its loop device is released with it.
/// The overlay over it must be unmounted first.
pub async fn unmount(dir: &Path) {
    let mnt = mount_point(dir);
    if is_mounted(&mnt) && run(Command::new("umount").arg(&mnt)).await.is_err() {
        tracing::warn!(layer = %mnt.display(), "the machine's layer is busy; detaching it");
        let _ = rustix::mount::unmount(&mnt, rustix::mount::UnmountFlags::DETACH);
    }
}
