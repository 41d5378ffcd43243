//! The worker: an edge's request on the worker listener, for one of this host's machines. The
//! edge (on this host or another) is checked by the cluster's token, names the machine and the
//! public port the client used, and has set the forwarding headers already. The worker holds
//! the true load of its machines: a machine without room, or refusing, is answered with
//! `aloft-refused`, and the edge tries its next choice. It forwards requests through the same
//! loop as the edge (`forward`), and opens the `CONNECT` tunnels of connections an edge
//! passes through whole (`tcp`).

use super::ctx::Ctx;
use super::forward::Outgoing;
use super::headers::{
    ALOFT_PORT, ALOFT_TARGET, ALOFT_TCP, ALOFT_WORKER_TOKEN, constant_time_eq, header_str,
    proxy_header, strip_hop_by_hop,
};
use super::pick::Constraint;
use super::{Conn, Failure, Listener, Proxy, socket};
use crate::body::{self, ProxyBody};
use http::header::{HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

impl Proxy {
    /// Routes an edge's request to the machine it names; what it learns goes in `ctx`.
    pub(super) async fn worker(
        &self,
        req: Request<Incoming>,
        ctx: &mut Ctx,
    ) -> Result<Response<ProxyBody>, Failure> {
        ctx.conn = self.edge_request(req.headers(), ctx.conn)?;
        if req.method() == Method::CONNECT && req.headers().contains_key(&ALOFT_TCP) {
            return self.worker_tunnel(req, ctx).await;
        }
        let app = self.app_of(&req)?;
        ctx.app = Some(app.clone());
        let mut out = Outgoing::new(req, &self.inner.config.protection);
        // The edge picked the machine; when it has no room now, the edge picks another.
        ctx.constraint = Constraint {
            app,
            instance: header_str(&out.headers, &ALOFT_TARGET),
            timeout: Some(Duration::ZERO),
            from_edge: true,
            ..Constraint::default()
        };
        // The edge set the forwarding headers already.
        strip_hop_by_hop(&mut out.headers, out.upgrade);
        for internal in [&ALOFT_TARGET, &ALOFT_PORT, &ALOFT_WORKER_TOKEN, &ALOFT_TCP] {
            out.headers.remove(internal);
        }
        self.forward(ctx, &mut out).await
    }

    /// On the worker listener: checks the edge's token and takes the public port the client
    /// used from the request.
    fn edge_request(&self, h: &HeaderMap, conn: Conn) -> Result<Conn, Failure> {
        let token = h.get(&ALOFT_WORKER_TOKEN).map(HeaderValue::as_bytes);
        let expected = self.inner.config.worker_token.as_deref().map(str::as_bytes);
        if token.is_none() || !constant_time_eq(token, expected) {
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                None,
                "the worker listener takes requests from the cluster's proxies only",
            ));
        }
        let port = header_str(h, &ALOFT_PORT)
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    None,
                    "aloft-port is missing or invalid",
                )
            })?;
        if !h.contains_key(&ALOFT_TARGET) {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                None,
                "aloft-target is missing",
            ));
        }
        Ok(Conn {
            listener: Listener {
                public_port: port,
                ..conn.listener
            },
            ..conn
        })
    }

    /// On the worker listener: an edge's `CONNECT` for a connection passed through whole to
    /// one of this host's machines (the one it names, if it has room). The answer is `200` once
    /// the machine accepted; the bytes then flow both ways until either side closes, counting
    /// against the machine's limits. A machine without room, or refusing, is an error page
    /// with `aloft-refused`: the edge tries another.
    async fn worker_tunnel(
        &self,
        mut req: Request<Incoming>,
        ctx: &mut Ctx,
    ) -> Result<Response<ProxyBody>, Failure> {
        let conn = ctx.conn;
        let app = self.app_of(&req)?;
        ctx.app = Some(app.clone());
        let fail = |mut f: Failure| {
            f.refused = true;
            f
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
        let idle = self.inner.config.protection.tunnel_idle_timeout;
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
            let _ = crate::splice::copy_bidirectional_idle(&mut edge, &mut upstream, idle).await;
            drop(slot);
        });
        ctx.machine = Some(machine);
        Ok(Response::new(body::empty()))
    }
}
