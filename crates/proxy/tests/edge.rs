//! The edge against hostile clients: every idle phase of a connection is bounded (first bytes,
//! HTTP/2 preface, idle HTTP/2, stalled bodies, streams beyond the cap). Timeouts are short and
//! set by the test; every check allows generous slack, so a loaded machine does not fail it.

mod common;

use aloft_proxy::Listener;
use bytes::Bytes;
use common::{SLACK, closed_within, config, start, with_hello};
use http_body_util::BodyExt;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let r = start(config(), Listener::http(80)).await;
    let started = Instant::now();
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    closed_within(
        &mut s,
        Duration::from_millis(500) + SLACK,
        "silent connection",
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "closed early"
    );
}

#[tokio::test]
async fn a_partial_http2_preface_is_closed() {
    let r = start(config(), Listener::http(80)).await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    closed_within(
        &mut s,
        Duration::from_millis(500) + SLACK,
        "partial preface",
    )
    .await;
}

/// A client that makes one request over HTTP/2 and then sends nothing (answering pings, as
/// hyper's client does) is sent away once idle.
#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let r = start(config(), Listener::http(80)).await;
    with_hello(&r, false).await;
    let tcp = TcpStream::connect(r.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get("http://hello.localhost/")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await;
    let idle_from = Instant::now();
    tokio::time::timeout(Duration::from_millis(700) + SLACK, conn)
        .await
        .expect("the idle HTTP/2 connection is still open")
        .unwrap()
        .ok();
    assert!(
        idle_from.elapsed() >= Duration::from_millis(500),
        "closed early"
    );
}

/// A body that stops coming fails with 408 and the connection closes.
#[tokio::test]
async fn a_stalled_request_body_is_cut_off() {
    let r = start(config(), Listener::http(80)).await;
    with_hello(&r, false).await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(
        b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let out = closed_within(&mut s, Duration::from_millis(500) + SLACK, "stalled body").await;
    let resp = String::from_utf8_lossy(&out);
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
}

/// One HTTP/2 frame: length, type, flags, stream, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// Reads one frame: (type, flags, stream, payload).
async fn read_frame(s: &mut TcpStream) -> (u8, u8, u32, Vec<u8>) {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await.unwrap();
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).await.unwrap();
    (head[3], head[4], stream, payload)
}

/// Streams beyond the cap on one HTTP/2 connection are refused (`REFUSED_STREAM`), while the
/// ones within it wait for their (slow) machine.
#[tokio::test]
async fn http2_streams_beyond_the_cap_are_refused() {
    let mut c = config();
    c.protection.max_concurrent_streams = 2;
    c.queue_timeout = Duration::from_secs(30);
    let r = start(c, Listener::http(80)).await;
    with_hello(&r, true).await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    s.write_all(&frame(4, 0, 0, &[])).await.unwrap();
    // The server's settings, acknowledged.
    loop {
        let (kind, flags, _, _) = read_frame(&mut s).await;
        if kind == 4 && flags & 1 == 0 {
            break;
        }
    }
    s.write_all(&frame(4, 1, 0, &[])).await.unwrap();
    // GET / for hello.localhost: :method GET, :scheme http, :path / (static table), and
    // :authority as a literal without indexing.
    let mut block = vec![0x82, 0x86, 0x84, 0x01, 15];
    block.extend(b"hello.localhost");
    for stream in [1, 3, 5] {
        // END_STREAM | END_HEADERS
        s.write_all(&frame(1, 0x5, stream, &block)).await.unwrap();
    }
    let refused = tokio::time::timeout(SLACK, async {
        loop {
            let (kind, _, stream, payload) = read_frame(&mut s).await;
            if kind == 3 {
                return (stream, u32::from_be_bytes(payload[..4].try_into().unwrap()));
            }
        }
    })
    .await
    .expect("no stream was refused");
    assert_eq!(refused, (5, 7), "stream 5 refused with REFUSED_STREAM");
}

/// The metrics listener answers scrapes and closes a connection that sends nothing.
#[tokio::test]
async fn the_metrics_listener_is_bounded_too() {
    let r = start(config(), Listener::http(80)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proxy = r.proxy.clone();
    tokio::spawn(async move { proxy.serve_metrics(listener, std::future::pending()).await });
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let out = closed_within(&mut s, SLACK, "a scrape").await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("# TYPE aloft_proxy_requests_total counter"),
        "{text}"
    );
    let mut silent = TcpStream::connect(addr).await.unwrap();
    closed_within(&mut silent, Duration::from_millis(500) + SLACK, "silent").await;
}

/// The worker listener caps connections per address (its token is only checked per request).
#[tokio::test]
async fn the_worker_listener_caps_connections_per_address() {
    let mut c = config();
    c.protection.worker_max_connections = 2;
    c.protection.header_read_timeout = Duration::from_secs(30);
    let r = start(c, Listener::worker()).await;
    let _a = TcpStream::connect(r.addr).await.unwrap();
    let _b = TcpStream::connect(r.addr).await.unwrap();
    let mut third = TcpStream::connect(r.addr).await.unwrap();
    let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let out = closed_within(&mut third, SLACK, "a third connection").await;
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
}

/// A client that stops answering the proxy's HTTP/2 pings (a dead peer, or one holding the
/// connection open on purpose) is dropped even while its request is still in flight.
#[tokio::test]
async fn an_http2_client_that_does_not_answer_pings_is_dropped() {
    let mut c = config();
    c.queue_timeout = Duration::from_secs(30);
    c.protection.idle_timeout = Duration::from_secs(30);
    c.protection.h2_keep_alive_interval = Duration::from_millis(300);
    c.protection.h2_keep_alive_timeout = Duration::from_millis(300);
    let r = start(c, Listener::http(80)).await;
    with_hello(&r, true).await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    s.write_all(&frame(4, 0, 0, &[])).await.unwrap();
    loop {
        let (kind, flags, _, _) = read_frame(&mut s).await;
        if kind == 4 && flags & 1 == 0 {
            break;
        }
    }
    s.write_all(&frame(4, 1, 0, &[])).await.unwrap();
    let mut block = vec![0x82, 0x86, 0x84, 0x01, 15];
    block.extend(b"hello.localhost");
    s.write_all(&frame(1, 0x5, 1, &block)).await.unwrap();
    // Read (and never acknowledge) until the proxy closes the connection.
    let sent_at = Instant::now();
    let pinged = tokio::time::timeout(Duration::from_millis(600) + SLACK * 2, async {
        let mut pinged = false;
        let mut head = [0u8; 9];
        while s.read_exact(&mut head).await.is_ok() {
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0; len];
            if s.read_exact(&mut payload).await.is_err() {
                break;
            }
            pinged |= head[3] == 6 && head[4] & 1 == 0;
        }
        pinged
    })
    .await
    .expect("a client that never answered a ping is still connected");
    assert!(pinged, "the proxy never pinged");
    assert!(
        sent_at.elapsed() >= Duration::from_millis(300),
        "closed before any ping could go unanswered"
    );
}
