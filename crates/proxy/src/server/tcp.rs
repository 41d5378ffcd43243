//! Public ports other than the HTTP ones (`[[services.ports]]` such as `5432` or `8081`): each
//! gets its own listener, which serves the app whose service lists the port, with the port's
//! handlers. `tls` terminates TLS (certificate by SNI, else the app's own name); `http` serves
//! requests as the HTTP listeners do; otherwise the connection is passed through whole to the
//! least-loaded machine, starting with a PROXY protocol header when the port has `proxy_proto`.
//! A machine that refuses the connection is skipped for the next one, as for requests. A machine
//! on another host is reached through that host's worker listener (`Proxy::tunnel`; the
//! worker's side is in `worker`). Connecting goes through the same forward-with-retries
//! loop as requests (`forward`), with [`PassThrough`] as its attempt.

use super::ctx::Ctx;
use super::forward::{Attempt, Next};
use super::headers::{ALOFT_PORT, ALOFT_TARGET, ALOFT_TCP, ALOFT_WORKER_TOKEN, proxy_header};
use super::pick::Constraint;
use super::{Conn, Listener, Proxy, WORKER_CONNECT_TIMEOUT, socket};
use aloft_catalog::load::Slot;
use aloft_catalog::{PublicPort, Target};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
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
                let served = super::served(&self.inner.catalog);
                crate::tls::server_config(certificates, served, Some(name), port.handlers.http)
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
    /// started when none runs) and copies both ways until either side closes or neither sends
    /// for the tunnel idle timeout. The connection
    /// counts against the machine's limits while it lasts.
    async fn pass_through<I>(&self, mut client: I, conn: Conn, app: &str, local: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        let mut ctx = Ctx::new(conn, String::new());
        ctx.app = Some(app.to_string());
        ctx.constraint = Constraint {
            app: app.to_string(),
            tcp: true,
            ..Constraint::default()
        };
        let mut attempt = PassThrough {
            client: &mut client,
            local,
            first: None,
        };
        if let Err(f) = self.forward(&mut ctx, &mut attempt).await {
            tracing::info!(
                target: "aloft_proxy::access",
                client = %conn.peer.ip(),
                app,
                port = conn.listener.public_port,
                code = f.code.unwrap_or("-"),
                "connection closed: {}",
                f.message
            );
        }
    }
}

/// A client's connection, passed through whole to the machine the forward loop picks.
struct PassThrough<'a, I> {
    client: &'a mut I,
    /// The address the client connected to (for the PROXY header).
    local: SocketAddr,
    /// What the client sent before a machine on another host was connected: it travels with
    /// the CONNECT, so that the machine gets it as soon as it accepts, as from a local edge
    /// (some servers drop a connection that stays silent). Read once, sent to every attempt.
    first: Option<Vec<u8>>,
}

impl<I: AsyncRead + AsyncWrite + Unpin> Attempt for PassThrough<'_, I> {
    type Output = ();

    async fn attempt(
        &mut self,
        proxy: &Proxy,
        ctx: &mut Ctx,
        target: Target,
        slot: Slot,
    ) -> Next<()> {
        let conn = ctx.conn;
        let app = ctx.app_name().to_string();
        let app = app.as_str();
        let port = conn.listener.public_port;
        let local = self.local;
        if target.via.is_some() && self.first.is_none() {
            let mut buf = vec![0u8; 16 * 1024];
            let read = tokio::time::timeout(FIRST_BYTES_WAIT, self.client.read(&mut buf)).await;
            buf.truncate(read.ok().and_then(Result::ok).unwrap_or(0));
            self.first = Some(buf);
        }
        let early_out = self.first.as_deref().unwrap_or_default();
        let connected = match target.via {
            Some(worker) => {
                proxy
                    .tunnel(worker, &target, conn, app, local, early_out)
                    .await
            }
            None => tokio::time::timeout(
                proxy.inner.config.connect_timeout,
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
                if proxy.just_woken(&target.machine_id) {
                    return Next::Again(Some(Duration::from_millis(100)));
                }
                tracing::debug!(machine = target.machine_id, "connect failed: {e}");
                proxy.try_another(ctx, &target, None);
                return Next::Again(None);
            }
        };
        let _ = upstream.set_nodelay(true);
        // (Through a worker, the worker writes the PROXY header.)
        if let Some(version) = target.handlers.proxy_proto.filter(|_| target.via.is_none()) {
            let header = proxy_header(version, conn.peer, local);
            if let Err(e) = upstream.write_all(&header).await {
                tracing::debug!(machine = target.machine_id, "PROXY header: {e}");
                return Next::Done(());
            }
        }
        // What the client sent early (a local machine gets it now), and what the machine
        // sent before the worker's answer was read to its end.
        if target.via.is_none()
            && !early_out.is_empty()
            && upstream.write_all(early_out).await.is_err()
        {
            return Next::Done(());
        }
        if !early.is_empty() && self.client.write_all(&early).await.is_err() {
            return Next::Done(());
        }
        let idle = proxy.inner.config.protection.tunnel_idle_timeout;
        let copied =
            crate::splice::copy_bidirectional_idle(&mut *self.client, &mut upstream, idle).await;
        let (sent, received) = copied.unwrap_or((0, 0));
        tracing::info!(
            target: "aloft_proxy::access",
            client = %conn.peer.ip(),
            app,
            port,
            machine = target.machine_id,
            sent,
            received,
            ms = ctx.started.elapsed().as_millis() as u64,
            "connection",
        );
        drop(slot);
        Next::Done(())
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
}
