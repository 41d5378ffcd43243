//! Streaming in both directions, so a layer of any size never sits in memory: [`FileBody`] sends
//! part of a file as an HTTP body (to clients, and to the upstream of a cache), and
//! [`ChunkSource`] reads an incoming body (a client's upload, an upstream's answer) chunk by chunk.

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, ReadBuf};

/// How much is read from disk per frame.
const READ_CHUNK: usize = 256 * 1024;

/// `len` bytes of an open file, from its current position, as an HTTP body.
pub(crate) struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
}

impl FileBody {
    pub(crate) fn new(file: tokio::fs::File, len: u64) -> FileBody {
        FileBody {
            file,
            remaining: len,
        }
    }
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(self.remaining).map_or(READ_CHUNK, |r| r.min(READ_CHUNK));
        let mut chunk = vec![0u8; want];
        let mut buf = ReadBuf::new(&mut chunk);
        ready!(Pin::new(&mut self.file).poll_read(cx, &mut buf))?;
        let n = buf.filled().len();
        if n == 0 {
            return Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the blob file is shorter than its recorded size",
            ))));
        }
        chunk.truncate(n);
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// A body read chunk by chunk; `Ok(None)` is its end. Errors are the transport's, as text.
pub(crate) trait ChunkSource: Send {
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, String>> + Send;
}

impl ChunkSource for axum::body::Body {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            match self.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                    // Trailers carry nothing we store.
                }
            }
        }
    }
}

impl ChunkSource for reqwest::Response {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, String> {
        self.chunk().await.map_err(|e| e.to_string())
    }
}
