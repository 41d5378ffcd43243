//! A machine's published services: protocol, ports and their handlers, autostop, and the load
//! limits the proxy honours.

use super::Check;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

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
    /// Fields aloft does not know: kept and echoed unchanged (the reference's clients send
    /// more than aloft reads).
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: BTreeMap<String, Value>,
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
pub struct Concurrency {
    #[serde(default, rename = "type")]
    pub kind: ConcurrencyType,
    #[serde(default = "default_soft_limit")]
    pub soft_limit: u32,
    #[serde(default = "default_hard_limit")]
    pub hard_limit: u32,
    /// Fields aloft does not know: kept and echoed unchanged (the reference's clients send
    /// more than aloft reads).
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: BTreeMap<String, Value>,
}

fn default_soft_limit() -> u32 {
    20
}
fn default_hard_limit() -> u32 {
    25
}

/// A public port (or range) of a service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
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
    /// Fields aloft does not know: kept and echoed unchanged (the reference's clients send
    /// more than aloft reads).
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: BTreeMap<String, Value>,
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
