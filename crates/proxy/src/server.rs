//! The HTTP listeners and the life of one request: app from `Host`, machine from the ranking,
//! forwarding headers, retries, `fly-replay`, and the errors users see (with the reference's
//! codes: PC01 refused connection, PR01 no machine to take it, PR04 every machine at its hard
//! limit, PA01 body too large to replay, PA03 invalid `fly-replay`).

use crate::balance::{Distance, rank};
use crate::body::{self, Guarded, ProxyBody, RequestBody};
use crate::catalog::{Catalog, Target};
use crate::clients::{ClientLimits, Clients};
use crate::load::{Load, Slot};
use crate::metrics::{Event, Metrics};
use crate::names::app_of_name;
use crate::replay::{self, Fallback, Replay};
use crate::tls::{self, Certificates, Domains};
use aloft_types::MachineState;
use aloft_types::config::Autostop;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

mod tcp;

/// How long a connection to another host's worker may take to open, or its data to be
/// acknowledged, before that host counts as unreachable.
const WORKER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long an idle pooled connection to a machine (or another host's worker) is kept.
const UPSTREAM_IDLE: Duration = Duration::from_secs(60);

/// A request is replayed at most this many times (then it is a loop).
const MAX_REPLAYS: u32 = 5;

/// Headers that describe one hop, never passed on (RFC 9110 7.6.1).
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

const FLY_CLIENT_IP: HeaderName = HeaderName::from_static("fly-client-ip");
/// Takes a machine out of [`Inner::waking`] when dropped.
struct NotWaking<'a>(&'a Proxy, &'a str);

impl Drop for NotWaking<'_> {
    fn drop(&mut self) {
        if let Ok(mut waking) = self.0.inner.waking.lock() {
            waking.remove(self.1);
        }
    }
}

/// How long autostart leaves a machine whose start failed before trying it again.
const WAKE_RETRY: Duration = Duration::from_secs(5);
const FLY_FORWARDED_PORT: HeaderName = HeaderName::from_static("fly-forwarded-port");
const FLY_REGION: HeaderName = HeaderName::from_static("fly-region");
const FLY_REQUEST_ID: HeaderName = HeaderName::from_static("fly-request-id");
const FLY_REPLAY: HeaderName = HeaderName::from_static("fly-replay");
const FLY_REPLAY_SRC: HeaderName = HeaderName::from_static("fly-replay-src");
const FLY_PREFER_REGION: HeaderName = HeaderName::from_static("fly-prefer-region");
const FLY_FORCE_INSTANCE: HeaderName = HeaderName::from_static("fly-force-instance-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_SSL: HeaderName = HeaderName::from_static("x-forwarded-ssl");
const VIA: &str = "1.1 aloft";
/// Edge to worker: the machine the edge picked, the public port the client used, and the
/// cluster's token. Never taken from clients.
const ALOFT_TARGET: HeaderName = HeaderName::from_static("aloft-target");
const ALOFT_PORT: HeaderName = HeaderName::from_static("aloft-port");
const ALOFT_WORKER_TOKEN: HeaderName = HeaderName::from_static("aloft-worker-token");
/// Edge to worker, on a `CONNECT` for a connection passed through whole: the client's address
/// and the address it connected to (for the machine's PROXY header).
const ALOFT_TCP: HeaderName = HeaderName::from_static("aloft-tcp");
/// Worker to edge: the machine cannot take the request (full, or no longer running); the edge
/// tries its next choice.
const ALOFT_REFUSED: HeaderName = HeaderName::from_static("aloft-refused");

/// Limits that protect the proxy from slow, large or too many requests.
#[derive(Debug, Clone, Copy)]
pub struct Protection {
    /// A client must send a request's headers within this (slowloris).
    pub header_read_timeout: Duration,
    /// The most bytes of headers one request may have (HTTP/1 read buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// The most header fields one request may have.
    pub max_headers: usize,
    pub clients: ClientLimits,
}

impl Default for Protection {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 << 10,
            max_headers: 100,
            clients: ClientLimits {
                max_connections: 512,
                requests_per_second: 1000,
            },
        }
    }
}

/// How a proxy behaves.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The region it runs in: `Fly-Region`, request ids, and which machines are closest.
    pub region: String,
    /// Apps are served as `<app>.localhost` and, with a domain, `<app>.<domain>`.
    pub app_domain: Option<String>,
    pub protection: Protection,
    /// How long a request waits for a slot when every machine is at its hard limit.
    pub queue_timeout: Duration,
    pub connect_timeout: Duration,
    /// How long a stopping proxy lets requests in flight finish.
    pub drain_timeout: Duration,
    /// How long a request waits for a machine autostart started.
    pub wake_timeout: Duration,
    /// The certificates HTTPS listeners and `tls` ports terminate TLS with.
    pub tls: Option<Arc<Certificates>>,
    /// The port clients reach HTTPS on (443; 8443 in `dev up`), for `force_https` redirects.
    pub https_port: u16,
    /// Hostnames apps are served at besides `<app>.localhost` (`aloft certs add`).
    pub domains: Arc<Domains>,
    /// The name whose certificate HTTPS clients that send no SNI get (`None`: they get no
    /// certificate, as on the reference). For one-app set-ups and benchmarks.
    pub tls_default_name: Option<String>,
    /// The secret edges send to the worker listeners of other hosts' proxies, and the worker
    /// listener requires (`None`: the worker listener refuses every request).
    pub worker_token: Option<String>,
}

impl ProxyConfig {
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            app_domain: None,
            protection: Protection::default(),
            queue_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
            wake_timeout: Duration::from_secs(60),
            tls: None,
            https_port: 443,
            domains: Arc::default(),
            tls_default_name: None,
            worker_token: None,
        }
    }
}

/// What one listener serves: the public port it stands for (8080 stands for 80 in `dev up`)
/// and whether its clients speak TLS; or the worker listener, where other hosts' proxies (edges)
/// send requests for this host's machines.
#[derive(Debug, Clone, Copy)]
pub struct Listener {
    pub public_port: u16,
    pub https: bool,
    pub worker: bool,
}

impl Listener {
    pub fn http(public_port: u16) -> Self {
        Self {
            public_port,
            https: false,
            worker: false,
        }
    }

    pub fn https(public_port: u16) -> Self {
        Self {
            public_port,
            https: true,
            worker: false,
        }
    }

    /// The worker listener: requests from edges, each naming its machine and public port.
    pub fn worker() -> Self {
        Self {
            public_port: 0,
            https: false,
            worker: true,
        }
    }
}

/// The proxy: cheap to clone, one per host.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    config: ProxyConfig,
    catalog: Arc<dyn Catalog>,
    load: Arc<Load>,
    clients: Arc<Clients>,
    upstream: Client<HttpConnector, ProxyBody>,
    /// How client connections are served over HTTP (limits and timeouts set).
    http: Arc<auto::Builder<TokioExecutor>>,
    /// How edges' connections to the worker listener are served: kept open while idle for
    /// longer than edges pool them, so an edge never sends on a connection being closed.
    http_worker: Arc<auto::Builder<TokioExecutor>>,
    /// The TLS side of HTTPS listeners.
    https: Option<Arc<rustls::ServerConfig>>,
    /// HTTP/2 without TLS, for ports with `http_options.h2_backend`.
    upstream_h2: Client<HttpConnector, ProxyBody>,
    /// HTTP/1.1 to machines on a new connection each time: for a resend, after a pooled
    /// connection turned out closed (another pooled one may be too, when the machine closes
    /// connections it did not get a request on at once, as busybox's httpd does).
    upstream_fresh: Client<HttpConnector, ProxyBody>,
    /// HTTP/1.1 to other hosts' worker listeners.
    upstream_workers: Client<HttpConnector, ProxyBody>,
    /// Machines autostart started, and when.
    woken: Mutex<HashMap<String, Instant>>,
    /// Machines autostart asked to start whose start has not answered yet.
    waking: Mutex<std::collections::HashSet<String>>,
    /// `Fly-Region`.
    region: HeaderValue,
    metrics: Metrics,
}

/// Who sent a request, and on which listener.
#[derive(Debug, Clone, Copy)]
struct Conn {
    peer: SocketAddr,
    listener: Listener,
}

/// An error page: status, the reference's code if there is one, and what happened.
struct Failure {
    status: StatusCode,
    code: Option<&'static str>,
    message: String,
    /// A worker's answer to an edge: this machine cannot take it, try another.
    refused: bool,
}

impl Failure {
    fn new(status: StatusCode, code: Option<&'static str>, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            refused: false,
        }
    }
}

/// Where a request may go: narrowed by client hints and by `fly-replay`.
#[derive(Debug, Clone, Default)]
struct Constraint {
    app: String,
    /// Only these regions (empty: any).
    regions: Vec<String>,
    /// Only this machine.
    instance: Option<String>,
    /// This machine first.
    prefer_instance: Option<String>,
    /// Not these machines (`elsewhere=true`, or their connection failed).
    excluded: Vec<String>,
    /// This region first (`fly-prefer-region`).
    prefer_region: Option<String>,
    /// How long to wait for a target with room.
    timeout: Option<Duration>,
    /// Where to go when the target has no room in time: the machine that asked for the replay.
    fallback: Option<(Target, Fallback)>,
    /// A connection passed through whole (ports without the `http` handler), not a request.
    tcp: bool,
    /// On a worker: the edge chose the machine; no waiting, and no waking another one.
    from_edge: bool,
}

impl Constraint {
    fn allows(&self, t: &Target) -> bool {
        (self.regions.is_empty() || self.regions.contains(&t.region))
            && self.instance.as_ref().is_none_or(|i| *i == t.machine_id)
            && !self.excluded.contains(&t.machine_id)
            && t.handlers.http != self.tcp
    }
}

/// Closeness: the preferred region first, then the proxy's own region, then the others by the
/// round-trip time the catalog measured to them (in whole milliseconds, so that regions as near
/// as each other share the traffic); regions not measured yet come last.
struct Preference<'a> {
    own: &'a str,
    prefer_region: Option<&'a str>,
    catalog: &'a dyn Catalog,
}

impl Distance for Preference<'_> {
    fn distance(&self, region: &str) -> u32 {
        if self.prefer_region == Some(region) {
            0
        } else if region == self.own {
            1
        } else {
            let ms = self.catalog.rtt(region).map_or(UNMEASURED_MS, |rtt| {
                rtt.as_millis().min(u128::from(UNMEASURED_MS)) as u32
            });
            2 + ms
        }
    }
}

/// Where an unmeasured region ranks: behind any measured one.
const UNMEASURED_MS: u32 = 100_000;

impl Proxy {
    pub fn new(config: ProxyConfig, catalog: Arc<dyn Catalog>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        let upstream = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(UPSTREAM_IDLE)
            .pool_max_idle_per_host(64)
            .pool_timer(TokioTimer::new())
            .build(connector.clone());
        let upstream_fresh = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector.clone());
        let upstream_h2 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(UPSTREAM_IDLE)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_only(true)
            .build(connector);
        // To other hosts' workers: a host that cannot be reached (dead, or cut off) shows within
        // seconds, on a new connection (connect timeout) or a pooled one (data not acknowledged,
        // keepalive probes unanswered), instead of a request waiting for TCP to give up.
        let mut to_workers = HttpConnector::new();
        to_workers.set_connect_timeout(Some(WORKER_CONNECT_TIMEOUT));
        to_workers.set_tcp_user_timeout(Some(WORKER_CONNECT_TIMEOUT));
        to_workers.set_keepalive(Some(Duration::from_secs(5)));
        to_workers.set_keepalive_interval(Some(Duration::from_secs(1)));
        to_workers.set_keepalive_retries(Some(2));
        to_workers.set_nodelay(true);
        let upstream_workers = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(UPSTREAM_IDLE)
            .pool_max_idle_per_host(64)
            .pool_timer(TokioTimer::new())
            .build(to_workers);
        let https = config.tls.clone().and_then(|certificates| {
            tls::server_config(certificates, config.tls_default_name.clone(), true)
                .inspect_err(|e| tracing::error!("HTTPS is off: {e}"))
                .ok()
        });
        Self {
            inner: Arc::new(Inner {
                http: Arc::new(http_builder(&config.protection)),
                http_worker: Arc::new(http_builder(&Protection {
                    header_read_timeout: UPSTREAM_IDLE + Duration::from_secs(15),
                    ..config.protection
                })),
                https,
                region: value(&config.region),
                clients: Clients::new(config.protection.clients),
                config,
                catalog,
                load: Arc::new(Load::default()),
                upstream,
                upstream_h2,
                upstream_fresh,
                upstream_workers,
                woken: Mutex::default(),
                waking: Mutex::default(),
                metrics: Metrics::default(),
            }),
        }
    }

    /// The proxy's metrics in Prometheus' text format.
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.render(&self.inner.load.snapshot())
    }

    /// Serves `GET /metrics` on `listener` until `shutdown`.
    pub async fn serve_metrics(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(_) => continue,
                },
                () = &mut shutdown => return,
            };
            let proxy = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let proxy = proxy.clone();
                    async move {
                        let mut resp = if req.uri().path() == "/metrics" {
                            let mut r = Response::new(body::full(proxy.metrics_text()));
                            r.headers_mut().insert(
                                header::CONTENT_TYPE,
                                HeaderValue::from_static("text/plain; version=0.0.4"),
                            );
                            r
                        } else {
                            Response::new(body::full("the metrics are at /metrics\n"))
                        };
                        if req.uri().path() != "/metrics" {
                            *resp.status_mut() = StatusCode::NOT_FOUND;
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    /// The machines' load as this proxy counts it.
    pub fn load(&self) -> &Arc<Load> {
        &self.inner.load
    }

    /// Serves HTTP on `listener` until `shutdown` resolves, then lets requests in flight finish
    /// (for at most the drain timeout).
    pub async fn serve(
        &self,
        listener: TcpListener,
        at: Listener,
        shutdown: impl Future<Output = ()>,
    ) {
        let (stop_tx, stop_rx) = watch::channel(false);
        // Counters of machines that serve nothing (destroyed ones among them) are dropped now
        // and then.
        let load = Arc::downgrade(&self.inner.load);
        let compact = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                let Some(load) = load.upgrade() else { return };
                load.compact(Duration::from_secs(3600));
            }
        });
        let open = Arc::new(());
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!("accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // Edges are not clients: their connections carry many clients' requests.
            let place = if at.worker {
                None
            } else {
                match self.inner.clients.connect(peer.ip()) {
                    Some(place) => Some(place),
                    None => {
                        tracing::debug!(%peer, "too many connections from one client: closed");
                        continue;
                    }
                }
            };
            let _ = stream.set_nodelay(true);
            let proxy = self.clone();
            let mut stop = stop_rx.clone();
            let open = open.clone();
            let tls = at.https.then(|| self.inner.https.clone());
            tokio::spawn(async move {
                let conn = Conn { peer, listener: at };
                match tls {
                    None => proxy.connection(stream, conn, &mut stop).await,
                    Some(None) => {
                        tracing::warn!("an HTTPS listener without a TLS configuration: closed");
                    }
                    Some(Some(config)) => {
                        if let Some(tls) = proxy.accept_tls(config, stream, peer).await {
                            proxy.connection(tls, conn, &mut stop).await;
                        }
                    }
                }
                drop((place, open));
            });
        }
        compact.abort();
        let _ = stop_tx.send(true);
        let deadline = Instant::now() + self.inner.config.drain_timeout;
        while Arc::strong_count(&open) > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The TLS handshake with a client, given the header-read timeout to finish.
    async fn accept_tls(
        &self,
        config: Arc<rustls::ServerConfig>,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let timeout = self.inner.config.protection.header_read_timeout;
        match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => Some(tls),
            Ok(Err(e)) => {
                tracing::debug!(%peer, "TLS handshake: {e}");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake: too slow");
                None
            }
        }
    }

    /// Serves one client connection until it closes, or gracefully ends it when `stop` says so.
    async fn connection<I>(&self, io: I, conn: Conn, stop: &mut watch::Receiver<bool>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let proxy = self.clone();
        let service = service_fn(move |req| {
            let proxy = proxy.clone();
            async move { Ok::<_, Infallible>(proxy.handle(req, conn).await) }
        });
        let http = if conn.listener.worker {
            &self.inner.http_worker
        } else {
            &self.inner.http
        };
        let connection = http.serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => {}
            () = async { let _ = stop.wait_for(|s| *s).await; } => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
    }

    /// One request, start to end: never fails, errors are pages.
    async fn handle(&self, req: Request<Incoming>, conn: Conn) -> Response<ProxyBody> {
        let started = Instant::now();
        let request_id = format!("{}-{}", ulid::Ulid::new(), self.inner.config.region);
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let (response, app, machine, code) = match self.route(req, conn, &request_id).await {
            Ok((resp, app, machine)) => (resp, app, Some(machine), None),
            Err((failure, app)) => {
                let code = failure.code;
                (self.error_page(failure), app, None, code)
            }
        };
        self.inner.metrics.response(
            app.as_deref().unwrap_or("-"),
            response.status().as_u16(),
            machine.as_deref(),
            started.elapsed(),
            code,
        );
        let mut response = response;
        finish_headers(response.headers_mut(), &request_id);
        tracing::info!(
            target: "aloft_proxy::access",
            request_id,
            client = %conn.peer.ip(),
            app = app.as_deref().unwrap_or("-"),
            machine = machine.as_deref().unwrap_or("-"),
            %method,
            path,
            status = response.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
        );
        response
    }

    /// Routes the request; on failure, the page to show and the app if it was known.
    async fn route(
        &self,
        mut req: Request<Incoming>,
        conn: Conn,
        request_id: &str,
    ) -> Result<(Response<ProxyBody>, Option<String>, String), (Failure, Option<String>)> {
        let inner = &self.inner;
        let conn = if conn.listener.worker {
            self.edge_request(req.headers(), conn)
                .map_err(|f| (f, None))?
        } else {
            conn
        };
        let worker = conn.listener.worker;
        if worker && req.method() == Method::CONNECT && req.headers().contains_key(&ALOFT_TCP) {
            return self.worker_tunnel(req, conn).await;
        }
        if !worker && !inner.clients.allow_request(conn.peer.ip()) {
            return Err((
                Failure::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    None,
                    "too many requests from your address; slow down and try again",
                ),
                None,
            ));
        }
        let app = self.app_of(&req).map_err(|f| (f, None))?;
        if !conn.listener.https
            && !worker
            && let Some(redirect) = self.https_redirect(&app, &req, conn)
        {
            return Ok((redirect, Some(app), "-".into()));
        }
        let fail = |f: Failure| (f, Some(app.clone()));
        let upgrade = is_upgrade(req.headers());
        let mut client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, incoming) = req.into_parts();
        let mut body = if upgrade {
            RequestBody::Buffered(bytes::Bytes::new())
        } else {
            RequestBody::read(incoming).await.map_err(|e| {
                fail(Failure::new(
                    StatusCode::BAD_REQUEST,
                    None,
                    format!("reading the request body: {e}"),
                ))
            })?
        };
        let mut constraint = if worker {
            // The edge picked the machine; when it has no room now, the edge picks another.
            Constraint {
                app: app.clone(),
                instance: header_str(&parts.headers, &ALOFT_TARGET),
                timeout: Some(Duration::ZERO),
                from_edge: true,
                ..Constraint::default()
            }
        } else {
            Constraint {
                app: app.clone(),
                instance: header_str(&parts.headers, &FLY_FORCE_INSTANCE),
                prefer_region: header_str(&parts.headers, &FLY_PREFER_REGION)
                    .map(|r| r.to_ascii_lowercase()),
                ..Constraint::default()
            }
        };
        let mut headers = if worker {
            // The edge set the forwarding headers already.
            let mut h = std::mem::take(&mut parts.headers);
            strip_hop_by_hop(&mut h, upgrade);
            for internal in [&ALOFT_TARGET, &ALOFT_PORT, &ALOFT_WORKER_TOKEN, &ALOFT_TCP] {
                h.remove(internal);
            }
            h
        } else {
            self.forward_headers(
                std::mem::take(&mut parts.headers),
                &parts.uri,
                conn,
                request_id,
                upgrade,
            )
        };
        let mut replays = 0;
        // The last machine that refused the connection: the error when no other is left.
        let mut refused: Option<Failure> = None;
        let idempotent = matches!(
            parts.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        );
        let mut resends = 0;
        loop {
            let (target, slot) = match self.pick(&constraint, conn).await {
                Ok(picked) => picked,
                Err(f) => {
                    let mut f = refused.take().unwrap_or(f);
                    f.refused = worker;
                    return Err(fail(f));
                }
            };
            let Some(attempt_body) = body.take() else {
                return Err(fail(Failure::new(
                    StatusCode::BAD_GATEWAY,
                    Some("PA01"),
                    "the request body was sent already and is too large to send again (over 1 MB)",
                )));
            };
            let uri = Uri::builder()
                .scheme("http")
                .authority(target.via.unwrap_or_else(|| socket(&target)).to_string())
                .path_and_query(parts.uri.path_and_query().map_or("/", |p| p.as_str()))
                .build()
                .expect("a valid URI");
            // To another host's proxy: HTTP/1.1, which passes h2c on to the machine if asked.
            let h2 = target.handlers.h2_backend && !upgrade && target.via.is_none();
            let mut upstream = Request::builder()
                .method(parts.method.clone())
                .uri(uri)
                .version(if h2 {
                    Version::HTTP_2
                } else {
                    Version::HTTP_11
                })
                .body(attempt_body)
                .expect("a valid request");
            *upstream.headers_mut() = headers.clone();
            if target.via.is_some() {
                self.to_worker(upstream.headers_mut(), &target, conn);
            }
            let client = if target.via.is_some() {
                &inner.upstream_workers
            } else if h2 {
                &inner.upstream_h2
            } else if resends > 0 {
                &inner.upstream_fresh
            } else {
                &inner.upstream
            };
            let mut resp = match client.request(upstream).await {
                Ok(r) if target.via.is_some() && r.headers().contains_key(&ALOFT_REFUSED) => {
                    // The machine's host says no (full, or the machine stopped meanwhile).
                    let failure = Failure::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        Some("PR04"),
                        format!(
                            "machine {} in {} has no room for the request",
                            target.machine_id, target.region
                        ),
                    );
                    if !body.can_resend() {
                        return Err(fail(failure));
                    }
                    constraint.exclude_failed(&target);
                    inner.metrics.count(Event::Retry, &app);
                    refused = Some(failure);
                    continue;
                }
                Ok(r) => r,
                Err(e) if e.is_connect() => {
                    let failure = Failure::new(
                        StatusCode::BAD_GATEWAY,
                        Some("PC01"),
                        format!(
                            "machine {} refused the connection: {}",
                            target.machine_id,
                            error_chain(&e)
                        ),
                    );
                    if !body.can_resend() {
                        return Err(fail(failure));
                    }
                    if self.just_woken(&target.machine_id) {
                        // Started a moment ago: its process may not listen yet.
                        drop(slot);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    tracing::info!(
                        machine = target.machine_id,
                        "connect failed, trying another: {}",
                        error_chain(&e)
                    );
                    constraint.exclude_failed(&target);
                    inner.metrics.count(Event::Retry, &app);
                    refused = Some(failure);
                    continue;
                }
                // A pooled connection the machine closed just as the request went out: an
                // idempotent request is sent again (as nginx does), on a new connection, three
                // times at most, at once, then 50 ms and 200 ms later (a machine short of CPU
                // drops a few connections in a row).
                Err(e)
                    if target.via.is_none() && idempotent && body.can_resend() && resends < 3 =>
                {
                    tracing::info!(
                        machine = target.machine_id,
                        "resending: {}",
                        error_chain(&e)
                    );
                    resends += 1;
                    inner.metrics.count(Event::Retry, &app);
                    drop(slot);
                    tokio::time::sleep(Duration::from_millis([0, 50, 200][resends - 1])).await;
                    continue;
                }
                Err(e) => {
                    let what = if target.via.is_some() {
                        format!(
                            "machine {}'s host in {} did not answer",
                            target.machine_id, target.region
                        )
                    } else {
                        format!("machine {} failed to answer", target.machine_id)
                    };
                    let failure = Failure::new(
                        StatusCode::BAD_GATEWAY,
                        None,
                        format!("{what}: {}", error_chain(&e)),
                    );
                    if !idempotent || !body.can_resend() {
                        return Err(fail(failure));
                    }
                    // An idempotent request that a machine failed (after the resends) or whose
                    // host did not answer (dead, or cut off) goes to the next choice, in this
                    // region or the next (a worker, whose only choice is the edge's, refuses,
                    // and the edge tries its next).
                    tracing::info!(
                        machine = target.machine_id,
                        "{what}, trying another: {}",
                        error_chain(&e)
                    );
                    constraint.exclude_failed(&target);
                    inner.metrics.count(Event::Retry, &app);
                    refused = Some(failure);
                    resends = 0;
                    drop(slot);
                    continue;
                }
            };
            // A worker passes fly-replay back to the edge, which replays it.
            if let Some(value) = resp.headers().get(&FLY_REPLAY).cloned().filter(|_| !worker) {
                let instruction = value
                    .to_str()
                    .map_err(|_| "it is not ASCII".to_string())
                    .and_then(replay::parse)
                    .map_err(|why| {
                        fail(Failure::new(
                            StatusCode::BAD_GATEWAY,
                            Some("PA03"),
                            format!(
                                "machine {} sent an invalid fly-replay header: {why}",
                                target.machine_id
                            ),
                        ))
                    })?;
                replays += 1;
                if replays > MAX_REPLAYS {
                    return Err(fail(Failure::new(
                        StatusCode::LOOP_DETECTED,
                        Some("PA03"),
                        format!(
                            "the request was replayed {MAX_REPLAYS} times: the machines' fly-replay headers send it round in a loop"
                        ),
                    )));
                }
                if !body.can_resend() {
                    return Err(fail(Failure::new(
                        StatusCode::BAD_GATEWAY,
                        Some("PA01"),
                        "the machine asked to replay a request whose body is over 1 MB: too large to replay",
                    )));
                }
                let now_us = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros());
                let src = replay::source(
                    &target.machine_id,
                    &target.region,
                    now_us,
                    instruction.state.as_deref(),
                );
                if let Ok(v) = HeaderValue::from_str(&src) {
                    headers.insert(FLY_REPLAY_SRC, v);
                }
                inner.metrics.count(Event::Replay, &app);
                constraint = Constraint::replay(&instruction, &constraint.app, target);
                drop(resp);
                drop(slot);
                continue;
            }
            let machine = target.machine_id.clone();
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS
                && let Some(client_upgrade) = client_upgrade.take()
            {
                let machine_upgrade = hyper::upgrade::on(&mut resp);
                tokio::spawn(async move {
                    let _slot = slot;
                    let (Ok(client), Ok(machine)) = (client_upgrade.await, machine_upgrade.await)
                    else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(
                        &mut TokioIo::new(client),
                        &mut TokioIo::new(machine),
                    )
                    .await;
                });
                let (parts, _) = resp.into_parts();
                return Ok((
                    Response::from_parts(parts, body::empty()),
                    Some(app),
                    machine,
                ));
            }
            let (mut parts, incoming) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers, false);
            let body = Guarded::new(incoming, Some(slot)).boxed();
            return Ok((Response::from_parts(parts, body), Some(app), machine));
        }
    }

    /// `301` to the same URL over HTTPS, when the app's service forces HTTPS.
    fn https_redirect<B>(
        &self,
        app: &str,
        req: &Request<B>,
        conn: Conn,
    ) -> Option<Response<ProxyBody>> {
        let targets = self.inner.catalog.targets(app, conn.listener.public_port)?;
        if !targets.iter().any(|t| t.force_https) {
            return None;
        }
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))?;
        let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let port = match self.inner.config.https_port {
            443 => String::new(),
            p => format!(":{p}"),
        };
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let mut resp = Response::new(body::empty());
        *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
        resp.headers_mut().insert(
            header::LOCATION,
            value(&format!("https://{name}{port}{path}")),
        );
        Some(resp)
    }

    /// The app a request is for, from `Host` (or the HTTP/2 authority).
    fn app_of<B>(&self, req: &Request<B>) -> Result<String, Failure> {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()))
            .unwrap_or_default();
        let name = host
            .rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host.as_str(), |(h, _)| h)
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if let Some(d) = self.inner.config.domains.get(&name) {
            return Ok(d.app);
        }
        let domain = self.inner.config.app_domain.as_deref();
        let app = app_of_name(&name, domain);
        let served = match domain {
            Some(d) => format!("<app>.localhost or <app>.{d}"),
            None => "<app>.localhost".to_string(),
        };
        let app = app.ok_or_else(|| {
            Failure::new(
                StatusCode::NOT_FOUND,
                None,
                format!("no app is served at `{name}`: apps are served as {served}"),
            )
        })?;
        Ok(app.to_string())
    }

    /// A machine with room for the request and its slot there, waiting up to the queue (or
    /// replay) timeout when every candidate is full.
    async fn pick(&self, c: &Constraint, conn: Conn) -> Result<(Target, Slot), Failure> {
        let inner = &self.inner;
        let queue_deadline = Instant::now() + c.timeout.unwrap_or(inner.config.queue_timeout);
        let mut wake_deadline: Option<Instant> = None;
        let port = conn.listener.public_port;
        loop {
            let freed = inner.load.freed();
            let targets = inner.catalog.targets(&c.app, port).ok_or_else(|| {
                Failure::new(
                    StatusCode::NOT_FOUND,
                    None,
                    format!(
                        "no app `{}` has machines here: check the name (`aloft apps list`) or run a machine for it (`aloft machine run`)",
                        c.app
                    ),
                )
            })?;
            let targets: Vec<&Target> = targets.iter().filter(|t| c.allows(t)).collect();
            let preference = Preference {
                own: &inner.config.region,
                prefer_region: c.prefer_region.as_deref(),
                catalog: inner.catalog.as_ref(),
            };
            let mut order = rank(&targets, &inner.load, &preference);
            if let Some(prefer) = &c.prefer_instance {
                order.sort_by_key(|t| t.machine_id != *prefer);
            }
            // Autostart: every running machine over its soft limit (or none running) wakes the
            // closest stopped one; this request waits for it only if nothing else has room.
            let room_under_soft = targets.iter().any(|t| {
                t.routable && inner.load.current(&t.machine_id).max(t.load) < t.limits.soft
            });
            if !room_under_soft
                && !c.from_edge
                && self.wake(&targets, &preference)
                && wake_deadline.is_none()
            {
                wake_deadline = Some(Instant::now() + inner.config.wake_timeout);
            }
            for t in order {
                // The worker side's word: it refuses when the machine filled up meanwhile.
                if let Some(slot) = inner.load.try_acquire(&t.machine_id, t.limits.hard) {
                    return Ok((t.clone(), slot));
                }
            }
            let any_routable = targets.iter().any(|t| t.routable);
            let deadline = wake_deadline.map_or(queue_deadline, |w| w.max(queue_deadline));
            let give_up = Instant::now() >= deadline
                || (!any_routable && wake_deadline.is_none() && c.fallback.is_none());
            if give_up {
                if let Some((own, how)) = &c.fallback {
                    let hard = match how {
                        Fallback::ForceSelf => u32::MAX,
                        Fallback::PreferSelf => own.limits.hard,
                    };
                    if let Some(slot) = inner.load.try_acquire(&own.machine_id, hard) {
                        return Ok((own.clone(), slot));
                    }
                }
                return Err(if wake_deadline.is_some() && !any_routable {
                    Failure::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        Some("PM03"),
                        format!(
                            "app `{}`'s machine did not start within {}s",
                            c.app,
                            inner.config.wake_timeout.as_secs()
                        ),
                    )
                } else if any_routable {
                    Failure::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        Some("PR04"),
                        format!(
                            "every machine of app `{}` is at its hard limit; try again shortly",
                            c.app
                        ),
                    )
                } else {
                    Failure::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        Some("PR01"),
                        format!(
                            "app `{}` has no started machine that serves port {port} over {}{}; start one with `aloft machine start`",
                            c.app,
                            if c.tcp { "TCP" } else { "HTTP" },
                            c.describe()
                        ),
                    )
                });
            }
            tokio::select! {
                () = freed => {}
                () = tokio::time::sleep_until(deadline.into()) => {}
                // Machines that start or pass their checks are found on the next look.
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    /// Starts the closest wakeable machine among `targets` unless one is starting already;
    /// whether one is (so a request may wait for it).
    fn wake(&self, targets: &[&Target], preference: &Preference<'_>) -> bool {
        let timeout = self.inner.config.wake_timeout;
        let mut woken = self.inner.woken.lock().expect("lock");
        woken.retain(|_, at| at.elapsed() < timeout);
        let mut waking = self.inner.waking.lock().expect("lock");
        // A start asked for and not answered yet, or one answered whose checks do not pass
        // yet. A machine woken and then stopped again is wakeable again.
        let starting = targets.iter().any(|t| {
            t.state == MachineState::Starting
                || waking.contains(&t.machine_id)
                || (t.state == MachineState::Started
                    && !t.routable
                    && woken.contains_key(&t.machine_id))
        });
        if starting {
            return true;
        }
        let Some(t) = targets
            .iter()
            .filter(|t| t.wakeable())
            .min_by_key(|t| preference.distance(&t.region))
        else {
            return false;
        };
        woken.insert(t.machine_id.clone(), Instant::now());
        waking.insert(t.machine_id.clone());
        self.inner.metrics.count(Event::Autostart, &t.app);
        let (proxy, target) = (self.clone(), (*t).clone());
        tokio::spawn(async move {
            // However the start ends (even by a panic), the machine may be woken again.
            let _done = NotWaking(&proxy, &target.machine_id);
            tracing::info!(
                machine = target.machine_id,
                app = target.app,
                "autostart: starting a machine for a request"
            );
            let start = proxy.inner.catalog.start(&target);
            let failed = match tokio::time::timeout(timeout, start).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some(format!("no answer within {}s", timeout.as_secs())),
            };
            if let Some(e) = failed {
                tracing::warn!(machine = target.machine_id, "autostart failed: {e}");
                // Not tried again at once: requests wait (or time out) meanwhile.
                tokio::time::sleep(WAKE_RETRY).await;
            }
        });
        true
    }

    /// Whether `machine` was started by autostart within the wake timeout (its process may not
    /// listen yet: a refused connection is retried on it).
    fn just_woken(&self, machine: &str) -> bool {
        self.inner
            .woken
            .lock()
            .expect("lock")
            .get(machine)
            .is_some_and(|at| at.elapsed() < self.inner.config.wake_timeout)
    }

    /// Autostop, every `interval` until `shutdown`: per app and region, when the machines
    /// running exceed those over their soft limit by more than one, one idle machine (running
    /// and with nothing in flight for a whole interval) is stopped, or suspended; a lone idle
    /// machine is stopped too. Never below `min_machines_running` in the app's primary region.
    pub async fn autostop(&self, interval: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut every = tokio::time::interval(interval);
        // When each machine was first seen running: one that just started (autostart among
        // others) has not been idle for an interval yet.
        let mut running_since: HashMap<String, Instant> = HashMap::new();
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = &mut shutdown => return,
            }
            let targets = self.inner.catalog.all_targets();
            running_since.retain(|id, _| targets.iter().any(|t| t.routable && t.machine_id == *id));
            for t in targets.iter().filter(|t| t.routable) {
                running_since
                    .entry(t.machine_id.clone())
                    .or_insert_with(Instant::now);
            }
            let load = &self.inner.load;
            let idle = |id: &str| {
                let up = running_since
                    .get(id)
                    .map_or(Duration::ZERO, Instant::elapsed);
                load.idle_for(id).min(up)
            };
            for t in autostop_choices(&targets, load, &idle, interval) {
                let suspend = t.autostop == Autostop::Suspend;
                tracing::info!(
                    machine = t.machine_id,
                    app = t.app,
                    suspend,
                    "autostop: an idle machine"
                );
                self.inner.metrics.count(Event::Autostop, &t.app);
                if let Err(e) = self.inner.catalog.stop(&t, suspend).await {
                    tracing::warn!(machine = t.machine_id, "autostop failed: {e}");
                }
            }
        }
    }

    /// The request's headers as the machine gets them.
    fn forward_headers(
        &self,
        mut h: HeaderMap,
        uri: &Uri,
        conn: Conn,
        request_id: &str,
        upgrade: bool,
    ) -> HeaderMap {
        strip_hop_by_hop(&mut h, upgrade);
        if !h.contains_key(header::HOST)
            && let Some(a) = uri.authority()
            && let Ok(v) = HeaderValue::from_str(a.as_str())
        {
            h.insert(header::HOST, v);
        }
        let ip = conn.peer.ip();
        let ip_text = canonical_ip(ip);
        // Clients cannot choose their own address.
        h.insert(FLY_CLIENT_IP, value(&ip_text));
        let xff = match h.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prior) if !prior.trim().is_empty() => format!("{prior}, {ip_text}"),
            _ => ip_text,
        };
        h.insert(X_FORWARDED_FOR, value(&xff));
        let port = HeaderValue::from(conn.listener.public_port);
        let https = conn.listener.https;
        h.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(if https { "https" } else { "http" }),
        );
        h.insert(
            X_FORWARDED_SSL,
            HeaderValue::from_static(if https { "on" } else { "off" }),
        );
        h.insert(X_FORWARDED_PORT, port.clone());
        h.insert(FLY_FORWARDED_PORT, port);
        h.insert(FLY_REGION, self.inner.region.clone());
        h.insert(FLY_REQUEST_ID, value(request_id));
        h.remove(&FLY_REPLAY_SRC);
        for internal in [&ALOFT_TARGET, &ALOFT_PORT, &ALOFT_WORKER_TOKEN] {
            h.remove(internal);
        }
        append_via(&mut h);
        h
    }

    /// On the worker listener: checks the edge's token and takes the public port the client
    /// used from the request.
    fn edge_request(&self, h: &HeaderMap, conn: Conn) -> Result<Conn, Failure> {
        let token = h.get(&ALOFT_WORKER_TOKEN).map(HeaderValue::as_bytes);
        let expected = self.inner.config.worker_token.as_deref().map(str::as_bytes);
        if token.is_none() || !constant_time_eq(token, expected) {
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                None,
                "the worker listener takes requests from the cluster's proxies only",
            ));
        }
        let port = header_str(h, &ALOFT_PORT)
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    None,
                    "aloft-port is missing or invalid",
                )
            })?;
        if !h.contains_key(&ALOFT_TARGET) {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                None,
                "aloft-target is missing",
            ));
        }
        Ok(Conn {
            listener: Listener {
                public_port: port,
                ..conn.listener
            },
            ..conn
        })
    }

    /// The headers that tell the worker on `target`'s host which machine and port.
    fn to_worker(&self, h: &mut HeaderMap, target: &Target, conn: Conn) {
        h.insert(ALOFT_TARGET, value(&target.machine_id));
        h.insert(ALOFT_PORT, HeaderValue::from(conn.listener.public_port));
        if let Some(token) = &self.inner.config.worker_token {
            h.insert(ALOFT_WORKER_TOKEN, value(token));
        }
    }

    fn error_page(&self, f: Failure) -> Response<ProxyBody> {
        let text = match f.code {
            Some(code) => format!("aloft proxy: {} ({code})\n", f.message),
            None => format!("aloft proxy: {}\n", f.message),
        };
        let mut resp = Response::new(body::full(text));
        *resp.status_mut() = f.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(code) = f.code {
            h.insert("aloft-error-code", HeaderValue::from_static(code));
        }
        if f.refused {
            h.insert(ALOFT_REFUSED, HeaderValue::from_static("1"));
        }
        if f.status == StatusCode::TOO_MANY_REQUESTS {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

impl Constraint {
    /// Where a request bounced by `target` with `r` may go next.
    fn replay(r: &Replay, app: &str, target: Target) -> Constraint {
        Constraint {
            app: r.app.clone().unwrap_or_else(|| app.to_string()),
            regions: r.regions.clone(),
            instance: r.instance.clone(),
            prefer_instance: r.prefer_instance.clone(),
            excluded: if r.elsewhere {
                vec![target.machine_id.clone()]
            } else {
                Vec::new()
            },
            prefer_region: None,
            timeout: r.timeout,
            fallback: r.fallback.map(|f| (target, f)),
            tcp: false,
            from_edge: false,
        }
    }

    /// After a connection to `target` failed: try the others.
    fn exclude_failed(&mut self, target: &Target) {
        self.excluded.push(target.machine_id.clone());
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.regions.is_empty() {
            parts.push(format!("in region {}", self.regions.join(" or ")));
        }
        if let Some(i) = &self.instance {
            parts.push(format!("with id {i}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join(", "))
        }
    }
}

/// HTTP/1.1 and HTTP/2 for clients, with the protection's header limits and timeouts.
fn http_builder(p: &Protection) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(p.header_read_timeout)
        .max_buf_size(p.max_header_bytes.max(8192))
        .max_headers(p.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(p.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

fn socket(t: &Target) -> SocketAddr {
    SocketAddr::new(t.address, t.port)
}

/// Equal, in a time that does not depend on where they differ.
fn constant_time_eq(a: Option<&[u8]>, b: Option<&[u8]>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) if a.len() == b.len() => {
            a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        }
        _ => false,
    }
}

fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

fn header_str(h: &HeaderMap, name: &HeaderName) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// An IPv4 client on a dual-stack socket shows as itself, not as `::ffff:a.b.c.d`.
fn canonical_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// Removes hop-by-hop headers, and those `Connection` names; an upgrade keeps `Connection` and
/// `Upgrade`, which the machine needs to see.
fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !(upgrade && *n == header::UPGRADE))
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        if upgrade && n == header::CONNECTION {
            continue;
        }
        h.remove(n);
    }
    if !upgrade {
        h.remove(header::UPGRADE);
    }
}

fn append_via(h: &mut HeaderMap) {
    let via = match h.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {VIA}"),
        None => VIA.to_string(),
    };
    h.insert(header::VIA, value(&via));
}

/// What every response carries: the request id, `Server` (unless the machine set one), `Via`.
fn finish_headers(h: &mut HeaderMap, request_id: &str) {
    h.insert(FLY_REQUEST_ID, value(request_id));
    if !h.contains_key(header::SERVER) {
        h.insert(header::SERVER, HeaderValue::from_static("aloft"));
    }
    append_via(h);
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// The machines autostop stops now: at most one per app and region, idle (by `idle_for`) for
/// at least `idle`.
fn autostop_choices(
    targets: &[Target],
    load: &Load,
    idle_for: &dyn Fn(&str) -> Duration,
    idle: Duration,
) -> Vec<Target> {
    let mut groups: HashMap<(&str, &str), Vec<&Target>> = HashMap::new();
    for t in targets.iter().filter(|t| t.routable) {
        groups.entry((&t.app, &t.region)).or_default().push(t);
    }
    let mut chosen = Vec::new();
    for ((_, region), running) in groups {
        let n = running.len();
        let over_soft = running
            .iter()
            .filter(|t| load.current(&t.machine_id) >= t.limits.soft)
            .count();
        let excess = n.saturating_sub(over_soft + 1);
        let min = running
            .iter()
            .filter(|t| t.primary_region == region)
            .map(|t| t.min_machines_running as usize)
            .max()
            .unwrap_or(0);
        let lone_idle = n == 1;
        if (excess == 0 && !lone_idle) || n <= min {
            continue;
        }
        if let Some(t) = running
            .iter()
            .filter(|t| t.autostop != Autostop::Off && idle_for(&t.machine_id) >= idle)
            .min_by_key(|t| t.machine_id.clone())
        {
            chosen.push((*t).clone());
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Limits;

    fn running(id: &str, region: &str, min: u32) -> Target {
        Target {
            machine_id: id.into(),
            app: "a".into(),
            region: region.into(),
            address: "fdaa::1".parse().unwrap(),
            port: 8080,
            limits: Limits::default(),
            state: MachineState::Started,
            routable: true,
            autostart: true,
            autostop: Autostop::Stop,
            min_machines_running: min,
            primary_region: "ams".into(),
            force_https: false,
            handlers: Default::default(),
            via: None,
            load: 0,
        }
    }

    fn ids(targets: Vec<Target>) -> Vec<String> {
        let mut ids: Vec<String> = targets.into_iter().map(|t| t.machine_id).collect();
        ids.sort();
        ids
    }

    #[test]
    fn autostop_keeps_the_minimum_in_the_primary_region_only() {
        let load = Load::default();
        let targets = vec![
            running("ams-1", "ams", 2),
            running("ams-2", "ams", 2),
            running("sjc-1", "sjc", 2),
        ];
        // ams is at its minimum; sjc's lone idle machine stops.
        assert_eq!(
            ids(autostop_choices(
                &targets,
                &load,
                &|id| load.idle_for(id),
                Duration::ZERO
            )),
            ["sjc-1"]
        );
        let mut off = running("sjc-1", "sjc", 0);
        off.autostop = Autostop::Off;
        assert!(
            autostop_choices(&[off], &load, &|id| load.idle_for(id), Duration::ZERO).is_empty()
        );
    }

    #[test]
    fn autostop_leaves_a_machine_for_every_one_over_its_soft_limit() {
        let load = Arc::new(Load::default());
        let mut targets = vec![running("a", "ams", 0), running("b", "ams", 0)];
        for t in &mut targets {
            t.limits.soft = 1;
        }
        let _busy = load.try_acquire("a", 25).unwrap();
        // One of two over its soft limit: excess = 2 - (1 + 1) = 0, nothing stops.
        assert!(
            autostop_choices(&targets, &load, &|id| load.idle_for(id), Duration::ZERO).is_empty()
        );
    }
}
