//! Unpacking tests with hand-built tar streams (hostile ones included).

use super::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use tar::{EntryType, Header};

/// One raw tar entry; the name is written into the header as is (no validation), which is how
/// hostile archives are made.
struct Raw {
    name: String,
    kind: EntryType,
    data: Vec<u8>,
    mode: u32,
    link: Option<String>,
    uid: u64,
    mtime: u64,
}

fn raw(name: &str, kind: EntryType) -> Raw {
    Raw {
        name: name.into(),
        kind,
        data: Vec::new(),
        mode: if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        },
        link: None,
        uid: 0,
        mtime: 1_600_000_000,
    }
}

fn file(name: &str, data: &[u8]) -> Raw {
    Raw {
        data: data.to_vec(),
        ..raw(name, EntryType::Regular)
    }
}

fn link(name: &str, kind: EntryType, target: &str) -> Raw {
    Raw {
        link: Some(target.into()),
        ..raw(name, kind)
    }
}

fn tar(entries: &[Raw]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
            if let Some(l) = &e.link {
                gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.uid);
        h.set_mtime(e.mtime);
        if matches!(e.kind, EntryType::Char | EntryType::Block) {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

struct Fixture {
    _tmp: tempfile::TempDir,
    /// Holds `layer/` (the destination) and `outside/` (which must stay untouched).
    root: PathBuf,
    dest: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let dest = root.join("layer");
    fs::create_dir(&dest).unwrap();
    fs::create_dir(root.join("outside")).unwrap();
    fs::write(root.join("outside/keep"), b"untouched").unwrap();
    Fixture {
        _tmp: tmp,
        root,
        dest,
    }
}

fn run_with(stream: &[u8], dest: &Path, limits: &Limits) -> Result<UnpackStats, ImageError> {
    unpack(
        stream,
        dest,
        &UnpackOptions {
            layer: "sha256:test",
            limits,
            compressed_size: stream.len() as u64,
            root: fsmeta::running_as_root(),
        },
    )
}

fn run(stream: &[u8], dest: &Path) -> Result<UnpackStats, ImageError> {
    run_with(stream, dest, &Limits::default())
}

/// Checks that a hostile stream is refused with a message containing `needle`, and that
/// nothing appeared outside the layer directory.
fn assert_refused(entries: &[Raw], needle: &str) {
    let f = fixture();
    let err = run(&tar(entries), &f.dest).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, ImageError::UnsafeEntry { .. }),
        "expected a refusal, got: {msg}"
    );
    assert!(msg.contains(needle), "`{needle}` not in: {msg}");
    let mut top: Vec<_> = fs::read_dir(&f.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(
        top,
        ["layer", "outside"],
        "something was written beside the layer"
    );
    let outside: Vec<_> = fs::read_dir(f.root.join("outside")).unwrap().collect();
    assert_eq!(outside.len(), 1, "something was written into outside/");
    assert_eq!(fs::read(f.root.join("outside/keep")).unwrap(), b"untouched");
}

fn sample() -> Vec<Raw> {
    let mut exe = file("bin/tool", b"#!/bin/sh\necho hi\n");
    exe.mode = 0o755;
    let mut private = raw("etc/private", EntryType::Directory);
    private.mode = 0o700;
    private.mtime = 1_500_000_000;
    let mut tmp = raw("tmp", EntryType::Directory);
    tmp.mode = 0o1777;
    vec![
        raw("./", EntryType::Directory),
        raw("bin", EntryType::Directory),
        exe,
        link("bin/sh", EntryType::Symlink, "tool"),
        link("bin/abs", EntryType::Symlink, "/bin/tool"),
        link("bin/up", EntryType::Symlink, "../etc/passwd"),
        raw("etc", EntryType::Directory),
        file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
        link("etc/passwd-hard", EntryType::Link, "etc/passwd"),
        private,
        file("etc/private/secret", b"s"),
        tmp,
        file("implicit/parent/file", b"x"),
        file(".wh.gone", b""),
        file("etc/.wh..wh..opq", b""),
        raw("run/fifo", EntryType::Fifo),
    ]
}

fn check_sample(dest: &Path) {
    let tool = fs::symlink_metadata(dest.join("bin/tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o755);
    assert_eq!(tool.mtime(), 1_600_000_000);
    assert_eq!(
        fs::read(dest.join("bin/tool")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(
        fs::read_link(dest.join("bin/sh")).unwrap(),
        Path::new("tool")
    );
    assert_eq!(
        fs::read_link(dest.join("bin/abs")).unwrap(),
        Path::new("/bin/tool")
    );
    assert_eq!(
        fs::read_link(dest.join("bin/up")).unwrap(),
        Path::new("../etc/passwd")
    );
    let passwd = fs::metadata(dest.join("etc/passwd")).unwrap();
    let hard = fs::metadata(dest.join("etc/passwd-hard")).unwrap();
    assert_eq!(passwd.ino(), hard.ino(), "hard link shares the inode");
    let private = fs::metadata(dest.join("etc/private")).unwrap();
    assert_eq!(private.mode() & 0o7777, 0o700);
    assert_eq!(
        private.mtime(),
        1_500_000_000,
        "directory mtime applied after its content"
    );
    assert_eq!(
        fs::metadata(dest.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert!(
        dest.join(".wh.gone").exists(),
        "whiteouts are kept as files"
    );
    assert!(dest.join("etc/.wh..wh..opq").exists());
    assert!(
        fs::symlink_metadata(dest.join("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

#[test]
fn plain_gzip_and_zstd_unpack_the_same() {
    let stream = tar(&sample());
    for (name, bytes, kind) in [
        ("plain", stream.clone(), Compression::None),
        ("gzip", gzip(&stream), Compression::Gzip),
        ("zstd", zstd(&stream), Compression::Zstd),
    ] {
        let f = fixture();
        let stats = run(&bytes, &f.dest).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(stats.compression, kind, "{name}");
        assert_eq!(stats.entries, 16, "{name}");
        // the reader stops after the first of the two end-of-archive blocks
        assert_eq!(stats.bytes, stream.len() as u64 - 512, "{name}");
        let mut implicit = stats.implicit_dirs.clone();
        implicit.sort();
        assert_eq!(implicit, ["implicit", "implicit/parent", "run"], "{name}");
        check_sample(&f.dest);
    }
}

#[test]
fn multi_member_gzip_and_multi_frame_zstd() {
    let stream = tar(&sample());
    let (a, b) = stream.split_at(700);
    let mut gz = gzip(a);
    gz.extend(gzip(b));
    let f = fixture();
    run(&gz, &f.dest).unwrap();
    check_sample(&f.dest);

    let mut zs = zstd(a);
    // a skippable frame between two data frames
    zs.extend_from_slice(&0x184D2A50u32.to_le_bytes());
    zs.extend_from_slice(&3u32.to_le_bytes());
    zs.extend_from_slice(b"abc");
    zs.extend(zstd(b));
    let f = fixture();
    run(&zs, &f.dest).unwrap();
    check_sample(&f.dest);
}

#[test]
fn long_names_and_pax_records() {
    // tar::Builder writes GNU long names; a PAX header gives a precise mtime and a big uid
    let long = format!("{}/file", "d".repeat(150));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o640);
    h.set_mtime(5);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(EntryType::Regular);
    b.append_data(&mut h, &long, &b"hi"[..]).unwrap();
    let mut pax = b.into_inner().unwrap();
    let record = |k: &str, v: &str| {
        let body = format!(" {k}={v}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        format!("{len}{body}")
    };
    let records = record("mtime", "1700000000.25") + &record("uid", "70000");
    let mut ph = Header::new_ustar();
    ph.set_entry_type(EntryType::XHeader);
    ph.set_size(records.len() as u64);
    ph.set_path("PaxHeaders/x").unwrap();
    ph.set_cksum();
    let mut extra = ph.as_bytes().to_vec();
    extra.extend_from_slice(records.as_bytes());
    extra.resize(extra.len().div_ceil(512) * 512, 0);
    let mut fh = Header::new_ustar();
    fh.set_entry_type(EntryType::Regular);
    fh.set_path("pax-file").unwrap();
    fh.set_size(1);
    fh.set_mode(0o644);
    fh.set_mtime(1);
    fh.set_uid(0);
    fh.set_gid(0);
    fh.set_cksum();
    extra.extend_from_slice(fh.as_bytes());
    extra.push(b'p');
    extra.resize(extra.len().div_ceil(512) * 512, 0);
    // put the PAX entry before the end-of-archive blocks of the builder's output
    pax.truncate(pax.len() - 1024);
    pax.extend(extra);
    pax.extend_from_slice(&[0; 1024]);

    let f = fixture();
    run(&pax, &f.dest).unwrap();
    assert_eq!(fs::read(f.dest.join(&long)).unwrap(), b"hi");
    let m = fs::metadata(f.dest.join("pax-file")).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_700_000_000, 250_000_000));
    if fsmeta::running_as_root() {
        assert_eq!(m.uid(), 70000);
    }
}

#[test]
fn ownership_and_setuid_when_root() {
    let mut owned = file("owned", b"x");
    owned.uid = 1234;
    let mut suid = file("suid", b"x");
    suid.mode = 0o4755;
    let mut writable = file("writable-suid", b"x");
    writable.mode = 0o4777;
    let f = fixture();
    run(&tar(&[owned, suid, writable]), &f.dest).unwrap();
    let mode = |p: &str| fs::metadata(f.dest.join(p)).unwrap().mode() & 0o7777;
    if fsmeta::running_as_root() {
        let m = fs::metadata(f.dest.join("owned")).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 1234));
        assert_eq!(
            mode("suid"),
            0o4755,
            "root keeps set-uid on a root-owned file"
        );
    } else {
        println!("not root: ownership is not kept and set-uid is stripped");
        assert_eq!(mode("suid"), 0o755);
    }
    assert_eq!(
        mode("writable-suid"),
        0o777,
        "set-uid never survives on a writable file"
    );
}

#[test]
fn later_entries_replace_earlier_ones() {
    let f = fixture();
    let entries = [
        file("a", b"first"),
        file("a", b"second"),
        raw("d", EntryType::Directory),
        file("d/x", b"x"),
        file("d", b"now a file"),
        link("l", EntryType::Symlink, "/etc"),
        file("l", b"replaces the symlink, never writes through it"),
    ];
    run(&tar(&entries), &f.dest).unwrap();
    assert_eq!(fs::read(f.dest.join("a")).unwrap(), b"second");
    assert_eq!(fs::read(f.dest.join("d")).unwrap(), b"now a file");
    assert!(fs::symlink_metadata(f.dest.join("l")).unwrap().is_file());
}

#[test]
fn a_directory_replaced_by_a_symlink_takes_its_deferred_metadata_with_it() {
    // `a/sub/` gets mode 0777, then `a` becomes a symlink to a directory outside the layer
    // that has a `sub` too: the deferred chmod must not land there
    let f = fixture();
    let outside_sub = f.root.join("outside/sub");
    fs::create_dir(&outside_sub).unwrap();
    fs::set_permissions(&outside_sub, fs::Permissions::from_mode(0o700)).unwrap();
    let before = fs::metadata(&outside_sub).unwrap();
    let mut open = raw("a/sub", EntryType::Directory);
    open.mode = 0o777;
    open.mtime = 1;
    let target = f.root.join("outside").display().to_string();
    let entries = [
        raw("a", EntryType::Directory),
        open,
        file("a/sub/x", b"x"),
        link("a", EntryType::Symlink, &target),
    ];
    run(&tar(&entries), &f.dest).unwrap();
    let after = fs::metadata(&outside_sub).unwrap();
    assert_eq!(
        after.mode() & 0o7777,
        0o700,
        "chmod went through the symlink"
    );
    assert_eq!(after.mtime(), before.mtime());
    assert_eq!(fs::read_link(f.dest.join("a")).unwrap(), Path::new(&target));
}

#[test]
fn refuses_path_traversal() {
    assert_refused(&[file("../x", b"x")], "contains `..`");
    assert_refused(&[file("a/../../outside/evil", b"x")], "contains `..`");
    assert_refused(&[file("./../outside/evil", b"x")], "contains `..`");
}

#[test]
fn refuses_absolute_paths() {
    let before = fs::read("/etc/passwd").unwrap();
    assert_refused(&[file("/etc/passwd", b"pwned")], "absolute");
    assert_eq!(fs::read("/etc/passwd").unwrap(), before);
}

#[test]
fn refuses_writing_through_a_symlink() {
    // evil -> /, then evil/etc/passwd
    let before = fs::read("/etc/passwd").unwrap();
    assert_refused(
        &[
            link("evil", EntryType::Symlink, "/"),
            file("evil/etc/passwd", b"pwned"),
        ],
        "parent `evil` is a symlink",
    );
    assert_eq!(fs::read("/etc/passwd").unwrap(), before);
    // up -> .., then up/outside/evil (would land beside the layer)
    assert_refused(
        &[
            link("up", EntryType::Symlink, ".."),
            file("up/outside/evil", b"x"),
        ],
        "parent `up` is a symlink",
    );
    // the same through a directory entry and a nested symlink
    assert_refused(
        &[
            raw("a", EntryType::Directory),
            link("a/b", EntryType::Symlink, "../.."),
            raw("a/b/outside/newdir", EntryType::Directory),
        ],
        "parent `a/b` is a symlink",
    );
}

#[test]
fn refuses_escaping_hard_links() {
    assert_refused(
        &[link("shadow", EntryType::Link, "/etc/shadow")],
        "hard link target `/etc/shadow`",
    );
    assert_refused(
        &[link("x", EntryType::Link, "../../outside/keep")],
        "contains `..`",
    );
    // through a symlink of the same layer
    assert_refused(
        &[
            link("etc", EntryType::Symlink, "/etc"),
            link("shadow", EntryType::Link, "etc/shadow"),
        ],
        "goes through a symlink",
    );
    // to a symlink itself
    assert_refused(
        &[
            link("s", EntryType::Symlink, "/etc/shadow"),
            link("h", EntryType::Link, "s"),
        ],
        "is not a regular file",
    );
    // to something not (yet) in the layer
    assert_refused(
        &[link("h", EntryType::Link, "later")],
        "is not a regular file",
    );
}

#[test]
fn refuses_device_nodes() {
    assert_refused(&[raw("dev/mem", EntryType::Char)], "character device node");
    assert_refused(&[raw("dev/sda", EntryType::Block)], "block device node");
}

#[test]
fn refuses_other_oddities() {
    assert_refused(&[raw("./", EntryType::Regular)], "root of a layer");
    assert_refused(
        &[file("f", b"x"), file("f/child", b"x")],
        "parent `f` is not a directory",
    );
    let mut big_uid = file("u", b"");
    big_uid.uid = 1 << 40;
    assert_refused(&[big_uid], "out of range");
}

#[test]
fn refuses_huge_extended_headers_before_reading_them() {
    // a GNU long name that claims 3 GiB: refused at its header, long before memory is used
    let mut h = Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    h.set_entry_type(EntryType::GNULongName);
    h.set_size(3 << 30);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    let mut stream = h.as_bytes().to_vec();
    stream.extend(vec![b'a'; 64 << 10]);
    let f = fixture();
    let e = run(&stream, &f.dest).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ImageError::UnsafeEntry { .. }), "{msg}");
    assert!(
        msg.contains("long-name header of 3221225472 bytes"),
        "{msg}"
    );
}

#[test]
fn refuses_absurdly_deep_paths() {
    let deep = vec!["d"; 300].join("/");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_size(0);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_data(&mut h, &deep, io::empty()).unwrap();
    let f = fixture();
    let e = run(&b.into_inner().unwrap(), &f.dest)
        .unwrap_err()
        .to_string();
    assert!(e.contains("deeper than 256"), "{e}");
}

fn limits(f: impl FnOnce(&mut Limits)) -> Limits {
    let mut l = Limits::default();
    f(&mut l);
    l
}

#[test]
fn limits_total_bytes() {
    let f = fixture();
    let stream = gzip(&tar(&[file("big", &vec![7u8; 64 << 10])]));
    let l = limits(|l| l.max_layer_bytes = 32 << 10);
    let e = run_with(&stream, &f.dest, &l).unwrap_err().to_string();
    assert!(e.contains("uncompressed layer size limit"), "{e}");
    assert!(e.contains("limits.max_layer_bytes"), "{e}");
}

#[test]
fn limits_file_count() {
    let f = fixture();
    let entries: Vec<_> = (0..10).map(|i| file(&format!("f{i}"), b"")).collect();
    let l = limits(|l| l.max_files = 5);
    let e = run_with(&tar(&entries), &f.dest, &l)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("entry count limit") && e.contains("limits.max_files"),
        "{e}"
    );
}

#[test]
fn limits_compression_ratio() {
    // A bomb: one tar entry of 48 MiB of zeros, written as many small gzip members (each
    // compresses 1 MiB of zeros to ~1 KiB), so the test builds it in milliseconds.
    let size = 48u64 << 20;
    let mut h = Header::new_gnu();
    h.set_path("zeros").unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    let mut bomb = gzip(h.as_bytes());
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![0u8; 1 << 20]).unwrap();
    let chunk = enc.finish().unwrap();
    for _ in 0..(size >> 20) {
        bomb.extend_from_slice(&chunk);
    }
    bomb.extend(gzip(&[0u8; 1024]));
    let f = fixture();
    let e = run(&bomb, &f.dest).unwrap_err().to_string();
    assert!(
        e.contains("compression ratio limit") && e.contains("limits.max_ratio"),
        "{e}"
    );
    // stopped soon after the grace size, long before 48 MiB were written
    let written = fs::metadata(f.dest.join("zeros"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(written < 20 << 20, "{written} bytes written");
    // with a generous ratio the same layer unpacks
    let f = fixture();
    run_with(&bomb, &f.dest, &limits(|l| l.max_ratio = 10_000)).unwrap();
    assert_eq!(fs::metadata(f.dest.join("zeros")).unwrap().len(), size);
}

#[test]
fn corrupt_streams_are_errors() {
    let f = fixture();
    let stream = gzip(&tar(&sample()));
    let e = run(&stream[..stream.len() / 2], &f.dest).unwrap_err();
    assert!(matches!(e, ImageError::CorruptLayer { .. }), "{e}");
    let mut bad = tar(&[file("a", b"x")]);
    bad[148] ^= 0x55; // checksum
    let f = fixture();
    assert!(matches!(
        run(&bad, &f.dest).unwrap_err(),
        ImageError::CorruptLayer { .. }
    ));
}

#[test]
fn pax_times() {
    let t = parse_pax_time("1700000000.5").unwrap();
    assert_eq!(
        (t.unix_seconds(), t.nanoseconds()),
        (1_700_000_000, 500_000_000)
    );
    assert_eq!(parse_pax_time("12").unwrap().unix_seconds(), 12);
    assert!(parse_pax_time("soon").is_none());
}

#[test]
fn permissions_of_unwritable_dirs_still_let_the_owner_clean_up() {
    let mut ro = raw("ro", EntryType::Directory);
    ro.mode = 0o555;
    let f = fixture();
    run(&tar(&[ro, file("ro/file", b"x")]), &f.dest).unwrap();
    let mode = fs::metadata(f.dest.join("ro"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    if fsmeta::running_as_root() {
        assert_eq!(mode, 0o555);
    } else {
        assert_eq!(mode, 0o755);
    }
    fs::remove_dir_all(&f.dest).unwrap();
}
