//! The round-trip time to every other live host, measured (never configured): what the proxy
//! ranks other regions by and internal DNS answers "nearest" with. One task per host's
//! catalog; the figures are swapped in whole behind a `parking_lot` mutex held only for the swap.

use super::Remote;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the round-trip time to every other host is measured, and how many samples count.
const RTT_EVERY: Duration = Duration::from_secs(2);
const RTT_SAMPLES: usize = 5;

/// Measures the round-trip time to every other live host (a TCP handshake with its worker
/// listener: one round trip, answered by the host's kernel, refused or not) every
/// [`RTT_EVERY`]; each region's figure is the median of its nearest host's last samples.
pub(super) async fn measure(
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
        *rtts.lock() = Arc::new(by_region);
        tokio::time::sleep(RTT_EVERY).await;
    }
}
