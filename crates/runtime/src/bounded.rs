//! Reading what a guest sends, with bounds. A guest is untrusted: no line, exit report or
//! command output it produces is read whole without a limit, so a guest cannot grow the
//! agent's memory (or stall it) by writing more. Stateless; no locks.

use aloft_types::api::EXEC_OUTPUT_CAP;
use aloft_types::init::ExitReport;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt};
use tokio::sync::Notify;

/// The longest line taken from a microVM's control port: an exec reply carries up to
/// [`EXEC_OUTPUT_CAP`] bytes each of stdout and stderr, which JSON may escape to 6 characters a
/// byte (`\u0000`), and a little more.
pub const CONTROL_LINE_MAX: usize = 12 * EXEC_OUTPUT_CAP + (64 << 10);

/// The most of an exit report that is read (a report is one short JSON line).
pub const EXIT_REPORT_MAX: usize = 64 << 10;

/// Reads one line of at most `max` bytes (without its `\n`) into `buf`. `Ok(false)` at the end
/// of the stream; an `InvalidData` error when the line is longer (the stream is then out of
/// step and should be dropped).
pub async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<bool> {
    buf.clear();
    let n = (&mut *r)
        .take(max as u64 + 1)
        .read_until(b'\n', buf)
        .await?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if buf.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the guest sent a line longer than {max} bytes"),
        ));
    }
    Ok(true)
}

/// The exit report in `path`: its first line only, read up to [`EXIT_REPORT_MAX`] bytes.
/// Init writes one report per run; what comes after it (or a report too long to be one) is
/// not the host's business.
pub fn exit_report(path: &Path) -> Option<ExitReport> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(EXIT_REPORT_MAX as u64)
        .read_to_end(&mut bytes)
        .ok()?;
    let line = bytes.split(|b| *b == b'\n').next()?;
    serde_json::from_slice(line).ok()
}

/// Copies the first [`EXIT_REPORT_MAX`] bytes of the exit report at `from` (a file the guest
/// can write) to `to`, replacing it; removes `to` when there is no report.
pub fn keep_exit_report(from: &Path, to: &Path) {
    let mut bytes = Vec::new();
    let read = std::fs::File::open(from)
        .and_then(|f| f.take(EXIT_REPORT_MAX as u64).read_to_end(&mut bytes));
    match read {
        Ok(_) => {
            let _ = aloft_durable::write(to, &bytes, 0o644);
        }
        Err(_) => {
            let _ = std::fs::remove_file(to);
        }
    }
}

/// A command's output, each stream capped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Captured {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// A stream passed the cap: both were left unread from then on.
    pub truncated: bool,
}

/// Reads a command's stdout and stderr to their ends, keeping at most `cap` bytes of each. As
/// soon as one passes the cap both are dropped (the caller then ends the command), so nothing
/// past the cap is buffered or waited for.
pub async fn capture<A, B>(stdout: A, stderr: B, cap: usize) -> Captured
where
    A: AsyncRead + Unpin,
    B: AsyncRead + Unpin,
{
    let over = AtomicBool::new(false);
    let stop = Notify::new();
    let mut out = Captured::default();
    tokio::join!(
        read_capped(stdout, cap, &mut out.stdout, &over, &stop),
        read_capped(stderr, cap, &mut out.stderr, &over, &stop),
    );
    out.truncated = over.load(Ordering::SeqCst);
    out
}

async fn read_capped<R: AsyncRead + Unpin>(
    mut r: R,
    cap: usize,
    buf: &mut Vec<u8>,
    over: &AtomicBool,
    stop: &Notify,
) {
    let mut chunk = vec![0u8; 64 << 10];
    while !over.load(Ordering::SeqCst) {
        let n = tokio::select! {
            n = r.read(&mut chunk) => n,
            () = stop.notified() => return,
        };
        let n = match n {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let room = cap.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..n.min(room)]);
        if n > room {
            over.store(true, Ordering::SeqCst);
            stop.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncWriteExt, BufReader};

    #[tokio::test]
    async fn a_line_longer_than_the_limit_is_refused_without_reading_it_whole() {
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        let writer = tokio::spawn(async move {
            // A guest that never ends its line.
            let chunk = vec![b'x'; 1 << 16];
            while tx.write_all(&chunk).await.is_ok() {}
        });
        let mut r = BufReader::new(rx);
        let mut buf = Vec::new();
        let e = read_line(&mut r, &mut buf, 1000).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(buf.len() <= 1001, "read {} bytes", buf.len());
        drop(r);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn lines_up_to_the_limit_are_read() {
        let data = format!("{}\nshort\nlast", "y".repeat(1000));
        let mut r = BufReader::new(data.as_bytes());
        let mut buf = Vec::new();
        assert!(read_line(&mut r, &mut buf, 1000).await.unwrap());
        assert_eq!(buf.len(), 1000);
        assert!(read_line(&mut r, &mut buf, 1000).await.unwrap());
        assert_eq!(buf, b"short");
        assert!(read_line(&mut r, &mut buf, 1000).await.unwrap());
        assert_eq!(buf, b"last");
        assert!(!read_line(&mut r, &mut buf, 1000).await.unwrap());
    }

    #[test]
    fn only_the_first_bounded_line_of_an_exit_report_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit.json");
        let first = "{\"exit_code\":3}\n{\"exit_code\":0}\n";
        std::fs::write(&path, first).unwrap();
        assert_eq!(exit_report(&path).unwrap().exit_code, 3);
        // A report grown past the limit (a guest writing forever) is not read whole.
        let huge = format!(
            "{{\"exit_code\":0,\"error\":\"{}\"}}\n",
            "e".repeat(1 << 20)
        );
        std::fs::write(&path, huge).unwrap();
        assert!(exit_report(&path).is_none());
        let kept = dir.path().join("kept.json");
        keep_exit_report(&path, &kept);
        assert_eq!(
            std::fs::metadata(&kept).unwrap().len(),
            EXIT_REPORT_MAX as u64
        );
        keep_exit_report(&dir.path().join("none"), &kept);
        assert!(!kept.exists());
    }

    #[tokio::test]
    async fn output_past_the_cap_is_cut_and_reading_stops() {
        let (mut out_tx, out_rx) = tokio::io::duplex(1 << 16);
        let (mut err_tx, err_rx) = tokio::io::duplex(1 << 16);
        // stdout never ends; stderr says a little and stays open.
        let writer = tokio::spawn(async move {
            err_tx.write_all(b"warning\n").await.unwrap();
            let chunk = vec![0u8; 1 << 16];
            while out_tx.write_all(&chunk).await.is_ok() {}
            drop(err_tx);
        });
        let got = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            capture(out_rx, err_rx, 100_000),
        )
        .await
        .expect("capture stops at the cap");
        assert!(got.truncated);
        assert_eq!(got.stdout.len(), 100_000);
        assert_eq!(got.stderr, b"warning\n");
        writer.await.unwrap();
        let small = capture(&b"out"[..], &b"err"[..], 100).await;
        assert_eq!(
            small,
            Captured {
                stdout: b"out".to_vec(),
                stderr: b"err".to_vec(),
                truncated: false
            }
        );
    }
}
