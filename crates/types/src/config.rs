//! The machine `config` object users send, with the reference's field names, and its validation.
//!
//! Policy for fields aloft does not know: unknown *top-level* keys are kept and echoed back
//! unchanged (newer clients of the reference send fields such as `containers` or `statics`; they
//! must not break). Unknown keys *inside* a known section (`guest.memory_mbs`) are almost always
//! typos, so they are refused with a 422 that names them.

use crate::error::ApiError;
use crate::signal::Signal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A machine's configuration. Only `image` is required.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MachineConfig {
    /// The OCI image to run: `registry/org/name:tag`, `name:tag` (the org's own repository), or a
    /// digest reference.
    pub image: String,
    /// CPU and memory.
    #[serde(default)]
    pub guest: Guest,
    /// Environment variables added to the image's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Free-form key/value labels; `GET /machines?metadata.key=value` filters on them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Overrides of the image's entrypoint and command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitConfig>,
    /// Ports the proxy publishes for this machine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Service>,
    /// Health checks by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, Check>,
    /// At most one volume.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// What to do when the process exits on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<Restart>,
    /// Destroy the machine once it exits (and is not restarted).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_destroy: bool,
    /// Files written into the machine before its process starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<File>,
    /// How the machine is stopped: signal first, then SIGKILL after the timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_config: Option<StopConfig>,
    /// DNS settings inside the machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsConfig>,
    /// Extra processes (the reference's `processes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<Process>,
    /// Top-level keys aloft does not know: kept and echoed unchanged.
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: BTreeMap<String, Value>,
}

/// CPU kind: `shared` (a share of a core) or `performance` (dedicated cores).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CpuKind {
    #[default]
    Shared,
    Performance,
}

impl CpuKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Performance => "performance",
        }
    }
}

/// A machine's size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Guest {
    #[serde(default)]
    pub cpu_kind: CpuKind,
    #[serde(default = "one")]
    pub cpus: u32,
    #[serde(default = "default_memory")]
    pub memory_mb: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_args: Vec<String>,
}

fn one() -> u32 {
    1
}
fn default_memory() -> u32 {
    256
}

impl Default for Guest {
    fn default() -> Self {
        Self {
            cpu_kind: CpuKind::Shared,
            cpus: 1,
            memory_mb: 256,
            kernel_args: Vec::new(),
        }
    }
}

impl Guest {
    /// CPU counts allowed for a CPU kind.
    pub fn allowed_cpus(kind: CpuKind) -> &'static [u32] {
        match kind {
            CpuKind::Shared => &[1, 2, 4, 6, 8],
            CpuKind::Performance => &[1, 2, 4, 8, 16],
        }
    }

    /// The memory range (MB) for a CPU kind and count; sizes go in steps of 256 MB.
    pub fn memory_range(kind: CpuKind, cpus: u32) -> (u32, u32) {
        match kind {
            CpuKind::Shared => (256 * cpus, 2048 * cpus),
            CpuKind::Performance => (2048 * cpus, 8192 * cpus),
        }
    }

    /// The reference's size name for this guest, e.g. `shared-cpu-1x`.
    pub fn size_name(&self) -> String {
        format!("{}-cpu-{}x", self.cpu_kind.as_str(), self.cpus)
    }

    fn validate(&self) -> Result<(), ApiError> {
        let allowed = Self::allowed_cpus(self.cpu_kind);
        if !allowed.contains(&self.cpus) {
            let names: Vec<String> = allowed.iter().map(|c| c.to_string()).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            return Err(ApiError::invalid_choice(
                "config.guest.cpus",
                format!("{} (for cpu_kind {})", self.cpus, self.cpu_kind.as_str()),
                &refs,
            ));
        }
        let (lo, hi) = Self::memory_range(self.cpu_kind, self.cpus);
        if self.memory_mb < lo || self.memory_mb > hi || !self.memory_mb.is_multiple_of(256) {
            return Err(ApiError::Invalid {
                message: format!(
                    "config.guest.memory_mb: {} MB is not allowed for {} cpus of kind {}; use a multiple of 256 from {lo} to {hi}",
                    self.memory_mb,
                    self.cpus,
                    self.cpu_kind.as_str()
                ),
                field: "config.guest.memory_mb".into(),
                allowed: vec![format!("{lo}..={hi} in steps of 256")],
            });
        }
        Ok(())
    }
}

/// Entrypoint and command overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InitConfig {
    /// Replaces entrypoint and command together, bypassing both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exec: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_size_mb: Option<u32>,
}

/// `tcp` or `udp`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

/// What the proxy does with a connection before handing it to the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Handler {
    Http,
    Tls,
    ProxyProto,
    PgTls,
}

/// Autostop: `off`, `stop` or `suspend` (`true` means `stop`, `false` means `off`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum Autostop {
    #[default]
    Off,
    Stop,
    Suspend,
}

impl Autostop {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Stop => "stop",
            Self::Suspend => "suspend",
        }
    }
    pub const ALLOWED: [&'static str; 5] = ["off", "stop", "suspend", "true", "false"];
}

impl Serialize for Autostop {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Autostop {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Bool(true) => Ok(Self::Stop),
            Value::Bool(false) => Ok(Self::Off),
            Value::String(s) => match s.as_str() {
                "off" | "false" => Ok(Self::Off),
                "stop" | "true" => Ok(Self::Stop),
                "suspend" => Ok(Self::Suspend),
                other => Err(serde::de::Error::custom(format!(
                    "unknown variant `{other}`, expected one of `off`, `stop`, `suspend`"
                ))),
            },
            other => Err(serde::de::Error::custom(format!(
                "unknown variant `{other}`, expected one of `off`, `stop`, `suspend`"
            ))),
        }
    }
}

/// A published service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[serde(default)]
    pub protocol: Protocol,
    pub internal_port: u32,
    #[serde(default)]
    pub autostop: Autostop,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autostart: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_machines_running: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    #[serde(default)]
    pub ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_instance_key: Option<String>,
}

/// `connections` or `requests`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConcurrencyType {
    #[default]
    Connections,
    Requests,
}

/// Load limits the proxy honours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    #[serde(default, rename = "type")]
    pub kind: ConcurrencyType,
    #[serde(default = "default_soft_limit")]
    pub soft_limit: u32,
    #[serde(default = "default_hard_limit")]
    pub hard_limit: u32,
}

fn default_soft_limit() -> u32 {
    20
}
fn default_hard_limit() -> u32 {
    25
}

/// A public port (or range) of a service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Port {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handlers: Vec<Handler>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_https: bool,
    /// The reference's per-handler options, kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub http_options: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub tls_options: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub proxy_proto_options: Option<Value>,
}

impl Port {
    /// The public ports this entry covers (none when it names neither `port` nor a range).
    pub fn range(&self) -> std::ops::RangeInclusive<u32> {
        match (self.port, self.start_port, self.end_port) {
            (Some(p), _, _) => p..=p,
            (None, Some(a), Some(b)) => a..=b,
            #[allow(clippy::reversed_empty_ranges)]
            _ => 1..=0,
        }
    }

    /// `http_options.h2_backend`: the proxy speaks HTTP/2 without TLS (h2c) to the machine.
    pub fn h2_backend(&self) -> bool {
        self.http_options
            .as_ref()
            .and_then(|o| o.get("h2_backend"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// The PROXY protocol version the `proxy_proto` handler sends (`proxy_proto_options.version`,
    /// `v1` unless it says `v2`).
    pub fn proxy_proto_version(&self) -> ProxyProtoVersion {
        match self
            .proxy_proto_options
            .as_ref()
            .and_then(|o| o.get("version"))
            .and_then(Value::as_str)
        {
            Some("v2") => ProxyProtoVersion::V2,
            _ => ProxyProtoVersion::V1,
        }
    }
}

/// The PROXY protocol's two versions: v1 is a text line, v2 a binary header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtoVersion {
    V1,
    V2,
}

/// `tcp` or `http`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckType {
    Tcp,
    Http,
}

/// A header sent by an http check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckHeader {
    pub name: String,
    #[serde(default)]
    pub values: Vec<String>,
}

/// A health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Check {
    #[serde(rename = "type")]
    pub kind: CheckType,
    /// The port to check (inside the machine); defaults to the service's internal port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<DurationStr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationStr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<DurationStr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<CheckHeader>,
}

/// A duration as the reference writes it (`"15s"`); a bare number means seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "15s")]
pub struct DurationStr(pub String);

impl<'de> Deserialize<'de> for DurationStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = match Value::deserialize(d)? {
            Value::String(s) => s,
            Value::Number(n) if n.as_u64().is_some() => format!("{}s", n.as_u64().unwrap_or(0)),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "expected a duration like \"15s\", got {other}"
                )));
            }
        };
        crate::time::parse_duration(&s).map_err(serde::de::Error::custom)?;
        Ok(Self(s))
    }
}

impl DurationStr {
    pub fn get(&self) -> std::time::Duration {
        crate::time::parse_duration(&self.0).unwrap_or_default()
    }
}

/// A volume mounted into the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    pub volume: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_gb: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
}

/// `no`, `always` or `on-failure`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum RestartPolicy {
    #[serde(rename = "no")]
    No,
    #[serde(rename = "always")]
    Always,
    #[default]
    #[serde(rename = "on-failure")]
    OnFailure,
}

/// Restart behaviour after the process exits on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Restart {
    #[serde(default)]
    pub policy: RestartPolicy,
    /// Restarts allowed under `on-failure` before the machine stays stopped (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
}

impl Default for Restart {
    fn default() -> Self {
        Self {
            policy: RestartPolicy::OnFailure,
            max_retries: None,
        }
    }
}

/// A file written into the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub guest_path: String,
    /// Base64 of the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// How the machine is asked to stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationStr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<Signal>,
}

/// DNS inside the machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_registration: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub searches: Vec<String>,
}

/// An extra process in the machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Process {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exec: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// The default stop timeout, as in the reference (`kill_timeout` 5 s).
pub const DEFAULT_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// The default `on-failure` retry budget.
pub const DEFAULT_MAX_RETRIES: u32 = 10;

impl MachineConfig {
    /// A config for an image with every other field at its default.
    pub fn for_image(image: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            ..Self::default()
        }
    }

    /// The restart policy in force (default `on-failure`, 10 retries).
    pub fn restart_policy(&self) -> (RestartPolicy, u32) {
        let r = self.restart.clone().unwrap_or_default();
        (r.policy, r.max_retries.unwrap_or(DEFAULT_MAX_RETRIES))
    }

    /// The signal and grace period used to stop the machine.
    pub fn stop_signal_and_timeout(&self) -> (Signal, std::time::Duration) {
        let sc = self.stop_config.as_ref();
        (
            sc.and_then(|s| s.signal).unwrap_or(Signal::TERM),
            sc.and_then(|s| s.timeout.as_ref())
                .map(DurationStr::get)
                .unwrap_or(DEFAULT_STOP_TIMEOUT),
        )
    }

    /// Checks every rule the reference applies; the error names the field (`config.x.y`) and what
    /// it accepts.
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.image.trim().is_empty() {
            return Err(ApiError::invalid(
                "config.image",
                "config.image is required: name the image to run, e.g. \"registry.example/org/app:v1\" or \"app:latest\"",
            ));
        }
        if self.image.chars().any(char::is_whitespace) {
            return Err(ApiError::invalid(
                "config.image",
                format!(
                    "config.image `{}` contains whitespace; an image reference has none",
                    self.image
                ),
            ));
        }
        self.guest.validate()?;
        for key in self.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(ApiError::invalid(
                    format!("config.env.{key}"),
                    format!("config.env: `{key}` is not a valid variable name (no `=`, not empty)"),
                ));
            }
        }
        let mut public_ports: BTreeMap<(u32, Protocol), usize> = BTreeMap::new();
        for (i, svc) in self.services.iter().enumerate() {
            let f = format!("config.services[{i}]");
            check_port(&format!("{f}.internal_port"), svc.internal_port)?;
            if let Some(c) = &svc.concurrency {
                if c.soft_limit == 0 || c.hard_limit == 0 {
                    return Err(ApiError::invalid(
                        format!("{f}.concurrency"),
                        format!("{f}.concurrency: soft_limit and hard_limit must be at least 1"),
                    ));
                }
                if c.soft_limit > c.hard_limit {
                    return Err(ApiError::invalid(
                        format!("{f}.concurrency.soft_limit"),
                        format!(
                            "{f}.concurrency: soft_limit ({}) is above hard_limit ({}); make soft_limit <= hard_limit",
                            c.soft_limit, c.hard_limit
                        ),
                    ));
                }
            }
            for (j, p) in svc.ports.iter().enumerate() {
                let pf = format!("{f}.ports[{j}]");
                match (p.port, p.start_port, p.end_port) {
                    (Some(port), None, None) => check_port(&format!("{pf}.port"), port)?,
                    (None, Some(a), Some(b)) => {
                        check_port(&format!("{pf}.start_port"), a)?;
                        check_port(&format!("{pf}.end_port"), b)?;
                        if a > b {
                            return Err(ApiError::invalid(
                                format!("{pf}.start_port"),
                                format!("{pf}: start_port {a} is above end_port {b}"),
                            ));
                        }
                    }
                    _ => {
                        return Err(ApiError::invalid(
                            format!("{pf}.port"),
                            format!("{pf}: set either `port`, or both `start_port` and `end_port`"),
                        ));
                    }
                }
                if let Some(v) = p.http_options.as_ref().and_then(|o| o.get("h2_backend"))
                    && !v.is_boolean()
                {
                    return Err(ApiError::invalid(
                        format!("{pf}.http_options.h2_backend"),
                        format!("{pf}.http_options.h2_backend: {v} is not true or false"),
                    ));
                }
                if let Some(v) = p
                    .proxy_proto_options
                    .as_ref()
                    .and_then(|o| o.get("version"))
                    && !matches!(v.as_str(), Some("v1" | "v2"))
                {
                    return Err(ApiError::Invalid {
                        message: format!(
                            "{pf}.proxy_proto_options.version: {v} is not a PROXY protocol version; use \"v1\" or \"v2\""
                        ),
                        field: format!("{pf}.proxy_proto_options.version"),
                        allowed: vec!["v1".into(), "v2".into()],
                    });
                }
                if p.force_https && !p.handlers.contains(&Handler::Http) {
                    return Err(ApiError::invalid(
                        format!("{pf}.force_https"),
                        format!("{pf}: force_https needs the `http` handler on this port"),
                    ));
                }
                for port in p.range() {
                    if let Some(other) = public_ports.insert((port, svc.protocol), i) {
                        return Err(ApiError::invalid(
                            format!("{pf}.port"),
                            format!(
                                "{pf}: public port {port} is already used by config.services[{other}]; give each service its own port"
                            ),
                        ));
                    }
                }
            }
            for (j, c) in svc.checks.iter().enumerate() {
                validate_check(&format!("{f}.checks[{j}]"), c, false)?;
            }
        }
        for (name, c) in &self.checks {
            validate_check(&format!("config.checks.{name}"), c, true)?;
        }
        if self.mounts.len() > 1 {
            return Err(ApiError::invalid(
                "config.mounts",
                "config.mounts: a machine can mount at most one volume",
            ));
        }
        for (i, m) in self.mounts.iter().enumerate() {
            if let Some(problem) = mount_path_problem(&m.path) {
                return Err(ApiError::invalid(
                    format!("config.mounts[{i}].path"),
                    format!("config.mounts[{i}].path `{}` {problem}", m.path),
                ));
            }
            if m.volume.is_empty() {
                return Err(ApiError::invalid(
                    format!("config.mounts[{i}].volume"),
                    format!("config.mounts[{i}].volume is required (the volume's id)"),
                ));
            }
        }
        if let Some(Restart {
            max_retries: Some(n),
            ..
        }) = &self.restart
            && *n > 1000
        {
            return Err(ApiError::invalid(
                "config.restart.max_retries",
                format!("config.restart.max_retries {n} is too many; use at most 1000"),
            ));
        }
        for (i, file) in self.files.iter().enumerate() {
            let f = format!("config.files[{i}]");
            if !file.guest_path.starts_with('/') {
                return Err(ApiError::invalid(
                    format!("{f}.guest_path"),
                    format!(
                        "{f}.guest_path `{}` must be an absolute path",
                        file.guest_path
                    ),
                ));
            }
            match (&file.raw_value, &file.secret_name) {
                (Some(v), None) => {
                    if !is_base64(v) {
                        return Err(ApiError::invalid(
                            format!("{f}.raw_value"),
                            format!(
                                "{f}.raw_value must be base64 (e.g. the output of `base64 -w0 FILE`)"
                            ),
                        ));
                    }
                }
                (None, Some(_)) => {}
                _ => {
                    return Err(ApiError::invalid(
                        format!("{f}.raw_value"),
                        format!("{f}: set exactly one of `raw_value` and `secret_name`"),
                    ));
                }
            }
            if let Some(mode) = file.mode
                && mode > 0o7777
            {
                return Err(ApiError::invalid(
                    format!("{f}.mode"),
                    format!("{f}.mode {mode:o} is not a file mode; use at most 0o7777 (4095)"),
                ));
            }
        }
        Ok(())
    }
}

fn check_port(field: &str, port: u32) -> Result<(), ApiError> {
    if port == 0 || port > 65535 {
        return Err(ApiError::Invalid {
            message: format!("{field}: {port} is not a port; use 1 to 65535"),
            field: field.to_string(),
            allowed: vec!["1..=65535".into()],
        });
    }
    Ok(())
}

fn validate_check(field: &str, c: &Check, needs_port: bool) -> Result<(), ApiError> {
    match c.port {
        Some(p) => check_port(&format!("{field}.port"), p)?,
        None if needs_port => {
            return Err(ApiError::invalid(
                format!("{field}.port"),
                format!("{field}.port is required: the port inside the machine to check"),
            ));
        }
        None => {}
    }
    if let Some(path) = &c.path
        && !path.starts_with('/')
    {
        return Err(ApiError::invalid(
            format!("{field}.path"),
            format!("{field}.path `{path}` must start with `/`"),
        ));
    }
    if let Some(m) = &c.method {
        const METHODS: [&str; 5] = ["GET", "HEAD", "POST", "PUT", "OPTIONS"];
        if !METHODS.contains(&m.to_ascii_uppercase().as_str()) {
            return Err(ApiError::invalid_choice(
                format!("{field}.method"),
                m,
                &METHODS,
            ));
        }
    }
    if let Some(p) = &c.protocol
        && p != "http"
        && p != "https"
    {
        return Err(ApiError::invalid_choice(
            format!("{field}.protocol"),
            p,
            &["http", "https"],
        ));
    }
    Ok(())
}

fn is_base64(s: &str) -> bool {
    let t = s.trim_end_matches('=');
    s.len() - t.len() <= 2
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Why a volume cannot be mounted at `path`, if it cannot: it must be absolute and plain (no
/// `.`, `..` or empty parts), not `/`, and not where the platform mounts its own filesystems.
pub fn mount_path_problem(path: &str) -> Option<&'static str> {
    if !path.starts_with('/') {
        return Some("must be an absolute path, such as /data");
    }
    let parts: Vec<&str> = path[1..]
        .strip_suffix('/')
        .unwrap_or(&path[1..])
        .split('/')
        .collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Some("must be a plain absolute path (no `.`, `..` or `//`), such as /data");
    }
    if ["proc", "dev", "sys", "run", ".aloft"].contains(&parts[0]) {
        return Some(
            "is where the platform mounts its own filesystems: pick another path, such as /data",
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<MachineConfig, ApiError> {
        let c: MachineConfig = ApiError::parse_json(json.as_bytes())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(r#"{"image":"nginx"}"#).unwrap();
        assert_eq!(c.guest, Guest::default());
        assert_eq!(c.restart_policy(), (RestartPolicy::OnFailure, 10));
        assert_eq!(
            c.stop_signal_and_timeout(),
            (Signal::TERM, DEFAULT_STOP_TIMEOUT)
        );
    }

    #[test]
    fn guest_sizes_follow_the_reference() {
        assert!(parse(r#"{"image":"a","guest":{"cpus":2,"memory_mb":4096}}"#).is_ok());
        let e = parse(r#"{"image":"a","guest":{"cpus":3}}"#).unwrap_err();
        assert_eq!(e.body().field.as_deref(), Some("config.guest.cpus"));
        assert!(e.body().allowed.contains(&"6".to_string()));
        let e = parse(r#"{"image":"a","guest":{"cpus":1,"memory_mb":4096}}"#).unwrap_err();
        assert_eq!(e.body().field.as_deref(), Some("config.guest.memory_mb"));
        let e =
            parse(r#"{"image":"a","guest":{"cpu_kind":"performance","cpus":1,"memory_mb":1024}}"#)
                .unwrap_err();
        assert!(e.to_string().contains("2048"), "{e}");
        let e = parse(r#"{"image":"a","guest":{"cpu_kind":"turbo"}}"#).unwrap_err();
        assert_eq!(e.status(), 422);
        assert_eq!(e.body().allowed, vec!["shared", "performance"]);
        let e = parse(r#"{"image":"a","guest":{"memory_mbs":512}}"#).unwrap_err();
        assert_eq!(e.body().field.as_deref(), Some("guest.memory_mbs"));
    }

    #[test]
    fn services_are_checked() {
        let ok = r#"{"image":"a","services":[{"protocol":"tcp","internal_port":8080,"autostop":true,
            "concurrency":{"type":"requests","soft_limit":5,"hard_limit":10},
            "ports":[{"port":80,"handlers":["http"],"force_https":true},{"port":443,"handlers":["tls","http"]}]}]}"#;
        let c = parse(ok).unwrap();
        assert_eq!(c.services[0].autostop, Autostop::Stop);
        let e = parse(r#"{"image":"a","services":[{"internal_port":70000}]}"#).unwrap_err();
        assert_eq!(
            e.body().field.as_deref(),
            Some("config.services[0].internal_port")
        );
        let e = parse(r#"{"image":"a","services":[{"internal_port":80,"ports":[{"port":80,"handlers":["gopher"]}]}]}"#)
            .unwrap_err();
        assert!(
            e.body().allowed.contains(&"proxy_proto".to_string()),
            "{:?}",
            e.body()
        );
        let c = parse(
            r#"{"image":"a","services":[{"internal_port":5432,"ports":[
            {"port":5432,"handlers":["proxy_proto"],"proxy_proto_options":{"version":"v2"}},
            {"port":80,"handlers":["http"],"http_options":{"h2_backend":true}}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            c.services[0].ports[0].proxy_proto_version(),
            ProxyProtoVersion::V2
        );
        assert!(c.services[0].ports[1].h2_backend());
        assert!(!c.services[0].ports[0].h2_backend());
        let e = parse(
            r#"{"image":"a","services":[{"internal_port":5432,"ports":[
            {"port":5432,"handlers":["proxy_proto"],"proxy_proto_options":{"version":"v3"}}]}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.body().field.as_deref(),
            Some("config.services[0].ports[0].proxy_proto_options.version")
        );
        assert_eq!(e.body().allowed, vec!["v1", "v2"]);
        let e = parse(
            r#"{"image":"a","services":[{"internal_port":80,"ports":[
            {"port":80,"handlers":["http"],"http_options":{"h2_backend":"yes"}}]}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("h2_backend"), "{e}");
        let e = parse(r#"{"image":"a","services":[{"internal_port":80,"concurrency":{"soft_limit":9,"hard_limit":3}}]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("soft_limit"));
        let e = parse(r#"{"image":"a","services":[{"internal_port":80,"ports":[{"port":80}]},{"internal_port":81,"ports":[{"port":80}]}]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("already used"), "{e}");
    }

    #[test]
    fn unknown_top_level_fields_are_echoed() {
        let c = parse(r#"{"image":"a","statics":[{"guest_path":"/x"}]}"#).unwrap();
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back["statics"][0]["guest_path"], "/x");
    }

    #[test]
    fn checks_restart_files_stop_config() {
        assert!(parse(r#"{"image":"a","checks":{"alive":{"type":"http","port":8080,"path":"/","interval":"15s","timeout":"2s"}}}"#).is_ok());
        let e = parse(r#"{"image":"a","checks":{"alive":{"type":"tcp"}}}"#).unwrap_err();
        assert_eq!(e.body().field.as_deref(), Some("config.checks.alive.port"));
        let e =
            parse(r#"{"image":"a","checks":{"alive":{"type":"tcp","port":1,"interval":"often"}}}"#)
                .unwrap_err();
        assert_eq!(e.status(), 422);
        let e = parse(r#"{"image":"a","restart":{"policy":"sometimes"}}"#).unwrap_err();
        assert_eq!(e.body().allowed, vec!["no", "always", "on-failure"]);
        let e = parse(r#"{"image":"a","files":[{"guest_path":"/x","raw_value":"not base64!"}]}"#)
            .unwrap_err();
        assert_eq!(e.body().field.as_deref(), Some("config.files[0].raw_value"));
        let c =
            parse(r#"{"image":"a","stop_config":{"signal":"SIGINT","timeout":"30s"}}"#).unwrap();
        assert_eq!(
            c.stop_signal_and_timeout(),
            (Signal::INT, std::time::Duration::from_secs(30))
        );
        let e = parse(r#"{"image":"a","stop_config":{"signal":"SIGNOPE"}}"#).unwrap_err();
        assert_eq!(e.status(), 422);
        let e = parse(
            r#"{"image":"a","mounts":[{"volume":"v","path":"/a"},{"volume":"w","path":"/b"}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.body().field.as_deref(), Some("config.mounts"));
        for bad in [
            "data",
            "/",
            "/a/../proc",
            "/proc/x",
            "/dev",
            "/a//b",
            "/.aloft",
        ] {
            let body = format!(r#"{{"image":"a","mounts":[{{"volume":"v","path":"{bad}"}}]}}"#);
            let e = serde_json::from_str::<MachineConfig>(&body)
                .unwrap()
                .validate()
                .unwrap_err();
            assert_eq!(
                e.body().field.as_deref(),
                Some("config.mounts[0].path"),
                "{bad}"
            );
        }
        let ok = r#"{"image":"a","mounts":[{"volume":"v","path":"/var/lib/data/"}]}"#;
        serde_json::from_str::<MachineConfig>(ok)
            .unwrap()
            .validate()
            .unwrap();
    }

    #[test]
    fn image_is_required() {
        let e = parse(r#"{"guest":{}}"#).unwrap_err();
        assert_eq!(e.status(), 422);
        let e = parse(r#"{"image":""}"#).unwrap_err();
        assert_eq!(e.body().field.as_deref(), Some("config.image"));
    }
}
