//! Copying a tunnel's bytes both ways (an upgraded connection such as a WebSocket, a
//! passed-through TCP connection, an edge's `CONNECT` tunnel on the worker listener) until
//! either side closes, or until neither side has sent a byte for the idle timeout
//! ([`Protection::tunnel_idle_timeout`](crate::Protection::tunnel_idle_timeout)), so that a peer
//! that goes silent does not hold the connection and the machine's slot forever.
//!
//! State: per tunnel, the time of the last byte read from either side, an atomic shared by the
//! tunnel's two ends (no lock).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Copies `a` to `b` and `b` to `a` until either side closes (the bytes each way, as
/// [`tokio::io::copy_bidirectional`]), or fails with `TimedOut` once no byte has come from
/// either side for `idle`.
pub(crate) async fn copy_bidirectional_idle<A, B>(
    a: &mut A,
    b: &mut B,
    idle: Duration,
) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let mut a = Active {
        inner: a,
        start,
        last: &last,
    };
    let mut b = Active {
        inner: b,
        start,
        last: &last,
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    loop {
        let deadline = start + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
        tokio::select! {
            copied = &mut copy => return copied,
            () = tokio::time::sleep_until(deadline) => {
                let quiet = start + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
                if Instant::now() >= quiet {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no bytes either way for {idle:?}"),
                    ));
                }
            }
        }
    }
}

/// One end of a tunnel: a stream that notes when it last gave bytes (milliseconds since the
/// tunnel's start).
struct Active<'a, S: ?Sized> {
    inner: &'a mut S,
    start: Instant,
    last: &'a AtomicU64,
}

impl<S: AsyncRead + Unpin + ?Sized> AsyncRead for Active<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut *self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.last.store(ms, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin + ?Sized> AsyncWrite for Active<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
