//! Per-client limits (network-level flood protection): connections open at once and requests
//! per second from one address.
//!
//! State: the open connections per address (a `parking_lot` mutex over a map, an entry removed
//! when its last connection closes) and a keyed rate limiter (`governor`, GCRA) whose budget
//! per address outlives the client's connections, so a client that opens a connection per
//! request is limited like any other; addresses idle long enough to have their whole budget back
//! are forgotten every few thousand requests, so memory follows the clients that are active.

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// How many requests pass between two sweeps of the addresses the rate limiter forgets.
const SWEEP_EVERY: u32 = 4096;

/// The limits one client address gets.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    pub max_connections: u32,
    /// Sustained requests per second (bursts up to this many at once); 0: no limit.
    pub requests_per_second: u32,
}

/// The clients with connections open, and their request budgets.
pub struct Clients {
    limits: ClientLimits,
    /// Open connections per address.
    table: Mutex<HashMap<IpAddr, u32>>,
    /// Requests per second per address (`None`: no limit).
    rate: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Requests since the last sweep of `rate`.
    since_sweep: AtomicU32,
}

/// An open connection of a client; closing it (dropping this) frees its place.
pub struct Connection {
    clients: Arc<Clients>,
    ip: IpAddr,
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut table = self.clients.table.lock();
        if let Some(n) = table.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                table.remove(&self.ip);
            }
        }
    }
}

impl Clients {
    pub fn new(limits: ClientLimits) -> Arc<Self> {
        let rate = NonZeroU32::new(limits.requests_per_second)
            .map(|rate| RateLimiter::keyed(Quota::per_second(rate)));
        Arc::new(Self {
            limits,
            table: Mutex::default(),
            rate,
            since_sweep: AtomicU32::new(0),
        })
    }

    /// A place for a new connection from `ip`, or `None` when it has as many open as allowed.
    pub fn connect(self: &Arc<Self>, ip: IpAddr) -> Option<Connection> {
        let mut table = self.table.lock();
        let n = table.entry(ip).or_default();
        if *n >= self.limits.max_connections {
            return None;
        }
        *n += 1;
        Some(Connection {
            clients: self.clone(),
            ip,
        })
    }

    /// Whether `ip` may make one more request now (bursts up to the rate, then the rate).
    pub fn allow_request(&self, ip: IpAddr) -> bool {
        let Some(rate) = &self.rate else {
            return true;
        };
        if self.since_sweep.fetch_add(1, Ordering::Relaxed) >= SWEEP_EVERY {
            self.since_sweep.store(0, Ordering::Relaxed);
            rate.retain_recent();
            rate.shrink_to_fit();
        }
        rate.check_key(&ip).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_per_client_are_capped_and_freed() {
        let clients = Clients::new(ClientLimits {
            max_connections: 2,
            requests_per_second: 0,
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = clients.connect(ip).unwrap();
        let _b = clients.connect(ip).unwrap();
        assert!(clients.connect(ip).is_none());
        assert!(clients.connect("192.0.2.2".parse().unwrap()).is_some());
        drop(a);
        assert!(clients.connect(ip).is_some());
    }

    #[test]
    fn a_burst_beyond_the_rate_is_refused() {
        let clients = Clients::new(ClientLimits {
            max_connections: 10,
            requests_per_second: 5,
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let allowed = (0..20).filter(|_| clients.allow_request(ip)).count();
        assert!((5..=6).contains(&allowed), "{allowed}");
    }

    /// The budget belongs to the address, not to its connections: a client that opens a new
    /// connection for every request is limited like one that keeps its connection.
    #[test]
    fn a_client_that_reconnects_for_every_request_is_still_limited() {
        let clients = Clients::new(ClientLimits {
            max_connections: 10,
            requests_per_second: 5,
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let allowed = (0..20)
            .filter(|_| {
                let _conn = clients.connect(ip).unwrap();
                clients.allow_request(ip)
            })
            .count();
        assert!((5..=6).contains(&allowed), "{allowed}");
        assert!(clients.allow_request("192.0.2.2".parse().unwrap()));
    }
}
