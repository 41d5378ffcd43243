//! The host role: everything one host runs, wired in one place for `aloft server host`,
//! `aloft dev up` and the test harness.
//!
//! Order of start (each step needs the one before): internal DNS's sockets are bound (so the
//! agent knows whether machines get `fdaa::3` as their name server), the proxy's load counter is
//! made, the agent opens with its [`AgentDeps`] (secrets from the control plane, the name
//! server, the drain) and reconciles, its API is served, the catalog starts (this host's
//! machines, or gossip merged with other hosts'), internal DNS and the proxy serve from it, and
//! the health checks, autostop and the heartbeat run. Every task is owned by the caller's
//! [`Supervisor`]; [`HostRole::shutdown`] is what the supervisor waits for besides its servers.

use crate::roles::certificates::CertificateSource;
use crate::supervisor::Supervisor;
use aloft_agent::secrets::ControlPlaneSecrets;
use aloft_agent::{Agent, AgentConfig, AgentDeps, spawn_health_checks, spawn_heartbeat};
use aloft_catalog::gossip::{ClusterCatalog, ClusterConfig};
use aloft_catalog::{Load, LocalCatalog};
use aloft_proxy::{Listener, Proxy, ProxyConfig};
use aloft_runtime::Runtime;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};

/// How one host is set up.
pub struct HostConfig {
    pub agent: AgentConfig,
    pub runtime: Arc<dyn Runtime>,
    /// The control plane's URL: secrets and volume keys at each start, and registration.
    pub control_plane: String,
    /// This host's credential (got when it joined): what it calls the control plane with.
    pub credential: String,
    /// The control plane's client (trusting only the pinned cluster CA for `https://`).
    pub control_http: reqwest::Client,
    /// Where the agent's API listens, and the URL the control plane reaches it at.
    pub agent_listener: TcpListener,
    pub agent_url: String,
    /// The proxy's settings; its `load` is made here and shared with the agent and gossip.
    pub proxy: ProxyConfig,
    pub listeners: ProxyListeners,
    /// How often idle machines of services with `autostop` are stopped.
    pub autostop_every: Duration,
    /// Where the proxy learns users' hostnames and certificates (into `proxy.domains`).
    /// `None`: only `<app>.localhost` names are served.
    pub certificates: Option<CertificateSource>,
    /// Gossip with other hosts (its `load` is replaced by the proxy's). `None`: the proxy and
    /// internal DNS route to this host's machines only (`dev up`).
    pub gossip: Option<ClusterConfig>,
}

/// The proxy's listeners.
pub struct ProxyListeners {
    /// Whether services' other public ports (raw TCP, `tls`, `proxy_proto`, HTTP on ports
    /// besides 80 and 443) are listened on at `http`'s address, at the service's own port
    /// number. Off where several hosts share one address (the test harness).
    pub public_ports: bool,
    /// Public HTTP (stands for port 80).
    pub http: TcpListener,
    /// Public HTTPS (stands for port 443).
    pub https: Option<TcpListener>,
    /// Where other hosts' edges send requests for this host's machines.
    pub worker: Option<TcpListener>,
    /// Prometheus metrics (`GET /metrics`).
    pub metrics: Option<TcpListener>,
}

/// A running host.
pub struct HostRole {
    pub agent: Agent,
    pub proxy: Proxy,
    catalog: Option<Arc<ClusterCatalog>>,
}

impl HostRole {
    /// Starts the host; its tasks belong to `supervisor`.
    pub async fn start(config: HostConfig, supervisor: &mut Supervisor) -> Result<HostRole> {
        let dns = bind_internal_dns(config.runtime.name()).await;
        let load = Arc::new(Load::default());
        let deps = AgentDeps {
            secrets: Some(Arc::new(ControlPlaneSecrets::new(
                config.control_http.clone(),
                &config.control_plane,
                &config.credential,
            ))),
            internal_dns: dns.is_some().then(|| aloft_dns::INTERNAL_DNS.to_string()),
            drain: Some(load.clone()),
        };
        let region = config.agent.region.clone();
        let agent = Agent::open(config.agent, config.runtime, deps)
            .await
            .context("starting the host agent")?;
        supervisor.serve("agent", config.agent_listener, agent.router());

        let local = Arc::new(LocalCatalog::new(agent.clone()));
        let (catalog, proxy_catalog, directory): (
            _,
            Arc<dyn aloft_catalog::Catalog>,
            Arc<dyn aloft_dns::server::Directory>,
        ) = match config.gossip {
            Some(gossip) => {
                let gossip = ClusterConfig {
                    load: load.clone(),
                    ..gossip
                };
                let cluster = Arc::new(ClusterCatalog::start(gossip, local).await?);
                (Some(cluster.clone()), cluster.clone(), cluster)
            }
            None => (None, local.clone(), local),
        };
        if let Some(sockets) = dns {
            supervisor.task(serve_internal_dns(sockets, directory, &region));
        }
        if let Some(source) = config.certificates {
            supervisor.task(source.spawn_sync(config.proxy.domains.clone()));
        }
        let proxy = Proxy::new(
            ProxyConfig {
                load,
                ..config.proxy
            },
            proxy_catalog,
        );
        supervisor.server(
            "proxy",
            serve_proxy(proxy.clone(), config.listeners, supervisor),
        );
        supervisor.task(spawn_health_checks(agent.clone()));
        let autostop = proxy.clone();
        let every = config.autostop_every;
        supervisor.task(tokio::spawn(async move {
            autostop.autostop(every, std::future::pending()).await;
        }));
        supervisor.task(spawn_heartbeat(
            agent.clone(),
            config.control_http,
            config.control_plane,
            config.credential,
            config.agent_url,
        ));
        Ok(HostRole {
            agent,
            proxy,
            catalog,
        })
    }

    /// Stops the agent's operations and gossip (machines keep running); what the supervisor
    /// waits for besides its servers.
    pub async fn shutdown(self) {
        self.agent.shutdown().await;
        if let Some(catalog) = self.catalog
            && let Ok(catalog) = Arc::try_unwrap(catalog)
        {
            catalog.shutdown().await;
        }
    }
}

/// Serves the proxy's listeners until the supervisor stops.
fn serve_proxy(
    proxy: Proxy,
    listeners: ProxyListeners,
    supervisor: &Supervisor,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let stop = supervisor.stop_signal();
    tokio::spawn(async move {
        let ports_ip = listeners.http.local_addr()?.ip();
        let ports = async {
            if listeners.public_ports {
                proxy
                    .serve_ports(ports_ip, &[80, 443], stop.stopping())
                    .await;
            }
        };
        let metrics = async {
            if let Some(l) = listeners.metrics {
                proxy.serve_metrics(l, stop.stopping()).await;
            }
        };
        let https = async {
            if let Some(l) = listeners.https {
                proxy.serve(l, Listener::https(443), stop.stopping()).await;
            }
        };
        let worker = async {
            if let Some(l) = listeners.worker {
                proxy.serve(l, Listener::worker(), stop.stopping()).await;
            }
        };
        tokio::join!(
            ports,
            proxy.serve(listeners.http, Listener::http(80), stop.stopping()),
            https,
            worker,
            metrics,
        );
        Ok(())
    })
}

/// Where internal DNS listens (UDP and TCP port 53 at `fdaa::3`, on the machines' bridge).
pub(crate) struct DnsSockets {
    udp: UdpSocket,
    tcp: TcpListener,
}

/// Binds internal DNS's sockets. `None` with the sim runtime (no bridge), or when the address
/// cannot be bound (another cloud on this host has it): machines then get the host's
/// resolvers.
async fn bind_internal_dns(runtime: &str) -> Option<DnsSockets> {
    if runtime == "sim" {
        return None;
    }
    let at = SocketAddr::new(aloft_dns::INTERNAL_DNS.into(), 53);
    let bound = async {
        let udp = UdpSocket::bind(at).await?;
        let tcp = TcpListener::bind(at).await?;
        Ok::<_, std::io::Error>(DnsSockets { udp, tcp })
    };
    match bound.await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                "internal DNS is off: cannot listen on {at}: {e}; machines use the host's resolvers"
            );
            None
        }
    }
}

/// Serves internal DNS on `sockets` from `directory`.
fn serve_internal_dns(
    sockets: DnsSockets,
    directory: Arc<dyn aloft_dns::server::Directory>,
    region: &str,
) -> tokio::task::JoinHandle<()> {
    let upstreams = aloft_dns::server::host_upstreams();
    let dns = Arc::new(aloft_dns::server::Dns::new(
        directory,
        upstreams,
        region.to_string(),
    ));
    tokio::spawn(async move {
        tokio::join!(
            dns.clone().serve(sockets.udp, std::future::pending()),
            dns.serve_tcp(sockets.tcp, std::future::pending())
        );
    })
}
