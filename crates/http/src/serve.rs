//! Serving an axum router (the control plane's API, the agent, the registry) on a listener with
//! the edge's bounds, instead of `axum::serve`, which has none: at most
//! [`Limits::max_connections`] connections open at once (more are closed at once), the
//! first-bytes, idle and request-body bounds of [`conn`](crate::conn), and HTTP/1's own
//! header-read timeout. Requests in flight are never cut: a streamed response (logs, pull
//! progress, a machine wait) lasts as long as it sends. [`serve_tls`] does the same behind TLS
//! (the handshake bounded by the first-bytes timeout).
//!
//! State: a semaphore of connection permits, one per open connection.

use crate::conn::{Activity, Bounds, Held, IdleBody};
use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// What an API server allows.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    pub bounds: Bounds,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            bounds: Bounds::default(),
        }
    }
}

/// Serves `router` on `listener` until `shutdown`, then lets the open connections finish their
/// requests (the caller bounds how long).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(listener, router, limits, None, shutdown).await
}

/// [`serve`] behind TLS with `config`: a client that does not finish its handshake within the
/// first-bytes timeout is closed.
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    config: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    serve_with(listener, router, limits, Some(acceptor), shutdown).await
}

/// A connection's byte stream, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

async fn serve_with(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
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
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many connections open: closed");
            continue;
        };
        let router = router.clone();
        let mut stop = stop_rx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let stream: Box<dyn Io> = match tls {
                None => Box::new(stream),
                Some(acceptor) => {
                    match tokio::time::timeout(limits.bounds.first_bytes, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => Box::new(tls),
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            let activity = Activity::new();
            let service = {
                let activity = activity.clone();
                service_fn(move |req: http::Request<Incoming>| {
                    let busy = activity.begin();
                    let req = req.map(|b| Body::new(IdleBody::new(b, limits.bounds.body_idle)));
                    let router = router.clone();
                    async move {
                        let resp = router.oneshot(req).await?;
                        Ok::<_, std::convert::Infallible>(resp.map(|b| Held::new(b, busy)))
                    }
                })
            };
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.bounds.first_bytes)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = async { let _ = stop.wait_for(|s| *s).await; } => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
                () = activity.idle_out(limits.bounds) => if activity.served() {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(limits.bounds.first_bytes, connection).await;
                }
            }
            drop(permit);
        });
    }
    let _ = stop_tx.send(true);
    // Wait for every connection to finish (the supervisor drops this after its drain timeout).
    let _ = permits
        .acquire_many(u32::try_from(limits.max_connections).unwrap_or(u32::MAX))
        .await;
    Ok(())
}
