//! What the edge tests share: a fixed catalog, a machine, a proxy with short timeouts.

#![allow(dead_code)]

use aloft_catalog::{Catalog, Limits, PortHandlers, PublicPort, Target};
use aloft_proxy::clients::ClientLimits;
use aloft_proxy::{Listener, Proxy, ProxyConfig};
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
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// Slack on top of every timeout: a loaded 2-core machine may be slow to close.
pub const SLACK: Duration = Duration::from_secs(5);

/// Apps and their machines, as a test sets them.
#[derive(Default)]
pub struct Table {
    pub apps: Mutex<HashMap<String, Vec<Target>>>,
}

#[async_trait::async_trait]
impl Catalog for Table {
    fn targets(&self, app: &str, _port: u16) -> Option<Arc<Vec<Target>>> {
        self.apps.lock().get(app).cloned().map(Arc::new)
    }
    fn ports(&self) -> Vec<PublicPort> {
        Vec::new()
    }
    fn all_targets(&self) -> Vec<Target> {
        self.apps.lock().values().flatten().cloned().collect()
    }
    async fn start(&self, _: &Target) -> Result<(), String> {
        Ok(())
    }
    async fn stop(&self, _: &Target, _: bool) -> Result<(), String> {
        Ok(())
    }
}

pub fn target(id: &str, addr: SocketAddr) -> Target {
    Target {
        machine_id: id.into(),
        app: "hello".into(),
        region: "local".into(),
        address: addr.ip(),
        port: addr.port(),
        network: None,
        limits: Limits {
            soft: 1000,
            hard: 1000,
            ..Limits::default()
        },
        via: None,
        load: 0,
        state: MachineState::Started,
        routable: true,
        autostart: false,
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

/// A machine answering `ok` after reading the body, or (with `hold`) never answering.
pub async fn machine(hold: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| async move {
                    if hold {
                        std::future::pending::<()>().await;
                    }
                    let _ = req.into_body().collect().await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok\n"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Short timeouts, no request budget (the tests send many requests from one address).
pub fn config() -> ProxyConfig {
    let mut c = ProxyConfig::new("local");
    c.queue_timeout = Duration::from_millis(300);
    let p = &mut c.protection;
    p.header_read_timeout = Duration::from_millis(500);
    p.idle_timeout = Duration::from_millis(700);
    p.body_idle_timeout = Duration::from_millis(500);
    p.clients = ClientLimits {
        max_connections: 50_000,
        requests_per_second: 0,
    };
    c
}

pub struct Running {
    pub addr: SocketAddr,
    pub proxy: Proxy,
    pub table: Arc<Table>,
}

pub async fn start(config: ProxyConfig, at: Listener) -> Running {
    let table = Arc::new(Table::default());
    let proxy = Proxy::new(config, table.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let p = proxy.clone();
    tokio::spawn(async move { p.serve(listener, at, std::future::pending()).await });
    Running { addr, proxy, table }
}

/// With machine `m1` of app `hello` at `addr`.
pub async fn with_hello(r: &Running, hold: bool) {
    let addr = machine(hold).await;
    r.table
        .apps
        .lock()
        .insert("hello".into(), vec![target("m1", addr)]);
}

/// Reads until the proxy closes `s` (what it read), or panics after `within`.
pub async fn closed_within(s: &mut TcpStream, within: Duration, what: &str) -> Vec<u8> {
    let mut out = Vec::new();
    match tokio::time::timeout(within, s.read_to_end(&mut out)).await {
        Ok(_) => out,
        Err(_) => panic!("{what}: still open after {within:?}"),
    }
}
