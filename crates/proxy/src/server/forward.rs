//! The one forward-with-retries loop ([`Proxy::forward`]): pick a machine with room, use it
//! once, and from what came of it decide: done, the same machine again (a machine autostart
//! just started, a pooled connection closed under an idempotent request), another machine
//! (refused, full, failed), a new constraint (`fly-replay`), or give up with an error page.
//!
//! What "use it once" means is an [`Attempt`]: [`Outgoing`] forwards an HTTP request (for the
//! edge and the worker alike; only the edge follows `fly-replay`, a worker passes it back), and
//! `tcp` connects a passed-through connection. The retry bookkeeping (attempts,
//! excluded machines, the last refusal) lives in the request's [`Ctx`].

use super::ctx::{Ctx, Role};
use super::headers::{ALOFT_REFUSED, FLY_REPLAY, FLY_REPLAY_SRC, is_upgrade, strip_hop_by_hop};
use super::pick::Constraint;
use super::{Failure, Proxy, error_chain, socket};
use crate::body::{self, Guarded, ProxyBody, RequestBody};
use crate::metrics::Event;
use crate::replay;
use aloft_catalog::Target;
use aloft_catalog::load::Slot;
use aloft_http::conn::is_body_timeout;
use http::header::{HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Error as ClientError;
use hyper_util::rt::TokioIo;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A request is replayed at most this many times (then it is a loop).
const MAX_REPLAYS: u32 = 5;

/// What one attempt on a machine came to.
pub(super) enum Next<T> {
    /// Done: the loop ends with this.
    Done(T),
    /// Pick again, after a pause if any (the attempt narrowed the constraint, or not).
    Again(Option<Duration>),
    /// Give up with this error.
    Fail(Failure),
}

/// One use of a picked machine: forwarding an HTTP request to it, or connecting a client's
/// connection to it.
pub(super) trait Attempt {
    type Output;

    /// Uses `target`, holding its `slot` for as long as the use lasts (or letting it go), and
    /// says what comes next.
    async fn attempt(
        &mut self,
        proxy: &Proxy,
        ctx: &mut Ctx,
        target: Target,
        slot: Slot,
    ) -> Next<Self::Output>;
}

impl Proxy {
    /// Picks a machine for `ctx`'s constraint and attempts it until an attempt is done or
    /// fails, or no machine is left (then the last refusal is the error, if there was one; a
    /// worker's error tells the edge to try its next choice).
    pub(super) async fn forward<A: Attempt>(
        &self,
        ctx: &mut Ctx,
        attempt: &mut A,
    ) -> Result<A::Output, Failure> {
        loop {
            let (target, slot) = match self.pick(&ctx.constraint, ctx.conn).await {
                Ok(picked) => picked,
                Err(f) => {
                    let mut f = ctx.refused.take().unwrap_or(f);
                    f.refused = ctx.role() == Role::Worker;
                    return Err(f);
                }
            };
            match attempt.attempt(self, ctx, target, slot).await {
                Next::Done(out) => return Ok(out),
                Next::Fail(f) => return Err(f),
                Next::Again(None) => {}
                Next::Again(Some(pause)) => tokio::time::sleep(pause).await,
            }
        }
    }

    /// After `target` failed: the next pick is another machine; `refusal` (if any) is the
    /// error when none is left.
    pub(super) fn try_another(&self, ctx: &mut Ctx, target: &Target, refusal: Option<Failure>) {
        ctx.constraint.exclude_failed(target);
        self.inner.metrics.count(Event::Retry, ctx.app_name());
        if refusal.is_some() {
            ctx.refused = refusal;
        }
    }

    /// Sends `out` to `target` once: straight to a machine on this host, or to its host's
    /// worker listener.
    async fn send(
        &self,
        ctx: &Ctx,
        out: &Outgoing,
        target: &Target,
        body: ProxyBody,
    ) -> Result<Response<Incoming>, ClientError> {
        let inner = &self.inner;
        let uri = Uri::builder()
            .scheme("http")
            .authority(target.via.unwrap_or_else(|| socket(target)).to_string())
            .path_and_query(out.uri.path_and_query().map_or("/", |p| p.as_str()))
            .build()
            .expect("a valid URI");
        // To another host's proxy: HTTP/1.1, which passes h2c on to the machine if asked.
        let h2 = target.handlers.h2_backend && !out.upgrade && target.via.is_none();
        let mut upstream = Request::builder()
            .method(out.method.clone())
            .uri(uri)
            .version(if h2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            })
            .body(body)
            .expect("a valid request");
        *upstream.headers_mut() = out.headers.clone();
        if target.via.is_some() {
            self.to_worker(upstream.headers_mut(), target, ctx.conn);
        }
        let client = if target.via.is_some() {
            &inner.upstream_workers
        } else if h2 {
            &inner.upstream_h2
        } else if ctx.resends > 0 {
            &inner.upstream_fresh
        } else {
            &inner.upstream
        };
        client.request(upstream).await
    }

    /// The machine's host said no (full, or the machine stopped meanwhile).
    fn refused_by_host<T>(&self, ctx: &mut Ctx, out: &Outgoing, target: &Target) -> Next<T> {
        let failure = Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("PR04"),
            format!(
                "machine {} in {} has no room for the request",
                target.machine_id, target.region
            ),
        );
        if !out.body.can_resend() {
            return Next::Fail(failure);
        }
        self.try_another(ctx, target, Some(failure));
        Next::Again(None)
    }

    /// Sending `out` to `target` failed with `e`.
    fn send_failed<T>(
        &self,
        ctx: &mut Ctx,
        out: &Outgoing,
        target: &Target,
        e: &ClientError,
    ) -> Next<T> {
        if e.is_connect() {
            let failure = Failure::new(
                StatusCode::BAD_GATEWAY,
                Some("PC01"),
                format!(
                    "machine {} refused the connection: {}",
                    target.machine_id,
                    error_chain(e)
                ),
            );
            if !out.body.can_resend() {
                return Next::Fail(failure);
            }
            if self.just_woken(&target.machine_id) {
                // Started a moment ago: its process may not listen yet.
                return Next::Again(Some(Duration::from_millis(100)));
            }
            tracing::info!(
                machine = target.machine_id,
                "connect failed, trying another: {}",
                error_chain(e)
            );
            self.try_another(ctx, target, Some(failure));
            return Next::Again(None);
        }
        let idempotent = out.idempotent();
        // A pooled connection the machine closed just as the request went out: an idempotent
        // request is sent again (as nginx does), on a new connection, three times at most, at
        // once, then 50 ms and 200 ms later (a machine short of CPU drops a few connections in
        // a row).
        if target.via.is_none() && idempotent && out.body.can_resend() && ctx.resends < 3 {
            tracing::info!(machine = target.machine_id, "resending: {}", error_chain(e));
            ctx.resends += 1;
            self.inner.metrics.count(Event::Retry, ctx.app_name());
            return Next::Again(Some(Duration::from_millis([0, 50, 200][ctx.resends - 1])));
        }
        let what = if target.via.is_some() {
            format!(
                "machine {}'s host in {} did not answer",
                target.machine_id, target.region
            )
        } else {
            format!("machine {} failed to answer", target.machine_id)
        };
        let failure = Failure::new(
            StatusCode::BAD_GATEWAY,
            None,
            format!("{what}: {}", error_chain(e)),
        );
        if !idempotent || !out.body.can_resend() {
            return Next::Fail(failure);
        }
        // An idempotent request that a machine failed (after the resends) or whose host did
        // not answer (dead, or cut off) goes to the next choice, in this region or the next (a
        // worker, whose only choice is the edge's, refuses, and the edge tries its next).
        tracing::info!(
            machine = target.machine_id,
            "{what}, trying another: {}",
            error_chain(e)
        );
        self.try_another(ctx, target, Some(failure));
        ctx.resends = 0;
        Next::Again(None)
    }

    /// `target` bounced the request with `fly-replay: value`: where it may go next.
    fn bounce(
        &self,
        ctx: &mut Ctx,
        out: &mut Outgoing,
        target: Target,
        value: &HeaderValue,
    ) -> Result<(), Failure> {
        let instruction = value
            .to_str()
            .map_err(|_| "it is not ASCII".to_string())
            .and_then(replay::parse)
            .map_err(|why| {
                Failure::new(
                    StatusCode::BAD_GATEWAY,
                    Some("PA03"),
                    format!(
                        "machine {} sent an invalid fly-replay header: {why}",
                        target.machine_id
                    ),
                )
            })?;
        if let Some(app) = instruction.app.as_deref() {
            self.replay_stays_in_org(&target, app, ctx.conn.listener.public_port)?;
        }
        ctx.replays += 1;
        if ctx.replays > MAX_REPLAYS {
            return Err(Failure::new(
                StatusCode::LOOP_DETECTED,
                Some("PA03"),
                format!(
                    "the request was replayed {MAX_REPLAYS} times: the machines' fly-replay headers send it round in a loop"
                ),
            ));
        }
        if !out.body.can_resend() {
            return Err(Failure::new(
                StatusCode::BAD_GATEWAY,
                Some("PA01"),
                "the machine asked to replay a request whose body is over 1 MB: too large to replay",
            ));
        }
        let now_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        let src = replay::source(
            &target.machine_id,
            &target.region,
            now_us,
            instruction.state.as_deref(),
        );
        if let Ok(v) = HeaderValue::from_str(&src) {
            out.headers.insert(FLY_REPLAY_SRC, v);
        }
        self.inner.metrics.count(Event::Replay, ctx.app_name());
        ctx.constraint = Constraint::replay(&instruction, &ctx.constraint.app, target);
        Ok(())
    }

    /// A machine's `fly-replay: app=` may only send a request to an app of its own org (the same
    /// private network): another org's app is refused (PR05) and the attempt logged. An app with no
    /// machines here is left to the usual "no such app" answer.
    fn replay_stays_in_org(&self, from: &Target, app: &str, port: u16) -> Result<(), Failure> {
        if app == from.app {
            return Ok(());
        }
        let Some(targets) = self.inner.catalog.targets(app, port) else {
            return Ok(());
        };
        if targets.iter().all(|t| t.network == from.network) {
            return Ok(());
        }
        tracing::warn!(
            from_app = %from.app,
            machine = %from.machine_id,
            to_app = %app,
            "refused a fly-replay to an app of another org"
        );
        Err(Failure::new(
            StatusCode::FORBIDDEN,
            Some("PR05"),
            format!(
                "machine {} asked to replay the request to app `{app}`, which is not in its org: fly-replay's app= names an app of the same org",
                from.machine_id
            ),
        ))
    }
}

/// An HTTP request as every attempt sends it: the body buffered (up to 1 MB, read once the first
/// machine is chosen) so that it can be sent again, the headers as the machine gets them.
pub(super) struct Outgoing {
    pub(super) method: Method,
    pub(super) uri: Uri,
    pub(super) headers: HeaderMap,
    pub(super) body: RequestBody,
    /// Whether the client asks for an upgrade (WebSocket and the like).
    pub(super) upgrade: bool,
    /// The client's side of an upgrade, joined to the machine's once it answers `101`.
    client_upgrade: Option<OnUpgrade>,
    /// How long an upgraded connection may carry no bytes either way.
    tunnel_idle: Duration,
}

impl Outgoing {
    /// `req`, its body to be read once a machine is chosen (none for an upgrade, whose bytes
    /// flow once the machine agrees), with at most the protection's body idle timeout between
    /// two pieces of it (and its tunnel idle timeout once upgraded).
    pub(super) fn new(mut req: Request<Incoming>, protection: &crate::Protection) -> Self {
        let upgrade = is_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (parts, incoming) = req.into_parts();
        let body = if upgrade {
            RequestBody::Buffered(bytes::Bytes::new())
        } else {
            RequestBody::new(incoming, protection.body_idle_timeout)
        };
        Self {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
            upgrade,
            client_upgrade,
            tunnel_idle: protection.tunnel_idle_timeout,
        }
    }

    /// Reads the body (up to the replay limit), now that a machine is chosen.
    async fn fill(&mut self) -> Result<(), Failure> {
        self.body.fill().await.map_err(|e| {
            if is_body_timeout(e.as_ref()) {
                Failure::new(StatusCode::REQUEST_TIMEOUT, None, e.to_string())
            } else {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    None,
                    format!("reading the request body: {e}"),
                )
            }
        })
    }

    fn idempotent(&self) -> bool {
        matches!(
            self.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        )
    }

    /// The machine's answer as the client gets it; an upgrade's bytes are copied both ways
    /// (holding the machine's slot) until either side closes or neither sends for the tunnel
    /// idle timeout.
    fn respond(
        &mut self,
        ctx: &mut Ctx,
        target: &Target,
        slot: Slot,
        mut resp: Response<Incoming>,
    ) -> Response<ProxyBody> {
        ctx.machine = Some(target.machine_id.clone());
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = self.client_upgrade.take()
        {
            let machine_upgrade = hyper::upgrade::on(&mut resp);
            let idle = self.tunnel_idle;
            tokio::spawn(async move {
                let _slot = slot;
                let (Ok(client), Ok(machine)) = (client_upgrade.await, machine_upgrade.await)
                else {
                    return;
                };
                let _ = crate::splice::copy_bidirectional_idle(
                    &mut TokioIo::new(client),
                    &mut TokioIo::new(machine),
                    idle,
                )
                .await;
            });
            let (parts, _) = resp.into_parts();
            return Response::from_parts(parts, body::empty());
        }
        let (mut parts, incoming) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        let body = Guarded::new(incoming, Some(slot)).boxed();
        Response::from_parts(parts, body)
    }
}

impl Attempt for Outgoing {
    type Output = Response<ProxyBody>;

    async fn attempt(
        &mut self,
        proxy: &Proxy,
        ctx: &mut Ctx,
        target: Target,
        slot: Slot,
    ) -> Next<Self::Output> {
        if let Err(f) = self.fill().await {
            return Next::Fail(f);
        }
        let Some(body) = self.body.take() else {
            return Next::Fail(Failure::new(
                StatusCode::BAD_GATEWAY,
                Some("PA01"),
                "the request body was sent already and is too large to send again (over 1 MB)",
            ));
        };
        let resp = match proxy.send(ctx, self, &target, body).await {
            Ok(r) if target.via.is_some() && r.headers().contains_key(&ALOFT_REFUSED) => {
                return proxy.refused_by_host(ctx, self, &target);
            }
            Ok(r) => r,
            Err(e) => return proxy.send_failed(ctx, self, &target, &e),
        };
        // A worker passes fly-replay back to the edge, which replays it.
        if ctx.role() == Role::Edge
            && let Some(value) = resp.headers().get(&FLY_REPLAY).cloned()
        {
            return match proxy.bounce(ctx, self, target, &value) {
                Ok(()) => {
                    drop(resp);
                    drop(slot);
                    Next::Again(None)
                }
                Err(f) => Next::Fail(f),
            };
        }
        Next::Done(self.respond(ctx, &target, slot, resp))
    }
}
