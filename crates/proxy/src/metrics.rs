//! The proxy's Prometheus metrics (text exposition format 0.0.4):
//!
//! ```text
//! aloft_proxy_requests_total{app,status}                 responses sent, by status code
//! aloft_proxy_request_duration_seconds{app,machine}      histogram, request start to response head
//! aloft_proxy_errors_total{app,code}                     error pages, by the reference's code
//! aloft_proxy_retries_total{app}                         attempts sent again to another machine
//! aloft_proxy_replays_total{app}                         requests replayed for fly-replay
//! aloft_proxy_autostarts_total{app}                      machines started for requests
//! aloft_proxy_autostops_total{app}                       idle machines stopped
//! aloft_proxy_machine_load{machine}                      requests in flight (gauge)
//! ```
//!
//! Labels come from the catalog, never from what a client sent: requests for a name that is not
//! an app the catalog knows count under `app="-"`, and a machine's series go when it leaves the
//! catalog ([`Metrics::keep_machines`]), so the series follow the apps and machines that exist.
//! State: one `parking_lot` mutex over every counter, held only to count or render.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram's buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Counters a proxy keeps; [`Metrics::render`] writes them out.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// Keyed by app first (then status, machine, code), so that counting a request for an app and
/// machine seen before allocates nothing.
#[derive(Default)]
struct Inner {
    requests: BTreeMap<String, BTreeMap<u16, u64>>,
    durations: BTreeMap<String, BTreeMap<String, Histogram>>,
    errors: BTreeMap<String, BTreeMap<&'static str, u64>>,
    retries: BTreeMap<String, u64>,
    replays: BTreeMap<String, u64>,
    autostarts: BTreeMap<String, u64>,
    autostops: BTreeMap<String, u64>,
}

/// A counter by app that [`Metrics::count`] bumps.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    Retry,
    Replay,
    Autostart,
    Autostop,
}

impl Metrics {
    /// A response: its app (`-` when unknown), status, the machine that served it (if one did)
    /// and how long it took to its head; with the error code of an error page.
    pub fn response(
        &self,
        app: &str,
        status: u16,
        machine: Option<&str>,
        took: Duration,
        code: Option<&'static str>,
    ) {
        let mut m = self.inner.lock();
        *entry(&mut m.requests, app).entry(status).or_default() += 1;
        if let Some(code) = code {
            *entry(&mut m.errors, app).entry(code).or_default() += 1;
        }
        if let Some(machine) = machine {
            let h = entry(entry(&mut m.durations, app), machine);
            let secs = took.as_secs_f64();
            for (i, bound) in BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += secs;
        }
    }

    pub fn count(&self, event: Event, app: &str) {
        let mut m = self.inner.lock();
        let map = match event {
            Event::Retry => &mut m.retries,
            Event::Replay => &mut m.replays,
            Event::Autostart => &mut m.autostarts,
            Event::Autostop => &mut m.autostops,
        };
        *entry(map, app) += 1;
    }

    /// Drops the latency series of every machine not in `machines` (destroyed ones).
    pub fn keep_machines(&self, machines: &HashSet<&str>) {
        let mut m = self.inner.lock();
        m.durations.retain(|_, by| {
            by.retain(|machine, _| machines.contains(machine.as_str()));
            !by.is_empty()
        });
    }

    /// The text exposition, with `load` as the machines' in-flight gauge.
    pub fn render(&self, load: &[(String, u32)]) -> String {
        let m = self.inner.lock();
        let mut out = String::new();
        family(
            "aloft_proxy_requests_total",
            "counter",
            "Responses sent, by app and status code.",
            &mut out,
        );
        let requests = m
            .requests
            .iter()
            .flat_map(|(a, by)| by.iter().map(move |(s, n)| (a, s, n)));
        for (app, status, n) in requests {
            let _ = writeln!(
                out,
                "aloft_proxy_requests_total{{app=\"{}\",status=\"{status}\"}} {n}",
                esc(app)
            );
        }
        family(
            "aloft_proxy_request_duration_seconds",
            "histogram",
            "Time from a request's arrival to its response head, by app and machine.",
            &mut out,
        );
        let durations = m
            .durations
            .iter()
            .flat_map(|(a, by)| by.iter().map(move |(machine, h)| (a, machine, h)));
        for (app, machine, h) in durations {
            let labels = format!("app=\"{}\",machine=\"{}\"", esc(app), esc(machine));
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "aloft_proxy_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "aloft_proxy_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\naloft_proxy_request_duration_seconds_sum{{{labels}}} {}\naloft_proxy_request_duration_seconds_count{{{labels}}} {}",
                h.count, h.sum, h.count
            );
        }
        family(
            "aloft_proxy_errors_total",
            "counter",
            "Error pages, by app and the reference's error code.",
            &mut out,
        );
        let errors = m
            .errors
            .iter()
            .flat_map(|(a, by)| by.iter().map(move |(c, n)| (a, c, n)));
        for (app, code, n) in errors {
            let _ = writeln!(
                out,
                "aloft_proxy_errors_total{{app=\"{}\",code=\"{code}\"}} {n}",
                esc(app)
            );
        }
        for (name, help, map) in [
            (
                "aloft_proxy_retries_total",
                "Attempts sent again to another machine.",
                &m.retries,
            ),
            (
                "aloft_proxy_replays_total",
                "Requests replayed for a fly-replay header.",
                &m.replays,
            ),
            (
                "aloft_proxy_autostarts_total",
                "Machines started for requests.",
                &m.autostarts,
            ),
            (
                "aloft_proxy_autostops_total",
                "Idle machines stopped or suspended.",
                &m.autostops,
            ),
        ] {
            family(name, "counter", help, &mut out);
            for (app, n) in map {
                let _ = writeln!(out, "{name}{{app=\"{}\"}} {n}", esc(app));
            }
        }
        family(
            "aloft_proxy_machine_load",
            "gauge",
            "Requests and upgraded connections in flight, by machine.",
            &mut out,
        );
        for (machine, n) in load {
            let _ = writeln!(
                out,
                "aloft_proxy_machine_load{{machine=\"{}\"}} {n}",
                esc(machine)
            );
        }
        out
    }
}

/// `map[key]`, made with its default first if missing (without allocating when present).
fn entry<'a, V: Default>(map: &'a mut BTreeMap<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("just made")
}

/// `# HELP` and `# TYPE` of a metric family.
fn family(name: &str, kind: &str, help: &str, out: &mut String) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped.
fn esc(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_histograms() {
        let m = Metrics::default();
        m.response("hello", 200, Some("m1"), Duration::from_millis(3), None);
        m.response("hello", 200, Some("m1"), Duration::from_millis(30), None);
        m.response("-", 404, None, Duration::ZERO, None);
        m.response("hello", 503, None, Duration::ZERO, Some("PR04"));
        m.count(Event::Replay, "hello");
        let text = m.render(&[("m1".into(), 2)]);
        for line in [
            "aloft_proxy_requests_total{app=\"hello\",status=\"200\"} 2",
            "aloft_proxy_requests_total{app=\"-\",status=\"404\"} 1",
            "aloft_proxy_request_duration_seconds_bucket{app=\"hello\",machine=\"m1\",le=\"0.005\"} 1",
            "aloft_proxy_request_duration_seconds_bucket{app=\"hello\",machine=\"m1\",le=\"0.05\"} 2",
            "aloft_proxy_request_duration_seconds_count{app=\"hello\",machine=\"m1\"} 2",
            "aloft_proxy_errors_total{app=\"hello\",code=\"PR04\"} 1",
            "aloft_proxy_replays_total{app=\"hello\"} 1",
            "aloft_proxy_machine_load{machine=\"m1\"} 2",
            "# TYPE aloft_proxy_request_duration_seconds histogram",
        ] {
            assert!(text.contains(line), "missing `{line}` in\n{text}");
        }
        assert_eq!(esc("a\"b"), "a\\\"b");
    }

    /// A destroyed machine's latency series are gone once the catalog no longer lists it; the
    /// app's counters stay.
    #[test]
    fn a_removed_machines_series_are_dropped() {
        let m = Metrics::default();
        m.response("hello", 200, Some("m1"), Duration::from_millis(3), None);
        m.response("hello", 200, Some("m2"), Duration::from_millis(3), None);
        m.response("other", 200, Some("m3"), Duration::from_millis(3), None);
        m.keep_machines(&HashSet::from(["m2"]));
        let text = m.render(&[]);
        assert!(!text.contains("machine=\"m1\""), "{text}");
        assert!(!text.contains("machine=\"m3\""), "{text}");
        assert!(text.contains("app=\"hello\",machine=\"m2\""), "{text}");
        assert!(
            text.contains("aloft_proxy_requests_total{app=\"other\",status=\"200\"} 1"),
            "{text}"
        );
    }
}
