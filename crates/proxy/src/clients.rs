//! Per-client limits (network-level flood protection): connections open at once and requests
//! per second from one address.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// The limits one client address gets.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    pub max_connections: u32,
    /// Sustained requests per second (bursts up to this many at once); 0: no limit.
    pub requests_per_second: u32,
}

#[derive(Default)]
struct Client {
    connections: u32,
    tokens: f64,
    refilled: Option<Instant>,
}

/// The clients with connections open, and their request budgets.
pub struct Clients {
    limits: ClientLimits,
    table: Mutex<HashMap<IpAddr, Client>>,
}

/// An open connection of a client; closing it (dropping this) frees its place.
pub struct Connection {
    clients: Arc<Clients>,
    ip: IpAddr,
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut table = self.clients.table.lock();
        if let Some(c) = table.get_mut(&self.ip) {
            c.connections = c.connections.saturating_sub(1);
            if c.connections == 0 {
                table.remove(&self.ip);
            }
        }
    }
}

impl Clients {
    pub fn new(limits: ClientLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            table: Mutex::default(),
        })
    }

    /// A place for a new connection from `ip`, or `None` when it has as many open as allowed.
    pub fn connect(self: &Arc<Self>, ip: IpAddr) -> Option<Connection> {
        let mut table = self.table.lock();
        let c = table.entry(ip).or_default();
        if c.connections >= self.limits.max_connections {
            return None;
        }
        c.connections += 1;
        Some(Connection {
            clients: self.clone(),
            ip,
        })
    }

    /// Whether `ip` may make one more request now (a token bucket per address).
    pub fn allow_request(&self, ip: IpAddr) -> bool {
        let rate = self.limits.requests_per_second;
        if rate == 0 {
            return true;
        }
        let mut table = self.table.lock();
        let c = table.entry(ip).or_default();
        let now = Instant::now();
        let rate = f64::from(rate);
        c.tokens = match c.refilled {
            None => rate,
            Some(at) => (c.tokens + now.duration_since(at).as_secs_f64() * rate).min(rate),
        };
        c.refilled = Some(now);
        if c.tokens >= 1.0 {
            c.tokens -= 1.0;
            true
        } else {
            false
        }
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
}
