//! Bodies the proxy passes along: requests buffered (up to [`REPLAY_LIMIT`], once a machine is
//! chosen) so they can be retried and replayed, or streamed when larger, each piece due within
//! the body idle timeout; responses that hold their machine's load slot until the last byte is
//! sent.

use aloft_catalog::load::Slot;
use aloft_http::conn::IdleBody;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Requests with bodies up to this size can be retried on another machine and replayed.
pub const REPLAY_LIMIT: usize = 1 << 20;

pub use aloft_http::conn::BoxError;
/// Every body the proxy sends, to clients and to machines.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A client's request body, read with at most [`IdleBody`]'s pause between two pieces.
type ClientBody = IdleBody<Incoming>;

/// A client's request body as far as the proxy read it.
pub enum RequestBody {
    /// Not read yet: it is read once a machine is chosen ([`RequestBody::fill`]), so a request
    /// for no app, or for an app without room, costs no body buffer.
    Unread(Option<(Incoming, Duration)>),
    /// All of it: can be sent any number of times.
    Buffered(Bytes),
    /// Larger than [`REPLAY_LIMIT`]: what was read, then the rest; can be sent once.
    Streaming(Option<Prefixed>),
}

impl RequestBody {
    /// `body`, to be read later with at most `idle` between two pieces of it.
    pub fn new(body: Incoming, idle: Duration) -> RequestBody {
        if body.is_end_stream() {
            RequestBody::Buffered(Bytes::new())
        } else {
            RequestBody::Unread(Some((body, idle)))
        }
    }

    /// Reads the body whole if it fits in [`REPLAY_LIMIT`] (so it can be sent again and
    /// replayed); a body that says it is larger is not read at all. Once read, nothing to do.
    pub async fn fill(&mut self) -> Result<(), BoxError> {
        let RequestBody::Unread(unread) = self else {
            return Ok(());
        };
        let Some((body, idle)) = unread.take() else {
            return Ok(());
        };
        // (No `?` on the boxed error here or below: its identity `From` trips the compiler's
        // check that the connection's future is `Send`.)
        *self = match Self::read(IdleBody::new(body, idle)).await {
            Ok(read) => read,
            Err(e) => return Err(e),
        };
        Ok(())
    }

    async fn read(mut body: ClientBody) -> Result<RequestBody, BoxError> {
        if body.size_hint().lower() > REPLAY_LIMIT as u64 {
            return Ok(RequestBody::Streaming(Some(Prefixed {
                prefix: None,
                rest: body,
            })));
        }
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            // Trailers are not passed on.
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => return Err(e),
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            if buf.len() > REPLAY_LIMIT {
                return Ok(RequestBody::Streaming(Some(Prefixed {
                    prefix: Some(buf.freeze()),
                    rest: body,
                })));
            }
        }
        Ok(RequestBody::Buffered(buf.freeze()))
    }

    /// Whether the body can be sent again after a failed attempt.
    pub fn can_resend(&self) -> bool {
        matches!(self, RequestBody::Buffered(_))
    }

    /// The body for one attempt (after [`RequestBody::fill`]); `None` when a streamed body was
    /// sent already.
    pub fn take(&mut self) -> Option<ProxyBody> {
        match self {
            RequestBody::Buffered(b) => Some(full(b.clone())),
            RequestBody::Streaming(s) => s.take().map(|p| p.boxed()),
            RequestBody::Unread(_) => None,
        }
    }
}

/// What was read of a large body, then the rest of it.
pub struct Prefixed {
    prefix: Option<Bytes>,
    rest: ClientBody,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }
}

/// A machine's response body, holding the machine's load slot until it is sent or dropped.
pub struct Guarded {
    inner: Incoming,
    _slot: Option<Slot>,
}

impl Guarded {
    pub fn new(inner: Incoming, slot: Option<Slot>) -> Self {
        Self { inner, _slot: slot }
    }
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(|e| Box::new(e) as BoxError)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
