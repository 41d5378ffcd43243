//! The edge: a client's request on a public listener. It is held to the client's request rate,
//! finds the app from `Host`, redirects to HTTPS when the app's service forces it, reads the
//! client's hints (`fly-force-instance-id`, `fly-prefer-region`), sets the forwarding headers,
//! and forwards the request to the closest machine with room (`forward`), following
//! `fly-replay`.

use super::ctx::Ctx;
use super::forward::Outgoing;
use super::headers::{FLY_FORCE_INSTANCE, FLY_PREFER_REGION, header_str, value};
use super::pick::Constraint;
use super::{Conn, Failure, Proxy};
use crate::body::{self, ProxyBody};
use http::header;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

impl Proxy {
    /// Routes a client's request; what it learns (the app, the machine) goes in `ctx`.
    pub(super) async fn edge(
        &self,
        req: Request<Incoming>,
        ctx: &mut Ctx,
    ) -> Result<Response<ProxyBody>, Failure> {
        let conn = ctx.conn;
        if !self.inner.clients.allow_request(conn.peer.ip()) {
            return Err(Failure::new(
                StatusCode::TOO_MANY_REQUESTS,
                None,
                "too many requests from your address; slow down and try again",
            ));
        }
        let app = self.app_of(&req)?;
        ctx.app = Some(app.clone());
        if !conn.listener.https
            && let Some(redirect) = self.https_redirect(&app, &req, conn)
        {
            ctx.machine = Some("-".into());
            return Ok(redirect);
        }
        let mut out = Outgoing::new(req, &self.inner.config.protection);
        ctx.constraint = Constraint {
            app,
            instance: header_str(&out.headers, &FLY_FORCE_INSTANCE),
            prefer_region: header_str(&out.headers, &FLY_PREFER_REGION)
                .map(|r| r.to_ascii_lowercase()),
            ..Constraint::default()
        };
        let headers = std::mem::take(&mut out.headers);
        out.headers = self.forward_headers(headers, &out.uri, conn, &ctx.request_id, out.upgrade);
        self.forward(ctx, &mut out).await
    }

    /// `301` to the same URL over HTTPS, when the app's service forces HTTPS.
    fn https_redirect<B>(
        &self,
        app: &str,
        req: &Request<B>,
        conn: Conn,
    ) -> Option<Response<ProxyBody>> {
        let targets = self.inner.catalog.targets(app, conn.listener.public_port)?;
        if !targets.iter().any(|t| t.force_https) {
            return None;
        }
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))?;
        let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let port = match self.inner.config.https_port {
            443 => String::new(),
            p => format!(":{p}"),
        };
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let mut resp = Response::new(body::empty());
        *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
        resp.headers_mut().insert(
            header::LOCATION,
            value(&format!("https://{name}{port}{path}")),
        );
        Some(resp)
    }
}
