//! Catalog propagation benchmark: how long from a machine becoming `started` on one host until
//! every other host's catalog routes to it, at several cluster sizes. Hosts run in-process (one
//! control plane, N agents on the sim runtime, N gossip nodes on loopback UDP); the reference
//! platform reports p99 ~1 s for the same thing, which is the figure to compare with.
//!
//! ```text
//! cargo run --release -p aloft-catalog --example propagation -- [SIZES] [MACHINES] [INTERVAL_MS]
//! cargo run --release -p aloft-catalog --example propagation -- 3,10,50 30 100
//! ```
//! (`bench/cluster.sh` runs it.)

use aloft_catalog::Catalog;
use aloft_catalog::LocalCatalog;
use aloft_catalog::gossip::{ClusterCatalog, ClusterConfig};
use aloft_testkit::{Cluster, ClusterOptions, HostOptions};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const REGIONS: [&str; 5] = ["ord", "ams", "syd", "nrt", "gru"];

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sizes: Vec<usize> = args
        .first()
        .map_or("3,10,50", String::as_str)
        .split(',')
        .map(|s| s.parse().expect("SIZES: comma-separated host counts"))
        .collect();
    let machines: usize = args.get(1).map_or(20, |s| s.parse().expect("MACHINES"));
    let interval = Duration::from_millis(args.get(2).map_or(100, |s| s.parse().expect("MS")));
    println!(
        "catalog propagation: started on one host -> routed by every other host (gossip every {interval:?})"
    );
    println!(
        "{:>6} {:>9} {:>10} {:>10} {:>10}",
        "hosts", "machines", "p50", "p99", "max"
    );
    for n in sizes {
        let mut samples = run(n, machines, interval).await;
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        println!(
            "{n:>6} {:>9} {:>10.0?} {:>10.0?} {:>10.0?}",
            samples.len(),
            at(0.5),
            at(0.99),
            samples[samples.len() - 1]
        );
    }
    println!("reference platform: p99 ~1 s");
}

/// `n` hosts; `machines` machines started one after another on hosts in turn; for each, the
/// time from its own host's catalog routing to it until every other host's does.
async fn run(n: usize, machines: usize, interval: Duration) -> Vec<Duration> {
    let hosts: Vec<HostOptions> = (0..n)
        .map(|i| HostOptions::new(REGIONS[i % REGIONS.len()]))
        .collect();
    let cluster = Cluster::start_with(ClusterOptions::with_hosts(hosts)).await;
    let gossip: Vec<SocketAddr> = (0..n)
        .map(|_| {
            std::net::UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .expect("a free UDP port")
        })
        .collect();
    let mut catalogs = Vec::new();
    for (i, addr) in gossip.iter().enumerate() {
        let config = ClusterConfig {
            host_id: cluster.host_id(i).to_string(),
            region: REGIONS[i % REGIONS.len()].to_string(),
            gossip: *addr,
            advertise: None,
            seeds: gossip[..1].iter().map(ToString::to_string).collect(),
            gossip_key: cluster.host_keys(i).gossip,
            peer_token: cluster.host_keys(i).peer,
            worker: SocketAddr::from(([127, 0, 0, 1], 9000)),
            agent: cluster.agent_url(i),
            gossip_interval: interval,
            load: Arc::default(),
        };
        let local = Arc::new(LocalCatalog::new(cluster.agent(i).clone()));
        catalogs.push(ClusterCatalog::start(config, local).await.expect("gossip"));
    }
    // Every host knows every other before measuring.
    while catalogs.iter().any(|c| c.hosts().len() < n - 1) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let api = cluster.client();
    api.create_app("bench").await;
    let mut samples = Vec::new();
    for k in 0..machines {
        let owner = k % n;
        let m = api
            .create_machine(
                "bench",
                json!({"region": REGIONS[owner % REGIONS.len()], "config": {"image": "x:1",
                    "services": [{"internal_port": 8080,
                                  "ports": [{"port": 80, "handlers": ["http"]}]}]}}),
            )
            .await;
        let id = m["id"].as_str().expect("an id").to_string();
        let host = m["host_id"].as_str().unwrap_or_default().to_string();
        let owner = (0..n)
            .find(|&i| cluster.host_id(i) == host)
            .unwrap_or(owner);
        let routes = |c: &ClusterCatalog| {
            c.targets("bench", 80)
                .is_some_and(|t| t.iter().any(|t| t.machine_id == id && t.routable))
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !routes(&catalogs[owner]) {
            assert!(Instant::now() < deadline, "machine {id} never started");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let t0 = Instant::now();
        let mut pending: Vec<usize> = (0..n).filter(|&i| i != owner).collect();
        while !pending.is_empty() {
            pending.retain(|&i| !routes(&catalogs[i]));
            assert!(Instant::now() < deadline, "machine {id} never propagated");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push(t0.elapsed());
    }
    for c in catalogs {
        c.shutdown().await;
    }
    samples
}
