//! The machine `config` object users send, with the reference's field names, and its validation.
//!
//! Policy for fields aloft does not know: they are kept and echoed back unchanged, at the top
//! level and inside every section (the reference's server reads what it knows and its clients
//! send more: `statics`, `guest.max_memory_mb`, `init.kernel_args`, mounts' `extend_*` ...), so
//! a config round-trips. A field that asks for a capability aloft lacks is refused with a 422
//! naming it (`guest.gpus`), never ignored.

//!
//! The types are split by section into private modules: `guest` (size), `process` (what runs
//! and how it is stopped and restarted), `services` (published ports), `checks` (health checks),
//! `mounts` (a volume and files), and `validate` ([`MachineConfig::validate`], one function per
//! section). Every type is re-exported here, where it has always been.

use crate::signal::Signal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

mod checks;
mod guest;
mod mounts;
mod process;
mod services;
mod validate;

pub use checks::{Check, CheckHeader, CheckType, DurationStr};
pub use guest::{CpuKind, Guest};
pub use mounts::{File, Mount, mount_path_problem};
pub use process::{DnsConfig, InitConfig, Process, Restart, RestartPolicy, StopConfig};
pub use services::{
    Autostop, Concurrency, ConcurrencyType, Handler, Port, Protocol, ProxyProtoVersion, Service,
};

/// A machine's configuration. Only `image` is required.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MachineConfig {
    /// The OCI image to run: `registry/org/name:tag`, `name:tag` (the org's own repository), or a
    /// digest reference.
    #[schema(pattern = "\\S")]
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;

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
        // Every preset of the reference (fly-go's MachinePresets), performance-6x to 14x too.
        for cpus in [1, 2, 4, 6, 8, 10, 12, 14, 16] {
            let text = format!(
                r#"{{"image":"a","guest":{{"cpu_kind":"performance","cpus":{cpus},"memory_mb":{}}}}}"#,
                cpus * 2048
            );
            assert!(parse(&text).is_ok(), "performance-{cpus}x");
        }
        let guest = |cpu_kind, cpus| Guest {
            cpu_kind,
            cpus,
            ..Guest::default()
        };
        assert_eq!(guest(CpuKind::Performance, 6).size_name(), "performance-6x");
        assert_eq!(guest(CpuKind::Shared, 2).size_name(), "shared-cpu-2x");
        let e = parse(r#"{"image":"a","guest":{"cpu_kind":"turbo"}}"#).unwrap_err();
        assert_eq!(e.status(), 422);
        assert_eq!(e.body().allowed, vec!["shared", "performance"]);
        // Fields aloft does not know are kept and echoed, as the reference's clients send them.
        let text = r#"{"image":"a","guest":{"max_memory_mb":512,"persist_rootfs":"never"},
            "init":{"kernel_args":["quiet"]},"mounts":[{"volume":"vol_1","path":"/data",
            "extend_threshold_percent":80,"add_size_gb":1}],"dns":{"hostname":"web"}}"#;
        let c = parse(text).unwrap();
        assert_eq!(c.guest.extra["max_memory_mb"], 512);
        let echoed = serde_json::to_value(&c).unwrap();
        assert_eq!(echoed["guest"]["persist_rootfs"], "never");
        assert_eq!(echoed["mounts"][0]["extend_threshold_percent"], 80);
        assert_eq!(echoed["dns"]["hostname"], "web");
        assert_eq!(serde_json::from_value::<MachineConfig>(echoed).unwrap(), c);
        // A capability aloft lacks is refused, naming it.
        let e =
            parse(r#"{"image":"a","guest":{"gpus":1,"gpu_kind":"a100-pcie-40gb"}}"#).unwrap_err();
        assert_eq!(e.body().field.as_deref(), Some("config.guest.gpus"));
        assert!(e.to_string().contains("no GPUs"), "{e}");
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
