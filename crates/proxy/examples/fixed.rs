//! aloft's proxy in front of fixed machines, for benchmarks against other proxies
//! (`bench/proxy.sh`): no agent, no catalog beyond the command line.
//!
//!   cargo run --release -p aloft-proxy --example fixed -- LISTEN APP=ADDR[,ADDR...] [THREADS]
//!       [--tls LISTEN CA_DIR]
//!   e.g.  fixed 127.0.0.1:8081 bench=127.0.0.1:9000 1 --tls 127.0.0.1:8444 /tmp/ca
//!
//! With `--tls`, HTTPS too, with a certificate for `<APP>.localhost` from a development CA kept
//! in CA_DIR (given to clients that send no SNI as well).

use aloft_catalog::{Catalog, Limits, PortHandlers, PublicPort, Target};
use aloft_proxy::tls::{Certificates, DevCa};
use aloft_proxy::{Listener, Proxy, ProxyConfig};
use aloft_types::MachineState;
use aloft_types::config::Autostop;
use std::net::SocketAddr;
use std::sync::Arc;

struct Fixed {
    app: String,
    targets: Arc<Vec<Target>>,
}

#[async_trait::async_trait]
impl Catalog for Fixed {
    fn targets(&self, app: &str, _port: u16) -> Option<Arc<Vec<Target>>> {
        (app == self.app).then(|| self.targets.clone())
    }

    fn ports(&self) -> Vec<PublicPort> {
        Vec::new()
    }

    fn all_targets(&self) -> Vec<Target> {
        self.targets.to_vec()
    }

    async fn start(&self, _: &Target) -> Result<(), String> {
        Err("fixed machines are always started".into())
    }

    async fn stop(&self, _: &Target, _: bool) -> Result<(), String> {
        Err("fixed machines are never stopped".into())
    }
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: fixed LISTEN APP=ADDR[,ADDR...] [THREADS] [--tls LISTEN CA_DIR]";
    let (args, tls) = match args.iter().position(|a| a == "--tls") {
        Some(i) => {
            let listen: SocketAddr = args.get(i + 1).and_then(|a| a.parse().ok()).ok_or(usage)?;
            let dir = args.get(i + 2).ok_or(usage)?;
            (args[..i].to_vec(), Some((listen, dir.clone())))
        }
        None => (args, None),
    };
    let listen: SocketAddr = args.first().and_then(|a| a.parse().ok()).ok_or(usage)?;
    let (app, addrs) = args.get(1).and_then(|a| a.split_once('=')).ok_or(usage)?;
    let threads: usize = args.get(2).and_then(|t| t.parse().ok()).unwrap_or(1);
    let targets = addrs
        .split(',')
        .enumerate()
        .map(|(i, a)| {
            let addr: SocketAddr = a.parse().map_err(|_| format!("`{a}` is not ip:port"))?;
            Ok(Target {
                machine_id: format!("m{i}"),
                app: app.to_string(),
                region: "local".into(),
                address: addr.ip(),
                port: addr.port(),
                network: None,
                limits: Limits {
                    soft: 10_000,
                    hard: 10_000,
                    ..Limits::default()
                },
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
                via: None,
                load: 0,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let catalog = Arc::new(Fixed {
        app: app.to_string(),
        targets: Arc::new(targets),
    });
    let mut config = ProxyConfig::new("local");
    config.protection.clients.requests_per_second = 0;
    config.protection.clients.max_connections = 100_000;
    if let Some((_, dir)) = &tls {
        let ca = DevCa::load_or_create(std::path::Path::new(dir))
            .map_err(|e| format!("the development CA in {dir}: {e}"))?;
        config.tls = Some(Arc::new(Certificates::new(ca, None, Arc::default())));
        config.tls_default_name = Some(format!("{app}.localhost"));
    }
    // One thread does everything, as one nginx worker or one HAProxy thread does.
    let mut runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    runtime
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| format!("binding {listen}: {e}"))?;
            let proxy = Proxy::new(config, catalog);
            let http = Listener::http(80);
            let https = match tls {
                Some((at, _)) => Some(
                    tokio::net::TcpListener::bind(at)
                        .await
                        .map_err(|e| format!("binding {at}: {e}"))?,
                ),
                None => None,
            };
            let serve_https = async {
                if let Some(listener) = https {
                    let at = Listener::https(443);
                    proxy.serve(listener, at, std::future::pending()).await;
                }
            };
            tokio::join!(
                proxy.serve(listener, http, std::future::pending()),
                serve_https
            );
            Ok(())
        })
}
