//! The sections and keys of `fly.toml`, as the reference platform documents them. Every key is
//! optional unless the reference requires it; defaults are applied where the config is used
//! (machine configs, deploys), so `config show` prints what the file says.

use crate::values::{Command, EnvValue, MemoryMb, Port, Seconds, SizeGb, one_or_many};
use aloft_types::config::{Autostop, CheckType, ConcurrencyType, CpuKind, Handler, Protocol};
use aloft_types::signal::Signal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A whole `fly.toml`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct AppConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_region: Option<String>,
    /// Sent to the process to stop it (default `SIGINT`, as the reference).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kill_signal: Option<Signal>,
    /// How long the process has to stop before it is killed (default 5 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kill_timeout: Option<Seconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap_size_mb: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy: Option<Deploy>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, EnvValue>,
    /// Process group name -> its command.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub processes: BTreeMap<String, Command>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_service: Option<HttpService>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Service>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, TopCheck>,
    #[serde(
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub vm: Vec<Vm>,
    #[serde(
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub mounts: Vec<Mount>,
    #[serde(
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub restart: Vec<Restart>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub statics: Vec<Static>,
    #[serde(
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub metrics: Vec<Metrics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experimental: Option<Experimental>,
}

/// `[build]`: an image to deploy, or a Dockerfile to build.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Build {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    #[serde(
        rename = "build-target",
        alias = "build_target",
        skip_serializing_if = "Option::is_none"
    )]
    pub build_target: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, EnvValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignorefile: Option<String>,
}

/// How a deploy replaces machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    Rolling,
    Immediate,
    Canary,
    Bluegreen,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rolling => "rolling",
            Self::Immediate => "immediate",
            Self::Canary => "canary",
            Self::Bluegreen => "bluegreen",
        }
    }
}

/// `[deploy]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Deploy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// A fraction of the machines (below 1) or a number of them (1 or more) down at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<f64>,
    /// How long a machine's checks have to pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_timeout: Option<Seconds>,
    /// Run once per deploy in a temporary machine before any machine changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_command_timeout: Option<Seconds>,
}

/// `concurrency` of a service.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Concurrency {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<ConcurrencyType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hard_limit: Option<u32>,
}

/// `[http_service]`: the app's HTTP on ports 80 (`http`) and 443 (`tls` + `http`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct HttpService {
    pub internal_port: Port,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub force_https: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_stop_machines: Option<Autostop>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_start_machines: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_machines_running: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<HttpCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_options: Option<toml::Table>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_options: Option<toml::Table>,
}

impl Default for HttpService {
    fn default() -> Self {
        Self {
            internal_port: Port(8080),
            force_https: false,
            auto_stop_machines: None,
            auto_start_machines: None,
            min_machines_running: None,
            processes: Vec::new(),
            concurrency: None,
            checks: Vec::new(),
            http_options: None,
            tls_options: None,
        }
    }
}

/// An HTTP check of a service (`[[http_service.checks]]`, `[[services.http_checks]]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct HttpCheck {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<Seconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<Seconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Seconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_skip_verify: Option<bool>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// A TCP check of a service (`[[services.tcp_checks]]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct TcpCheck {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<Seconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<Seconds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Seconds>,
}

/// `[[services]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Service {
    pub internal_port: Port,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_stop_machines: Option<Autostop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_start_machines: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_machines_running: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp_checks: Vec<TcpCheck>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_checks: Vec<HttpCheck>,
}

/// `[[services.ports]]`: one public port or a range.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ServicePort {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_port: Option<Port>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_port: Option<Port>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub handlers: Vec<Handler>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub force_https: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_options: Option<toml::Table>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_options: Option<toml::Table>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_proto_options: Option<toml::Table>,
}

/// `[checks.<name>]`: a machine check, not tied to a service.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TopCheck {
    #[serde(rename = "type")]
    pub kind: CheckType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<Seconds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Seconds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Seconds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_skip_verify: Option<bool>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<String>,
}

/// `[[vm]]`: machine size, by preset (`size`) and/or explicitly.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Vm {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryMb>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_kind: Option<CpuKind>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<String>,
}

/// `[[mounts]]`: a volume (by name) mounted at a path.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Mount {
    pub source: String,
    pub destination: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_size: Option<SizeGb>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_retention: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_extend_size_threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_extend_size_increment: Option<SizeGb>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_extend_size_limit: Option<SizeGb>,
}

/// `[[restart]]` policy names, as `fly.toml` spells them (`never` where the API says `no`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum RestartPolicy {
    #[serde(rename = "always")]
    Always,
    #[serde(rename = "never", alias = "no")]
    Never,
    #[serde(rename = "on-failure", alias = "on_failure")]
    OnFailure,
}

/// `[[restart]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Restart {
    pub policy: RestartPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<String>,
}

/// `[[files]]`: a file written into the machine.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct FileEntry {
    pub guest_path: String,
    /// Base64 of the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_value: Option<String>,
    /// A file next to `fly.toml`, read at deploy time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<String>,
}

/// `[[statics]]`: files the proxy would serve from the image (kept; not served yet).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Static {
    pub guest_path: String,
    pub url_prefix: String,
}

/// `[metrics]`: where the machine serves Prometheus metrics.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Metrics {
    pub port: Port,
    pub path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<String>,
}

/// `[experimental]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Experimental {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Command>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Command>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<Command>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_rollback: Option<bool>,
}
