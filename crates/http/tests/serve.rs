//! The API servers' bounds (`aloft_http::serve`): connections that send nothing, idle
//! keep-alive connections and stalled bodies are closed within their (short, test-set) bounds,
//! connections beyond the cap are closed at once, and a response that streams for longer than
//! every bound still arrives whole. Checks allow generous slack for a loaded machine.

use aloft_http::conn::Bounds;
use aloft_http::serve::{Limits, serve};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::{get, post};
use http_body::Frame;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const SLACK: Duration = Duration::from_secs(5);

/// A body of whatever comes down a channel.
struct Channel(mpsc::Receiver<Bytes>);

impl http_body::Body for Channel {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// `GET /stream`: ten pieces, 300 ms apart (3 s, longer than every bound).
fn stream() -> Body {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        for i in 0..10 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = tx.send(Bytes::from(format!("{i}\n"))).await;
        }
    });
    Body::new(Channel(rx))
}

async fn server(max_connections: usize, first_bytes: Duration) -> SocketAddr {
    let router = Router::new()
        .route("/", get(|| async { "ok\n" }))
        .route("/stream", get(|| async { stream() }))
        .route("/echo", post(|body: Bytes| async move { body }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = Limits {
        max_connections,
        bounds: Bounds {
            first_bytes,
            idle: Duration::from_millis(700),
            body_idle: Duration::from_millis(500),
        },
    };
    tokio::spawn(serve(listener, router, limits, std::future::pending()));
    addr
}

/// Reads until the server closes `s` (what it read), or panics after `within`.
async fn closed_within(s: &mut TcpStream, within: Duration, what: &str) -> String {
    let mut out = Vec::new();
    match tokio::time::timeout(within, s.read_to_end(&mut out)).await {
        Ok(_) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => panic!("{what}: still open after {within:?}"),
    }
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let addr = server(16, Duration::from_millis(500)).await;
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    closed_within(&mut s, Duration::from_millis(500) + SLACK, "silent").await;
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "closed early"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let addr = server(16, Duration::from_millis(500)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let out = closed_within(&mut s, Duration::from_millis(700) + SLACK, "idle").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[tokio::test]
async fn a_stalled_body_is_cut_off() {
    let addr = server(16, Duration::from_millis(500)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let out = closed_within(&mut s, Duration::from_millis(500) + SLACK, "stalled body").await;
    assert!(!out.starts_with("HTTP/1.1 200"), "{out}");
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once() {
    let addr = server(2, Duration::from_secs(30)).await;
    let _a = TcpStream::connect(addr).await.unwrap();
    let _b = TcpStream::connect(addr).await.unwrap();
    let mut c = TcpStream::connect(addr).await.unwrap();
    let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let out = closed_within(&mut c, SLACK, "over the cap").await;
    assert!(out.is_empty(), "{out}");
}

/// A response that streams for longer than every bound (first bytes, idle, body) is not cut.
#[tokio::test]
async fn a_long_streamed_response_is_not_cut() {
    let addr = server(16, Duration::from_millis(500)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let out = closed_within(&mut s, Duration::from_secs(3) + SLACK, "stream").await;
    assert!(out.contains("\r\n9\n") || out.contains("9\n\r\n"), "{out}");
}
