//! The edge's memory against hostile clients: many idle connections, and requests and TLS
//! handshakes for made-up names, cost no lasting memory. Its own test binary, the tests one at a
//! time: the process's RSS is what they measure.

mod common;

use aloft_proxy::Listener;
use aloft_proxy::tls::{Certificates, DevCa};
use bytes::Bytes;
use common::{SLACK, config, start, with_hello};
use http_body_util::BodyExt;
use hyper::Request;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpStream;

/// One memory test at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The proxy's resident memory, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// The variable that makes [`idle_clients`] the client side of
/// [`ten_thousand_idle_connections_hold_flat_memory`]: `<proxy address> <connections>`.
const IDLE_CLIENTS: &str = "ALOFT_TEST_IDLE_CLIENTS";

/// The client side of [`ten_thousand_idle_connections_hold_flat_memory`], in a process of its own
/// (this test binary run again), so that the proxy's process holds only its ends of the
/// connections (and its file descriptors suffice): opens the connections, says `open`, and waits
/// for the proxy to close every one, saying `closed <n>`. Without the variable, does nothing.
#[tokio::test]
async fn idle_clients() {
    let Ok(spec) = std::env::var(IDLE_CLIENTS) else {
        return;
    };
    let (addr, n) = spec.split_once(' ').unwrap();
    let (addr, n): (std::net::SocketAddr, usize) = (addr.parse().unwrap(), n.parse().unwrap());
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(TcpStream::connect(addr).await.unwrap());
    }
    println!("\nidle-clients: open");
    let mut closed = 0;
    for mut s in conns {
        let mut buf = Vec::new();
        if tokio::io::AsyncReadExt::read_to_end(&mut s, &mut buf)
            .await
            .is_ok()
        {
            closed += 1;
        }
    }
    println!("\nidle-clients: closed {closed}");
}

/// The next thing [`idle_clients`] says (among the test harness's lines).
async fn said<R: tokio::io::AsyncBufRead + Unpin>(lines: &mut tokio::io::Lines<R>) -> String {
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(said) = line.strip_prefix("idle-clients: ") {
            return said.to_string();
        }
    }
    String::new()
}

/// 10,000 connections that send nothing cost the proxy a few KiB each while open, are all
/// closed by the first-bytes timeout, and leave its memory where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_hold_flat_memory() {
    const N: usize = 10_000;
    let _one = ONE_AT_A_TIME.lock().await;
    let first_bytes = Duration::from_secs(5);
    let mut c = config();
    c.protection.header_read_timeout = first_bytes;
    let r = start(c, Listener::http(80)).await;
    let clients = |n: usize| {
        tokio::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "idle_clients", "--nocapture", "--test-threads=1"])
            .env(IDLE_CLIENTS, format!("{} {n}", r.addr))
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    // One round, all closed: the runtime's and the allocator's high-water mark (memory freed
    // stays with the process); a second round must cost nothing more.
    for round in 0..2 {
        let before = rss();
        let mut child = clients(N);
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let opened = Instant::now();
        assert_eq!(said(&mut lines).await, "open");
        let during = rss();
        let per_conn = during.saturating_sub(before) / N as u64;
        assert!(
            per_conn < 24 << 10,
            "{per_conn} bytes per idle connection (RSS {before} -> {during})"
        );
        let within = first_bytes + opened.elapsed() + SLACK * 2;
        let closed = tokio::time::timeout(within, said(&mut lines))
            .await
            .expect("idle connections still open after the first-bytes timeout");
        assert_eq!(closed, format!("closed {N}"));
        assert!(child.wait().await.unwrap().success());
        let after = rss();
        if round == 1 {
            assert!(
                // A leak of every connection (about 56 MB) is caught; allocator noise on a
                // loaded machine is not a failure.
                after < before + (32 << 20),
                "RSS grew from {before} to {after} over 10,000 idle connections"
            );
        }
    }
}

/// A short random name.
fn random_name() -> String {
    (0..12).map(|_| fastrand::lowercase()).collect()
}

/// 20,000 requests for made-up apps and 2,000 TLS handshakes with made-up names leave no
/// metrics series and no certificates, and the proxy's memory where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_names_cost_no_lasting_memory() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let certificates = Arc::new(Certificates::new(
        DevCa::load_or_create(dir.path()).unwrap(),
        None,
        Arc::default(),
    ));
    let mut c = config();
    c.tls = Some(certificates.clone());
    let http = start(c.clone(), Listener::http(80)).await;
    with_hello(&http, false).await;
    let https = start(c, Listener::https(443)).await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let requests = |n: usize| {
        let client = client.clone();
        let addr = http.addr;
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            for lane in 0..8 {
                let client = client.clone();
                tasks.spawn(async move {
                    for _ in (lane..n).step_by(8) {
                        let req = Request::get(format!("http://{addr}/"))
                            .header("host", format!("{}.localhost", random_name()))
                            .body(http_body_util::Empty::new())
                            .unwrap();
                        let resp = client.request(req).await.unwrap();
                        assert_eq!(resp.status(), 404);
                        let _ = resp.into_body().collect().await;
                    }
                });
            }
            tasks.join_all().await;
        }
    };
    let handshakes = |n: usize| {
        let addr = https.addr;
        async move {
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate))
            .with_no_client_auth();
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            for _ in 0..n {
                let name = format!("{}.localhost", random_name());
                let name = rustls::pki_types::ServerName::try_from(name).unwrap();
                let tcp = TcpStream::connect(addr).await.unwrap();
                // No app is served as the name: no certificate, the handshake fails.
                let _ = connector.connect(name, tcp).await.expect_err("a handshake");
            }
        }
    };
    // Warm-up, and the metrics as they are with the app's one request.
    let hello = Request::get(format!("http://{}/", http.addr))
        .header("host", "hello.localhost")
        .body(http_body_util::Empty::new())
        .unwrap();
    assert_eq!(client.request(hello).await.unwrap().status(), 200);
    requests(500).await;
    handshakes(50).await;
    let metrics_before = http.proxy.metrics_text();
    let before = rss();

    requests(20_000).await;
    handshakes(2_000).await;

    let after = rss();
    assert!(
        after < before + (20 << 20),
        "RSS grew from {before} to {after} bytes"
    );
    let metrics_after = http.proxy.metrics_text();
    assert_eq!(
        metrics_after.lines().count(),
        metrics_before.lines().count(),
        "made-up names made metrics series:\n{metrics_after}"
    );
    assert!(
        metrics_after.contains("aloft_proxy_requests_total{app=\"-\",status=\"404\"}"),
        "{metrics_after}"
    );
    assert_eq!(certificates.minted_count(), 0, "certificates minted");
}

/// Trusts any certificate: the handshake, not the trust, is under test.
#[derive(Debug)]
struct AnyCertificate;

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
