//! Fuzzing the [`TarGuard`] against the `tar` crate: the guard must find every header the tar
//! crate reads, at the same place, or an oversized extended header could hide from it (in data
//! the guard skips) and be buffered whole by the parser. Archives are built from members of
//! every kind the two could treat differently (PAX `x`/`g` with `size` records, well-formed or
//! not, GNU long names and links, GNU sparse, ustar, GNU and old headers, numbers written in
//! every way the tar crate reads them), whose data may itself look like a header. Properties:
//!
//! - every header the tar crate reads (extension headers included) is where the guard expects
//!   one, in any chunking of the stream;
//! - when the tar crate reaches an extended header larger than the guard's limit, the guard has
//!   refused the stream before it.
//!
//! `PROPTEST_CASES` sets the number of cases (`scripts/fuzz.sh` runs many).

use super::{MAX_EXTENDED_HEADER, TarGuard};
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
enum Magic {
    Gnu,
    Ustar,
    Old,
}

/// How a number (size or checksum) is written in its field.
#[derive(Debug, Clone, Copy)]
enum Writing {
    Plain,
    /// Leading and trailing whitespace the tar crate trims (tabs included).
    Spaced,
    /// Cut by a NUL followed by junk (the tar crate reads up to the first NUL).
    NulThenJunk,
    /// GNU base-256 (sizes only).
    Binary,
}

#[derive(Debug, Clone)]
struct Member {
    kind: u8,
    magic: Magic,
    size: u64,
    size_writing: Writing,
    cksum_writing: Writing,
    /// PAX content for an `x`/`g` member.
    pax: Vec<String>,
    /// The data holds a header block (a huge long name) at its start.
    nested: bool,
    /// The GNU sparse "extended" byte.
    extended: u8,
}

fn writing() -> impl Strategy<Value = Writing> {
    prop_oneof![
        4 => Just(Writing::Plain),
        1 => Just(Writing::Spaced),
        1 => Just(Writing::NulThenJunk),
        1 => Just(Writing::Binary),
    ]
}

/// A PAX record with its length right: `<len> key=value\n`.
fn record(kv: &str) -> String {
    let mut len = kv.len() + 3;
    while format!("{len} {kv}\n").len() != len {
        len += 1;
    }
    format!("{len} {kv}\n")
}

fn pax_record() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..3000).prop_map(|n| record(&format!("size={n}"))),
        (0u64..3000).prop_map(|n| format!("99 size={n}\n")),
        (0u64..3000).prop_map(|n| record(&format!("size={n}\n"))),
        (0u64..3000).prop_map(|n| record(&format!("size= {n}"))),
        Just(record("path=some/long/name")),
        Just(record("uid=1000")),
        Just("junk\n".to_string()),
        Just("\n".to_string()),
        "[ -~\n]{0,20}",
    ]
}

fn member() -> impl Strategy<Value = Member> {
    (
        prop_oneof![
            Just(b'0'),
            Just(b'5'),
            Just(b'2'),
            Just(b'x'),
            Just(b'x'),
            Just(b'g'),
            Just(b'L'),
            Just(b'K'),
            Just(b'S'),
            any::<u8>(),
        ],
        prop_oneof![Just(Magic::Gnu), Just(Magic::Ustar), Just(Magic::Old)],
        prop_oneof![Just(0u64), 1u64..1100, Just(512u64), Just(1024u64)],
        writing(),
        writing(),
        prop::collection::vec(pax_record(), 0..4),
        prop::bool::weighted(0.3),
        prop_oneof![Just(0u8), Just(1), Just(2)],
    )
        .prop_map(
            |(kind, magic, size, size_writing, cksum_writing, pax, nested, extended)| Member {
                kind,
                magic,
                size,
                size_writing,
                cksum_writing,
                pax,
                nested,
                extended,
            },
        )
}

fn write_number(field: &mut [u8], n: u64, writing: Writing) {
    field.fill(0);
    let width = field.len() - 1;
    let text = match writing {
        Writing::Plain => format!("{n:0width$o}"),
        Writing::Spaced => format!("\t{n:o} "),
        Writing::NulThenJunk => format!("{n:o}\0x7"),
        Writing::Binary => {
            field[0] = 0x80;
            let bytes = n.to_be_bytes();
            let at = field.len() - bytes.len();
            field[at..].copy_from_slice(&bytes);
            return;
        }
    };
    let bytes = text.as_bytes();
    let n = bytes.len().min(field.len());
    field[..n].copy_from_slice(&bytes[..n]);
}

fn header(name: &str, kind: u8, magic: Magic, size: u64, writing: (Writing, Writing)) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[156] = kind;
    match magic {
        Magic::Gnu => h[257..265].copy_from_slice(b"ustar  \0"),
        Magic::Ustar => h[257..265].copy_from_slice(b"ustar\x0000"),
        Magic::Old => {}
    }
    write_number(&mut h[124..136], size, writing.0);
    h
}

/// Writes the checksum of a complete header block (the field counts as spaces).
fn seal(h: &mut [u8], writing: Writing) {
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    let writing = match writing {
        Writing::Binary => Writing::Plain,
        other => other,
    };
    write_number(&mut h[148..155], sum, writing);
    if matches!(writing, Writing::Plain) {
        h[155] = b' ';
    }
}

/// The archive: each member's header, its data (PAX content, or filler that may hold a header)
/// padded to 512, then two zero blocks.
fn archive(members: &[Member]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let content: Vec<u8> = if matches!(m.kind, b'x' | b'g') {
            m.pax.concat().into_bytes()
        } else {
            Vec::new()
        };
        let size = if content.is_empty() {
            m.size
        } else {
            content.len() as u64
        };
        let mut h = header(
            &format!("m{i}"),
            m.kind,
            m.magic,
            size,
            (m.size_writing, m.cksum_writing),
        );
        if m.kind == b'S' {
            h[482] = m.extended;
            h[483..495].copy_from_slice(b"00000000000\0");
        }
        seal(&mut h, m.cksum_writing);
        out.extend(h);
        let mut data = content;
        if m.nested {
            let mut nested = header(
                "hidden",
                b'L',
                Magic::Gnu,
                5 << 30,
                (Writing::Plain, Writing::Plain),
            );
            seal(&mut nested, Writing::Plain);
            data.splice(0..0, nested);
        }
        let padded = usize::try_from(size.div_ceil(512) * 512).unwrap_or(0);
        data.resize(padded.max(data.len()), 0);
        out.extend(data);
    }
    out.extend([0u8; 1024]);
    out
}

/// Where the tar crate reads headers (extension headers included), in order, and the size of
/// an extension header it reached that is larger than the guard's limit, if any.
fn tar_headers(stream: &[u8]) -> (Vec<u64>, Option<u64>) {
    let mut positions = Vec::new();
    let mut archive = tar::Archive::new(stream);
    let Ok(entries) = archive.entries() else {
        return (positions, None);
    };
    // The extension headers from `from` to the entry's own header at `to` (or, when the parser
    // failed, those it went through); the size of a huge one reached.
    let walk = |from: u64, to: Option<u64>, positions: &mut Vec<u64>| -> Option<u64> {
        let mut p = from;
        while to.is_none_or(|to| p < to) {
            let block = stream.get(p as usize..p as usize + 512)?;
            let h = tar::Header::from_byte_slice(block);
            let size = h.entry_size().ok()?;
            let kind = h.entry_type();
            let recognized = h.as_gnu().is_some() || h.as_ustar().is_some();
            let extension = recognized
                && (kind.is_gnu_longname()
                    || kind.is_gnu_longlink()
                    || kind.is_pax_local_extensions());
            if block.iter().all(|b| *b == 0) || (to.is_none() && !extension) {
                return None;
            }
            positions.push(p);
            if size > MAX_EXTENDED_HEADER {
                return Some(size);
            }
            p += 512 + size.div_ceil(512) * 512;
        }
        None
    };
    let mut next = 0u64;
    for entry in entries {
        let Ok(entry) = entry else {
            let huge = walk(next, None, &mut positions);
            return (positions, huge);
        };
        let at = entry.raw_header_position();
        walk(next, Some(at), &mut positions);
        positions.push(at);
        if entry.header().entry_type().is_gnu_sparse() {
            break; // its extension blocks and data: not followed here
        }
        next = entry.raw_file_position() + entry.size().div_ceil(512) * 512;
    }
    (positions, None)
}

fn feed(stream: &[u8], chunk: usize) -> (TarGuard, Result<(), u64>) {
    let mut g = TarGuard::default();
    for part in stream.chunks(chunk) {
        if let Err(size) = g.feed(part) {
            return (g, Err(size));
        }
    }
    (g, Ok(()))
}

fn check(members: &[Member], chunk: usize) {
    let stream = archive(members);
    let (positions, huge) = tar_headers(&stream);
    for &p in &positions {
        let (g, refused) = feed(&stream[..p as usize], chunk);
        if refused.is_err() {
            return; // refused before the parser got here: safe
        }
        assert!(
            !g.lost && g.next_header == p && g.header.is_empty(),
            "the tar crate reads a header at {p}; the guard expects one at {} (lost: {})\n{members:#?}",
            g.next_header,
            g.lost
        );
    }
    if let Some(size) = huge {
        assert_eq!(feed(&stream, chunk).1, Err(size), "{members:#?}");
    }
}

proptest! {
    #[test]
    fn fuzz_tar_guard_agrees_with_the_tar_crate(
        members in prop::collection::vec(member(), 1..8),
        chunk in prop_oneof![Just(1usize), 2usize..700, Just(512usize), Just(4096usize)],
    ) {
        check(&members, chunk);
    }
}

fn plain(kind: u8, size: u64, pax: &[&str], nested: bool) -> Member {
    Member {
        kind,
        magic: Magic::Gnu,
        size,
        size_writing: Writing::Plain,
        cksum_writing: Writing::Plain,
        pax: pax.iter().map(|kv| record(kv)).collect(),
        nested,
        extended: 0,
    }
}

/// Found by fuzzing: a PAX `size` followed by a global header (`g`) was applied by the guard
/// to the next file, but the tar crate spends it on the `g` entry: the guard then skipped the
/// bytes where the parser read a 5 GiB long name.
#[test]
fn fuzz_tar_guard_regression_pax_size_then_global_header() {
    let members = [
        plain(b'x', 0, &["size=1024"], false),
        plain(b'g', 0, &["comment=hi"], false),
        plain(b'0', 0, &[], true),
    ];
    check(&members, 512);
    assert_eq!(feed(&archive(&members), 512).1, Err(5 << 30));
}

/// Found by fuzzing: the tar crate reads numbers with tabs around them or cut by a NUL; the
/// guard did not, lost its place and stopped checking.
#[test]
fn fuzz_tar_guard_regression_numbers_as_the_tar_crate_reads_them() {
    for writing in [Writing::Spaced, Writing::NulThenJunk] {
        let mut file = plain(b'0', 0, &[], false);
        file.size_writing = writing;
        file.cksum_writing = writing;
        let members = [file, plain(b'0', 0, &[], true)];
        check(&members, 7);
        assert_eq!(feed(&archive(&members), 7).1, Err(5 << 30));
    }
}

/// Found by fuzzing: with two `size` records the tar crate takes the first, the guard took the
/// last.
#[test]
fn fuzz_tar_guard_regression_first_pax_size_wins() {
    let members = [
        plain(b'x', 0, &["size=0", "size=1024"], false),
        plain(b'0', 0, &[], true),
    ];
    check(&members, 100);
    assert_eq!(feed(&archive(&members), 100).1, Err(5 << 30));
}
