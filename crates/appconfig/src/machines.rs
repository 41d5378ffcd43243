//! From an app's config to the Machines API's machine config, one per process group: what a
//! deploy creates or updates machines with.

use crate::schema::{AppConfig, HttpCheck, RestartPolicy, TcpCheck, TopCheck};
use crate::validate::{DEFAULT_GROUP, VM_SIZES};
use crate::values::Seconds;
use aloft_types::MachineConfig;
use aloft_types::config::{
    Check, CheckHeader, CheckType, Concurrency, CpuKind, DurationStr, File, Guest, Handler,
    InitConfig, Mount, Port, Protocol, Restart, Service, StopConfig,
};
use aloft_types::signal::Signal;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Metadata key naming a machine's process group, as the reference's.
pub const PROCESS_GROUP_KEY: &str = "fly_process_group";

/// Whether a section for `processes` (all groups when empty) applies to `group`.
fn applies(processes: &[String], group: &str) -> bool {
    processes.is_empty() || processes.iter().any(|p| p == group)
}

/// The reference's stop defaults: SIGINT, then 5 s.
const KILL_SIGNAL: Signal = Signal::INT;
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

impl AppConfig {
    /// The process groups: `[processes]`'s names, or `app` without one.
    pub fn groups(&self) -> Vec<String> {
        if self.processes.is_empty() {
            vec![DEFAULT_GROUP.to_string()]
        } else {
            self.processes.keys().cloned().collect()
        }
    }

    /// The machine config for `group`'s machines running `image`. `dir` is the config file's
    /// directory, which `[[files]] local_path` is relative to.
    pub fn machine_config(
        &self,
        group: &str,
        image: &str,
        dir: &Path,
    ) -> Result<MachineConfig, String> {
        let env = self.machine_env();
        let services = self.machine_services(group);
        let checks = self
            .checks
            .iter()
            .filter(|(_, c)| applies(&c.processes, group))
            .map(|(name, c)| (name.clone(), top_check(c)))
            .collect();
        let init = self.machine_init(group);
        let files = self.machine_files(group, dir)?;
        let mut metadata = BTreeMap::new();
        metadata.insert(PROCESS_GROUP_KEY.to_string(), group.to_string());
        Ok(MachineConfig {
            image: image.to_string(),
            guest: self.guest(group)?,
            env,
            metadata,
            init: (init != InitConfig::default()).then_some(init),
            services,
            checks,
            restart: self.machine_restart(group),
            files,
            mounts: self.machine_mount(group).into_iter().collect(),
            stop_config: Some(StopConfig {
                extra: Default::default(),
                signal: Some(self.kill_signal.unwrap_or(KILL_SIGNAL)),
                timeout: Some(duration(Seconds(
                    self.kill_timeout.map_or(KILL_TIMEOUT, |t| t.0),
                ))),
            }),
            ..MachineConfig::default()
        })
    }

    /// `[env]`, with `PRIMARY_REGION` from `primary_region` unless `[env]` sets it.
    fn machine_env(&self) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = self
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        if let Some(primary) = &self.primary_region {
            env.entry("PRIMARY_REGION".into())
                .or_insert_with(|| primary.clone());
        }
        env
    }

    /// `group`'s services: `[http_service]` (ports 80 and 443), then each `[[services]]`.
    fn machine_services(&self, group: &str) -> Vec<Service> {
        let mut services = Vec::new();
        if let Some(h) = self
            .http_service
            .as_ref()
            .filter(|h| applies(&h.processes, group))
        {
            services.push(Service {
                protocol: Protocol::Tcp,
                internal_port: u32::from(h.internal_port.0),
                autostop: h.auto_stop_machines.unwrap_or_default(),
                autostart: h.auto_start_machines,
                min_machines_running: h.min_machines_running,
                concurrency: h.concurrency.as_ref().map(concurrency),
                ports: vec![
                    Port {
                        port: Some(80),
                        handlers: vec![Handler::Http],
                        force_https: h.force_https,
                        http_options: json(&h.http_options),
                        ..Port::default()
                    },
                    Port {
                        port: Some(443),
                        handlers: vec![Handler::Tls, Handler::Http],
                        http_options: json(&h.http_options),
                        tls_options: json(&h.tls_options),
                        ..Port::default()
                    },
                ],
                checks: h.checks.iter().map(http_check).collect(),
                ..Service::default()
            });
        }
        for s in self
            .services
            .iter()
            .filter(|s| applies(&s.processes, group))
        {
            services.push(Service {
                protocol: s.protocol,
                internal_port: u32::from(s.internal_port.0),
                autostop: s.auto_stop_machines.unwrap_or_default(),
                autostart: s.auto_start_machines,
                min_machines_running: s.min_machines_running,
                concurrency: s.concurrency.as_ref().map(concurrency),
                ports: s
                    .ports
                    .iter()
                    .map(|p| Port {
                        extra: Default::default(),
                        port: p.port.map(|p| u32::from(p.0)),
                        start_port: p.start_port.map(|p| u32::from(p.0)),
                        end_port: p.end_port.map(|p| u32::from(p.0)),
                        handlers: p.handlers.clone(),
                        force_https: p.force_https,
                        http_options: json(&p.http_options),
                        tls_options: json(&p.tls_options),
                        proxy_proto_options: json(&p.proxy_proto_options),
                    })
                    .collect(),
                checks: s
                    .tcp_checks
                    .iter()
                    .map(tcp_check)
                    .chain(s.http_checks.iter().map(http_check))
                    .collect(),
                ..Service::default()
            });
        }
        services
    }

    /// `swap_size_mb`, `[experimental]`'s command overrides, and `group`'s command.
    fn machine_init(&self, group: &str) -> InitConfig {
        let mut init = InitConfig {
            swap_size_mb: self.swap_size_mb,
            ..InitConfig::default()
        };
        if let Some(x) = &self.experimental {
            init.cmd = x.cmd.as_ref().map(|c| c.0.clone()).unwrap_or_default();
            init.entrypoint = x
                .entrypoint
                .as_ref()
                .map(|c| c.0.clone())
                .unwrap_or_default();
            init.exec = x.exec.as_ref().map(|c| c.0.clone()).unwrap_or_default();
        }
        if let Some(command) = self.processes.get(group) {
            init.cmd = command.0.clone();
        }
        init
    }

    /// `group`'s `[[files]]`, a `local_path` read (relative to `dir`) into its value.
    fn machine_files(&self, group: &str, dir: &Path) -> Result<Vec<File>, String> {
        let mut files = Vec::new();
        for f in self.files.iter().filter(|f| applies(&f.processes, group)) {
            let raw_value = match &f.local_path {
                Some(local) => {
                    let path = dir.join(local);
                    let bytes = std::fs::read(&path).map_err(|e| {
                        format!(
                            "[[files]] {}: reading {}: {e}",
                            f.guest_path,
                            path.display()
                        )
                    })?;
                    Some(base64_encode(&bytes))
                }
                None => f.raw_value.clone(),
            };
            files.push(File {
                extra: Default::default(),
                guest_path: f.guest_path.clone(),
                raw_value,
                secret_name: f.secret_name.clone(),
                mode: None,
            });
        }
        Ok(files)
    }

    /// The first `[[restart]]` for `group`.
    fn machine_restart(&self, group: &str) -> Option<Restart> {
        self.restart
            .iter()
            .find(|r| applies(&r.processes, group))
            .map(|r| Restart {
                extra: Default::default(),
                policy: match r.policy {
                    RestartPolicy::Always => aloft_types::config::RestartPolicy::Always,
                    RestartPolicy::Never => aloft_types::config::RestartPolicy::No,
                    RestartPolicy::OnFailure => aloft_types::config::RestartPolicy::OnFailure,
                },
                max_retries: r.retries,
            })
    }

    /// The first `[[mounts]]` for `group`. The volume itself is per machine: a deploy fills in
    /// `volume` (an unmounted volume of this name in the machine's region, else a new one of
    /// `size_gb`).
    fn machine_mount(&self, group: &str) -> Option<Mount> {
        self.mounts
            .iter()
            .find(|m| applies(&m.processes, group))
            .map(|m| Mount {
                extra: Default::default(),
                volume: String::new(),
                path: m.destination.clone(),
                name: Some(m.source.clone()),
                size_gb: Some(m.initial_size.map_or(1, |s| s.0)),
                encrypted: None,
            })
    }

    /// `group`'s machine size: its `[[vm]]` (the one naming it, else the one naming no group),
    /// a preset `size` first, then `cpus`, `cpu_kind` and memory on top.
    fn guest(&self, group: &str) -> Result<Guest, String> {
        let vm = self
            .vm
            .iter()
            .find(|v| v.processes.iter().any(|p| p == group))
            .or_else(|| self.vm.iter().find(|v| v.processes.is_empty()));
        let mut guest = Guest::default();
        let Some(vm) = vm else {
            return Ok(guest);
        };
        if let Some(size) = &vm.size {
            let (_, kind, cpus, memory) = VM_SIZES
                .iter()
                .find(|(name, ..)| name == size)
                .ok_or_else(|| format!("unknown [[vm]] size `{size}`"))?;
            guest.cpu_kind = if *kind == "performance" {
                CpuKind::Performance
            } else {
                CpuKind::Shared
            };
            guest.cpus = *cpus;
            guest.memory_mb = *memory;
        }
        if let Some(kind) = vm.cpu_kind {
            guest.cpu_kind = kind;
        }
        if let Some(cpus) = vm.cpus {
            guest.cpus = cpus;
        }
        if let Some(memory) = vm.memory.map(|m| m.0).or(vm.memory_mb) {
            guest.memory_mb = memory;
        }
        Ok(guest)
    }
}

fn concurrency(c: &crate::schema::Concurrency) -> Concurrency {
    Concurrency {
        extra: Default::default(),
        kind: c.kind.unwrap_or_default(),
        soft_limit: c.soft_limit.unwrap_or(20),
        hard_limit: c.hard_limit.unwrap_or(25),
    }
}

fn duration(d: Seconds) -> DurationStr {
    DurationStr(d.to_api())
}

fn headers(h: &BTreeMap<String, String>) -> Vec<CheckHeader> {
    h.iter()
        .map(|(name, value)| CheckHeader {
            extra: Default::default(),
            name: name.clone(),
            values: vec![value.clone()],
        })
        .collect()
}

/// A check of `kind` with its timing; no HTTP fields.
fn timed(
    kind: CheckType,
    port: Option<u32>,
    interval: Option<Seconds>,
    timeout: Option<Seconds>,
    grace_period: Option<Seconds>,
) -> Check {
    Check {
        extra: Default::default(),
        kind,
        port,
        interval: interval.map(duration),
        timeout: timeout.map(duration),
        grace_period: grace_period.map(duration),
        method: None,
        path: None,
        protocol: None,
        headers: Vec::new(),
    }
}

fn http_check(c: &HttpCheck) -> Check {
    Check {
        method: c.method.clone(),
        path: c.path.clone(),
        protocol: c.protocol.clone(),
        headers: headers(&c.headers),
        ..timed(CheckType::Http, None, c.interval, c.timeout, c.grace_period)
    }
}

fn tcp_check(c: &TcpCheck) -> Check {
    timed(CheckType::Tcp, None, c.interval, c.timeout, c.grace_period)
}

fn top_check(c: &TopCheck) -> Check {
    let port = c.port.map(|p| u32::from(p.0));
    Check {
        method: c.method.clone(),
        path: c.path.clone(),
        protocol: c.protocol.clone(),
        headers: headers(&c.headers),
        ..timed(c.kind, port, c.interval, c.timeout, c.grace_period)
    }
}

/// A TOML table as the API's JSON.
fn json(t: &Option<toml::Table>) -> Option<serde_json::Value> {
    t.as_ref().and_then(|t| serde_json::to_value(t).ok())
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
