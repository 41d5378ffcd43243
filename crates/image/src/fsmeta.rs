//! File metadata as aloft writes it: the mode policy (set-uid and friends), ownership, times.
//! Shared by unpacking and assembly so both apply the same rules.

use filetime::FileTime;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// What kind of file a mode is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Fifo,
}

/// Metadata of an entry: permission bits (with set-uid, set-gid, sticky), owner, mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: FileTime,
}

/// Whether this process runs as root (and so can keep ownership and set-uid bits).
pub(crate) fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The mode aloft actually writes for `mode` (see the crate doc, "Security policy"):
///
/// - set-uid and set-gid survive only on regular files, only when running as root (ownership is
///   kept too), and never on a group- or world-writable file;
/// - directories keep set-gid and sticky (`/tmp` is 1777) but never set-uid;
/// - when not running as root, the owner always gets read/write (and search on directories), so
///   the cache can still be read, assembled and pruned by the user that wrote it.
pub(crate) fn policy_mode(kind: Kind, mode: u32, root: bool) -> u32 {
    let mut m = mode & 0o7777;
    match kind {
        Kind::Dir => {
            m &= !0o4000;
            if !root {
                m |= 0o700;
            }
        }
        Kind::File => {
            m &= !0o1000;
            if !root || m & 0o022 != 0 {
                m &= !0o6000;
            }
            if !root {
                m |= 0o600;
            }
        }
        Kind::Fifo => {
            m &= 0o777;
            if !root {
                m |= 0o600;
            }
        }
    }
    m
}

/// Applies owner (when root), mode and times to `path` without following a symlink at `path`.
/// `kind` is `None` for symlinks (no mode of their own).
pub(crate) fn apply(path: &Path, meta: &Meta, kind: Option<Kind>, root: bool) -> io::Result<()> {
    // chown first: it clears set-uid bits that chmod then sets again
    if root {
        std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid))?;
    }
    if let Some(kind) = kind {
        fs::set_permissions(
            path,
            fs::Permissions::from_mode(policy_mode(kind, meta.mode, root)),
        )?;
    }
    filetime::set_symlink_file_times(path, meta.mtime, meta.mtime)
}

/// Applies owner, mode and times to an open regular file.
pub(crate) fn apply_file(file: &fs::File, meta: &Meta, root: bool) -> io::Result<()> {
    if root {
        std::os::unix::fs::fchown(file, Some(meta.uid), Some(meta.gid))?;
    }
    file.set_permissions(fs::Permissions::from_mode(policy_mode(
        Kind::File,
        meta.mode,
        root,
    )))?;
    filetime::set_file_handle_times(file, Some(meta.mtime), Some(meta.mtime))
}

/// Creates a FIFO (no device numbers: aloft never creates device nodes).
pub(crate) fn mkfifo(path: &Path) -> io::Result<()> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .map_err(io::Error::from)
}

/// Removes whatever is at `path` (a directory with its content; a symlink itself, never its
/// target). Nothing there is fine.
pub(crate) fn remove_any(path: &Path) -> io::Result<()> {
    let removed = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match removed {
        // gone already (whoever created it removed it meanwhile): that is what was asked
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setuid_policy() {
        // root: set-uid kept on a root-owned binary, stripped when writable by others
        assert_eq!(policy_mode(Kind::File, 0o104755, true), 0o4755);
        assert_eq!(policy_mode(Kind::File, 0o2755, true), 0o2755);
        assert_eq!(policy_mode(Kind::File, 0o4777, true), 0o0777);
        assert_eq!(policy_mode(Kind::File, 0o6775, true), 0o0775);
        // not root: never set-uid, and the owner can always read and write
        assert_eq!(policy_mode(Kind::File, 0o4755, false), 0o0755);
        assert_eq!(policy_mode(Kind::File, 0o0000, false), 0o0600);
        // directories: sticky and set-gid kept, set-uid dropped
        assert_eq!(policy_mode(Kind::Dir, 0o1777, true), 0o1777);
        assert_eq!(policy_mode(Kind::Dir, 0o6755, true), 0o2755);
        assert_eq!(policy_mode(Kind::Dir, 0o0555, false), 0o0755);
        assert_eq!(policy_mode(Kind::Fifo, 0o4644, true), 0o0644);
    }
}
