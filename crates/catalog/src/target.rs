//! The proxy's view of a machine's service on a public port: a [`Target`] with its [`Limits`] and
//! [`PortHandlers`], worked out from [`MachineEntry`]s, and the [`PublicPort`]s the apps list.

use crate::entry::MachineEntry;
use aloft_types::MachineState;
use aloft_types::config::{
    Autostop, ConcurrencyType, Handler, Port, Protocol, ProxyProtoVersion, Service,
};
use std::net::{IpAddr, SocketAddr};

/// How a machine's service counts its load, and its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub kind: ConcurrencyType,
    /// At or over it, the machine gets traffic only when every other one is over too.
    pub soft: u32,
    /// At it, the machine gets nothing more.
    pub hard: u32,
}

impl Default for Limits {
    /// The reference's defaults: 20 soft, 25 hard, counting connections.
    fn default() -> Self {
        Self {
            kind: ConcurrencyType::Connections,
            soft: 20,
            hard: 25,
        }
    }
}

/// What a public port does with a connection on its way to the machine: its `handlers` and
/// their options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortHandlers {
    /// `tls`: the proxy terminates TLS.
    pub tls: bool,
    /// `http`: the proxy speaks HTTP with the client, request by request.
    pub http: bool,
    /// `proxy_proto`: the connection to the machine starts with a PROXY protocol header.
    pub proxy_proto: Option<ProxyProtoVersion>,
    /// `http_options.h2_backend`: HTTP/2 without TLS (h2c) to the machine.
    pub h2_backend: bool,
}

impl PortHandlers {
    pub fn of(port: &Port) -> Self {
        Self {
            tls: port.handlers.contains(&Handler::Tls),
            http: port.handlers.contains(&Handler::Http),
            proxy_proto: port
                .handlers
                .contains(&Handler::ProxyProto)
                .then(|| port.proxy_proto_version()),
            h2_backend: port.h2_backend(),
        }
    }
}

/// A public port an app's services list, with what it does (from the app's oldest machine that
/// lists it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicPort {
    pub port: u16,
    pub app: String,
    pub handlers: PortHandlers,
}

/// One machine serving an app's public port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub machine_id: String,
    pub app: String,
    pub region: String,
    /// The machine's private (6PN) address and the service's internal port.
    pub address: IpAddr,
    pub port: u16,
    /// The org's private network the machine is on (the network id of its 6PN address): a
    /// `fly-replay: app=` from this machine may only go to an app of the same network.
    pub network: Option<u32>,
    pub limits: Limits,
    pub state: MachineState,
    /// Started, not cordoned, its checks passing: it may get requests now.
    pub routable: bool,
    /// Started by the proxy when a request finds no room (default on).
    pub autostart: bool,
    /// Stopped (or suspended) by the proxy when idle.
    pub autostop: Autostop,
    /// Autostop leaves at least this many machines running in the app's primary region.
    pub min_machines_running: u32,
    /// The app's primary region (`PRIMARY_REGION` of the machine's env, else its own region).
    pub primary_region: String,
    /// Plain HTTP requests for the port are redirected to HTTPS.
    pub force_https: bool,
    /// What the port does with connections (the same for every machine unless a deploy is
    /// half done).
    pub handlers: PortHandlers,
    /// The proxy of the machine's host, when that is another host (the edge sends the request
    /// there, the worker side passes it to the machine); `None` on the machine's own host.
    pub via: Option<SocketAddr>,
    /// Requests in flight on the machine as its host last published (0 on its own host, where
    /// the proxy counts them live).
    pub load: u32,
}

impl Target {
    /// A stopped or suspended machine the proxy may start for a request.
    pub fn wakeable(&self) -> bool {
        self.autostart && matches!(self.state, MachineState::Stopped | MachineState::Suspended)
    }
}

/// The target a machine is for public TCP `port`: its first service listing the port.
pub fn machine_targets(m: &MachineEntry, port: u16) -> Option<Target> {
    m.services.iter().find_map(|service| {
        if service.protocol != Protocol::Tcp {
            return None;
        }
        let entry = service
            .ports
            .iter()
            .find(|p| p.range().contains(&u32::from(port)))?;
        let mut t = target(m, service)?;
        t.force_https = entry.force_https;
        t.handlers = PortHandlers::of(entry);
        Some(t)
    })
}

/// The longest port range the proxy listens on in full; the rest of a longer one is left out
/// (and logged), as thousands of listeners are a mistake more often than a wish.
pub const MAX_RANGE: u32 = 64;

/// The public TCP ports `machines` list (oldest machine first wins when two apps claim one).
pub fn public_ports<'a>(machines: impl IntoIterator<Item = &'a MachineEntry>) -> Vec<PublicPort> {
    let mut machines: Vec<&MachineEntry> = machines.into_iter().collect();
    machines.sort_by(|a, b| {
        (a.created_at.as_str(), a.id.as_str()).cmp(&(b.created_at.as_str(), b.id.as_str()))
    });
    let mut ports: std::collections::BTreeMap<u16, PublicPort> = Default::default();
    for m in machines {
        for service in m.services.iter().filter(|s| s.protocol == Protocol::Tcp) {
            for entry in &service.ports {
                let range = entry.range();
                let (start, end) = (*range.start(), *range.end());
                let end = if end >= start && end - start >= MAX_RANGE {
                    tracing::debug!(
                        machine = m.id,
                        "ports {start}-{end}: only the first {MAX_RANGE} are served"
                    );
                    start + MAX_RANGE - 1
                } else {
                    end
                };
                for port in (start..=end).filter_map(|p| u16::try_from(p).ok()) {
                    let claim = ports.entry(port).or_insert_with(|| PublicPort {
                        port,
                        app: m.app.clone(),
                        handlers: PortHandlers::of(entry),
                    });
                    if claim.app != m.app {
                        tracing::debug!(
                            port,
                            app = m.app,
                            "public port taken by app {}",
                            claim.app
                        );
                    }
                }
            }
        }
    }
    ports.into_values().collect()
}

/// The target a machine is for its first service, if it has one.
pub fn first_service_target(m: &MachineEntry) -> Option<Target> {
    m.services.first().and_then(|s| target(m, s))
}

fn target(m: &MachineEntry, service: &Service) -> Option<Target> {
    let limits = service
        .concurrency
        .as_ref()
        .map_or_else(Limits::default, |c| Limits {
            kind: c.kind,
            soft: c.soft_limit,
            hard: c.hard_limit.max(1),
        });
    Some(Target {
        machine_id: m.id.clone(),
        app: m.app.clone(),
        region: m.region.clone(),
        address: m.address,
        port: u16::try_from(service.internal_port).ok()?,
        network: match m.address {
            IpAddr::V6(a) => aloft_types::sixpn::network_of(a),
            IpAddr::V4(_) => None,
        },
        limits,
        state: m.state,
        routable: m.routable,
        autostart: service.autostart.unwrap_or(true),
        autostop: service.autostop,
        min_machines_running: service.min_machines_running.unwrap_or(0),
        primary_region: m.primary_region.clone(),
        force_https: false,
        handlers: PortHandlers::default(),
        via: None,
        load: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aloft_types::Machine;

    fn machine(id: &str, app: &str, created_at: &str, services: serde_json::Value) -> MachineEntry {
        let m: Machine = serde_json::from_value(serde_json::json!({
            "id": id, "name": id, "state": "started", "region": "local",
            "instance_id": "01J0000000000000000000000", "private_ip": "fdaa::2",
            "config": {"image": "a", "services": services},
            "image_ref": {"registry": "", "repository": "a", "tag": "latest", "digest": ""},
            "created_at": created_at, "updated_at": created_at, "host_status": "ok",
            "app_name": app,
        }))
        .unwrap();
        MachineEntry::of(&m).unwrap()
    }

    /// A target carries its org's network (from its 6PN address), which `fly-replay: app=` is
    /// checked against.
    #[test]
    fn a_target_knows_its_org_network() {
        let mut m = machine(
            "0000000000000a",
            "web",
            "2026-01-01T00:00:00Z",
            serde_json::json!([{"internal_port": 8080, "ports": [{"port": 80, "handlers": ["http"]}]}]),
        );
        m.address = aloft_types::sixpn::machine_address(7, 1, 2).into();
        assert_eq!(machine_targets(&m, 80).unwrap().network, Some(7));
        m.address = "127.0.0.1".parse().unwrap();
        assert_eq!(machine_targets(&m, 80).unwrap().network, None);
    }

    #[test]
    fn ports_come_with_their_handlers_and_the_oldest_app_keeps_a_contested_one() {
        let db = machine(
            "0000000000000b",
            "db",
            "2026-01-02T00:00:00Z",
            serde_json::json!([
                {"internal_port": 5432, "ports": [
                    {"port": 5432, "handlers": ["proxy_proto"], "proxy_proto_options": {"version": "v2"}},
                    {"start_port": 7000, "end_port": 9000}]},
                {"protocol": "udp", "internal_port": 53, "ports": [{"port": 53}]},
            ]),
        );
        let web = machine(
            "0000000000000a",
            "web",
            "2026-01-01T00:00:00Z",
            serde_json::json!([{"internal_port": 8080, "ports": [
                {"port": 80, "handlers": ["http"], "http_options": {"h2_backend": true}},
                {"port": 5432, "handlers": ["tls"]}]}]),
        );
        let ports = public_ports([&db, &web]);
        let p5432 = ports.iter().find(|p| p.port == 5432).unwrap();
        assert_eq!(p5432.app, "web", "web's machine is older");
        assert!(p5432.handlers.tls && p5432.handlers.proxy_proto.is_none());
        assert!(!ports.iter().any(|p| p.port == 53), "UDP is not proxied");
        let range = ports
            .iter()
            .filter(|p| (7000..=9000).contains(&p.port))
            .count();
        assert_eq!(range, MAX_RANGE as usize);

        let t = machine_targets(&db, 5432).unwrap();
        assert_eq!(t.handlers.proxy_proto, Some(ProxyProtoVersion::V2));
        assert_eq!(t.port, 5432);
        let t = machine_targets(&web, 80).unwrap();
        assert!(t.handlers.http && t.handlers.h2_backend);
        assert!(machine_targets(&db, 53).is_none());
        assert!(machine_targets(&db, 7500).is_some());
    }
}
