//! The hosts of a cluster as one catalog (this module was the `aloft-cluster` crate).
//!
//! Every host runs a [`ClusterCatalog`]: it publishes this host's machines
//! ([`MachineEntry`](crate::MachineEntry), no secrets), their load, and where this host's proxy
//! worker listener and agent are, under its own keys in a `chitchat` gossip cluster (scuttlebutt
//! anti-entropy, phi-accrual failure detection), each value signed with the cluster's secret
//! and a version that only grows ([`seal`]). It reads the other live hosts' keys into a copy of
//! its own, and answers the proxy's [`Catalog`] and internal DNS's [`Directory`] from this
//! host's machines (read live from the agent) merged with that copy. Its three tasks: `publish`
//! (this host's keys), `members` (the other hosts' copy, refusing values older than those it
//! took: `versions`), `rtt` (round trips to the other hosts).
//!
//! Nothing on the request path waits for gossip: a watcher task swaps in a new copy of the other
//! hosts' machines whenever gossip changes it, and lookups only clone an `Arc`. The chitchat lock
//! is never taken on the request path. A host the failure detector declares dead leaves the copy
//! (its machines leave routing); if gossip stops altogether, the last copy keeps serving.
//!
//! It also measures the round-trip time to every other host (a TCP handshake with its worker
//! listener every 2 s, median of the last 5), which the proxy ranks other regions by.

mod members;
mod publish;
mod rtt;
pub mod seal;
mod versions;

use crate::load::Load;
use crate::local::LocalCatalog;
use crate::route::Catalog;
use crate::target::{PublicPort, Target};
use crate::view::{CatalogView, Placed};
use aloft_dns::names::Entry;
use aloft_dns::server::Directory;
use anyhow::Context;
use async_trait::async_trait;
use chitchat::transport::UdpTransport;
use chitchat::{
    ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, ProtocolVersion,
    spawn_chitchat,
};
use members::watch_members;
use parking_lot::Mutex;
use publish::{Publisher, publish};
use rtt::measure;
use seal::{Clock, Seal};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The key a host publishes itself under.
const HOST_KEY: &str = "host";
/// Prefix of a machine's key (`m:<id>`), holding its [`MachineEntry`](crate::MachineEntry) as
/// JSON.
const MACHINE_PREFIX: &str = "m:";
/// Prefix of a machine's load key (`l:<id>`): requests in flight, absent when none.
const LOAD_PREFIX: &str = "l:";

/// How a host joins the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This host's id (unique in the cluster).
    pub host_id: String,
    pub region: String,
    /// Where this host gossips (UDP).
    pub gossip: SocketAddr,
    /// The address other hosts gossip with this one at (`gossip` if `None`).
    pub advertise: Option<SocketAddr>,
    /// Members to join through (`host:port`); any one that answers will do.
    pub seeds: Vec<String>,
    /// What gossip values are sealed with (every host's gossip key, `HostKeys::gossip`).
    pub gossip_key: String,
    /// What this host sends another host's agent to autostart a machine there (the peer key,
    /// `HostKeys::peer`).
    pub peer_token: String,
    /// This host's proxy worker listener, as other hosts reach it.
    pub worker: SocketAddr,
    /// This host's agent, as other hosts reach it (`http://host:port`).
    pub agent: String,
    /// How often this host gossips with a few others and publishes its machines' load.
    pub gossip_interval: Duration,
    /// This host's proxy's count of requests in flight per machine, published with the machines.
    pub load: Arc<Load>,
}

/// What a host publishes about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    pub id: String,
    pub region: String,
    pub worker: SocketAddr,
    pub agent: String,
}

/// The other live hosts and their machines, as of the last gossip change.
#[derive(Default)]
struct Remote {
    hosts: Vec<HostRecord>,
    machines: Vec<Placed>,
}

/// This host's machines merged with the other hosts': the proxy's and DNS's catalog.
pub struct ClusterCatalog {
    local: Arc<LocalCatalog>,
    handle: Option<ChitchatHandle>,
    remote: watch::Receiver<Arc<Remote>>,
    /// The merged view, and the local view and remote copy it was made from.
    merged: Mutex<Option<Merged>>,
    /// Measured round-trip time to each other region's nearest host.
    rtts: Arc<Mutex<Arc<HashMap<String, Duration>>>>,
    http: reqwest::Client,
    peer_token: String,
    tasks: Vec<JoinHandle<()>>,
}

struct Merged {
    local: Arc<CatalogView>,
    remote: Arc<Remote>,
    view: Arc<CatalogView>,
}

impl ClusterCatalog {
    /// Joins the cluster, publishing `local`'s machines.
    pub async fn start(config: ClusterConfig, local: Arc<LocalCatalog>) -> anyhow::Result<Self> {
        let listen = config.gossip;
        let advertise = config.advertise.unwrap_or(listen);
        let seal = Seal::new(&config.gossip_key);
        let generation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let me = ChitchatId::new(config.host_id.clone(), generation, advertise);
        let interval = config.gossip_interval;
        let chitchat_config = ChitchatConfig {
            chitchat_id: me.clone(),
            cluster_id: seal.cluster_id(),
            gossip_interval: interval,
            listen_addr: listen,
            seed_nodes: config.seeds.clone(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: 8.0,
                sampling_window_size: 1000,
                max_interval: Duration::from_secs(10),
                initial_interval: interval * 5,
                dead_node_grace_period: Duration::from_secs(3600),
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: ProtocolVersion::V0,
        };
        let record = HostRecord {
            id: config.host_id.clone(),
            region: config.region.clone(),
            worker: config.worker,
            agent: config.agent.clone(),
        };
        // Signed once per generation, first: its version is where this generation starts.
        let mut clock = Clock::default();
        let host = seal.sign(
            &config.host_id,
            HOST_KEY,
            clock.tick(),
            &serde_json::to_string(&record)?,
        );
        let handle = spawn_chitchat(
            chitchat_config,
            vec![(HOST_KEY.into(), host)],
            &UdpTransport,
        )
        .await
        .with_context(|| format!("starting gossip on {listen}"))?;
        let nodes = handle.chitchat().lock().await.live_nodes_watcher();
        let (remote_tx, remote) = watch::channel(Arc::new(Remote::default()));
        let rtts: Arc<Mutex<Arc<HashMap<String, Duration>>>> = Arc::default();
        let tasks = vec![
            tokio::spawn(measure(remote.clone(), rtts.clone())),
            tokio::spawn(watch_members(me.clone(), seal.clone(), nodes, remote_tx)),
            tokio::spawn(publish(
                Publisher {
                    chitchat: handle.chitchat(),
                    host: config.host_id.clone(),
                    seal,
                    clock,
                },
                local.clone(),
                config.load.clone(),
                interval,
            )),
        ];
        Ok(Self {
            local,
            handle: Some(handle),
            remote,
            merged: Mutex::new(None),
            rtts,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(65))
                .build()
                .context("an HTTP client")?,
            peer_token: config.peer_token,
            tasks,
        })
    }

    /// The other live hosts, as gossip last said.
    pub fn hosts(&self) -> Vec<HostRecord> {
        self.remote.borrow().hosts.clone()
    }

    /// This host's machines and the other live hosts', now.
    pub fn current(&self) -> Arc<CatalogView> {
        let local = self.local.current();
        let remote = self.remote.borrow().clone();
        let mut merged = self.merged.lock();
        if let Some(m) = merged.as_ref()
            && Arc::ptr_eq(&m.local, &local)
            && Arc::ptr_eq(&m.remote, &remote)
        {
            return m.view.clone();
        }
        let view = Arc::new(CatalogView::new(
            local
                .machines()
                .cloned()
                .chain(remote.machines.iter().cloned()),
        ));
        *merged = Some(Merged {
            local,
            remote,
            view: view.clone(),
        });
        view
    }

    /// Leaves the cluster: gossip stops (other hosts declare this one dead).
    pub async fn shutdown(mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.shutdown().await;
        }
    }
}

impl Drop for ClusterCatalog {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(handle) = &self.handle {
            handle.abort();
        }
    }
}

#[async_trait]
impl Catalog for ClusterCatalog {
    fn targets(&self, app: &str, port: u16) -> Option<Arc<Vec<Target>>> {
        self.current().targets(app, port)
    }

    /// Public ports besides the HTTP ones are served by the hosts that run the app's machines.
    /// Every host's: each edge takes connections for every app's public ports, and passes those
    /// for another host's machine through that host's worker.
    fn ports(&self) -> Vec<PublicPort> {
        self.current().ports()
    }

    /// This host's machines only: each host's proxy stops its own idle machines.
    fn all_targets(&self) -> Vec<Target> {
        self.local.all_targets()
    }

    async fn start(&self, target: &Target) -> Result<(), String> {
        let Some(via) = target.via else {
            return self.local.start(target).await;
        };
        let agent = self
            .remote
            .borrow()
            .hosts
            .iter()
            .find(|h| h.worker == via)
            .map(|h| h.agent.clone())
            .ok_or_else(|| format!("the host of machine {} left", target.machine_id))?;
        let url = format!(
            "{agent}/internal/v1/apps/{}/machines/{}/autostart",
            target.app, target.machine_id
        );
        let resp = self
            .http
            .post(&url)
            .bearer_auth(&self.peer_token)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            let status = resp.status();
            Err(format!(
                "{url}: {status}: {}",
                resp.text().await.unwrap_or_default()
            ))
        }
    }

    fn rtt(&self, region: &str) -> Option<Duration> {
        self.rtts.lock().get(region).copied()
    }

    async fn stop(&self, target: &Target, suspend: bool) -> Result<(), String> {
        if target.via.is_some() {
            return Err("machines are stopped by their own host's proxy".into());
        }
        self.local.stop(target, suspend).await
    }
}

impl Directory for ClusterCatalog {
    fn entries(&self) -> Arc<Vec<Entry>> {
        self.current().entries()
    }

    fn rtt_ms(&self, region: &str) -> Option<u64> {
        Catalog::rtt(self, region).map(|d| d.as_millis() as u64)
    }
}
