//! Bodies the proxy passes along: requests buffered (up to [`REPLAY_LIMIT`]) so they can be
//! retried and replayed, or streamed when larger; responses that hold their machine's load slot
//! until the last byte is sent.

use aloft_catalog::load::Slot;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Requests with bodies up to this size can be retried on another machine and replayed.
pub const REPLAY_LIMIT: usize = 1 << 20;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
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

/// A client's request body as far as the proxy read it.
pub enum RequestBody {
    /// All of it: can be sent any number of times.
    Buffered(Bytes),
    /// Larger than [`REPLAY_LIMIT`]: what was read, then the rest; can be sent once.
    Streaming(Option<Prefixed>),
}

impl RequestBody {
    /// Reads `body` whole if it fits in [`REPLAY_LIMIT`]; a body that says it is larger is not
    /// read at all.
    pub async fn read(mut body: Incoming) -> Result<RequestBody, BoxError> {
        if body.is_end_stream() {
            return Ok(RequestBody::Buffered(Bytes::new()));
        }
        if body.size_hint().lower() > REPLAY_LIMIT as u64 {
            return Ok(RequestBody::Streaming(Some(Prefixed {
                prefix: None,
                rest: body,
            })));
        }
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            // Trailers are not passed on.
            let Ok(data) = frame?.into_data() else {
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

    /// The body for one attempt; `None` when a streamed body was sent already.
    pub fn take(&mut self) -> Option<ProxyBody> {
        match self {
            RequestBody::Buffered(b) => Some(full(b.clone())),
            RequestBody::Streaming(s) => s.take().map(|p| p.boxed()),
        }
    }
}

/// What was read of a large body, then the rest of it.
pub struct Prefixed {
    prefix: Option<Bytes>,
    rest: Incoming,
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
        Pin::new(&mut self.rest)
            .poll_frame(cx)
            .map_err(|e| Box::new(e) as BoxError)
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
