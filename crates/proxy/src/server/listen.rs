//! The HTTP listeners (public and worker) and the metrics listener: accepting connections
//! (per-address connection limits, TLS), serving them within the protection's bounds on their
//! idle phases (`aloft_http::conn`) until shutdown and draining them, and one
//! request's start and end: its [`Ctx`], the edge or worker path by listener, the error page a
//! failure becomes, the headers every response gets, the metrics and the access log.

use super::ctx::{Ctx, Role};
use super::headers::{ALOFT_REFUSED, finish_headers};
use super::{Conn, Failure, Listener, Proxy};
use crate::body::{self, ProxyBody};
use aloft_http::conn::{Activity, Held};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// Connections the metrics listener serves at once (scrapers; more are closed).
const METRICS_CONNECTIONS: usize = 64;

impl Proxy {
    /// Serves `GET /metrics` on `listener` until `shutdown`: HTTP/1, at most
    /// [`METRICS_CONNECTIONS`] connections, each within the protection's idle bounds.
    pub async fn serve_metrics(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let permits = Arc::new(Semaphore::new(METRICS_CONNECTIONS));
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(_) => continue,
                },
                () = &mut shutdown => return,
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                continue;
            };
            let proxy = self.clone();
            let bounds = self.inner.config.protection.bounds(Listener::http(0));
            tokio::spawn(async move {
                let activity = Activity::new();
                let service = {
                    let activity = activity.clone();
                    service_fn(move |req: Request<Incoming>| {
                        let busy = activity.begin();
                        let resp = proxy.metrics_page(req.uri().path());
                        async move {
                            Ok::<_, Infallible>(resp.map(|body| Held::new(body, busy).boxed()))
                        }
                    })
                };
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(bounds.first_bytes)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(connection);
                tokio::select! {
                    _ = connection.as_mut() => {}
                    () = activity.idle_out(bounds) => if activity.served() {
                        connection.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(bounds.first_bytes, connection).await;
                    }
                }
                drop(permit);
            });
        }
    }

    /// The metrics listener's answer for `path`.
    fn metrics_page(&self, path: &str) -> Response<ProxyBody> {
        if path != "/metrics" {
            let mut resp = Response::new(body::full("the metrics are at /metrics\n"));
            *resp.status_mut() = StatusCode::NOT_FOUND;
            return resp;
        }
        let mut r = Response::new(body::full(self.metrics_text()));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        r
    }

    /// Serves HTTP on `listener` until `shutdown` resolves, then lets requests in flight finish
    /// (for at most the drain timeout).
    pub async fn serve(
        &self,
        listener: TcpListener,
        at: Listener,
        shutdown: impl Future<Output = ()>,
    ) {
        let (stop_tx, stop_rx) = watch::channel(false);
        // Counters of machines that serve nothing (destroyed ones among them) are dropped now
        // and then.
        let load = Arc::downgrade(&self.inner.load);
        let compact = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                let Some(load) = load.upgrade() else { return };
                load.compact(Duration::from_secs(3600));
            }
        });
        let open = Arc::new(());
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!("accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // Edges are not clients: their connections carry many clients' requests, and have a
            // cap of their own.
            let clients = if at.worker {
                &self.inner.worker_clients
            } else {
                &self.inner.clients
            };
            let Some(place) = clients.connect(peer.ip()) else {
                tracing::debug!(%peer, "too many connections from one address: closed");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let proxy = self.clone();
            let mut stop = stop_rx.clone();
            let open = open.clone();
            let tls = at.https.then(|| self.inner.https.clone());
            tokio::spawn(async move {
                let conn = Conn { peer, listener: at };
                match tls {
                    None => proxy.connection(stream, conn, &mut stop).await,
                    Some(None) => {
                        tracing::warn!("an HTTPS listener without a TLS configuration: closed");
                    }
                    Some(Some(config)) => {
                        if let Some(tls) = proxy.accept_tls(config, stream, peer).await {
                            proxy.connection(tls, conn, &mut stop).await;
                        }
                    }
                }
                drop((place, open));
            });
        }
        compact.abort();
        let _ = stop_tx.send(true);
        let deadline = Instant::now() + self.inner.config.drain_timeout;
        while Arc::strong_count(&open) > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The TLS handshake with a client, given the header-read timeout to finish.
    pub(super) async fn accept_tls(
        &self,
        config: Arc<rustls::ServerConfig>,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let timeout = self.inner.config.protection.header_read_timeout;
        match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => Some(tls),
            Ok(Err(e)) => {
                tracing::debug!(%peer, "TLS handshake: {e}");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake: too slow");
                None
            }
        }
    }

    /// Serves one client connection until it closes, or gracefully ends it when `stop` says so.
    pub(super) async fn connection<I>(&self, io: I, conn: Conn, stop: &mut watch::Receiver<bool>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let proxy = self.clone();
        let activity = Activity::new();
        let service = {
            let activity = activity.clone();
            service_fn(move |req| {
                let busy = activity.begin();
                let proxy = proxy.clone();
                async move {
                    let resp = proxy.handle(req, conn).await;
                    Ok::<_, Infallible>(resp.map(|body| Held::new(body, busy).boxed()))
                }
            })
        };
        let http = if conn.listener.worker {
            &self.inner.http_worker
        } else {
            &self.inner.http
        };
        let connection = http.serve_connection_with_upgrades(TokioIo::new(io), service);
        let bounds = self.inner.config.protection.bounds(conn.listener);
        tokio::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => {}
            () = async { let _ = stop.wait_for(|s| *s).await; } => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
            // Too long without a first request (dropped), or idle (closed gracefully).
            () = activity.idle_out(bounds) => if activity.served() {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(bounds.first_bytes, connection).await;
            }
        }
    }

    /// One request, start to end: never fails, errors are pages. The edge or the worker (by
    /// the listener) routes it; what they learned along the way is in its [`Ctx`].
    async fn handle(&self, req: Request<Incoming>, conn: Conn) -> Response<ProxyBody> {
        let request_id = format!("{}-{}", ulid::Ulid::new(), self.inner.config.region);
        let mut ctx = Ctx::new(conn, request_id);
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let routed = match ctx.role() {
            Role::Edge => self.edge(req, &mut ctx).await,
            Role::Worker => self.worker(req, &mut ctx).await,
        };
        let (mut response, machine, code) = match routed {
            Ok(resp) => (resp, ctx.machine.take(), None),
            Err(failure) => {
                let code = failure.code;
                (self.error_page(failure), None, code)
            }
        };
        let app = ctx.app.take();
        // A name no app has is counted as `-`: what a client sends makes no series.
        let label = app
            .as_deref()
            .filter(|a| machine.is_some() || self.known_app(a, conn.listener.public_port));
        self.inner.metrics.response(
            label.unwrap_or("-"),
            response.status().as_u16(),
            machine.as_deref(),
            ctx.started.elapsed(),
            code,
        );
        finish_headers(response.headers_mut(), &ctx.request_id);
        tracing::info!(
            target: "aloft_proxy::access",
            request_id = ctx.request_id,
            client = %conn.peer.ip(),
            app = app.as_deref().unwrap_or("-"),
            machine = machine.as_deref().unwrap_or("-"),
            %method,
            path,
            status = response.status().as_u16(),
            ms = ctx.started.elapsed().as_millis() as u64,
        );
        response
    }

    fn error_page(&self, f: Failure) -> Response<ProxyBody> {
        let text = match f.code {
            Some(code) => format!("aloft proxy: {} ({code})\n", f.message),
            None => format!("aloft proxy: {}\n", f.message),
        };
        let mut resp = Response::new(body::full(text));
        *resp.status_mut() = f.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(code) = f.code {
            h.insert("aloft-error-code", HeaderValue::from_static(code));
        }
        if f.refused {
            h.insert(ALOFT_REFUSED, HeaderValue::from_static("1"));
        }
        if f.status == StatusCode::TOO_MANY_REQUESTS {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}
