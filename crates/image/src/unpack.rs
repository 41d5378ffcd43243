//! Unpacking one layer (a tar stream, plain, gzip or zstd) into an empty directory, safely.
//!
//! This is the security core of the crate; the rules are in the crate doc ("Security policy").
//! In short: every path is relative and free of `..`; no parent of an entry may be a symlink
//! (nothing is ever written through one); files are created with `O_EXCL` so a symlink in the
//! final position is never followed; hard links may only point at regular files unpacked earlier
//! in the same layer; device nodes are refused; sizes, entry counts and the compression ratio are
//! limited while the stream is read. Whiteout files (`.wh.*`) are kept as they are: assembly
//! interprets them.

use crate::config::Limits;
use crate::error::ImageError;
use crate::fsmeta::{self, Kind, Meta};
pub use aloft_oci::media_type::Compression;
use filetime::FileTime;
use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{self, BufRead, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

mod guard;

/// Deepest path accepted in a layer (components). Real images stay far below; the limit keeps
/// every later walk of the tree (assembly is recursive) within its stack.
const MAX_DEPTH: usize = 256;

/// What to unpack and under which limits.
pub(crate) struct UnpackOptions<'a> {
    /// The layer's digest, for messages.
    pub layer: &'a str,
    pub limits: &'a Limits,
    /// The compressed size (for the ratio limit).
    pub compressed_size: u64,
    /// Keep ownership and set-uid bits (running as root).
    pub root: bool,
}

/// What unpacking found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UnpackStats {
    pub compression: Compression,
    /// Tar entries (files, directories, links, whiteouts).
    pub entries: u64,
    /// Uncompressed bytes of the tar stream.
    pub bytes: u64,
    /// Directories created only because an entry needed them as a parent (no entry of their
    /// own): assembly keeps a lower layer's metadata for them, as overlayfs would.
    pub implicit_dirs: Vec<String>,
}

/// Unpacks the (possibly compressed) tar stream `input` into `dest`, an empty directory.
/// On error `dest` holds a partial layer: the caller removes it.
pub(crate) fn unpack(
    mut input: impl BufRead,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, ImageError> {
    let head = input.fill_buf().map_err(|e| corrupt(opts, &e))?;
    let compression = Compression::detect(head);
    let budget = Budget {
        limits: opts.limits,
        compressed: (compression != Compression::None).then_some(opts.compressed_size),
        read: Cell::new(0),
        hit: Cell::new(None),
    };
    let mut stats = match compression {
        Compression::None => run(Counted::new(input, &budget), dest, opts, &budget)?,
        Compression::Gzip => run(
            Counted::new(flate2::bufread::MultiGzDecoder::new(input), &budget),
            dest,
            opts,
            &budget,
        )?,
        Compression::Zstd => run(
            Counted::new(ZstdReader::new(input), &budget),
            dest,
            opts,
            &budget,
        )?,
    };
    stats.compression = compression;
    stats.bytes = budget.read.get();
    Ok(stats)
}

fn corrupt(opts: &UnpackOptions, e: &dyn std::fmt::Display) -> ImageError {
    ImageError::CorruptLayer {
        layer: opts.layer.to_string(),
        detail: e.to_string(),
    }
}

/// Which limit stopped the stream.
#[derive(Debug, Clone, Copy)]
enum Hit {
    Bytes,
    Ratio,
    /// An extended header (PAX, GNU long name) of this size.
    Extended(u64),
}

/// Counts uncompressed bytes and stops the stream at a limit.
struct Budget<'a> {
    limits: &'a Limits,
    compressed: Option<u64>,
    read: Cell<u64>,
    hit: Cell<Option<Hit>>,
}

/// The uncompressed tar stream on its way to the tar parser: counted, limited, and watched by
/// the [`guard::TarGuard`].
struct Counted<'a, R> {
    inner: R,
    budget: &'a Budget<'a>,
    guard: guard::TarGuard,
}

impl<'a, R> Counted<'a, R> {
    fn new(inner: R, budget: &'a Budget<'a>) -> Self {
        Counted {
            inner,
            budget,
            guard: guard::TarGuard::default(),
        }
    }
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.budget.hit.get().is_some() {
            return Err(io::Error::other("layer limit exceeded"));
        }
        let n = self.inner.read(buf)?;
        let b = self.budget;
        let total = b.read.get() + n as u64;
        b.read.set(total);
        let hit = if let Err(size) = self.guard.feed(&buf[..n]) {
            Some(Hit::Extended(size))
        } else if total > b.limits.max_layer_bytes {
            Some(Hit::Bytes)
        } else {
            match b.compressed {
                Some(c)
                    if total > Limits::RATIO_GRACE_BYTES
                        && total > c.saturating_mul(b.limits.max_ratio) =>
                {
                    Some(Hit::Ratio)
                }
                _ => None,
            }
        };
        if let Some(h) = hit {
            b.hit.set(Some(h));
            return Err(io::Error::other("layer limit exceeded"));
        }
        Ok(n)
    }
}

/// A zstd decoder over every frame of the stream (skippable frames are skipped), built on
/// ruzstd's frame decoder (whose window is capped at 100 MiB, bounding memory).
struct ZstdReader<R> {
    src: R,
    dec: FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> ZstdReader<R> {
    fn new(src: R) -> Self {
        ZstdReader {
            src,
            dec: FrameDecoder::new(),
            in_frame: false,
        }
    }
}

impl<R: BufRead> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.in_frame {
                if self.dec.can_collect() > 0 {
                    let n = self.dec.read(buf)?;
                    if n > 0 {
                        return Ok(n);
                    }
                }
                if self.dec.is_finished() {
                    if self.dec.can_collect() == 0 {
                        self.in_frame = false;
                    }
                    continue;
                }
                self.dec
                    .decode_blocks(
                        &mut self.src,
                        BlockDecodingStrategy::UptoBytes(buf.len().max(64 << 10)),
                    )
                    .map_err(io::Error::other)?;
                continue;
            }
            if self.src.fill_buf()?.is_empty() {
                return Ok(0);
            }
            match self.dec.reset(&mut self.src) {
                Ok(()) => self.in_frame = true,
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped = io::copy(
                        &mut (&mut self.src).take(u64::from(length)),
                        &mut io::sink(),
                    )?;
                    if skipped != u64::from(length) {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "truncated skippable zstd frame",
                        ));
                    }
                }
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }
}

/// Unpacking state for one layer.
struct Unpacker<'a> {
    dest: &'a Path,
    opts: &'a UnpackOptions<'a>,
    budget: &'a Budget<'a>,
    entries: u64,
    /// Explicit directories and their metadata, applied at the end (deepest first) so that
    /// creating their content neither changes their mtime nor needs write permission.
    dirs: HashMap<PathBuf, Meta>,
    implicit: BTreeSet<PathBuf>,
    buf: Vec<u8>,
}

fn run<R: Read>(
    reader: R,
    dest: &Path,
    opts: &UnpackOptions,
    budget: &Budget,
) -> Result<UnpackStats, ImageError> {
    let mut u = Unpacker {
        dest,
        opts,
        budget,
        entries: 0,
        dirs: HashMap::new(),
        implicit: BTreeSet::new(),
        buf: vec![0; 128 << 10],
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| u.stream_error(e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| u.stream_error(e))?;
        u.entry(&mut entry)?;
    }
    u.finish()
}

impl Unpacker<'_> {
    /// An error while reading the stream: a limit, or a corrupt stream.
    fn stream_error(&self, e: io::Error) -> ImageError {
        let limits = self.opts.limits;
        let what = format!("layer {}", self.opts.layer);
        match self.budget.hit.get() {
            Some(Hit::Bytes) => ImageError::LimitExceeded {
                what,
                limit: "the uncompressed layer size limit",
                detail: format!("more than {} bytes", limits.max_layer_bytes),
                field: "max_layer_bytes",
            },
            Some(Hit::Ratio) => ImageError::LimitExceeded {
                what,
                limit: "the compression ratio limit",
                detail: format!(
                    "{} bytes from {} compressed bytes is more than {}x",
                    self.budget.read.get(),
                    self.opts.compressed_size,
                    limits.max_ratio
                ),
                field: "max_ratio",
            },
            Some(Hit::Extended(size)) => ImageError::UnsafeEntry {
                layer: self.opts.layer.to_string(),
                entry: "(extended header)".into(),
                reason: format!(
                    "a PAX or GNU long-name header of {size} bytes; more than {} would be held in memory",
                    guard::MAX_EXTENDED_HEADER
                ),
            },
            None => corrupt(self.opts, &e),
        }
    }

    fn refuse(&self, entry: &str, reason: impl Into<String>) -> ImageError {
        ImageError::UnsafeEntry {
            layer: self.opts.layer.to_string(),
            entry: entry.to_string(),
            reason: reason.into(),
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<(), ImageError> {
        use tar::EntryType as T;
        let kind = entry.header().entry_type();
        if kind == T::XGlobalHeader {
            return Ok(());
        }
        self.entries += 1;
        if self.entries > self.opts.limits.max_files {
            return Err(ImageError::LimitExceeded {
                what: format!("layer {}", self.opts.layer),
                limit: "the entry count limit",
                detail: format!("more than {} entries", self.opts.limits.max_files),
                field: "max_files",
            });
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = entry.path().map_err(|e| self.stream_error(e))?;
        let rel = sanitize(&path).map_err(|r| self.refuse(&raw, r))?;
        if matches!(kind, T::Char | T::Block) {
            return Err(self.refuse(
                &raw,
                format!(
                    "it is a {} device node; images may not carry devices (they would reach host hardware), the machine's /dev is provided at start",
                    if kind == T::Char { "character" } else { "block" }
                ),
            ));
        }
        if rel.as_os_str().is_empty() {
            // the layer's own root (`./`): its metadata is not taken (the rootfs root is 0755)
            return if kind == T::Directory {
                Ok(())
            } else {
                Err(self.refuse(&raw, "the root of a layer must be a directory"))
            };
        }
        let meta = self.meta(entry, &raw)?;
        let full = self.prepare_parents(&rel, &raw)?;
        match kind {
            T::Directory => self.make_dir(&full, &rel, meta),
            T::Regular | T::Continuous | T::GNUSparse => self.write_file(entry, &full, &meta),
            T::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.stream_error(e))?
                    .filter(|t| !t.as_os_str().is_empty())
                    .ok_or_else(|| self.refuse(&raw, "a symlink without a target"))?;
                // The target may be anything, absolute included: it is resolved inside the
                // machine's root, and aloft never follows it while unpacking or assembling.
                self.remove_existing(&full)?;
                std::os::unix::fs::symlink(&target, &full)
                    .map_err(|e| ImageError::io("create symlink", &full, e))?;
                fsmeta::apply(&full, &meta, None, self.opts.root)
                    .map_err(|e| ImageError::io("set metadata of", &full, e))
            }
            T::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.stream_error(e))?
                    .ok_or_else(|| self.refuse(&raw, "a hard link without a target"))?;
                let source = self.link_source(&target, &raw)?;
                // Replacing `full` removes what is under it, the link's target included.
                if source.starts_with(&full) {
                    return Err(self.refuse(
                        &raw,
                        "a hard link to itself or to a file under its own path",
                    ));
                }
                self.remove_existing(&full)?;
                fs::hard_link(&source, &full)
                    .map_err(|e| ImageError::io("create hard link", &full, e))
            }
            T::Fifo => {
                self.remove_existing(&full)?;
                fsmeta::mkfifo(&full).map_err(|e| ImageError::io("create fifo", &full, e))?;
                fsmeta::apply(&full, &meta, Some(Kind::Fifo), self.opts.root)
                    .map_err(|e| ImageError::io("set metadata of", &full, e))
            }
            other => Err(self.refuse(&raw, format!("unsupported tar entry type {other:?}"))),
        }
    }

    /// Mode, owner and mtime of an entry, with PAX overrides for large ids and precise times.
    fn meta<R: Read>(&self, entry: &mut tar::Entry<R>, raw: &str) -> Result<Meta, ImageError> {
        let h = entry.header();
        let mode = h.mode().map_err(|e| self.stream_error(e))?;
        let mut uid = h.uid().map_err(|e| self.stream_error(e))?;
        let mut gid = h.gid().map_err(|e| self.stream_error(e))?;
        let secs = h.mtime().map_err(|e| self.stream_error(e))?;
        let mut mtime = FileTime::from_unix_time(i64::try_from(secs).unwrap_or(0), 0);
        if let Some(exts) = entry.pax_extensions().map_err(|e| self.stream_error(e))? {
            for ext in exts {
                let ext = ext.map_err(|e| self.stream_error(e))?;
                let (Ok(key), Ok(value)) = (ext.key(), ext.value()) else {
                    continue;
                };
                match key {
                    "uid" => uid = value.trim().parse().unwrap_or(uid),
                    "gid" => gid = value.trim().parse().unwrap_or(gid),
                    "mtime" => mtime = parse_pax_time(value).unwrap_or(mtime),
                    _ => {}
                }
            }
        }
        let id = |v: u64, what: &str| {
            u32::try_from(v)
                .map_err(|_| self.refuse(raw, format!("its {what} {v} is out of range")))
        };
        Ok(Meta {
            mode,
            uid: id(uid, "uid")?,
            gid: id(gid, "gid")?,
            mtime,
        })
    }

    /// Makes sure every parent of `rel` is a real directory inside `dest`, creating missing
    /// ones; refuses a parent that is a symlink or not a directory. Returns the entry's path.
    fn prepare_parents(&mut self, rel: &Path, raw: &str) -> Result<PathBuf, ImageError> {
        let mut full = self.dest.to_path_buf();
        let mut sofar = PathBuf::new();
        let parts: Vec<_> = rel.iter().collect();
        let (last, parents) = parts
            .split_last()
            .ok_or_else(|| self.refuse(raw, "an empty path"))?;
        for part in parents {
            full.push(part);
            sofar.push(part);
            match fs::symlink_metadata(&full) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.refuse(
                        raw,
                        format!(
                            "its parent `{}` is a symlink in this layer, and writing through a symlink could reach outside the layer",
                            sofar.display()
                        ),
                    ));
                }
                Ok(_) => {
                    return Err(self.refuse(
                        raw,
                        format!("its parent `{}` is not a directory", sofar.display()),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&full)
                        .map_err(|e| ImageError::io("create directory", &full, e))?;
                    self.implicit.insert(sofar.clone());
                }
                Err(e) => return Err(ImageError::io("inspect", &full, e)),
            }
        }
        full.push(last);
        Ok(full)
    }

    /// The path a hard link may point at: a regular file already unpacked in this layer,
    /// reached without any symlink.
    fn link_source(&self, target: &Path, raw: &str) -> Result<PathBuf, ImageError> {
        let refuse = |why: String| {
            self.refuse(
                raw,
                format!("hard link target `{}` {why}", target.display()),
            )
        };
        let rel = sanitize(target).map_err(|r| refuse(r.to_string()))?;
        if rel.as_os_str().is_empty() {
            return Err(refuse("is the layer root".into()));
        }
        let mut full = self.dest.to_path_buf();
        let parts: Vec<_> = rel.iter().collect();
        for (i, part) in parts.iter().enumerate() {
            full.push(part);
            let last = i + 1 == parts.len();
            match fs::symlink_metadata(&full) {
                Ok(m) if !last && m.is_dir() => {}
                Ok(m) if last && m.file_type().is_file() => {}
                Ok(_) if !last => {
                    return Err(refuse(
                        "goes through a symlink or a non-directory; a hard link may only point at a regular file of the same layer".into(),
                    ));
                }
                Ok(_) | Err(_) => {
                    return Err(refuse(
                        "is not a regular file unpacked earlier in this layer; a hard link may only point at one".into(),
                    ));
                }
            }
        }
        Ok(full)
    }

    /// Removes what an earlier entry of the same layer put at `full` (the later entry wins),
    /// and forgets the deferred metadata of directories that went with it: a symlink may take
    /// their place, and their paths must then never be used again.
    fn remove_existing(&mut self, full: &Path) -> Result<(), ImageError> {
        fsmeta::remove_any(full).map_err(|e| ImageError::io("replace", full, e))?;
        self.dirs.retain(|p, _| !p.starts_with(full));
        if let Ok(rel) = full.strip_prefix(self.dest) {
            self.implicit.retain(|p| !p.starts_with(rel));
        }
        Ok(())
    }

    /// Whether `rel` is a directory reached from the layer root without any symlink (`lstat`
    /// on every component: a symlink in the middle of a path would be followed otherwise).
    fn is_real_dir(&self, rel: &Path) -> bool {
        let mut cur = self.dest.to_path_buf();
        rel.iter().all(|part| {
            cur.push(part);
            fs::symlink_metadata(&cur).is_ok_and(|m| m.is_dir())
        })
    }

    fn make_dir(&mut self, full: &Path, rel: &Path, meta: Meta) -> Result<(), ImageError> {
        match fs::symlink_metadata(full) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                self.remove_existing(full)?;
                create_dir(full)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => create_dir(full)?,
            Err(e) => return Err(ImageError::io("inspect", full, e)),
        }
        self.implicit.remove(rel);
        self.dirs.insert(full.to_path_buf(), meta);
        Ok(())
    }

    fn write_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        full: &Path,
        meta: &Meta,
    ) -> Result<(), ImageError> {
        self.remove_existing(full)?;
        // O_CREAT|O_EXCL: never follows a symlink at the final component
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(full)
            .map_err(|e| ImageError::io("create", full, e))?;
        let mut out = BufWriter::with_capacity(128 << 10, file);
        loop {
            let n = entry
                .read(&mut self.buf)
                .map_err(|e| self.stream_error(e))?;
            if n == 0 {
                break;
            }
            out.write_all(&self.buf[..n])
                .map_err(|e| ImageError::io("write", full, e))?;
        }
        let file = out
            .into_inner()
            .map_err(|e| ImageError::io("write", full, e.into_error()))?;
        fsmeta::apply_file(&file, meta, self.opts.root)
            .map_err(|e| ImageError::io("set metadata of", full, e))
    }

    /// Applies directory metadata, deepest first; reports the implicit directories.
    fn finish(mut self) -> Result<UnpackStats, ImageError> {
        let mut dirs: Vec<_> = std::mem::take(&mut self.dirs).into_iter().collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (path, meta) in &dirs {
            // a later entry may have replaced the directory (or a parent of it)
            let rel = path.strip_prefix(self.dest).unwrap_or(path);
            if self.is_real_dir(rel) {
                fsmeta::apply(path, meta, Some(Kind::Dir), self.opts.root)
                    .map_err(|e| ImageError::io("set metadata of", path, e))?;
            }
        }
        let implicit_dirs = self
            .implicit
            .iter()
            .filter(|rel| self.is_real_dir(rel))
            .map(|rel| rel.to_string_lossy().into_owned())
            .collect();
        Ok(UnpackStats {
            compression: Compression::None,
            entries: self.entries,
            bytes: 0,
            implicit_dirs,
        })
    }
}

fn create_dir(full: &Path) -> Result<(), ImageError> {
    // 0700 until the entry's own mode is applied at the end
    fs::DirBuilder::new()
        .mode(0o700)
        .create(full)
        .map_err(|e| ImageError::io("create directory", full, e))
}

/// The path relative to the layer root, or why it is refused: absolute paths and any `..`.
pub(crate) fn sanitize(path: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    if path.components().count() > MAX_DEPTH {
        return Err("the path is deeper than 256 directories");
    }
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err("the path contains `..`, which could reach outside the layer");
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err("the path is absolute; layer paths must be relative to the image root");
            }
        }
    }
    Ok(out)
}

/// `1700000000.123456789` (PAX mtime) as a file time.
fn parse_pax_time(value: &str) -> Option<FileTime> {
    let value = value.trim();
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos = if digits.is_empty() {
        0
    } else {
        digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32)
    };
    Some(FileTime::from_unix_time(secs.max(0), nanos))
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
