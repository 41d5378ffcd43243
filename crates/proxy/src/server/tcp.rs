//! Public ports other than the HTTP ones (`[[services.ports]]` such as `5432` or `8081`): each
//! gets its own listener, which serves the app whose service lists the port, with the port's
//! handlers. `tls` terminates TLS (certificate by SNI, else the app's own name); `http` serves
//! requests as the HTTP listeners do; otherwise the connection is passed through whole to the
//! least-loaded machine, starting with a PROXY protocol header when the port has `proxy_proto`.
//! A machine that refuses the connection is skipped for the next one, as for requests. A machine
//! on another host is reached through that host's worker listener (`Proxy::tunnel`).

use super::{
    ALOFT_PORT, ALOFT_TARGET, ALOFT_TCP, ALOFT_WORKER_TOKEN, Conn, Constraint, Failure, Listener,
    Proxy, WORKER_CONNECT_TIMEOUT, header_str, socket,
};
use crate::body::{self, ProxyBody};
use crate::catalog::{PublicPort, Target};
use crate::metrics::Event;
use aloft_types::config::ProxyProtoVersion;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the listeners are brought in line with the catalog.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);
/// How long an edge waits for a client's first bytes before connecting it to another host's
/// machine (they travel with the request to that host's worker).
const FIRST_BYTES_WAIT: Duration = Duration::from_millis(5);
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
        // What the client sent before a machine on another host was connected: it travels with
        // the CONNECT, so that the machine gets it as soon as it accepts, as from a local edge
        // (some servers drop a connection that stays silent). Read once, sent to every attempt.
        let mut first: Option<Vec<u8>> = None;
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
            if target.via.is_some() && first.is_none() {
                let mut buf = vec![0u8; 16 * 1024];
                let read = tokio::time::timeout(FIRST_BYTES_WAIT, client.read(&mut buf)).await;
                buf.truncate(read.ok().and_then(Result::ok).unwrap_or(0));
                first = Some(buf);
            }
            let early_out = first.as_deref().unwrap_or_default();
            let connected = match target.via {
                Some(worker) => {
                    self.tunnel(worker, &target, conn, app, local, early_out)
                        .await
                }
                None => tokio::time::timeout(
                    inner.config.connect_timeout,
                    TcpStream::connect(socket(&target)),
                )
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))
                .and_then(|r| r)
                .map(|s| (s, Vec::new())),
            };
            let (mut upstream, early) = match connected {
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
            // (Through a worker, the worker writes the PROXY header.)
            if let Some(version) = target.handlers.proxy_proto.filter(|_| target.via.is_none()) {
                let header = proxy_header(version, conn.peer, local);
                if let Err(e) = upstream.write_all(&header).await {
                    tracing::debug!(machine = target.machine_id, "PROXY header: {e}");
                    return;
                }
            }
            // What the client sent early (a local machine gets it now), and what the machine
            // sent before the worker's answer was read to its end.
            if target.via.is_none()
                && !early_out.is_empty()
                && upstream.write_all(early_out).await.is_err()
            {
                return;
            }
            if !early.is_empty() && client.write_all(&early).await.is_err() {
                return;
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

impl Proxy {
    /// A connection to another host's machine, through that host's worker listener: `CONNECT`
    /// naming the machine, followed by the client's `first` bytes; answered `200` (then the
    /// machine's bytes; any that came with the answer are returned) or with an error page (the
    /// machine is full or refused: try another).
    async fn tunnel(
        &self,
        worker: SocketAddr,
        target: &Target,
        conn: Conn,
        app: &str,
        local: SocketAddr,
        first: &[u8],
    ) -> std::io::Result<(TcpStream, Vec<u8>)> {
        let timed_out = |_| std::io::Error::from(std::io::ErrorKind::TimedOut);
        let mut stream = tokio::time::timeout(WORKER_CONNECT_TIMEOUT, TcpStream::connect(worker))
            .await
            .map_err(timed_out)??;
        stream.set_nodelay(true)?;
        let port = conn.listener.public_port;
        let token = self
            .inner
            .config
            .worker_token
            .as_deref()
            .unwrap_or_default();
        let head = format!(
            "CONNECT {app}.localhost:{port} HTTP/1.1\r\nhost: {app}.localhost:{port}\r\n{ALOFT_TARGET}: {}\r\n{ALOFT_PORT}: {port}\r\n{ALOFT_WORKER_TOKEN}: {token}\r\n{ALOFT_TCP}: {} {local}\r\n\r\n",
            target.machine_id, conn.peer
        );
        let mut out = head.into_bytes();
        out.extend_from_slice(first);
        stream.write_all(&out).await?;
        // The worker connects to the machine before it answers.
        let wait = self.inner.config.connect_timeout + WORKER_CONNECT_TIMEOUT;
        let mut answer = Vec::with_capacity(512);
        let end = loop {
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(wait, stream.read(&mut chunk))
                .await
                .map_err(timed_out)??;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            answer.extend_from_slice(&chunk[..n]);
            if let Some(i) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if answer.len() > 16 * 1024 {
                return Err(std::io::Error::other("the worker's answer has no end"));
            }
        };
        if !answer.starts_with(b"HTTP/1.1 200") {
            let line = String::from_utf8_lossy(&answer[..end]);
            return Err(std::io::Error::other(format!(
                "the worker said {}",
                line.lines().next().unwrap_or_default()
            )));
        }
        Ok((stream, answer.split_off(end)))
    }

    /// On the worker listener: an edge's `CONNECT` for a connection passed through whole to
    /// one of this host's machines (the one it names, if it has room). The answer is `200` once
    /// the machine accepted; the bytes then flow both ways until either side closes, counting
    /// against the machine's limits. A machine without room, or refusing, is an error page
    /// with `aloft-refused`: the edge tries another.
    pub(super) async fn worker_tunnel(
        &self,
        mut req: Request<Incoming>,
        conn: Conn,
    ) -> Result<(Response<ProxyBody>, Option<String>, String), (Failure, Option<String>)> {
        let app = self.app_of(&req).map_err(|f| (f, None))?;
        let fail = |mut f: Failure| {
            f.refused = true;
            (f, Some(app.clone()))
        };
        let addresses = header_str(req.headers(), &ALOFT_TCP).unwrap_or_default();
        let mut addresses = addresses
            .split(' ')
            .filter_map(|a| a.parse::<SocketAddr>().ok());
        let (client, local) = (
            addresses.next().unwrap_or(conn.peer),
            addresses.next().unwrap_or(conn.peer),
        );
        let constraint = Constraint {
            app: app.clone(),
            instance: header_str(req.headers(), &ALOFT_TARGET),
            timeout: Some(Duration::ZERO),
            from_edge: true,
            tcp: true,
            ..Constraint::default()
        };
        let (target, slot) = self.pick(&constraint, conn).await.map_err(fail)?;
        let mut upstream = tokio::time::timeout(
            self.inner.config.connect_timeout,
            TcpStream::connect(socket(&target)),
        )
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))
        .and_then(|r| r)
        .map_err(|e| {
            fail(Failure::new(
                StatusCode::BAD_GATEWAY,
                Some("PC01"),
                format!("machine {} refused the connection: {e}", target.machine_id),
            ))
        })?;
        let _ = upstream.set_nodelay(true);
        let upgrade = hyper::upgrade::on(&mut req);
        let machine = target.machine_id.clone();
        tokio::spawn(async move {
            let upgraded = match upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(
                        machine = target.machine_id,
                        "an edge's tunnel did not open: {e}"
                    );
                    return;
                }
            };
            let mut edge = TokioIo::new(upgraded);
            if let Some(version) = target.handlers.proxy_proto {
                let header = proxy_header(version, client, local);
                if upstream.write_all(&header).await.is_err() {
                    return;
                }
            }
            let _ = tokio::io::copy_bidirectional(&mut edge, &mut upstream).await;
            drop(slot);
        });
        Ok((Response::new(body::empty()), Some(app), machine))
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
