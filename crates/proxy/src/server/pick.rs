//! Where a request may go and the machine it goes to: the [`Constraint`] that client hints,
//! `fly-replay`, the edge's choice and failed machines narrow, the closeness order
//! ([`Preference`]) and [`Proxy::pick`], which takes a slot on the first machine in that order
//! with room, waking a stopped machine (`wake`) or waiting in the queue when none has.

use super::{Conn, Failure, Proxy};
use crate::balance::{Distance, rank};
use crate::replay::{Fallback, Replay};
use aloft_catalog::load::Slot;
use aloft_catalog::{Catalog, Target};
use http::StatusCode;
use std::time::{Duration, Instant};

/// Where a request may go: narrowed by client hints and by `fly-replay`.
#[derive(Debug, Clone, Default)]
pub(super) struct Constraint {
    pub(super) app: String,
    /// Only these regions (empty: any).
    pub(super) regions: Vec<String>,
    /// Only this machine.
    pub(super) instance: Option<String>,
    /// This machine first.
    pub(super) prefer_instance: Option<String>,
    /// Not these machines (`elsewhere=true`, or their connection failed).
    pub(super) excluded: Vec<String>,
    /// This region first (`fly-prefer-region`).
    pub(super) prefer_region: Option<String>,
    /// How long to wait for a target with room.
    pub(super) timeout: Option<Duration>,
    /// Where to go when the target has no room in time: the machine that asked for the replay.
    pub(super) fallback: Option<(Target, Fallback)>,
    /// A connection passed through whole (ports without the `http` handler), not a request.
    pub(super) tcp: bool,
    /// On a worker: the edge chose the machine; no waiting, and no waking another one.
    pub(super) from_edge: bool,
}

impl Constraint {
    fn allows(&self, t: &Target) -> bool {
        (self.regions.is_empty() || self.regions.contains(&t.region))
            && self.instance.as_ref().is_none_or(|i| *i == t.machine_id)
            && !self.excluded.contains(&t.machine_id)
            && t.handlers.http != self.tcp
    }
}

/// Closeness: the preferred region first, then the proxy's own region, then the others by the
/// round-trip time the catalog measured to them (in whole milliseconds, so that regions as near
/// as each other share the traffic); regions not measured yet come last.
struct Preference<'a> {
    own: &'a str,
    prefer_region: Option<&'a str>,
    catalog: &'a dyn Catalog,
}

impl Distance for Preference<'_> {
    fn distance(&self, region: &str) -> u32 {
        if self.prefer_region == Some(region) {
            0
        } else if region == self.own {
            1
        } else {
            let ms = self.catalog.rtt(region).map_or(UNMEASURED_MS, |rtt| {
                rtt.as_millis().min(u128::from(UNMEASURED_MS)) as u32
            });
            2 + ms
        }
    }
}

/// Where an unmeasured region ranks: behind any measured one.
const UNMEASURED_MS: u32 = 100_000;

impl Proxy {
    /// A machine with room for the request and its slot there, waiting up to the queue (or
    /// replay) timeout when every candidate is full.
    pub(super) async fn pick(&self, c: &Constraint, conn: Conn) -> Result<(Target, Slot), Failure> {
        let inner = &self.inner;
        let queue_deadline = Instant::now() + c.timeout.unwrap_or(inner.config.queue_timeout);
        let mut wake_deadline: Option<Instant> = None;
        let port = conn.listener.public_port;
        loop {
            let freed = inner.load.freed();
            let targets = inner.catalog.targets(&c.app, port).ok_or_else(|| {
                Failure::new(
                    StatusCode::NOT_FOUND,
                    None,
                    format!(
                        "no app `{}` has machines here: check the name (`aloft apps list`) or run a machine for it (`aloft machine run`)",
                        c.app
                    ),
                )
            })?;
            let targets: Vec<&Target> = targets.iter().filter(|t| c.allows(t)).collect();
            let preference = Preference {
                own: &inner.config.region,
                prefer_region: c.prefer_region.as_deref(),
                catalog: inner.catalog.as_ref(),
            };
            let mut order = rank(&targets, &inner.load, &preference);
            if let Some(prefer) = &c.prefer_instance {
                order.sort_by_key(|t| t.machine_id != *prefer);
            }
            // Autostart: every running machine over its soft limit (or none running) wakes the
            // closest stopped one; this request waits for it only if nothing else has room.
            let room_under_soft = targets.iter().any(|t| {
                t.routable && inner.load.current(&t.machine_id).max(t.load) < t.limits.soft
            });
            if !room_under_soft
                && !c.from_edge
                && self.wake(&targets, &preference)
                && wake_deadline.is_none()
            {
                wake_deadline = Some(Instant::now() + inner.config.wake_timeout);
            }
            for t in order {
                // The worker side's word: it refuses when the machine filled up meanwhile.
                if let Some(slot) = inner.load.try_acquire(&t.machine_id, t.limits.hard) {
                    return Ok((t.clone(), slot));
                }
            }
            let any_routable = targets.iter().any(|t| t.routable);
            let deadline = wake_deadline.map_or(queue_deadline, |w| w.max(queue_deadline));
            let give_up = Instant::now() >= deadline
                || (!any_routable && wake_deadline.is_none() && c.fallback.is_none());
            if give_up {
                if let Some((own, how)) = &c.fallback {
                    let hard = match how {
                        Fallback::ForceSelf => u32::MAX,
                        Fallback::PreferSelf => own.limits.hard,
                    };
                    if let Some(slot) = inner.load.try_acquire(&own.machine_id, hard) {
                        return Ok((own.clone(), slot));
                    }
                }
                return Err(if wake_deadline.is_some() && !any_routable {
                    Failure::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        Some("PM03"),
                        format!(
                            "app `{}`'s machine did not start within {}s",
                            c.app,
                            inner.config.wake_timeout.as_secs()
                        ),
                    )
                } else if any_routable {
                    Failure::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        Some("PR04"),
                        format!(
                            "every machine of app `{}` is at its hard limit; try again shortly",
                            c.app
                        ),
                    )
                } else {
                    Failure::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        Some("PR01"),
                        format!(
                            "app `{}` has no started machine that serves port {port} over {}{}; start one with `aloft machine start`",
                            c.app,
                            if c.tcp { "TCP" } else { "HTTP" },
                            c.describe()
                        ),
                    )
                });
            }
            tokio::select! {
                () = freed => {}
                () = tokio::time::sleep_until(deadline.into()) => {}
                // Machines that start or pass their checks are found on the next look.
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }
}

impl Constraint {
    /// Where a request bounced by `target` with `r` may go next.
    pub(super) fn replay(r: &Replay, app: &str, target: Target) -> Constraint {
        Constraint {
            app: r.app.clone().unwrap_or_else(|| app.to_string()),
            regions: r.regions.clone(),
            instance: r.instance.clone(),
            prefer_instance: r.prefer_instance.clone(),
            excluded: if r.elsewhere {
                vec![target.machine_id.clone()]
            } else {
                Vec::new()
            },
            prefer_region: None,
            timeout: r.timeout,
            fallback: r.fallback.map(|f| (target, f)),
            tcp: false,
            from_edge: false,
        }
    }

    /// After a connection to `target` failed: try the others.
    pub(super) fn exclude_failed(&mut self, target: &Target) {
        self.excluded.push(target.machine_id.clone());
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.regions.is_empty() {
            parts.push(format!("in region {}", self.regions.join(" or ")));
        }
        if let Some(i) = &self.instance {
            parts.push(format!("with id {i}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join(", "))
        }
    }
}
