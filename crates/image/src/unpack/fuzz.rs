//! Fuzzing layer unpacking end to end with hostile archives: entries of every kind (files,
//! directories, symlinks, hard links, FIFOs, devices) at paths built from hostile pieces (`..`,
//! absolute paths, names through earlier symlinks, long names written as PAX records), with
//! link targets pointing out of the layer. Each archive is unpacked into `root/`, next to an
//! `outside/` directory. Properties:
//!
//! - nothing outside `root/` changes, whatever the archive (no write through a symlink, no
//!   hard link to an outside file);
//! - an accepted layer matches the `tar` crate's view of it: every path it read is relative and
//!   free of `..`, and each file and symlink that no later entry replaced is in `root/` with
//!   its content or target; there is no device node;
//! - a refused layer is refused with a clear error (an unsafe entry, a corrupt stream or a
//!   limit), never an I/O error or a panic.
//!
//! `PROPTEST_CASES` sets the number of cases (`scripts/fuzz.sh` runs many).

use super::{UnpackOptions, sanitize, unpack};
use crate::config::Limits;
use crate::error::ImageError;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
    HardLink(String),
    Fifo,
    Device,
}

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => Just("a".to_string()),
        8 => Just("b".to_string()),
        8 => Just("l".to_string()),
        1 => Just(".".to_string()),
        1 => Just("..".to_string()),
        1 => Just("".to_string()),
        2 => Just("x".repeat(120)),
        8 => "[a-c]{1,3}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    (
        prop::bool::weighted(0.03),
        prop::collection::vec(piece(), 1..4),
    )
        .prop_map(|(absolute, pieces)| {
            let p = pieces.join("/");
            if absolute { format!("/{p}") } else { p }
        })
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        path(),
        Just("../outside".to_string()),
        Just("../outside/secret".to_string()),
        Just("../../../../outside/secret".to_string()),
        Just("/etc/passwd".to_string()),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..600).prop_map(Kind::File),
        2 => Just(Kind::Dir),
        2 => target().prop_map(Kind::Symlink),
        2 => target().prop_map(Kind::HardLink),
        1 => Just(Kind::Fifo),
        1 => Just(Kind::Device),
    ]
}

/// The archive, names written raw (the `tar` builder would refuse hostile ones): short names
/// in the header, long ones (and long link targets) as PAX records.
fn archive(entries: &[(String, Kind)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o755);
        h.set_mtime(1);
        h.set_uid(0);
        h.set_gid(0);
        let (entry_type, data, link): (_, &[u8], Option<&str>) = match kind {
            Kind::File(data) => (tar::EntryType::Regular, data, None),
            Kind::Dir => (tar::EntryType::Directory, &[], None),
            Kind::Symlink(t) => (tar::EntryType::Symlink, &[], Some(t)),
            Kind::HardLink(t) => (tar::EntryType::Link, &[], Some(t)),
            Kind::Fifo => (tar::EntryType::Fifo, &[], None),
            Kind::Device => (tar::EntryType::Char, &[], None),
        };
        h.set_entry_type(entry_type);
        h.set_size(data.len() as u64);
        let mut pax: Vec<(&str, &[u8])> = Vec::new();
        if name.len() < 100 {
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        } else {
            pax.push(("path", name.as_bytes()));
        }
        if let Some(t) = link {
            if t.len() < 100 {
                h.as_old_mut().linkname[..t.len()].copy_from_slice(t.as_bytes());
            } else {
                pax.push(("linkpath", t.as_bytes()));
            }
        }
        if !pax.is_empty() {
            b.append_pax_extensions(pax).expect("pax");
        }
        h.set_cksum();
        b.append(&h, data).expect("append");
    }
    b.into_inner().expect("archive")
}

/// Every path under `dir` (not following symlinks), with what it is.
fn listing(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(read) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in read.flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            let what = if m.is_dir() {
                todo.push(p.clone());
                "dir".to_string()
            } else if m.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).expect("link").display())
            } else if m.is_file() {
                format!("file {:?}", std::fs::read(&p).expect("read"))
            } else {
                use std::os::unix::fs::FileTypeExt;
                assert!(!m.file_type().is_char_device() && !m.file_type().is_block_device());
                "other".to_string()
            };
            out.insert(p.strip_prefix(dir).expect("under").to_path_buf(), what);
        }
    }
    out
}

/// What the tar crate reads: each entry's path and kind, in order.
fn tar_view(stream: &[u8]) -> Vec<(PathBuf, Kind)> {
    let mut archive = tar::Archive::new(stream);
    let mut out = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("an accepted layer reads");
        let path = entry.path().expect("path").into_owned();
        let link = || {
            entry
                .link_name()
                .ok()
                .flatten()
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let kind = match entry.header().entry_type() {
            tar::EntryType::Symlink => Kind::Symlink(link()),
            tar::EntryType::Link => Kind::HardLink(link()),
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Fifo => Kind::Fifo,
            tar::EntryType::Regular => {
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut data).expect("data");
                Kind::File(data)
            }
            _ => Kind::Device,
        };
        out.push((path, kind));
    }
    out
}

fn check(entries: &[(String, Kind)]) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (root, outside) = (tmp.path().join("root"), tmp.path().join("outside"));
    std::fs::create_dir(&root).expect("root");
    std::fs::create_dir(&outside).expect("outside");
    std::fs::write(outside.join("secret"), b"host secret").expect("secret");
    let before = listing(tmp.path());
    let stream = archive(entries);
    let limits = Limits::default();
    let opts = UnpackOptions {
        layer: "sha256:fuzz",
        limits: &limits,
        compressed_size: stream.len() as u64,
        root: false,
    };
    let result = unpack(&stream[..], &root, &opts);
    assert_eq!(
        listing(&outside),
        before_outside(&before),
        "outside changed: {entries:#?}"
    );
    match result {
        Ok(_) => {
            let view = tar_view(&stream);
            let got = listing(&root);
            for (i, (path, kind)) in view.iter().enumerate() {
                let rel = sanitize(path).expect("accepted paths are safe");
                let replaced = view[i + 1..].iter().any(|(later, _)| {
                    sanitize(later).is_ok_and(|l| rel.starts_with(&l) || l.starts_with(&rel))
                });
                if replaced || rel.as_os_str().is_empty() {
                    continue;
                }
                let want = match kind {
                    Kind::File(data) => format!("file {data:?}"),
                    Kind::Symlink(t) => format!("-> {t}"),
                    Kind::Dir => "dir".to_string(),
                    _ => continue,
                };
                assert_eq!(
                    got.get(&rel),
                    Some(&want),
                    "{}: {entries:#?}",
                    rel.display()
                );
            }
        }
        Err(
            ImageError::UnsafeEntry { .. }
            | ImageError::CorruptLayer { .. }
            | ImageError::LimitExceeded { .. },
        ) => {}
        Err(e) => panic!("unclear error {e:?} for {entries:#?}"),
    }
}

fn before_outside(before: &BTreeMap<PathBuf, String>) -> BTreeMap<PathBuf, String> {
    before
        .iter()
        .filter_map(|(p, w)| {
            p.strip_prefix("outside")
                .ok()
                .filter(|r| !r.as_os_str().is_empty())
                .map(|r| (r.to_path_buf(), w.clone()))
        })
        .collect()
}

proptest! {
    #[test]
    fn fuzz_unpack_hostile_layers(entries in prop::collection::vec((path(), kind()), 1..8)) {
        check(&entries);
    }
}

/// Found by fuzzing: a hard link `a` to `a/b` removed the directory `a` (the later entry wins)
/// and with it its own target, and failed with an I/O error naming a host path; it is now
/// refused as an unsafe entry.
#[test]
fn fuzz_unpack_regression_hard_link_to_a_file_under_itself() {
    check(&[
        ("a/b".into(), Kind::File(Vec::new())),
        ("a".into(), Kind::HardLink("a/b".into())),
    ]);
}
