//! Health checks, run on the machine's own host (the worker side) against its private address:
//! `tcp` (a connection opens) and `http` (a 2xx or 3xx answer). Results are in the machine
//! object's `checks` and in routing: the proxy sends nothing to a machine with a critical check.
//!
//! Which checks: the config's named `checks`, and each service's `checks` (named
//! `servicecheck-<service>-<check>`, as on the reference platform). A started machine's checks
//! run at once, then every `interval` (default 15 s), each with its `timeout` (default 2 s);
//! failures within the `grace_period` after a start count as `warning`, not `critical`.
//!
//! State: the results are the agent's (`CheckResults` in `machine::slot`, one `parking_lot` mutex); when
//! each check is due lives in the scheduler's task.

use crate::Agent;
use aloft_types::config::{Check, CheckType, MachineConfig};
use aloft_types::machine::{CheckState, CheckStatus};
use aloft_types::time::rfc3339;
use aloft_types::{MachineId, MachineState};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the scheduler looks for checks that are due.
const TICK: Duration = Duration::from_millis(250);

/// One check of one machine, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Planned {
    pub name: String,
    pub check: Check,
    pub port: u16,
}

/// Every check of a machine's config, with the port each one targets.
pub(crate) fn planned(config: &MachineConfig) -> Vec<Planned> {
    let mut out = Vec::new();
    for (name, check) in &config.checks {
        if let Some(port) = check.port.and_then(|p| u16::try_from(p).ok()) {
            out.push(Planned {
                name: name.clone(),
                check: check.clone(),
                port,
            });
        }
    }
    for (i, service) in config.services.iter().enumerate() {
        for (j, check) in service.checks.iter().enumerate() {
            let port = check.port.unwrap_or(service.internal_port);
            if let Ok(port) = u16::try_from(port) {
                out.push(Planned {
                    name: format!("servicecheck-{i:02}-{j:02}-{}", kind(check.kind)),
                    check: check.clone(),
                    port,
                });
            }
        }
    }
    out
}

fn kind(k: CheckType) -> &'static str {
    match k {
        CheckType::Tcp => "tcp",
        CheckType::Http => "http",
    }
}

fn duration(d: &Option<aloft_types::config::DurationStr>, default: Duration) -> Duration {
    d.as_ref()
        .and_then(|d| aloft_types::time::parse_duration(&d.0).ok())
        .unwrap_or(default)
}

/// Runs one check against `ip`: `Ok(output)` when it passes, `Err(output)` when it fails.
pub(crate) async fn check(ip: IpAddr, p: &Planned) -> Result<String, String> {
    let timeout = duration(&p.check.timeout, DEFAULT_TIMEOUT);
    let addr = SocketAddr::new(ip, p.port);
    let attempt = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        if p.check.kind == CheckType::Tcp {
            return Ok(format!("connected to {addr}"));
        }
        let method = p
            .check
            .method
            .as_deref()
            .unwrap_or("GET")
            .to_ascii_uppercase();
        let path = p.check.path.as_deref().unwrap_or("/");
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: aloft-check\r\nConnection: close\r\n"
        );
        for h in &p.check.headers {
            for v in &h.values {
                req.push_str(&format!("{}: {v}\r\n", h.name));
            }
        }
        req.push_str("\r\n");
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("sending the request: {e}"))?;
        let mut head = vec![0u8; 1024];
        let mut n = 0;
        while n < head.len() && !head[..n].contains(&b'\n') {
            let got = stream
                .read(&mut head[n..])
                .await
                .map_err(|e| format!("reading the answer: {e}"))?;
            if got == 0 {
                break;
            }
            n += got;
        }
        let line = String::from_utf8_lossy(&head[..n]);
        let line = line.lines().next().unwrap_or_default().trim().to_string();
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP answer: `{line}`"))?;
        if (200..400).contains(&status) {
            Ok(format!("{method} {path}: {line}"))
        } else {
            Err(format!("{method} {path}: {line}"))
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no answer from {addr} within {}s",
            timeout.as_secs_f32()
        )),
    }
}

/// What the scheduler remembers of a machine's run.
struct Run {
    instance: String,
    started: Instant,
    /// When each check is due next.
    due: HashMap<String, Instant>,
}

impl Agent {
    /// The latest results of the machine's checks.
    pub(crate) fn check_results(&self, id: &MachineId) -> Vec<CheckStatus> {
        self.checks().of(id)
    }

    /// Records a result; a change between critical and not moves the machines' change counter
    /// (the proxy routes by it).
    fn record_check(&self, id: &MachineId, status: CheckStatus) {
        if self.checks().record(id, status) {
            self.store().touch(id);
        }
    }
}

/// Runs the checks of this host's started machines until the task is dropped.
pub fn spawn_health_checks(agent: Agent) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut runs: HashMap<MachineId, Run> = HashMap::new();
        let mut every = tokio::time::interval(TICK);
        loop {
            every.tick().await;
            let Ok(machines) = agent.machines() else {
                continue;
            };
            let started: Vec<_> = machines
                .into_iter()
                .filter(|m| m.state == MachineState::Started)
                .collect();
            // Machines that stopped lose their results; a new run starts its checks afresh.
            runs.retain(|id, _| started.iter().any(|m| &m.id == id));
            agent
                .checks()
                .retain_machines(|id| started.iter().any(|m| &m.id == id));
            for m in &started {
                let plan = planned(&m.config);
                // Results of checks the machine's config no longer has are dropped.
                agent
                    .checks()
                    .retain_checks(&m.id, |name| plan.iter().any(|p| p.name == name));
                if plan.is_empty() {
                    continue;
                }
                let Ok(ip) = m.private_ip.parse::<IpAddr>() else {
                    continue;
                };
                let run = runs.entry(m.id.clone()).or_insert_with(|| Run {
                    instance: m.instance_id.to_string(),
                    started: Instant::now(),
                    due: HashMap::new(),
                });
                if run.instance != m.instance_id.as_str() {
                    // A new version: the old one's results do not speak for it.
                    agent.checks().forget(&m.id);
                    *run = Run {
                        instance: m.instance_id.to_string(),
                        started: Instant::now(),
                        due: HashMap::new(),
                    };
                }
                let now = Instant::now();
                for p in plan {
                    if run.due.get(&p.name).is_some_and(|at| *at > now) {
                        continue;
                    }
                    run.due.insert(
                        p.name.clone(),
                        now + duration(&p.check.interval, DEFAULT_INTERVAL),
                    );
                    let grace = duration(&p.check.grace_period, Duration::ZERO);
                    let in_grace = run.started.elapsed() < grace;
                    let (agent, id) = (agent.clone(), m.id.clone());
                    tokio::spawn(async move {
                        let (status, output) = match check(ip, &p).await {
                            Ok(out) => (CheckState::Passing, out),
                            Err(out) if in_grace => (CheckState::Warning, out),
                            Err(out) => (CheckState::Critical, out),
                        };
                        agent.record_check(
                            &id,
                            CheckStatus {
                                name: p.name,
                                status,
                                output,
                                updated_at: rfc3339(aloft_types::time::now_ms()),
                            },
                        );
                    });
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn plan(kind: CheckType, port: u16, path: Option<&str>) -> Planned {
        let check: Check = serde_json::from_value(serde_json::json!({
            "type": if kind == CheckType::Tcp { "tcp" } else { "http" },
            "port": port,
            "timeout": "1s",
        }))
        .unwrap();
        Planned {
            name: "c".into(),
            check: Check {
                path: path.map(str::to_string),
                ..check
            },
            port,
        }
    }

    /// A server answering every connection with `status`.
    async fn server(status: &'static str) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        port
    }

    #[tokio::test]
    async fn tcp_and_http_checks_pass_and_fail_for_what_they_see() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let ok = server("200 OK").await;
        let broken = server("500 Internal Server Error").await;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        assert!(check(ip, &plan(CheckType::Tcp, ok, None)).await.is_ok());
        let out = check(ip, &plan(CheckType::Http, ok, Some("/healthz")))
            .await
            .unwrap();
        assert!(out.contains("GET /healthz: HTTP/1.1 200 OK"), "{out}");
        let out = check(ip, &plan(CheckType::Http, broken, None))
            .await
            .unwrap_err();
        assert!(out.contains("500"), "{out}");
        let out = check(ip, &plan(CheckType::Tcp, closed, None))
            .await
            .unwrap_err();
        assert!(out.contains("connecting to"), "{out}");
    }

    #[test]
    fn named_and_service_checks_are_planned_with_their_ports() {
        let config: MachineConfig = serde_json::from_value(serde_json::json!({
            "image": "a",
            "checks": {"alive": {"type": "tcp", "port": 9000}},
            "services": [{"internal_port": 8080, "protocol": "tcp",
                          "checks": [{"type": "http", "path": "/"}]}],
        }))
        .unwrap();
        let plan = planned(&config);
        let names: Vec<(&str, u16)> = plan.iter().map(|p| (p.name.as_str(), p.port)).collect();
        assert_eq!(names, [("alive", 9000), ("servicecheck-00-00-http", 8080)]);
    }
}
