//! Building the ext4 image of an assembled root filesystem for the microVM backend, with
//! `mkfs.ext4 -d` from e2fsprogs.
//!
//! Size: the content (every file rounded up to 4 KiB blocks, plus a block per directory and per
//! long symlink) x 1.3 + 64 MiB, rounded up to a MiB; the headroom is what a machine can write
//! before it needs a volume. Inodes: the entry count x 1.25 + 1024 (`-N`), so images of many
//! small files never run out. The image is written under a temporary name and renamed into
//! place, so a failed build leaves nothing.

use crate::error::ImageError;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const BLOCK: u64 = 4096;
const MIB: u64 = 1 << 20;

/// The size of the ext4 image for `content` bytes.
pub(crate) fn image_size(content: u64) -> u64 {
    (content.saturating_mul(13) / 10 + 64 * MIB).div_ceil(MIB) * MIB
}

/// Content size (in blocks, as bytes) and entry count of a directory tree (symlinks not
/// followed).
fn measure(root: &Path) -> Result<(u64, u64), ImageError> {
    let mut content = BLOCK;
    let mut entries = 1u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(|e| ImageError::io("read directory", &dir, e))? {
            let entry = entry.map_err(|e| ImageError::io("read directory", &dir, e))?;
            let path = entry.path();
            let m = fs::symlink_metadata(&path).map_err(|e| ImageError::io("inspect", &path, e))?;
            entries += 1;
            if m.is_dir() {
                content += BLOCK;
                stack.push(path);
            } else if m.file_type().is_symlink() {
                // targets up to 59 bytes live in the inode itself
                if m.len() > 59 {
                    content += BLOCK;
                }
            } else {
                content += m.len().div_ceil(BLOCK) * BLOCK;
            }
        }
    }
    Ok((content, entries))
}

/// Looks for an executable in `PATH` and the sbin directories (which a non-root `PATH` often
/// lacks).
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Builds `out` from `rootfs`.
pub(crate) async fn build(rootfs: &Path, out: &Path) -> Result<(), ImageError> {
    let mkfs = find_tool("mkfs.ext4").ok_or(ImageError::ToolMissing {
        tool: "mkfs.ext4",
        package: "e2fsprogs",
    })?;
    let root = rootfs.to_path_buf();
    let (content, entries) = tokio::task::spawn_blocking(move || measure(&root))
        .await
        .map_err(|e| ImageError::Interrupted {
            detail: e.to_string(),
        })??;
    let size = image_size(content);
    let inodes = entries + entries / 4 + 1024;
    let dir = out.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix("tmp-")
        .suffix(".ext4")
        .tempfile_in(dir)
        .map_err(|e| ImageError::io("create a temporary file in", dir, e))?;
    tmp.as_file()
        .set_len(size)
        .map_err(|e| ImageError::io("size", tmp.path(), e))?;
    let tmp = tmp.into_temp_path();
    let output = tokio::process::Command::new(&mkfs)
        .args(["-q", "-F", "-b", "4096", "-I", "256", "-N"])
        .arg(inodes.to_string())
        .arg("-d")
        .arg(rootfs)
        .arg(&*tmp)
        .arg(format!("{}k", size / 1024))
        .output()
        .await
        .map_err(|e| ImageError::io("run", &mkfs, e))?;
    if !output.status.success() {
        return Err(ImageError::ToolFailed {
            tool: "mkfs.ext4",
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    tmp.persist(out)
        .map_err(|e| ImageError::io("move into place", out, e.error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(image_size(0), 64 * MIB);
        assert_eq!(image_size(100 * MIB), 194 * MIB);
        assert_eq!(image_size(1), 65 * MIB);
    }

    #[test]
    fn measures_a_tree() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("a"), vec![0u8; 5000]).unwrap();
        fs::create_dir(t.path().join("d")).unwrap();
        fs::write(t.path().join("d/b"), b"x").unwrap();
        std::os::unix::fs::symlink("short", t.path().join("s")).unwrap();
        std::os::unix::fs::symlink("l".repeat(80), t.path().join("l")).unwrap();
        let (content, entries) = measure(t.path()).unwrap();
        // root + d (dirs), a (2 blocks), b (1 block), long symlink (1 block)
        assert_eq!(content, 6 * BLOCK);
        assert_eq!(entries, 6);
    }
}
