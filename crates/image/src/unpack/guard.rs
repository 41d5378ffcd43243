//! A shadow reader of the tar stream's block structure that refuses oversized extended headers
//! (PAX `x`/`g`, GNU long names `L`/`K`) *before* the tar parser reads them: the `tar` crate
//! buffers their whole content in memory, so without this a layer could declare a multi-GiB
//! "file name" and exhaust the host's memory long before any byte limit is reached.
//!
//! It follows entry boundaries as the `tar` crate does (header, then `size` bytes of data
//! rounded up to 512, with a PAX `size` record overriding the next entry's size, and old GNU
//! sparse extension blocks). A block that does not carry a valid header checksum where a header
//! is expected means the stream is not one this guard understands; it then stops checking (and
//! the tar parser reports the corrupt stream itself), so it can never refuse a valid layer.

/// Largest extended header accepted (its content is held in memory while parsing).
pub(super) const MAX_EXTENDED_HEADER: u64 = 1 << 20;

const BLOCK: u64 = 512;

#[derive(Debug, Default)]
pub(super) struct TarGuard {
    /// Stream position of the next byte fed.
    pos: u64,
    /// Where the next header block starts.
    next_header: u64,
    header: Vec<u8>,
    /// Content of a PAX header being captured, and where it ends.
    pax: Option<Vec<u8>>,
    pax_end: u64,
    /// A PAX `size` for the next regular entry.
    pax_size: Option<u64>,
    /// Old GNU sparse extension blocks follow, then data of this size.
    sparse_then: Option<u64>,
    lost: bool,
}

impl TarGuard {
    /// Feeds the next bytes of the stream; `Err(size)` for an oversized extended header.
    pub(super) fn feed(&mut self, mut data: &[u8]) -> Result<(), u64> {
        while !data.is_empty() && !self.lost {
            if self.pos < self.next_header {
                let n = (self.next_header - self.pos).min(data.len() as u64) as usize;
                if let Some(pax) = &mut self.pax {
                    let keep = (self.pax_end.saturating_sub(self.pos) as usize).min(n);
                    pax.extend_from_slice(&data[..keep]);
                }
                self.pos += n as u64;
                data = &data[n..];
                if self.pos == self.next_header
                    && let Some(pax) = self.pax.take()
                {
                    self.pax_size = pax_size(&pax);
                }
                continue;
            }
            let n = (BLOCK as usize - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..n]);
            self.pos += n as u64;
            data = &data[n..];
            if self.header.len() == BLOCK as usize {
                let block = std::mem::take(&mut self.header);
                self.next_header = self.pos;
                self.block(&block)?;
            }
        }
        if self.lost {
            self.pos += data.len() as u64;
        }
        Ok(())
    }

    /// A complete block where a header (or a sparse extension block) was expected. Fields are
    /// read with the `tar` crate's own parsers and its rules are followed (which headers are
    /// extensions, which entry a PAX `size` applies to), so that both find the same headers.
    fn block(&mut self, h: &[u8]) -> Result<(), u64> {
        if let Some(size) = self.sparse_then {
            // old GNU sparse extension block: another follows while its flag is 1
            let mut ext = tar::GnuExtSparseHeader::new();
            ext.as_mut_bytes().copy_from_slice(h);
            if !ext.is_extended() {
                self.sparse_then = None;
                self.next_header = self.pos + size.div_ceil(BLOCK) * BLOCK;
            }
            return Ok(());
        }
        if h.iter().all(|b| *b == 0) {
            return Ok(()); // end-of-archive (or padding) block
        }
        let header = tar::Header::from_byte_slice(h);
        let Some(size) = valid(header).then(|| header.entry_size().ok()).flatten() else {
            self.lost = true;
            return Ok(());
        };
        let kind = h[156];
        if matches!(kind, b'x' | b'g' | b'L' | b'K') && size > MAX_EXTENDED_HEADER {
            return Err(size);
        }
        // The tar crate takes `x`, `L` and `K` as extensions of the next entry only in GNU and
        // ustar headers; anything else (`g` included) is an entry, which uses up a pending PAX
        // `size` but keeps its own.
        let recognized = header.as_gnu().is_some() || header.as_ustar().is_some();
        if recognized && matches!(kind, b'x' | b'L' | b'K') {
            if kind == b'x' {
                self.pax = Some(Vec::with_capacity(size as usize));
                self.pax_end = self.pos + size;
            }
            self.next_header = self.pos + size.div_ceil(BLOCK) * BLOCK;
            return Ok(());
        }
        let pax_size = self.pax_size.take();
        let size = if matches!(kind, b'x' | b'g' | b'L' | b'K') {
            size
        } else {
            pax_size.unwrap_or(size)
        };
        if kind == b'S' && header.as_gnu().is_some_and(|g| g.is_extended()) {
            self.sparse_then = Some(size);
            return Ok(());
        }
        self.next_header = self.pos + size.div_ceil(BLOCK) * BLOCK;
        Ok(())
    }
}

/// Whether the header checksum is right, as the tar crate checks it (the checksum field
/// summed as if spaces).
fn valid(header: &tar::Header) -> bool {
    let bytes = header.as_bytes();
    let sum: u64 = bytes[..148]
        .iter()
        .chain(&bytes[156..])
        .map(|b| u64::from(*b))
        .sum::<u64>()
        + 8 * 32;
    header.cksum().is_ok_and(|want| u64::from(want) == sum)
}

/// The `size` of PAX extended header content, as the tar crate reads it: the first `size`
/// record, and none if a record before it is malformed or its value is not a number.
fn pax_size(content: &[u8]) -> Option<u64> {
    for record in tar::PaxExtensions::new(content) {
        let record = record.ok()?;
        if record.key() == Ok("size") {
            return record.value().ok()?.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: tar::EntryType, size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_path("x").unwrap();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    fn feed_all(stream: &[u8], chunk: usize) -> Result<TarGuard, u64> {
        let mut g = TarGuard::default();
        for part in stream.chunks(chunk) {
            g.feed(part)?;
        }
        Ok(g)
    }

    #[test]
    fn refuses_huge_extended_headers_in_any_chunking() {
        let mut stream = header(tar::EntryType::Regular, 1000);
        stream.extend(vec![7u8; 1024]);
        stream.extend(header(tar::EntryType::GNULongName, 5 << 30));
        for chunk in [1, 7, 512, 4096] {
            assert_eq!(feed_all(&stream, chunk).unwrap_err(), 5 << 30);
        }
        let small = header(tar::EntryType::XHeader, 100);
        assert!(feed_all(&small, 512).is_ok());
    }

    #[test]
    fn follows_pax_sizes() {
        // a PAX header says the next file has 1536 bytes (its own header says 0); a huge long
        // name after that file must still be found at the right place
        let record = "13 size=1536\n";
        let mut stream = header(tar::EntryType::XHeader, record.len() as u64);
        let mut content = record.as_bytes().to_vec();
        content.resize(512, 0);
        stream.extend(content);
        stream.extend(header(tar::EntryType::Regular, 0));
        stream.extend(vec![0x55u8; 1536]);
        stream.extend(header(tar::EntryType::GNULongLink, 2 << 20));
        assert_eq!(feed_all(&stream, 100).unwrap_err(), 2 << 20);
        assert_eq!(pax_size(b"13 size=1536\n18 path=some/file\n"), Some(1536));
        assert_eq!(pax_size(b"junk"), None);
    }

    #[test]
    fn keeps_track_through_ordinary_archives() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        for (i, len) in [0usize, 1, 511, 512, 513, 70_000].into_iter().enumerate() {
            let name = format!("{}/file{i}", "long".repeat(40));
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(len as u64);
            b.append_data(&mut h, &name, &vec![0xffu8; len][..])
                .unwrap();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, format!("link{i}"), "t".repeat(150))
                .unwrap();
        }
        let mut stream = b.into_inner().unwrap();
        // then a huge long name: found only if the guard kept its place through all of that
        stream.extend(header(tar::EntryType::GNULongName, 9 << 20));
        for chunk in [3, 512, 10_000] {
            assert_eq!(
                feed_all(&stream, chunk).unwrap_err(),
                9 << 20,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn gives_up_quietly_on_what_it_does_not_understand() {
        let g = feed_all(&[0xabu8; 2048], 512).unwrap();
        assert!(g.lost);
        assert!(!valid(tar::Header::from_byte_slice(&[0xab; 512])));
    }
}
