//! Assembling a root filesystem from unpacked layers, bottom-up, with overlayfs semantics:
//!
//! - a directory in an upper layer merges with a lower directory; it replaces anything else
//!   (a lower file or symlink at that path is removed, never written through);
//! - a non-directory in an upper layer replaces whatever the lower layers had there;
//! - `.wh.<name>` removes `<name>` from what lower layers put in that directory;
//!   `.wh..wh..opq` empties the directory of lower-layer content first; other `.wh..wh.*` names
//!   (AUFS bookkeeping) are ignored; whiteout files never appear in the result;
//! - a directory that an upper layer has only implicitly (as the parent of an entry, with no
//!   entry of its own) keeps the lower layer's metadata.
//!
//! Files are hard-linked from the layer cache (no copy), falling back to a copy when the link
//! fails (another filesystem, too many links). The result is therefore a **read-only base**: it
//! shares inodes with the cache and with other images, and nothing may write into it; every
//! machine gets its own writable overlay on top.

use crate::error::ImageError;
use crate::fsmeta::{self, Kind, Meta};
use filetime::FileTime;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// One unpacked layer.
pub(crate) struct LayerDir {
    pub path: PathBuf,
    /// Directories the layer has only as parents (see [`crate::unpack`]).
    pub implicit_dirs: HashSet<String>,
}

/// Builds `dest` (which must not exist) from `layers`, bottom first.
pub(crate) fn assemble(layers: &[LayerDir], dest: &Path, root: bool) -> Result<(), ImageError> {
    fs::DirBuilder::new()
        .mode(0o755)
        .create(dest)
        .map_err(|e| ImageError::io("create directory", dest, e))?;
    let mut a = Assembler {
        root,
        link: true,
        copied: HashMap::new(),
    };
    for layer in layers {
        a.apply_dir(&layer.path, dest, Path::new(""), &layer.implicit_dirs)?;
    }
    fs::set_permissions(dest, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| ImageError::io("set permissions of", dest, e))
}

struct Assembler {
    root: bool,
    /// Hard-link from the cache (false only in tests of the copy fallback).
    link: bool,
    /// Copy fallback: the first copy of each multiply-linked cache inode, so hard links within
    /// a layer stay hard links.
    copied: HashMap<(u64, u64), PathBuf>,
}

fn meta_of(m: &fs::Metadata) -> Meta {
    Meta {
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        mtime: FileTime::from_last_modification_time(m),
    }
}

impl Assembler {
    /// Applies the layer directory `src` onto `dst`, a real directory of the result.
    fn apply_dir(
        &mut self,
        src: &Path,
        dst: &Path,
        rel: &Path,
        implicit: &HashSet<String>,
    ) -> Result<(), ImageError> {
        let mut names: Vec<OsString> = fs::read_dir(src)
            .map_err(|e| ImageError::io("read directory", src, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| ImageError::io("read directory", src, e))?;
        names.sort();
        if names.iter().any(|n| n.as_bytes() == OPAQUE) {
            for entry in fs::read_dir(dst).map_err(|e| ImageError::io("read directory", dst, e))? {
                let path = entry
                    .map_err(|e| ImageError::io("read directory", dst, e))?
                    .path();
                fsmeta::remove_any(&path).map_err(|e| ImageError::io("remove", &path, e))?;
            }
        }
        for name in &names {
            if let Some(target) = whiteout_target(name.as_bytes()) {
                let path = dst.join(std::ffi::OsStr::from_bytes(target));
                fsmeta::remove_any(&path).map_err(|e| ImageError::io("remove", &path, e))?;
            }
        }
        for name in names.iter().filter(|n| !n.as_bytes().starts_with(WHITEOUT)) {
            let s = src.join(name);
            let d = dst.join(name);
            let sm = fs::symlink_metadata(&s).map_err(|e| ImageError::io("inspect", &s, e))?;
            if sm.is_dir() {
                let existed = match fs::symlink_metadata(&d) {
                    Ok(m) if m.is_dir() => true,
                    Ok(_) => {
                        fs::remove_file(&d).map_err(|e| ImageError::io("replace", &d, e))?;
                        create_dir(&d)?;
                        false
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        create_dir(&d)?;
                        false
                    }
                    Err(e) => return Err(ImageError::io("inspect", &d, e)),
                };
                let r = rel.join(name);
                self.apply_dir(&s, &d, &r, implicit)?;
                let keep_lower = existed && implicit.contains(r.to_string_lossy().as_ref());
                if !keep_lower {
                    fsmeta::apply(&d, &meta_of(&sm), Some(Kind::Dir), self.root)
                        .map_err(|e| ImageError::io("set metadata of", &d, e))?;
                }
            } else {
                fsmeta::remove_any(&d).map_err(|e| ImageError::io("replace", &d, e))?;
                self.place(&s, &d, &sm)?;
            }
        }
        Ok(())
    }

    /// Puts the non-directory `s` of the cache at `d`: a hard link, else a copy.
    fn place(&mut self, s: &Path, d: &Path, sm: &fs::Metadata) -> Result<(), ImageError> {
        if self.link {
            match fs::hard_link(s, d) {
                Ok(()) => return Ok(()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::CrossesDevices
                            | io::ErrorKind::TooManyLinks
                            | io::ErrorKind::PermissionDenied
                    ) => {}
                Err(e) => return Err(ImageError::io("link", d, e)),
            }
        }
        self.copy(s, d, sm)
            .map_err(|e| ImageError::io("copy into", d, e))
    }

    fn copy(&mut self, s: &Path, d: &Path, sm: &fs::Metadata) -> io::Result<()> {
        let key = (sm.dev(), sm.ino());
        if sm.nlink() > 1
            && let Some(first) = self.copied.get(&key)
            && fs::hard_link(first, d).is_ok()
        {
            return Ok(());
        }
        let meta = meta_of(sm);
        let ft = sm.file_type();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(s)?, d)?;
            fsmeta::apply(d, &meta, None, self.root)?;
        } else if ft.is_file() {
            let mut from = fs::File::open(s)?;
            let mut to = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(d)?;
            io::copy(&mut from, &mut to)?;
            fsmeta::apply_file(&to, &meta, self.root)?;
        } else if ft.is_fifo() {
            fsmeta::mkfifo(d)?;
            fsmeta::apply(d, &meta, Some(Kind::Fifo), self.root)?;
        } else {
            return Err(io::Error::other(format!(
                "{} is neither a file, a symlink nor a fifo",
                s.display()
            )));
        }
        if sm.nlink() > 1 {
            self.copied.insert(key, d.to_path_buf());
        }
        Ok(())
    }
}

fn create_dir(d: &Path) -> Result<(), ImageError> {
    fs::DirBuilder::new()
        .mode(0o755)
        .create(d)
        .map_err(|e| ImageError::io("create directory", d, e))
}

/// The name a whiteout file removes, if `name` is one (`.wh.<name>`, not the opaque marker,
/// not AUFS bookkeeping, never `.` or `..`).
fn whiteout_target(name: &[u8]) -> Option<&[u8]> {
    let target = name.strip_prefix(WHITEOUT)?;
    if target.is_empty()
        || target == b"."
        || target == b".."
        || target.starts_with(WHITEOUT)
        || target.contains(&b'/')
    {
        return None;
    }
    Some(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn layer(root: &Path, name: &str, files: &[(&str, &str)]) -> LayerDir {
        let dir = root.join(name);
        fs::create_dir(&dir).unwrap();
        for (path, content) in files {
            let p = dir.join(path);
            if let Some(target) = content.strip_prefix("->") {
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::os::unix::fs::symlink(target, &p).unwrap();
            } else if path.ends_with('/') {
                fs::create_dir_all(&p).unwrap();
            } else {
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(&p, content).unwrap();
            }
        }
        LayerDir {
            path: dir,
            implicit_dirs: HashSet::new(),
        }
    }

    fn tree(root: &Path) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                let rel = e.path().strip_prefix(base).unwrap().display().to_string();
                let m = fs::symlink_metadata(e.path()).unwrap();
                if m.is_dir() {
                    out.push(format!("{rel}/"));
                    walk(base, &e.path(), out);
                } else if m.file_type().is_symlink() {
                    out.push(format!(
                        "{rel} -> {}",
                        fs::read_link(e.path()).unwrap().display()
                    ));
                } else {
                    out.push(format!("{rel} = {}", fs::read_to_string(e.path()).unwrap()));
                }
            }
        }
        let mut out = Vec::new();
        walk(root, root, &mut out);
        out.sort();
        out
    }

    #[test]
    fn whiteouts_and_opaque_directories() {
        let t = tempfile::tempdir().unwrap();
        let l1 = layer(
            t.path(),
            "l1",
            &[
                ("keep", "1"),
                ("gone", "1"),
                ("gonedir/a", "1"),
                ("opq/old", "1"),
                ("opq/olddir/x", "1"),
                ("lib", "->usr/lib"),
                ("usr/lib/libc", "1"),
                ("file-then-dir", "1"),
                ("dir-then-file/x", "1"),
                (".wh.nothing-below", ""),
            ],
        );
        let l2 = layer(
            t.path(),
            "l2",
            &[
                (".wh.gone", ""),
                (".wh.gonedir", ""),
                ("opq/.wh..wh..opq", ""),
                ("opq/new", "2"),
                ("lib/extra", "2"),
                ("file-then-dir/y", "2"),
                ("dir-then-file", "2"),
                ("keep", "2"),
                ("sub/.wh...", ""),
                ("sub/.wh..wh.plnk", ""),
            ],
        );
        let dest = t.path().join("rootfs");
        assemble(&[l1, l2], &dest, fsmeta::running_as_root()).unwrap();
        assert_eq!(
            tree(&dest),
            [
                "dir-then-file = 2",
                "file-then-dir/",
                "file-then-dir/y = 2",
                "keep = 2",
                "lib/",
                "lib/extra = 2",
                "opq/",
                "opq/new = 2",
                "sub/",
                "usr/",
                "usr/lib/",
                "usr/lib/libc = 1",
            ]
        );
        // the layers themselves are untouched
        assert!(t.path().join("l1/gone").exists());
        assert!(t.path().join("l1/usr/lib/libc").exists());
        assert!(
            !t.path().join("l1/usr/lib/extra").exists(),
            "wrote through the lower symlink"
        );
    }

    #[test]
    fn files_are_hard_links_into_the_cache() {
        let t = tempfile::tempdir().unwrap();
        let l1 = layer(t.path(), "l1", &[("bin/tool", "x"), ("link", "->bin/tool")]);
        let dest = t.path().join("rootfs");
        assemble(&[l1], &dest, fsmeta::running_as_root()).unwrap();
        let a = fs::metadata(t.path().join("l1/bin/tool")).unwrap();
        let b = fs::metadata(dest.join("bin/tool")).unwrap();
        assert_eq!(a.ino(), b.ino());
        assert_eq!(
            fs::read_link(dest.join("link")).unwrap(),
            Path::new("bin/tool")
        );
        assert_eq!(
            fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }

    #[test]
    fn copy_fallback_keeps_links_and_metadata() {
        let t = tempfile::tempdir().unwrap();
        let l1 = layer(t.path(), "l1", &[("a", "x"), ("s", "->/abs/target")]);
        fs::hard_link(t.path().join("l1/a"), t.path().join("l1/b")).unwrap();
        fs::set_permissions(t.path().join("l1/a"), fs::Permissions::from_mode(0o751)).unwrap();
        fsmeta::mkfifo(&t.path().join("l1/fifo")).unwrap();
        let dest = t.path().join("rootfs");
        fs::create_dir(&dest).unwrap();
        let mut a = Assembler {
            root: fsmeta::running_as_root(),
            link: false,
            copied: HashMap::new(),
        };
        a.apply_dir(&l1.path, &dest, Path::new(""), &HashSet::new())
            .unwrap();
        let ma = fs::metadata(dest.join("a")).unwrap();
        let mb = fs::metadata(dest.join("b")).unwrap();
        let src = fs::metadata(t.path().join("l1/a")).unwrap();
        assert_ne!(ma.ino(), src.ino(), "copied, not linked");
        assert_eq!(
            ma.ino(),
            mb.ino(),
            "hard links inside the layer survive the copy"
        );
        assert_eq!(ma.mode() & 0o777, 0o751);
        assert_eq!(ma.mtime(), src.mtime());
        assert_eq!(
            fs::read_link(dest.join("s")).unwrap(),
            Path::new("/abs/target")
        );
        assert!(
            fs::symlink_metadata(dest.join("fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
    }

    #[test]
    fn implicit_directories_keep_the_lower_metadata() {
        let t = tempfile::tempdir().unwrap();
        let l1 = layer(t.path(), "l1", &[("etc/", "")]);
        fs::set_permissions(t.path().join("l1/etc"), fs::Permissions::from_mode(0o710)).unwrap();
        let mut l2 = layer(t.path(), "l2", &[("etc/hosts", "h"), ("var/", "")]);
        l2.implicit_dirs.insert("etc".into());
        fs::set_permissions(t.path().join("l2/var"), fs::Permissions::from_mode(0o701)).unwrap();
        let mut l3 = layer(t.path(), "l3", &[("var/x", "x")]);
        l3.implicit_dirs.insert("var".into());
        // an explicit directory in an upper layer does replace the metadata
        let l4 = layer(t.path(), "l4", &[("etc/", "")]);
        fs::set_permissions(t.path().join("l4/etc"), fs::Permissions::from_mode(0o750)).unwrap();
        let dest = t.path().join("rootfs");
        let root = fsmeta::running_as_root();
        assemble(&[l1, l2, l3], &dest, root).unwrap();
        let mode = |p: &str| fs::metadata(dest.join(p)).unwrap().mode() & 0o777;
        let owner_bits = if root { 0 } else { 0o700 };
        assert_eq!(mode("etc"), 0o710 | owner_bits);
        assert_eq!(mode("var"), 0o701 | owner_bits);
        let dest2 = t.path().join("rootfs2");
        let l1 = LayerDir {
            path: t.path().join("l1"),
            implicit_dirs: HashSet::new(),
        };
        assemble(&[l1, l4], &dest2, root).unwrap();
        assert_eq!(
            fs::metadata(dest2.join("etc")).unwrap().mode() & 0o777,
            0o750
        );
    }

    #[test]
    fn whiteout_names() {
        assert_eq!(whiteout_target(b".wh.foo"), Some(&b"foo"[..]));
        assert_eq!(whiteout_target(b".wh..."), None);
        assert_eq!(whiteout_target(b".wh.."), None);
        assert_eq!(whiteout_target(b".wh."), None);
        assert_eq!(whiteout_target(b".wh..wh..opq"), None);
        assert_eq!(whiteout_target(b"foo"), None);
    }
}
