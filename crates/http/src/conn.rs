//! Bounds on the idle phases of a served HTTP connection, shared by the proxy's listeners and
//! every axum server (the `serve` module): a connection must send its first request within
//! [`Bounds::first_bytes`] (the HTTP/1-or-HTTP/2 sniff, the HTTP/2 preface and a request's headers
//! included), and is closed gracefully once it has had no request in flight for
//! [`Bounds::idle`]; a request body that sends nothing for [`Bounds::body_idle`] fails
//! ([`IdleBody`]). Nothing bounds how long a request in flight may last: streamed responses (logs,
//! pull progress, waits) go on for as long as they send.
//!
//! State: per connection, an [`Activity`] (atomics: requests in flight, when the last one ended);
//! no locks.

use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// How long a connection's idle phases may last.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// From accepting a connection to its first request's headers (the protocol sniff, the
    /// HTTP/2 preface and settings, the headers).
    pub first_bytes: Duration,
    /// With no request in flight, after the last one: then the connection is closed gracefully.
    pub idle: Duration,
    /// Between two pieces of a request body.
    pub body_idle: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            first_bytes: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            body_idle: Duration::from_secs(60),
        }
    }
}

/// What one connection is doing: requests in flight, and since when none has been.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// Whether a request came at all (until then, the first-bytes bound applies).
    served: AtomicBool,
    /// When the last request ended, in ms since `epoch`.
    idle_since_ms: AtomicU64,
    epoch: Instant,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    /// A request started; it is in flight until the returned guard is dropped (keep it in the
    /// response body: [`Held`]).
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.served.store(true, Ordering::SeqCst);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// Whether a request came at all.
    pub fn served(&self) -> bool {
        self.served.load(Ordering::SeqCst)
    }

    /// Resolves once the connection has been idle past its bound: no first request within
    /// `first_bytes` of the start (then drop it: nothing to finish), or no request in flight for
    /// `idle` (then close it gracefully, giving it `first_bytes` to end). The caller selects on
    /// this next to the connection (a generic helper that owned the connection would trip the
    /// compiler's `Send` check of hyper's connection futures).
    pub async fn idle_out(&self, bounds: Bounds) {
        loop {
            // While a request is in flight, look again after `idle`: it may have ended by then.
            let deadline = self
                .deadline(&bounds)
                .unwrap_or_else(|| Instant::now() + bounds.idle);
            tokio::time::sleep_until(deadline).await;
            if self.deadline(&bounds).is_some_and(|d| d <= Instant::now()) {
                return;
            }
        }
    }

    /// When the connection has been idle too long (`None` while a request is in flight).
    fn deadline(&self, bounds: &Bounds) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let since = self.epoch + Duration::from_millis(self.idle_since_ms.load(Ordering::SeqCst));
        Some(if self.served.load(Ordering::SeqCst) {
            since + bounds.idle
        } else {
            since + bounds.first_bytes
        })
    }
}

/// A request in flight on its connection's [`Activity`].
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        let now = a.epoch.elapsed().as_millis() as u64;
        a.idle_since_ms.store(now, Ordering::SeqCst);
        a.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request in flight ([`Busy`]) until it is sent or dropped.
pub struct Held<B> {
    inner: B,
    _busy: Busy,
}

impl<B> Held<B> {
    pub fn new(inner: B, busy: Busy) -> Self {
        Self { inner, _busy: busy }
    }
}

impl<B: Body + Unpin> Body for Held<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that sent nothing for [`Bounds::body_idle`].
#[derive(Debug, thiserror::Error)]
#[error("the client sent no request body data for {}s; send the body without pausing", .0.as_secs())]
pub struct BodyTimeout(pub Duration);

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body whose every piece must come within `idle` of the one before (or of the
/// request's start).
pub struct IdleBody<B> {
    inner: B,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
}

impl<B> IdleBody<B> {
    pub fn new(inner: B, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = Instant::now() + self.idle;
                self.timer.as_mut().reset(next);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(self.idle))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a body error is [`BodyTimeout`] (anywhere in its chain).
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<BodyTimeout>() {
            return true;
        }
        cur = e.source();
    }
    false
}
