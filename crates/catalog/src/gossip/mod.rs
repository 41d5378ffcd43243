//! The hosts of a cluster as one catalog (this module was the `aloft-cluster` crate).
//!
//! Every host runs a [`ClusterCatalog`]: it publishes this host's machines ([`MachineEntry`], no
//! secrets), their load, and where this host's proxy worker listener and agent are, under its own
//! keys in a `chitchat` gossip cluster (scuttlebutt anti-entropy, phi-accrual failure
//! detection), each value signed with the cluster's secret ([`seal`]). It reads the other live hosts'
//! keys into a copy of its own, and answers the proxy's [`Catalog`] and internal DNS's
//! [`Directory`] from this host's machines (read live from the agent) merged with that copy.
//!
//! Nothing on the request path waits for gossip: a watcher task swaps in a new copy of the other
//! hosts' machines whenever gossip changes it, and lookups only clone an `Arc`. The chitchat lock
//! is never taken on the request path. A host the failure detector declares dead leaves the copy
//! (its machines leave routing); if gossip stops altogether, the last copy keeps serving.
//!
//! It also measures the round-trip time to every other host (a TCP handshake with its worker
//! listener every 2 s, median of the last 5), which the proxy ranks other regions by.

pub mod seal;

use crate::entry::MachineEntry;
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
    ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState, ProtocolVersion,
    spawn_chitchat,
};
use seal::Seal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The key a host publishes itself under.
const HOST_KEY: &str = "host";
/// Prefix of a machine's key (`m:<id>`), holding its [`MachineEntry`] as JSON.
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
    /// The cluster's secret: seals gossip, and is the token between hosts (edge to worker,
    /// host to agent).
    pub token: String,
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
    token: String,
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
        let seal = Seal::new(&config.token);
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
        let host = seal.sign(&config.host_id, HOST_KEY, &serde_json::to_string(&record)?);
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
            token: config.token,
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
        let mut merged = self.merged.lock().expect("lock");
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

/// How often the round-trip time to every other host is measured, and how many samples count.
const RTT_EVERY: Duration = Duration::from_secs(2);
const RTT_SAMPLES: usize = 5;

/// Measures the round-trip time to every other live host (a TCP handshake with its worker
/// listener: one round trip, answered by the host's kernel, refused or not) every
/// [`RTT_EVERY`]; each region's figure is the median of its nearest host's last samples.
async fn measure(
    remote: watch::Receiver<Arc<Remote>>,
    rtts: Arc<Mutex<Arc<HashMap<String, Duration>>>>,
) {
    let mut samples: HashMap<SocketAddr, (String, VecDeque<Duration>)> = HashMap::new();
    loop {
        let hosts = remote.borrow().hosts.clone();
        samples.retain(|worker, _| hosts.iter().any(|h| h.worker == *worker));
        for h in hosts {
            let t0 = std::time::Instant::now();
            let answered = match tokio::time::timeout(
                Duration::from_secs(1),
                tokio::net::TcpStream::connect(h.worker),
            )
            .await
            {
                Ok(Ok(_)) => true,
                Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
                Err(_) => false,
            };
            if answered {
                let (_, s) = samples
                    .entry(h.worker)
                    .or_insert_with(|| (h.region.clone(), VecDeque::new()));
                s.push_back(t0.elapsed());
                if s.len() > RTT_SAMPLES {
                    s.pop_front();
                }
            }
        }
        let mut by_region: HashMap<String, Duration> = HashMap::new();
        for (region, s) in samples.values() {
            let mut sorted: Vec<Duration> = s.iter().copied().collect();
            sorted.sort();
            if let Some(median) = sorted.get(sorted.len() / 2) {
                let best = by_region.entry(region.clone()).or_insert(*median);
                *best = (*best).min(*median);
            }
        }
        *rtts.lock().expect("lock") = Arc::new(by_region);
        tokio::time::sleep(RTT_EVERY).await;
    }
}

/// Keeps `remote` in step with the live members' keys (every member but `me`).
async fn watch_members(
    me: ChitchatId,
    seal: Seal,
    mut nodes: watch::Receiver<BTreeMap<ChitchatId, NodeState>>,
    remote: watch::Sender<Arc<Remote>>,
) {
    loop {
        let copy = {
            let nodes = nodes.borrow_and_update();
            remote_of(&me, &seal, &nodes)
        };
        remote.send_replace(Arc::new(copy));
        if nodes.changed().await.is_err() {
            return;
        }
    }
}

/// The machines of every live member but `me`, routed through its worker listener. Values
/// without a valid signature (not from a member) are left out; a host whose record is not
/// signed is left out whole.
fn remote_of(me: &ChitchatId, seal: &Seal, nodes: &BTreeMap<ChitchatId, NodeState>) -> Remote {
    let mut out = Remote::default();
    for (id, state) in nodes {
        let node = &*id.node_id;
        if node == &*me.node_id {
            continue;
        }
        let Some(host) = state
            .get(HOST_KEY)
            .and_then(|h| seal.open(node, HOST_KEY, h))
            .and_then(|h| serde_json::from_str::<HostRecord>(h).ok())
            .filter(|h| h.id == node)
        else {
            tracing::debug!(
                node,
                "a gossip member without a signed host record: ignored"
            );
            continue;
        };
        for (key, value) in state.key_values() {
            let Some(machine) = key.strip_prefix(MACHINE_PREFIX) else {
                continue;
            };
            let Some(entry) = seal
                .open(node, key, value)
                .and_then(|v| serde_json::from_str::<MachineEntry>(v).ok())
            else {
                tracing::debug!(
                    node,
                    key,
                    "an unsigned or unreadable machine entry: ignored"
                );
                continue;
            };
            let load_key = format!("{LOAD_PREFIX}{machine}");
            let load = state
                .get(&load_key)
                .and_then(|l| seal.open(node, &load_key, l))
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            out.machines.push(Placed {
                entry,
                via: Some(host.worker),
                load,
            });
        }
        out.hosts.push(host);
    }
    out
}

/// Writes this host's keys, signed.
struct Publisher {
    chitchat: Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
    host: String,
    seal: Seal,
}

/// Publishes this host's machines whenever they change, and their load every `interval`: only
/// the keys whose value changed are written.
async fn publish(to: Publisher, local: Arc<LocalCatalog>, load: Arc<Load>, interval: Duration) {
    let mut changes = local.source().changes();
    let mut published: HashMap<String, String> = HashMap::new();
    loop {
        let view = local.current();
        let mut wanted: HashMap<String, String> = HashMap::new();
        for m in view.machines() {
            match serde_json::to_string(&m.entry) {
                Ok(json) => {
                    wanted.insert(format!("{MACHINE_PREFIX}{}", m.entry.id), json);
                }
                Err(e) => tracing::warn!(machine = m.entry.id, "cannot publish: {e}"),
            }
            let n = load.current(&m.entry.id);
            if n > 0 {
                wanted.insert(format!("{LOAD_PREFIX}{}", m.entry.id), n.to_string());
            }
        }
        if wanted != published {
            let mut c = to.chitchat.lock().await;
            let state = c.self_node_state();
            for (k, v) in &wanted {
                if published.get(k) != Some(v) {
                    state.set(k, to.seal.sign(&to.host, k, v));
                }
            }
            for k in published.keys() {
                if !wanted.contains_key(k) {
                    state.delete(k);
                }
            }
            drop(c);
            published = wanted;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(interval) => {}
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
            .bearer_auth(&self.token)
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
        self.rtts.lock().expect("lock").get(region).copied()
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
