//! The proxy against real HTTP servers on loopback standing in for machines, and raw TCP clients
//! (so requests can be malformed, slow or oversized). The catalog is a fixed table: its subject
//! is elsewhere.

use aloft_catalog::{Catalog, Limits, PortHandlers, PublicPort, Target};
use aloft_proxy::clients::ClientLimits;
use aloft_proxy::tls::{self, Certificates, DevCa, DomainEntry, Domains};
use aloft_proxy::{Listener, Protection, Proxy, ProxyConfig};
use aloft_types::MachineState;
use aloft_types::config::Autostop;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};

/// Apps and their machines, as a test sets them. Starting a machine marks it started after
/// `start_delay` (never answering, with `None`); stopping marks it stopped at once. Both are
/// counted.
struct Table {
    apps: Mutex<HashMap<String, Vec<Target>>>,
    ports: Mutex<Vec<PublicPort>>,
    start_delay: Mutex<Option<Duration>>,
    starts: AtomicU32,
    stops: Mutex<Vec<String>>,
    /// Round-trip times to regions, as a catalog would measure them.
    rtts: Mutex<HashMap<String, Duration>>,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            apps: Mutex::default(),
            ports: Mutex::default(),
            start_delay: Mutex::new(Some(Duration::ZERO)),
            starts: AtomicU32::new(0),
            stops: Mutex::default(),
            rtts: Mutex::default(),
        }
    }
}

impl Table {
    fn set_state(&self, id: &str, state: MachineState) {
        for t in self.apps.lock().values_mut().flatten() {
            if t.machine_id == id {
                t.state = state;
                t.routable = state == MachineState::Started;
            }
        }
    }
}

#[async_trait::async_trait]
impl Catalog for Table {
    fn targets(&self, app: &str, _port: u16) -> Option<Arc<Vec<Target>>> {
        self.apps.lock().get(app).cloned().map(Arc::new)
    }

    fn ports(&self) -> Vec<PublicPort> {
        self.ports.lock().clone()
    }

    fn all_targets(&self) -> Vec<Target> {
        self.apps.lock().values().flatten().cloned().collect()
    }

    async fn start(&self, target: &Target) -> Result<(), String> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        let delay = *self.start_delay.lock();
        let Some(delay) = delay else {
            // A start that never ends (the agent stuck on the machine).
            return std::future::pending().await;
        };
        tokio::time::sleep(delay).await;
        self.set_state(&target.machine_id, MachineState::Started);
        Ok(())
    }

    fn rtt(&self, region: &str) -> Option<Duration> {
        self.rtts.lock().get(region).copied()
    }

    async fn stop(&self, target: &Target, _suspend: bool) -> Result<(), String> {
        self.stops.lock().push(target.machine_id.clone());
        self.set_state(&target.machine_id, MachineState::Stopped);
        Ok(())
    }
}

fn target(id: &str, region: &str, addr: SocketAddr, soft: u32, hard: u32) -> Target {
    Target {
        machine_id: id.into(),
        app: "hello".into(),
        region: region.into(),
        address: addr.ip(),
        port: addr.port(),
        network: None,
        limits: Limits {
            soft,
            hard,
            ..Limits::default()
        },
        via: None,
        load: 0,
        state: MachineState::Started,
        routable: true,
        autostart: true,
        autostop: Autostop::Off,
        min_machines_running: 0,
        primary_region: "local".into(),
        force_https: false,
        handlers: PortHandlers {
            http: true,
            ..PortHandlers::default()
        },
    }
}

fn stopped(mut t: Target) -> Target {
    t.state = MachineState::Stopped;
    t.routable = false;
    t
}

type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>
        + Send
        + Sync,
>;

/// An HTTP/1.1 server on loopback answering with `handler`.
async fn backend(handler: Handler) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// A machine that answers `name`, every request header (`k: v` lines) and the request body.
async fn echo(name: &'static str) -> SocketAddr {
    backend(Arc::new(move |req: Request<Incoming>| {
        Box::pin(async move {
            let mut text = format!("machine: {name}\n");
            for (k, v) in req.headers() {
                text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
            }
            let body = req.into_body().collect().await.unwrap().to_bytes();
            text.push_str(&format!("body-len: {}\n", body.len()));
            Response::new(Full::new(Bytes::from(text)))
        })
    }))
    .await
}

/// A machine that answers with the given headers (and its name) and an empty body.
async fn answering(
    name: &'static str,
    headers: &'static [(&'static str, &'static str)],
) -> SocketAddr {
    backend(Arc::new(move |req: Request<Incoming>| {
        Box::pin(async move {
            let _ = req.into_body().collect().await;
            let mut resp = Response::new(Full::new(Bytes::from(format!("machine: {name}\n"))));
            for (k, v) in headers {
                resp.headers_mut().insert(*k, v.parse().unwrap());
            }
            resp
        })
    }))
    .await
}

struct Running {
    addr: SocketAddr,
    proxy: Proxy,
    table: Arc<Table>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    fn set(&self, app: &str, targets: Vec<Target>) {
        self.table.apps.lock().insert(app.into(), targets);
    }

    /// Stops accepting and waits until requests in flight are done.
    async fn shutdown(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.done.take().unwrap().await.unwrap();
    }
}

async fn proxy_with(config: ProxyConfig) -> Running {
    proxy_at(config, Listener::http(80)).await
}

async fn proxy_at(config: ProxyConfig, at: Listener) -> Running {
    let table = Arc::new(Table::default());
    let proxy = Proxy::new(config, table.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let p = proxy.clone();
    let done = tokio::spawn(async move {
        p.serve(listener, at, async {
            let _ = stopped.await;
        })
        .await;
    });
    Running {
        addr,
        proxy,
        table,
        stop: Some(stop),
        done: Some(done),
    }
}

fn config() -> ProxyConfig {
    let mut c = ProxyConfig::new("local");
    c.queue_timeout = Duration::from_millis(300);
    c.protection.header_read_timeout = Duration::from_millis(500);
    c
}

async fn proxy() -> Running {
    proxy_with(config()).await
}

/// Sends raw bytes and reads until the proxy closes the connection.
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET path` for `host`, with extra header lines, on a connection of its own.
async fn get(addr: SocketAddr, host: &str, extra: &str) -> String {
    raw(
        addr,
        format!("GET /hi?x=1 HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
}

fn status(resp: &str) -> u16 {
    resp.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    resp.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn requests_reach_the_app_with_forwarding_headers_clients_cannot_spoof() {
    let p = proxy().await;
    let m = echo("m1").await;
    p.set("hello", vec![target("m1", "local", m, 20, 25)]);
    let resp = get(
        p.addr,
        "Hello.localhost:8080",
        "Fly-Client-IP: 6.6.6.6\r\nX-Forwarded-For: 1.2.3.4\r\nVia: 1.1 corp\r\nKeep-Alive: timeout=5\r\n",
    )
    .await;
    assert_eq!(status(&resp), 200, "{resp}");
    let body = resp.split("\r\n\r\n").nth(1).unwrap();
    assert!(body.contains("machine: m1"), "{body}");
    for line in [
        "fly-client-ip: 127.0.0.1",
        "x-forwarded-for: 1.2.3.4, 127.0.0.1",
        "x-forwarded-proto: http",
        "x-forwarded-port: 80",
        "x-forwarded-ssl: off",
        "fly-forwarded-port: 80",
        "fly-region: local",
        "via: 1.1 corp, 1.1 aloft",
        "host: Hello.localhost:8080",
    ] {
        assert!(body.contains(line), "missing `{line}`:\n{body}");
    }
    assert!(
        !body.contains("6.6.6.6") && !body.contains("keep-alive"),
        "{body}"
    );
    let id = header(&resp, "fly-request-id").unwrap();
    assert!(id.ends_with("-local") && id.len() == 26 + 6, "{id}");
    assert!(body.contains(&format!("fly-request-id: {id}")), "{body}");
    assert_eq!(header(&resp, "server"), Some("aloft"));
    assert_eq!(header(&resp, "via"), Some("1.1 aloft"));
}

#[tokio::test]
async fn unknown_hosts_and_apps_without_machines_say_what_is_wrong() {
    let p = proxy().await;
    let resp = get(p.addr, "example.com", "").await;
    assert_eq!(status(&resp), 404, "{resp}");
    assert!(resp.contains("<app>.localhost"), "{resp}");
    let resp = get(p.addr, "nope.localhost", "").await;
    assert_eq!(status(&resp), 404, "{resp}");
    assert!(resp.contains("no app `nope`"), "{resp}");

    let mut cordoned = target("m1", "local", "127.0.0.1:9".parse().unwrap(), 20, 25);
    cordoned.routable = false;
    p.set("hello", vec![cordoned]);
    let resp = get(p.addr, "hello.localhost", "").await;
    assert_eq!(status(&resp), 503, "{resp}");
    assert!(
        resp.contains("(PR01)") && resp.contains("aloft machine start"),
        "{resp}"
    );
    assert_eq!(header(&resp, "aloft-error-code"), Some("PR01"));
}

#[tokio::test]
async fn a_refused_connection_is_retried_on_another_machine() {
    let p = proxy().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let alive = echo("alive").await;
    p.set(
        "hello",
        vec![
            target("dead", "local", dead, 20, 25),
            target("alive", "local", alive, 20, 25),
        ],
    );
    for _ in 0..10 {
        let resp = raw(
            p.addr,
            b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        )
        .await;
        assert_eq!(status(&resp), 200, "{resp}");
        assert!(
            resp.contains("machine: alive") && resp.contains("body-len: 5"),
            "{resp}"
        );
    }
    p.set("hello", vec![target("dead", "local", dead, 20, 25)]);
    let resp = get(p.addr, "hello.localhost", "").await;
    assert_eq!(status(&resp), 502, "{resp}");
    assert!(resp.contains("(PC01)"), "{resp}");
}

/// A machine that holds every request until the test releases it.
async fn holding(name: &'static str, gate: Arc<Semaphore>) -> SocketAddr {
    backend(Arc::new(move |_req: Request<Incoming>| {
        let gate = gate.clone();
        Box::pin(async move {
            gate.acquire().await.unwrap().forget();
            Response::new(Full::new(Bytes::from(format!("machine: {name}\n"))))
        })
    }))
    .await
}

#[tokio::test]
async fn hard_limits_spread_requests_then_queue_then_refuse() {
    let p = proxy().await;
    let gate = Arc::new(Semaphore::new(0));
    let a = holding("a", gate.clone()).await;
    let b = holding("b", gate.clone()).await;
    p.set(
        "hello",
        vec![target("a", "local", a, 1, 1), target("b", "local", b, 1, 1)],
    );
    let first = tokio::spawn(get(p.addr, "hello.localhost", ""));
    let second = tokio::spawn(get(p.addr, "hello.localhost", ""));
    // Both machines are busy: the third waits for the queue timeout, then gets 503 PR04.
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.proxy.load().current("a") + p.proxy.load().current("b") < 2 {
        assert!(Instant::now() < deadline, "the two requests never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t0 = Instant::now();
    let third = get(p.addr, "hello.localhost", "").await;
    assert_eq!(status(&third), 503, "{third}");
    assert!(third.contains("(PR04)"), "{third}");
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "it queued first"
    );

    // A queued request takes the first slot given back.
    let queued = tokio::spawn(get(p.addr, "hello.localhost", ""));
    tokio::time::sleep(Duration::from_millis(50)).await;
    gate.add_permits(3);
    let answers = [
        first.await.unwrap(),
        second.await.unwrap(),
        queued.await.unwrap(),
    ];
    let machines: Vec<bool> = answers.iter().map(|r| r.contains("machine: a")).collect();
    assert!(answers.iter().all(|r| status(r) == 200), "{answers:?}");
    assert!(
        machines[0] != machines[1],
        "one on each machine: {answers:?}"
    );
    assert_eq!(p.proxy.load().current("a") + p.proxy.load().current("b"), 0);
}

/// `fly-replay: app=` stays inside the replaying machine's org: another org's app is refused
/// (PR05) and never sees the request; an app of the same org gets it.
#[tokio::test]
async fn fly_replay_to_an_app_of_another_org_is_refused() {
    let p = proxy().await;
    let a = answering("a", &[("fly-replay", "app=billing")]).await;
    let theirs = echo("theirs").await;
    let in_network = |network: u32, t: Target| Target {
        network: Some(network),
        ..t
    };
    let billing = |network: u32| Target {
        app: "billing".into(),
        ..in_network(network, target("theirs", "local", theirs, 20, 25))
    };
    p.set(
        "hello",
        vec![in_network(1, target("a", "local", a, 20, 25))],
    );
    let get = b"GET / HTTP/1.1\r\nHost: hello.localhost\r\nConnection: close\r\n\r\n";

    p.set("billing", vec![billing(2)]);
    let resp = raw(p.addr, get).await;
    assert_eq!(status(&resp), 403, "{resp}");
    assert!(
        resp.contains("(PR05)") && resp.contains("not in its org"),
        "{resp}"
    );
    assert!(!resp.contains("machine: theirs"), "{resp}");

    p.set("billing", vec![billing(1)]);
    let resp = raw(p.addr, get).await;
    assert_eq!(status(&resp), 200, "{resp}");
    assert!(resp.contains("machine: theirs"), "{resp}");
}

#[tokio::test]
async fn fly_replay_sends_the_request_on_with_its_body_and_source() {
    let p = proxy().await;
    let a = answering("a", &[("fly-replay", "instance=b;state=cart-7")]).await;
    let b = echo("b").await;
    p.set(
        "hello",
        vec![
            target("a", "local", a, 20, 25),
            target("b", "local", b, 20, 25),
        ],
    );
    let resp = raw(
        p.addr,
        b"POST /pay HTTP/1.1\r\nHost: hello.localhost\r\nFly-Force-Instance-Id: a\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world",
    )
    .await;
    assert_eq!(status(&resp), 200, "{resp}");
    assert!(
        resp.contains("machine: b") && resp.contains("body-len: 11"),
        "{resp}"
    );
    let src = resp
        .lines()
        .find_map(|l| l.strip_prefix("fly-replay-src: "))
        .expect("fly-replay-src");
    assert!(
        src.starts_with("instance=a;region=local;t=") && src.ends_with(";state=cart-7"),
        "{src}"
    );
    assert!(
        !resp.contains("fly-replay: "),
        "the replaying response is dropped: {resp}"
    );
}

#[tokio::test]
async fn a_replay_to_a_region_without_machines_falls_back_to_the_sender_when_asked() {
    let p = proxy().await;
    // `a` bounces requests that were not replayed yet; replayed ones it serves.
    let a = backend(Arc::new(|req: Request<Incoming>| {
        Box::pin(async move {
            let mut resp = Response::new(Full::new(Bytes::from("machine: a\n")));
            if !req.headers().contains_key("fly-replay-src") {
                resp.headers_mut().insert(
                    "fly-replay",
                    "region=ams;timeout=200ms;fallback=prefer_self"
                        .parse()
                        .unwrap(),
                );
            }
            resp
        })
    }))
    .await;
    p.set("hello", vec![target("a", "local", a, 20, 25)]);
    let resp = get(p.addr, "hello.localhost", "").await;
    assert_eq!(status(&resp), 200, "{resp}");
    assert!(resp.contains("machine: a"), "{resp}");

    // Without a fallback: no machine in ams.
    let a = answering("a", &[("fly-replay", "region=ams;timeout=100ms")]).await;
    p.set("hello", vec![target("a", "local", a, 20, 25)]);
    let resp = get(p.addr, "hello.localhost", "").await;
    assert_eq!(status(&resp), 503, "{resp}");
    assert!(
        resp.contains("in region ams") && resp.contains("(PR01)"),
        "{resp}"
    );
}

#[tokio::test]
async fn bad_replays_are_errors_with_their_codes() {
    let p = proxy().await;
    let bad = answering("bad", &[("fly-replay", "colour=blue")]).await;
    p.set("hello", vec![target("bad", "local", bad, 20, 25)]);
    let resp = get(p.addr, "hello.localhost", "").await;
    assert_eq!(status(&resp), 502, "{resp}");
    assert!(
        resp.contains("invalid fly-replay") && resp.contains("(PA03)"),
        "{resp}"
    );

    // Two machines sending each other the request: a loop, stopped.
    let a = answering("a", &[("fly-replay", "elsewhere=true")]).await;
    let b = answering("b", &[("fly-replay", "elsewhere=true")]).await;
    p.set(
        "hello",
        vec![
            target("a", "local", a, 20, 25),
            target("b", "local", b, 20, 25),
        ],
    );
    let resp = get(p.addr, "hello.localhost", "").await;
    assert_eq!(status(&resp), 508, "{resp}");
    assert!(resp.contains("loop"), "{resp}");

    // A body over 1 MB cannot be replayed.
    let a = answering("a", &[("fly-replay", "elsewhere=true")]).await;
    let b = echo("b").await;
    p.set(
        "hello",
        vec![
            target("a", "local", a, 20, 25),
            target("b", "local", b, 20, 25),
        ],
    );
    let big = vec![b'x'; (1 << 20) + 10];
    let mut req = format!(
        "POST / HTTP/1.1\r\nHost: hello.localhost\r\nFly-Force-Instance-Id: a\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        big.len()
    )
    .into_bytes();
    req.extend_from_slice(&big);
    let resp = raw(p.addr, &req).await;
    assert_eq!(status(&resp), 502, "{resp}");
    assert!(resp.contains("(PA01)"), "{resp}");
}

#[tokio::test]
async fn malformed_oversized_and_slow_requests_are_refused() {
    let p = proxy().await;
    let m = echo("m1").await;
    p.set("hello", vec![target("m1", "local", m, 20, 25)]);
    let resp = raw(p.addr, b"GARBAGE\r\n\r\n").await;
    assert_eq!(status(&resp), 400, "{resp}");

    let huge = format!(
        "GET / HTTP/1.1\r\nHost: hello.localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 << 10)
    );
    let resp = raw(p.addr, huge.as_bytes()).await;
    assert_eq!(status(&resp), 431, "{resp}");
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let resp = raw(
        p.addr,
        format!("GET / HTTP/1.1\r\nHost: hello.localhost\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status(&resp), 431, "{resp}");

    // Slowloris: headers never finished; the proxy hangs up after the header read timeout.
    let t0 = Instant::now();
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: hello.localhost\r\nX-Slow: ")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("the proxy closes a slow client's connection")
        .unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );

    // A keep-alive connection left idle after a request is closed too.
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("the proxy closes an idle connection")
        .unwrap();
    assert_eq!(status(&String::from_utf8_lossy(&out)), 200);

    // The proxy is fine afterwards.
    assert_eq!(status(&get(p.addr, "hello.localhost", "").await), 200);
}

#[tokio::test]
async fn a_machine_that_resets_mid_response_frees_its_slot() {
    let p = proxy().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bad = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
                .await;
            drop(s);
        }
    });
    p.set("hello", vec![target("bad", "local", bad, 20, 25)]);
    let resp = get(p.addr, "hello.localhost", "").await;
    assert!(
        resp.contains("partial") && !resp.contains(&"x".repeat(10)),
        "{resp}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(p.proxy.load().current("bad"), 0);
    let good = echo("good").await;
    p.set("hello", vec![target("good", "local", good, 20, 25)]);
    assert_eq!(status(&get(p.addr, "hello.localhost", "").await), 200);
}

#[tokio::test]
async fn websocket_upgrades_pass_through() {
    let p = proxy().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).to_lowercase();
                assert!(
                    req.contains("upgrade: websocket") && req.contains("connection: upgrade"),
                    "{req}"
                );
                s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
                    .await
                    .unwrap();
                loop {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    s.write_all(&buf[..n]).await.unwrap();
                }
            });
        }
    });
    p.set("hello", vec![target("ws", "local", ws, 20, 25)]);
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /chat HTTP/1.1\r\nHost: hello.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping").await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"ping");
    assert_eq!(
        p.proxy.load().current("ws"),
        1,
        "an open upgraded connection counts"
    );
    drop(s);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(p.proxy.load().current("ws"), 0);
}

/// A machine that answers an upgrade with `101`, then echoes what it reads.
async fn ws_machine() -> SocketAddr {
    serve_each(|mut s| async move {
        let mut buf = vec![0u8; 4096];
        if s.read(&mut buf).await.unwrap_or(0) == 0 {
            return;
        }
        let head = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        if s.write_all(head).await.is_err() {
            return;
        }
        echo_rest(s).await;
    })
    .await
}

/// Writes back what `s` reads until it closes.
async fn echo_rest(mut s: TcpStream) {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.unwrap_or(0);
        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Sends `data` on `s` and reads the echo of it.
async fn echoed(s: &mut TcpStream, data: &[u8]) {
    s.write_all(data).await.unwrap();
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(back, data);
}

/// How long a tunnel stays open once its peers go silent: its end (EOF or a reset).
async fn closed_after(mut s: TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 64];
    match tokio::time::timeout(within, s.read(&mut buf)).await {
        Ok(Ok(0) | Err(_)) => started.elapsed(),
        Ok(Ok(n)) => panic!("{n} bytes from a silent tunnel"),
        Err(_) => panic!("a silent tunnel still open after {within:?}"),
    }
}

/// Tunnels whose peers go silent (an upgraded WebSocket connection, a connection to a TCP port)
/// are closed after the tunnel idle timeout, freeing their machines' slots; tunnels that keep
/// sending stay open well past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tunnels_are_closed_after_the_idle_timeout_and_busy_ones_stay_open() {
    const IDLE: Duration = Duration::from_secs(1);
    let mut c = config();
    c.protection.tunnel_idle_timeout = IDLE;
    let p = proxy_with(c).await;
    p.set(
        "hello",
        vec![target("ws", "local", ws_machine().await, 20, 25)],
    );
    let echo_machine = serve_each(echo_rest).await;
    p.set(
        "db",
        vec![tcp_target("m2", echo_machine, PortHandlers::default())],
    );
    let port = closed_addr().port();
    p.serve_ports(port, PortHandlers::default());

    let ws = |addr| async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /chat HTTP/1.1\r\nHost: hello.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        echoed(&mut s, b"hi").await;
        s
    };
    let tcp = || async {
        let mut s = connect_eventually(port).await;
        echoed(&mut s, b"hi").await;
        s
    };
    let (silent_ws, mut busy_ws) = (ws(p.addr).await, ws(p.addr).await);
    let (silent_tcp, mut busy_tcp) = (tcp().await, tcp().await);
    assert_eq!(p.proxy.load().current("ws"), 2);
    assert_eq!(p.proxy.load().current("m2"), 2);

    let busy = tokio::spawn(async move {
        for _ in 0..10 {
            tokio::time::sleep(IDLE / 4).await;
            echoed(&mut busy_ws, b"ping").await;
            echoed(&mut busy_tcp, b"ping").await;
        }
        (busy_ws, busy_tcp)
    });
    let within = IDLE + Duration::from_millis(1500);
    let (ws_closed, tcp_closed) = tokio::join!(
        closed_after(silent_ws, within),
        closed_after(silent_tcp, within)
    );
    for closed in [ws_closed, tcp_closed] {
        assert!(closed >= IDLE - IDLE / 4, "closed after {closed:?}");
    }
    // The busy ones outlived the timeout two times over, and are still open.
    let (mut busy_ws, mut busy_tcp) = busy.await.unwrap();
    echoed(&mut busy_ws, b"still").await;
    echoed(&mut busy_tcp, b"still").await;
    assert_eq!(p.proxy.load().current("ws"), 1, "the silent one's slot");
    assert_eq!(p.proxy.load().current("m2"), 1, "the silent one's slot");
}

#[tokio::test]
async fn too_many_connections_from_one_client_are_closed() {
    let mut c = config();
    c.protection = Protection {
        clients: ClientLimits {
            max_connections: 2,
            requests_per_second: 0,
        },
        ..c.protection
    };
    let p = proxy_with(c).await;
    let m = echo("m1").await;
    p.set("hello", vec![target("m1", "local", m, 20, 25)]);
    let _a = TcpStream::connect(p.addr).await.unwrap();
    let _b = TcpStream::connect(p.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let resp = get(p.addr, "hello.localhost", "").await;
    assert_eq!(resp, "", "the third connection is closed at once");
    drop(_a);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(status(&get(p.addr, "hello.localhost", "").await), 200);
}

#[tokio::test]
async fn stopping_lets_requests_in_flight_finish() {
    let mut p = proxy().await;
    let gate = Arc::new(Semaphore::new(0));
    let m = holding("m1", gate.clone()).await;
    p.set("hello", vec![target("m1", "local", m, 20, 25)]);
    let in_flight = tokio::spawn(get(p.addr, "hello.localhost", ""));
    while p.proxy.load().current("m1") == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let addr = p.addr;
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        gate.add_permits(1);
    });
    p.shutdown().await;
    release.await.unwrap();
    let resp = in_flight.await.unwrap();
    assert_eq!(status(&resp), 200, "{resp}");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn a_request_for_a_stopped_app_starts_a_machine_and_waits_for_it() {
    let p = proxy().await;
    *p.table.start_delay.lock() = Some(Duration::from_millis(300));
    let m = echo("sleepy").await;
    p.set("hello", vec![stopped(target("sleepy", "local", m, 20, 25))]);
    let t0 = Instant::now();
    let answers: Vec<String> = futures_join(
        (0..3)
            .map(|_| tokio::spawn(get(p.addr, "hello.localhost", "")))
            .collect(),
    )
    .await;
    for resp in &answers {
        assert_eq!(status(resp), 200, "{resp}");
        assert!(resp.contains("machine: sleepy"), "{resp}");
    }
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "held until started"
    );
    assert_eq!(
        p.table.starts.load(Ordering::SeqCst),
        1,
        "one start for three requests"
    );

    // Stopped again (autostop, or by hand) soon after: the next request starts it again.
    p.table.set_state("sleepy", MachineState::Stopped);
    let resp = get(p.addr, "hello.localhost", "").await;
    assert_eq!(status(&resp), 200, "{resp}");
    assert_eq!(p.table.starts.load(Ordering::SeqCst), 2);

    // A machine with autostart off stays stopped: PR01.
    let mut off = stopped(target("off", "local", m, 20, 25));
    off.autostart = false;
    p.set("hello", vec![off]);
    let resp = get(p.addr, "hello.localhost", "").await;
    assert_eq!(status(&resp), 503, "{resp}");
    assert!(resp.contains("(PR01)"), "{resp}");
}

#[tokio::test]
async fn a_machine_that_never_starts_is_a_wake_timeout() {
    let mut c = config();
    c.wake_timeout = Duration::from_millis(300);
    let p = proxy_with(c).await;
    *p.table.start_delay.lock() = None;
    p.set(
        "hello",
        vec![stopped(target(
            "stuck",
            "local",
            "127.0.0.1:9".parse().unwrap(),
            20,
            25,
        ))],
    );
    let resp = get(p.addr, "hello.localhost", "").await;
    assert_eq!(status(&resp), 503, "{resp}");
    assert!(
        resp.contains("(PM03)") && resp.contains("did not start"),
        "{resp}"
    );
}

#[tokio::test]
async fn a_woken_machine_that_does_not_listen_yet_is_retried() {
    let p = proxy().await;
    // The machine is "started" at once but its server listens only 300 ms later.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    p.set(
        "hello",
        vec![stopped(target("slow", "local", port, 20, 25))],
    );
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let listener = TcpListener::bind(port).await.unwrap();
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nready")
            .await
            .unwrap();
    });
    let resp = get(p.addr, "hello.localhost", "").await;
    assert_eq!(status(&resp), 200, "{resp}");
    assert!(resp.ends_with("ready"), "{resp}");
}

#[tokio::test]
async fn autostop_stops_idle_machines_one_at_a_time_but_never_a_busy_one() {
    let p = proxy().await;
    let m = echo("m").await;
    let targets: Vec<Target> = ["a", "b", "c"]
        .into_iter()
        .map(|id| {
            let mut t = target(id, "local", m, 20, 25);
            t.autostop = Autostop::Stop;
            t
        })
        .collect();
    // `c` is busy: a request (or an upgraded connection) is in flight on it.
    p.set("hello", targets);
    let _busy = p.proxy.load().try_acquire("c", 25).unwrap();
    let proxy = p.proxy.clone();
    let (stop, stopped_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        proxy
            .autostop(Duration::from_millis(100), async {
                let _ = stopped_rx.await;
            })
            .await;
    });
    tokio::time::sleep(Duration::from_millis(550)).await;
    let _ = stop.send(());
    task.await.unwrap();
    let stops = p.table.stops.lock().clone();
    // a and b are idle: one per round; c, alone then, is busy and keeps running.
    assert_eq!(stops, ["a", "b"], "{stops:?}");
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<String>>) -> Vec<String> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// A proxy on an HTTPS listener (public port 443) with a dev CA in `dir`.
async fn https_proxy(dir: &std::path::Path) -> Running {
    https_proxy_with(dir, Arc::default()).await
}

async fn https_proxy_with(dir: &std::path::Path, domains: Arc<Domains>) -> Running {
    let ca = DevCa::load_or_create(dir).unwrap();
    let mut c = config();
    c.domains = domains.clone();
    c.tls = Some(Arc::new(Certificates::new(ca, None, domains)));
    proxy_at(c, Listener::https(443)).await
}

/// A TLS client trusting the CA in `ca_pem`, offering `alpn`.
async fn tls_connect(
    addr: SocketAddr,
    ca_pem: &std::path::Path,
    name: &str,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    connector.connect(server_name, tcp).await
}

#[tokio::test]
async fn https_terminates_tls_with_certificates_from_the_dev_ca() {
    let dir = tempfile::tempdir().unwrap();
    let p = https_proxy(dir.path()).await;
    let m = echo("m1").await;
    p.set("hello", vec![target("m1", "local", m, 20, 25)]);
    let ca = dir.path().join("ca.pem");

    let mut s = tls_connect(p.addr, &ca, "hello.localhost", &[b"http/1.1"])
        .await
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: hello.localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let resp = String::from_utf8_lossy(&out);
    assert_eq!(status(&resp), 200, "{resp}");
    for line in [
        "x-forwarded-proto: https",
        "x-forwarded-ssl: on",
        "fly-forwarded-port: 443",
    ] {
        assert!(resp.contains(line), "missing `{line}`: {resp}");
    }

    // HTTP/2 is offered first; a name apps are not served under gets no certificate.
    let s = tls_connect(p.addr, &ca, "hello.localhost", &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let err = tls_connect(p.addr, &ca, "example.com", &[b"http/1.1"])
        .await
        .expect_err("no certificate for an unknown name");
    assert!(err.to_string().contains("alert"), "{err}");

    // The CA is kept: a proxy started again signs with it, and clients still trust it.
    let before = std::fs::read(&ca).unwrap();
    let again = https_proxy(dir.path()).await;
    again.set("hello", vec![target("m1", "local", m, 20, 25)]);
    assert_eq!(std::fs::read(&ca).unwrap(), before);
    tls_connect(again.addr, &ca, "hello.localhost", &[b"http/1.1"])
        .await
        .expect("a certificate from the same CA");
}

/// The dev CA mints certificates only for names apps are served as: 2,000 handshakes with
/// made-up `<name>.localhost` names (no such app) mint none and all fail, while an app with
/// machines and a hostname the control plane lists each get theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_mints_no_certificate_for_names_no_app_serves() {
    let dir = tempfile::tempdir().unwrap();
    let domains = Arc::new(Domains::default());
    domains.replace(vec![DomainEntry {
        hostname: "www.web.test".into(),
        app: "hello".into(),
        pem: None,
    }]);
    let certificates = Arc::new(Certificates::new(
        DevCa::load_or_create(dir.path()).unwrap(),
        None,
        domains.clone(),
    ));
    let mut c = config();
    c.domains = domains;
    c.tls = Some(certificates.clone());
    let p = proxy_at(c, Listener::https(443)).await;
    let m = echo("m1").await;
    p.set("hello", vec![target("m1", "local", m, 20, 25)]);
    let ca = dir.path().join("ca.pem");

    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..8 {
        let (addr, ca) = (p.addr, ca.clone());
        tasks.spawn(async move {
            for i in (lane..2_000).step_by(8) {
                let name = format!("made-up-{i}-{}.localhost", fastrand::u64(..));
                let err = tls_connect(addr, &ca, &name, &[b"http/1.1"])
                    .await
                    .expect_err("no certificate for a name no app serves");
                assert!(err.to_string().contains("alert"), "{err}");
            }
        });
    }
    tasks.join_all().await;
    assert_eq!(certificates.minted_count(), 0, "certificates minted");
    assert_eq!(certificates.issued_count(), 0);

    for name in ["hello.localhost", "www.web.test"] {
        tls_connect(p.addr, &ca, name, &[b"http/1.1"])
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert_eq!(certificates.minted_count(), 2);
}

#[tokio::test]
async fn force_https_redirects_plain_requests() {
    let mut c = config();
    c.https_port = 8443;
    let p = proxy_with(c).await;
    let m = echo("m1").await;
    let mut t = target("m1", "local", m, 20, 25);
    t.force_https = true;
    p.set("hello", vec![t]);
    let resp = get(p.addr, "hello.localhost:8080", "").await;
    assert_eq!(status(&resp), 301, "{resp}");
    assert_eq!(
        header(&resp, "location"),
        Some("https://hello.localhost:8443/hi?x=1")
    );
}

#[tokio::test]
async fn metrics_count_requests_errors_and_latency() {
    let p = proxy().await;
    let m = echo("m1").await;
    p.set("hello", vec![target("m1", "local", m, 20, 25)]);
    for _ in 0..3 {
        assert_eq!(status(&get(p.addr, "hello.localhost", "").await), 200);
    }
    assert_eq!(status(&get(p.addr, "nope.localhost", "").await), 404);
    let mut cordoned = target("m1", "local", m, 20, 25);
    cordoned.routable = false;
    p.set("hello", vec![cordoned]);
    assert_eq!(status(&get(p.addr, "hello.localhost", "").await), 503);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proxy = p.proxy.clone();
    tokio::spawn(async move { proxy.serve_metrics(listener, std::future::pending()).await });
    let text = raw(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&text), 200, "{text}");
    for line in [
        "aloft_proxy_requests_total{app=\"hello\",status=\"200\"} 3",
        "aloft_proxy_requests_total{app=\"hello\",status=\"503\"} 1",
        "aloft_proxy_errors_total{app=\"hello\",code=\"PR01\"} 1",
        "aloft_proxy_request_duration_seconds_count{app=\"hello\",machine=\"m1\"} 3",
        "aloft_proxy_machine_load{machine=\"m1\"} 0",
    ] {
        assert!(text.contains(line), "missing `{line}`:\n{text}");
    }
    assert!(text.contains("status=\"404\"}"), "{text}");
}

/// A self-signed certificate and key (PEM) for `name`.
fn self_signed(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn hostnames_of_apps_route_with_the_users_certificate_or_one_from_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let domains = Arc::new(Domains::default());
    let (cert, key) = self_signed("www.example.test");
    domains.replace(vec![
        DomainEntry {
            hostname: "www.example.test".into(),
            app: "hello".into(),
            pem: Some((cert.clone(), key)),
        },
        DomainEntry {
            hostname: "dev.example.test".into(),
            app: "hello".into(),
            pem: None,
        },
    ]);
    let p = https_proxy_with(dir.path(), domains).await;
    let m = echo("m1").await;
    p.set("hello", vec![target("m1", "local", m, 20, 25)]);
    let own = dir.path().join("own.pem");
    std::fs::write(&own, &cert).unwrap();
    let ca = dir.path().join("ca.pem");
    for (name, trust) in [("www.example.test", &own), ("dev.example.test", &ca)] {
        let mut s = tls_connect(p.addr, trust, name, &[b"http/1.1"])
            .await
            .unwrap();
        s.write_all(
            format!("GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        let resp = String::from_utf8_lossy(&out);
        assert_eq!(status(&resp), 200, "{name}: {resp}");
        assert!(resp.contains("machine: m1"), "{resp}");
    }
}

#[test]
fn uploaded_certificates_are_checked() {
    let (cert, key) = self_signed("a.example");
    assert!(tls::certified_key_from_pem(&cert, &key).is_ok());
    let (_, other_key) = self_signed("b.example");
    let err = tls::certified_key_from_pem(&cert, &other_key)
        .err()
        .unwrap();
    assert!(err.contains("does not belong"), "{err}");
    let err = tls::certified_key_from_pem("hello", &key).err().unwrap();
    assert!(err.contains("no certificate"), "{err}");
    let err = tls::certified_key_from_pem(&cert, "nope").err().unwrap();
    assert!(err.contains("private key"), "{err}");
}

// Public ports besides 80 and 443: raw TCP, `proxy_proto`, `tls` and HTTP on a port of its own.

/// A raw TCP machine: answers each connection with `name:` and all it read until the client
/// finished writing.
async fn tcp_machine(name: &'static str) -> SocketAddr {
    serve_each(move |mut s| async move {
        let mut read = Vec::new();
        let _ = s.read_to_end(&mut read).await;
        let mut out = format!("{name}:").into_bytes();
        out.extend(read);
        let _ = s.write_all(&out).await;
    })
    .await
}

/// A TCP server on loopback running `each` for every connection.
async fn serve_each<F, Fut>(each: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(each(s));
        }
    });
    addr
}

/// An address nothing listens on.
fn closed_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn tcp_target(id: &str, addr: SocketAddr, handlers: PortHandlers) -> Target {
    Target {
        app: "db".into(),
        handlers,
        ..target(id, "local", addr, 20, 25)
    }
}

impl Running {
    /// Lists public `port` for app `db` with `handlers`, and has the proxy serve public ports
    /// on 127.0.0.1 (80 and 443 excepted).
    fn serve_ports(&self, port: u16, handlers: PortHandlers) {
        *self.table.ports.lock() = vec![PublicPort {
            port,
            app: "db".into(),
            handlers,
        }];
        let proxy = self.proxy.clone();
        tokio::spawn(async move {
            proxy
                .serve_ports(
                    "127.0.0.1".parse().unwrap(),
                    &[80, 443],
                    std::future::pending(),
                )
                .await;
        });
    }
}

/// Connects to `port` on loopback (waiting for its listener to open), sends `data`, finishes
/// writing and reads everything back.
async fn tcp_roundtrip(port: u16, data: &[u8]) -> Vec<u8> {
    tcp_roundtrip_from(port, data).await.1
}

/// The same, with the client's own port (what a PROXY header names).
async fn tcp_roundtrip_from(port: u16, data: &[u8]) -> (u16, Vec<u8>) {
    let mut s = connect_eventually(port).await;
    let client_port = s.local_addr().unwrap().port();
    s.write_all(data).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    (client_port, out)
}

async fn connect_eventually(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("port {port} never opened: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test]
async fn tcp_ports_pass_connections_through_skipping_machines_that_refuse() {
    let p = proxy().await;
    let port = closed_addr().port();
    let http_machine = echo("web").await;
    p.set(
        "db",
        vec![
            tcp_target("dead", closed_addr(), PortHandlers::default()),
            tcp_target("m2", tcp_machine("m2").await, PortHandlers::default()),
            // Listing the port with the `http` handler: not a target for raw connections.
            target("web", "local", http_machine, 20, 25),
        ],
    );
    p.serve_ports(port, PortHandlers::default());
    for _ in 0..5 {
        let out = tcp_roundtrip(port, b"hello").await;
        assert_eq!(String::from_utf8_lossy(&out), "m2:hello");
    }

    // The connection counts against the machine's load while it is open.
    let mut open = connect_eventually(port).await;
    open.write_all(b"x").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.proxy.load().current("m2") != 1 {
        assert!(Instant::now() < deadline, "the connection is not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(open);

    // What the port does changes (here: it serves HTTP now): the listener is replaced at once.
    p.table.ports.lock()[0].handlers = PortHandlers {
        http: true,
        ..PortHandlers::default()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = connect_eventually(port).await;
        s.write_all(b"GET / HTTP/1.1\r\nHost: db.localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
        let resp = String::from_utf8_lossy(&out).to_string();
        if resp.starts_with("HTTP/1.1 ") {
            // Over HTTP, the machine that lists the port with the `http` handler answers.
            assert_eq!(status(&resp), 200, "{resp}");
            assert!(resp.contains("machine: web"), "{resp}");
            break;
        }
        assert!(Instant::now() < deadline, "still served raw: {resp}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // When the app no longer lists the port, the proxy stops listening on it.
    p.table.ports.lock().clear();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
        assert!(Instant::now() < deadline, "port {port} still open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn proxy_proto_ports_tell_the_machine_who_connected_in_v1_and_v2() {
    for (version, expect_v1) in [
        (aloft_types::config::ProxyProtoVersion::V1, true),
        (aloft_types::config::ProxyProtoVersion::V2, false),
    ] {
        let p = proxy().await;
        let port = closed_addr().port();
        let handlers = PortHandlers {
            proxy_proto: Some(version),
            ..PortHandlers::default()
        };
        p.set(
            "db",
            vec![tcp_target("m1", tcp_machine("m1").await, handlers)],
        );
        p.serve_ports(port, handlers);
        let (client_port, out) = tcp_roundtrip_from(port, b"hello").await;
        let out = out
            .strip_prefix(b"m1:".as_slice())
            .expect("from m1")
            .to_vec();
        if expect_v1 {
            assert_eq!(
                String::from_utf8_lossy(&out),
                format!("PROXY TCP4 127.0.0.1 127.0.0.1 {client_port} {port}\r\nhello")
            );
        } else {
            let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
            header.extend([0x21, 0x11, 0, 12, 127, 0, 0, 1, 127, 0, 0, 1]);
            header.extend(client_port.to_be_bytes());
            header.extend(port.to_be_bytes());
            header.extend(b"hello");
            assert_eq!(out, header);
        }
    }
}

/// Accepts any server certificate: for a client that sends no name, so cannot check one.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

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
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[tokio::test]
async fn tls_ports_terminate_tls_by_sni_or_as_the_app_and_pass_the_rest_through() {
    let dir = tempfile::tempdir().unwrap();
    let p = https_proxy(dir.path()).await;
    let port = closed_addr().port();
    let handlers = PortHandlers {
        tls: true,
        ..PortHandlers::default()
    };
    p.set(
        "db",
        vec![tcp_target("m1", tcp_machine("m1").await, handlers)],
    );
    p.serve_ports(port, handlers);
    connect_eventually(port).await;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();

    // With SNI, verified against the dev CA.
    let mut s = tls_connect(addr, &dir.path().join("ca.pem"), "db.localhost", &[])
        .await
        .unwrap();
    s.write_all(b"hello").await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    assert_eq!(String::from_utf8_lossy(&out), "m1:hello");

    // Without SNI (a client dialing the address): the app's own certificate.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let mut s = connector.connect(name, tcp).await.expect("a certificate");
    let (_, session) = s.get_ref();
    let leaf = session.peer_certificates().unwrap()[0].to_vec();
    let der_has = |needle: &[u8]| leaf.windows(needle.len()).any(|w| w == needle);
    assert!(
        der_has(b"db.localhost"),
        "the app's name is on the certificate"
    );
    s.write_all(b"hi").await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    assert_eq!(String::from_utf8_lossy(&out), "m1:hi");
}

#[tokio::test]
async fn http_ports_of_their_own_serve_requests_and_h2_backends_get_h2c() {
    let p = proxy().await;
    let port = closed_addr().port();
    let handlers = PortHandlers {
        http: true,
        ..PortHandlers::default()
    };
    p.set("db", vec![tcp_target("m1", echo("m1").await, handlers)]);
    p.serve_ports(port, handlers);
    connect_eventually(port).await;
    let resp = get(([127, 0, 0, 1], port).into(), "db.localhost", "").await;
    assert_eq!(status(&resp), 200, "{resp}");
    assert!(
        resp.contains(&format!("fly-forwarded-port: {port}")),
        "{resp}"
    );

    // `http_options.h2_backend`: HTTP/2 without TLS to the machine, whatever the client spoke.
    let h2_machine = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let service = service_fn(|req: Request<Incoming>| async move {
                    let text = format!("version: {:?}\n", req.version());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                });
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        addr
    };
    let h2 = PortHandlers {
        http: true,
        h2_backend: true,
        ..PortHandlers::default()
    };
    p.set(
        "hello",
        vec![Target {
            handlers: h2,
            ..target("m2", "local", h2_machine, 20, 25)
        }],
    );
    for _ in 0..3 {
        let resp = get(p.addr, "hello.localhost", "").await;
        assert_eq!(status(&resp), 200, "{resp}");
        assert!(resp.contains("version: HTTP/2.0"), "{resp}");
    }
}

/// An edge proxy in `region` whose `hello` machines are served by `worker`, another host's
/// proxy, through its worker listener.
async fn edge_and_worker(token: &str) -> (Running, Running) {
    let mut worker_config = config();
    worker_config.region = "syd".into();
    worker_config.worker_token = Some(token.into());
    let worker = proxy_at(worker_config, Listener::worker()).await;
    let mut edge_config = config();
    edge_config.region = "ord".into();
    edge_config.worker_token = Some(token.into());
    let edge = proxy_with(edge_config).await;
    (edge, worker)
}

fn remote(mut t: Target, worker: &Running) -> Target {
    t.via = Some(worker.addr);
    t
}

#[tokio::test]
async fn an_edge_sends_requests_for_another_hosts_machines_through_its_worker() {
    let (edge, worker) = edge_and_worker("s3cret").await;
    let m = echo("m1").await;
    worker.set("hello", vec![target("m1", "syd", m, 20, 25)]);
    edge.set(
        "hello",
        vec![remote(target("m1", "syd", m, 20, 25), &worker)],
    );
    let resp = get(
        edge.addr,
        "hello.localhost",
        "Fly-Client-IP: 6.6.6.6\r\naloft-target: other\r\n",
    )
    .await;
    assert_eq!(status(&resp), 200, "{resp}");
    assert!(resp.contains("machine: m1"), "{resp}");
    // The edge's forwarding headers reach the machine untouched by the worker.
    assert!(resp.contains("fly-client-ip: 127.0.0.1"), "{resp}");
    assert!(resp.contains("fly-region: ord"), "{resp}");
    assert!(resp.contains("x-forwarded-port: 80"), "{resp}");
    for internal in ["aloft-target", "aloft-port", "aloft-worker-token", "s3cret"] {
        assert!(!resp.contains(internal), "{internal} leaked: {resp}");
    }

    // The worker listener is for the cluster's proxies only.
    let forged = get(
        worker.addr,
        "hello.localhost",
        "aloft-target: m1\r\naloft-port: 80\r\naloft-worker-token: guess\r\n",
    )
    .await;
    assert_eq!(status(&forged), 403, "{forged}");
    let none = get(
        worker.addr,
        "hello.localhost",
        "aloft-target: m1\r\naloft-port: 80\r\n",
    )
    .await;
    assert_eq!(status(&none), 403, "{none}");
}

#[tokio::test]
async fn a_worker_refuses_when_its_machine_is_full_and_the_edge_tries_the_next_region() {
    let (edge, worker) = edge_and_worker("t").await;
    let gate = Arc::new(Semaphore::new(0));
    let busy = holding("syd-1", gate.clone()).await;
    let spare = echo("ams-1").await;
    // The worker's machine takes one request at a time; the edge does not know it is busy
    // (another edge filled it), so it tries it first (syd is nearer: preferred region).
    worker.set("hello", vec![target("syd-1", "syd", busy, 1, 1)]);
    edge.set(
        "hello",
        vec![
            remote(target("syd-1", "syd", busy, 1, 1), &worker),
            target("ams-1", "ams", spare, 20, 25),
        ],
    );
    let filler = tokio::spawn(get(
        worker.addr,
        "hello.localhost",
        "aloft-target: syd-1\r\naloft-port: 80\r\naloft-worker-token: t\r\n",
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    while worker.proxy.load().current("syd-1") < 1 {
        assert!(Instant::now() < deadline, "the filler never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let resp = get(edge.addr, "hello.localhost", "fly-prefer-region: syd\r\n").await;
    assert_eq!(status(&resp), 200, "{resp}");
    assert!(resp.contains("machine: ams-1"), "{resp}");
    gate.add_permits(1);
    assert_eq!(status(&filler.await.unwrap()), 200);

    // With room again, syd's machine gets it.
    gate.add_permits(1);
    let resp = get(edge.addr, "hello.localhost", "fly-prefer-region: syd\r\n").await;
    assert!(resp.contains("machine: syd-1"), "{resp}");

    // A machine the worker no longer runs is refused the same way.
    worker.set("hello", vec![stopped(target("syd-1", "syd", busy, 1, 1))]);
    worker.table.start_delay.lock().take();
    let resp = get(edge.addr, "hello.localhost", "fly-prefer-region: syd\r\n").await;
    assert!(resp.contains("machine: ams-1"), "{resp}");
}

#[tokio::test]
async fn fly_replay_from_a_machine_behind_a_worker_is_replayed_by_the_edge() {
    let (edge, worker) = edge_and_worker("t").await;
    let primary = echo("primary").await;
    let replica = answering("replica", &[("fly-replay", "region=ams")]).await;
    worker.set("hello", vec![target("replica", "syd", replica, 20, 25)]);
    edge.set(
        "hello",
        vec![
            remote(target("replica", "syd", replica, 20, 25), &worker),
            target("primary", "ams", primary, 20, 25),
        ],
    );
    let resp = get(edge.addr, "hello.localhost", "fly-prefer-region: syd\r\n").await;
    assert_eq!(status(&resp), 200, "{resp}");
    assert!(resp.contains("machine: primary"), "{resp}");
    assert!(
        resp.contains("fly-replay-src: instance=replica;region=syd"),
        "{resp}"
    );
}

#[tokio::test]
async fn a_worker_keeps_an_edges_idle_connection_open_longer_than_edges_pool_it() {
    let (_edge, worker) = edge_and_worker("t").await;
    let m = echo("m1").await;
    worker.set("hello", vec![target("m1", "syd", m, 20, 25)]);
    let request = b"GET / HTTP/1.1\r\nHost: hello.localhost\r\naloft-target: m1\r\naloft-port: 80\r\naloft-worker-token: t\r\n\r\n";
    let mut s = TcpStream::connect(worker.addr).await.unwrap();
    let mut buf = vec![0; 4096];
    for _ in 0..2 {
        s.write_all(request).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let resp = String::from_utf8_lossy(&buf[..n]);
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        // Longer than clients' connections may idle (the header read timeout, 500 ms here).
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
}

#[tokio::test]
async fn without_a_machine_in_its_region_an_edge_picks_the_region_measured_nearest() {
    let mut c = config();
    c.region = "syd".into();
    let p = proxy_with(c).await;
    let (ord, ams) = (echo("ord-m").await, echo("ams-m").await);
    p.set(
        "hello",
        vec![
            target("ord-m", "ord", ord, 20, 25),
            target("ams-m", "ams", ams, 20, 25),
        ],
    );
    let rtts = |ord_ms, ams_ms| {
        *p.table.rtts.lock() = HashMap::from([
            ("ord".to_string(), Duration::from_millis(ord_ms)),
            ("ams".to_string(), Duration::from_millis(ams_ms)),
        ]);
    };
    for (ord_ms, ams_ms, nearest) in [(150, 20, "ams-m"), (20, 150, "ord-m")] {
        rtts(ord_ms, ams_ms);
        for _ in 0..5 {
            let resp = get(p.addr, "hello.localhost", "").await;
            assert!(resp.contains(&format!("machine: {nearest}")), "{resp}");
        }
    }
    // A region not measured yet comes after every measured one.
    p.table.rtts.lock().remove("ord");
    let resp = get(p.addr, "hello.localhost", "").await;
    assert!(resp.contains("machine: ams-m"), "{resp}");
}

#[tokio::test]
async fn a_host_that_fails_mid_request_is_skipped_for_the_next_choice() {
    let (edge, _worker) = edge_and_worker("t").await;
    // A "worker" that takes the connection and drops it without answering (a host dying).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dying = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    });
    let spare = echo("ams-1").await;
    let mut gone = target("syd-1", "syd", spare, 20, 25);
    gone.via = Some(dying);
    edge.set("hello", vec![gone, target("ams-1", "ams", spare, 20, 25)]);
    for _ in 0..3 {
        let resp = get(edge.addr, "hello.localhost", "fly-prefer-region: syd\r\n").await;
        assert_eq!(status(&resp), 200, "{resp}");
        assert!(resp.contains("machine: ams-1"), "{resp}");
    }
    // A request that may not be sent twice (it may have been acted on) gets the error instead.
    let resp = raw(
        edge.addr,
        b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nfly-prefer-region: syd\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    )
    .await;
    assert_eq!(status(&resp), 502, "{resp}");
}

#[tokio::test]
async fn an_edge_passes_tcp_connections_for_another_hosts_machines_through_its_worker() {
    let (edge, worker) = edge_and_worker("s3cret").await;
    let handlers = PortHandlers {
        proxy_proto: Some(aloft_types::config::ProxyProtoVersion::V1),
        ..PortHandlers::default()
    };
    let machine = tcp_machine("m1").await;
    let (dead, m1) = (
        tcp_target("dead", closed_addr(), handlers),
        tcp_target("m1", machine, handlers),
    );
    worker.set("db", vec![dead.clone(), m1.clone()]);
    edge.set("db", vec![remote(dead, &worker), remote(m1, &worker)]);
    let port = closed_addr().port();
    edge.serve_ports(port, handlers);
    // The worker refuses for the machine that does not listen, and the edge tries the other;
    // the PROXY header (written by the worker) names the client of the edge.
    for _ in 0..4 {
        let (client_port, out) = tcp_roundtrip_from(port, b"hello").await;
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("m1:PROXY TCP4 127.0.0.1 127.0.0.1 {client_port} {port}\r\nhello")
        );
    }
    // A CONNECT without the cluster's token gets nothing.
    let mut s = TcpStream::connect(worker.addr).await.unwrap();
    s.write_all(
        format!(
            "CONNECT db.localhost:{port} HTTP/1.1\r\nhost: db.localhost:{port}\r\naloft-target: m1\r\naloft-port: {port}\r\naloft-tcp: 1.2.3.4:5 6.7.8.9:10\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = vec![0u8; 64];
    let n = s.read(&mut out).await.unwrap();
    assert!(
        String::from_utf8_lossy(&out[..n]).starts_with("HTTP/1.1 403"),
        "{}",
        String::from_utf8_lossy(&out[..n])
    );
}

/// A machine that answers one request per connection and then, without saying so
/// (no `Connection: close`), closes the connection when the next request comes on it.
async fn answering_once() -> SocketAddr {
    serve_each(|mut s| async move {
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await;
        // The next request is read, and the connection dropped.
        let _ = s.read(&mut buf).await;
    })
    .await
}

#[tokio::test]
async fn an_idempotent_request_on_stale_pooled_connections_is_resent_on_a_new_one() {
    let p = proxy().await;
    p.set(
        "hello",
        vec![target("m1", "local", answering_once().await, 20, 25)],
    );
    // Four at once: four connections, pooled afterwards, each good for nothing more.
    let burst: Vec<_> = (0..4)
        .map(|_| {
            let addr = p.addr;
            tokio::spawn(async move { get(addr, "hello.localhost", "").await })
        })
        .collect();
    for r in burst {
        assert_eq!(status(&r.await.unwrap()), 200);
    }
    // A request now meets a stale connection; its resend goes on a new one.
    for _ in 0..3 {
        let resp = get(p.addr, "hello.localhost", "").await;
        assert_eq!(status(&resp), 200, "{resp}");
    }
}

/// A machine that reads the request, answers nothing and closes: every resend fails too.
async fn mute() -> SocketAddr {
    serve_each(|mut s| async move {
        let mut buf = vec![0u8; 4096];
        let _ = s.read(&mut buf).await;
    })
    .await
}

#[tokio::test]
async fn a_machine_failing_behind_a_worker_sends_the_edge_to_its_next_choice() {
    let (edge, worker) = edge_and_worker("t").await;
    let mute = mute().await;
    let good = echo("syd-1").await;
    let (bad, fine) = (
        target("ord-1", "ord", mute, 20, 25),
        target("syd-1", "syd", good, 20, 25),
    );
    worker.set("hello", vec![bad.clone(), fine.clone()]);
    // The failing machine is in the edge's own region: always its first choice.
    edge.set("hello", vec![remote(bad, &worker), remote(fine, &worker)]);
    for _ in 0..3 {
        let resp = get(edge.addr, "hello.localhost", "").await;
        assert_eq!(status(&resp), 200, "{resp}");
        assert!(resp.contains("machine: syd-1"), "{resp}");
    }
}

#[tokio::test]
async fn an_idempotent_request_a_local_machine_fails_goes_to_the_next_choice() {
    let p = proxy().await;
    p.set(
        "hello",
        vec![
            target("local-1", "local", mute().await, 20, 25),
            target("syd-1", "syd", echo("syd-1").await, 20, 25),
        ],
    );
    for _ in 0..3 {
        let resp = get(p.addr, "hello.localhost", "").await;
        assert_eq!(status(&resp), 200, "{resp}");
        assert!(resp.contains("machine: syd-1"), "{resp}");
    }
    // A POST the machine may have acted on is not sent anywhere else.
    let resp = raw(
        p.addr,
        b"POST / HTTP/1.1\r\nhost: hello.localhost\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&resp), 502, "{resp}");
    assert!(resp.contains("local-1 failed to answer"), "{resp}");
}
