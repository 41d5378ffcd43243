//! A machine's size: CPU kind, CPUs and memory, as the reference allows them.

use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

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
pub struct Guest {
    #[serde(default)]
    pub cpu_kind: CpuKind,
    #[serde(default = "one")]
    pub cpus: u32,
    #[serde(default = "default_memory")]
    pub memory_mb: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_args: Vec<String>,
    /// The most the machine may write to its root filesystem (MB, 64 to 65536), held on the
    /// host as a quota; unset: 8 MB per MB of memory, at least 2048 and at most 20480. Writes
    /// past it fail with "no space left on device" inside the machine. Volumes are for more
    /// data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs_size_mb: Option<u32>,
    /// Fields aloft does not know: kept and echoed unchanged (the reference's clients send
    /// more than aloft reads).
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: BTreeMap<String, Value>,
}

/// The smallest and largest `rootfs_size_mb`.
pub const ROOTFS_SIZE_MB_RANGE: (u32, u32) = (64, 65536);

fn one() -> u32 {
    1
}
fn default_memory() -> u32 {
    256
}

impl Default for Guest {
    fn default() -> Self {
        Self {
            extra: Default::default(),
            cpu_kind: CpuKind::Shared,
            cpus: 1,
            memory_mb: 256,
            kernel_args: Vec::new(),
            rootfs_size_mb: None,
        }
    }
}

impl Guest {
    /// CPU counts allowed for a CPU kind: those of the reference's size presets (fly-go's
    /// `MachinePresets`: shared-cpu-1x to 8x, performance-1x to 16x).
    pub fn allowed_cpus(kind: CpuKind) -> &'static [u32] {
        match kind {
            CpuKind::Shared => &[1, 2, 4, 6, 8],
            CpuKind::Performance => &[1, 2, 4, 6, 8, 10, 12, 14, 16],
        }
    }

    /// The memory range (MB) for a CPU kind and count; sizes go in steps of 256 MB.
    pub fn memory_range(kind: CpuKind, cpus: u32) -> (u32, u32) {
        match kind {
            CpuKind::Shared => (256 * cpus, 2048 * cpus),
            CpuKind::Performance => (2048 * cpus, 8192 * cpus),
        }
    }

    /// The root filesystem's quota (MB): `rootfs_size_mb` when set, else 8 MB per MB of memory,
    /// at least 2048 and at most 20480 (shared-cpu-1x with 256 MB: 2 GiB; 2 GB of memory:
    /// 16 GiB).
    pub fn rootfs_mb(&self) -> u32 {
        self.rootfs_size_mb
            .unwrap_or_else(|| self.memory_mb.saturating_mul(8).clamp(2048, 20480))
    }

    /// The reference's size name for this guest, e.g. `shared-cpu-1x` or `performance-2x`
    /// (fly-go's `ToSize`).
    pub fn size_name(&self) -> String {
        match self.cpu_kind {
            CpuKind::Shared => format!("shared-cpu-{}x", self.cpus),
            CpuKind::Performance => format!("performance-{}x", self.cpus),
        }
    }

    /// 422 for a GPU (`gpus` above 0, or a `gpu_kind`): aloft's hosts offer none. Kept unknown
    /// fields are otherwise echoed, but a GPU cannot be pretended.
    fn check_no_gpus(&self) -> Result<(), ApiError> {
        let gpus = self
            .extra
            .get("gpus")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let kind = self
            .extra
            .get("gpu_kind")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        if gpus == 0 && kind.is_empty() {
            return Ok(());
        }
        let field = if gpus > 0 { "gpus" } else { "gpu_kind" };
        Err(ApiError::Invalid {
            message: format!(
                "config.guest.{field}: aloft's hosts have no GPUs; remove gpus and gpu_kind from the guest"
            ),
            field: format!("config.guest.{field}"),
            allowed: Vec::new(),
        })
    }

    /// Its CPUs and memory are a size the reference allows (part of [`super::MachineConfig::validate`]).
    pub(super) fn validate(&self) -> Result<(), ApiError> {
        self.check_no_gpus()?;
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
        let (lo, hi) = ROOTFS_SIZE_MB_RANGE;
        if let Some(mb) = self.rootfs_size_mb
            && !(lo..=hi).contains(&mb)
        {
            return Err(ApiError::Invalid {
                message: format!(
                    "config.guest.rootfs_size_mb: {mb} MB is not allowed; use {lo} to {hi} (or a volume for more data)"
                ),
                field: "config.guest.rootfs_size_mb".into(),
                allowed: vec![format!("{lo}..={hi}")],
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_filesystem_quota_has_a_default_from_memory_and_a_range() {
        let mb = |memory_mb, rootfs_size_mb| {
            Guest {
                memory_mb,
                rootfs_size_mb,
                ..Guest::default()
            }
            .rootfs_mb()
        };
        assert_eq!(mb(256, None), 2048);
        assert_eq!(mb(1024, None), 8192);
        assert_eq!(mb(2048, None), 16384);
        assert_eq!(mb(16384, None), 20480);
        assert_eq!(mb(256, Some(64)), 64);
        let sized = |rootfs_size_mb| {
            Guest {
                rootfs_size_mb: Some(rootfs_size_mb),
                ..Guest::default()
            }
            .validate()
        };
        assert!(sized(64).is_ok() && sized(65536).is_ok());
        let e = sized(63).unwrap_err();
        assert_eq!(
            e.body().field.as_deref(),
            Some("config.guest.rootfs_size_mb")
        );
        assert!(sized(65537).is_err());
    }
}
