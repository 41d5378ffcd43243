//! The proxy object and what configures it; the request path lives in the submodules, one per
//! phase or role, in the order a request meets them:
//!
//! - [`listen`]: the HTTP listeners and connections, and one request's start and end (the
//!   [`ctx::Ctx`] it carries, the error page, the metrics and access log);
//! - [`edge`]: a client's request (rate limit, app from `Host`, HTTPS redirect, client hints);
//! - [`worker`]: an edge's request on the worker listener (its token, the machine it names,
//!   and the `CONNECT` tunnels of passed-through connections);
//! - [`forward`]: the one forward-with-retries loop (pick, attempt, try another, resend,
//!   `fly-replay`), for HTTP requests from either role and for passed-through connections;
//! - [`pick`]: where a request may go ([`pick::Constraint`]) and the machine with room for it;
//! - [`wake`]: autostart and autostop;
//! - [`headers`]: the forwarding and internal headers, and the PROXY protocol header;
//! - [`tcp`]: the non-HTTP public ports.
//!
//! The cut differs from a plain `listen/edge/worker/forward/headers/wake/tcp` in three places:
//! the request context has a module of its own (`ctx`), which every phase uses; choosing a
//! machine (`pick`) is its own module because the forward loop (for requests and for
//! passed-through connections) and the worker's tunnel both use it, and it in turn uses
//! `wake`; and the worker's `CONNECT` tunnel lives in `worker` (not `tcp`), so that `tcp`
//! (which serves `http` ports through `listen`) and `listen` (which dispatches to `worker`) do
//! not import each other. The modules import each other one way only: `edge` and `worker` ->
//! `forward` -> `ctx` -> `pick`, which calls `wake`; `headers` is below them all; `listen`
//! calls `edge` and `worker`; `tcp` calls `listen` (for its `http` ports) and `forward`.
//!
//! The errors users see carry the reference's codes: PC01 refused connection, PR01 no machine
//! to take it, PR04 every machine at its hard limit, PA01 body too large to replay, PA03
//! invalid `fly-replay`.

use crate::body::ProxyBody;
use crate::clients::{ClientLimits, Clients};
use crate::metrics::Metrics;
use crate::tls::{self, Certificates, Domains};
use aloft_catalog::Load;
use aloft_catalog::{Catalog, Target};
use aloft_http::conn::Bounds;
use http::StatusCode;
use http::header::HeaderValue;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod ctx;
mod edge;
mod forward;
mod headers;
mod listen;
mod pick;
mod tcp;
mod wake;
mod worker;

/// How long a connection to another host's worker may take to open, or its data to be
/// acknowledged, before that host counts as unreachable.
const WORKER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long an idle pooled connection to a machine (or another host's worker) is kept.
const UPSTREAM_IDLE: Duration = Duration::from_secs(60);

/// Limits that protect the proxy from slow, large or too many requests.
#[derive(Debug, Clone, Copy)]
pub struct Protection {
    /// A client must send its first request's headers within this of connecting (the
    /// HTTP/1-or-HTTP/2 sniff, the HTTP/2 preface and the TLS handshake included), and every
    /// later request's headers within this (slowloris).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (gracefully: HTTP/2 gets
    /// a GOAWAY). Edges' connections on the worker listener get longer than edges pool them.
    pub idle_timeout: Duration,
    /// A request body that sends nothing for this long fails with 408.
    pub body_idle_timeout: Duration,
    /// A tunnel (an upgraded connection such as a WebSocket, a passed-through TCP connection,
    /// an edge's tunnel on the worker listener) with no bytes either way for this long is
    /// closed, and its machine's slot freed. 10 minutes: longer than the pings of WebSocket and
    /// database clients, shorter than forever.
    pub tunnel_idle_timeout: Duration,
    /// HTTP/2: how often a connection with requests in flight is pinged, and how long the
    /// answer may take before the connection is closed.
    pub h2_keep_alive_interval: Duration,
    pub h2_keep_alive_timeout: Duration,
    /// HTTP/2: streams one connection may have open at once; more are refused (`REFUSED_STREAM`).
    pub max_concurrent_streams: u32,
    /// The most bytes of headers one request may have (HTTP/1 read buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// The most header fields one request may have.
    pub max_headers: usize,
    pub clients: ClientLimits,
    /// Connections one address may have open on the worker listener (edges pool theirs; the
    /// token is only checked per request).
    pub worker_max_connections: u32,
}

impl Default for Protection {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_idle_timeout: Duration::from_secs(60),
            tunnel_idle_timeout: Duration::from_secs(600),
            h2_keep_alive_interval: Duration::from_secs(20),
            h2_keep_alive_timeout: Duration::from_secs(20),
            max_concurrent_streams: 200,
            max_header_bytes: 64 << 10,
            max_headers: 100,
            clients: ClientLimits {
                max_connections: 512,
                requests_per_second: 1000,
            },
            worker_max_connections: 2048,
        }
    }
}

impl Protection {
    /// The bounds on the idle phases of a connection on `listener`: an edge's connection to the
    /// worker listener may idle as long as edges pool it, but must start as soon as any other.
    fn bounds(&self, listener: Listener) -> Bounds {
        Bounds {
            first_bytes: self.header_read_timeout,
            idle: if listener.worker {
                worker_protection(self).idle_timeout
            } else {
                self.idle_timeout
            },
            body_idle: self.body_idle_timeout,
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
    /// The proxy's count of requests in flight per machine. Made before the proxy when others
    /// read it too (the host agent drains a stopping machine's requests).
    pub load: Arc<Load>,
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
            load: Arc::default(),
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
    /// Connections open per address on the worker listener.
    worker_clients: Arc<Clients>,
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
    waking: Mutex<HashSet<String>>,
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
            let served = served(&catalog);
            tls::server_config(certificates, served, config.tls_default_name.clone(), true)
                .inspect_err(|e| tracing::error!("HTTPS is off: {e}"))
                .ok()
        });
        let load = config.load.clone();
        Self {
            inner: Arc::new(Inner {
                http: Arc::new(http_builder(&config.protection)),
                http_worker: Arc::new(http_builder(&worker_protection(&config.protection))),
                https,
                region: headers::value(&config.region),
                clients: Clients::new(config.protection.clients),
                worker_clients: Clients::new(ClientLimits {
                    max_connections: config.protection.worker_max_connections,
                    requests_per_second: 0,
                }),
                config,
                catalog,
                load,
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

    /// The proxy's metrics in Prometheus' text format: series of machines the catalog no longer
    /// lists (destroyed) are dropped first.
    pub fn metrics_text(&self) -> String {
        let targets = self.inner.catalog.all_targets();
        let machines: HashSet<&str> = targets.iter().map(|t| t.machine_id.as_str()).collect();
        self.inner.metrics.keep_machines(&machines);
        let mut load = self.inner.load.snapshot();
        load.retain(|(machine, _)| machines.contains(machine.as_str()));
        self.inner.metrics.render(&load)
    }

    /// Whether `app` is an app the catalog knows on `port`: only those get metrics series.
    fn known_app(&self, app: &str, port: u16) -> bool {
        self.inner.catalog.targets(app, port).is_some()
    }

    /// The machines' load as this proxy counts it.
    pub fn load(&self) -> &Arc<Load> {
        &self.inner.load
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
        .max_header_list_size(u32::try_from(p.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(p.max_concurrent_streams)
        .keep_alive_interval(p.h2_keep_alive_interval)
        .keep_alive_timeout(p.h2_keep_alive_timeout);
    builder
}

/// The protection of the worker listener: edges' idle pooled connections are kept for longer
/// than edges pool them, so an edge never sends on a connection being closed.
fn worker_protection(p: &Protection) -> Protection {
    Protection {
        header_read_timeout: UPSTREAM_IDLE + Duration::from_secs(15),
        idle_timeout: UPSTREAM_IDLE + Duration::from_secs(15),
        ..*p
    }
}

/// Whether an app has machines in `catalog` (on any port: `targets` is `None` only for an app
/// with none), so that the TLS side mints certificates only for apps' names that are served.
fn served(catalog: &Arc<dyn Catalog>) -> tls::Served {
    let catalog = catalog.clone();
    Arc::new(move |app| catalog.targets(app, 443).is_some())
}

/// Where a machine on this host listens.
fn socket(t: &Target) -> SocketAddr {
    SocketAddr::new(t.address, t.port)
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
