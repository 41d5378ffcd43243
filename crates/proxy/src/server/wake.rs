//! Machines started and stopped for their traffic: autostart (a request that finds no room
//! wakes the closest stopped machine, once, and may wait for it) and autostop (idle machines
//! beyond those the load needs are stopped or suspended, never below `min_machines_running`).

use super::Proxy;
use crate::balance::Distance;
use crate::metrics::Event;
use aloft_catalog::Load;
use aloft_catalog::Target;
use aloft_types::MachineState;
use aloft_types::config::Autostop;
use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

/// Takes a machine out of the proxy's `waking` set when dropped.
struct NotWaking<'a>(&'a Proxy, &'a str);

impl Drop for NotWaking<'_> {
    fn drop(&mut self) {
        self.0.inner.waking.lock().remove(self.1);
    }
}

/// How long autostart leaves a machine whose start failed before trying it again.
const WAKE_RETRY: Duration = Duration::from_secs(5);

impl Proxy {
    /// Starts the closest wakeable machine among `targets` unless one is starting already;
    /// whether one is (so a request may wait for it).
    pub(super) fn wake(&self, targets: &[&Target], preference: &dyn Distance) -> bool {
        let timeout = self.inner.config.wake_timeout;
        let mut woken = self.inner.woken.lock();
        woken.retain(|_, at| at.elapsed() < timeout);
        let mut waking = self.inner.waking.lock();
        // A start asked for and not answered yet, or one answered whose checks do not pass
        // yet. A machine woken and then stopped again is wakeable again.
        let starting = targets.iter().any(|t| {
            t.state == MachineState::Starting
                || waking.contains(&t.machine_id)
                || (t.state == MachineState::Started
                    && !t.routable
                    && woken.contains_key(&t.machine_id))
        });
        if starting {
            return true;
        }
        let Some(t) = targets
            .iter()
            .filter(|t| t.wakeable())
            .min_by_key(|t| preference.distance(&t.region))
        else {
            return false;
        };
        woken.insert(t.machine_id.clone(), Instant::now());
        waking.insert(t.machine_id.clone());
        self.inner.metrics.count(Event::Autostart, &t.app);
        let (proxy, target) = (self.clone(), (*t).clone());
        tokio::spawn(async move {
            // However the start ends (even by a panic), the machine may be woken again.
            let _done = NotWaking(&proxy, &target.machine_id);
            tracing::info!(
                machine = target.machine_id,
                app = target.app,
                "autostart: starting a machine for a request"
            );
            let start = proxy.inner.catalog.start(&target);
            let failed = match tokio::time::timeout(timeout, start).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some(format!("no answer within {}s", timeout.as_secs())),
            };
            if let Some(e) = failed {
                tracing::warn!(machine = target.machine_id, "autostart failed: {e}");
                // Not tried again at once: requests wait (or time out) meanwhile.
                tokio::time::sleep(WAKE_RETRY).await;
            }
        });
        true
    }

    /// Whether `machine` was started by autostart within the wake timeout (its process may not
    /// listen yet: a refused connection is retried on it).
    pub(super) fn just_woken(&self, machine: &str) -> bool {
        self.inner
            .woken
            .lock()
            .get(machine)
            .is_some_and(|at| at.elapsed() < self.inner.config.wake_timeout)
    }

    /// Autostop, every `interval` until `shutdown`: per app and region, when the machines
    /// running exceed those over their soft limit by more than one, one idle machine (running
    /// and with nothing in flight for a whole interval) is stopped, or suspended; a lone idle
    /// machine is stopped too. Never below `min_machines_running` in the app's primary region.
    pub async fn autostop(&self, interval: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut every = tokio::time::interval(interval);
        // When each machine was first seen running: one that just started (autostart among
        // others) has not been idle for an interval yet.
        let mut running_since: HashMap<String, Instant> = HashMap::new();
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = &mut shutdown => return,
            }
            let targets = self.inner.catalog.all_targets();
            running_since.retain(|id, _| targets.iter().any(|t| t.routable && t.machine_id == *id));
            for t in targets.iter().filter(|t| t.routable) {
                running_since
                    .entry(t.machine_id.clone())
                    .or_insert_with(Instant::now);
            }
            let load = &self.inner.load;
            let idle = |id: &str| {
                let up = running_since
                    .get(id)
                    .map_or(Duration::ZERO, Instant::elapsed);
                load.idle_for(id).min(up)
            };
            for t in autostop_choices(&targets, load, &idle, interval) {
                let suspend = t.autostop == Autostop::Suspend;
                tracing::info!(
                    machine = t.machine_id,
                    app = t.app,
                    suspend,
                    "autostop: an idle machine"
                );
                self.inner.metrics.count(Event::Autostop, &t.app);
                if let Err(e) = self.inner.catalog.stop(&t, suspend).await {
                    tracing::warn!(machine = t.machine_id, "autostop failed: {e}");
                }
            }
        }
    }
}

/// The machines autostop stops now: at most one per app and region, idle (by `idle_for`) for
/// at least `idle`.
fn autostop_choices(
    targets: &[Target],
    load: &Load,
    idle_for: &dyn Fn(&str) -> Duration,
    idle: Duration,
) -> Vec<Target> {
    let mut groups: HashMap<(&str, &str), Vec<&Target>> = HashMap::new();
    for t in targets.iter().filter(|t| t.routable) {
        groups.entry((&t.app, &t.region)).or_default().push(t);
    }
    let mut chosen = Vec::new();
    for ((_, region), running) in groups {
        let n = running.len();
        let over_soft = running
            .iter()
            .filter(|t| load.current(&t.machine_id) >= t.limits.soft)
            .count();
        let excess = n.saturating_sub(over_soft + 1);
        let min = running
            .iter()
            .filter(|t| t.primary_region == region)
            .map(|t| t.min_machines_running as usize)
            .max()
            .unwrap_or(0);
        let lone_idle = n == 1;
        if (excess == 0 && !lone_idle) || n <= min {
            continue;
        }
        if let Some(t) = running
            .iter()
            .filter(|t| t.autostop != Autostop::Off && idle_for(&t.machine_id) >= idle)
            .min_by_key(|t| t.machine_id.clone())
        {
            chosen.push((*t).clone());
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use aloft_catalog::Limits;
    use std::sync::Arc;

    fn running(id: &str, region: &str, min: u32) -> Target {
        Target {
            machine_id: id.into(),
            app: "a".into(),
            region: region.into(),
            address: "fdaa::1".parse().unwrap(),
            port: 8080,
            network: None,
            limits: Limits::default(),
            state: MachineState::Started,
            routable: true,
            autostart: true,
            autostop: Autostop::Stop,
            min_machines_running: min,
            primary_region: "ams".into(),
            force_https: false,
            handlers: Default::default(),
            via: None,
            load: 0,
        }
    }

    fn ids(targets: Vec<Target>) -> Vec<String> {
        let mut ids: Vec<String> = targets.into_iter().map(|t| t.machine_id).collect();
        ids.sort();
        ids
    }

    #[test]
    fn autostop_keeps_the_minimum_in_the_primary_region_only() {
        let load = Load::default();
        let targets = vec![
            running("ams-1", "ams", 2),
            running("ams-2", "ams", 2),
            running("sjc-1", "sjc", 2),
        ];
        // ams is at its minimum; sjc's lone idle machine stops.
        assert_eq!(
            ids(autostop_choices(
                &targets,
                &load,
                &|id| load.idle_for(id),
                Duration::ZERO
            )),
            ["sjc-1"]
        );
        let mut off = running("sjc-1", "sjc", 0);
        off.autostop = Autostop::Off;
        assert!(
            autostop_choices(&[off], &load, &|id| load.idle_for(id), Duration::ZERO).is_empty()
        );
    }

    #[test]
    fn autostop_leaves_a_machine_for_every_one_over_its_soft_limit() {
        let load = Arc::new(Load::default());
        let mut targets = vec![running("a", "ams", 0), running("b", "ams", 0)];
        for t in &mut targets {
            t.limits.soft = 1;
        }
        let _busy = load.try_acquire("a", 25).unwrap();
        // One of two over its soft limit: excess = 2 - (1 + 1) = 0, nothing stops.
        assert!(
            autostop_choices(&targets, &load, &|id| load.idle_for(id), Duration::ZERO).is_empty()
        );
    }
}
