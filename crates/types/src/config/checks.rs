//! Health checks (a service's, or the machine's own) and the durations they are written with.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// `tcp` or `http`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckType {
    Tcp,
    Http,
}

/// A header sent by an http check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckHeader {
    pub name: String,
    #[serde(default)]
    pub values: Vec<String>,
    /// Fields aloft does not know: kept and echoed unchanged (the reference's clients send
    /// more than aloft reads).
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: BTreeMap<String, Value>,
}

/// A health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
    /// Fields aloft does not know: kept and echoed unchanged (the reference's clients send
    /// more than aloft reads).
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: BTreeMap<String, Value>,
}

/// A duration as the reference writes it (`"15s"`, `"1m0s"`: Go's form, whatever form it was
/// given in); a bare number means seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(
    value_type = String,
    example = "15s",
    pattern = "^\\s*([0-9]{1,9}|([0-9]{1,4}(\\.[0-9]{1,3})?(ns|us|µs|ms|h|m|s)){1,4})\\s*$"
)]
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
        let d = crate::time::parse_duration(&s).map_err(serde::de::Error::custom)?;
        // Written back as Go writes durations, so the reference's clients can read it.
        Ok(Self(crate::time::go_duration(d)))
    }
}

impl DurationStr {
    pub fn get(&self) -> std::time::Duration {
        crate::time::parse_duration(&self.0).unwrap_or_default()
    }
}
