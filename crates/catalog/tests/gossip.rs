//! The cluster catalog across hosts: three agents (sim runtime, one control plane) in ord, ams and
//! syd, each with its own gossip node on loopback. The proxy's use of the catalog (edge to worker)
//! is tested in the proxy's own tests; here the subject is what each host knows and when.

use aloft_catalog::Catalog;
use aloft_catalog::LocalCatalog;
use aloft_catalog::gossip::seal::Seal;
use aloft_catalog::gossip::{ClusterCatalog, ClusterConfig};
use aloft_dns::server::Directory;
use aloft_testkit::{Cluster, ClusterOptions, HostOptions};
use chitchat::transport::UdpTransport;
use chitchat::{
    ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, ProtocolVersion,
    spawn_chitchat,
};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const REGIONS: [&str; 3] = ["ord", "ams", "syd"];
const INTERVAL: Duration = Duration::from_millis(100);

struct Hosts {
    cluster: Cluster,
    catalogs: Vec<Option<ClusterCatalog>>,
    gossip: Vec<SocketAddr>,
}

/// A free UDP port on loopback (bound, then let go for gossip to bind).
fn free_udp() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

/// The worker listener address host `i` publishes (nothing listens: not this test's subject).
fn worker(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16))
}

fn config(cluster: &Cluster, i: usize, gossip: SocketAddr, seeds: &[SocketAddr]) -> ClusterConfig {
    ClusterConfig {
        host_id: cluster.host_id(i).to_string(),
        region: REGIONS[i].to_string(),
        gossip,
        advertise: None,
        seeds: seeds.iter().map(ToString::to_string).collect(),
        gossip_key: cluster.host_keys(i).gossip,
        peer_token: cluster.host_keys(i).peer,
        worker: worker(i),
        agent: cluster.agent_url(i),
        gossip_interval: INTERVAL,
        load: Arc::default(),
    }
}

async fn hosts() -> Hosts {
    let cluster = Cluster::start_with(ClusterOptions::with_hosts(
        REGIONS.map(HostOptions::new).to_vec(),
    ))
    .await;
    let gossip: Vec<SocketAddr> = (0..REGIONS.len()).map(|_| free_udp()).collect();
    let mut catalogs = Vec::new();
    for i in 0..REGIONS.len() {
        let local = Arc::new(LocalCatalog::new(cluster.agent(i).clone()));
        let c = ClusterCatalog::start(config(&cluster, i, gossip[i], &gossip[..1]), local)
            .await
            .unwrap();
        catalogs.push(Some(c));
    }
    Hosts {
        cluster,
        catalogs,
        gossip,
    }
}

impl Hosts {
    fn catalog(&self, i: usize) -> &ClusterCatalog {
        self.catalogs[i].as_ref().unwrap()
    }

    /// Waits (up to `limit`) until `check` holds on host `i`'s catalog; how long it took.
    async fn until(
        &self,
        i: usize,
        limit: Duration,
        what: &str,
        check: impl Fn(&ClusterCatalog) -> bool,
    ) -> Duration {
        let t0 = Instant::now();
        while !check(self.catalog(i)) {
            assert!(
                t0.elapsed() < limit,
                "host {i}: {what}: not within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        t0.elapsed()
    }

    /// A started machine of `app` in `region`, serving port 80; its id.
    async fn machine(&self, app: &str, region: &str) -> String {
        let m = self
            .cluster
            .client()
            .create_machine(
                app,
                json!({"region": region, "config": {"image": "hello:latest", "services": [
                    {"internal_port": 8080, "protocol": "tcp",
                     "ports": [{"port": 80, "handlers": ["http"]}]}]}}),
            )
            .await;
        let id = m["id"].as_str().unwrap().to_string();
        let api = self.cluster.client();
        let (status, body) = api
            .send(api.get(&format!(
                "/v1/apps/{app}/machines/{id}/wait?state=started&timeout=10"
            )))
            .await;
        assert_eq!(status, 200, "{body}");
        id
    }
}

fn routes(c: &ClusterCatalog, app: &str, id: &str) -> Option<aloft_catalog::Target> {
    c.targets(app, 80)?
        .iter()
        .find(|t| t.machine_id == id)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_host_routes_to_a_machine_started_on_another_through_its_worker() {
    let h = hosts().await;
    h.cluster.client().create_app("web").await;
    let id = h.machine("web", "ord").await;
    for i in [1, 2] {
        let took = h
            .until(i, Duration::from_secs(10), "the ord machine", |c| {
                routes(c, "web", &id).is_some_and(|t| t.routable)
            })
            .await;
        println!("host {i} routes to the new machine after {took:?}");
        let t = routes(h.catalog(i), "web", &id).unwrap();
        assert_eq!(t.via, Some(worker(0)), "through ord's worker");
        assert_eq!(t.region, "ord");
        // Internal DNS on every host answers for it too.
        assert!(h.catalog(i).entries().iter().any(|e| e.id == id));
    }
    // Every host measures its round trip to the others' regions (not its own).
    h.until(0, Duration::from_secs(10), "measured round trips", |c| {
        c.rtt("ams").is_some() && c.rtt("syd").is_some()
    })
    .await;
    assert!(h.catalog(0).rtt("ams").unwrap() < Duration::from_millis(500));
    assert_eq!(h.catalog(0).rtt("ord"), None);

    // Its own host routes to it directly.
    assert_eq!(routes(h.catalog(0), "web", &id).unwrap().via, None);
    h.until(1, Duration::from_secs(10), "both other hosts", |c| {
        c.hosts().len() == 2
    })
    .await;

    // Stopped: every host sees it stop (no longer routable), and it leaves DNS.
    let api = h.cluster.client();
    let (status, body) = api
        .send(api.post(&format!("/v1/apps/web/machines/{id}/stop")))
        .await;
    assert_eq!(status, 200, "{body}");
    h.until(2, Duration::from_secs(10), "the stop", |c| {
        routes(c, "web", &id).is_some_and(|t| !t.routable)
            && !c.entries().iter().any(|e| e.id == id)
    })
    .await;

    // A request on syd for the stopped machine wakes it on its own host (autostart across
    // hosts, through ord's agent).
    let target = routes(h.catalog(2), "web", &id).unwrap();
    h.catalog(2).start(&target).await.unwrap();
    h.until(2, Duration::from_secs(10), "the autostart", |c| {
        routes(c, "web", &id).is_some_and(|t| t.routable)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_dies_leaves_every_other_hosts_routing_within_seconds() {
    let mut h = hosts().await;
    h.cluster.client().create_app("web").await;
    let id = h.machine("web", "ams").await;
    h.until(0, Duration::from_secs(10), "the ams machine", |c| {
        routes(c, "web", &id).is_some()
    })
    .await;
    h.until(2, Duration::from_secs(10), "the ams machine", |c| {
        routes(c, "web", &id).is_some()
    })
    .await;

    // Killed: its gossip stops without a goodbye.
    drop(h.catalogs[1].take());
    let took = h
        .until(0, Duration::from_secs(20), "ams leaving", |c| {
            routes(c, "web", &id).is_none()
        })
        .await;
    println!("ams's machine left ord's routing {took:?} after ams died");
    h.until(2, Duration::from_secs(20), "ams leaving", |c| {
        routes(c, "web", &id).is_none() && c.hosts().len() == 1
    })
    .await;

    // Back (a new generation on the same address): its machines are routed to again.
    let local = Arc::new(LocalCatalog::new(h.cluster.agent(1).clone()));
    let back = ClusterCatalog::start(config(&h.cluster, 1, h.gossip[1], &h.gossip[..1]), local)
        .await
        .unwrap();
    h.catalogs[1] = Some(back);
    h.until(0, Duration::from_secs(20), "ams back", |c| {
        routes(c, "web", &id).is_some()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_the_clusters_secret_is_ignored() {
    let h = hosts().await;
    h.cluster.client().create_app("web").await;
    // An intruder that knows where to gossip but not the secret, with an agent of its own
    // (a fourth host's machines would be routed to if it were believed).
    let intruder_cluster =
        Cluster::start_with(ClusterOptions::with_hosts(vec![HostOptions::new("ord")])).await;
    intruder_cluster.client().create_app("web").await;
    let m = intruder_cluster
        .client()
        .create_machine(
            "web",
            json!({"config": {"image": "x:1", "services": [
                {"internal_port": 8080, "ports": [{"port": 80, "handlers": ["http"]}]}]}}),
        )
        .await;
    let mut cfg = config(&intruder_cluster, 0, free_udp(), &h.gossip);
    cfg.host_id = "evil-1".into();
    let intruder = ClusterCatalog::start(
        cfg,
        Arc::new(LocalCatalog::new(intruder_cluster.agent(0).clone())),
    )
    .await
    .unwrap();
    // The members keep gossiping among themselves, and never list the intruder or its machine.
    let id = h.machine("web", "syd").await;
    h.until(0, Duration::from_secs(10), "syd's machine", |c| {
        routes(c, "web", &id).is_some()
    })
    .await;
    tokio::time::sleep(INTERVAL * 20).await;
    for i in 0..3 {
        let c = h.catalog(i);
        assert!(c.hosts().iter().all(|host| host.id != "evil-1"));
        assert!(
            routes(c, "web", m["id"].as_str().unwrap()).is_none(),
            "host {i} routes to the intruder's machine"
        );
    }
    assert!(intruder.hosts().is_empty(), "{:?}", intruder.hosts());
}

/// A chitchat node of the rogue's, speaking as `id` into `cluster_id` (which anyone can read in
/// the clear in every handshake), through `seeds`.
async fn rogue_node(id: ChitchatId, cluster_id: String, seeds: &[SocketAddr]) -> ChitchatHandle {
    let config = ChitchatConfig {
        chitchat_id: id,
        cluster_id,
        gossip_interval: INTERVAL,
        listen_addr: free_udp(),
        seed_nodes: seeds.iter().map(ToString::to_string).collect(),
        failure_detector_config: FailureDetectorConfig::default(),
        marked_for_deletion_grace_period: Duration::from_secs(3600),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: ProtocolVersion::V0,
    };
    spawn_chitchat(config, Vec::new(), &UdpTransport)
        .await
        .unwrap()
}

/// What the rogue captures of host `node`: its chitchat id and its signed values, once `key`
/// is among them.
async fn capture(
    rogue: &ChitchatHandle,
    node: &str,
    key: &str,
) -> (ChitchatId, Vec<(String, String)>) {
    let t0 = Instant::now();
    loop {
        {
            let c = rogue.chitchat();
            let c = c.lock().await;
            if let Some((id, state)) = c
                .node_states()
                .iter()
                .find(|(id, s)| &*id.node_id == node && s.get(key).is_some())
            {
                let values = state
                    .key_values()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                return (id.clone(), values);
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "nothing to capture");
        tokio::time::sleep(INTERVAL).await;
    }
}

/// The rogue replays `values` (captured) as node `id`, with chitchat versions above anything
/// the host published, through `seeds`; returns once gossip spread them (the listener has them).
async fn replay(
    listener: &ChitchatHandle,
    id: ChitchatId,
    values: &[(String, String)],
    seeds: &[SocketAddr],
) -> ChitchatHandle {
    let cluster_id = listener.chitchat().lock().await.cluster_id().to_string();
    let rogue = rogue_node(id.clone(), cluster_id, seeds).await;
    {
        let c = rogue.chitchat();
        let mut c = c.lock().await;
        let state = c.self_node_state();
        state.set_max_version(1 << 40);
        for (k, v) in values {
            state.set(k, v);
        }
    }
    let t0 = Instant::now();
    loop {
        let c = listener.chitchat();
        let spread = c
            .lock()
            .await
            .node_state(&id)
            .is_some_and(|s| s.max_version() > 1 << 40);
        if spread {
            return rogue;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the replay never spread"
        );
        tokio::time::sleep(INTERVAL).await;
    }
}

/// A node that captured a member's signed machine entry replays it after the machine was
/// destroyed, under the member's own chitchat id
/// and higher chitchat versions, so chitchat on the other hosts takes it: the signed version
/// inside the value is older than the deletion they hold, so it is refused and the machine
/// stays out of routing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_old_signed_value_does_not_replace_the_current_one() {
    let h = hosts().await;
    h.cluster.client().create_app("web").await;
    let id = h.machine("web", "ord").await;
    for i in [1, 2] {
        h.until(i, Duration::from_secs(10), "the ord machine", |c| {
            routes(c, "web", &id).is_some_and(|t| t.routable)
        })
        .await;
    }
    let cluster_id = Seal::new(&h.cluster.host_keys(0).gossip).cluster_id();
    let listener = rogue_node(
        ChitchatId::new("listener", 1, free_udp()),
        cluster_id.clone(),
        &h.gossip,
    )
    .await;
    let (ord, captured) = capture(&listener, h.cluster.host_id(0), &format!("m:{id}")).await;

    // Destroyed: every other host stops routing to it.
    let api = h.cluster.client();
    let (status, body) = api
        .send(api.delete(&format!("/v1/apps/web/machines/{id}?force=true")))
        .await;
    assert_eq!(status, 200, "{body}");
    for i in [1, 2] {
        h.until(i, Duration::from_secs(10), "the destroy", |c| {
            routes(c, "web", &id).is_none()
        })
        .await;
    }

    // The replay, as ord's own node, with chitchat versions above anything ord published.
    let rogue = replay(&listener, ord, &captured, &h.gossip[1..]).await;
    tokio::time::sleep(INTERVAL * 20).await;
    for i in [1, 2] {
        assert!(
            routes(h.catalog(i), "web", &id).is_none(),
            "host {i} routes to a destroyed machine again"
        );
        assert!(
            h.catalog(i)
                .hosts()
                .iter()
                .any(|x| x.id == h.cluster.host_id(0)),
            "host {i} lost ord"
        );
    }
    let _ = rogue.shutdown().await;
    let _ = listener.shutdown().await;
}

/// A host restarted (a new generation, its old node still live on the others for a while)
/// publishes its machines afresh: its new values win over its old generation's (a machine
/// stopped while it was down is seen stopped), and what only the old generation had (a machine
/// destroyed meanwhile) is gone at once, and stays gone when a rogue replays it under the new
/// node's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_hosts_new_values_win_over_its_old_ones() {
    let mut h = hosts().await;
    h.cluster.client().create_app("web").await;
    let (stopped, destroyed) = (h.machine("web", "ord").await, h.machine("web", "ord").await);
    for i in [1, 2] {
        h.until(i, Duration::from_secs(10), "the ord machines", |c| {
            [&stopped, &destroyed]
                .iter()
                .all(|id| routes(c, "web", id).is_some_and(|t| t.routable))
        })
        .await;
    }
    let cluster_id = Seal::new(&h.cluster.host_keys(0).gossip).cluster_id();
    let listener = rogue_node(
        ChitchatId::new("listener", 1, free_udp()),
        cluster_id.clone(),
        &h.gossip,
    )
    .await;
    let (old, mut captured) =
        capture(&listener, h.cluster.host_id(0), &format!("m:{destroyed}")).await;

    // ord goes down; meanwhile one machine stops and the other is destroyed; ord comes back.
    drop(h.catalogs[0].take());
    let api = h.cluster.client();
    let (status, body) = api
        .send(api.post(&format!("/v1/apps/web/machines/{stopped}/stop")))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .send(api.delete(&format!("/v1/apps/web/machines/{destroyed}?force=true")))
        .await;
    assert_eq!(status, 200, "{body}");
    let local = Arc::new(LocalCatalog::new(h.cluster.agent(0).clone()));
    let back = ClusterCatalog::start(config(&h.cluster, 0, h.gossip[0], &h.gossip[1..2]), local)
        .await
        .unwrap();
    h.catalogs[0] = Some(back);
    for i in [1, 2] {
        h.until(i, Duration::from_secs(5), "ord's new generation", |c| {
            routes(c, "web", &stopped).is_some_and(|t| !t.routable)
                && routes(c, "web", &destroyed).is_none()
        })
        .await;
    }

    // The old generation's values replayed under the new node's id are refused.
    let t0 = Instant::now();
    let new = loop {
        let c = listener.chitchat();
        let found = c
            .lock()
            .await
            .node_states()
            .keys()
            .find(|id| &*id.node_id == h.cluster.host_id(0) && id.generation_id > old.generation_id)
            .cloned();
        if let Some(id) = found {
            break id;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no new generation");
        tokio::time::sleep(INTERVAL).await;
    };
    captured.retain(|(k, _)| k != "host");
    let rogue = replay(&listener, new, &captured, &h.gossip[1..]).await;
    tokio::time::sleep(INTERVAL * 30).await;
    for i in [1, 2] {
        let c = h.catalog(i);
        assert!(
            routes(c, "web", &destroyed).is_none(),
            "host {i} routes to a machine destroyed while its host was down"
        );
        assert!(routes(c, "web", &stopped).is_some_and(|t| !t.routable));
    }
    let _ = rogue.shutdown().await;
    let _ = listener.shutdown().await;
}
