//! Public ports other than the HTTP ones (`[[services.ports]]` such as `5432` or `8081`): each
//! gets its own listener, which serves the app whose service lists the port, with the port's
//! handlers. `tls` terminates TLS (certificate by SNI, else the app's own name); `http` serves
//! requests as the HTTP listeners do; otherwise the connection is passed through whole to the
//! least-loaded machine, starting with a PROXY protocol header when the port has `proxy_proto`.
//! A machine that refuses the connection is skipped for the next one, as for requests.

use super::{Conn, Constraint, Listener, Proxy, socket};
use crate::catalog::PublicPort;
use crate::metrics::Event;
use aloft_types::config::ProxyProtoVersion;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the listeners are brought in line with the catalog.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);
/// How long a port that could not be bound is left before trying again.
const REBIND_AFTER: Duration = Duration::from_secs(30);

impl Proxy {
    /// Listens on `ip` at every public port the catalog lists except `skip` (the ports the HTTP
    /// listeners stand for), opening and closing listeners as apps' services come and go, until
    /// `shutdown`; then connections in flight get the drain timeout to finish.
    pub async fn serve_ports(&self, ip: IpAddr, skip: &[u16], shutdown: impl Future<Output = ()>) {
        let mut open: HashMap<u16, (PublicPort, JoinHandle<()>)> = HashMap::new();
        let mut unbindable: HashMap<u16, Instant> = HashMap::new();
        let (stop_tx, stop_rx) = watch::channel(false);
        let in_flight = Arc::new(());
        tokio::pin!(shutdown);
        loop {
            let wanted: Vec<PublicPort> = self
                .inner
                .catalog
                .ports()
                .into_iter()
                .filter(|p| !skip.contains(&p.port))
                .collect();
            let stale: Vec<u16> = open
                .iter()
                .filter(|(_, (serving, _))| !wanted.contains(serving))
                .map(|(port, _)| *port)
                .collect();
            for port in stale {
                if let Some((serving, task)) = open.remove(&port) {
                    task.abort();
                    // Its listener is closed once the task is gone: the port can be bound
                    // again (for its new owner or handlers) in this same pass.
                    let _ = task.await;
                    tracing::info!(port, app = serving.app, "port closed");
                }
            }
            unbindable.retain(|port, at| {
                at.elapsed() < REBIND_AFTER && wanted.iter().any(|w| w.port == *port)
            });
            for port in wanted {
                if open.contains_key(&port.port) || unbindable.contains_key(&port.port) {
                    continue;
                }
                match TcpListener::bind(SocketAddr::new(ip, port.port)).await {
                    Ok(listener) => {
                        tracing::info!(port = port.port, app = port.app, "listening on {ip}");
                        let task = tokio::spawn(self.clone().accept_port(
                            listener,
                            port.clone(),
                            stop_rx.clone(),
                            in_flight.clone(),
                        ));
                        open.insert(port.port, (port, task));
                    }
                    Err(e) => {
                        tracing::warn!(
                            port = port.port,
                            app = port.app,
                            "cannot listen on {ip}:{}: {e}; the app's port is unreachable until it is free (tried again every {}s)",
                            port.port,
                            REBIND_AFTER.as_secs()
                        );
                        unbindable.insert(port.port, Instant::now());
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(RECONCILE_EVERY) => {}
                () = &mut shutdown => break,
            }
        }
        for (_, task) in open.into_values() {
            task.abort();
        }
        let _ = stop_tx.send(true);
        let deadline = Instant::now() + self.inner.config.drain_timeout;
        while Arc::strong_count(&in_flight) > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn accept_port(
        self,
        listener: TcpListener,
        port: PublicPort,
        stop: watch::Receiver<bool>,
        in_flight: Arc<()>,
    ) {
        // The TLS side is made once for the listener: certificates by SNI, else the app's own.
        let tls = if port.handlers.tls {
            let made = self.inner.config.tls.clone().map(|certificates| {
                let name = format!("{}.localhost", port.app);
                crate::tls::server_config(certificates, Some(name), port.handlers.http)
            });
            match made {
                Some(Ok(config)) => Some(config),
                Some(Err(e)) => {
                    tracing::warn!(port = port.port, "TLS: {e}; the port is not served");
                    return;
                }
                None => {
                    tracing::warn!(
                        port = port.port,
                        "a `tls` port but no certificates: not served"
                    );
                    return;
                }
            }
        } else {
            None
        };
        let port = Arc::new(port);
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(port = port.port, "accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(place) = self.inner.clients.connect(peer.ip()) else {
                tracing::debug!(%peer, "too many connections from one client: closed");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (proxy, port, tls, mut stop, in_flight) = (
                self.clone(),
                port.clone(),
                tls.clone(),
                stop.clone(),
                in_flight.clone(),
            );
            tokio::spawn(async move {
                proxy
                    .port_connection(stream, peer, &port, tls, &mut stop)
                    .await;
                drop((place, in_flight));
            });
        }
    }

    /// One client connection to a public port, through the port's handlers (`tls`: the
    /// listener's TLS side, for ports with the `tls` handler).
    async fn port_connection(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        port: &PublicPort,
        tls: Option<Arc<rustls::ServerConfig>>,
        stop: &mut watch::Receiver<bool>,
    ) {
        let local = stream.local_addr().unwrap_or(peer);
        let conn = Conn {
            peer,
            listener: Listener {
                public_port: port.port,
                https: port.handlers.tls,
                worker: false,
            },
        };
        let Some(config) = tls else {
            if port.handlers.http {
                self.connection(stream, conn, stop).await;
            } else {
                self.pass_through(stream, conn, &port.app, local).await;
            }
            return;
        };
        let Some(tls) = self.accept_tls(config, stream, peer).await else {
            return;
        };
        if port.handlers.http {
            self.connection(tls, conn, stop).await;
        } else {
            self.pass_through(tls, conn, &port.app, local).await;
        }
    }

    /// Connects `client` to a machine of `app` (the next one when one refuses, a stopped one
    /// started when none runs) and copies both ways until either side closes. The connection
    /// counts against the machine's limits while it lasts.
    async fn pass_through<I>(&self, mut client: I, conn: Conn, app: &str, local: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        let inner = &self.inner;
        let started = Instant::now();
        let mut constraint = Constraint {
            app: app.to_string(),
            tcp: true,
            ..Constraint::default()
        };
        let port = conn.listener.public_port;
        loop {
            let (target, slot) = match self.pick(&constraint, conn).await {
                Ok(picked) => picked,
                Err(f) => {
                    tracing::info!(
                        target: "aloft_proxy::access",
                        client = %conn.peer.ip(),
                        app,
                        port,
                        code = f.code.unwrap_or("-"),
                        "connection closed: {}",
                        f.message
                    );
                    return;
                }
            };
            let connected = tokio::time::timeout(
                inner.config.connect_timeout,
                TcpStream::connect(socket(&target)),
            )
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))
            .and_then(|r| r);
            let mut upstream = match connected {
                Ok(s) => s,
                Err(e) => {
                    drop(slot);
                    if self.just_woken(&target.machine_id) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    tracing::debug!(machine = target.machine_id, "connect failed: {e}");
                    constraint.exclude_failed(&target);
                    inner.metrics.count(Event::Retry, app);
                    continue;
                }
            };
            let _ = upstream.set_nodelay(true);
            if let Some(version) = target.handlers.proxy_proto {
                let header = proxy_header(version, conn.peer, local);
                if let Err(e) = upstream.write_all(&header).await {
                    tracing::debug!(machine = target.machine_id, "PROXY header: {e}");
                    return;
                }
            }
            let copied = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            let (sent, received) = copied.unwrap_or((0, 0));
            tracing::info!(
                target: "aloft_proxy::access",
                client = %conn.peer.ip(),
                app,
                port,
                machine = target.machine_id,
                sent,
                received,
                ms = started.elapsed().as_millis() as u64,
                "connection",
            );
            drop(slot);
            return;
        }
    }
}

/// The PROXY protocol header telling the machine who the client is (`source`) and which
/// address it connected to (`destination`). Mixed families are written as IPv6 (IPv4-mapped).
pub(crate) fn proxy_header(
    version: ProxyProtoVersion,
    source: SocketAddr,
    destination: SocketAddr,
) -> Vec<u8> {
    let (source, destination) = match (source.ip(), destination.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => (source, destination),
        _ => (v6(source), v6(destination)),
    };
    match version {
        ProxyProtoVersion::V1 => {
            let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                source.ip(),
                destination.ip(),
                source.port(),
                destination.port()
            )
            .into_bytes()
        }
        ProxyProtoVersion::V2 => {
            let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
            h.push(0x21); // version 2, PROXY
            let mut addresses = Vec::with_capacity(36);
            match (source.ip(), destination.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    h.push(0x11); // TCP over IPv4
                    addresses.extend(s.octets());
                    addresses.extend(d.octets());
                }
                (s, d) => {
                    h.push(0x21); // TCP over IPv6
                    addresses.extend(v6_of(s).octets());
                    addresses.extend(v6_of(d).octets());
                }
            }
            addresses.extend(source.port().to_be_bytes());
            addresses.extend(destination.port().to_be_bytes());
            h.extend((addresses.len() as u16).to_be_bytes());
            h.extend(addresses);
            h
        }
    }
}

fn v6(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(v6_of(a.ip())), a.port())
}

fn v6_of(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_v1_is_one_line() {
        let h = proxy_header(
            ProxyProtoVersion::V1,
            "192.0.2.1:5555".parse().unwrap(),
            "127.0.0.1:5432".parse().unwrap(),
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.1 127.0.0.1 5555 5432\r\n");
        let h = proxy_header(
            ProxyProtoVersion::V1,
            "[2001:db8::1]:5555".parse().unwrap(),
            "127.0.0.1:5432".parse().unwrap(),
        );
        assert_eq!(
            h,
            b"PROXY TCP6 2001:db8::1 ::ffff:127.0.0.1 5555 5432\r\n".to_vec()
        );
    }

    #[test]
    fn proxy_v2_is_the_binary_header() {
        let h = proxy_header(
            ProxyProtoVersion::V2,
            "192.0.2.1:5555".parse().unwrap(),
            "127.0.0.1:5432".parse().unwrap(),
        );
        let mut expected = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        expected.extend([0x21, 0x11, 0, 12, 192, 0, 2, 1, 127, 0, 0, 1]);
        expected.extend(5555u16.to_be_bytes());
        expected.extend(5432u16.to_be_bytes());
        assert_eq!(h, expected);
        let h = proxy_header(
            ProxyProtoVersion::V2,
            "[2001:db8::1]:1".parse().unwrap(),
            "[::1]:2".parse().unwrap(),
        );
        assert_eq!(&h[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(h.len(), 16 + 36);
    }
}
