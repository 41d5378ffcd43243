//! What a volume create or update may ask for: names, sizes, snapshot settings, the
//! reference's options aloft does not have (a 422 naming each), and unique zones (a host is
//! aloft's zone).

use crate::store::{HostRecord, VolumeRecord, VolumeSettings};
use aloft_types::ApiError;
use aloft_types::api::{
    CreateVolumeRequest, DEFAULT_SNAPSHOT_RETENTION, SNAPSHOT_RETENTION_DAYS, UpdateVolumeRequest,
};
use std::collections::BTreeSet;

/// Sizes a volume may have, in GB.
pub(crate) const MAX_VOLUME_GB: u32 = 500;

/// The one filesystem aloft volumes hold.
pub(crate) const FSTYPE: &str = "ext4";

/// Whether `name` is a volume name: 1-30 letters, digits and underscores (the reference's rule).
fn name_problem(name: &str) -> Option<String> {
    let ok = (1..=30).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    (!ok).then(|| {
        format!(
            "volume name `{name}` must be 1 to 30 letters, digits and underscores, such as `data` or `pg_data`"
        )
    })
}

/// `days` if it is a snapshot retention (1 to 60), else 422 naming the bounds.
fn retention(days: u32) -> Result<u32, ApiError> {
    let (min, max) = SNAPSHOT_RETENTION_DAYS;
    if (min..=max).contains(&days) {
        Ok(days)
    } else {
        Err(ApiError::invalid(
            "snapshot_retention",
            format!("snapshot_retention {days} must be {min} to {max} days"),
        ))
    }
}

/// A string option sent empty is the same as one not sent (clients fill unset fields with "").
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|s| !s.is_empty())
}

/// The size and settings a create asks for; 422 naming the field for a bad value or for an
/// option aloft does not have (another filesystem, a restore, a fork).
pub(crate) fn check_create(req: &CreateVolumeRequest) -> Result<(u32, VolumeSettings), ApiError> {
    if let Some(problem) = name_problem(&req.name) {
        return Err(ApiError::invalid("name", problem));
    }
    let size_gb = req.size_gb.unwrap_or(1);
    if !(1..=MAX_VOLUME_GB).contains(&size_gb) {
        return Err(ApiError::invalid(
            "size_gb",
            format!("size_gb {size_gb} must be 1 to {MAX_VOLUME_GB}"),
        ));
    }
    if let Some(fstype) = given(&req.fstype).filter(|f| *f != FSTYPE) {
        return Err(ApiError::Invalid {
            message: format!(
                "fstype `{fstype}` is not supported: aloft volumes hold an {FSTYPE} filesystem (leave fstype out, or send `{FSTYPE}`)"
            ),
            field: "fstype".into(),
            allowed: vec![FSTYPE.into()],
        });
    }
    if let Some(snapshot) = given(&req.snapshot_id) {
        return Err(ApiError::invalid(
            "snapshot_id",
            format!(
                "restoring snapshot {snapshot} into a new volume is not supported by aloft: create an empty volume (leave snapshot_id out) and copy the data in from a machine"
            ),
        ));
    }
    if let Some(source) = given(&req.source_volume_id) {
        return Err(ApiError::invalid(
            "source_volume_id",
            format!(
                "forking volume {source} into a new volume is not supported by aloft: create an empty volume (leave source_volume_id out) and copy the data in from a machine"
            ),
        ));
    }
    let settings = VolumeSettings {
        snapshot_retention: retention(
            req.snapshot_retention.unwrap_or(DEFAULT_SNAPSHOT_RETENTION),
        )?,
        auto_backup_enabled: req.auto_backup_enabled.unwrap_or(false),
    };
    Ok((size_gb, settings))
}

/// `settings` with what an update changes; 422 for a retention out of bounds.
pub(crate) fn apply_update(
    mut settings: VolumeSettings,
    req: &UpdateVolumeRequest,
) -> Result<VolumeSettings, ApiError> {
    if let Some(days) = req.snapshot_retention {
        settings.snapshot_retention = retention(days)?;
    }
    if let Some(on) = req.auto_backup_enabled {
        settings.auto_backup_enabled = on;
    }
    Ok(settings)
}

/// With `require_unique_zone`, drops the hosts that hold a volume of the app named like the new
/// one (any of the app's volumes with `unique_zone_app_wide`); 422 when none is left.
pub(crate) fn unique_zones<'h>(
    req: &CreateVolumeRequest,
    app_volumes: &[VolumeRecord],
    candidates: Vec<&'h HostRecord>,
) -> Result<Vec<&'h HostRecord>, ApiError> {
    if req.require_unique_zone != Some(true) {
        return Ok(candidates);
    }
    let app_wide = req.unique_zone_app_wide == Some(true);
    let taken: BTreeSet<&str> = app_volumes
        .iter()
        .filter(|v| app_wide || v.name == req.name)
        .map(|v| v.host_id.as_str())
        .collect();
    let all: Vec<&str> = candidates.iter().map(|h| h.info.id.as_str()).collect();
    let left: Vec<&HostRecord> = candidates
        .into_iter()
        .filter(|h| !taken.contains(h.info.id.as_str()))
        .collect();
    if left.is_empty() {
        let which = if app_wide {
            "a volume of the app".to_string()
        } else {
            format!("a volume named `{}` of the app", req.name)
        };
        return Err(ApiError::invalid(
            "require_unique_zone",
            format!(
                "every host of region `{}` that could take it ({}) holds {which} already, and require_unique_zone asks for another host (aloft's zone): add a host to the region, or send require_unique_zone false to share one",
                req.region,
                all.join(", ")
            ),
        ));
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: serde_json::Value) -> CreateVolumeRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn names() {
        for ok in ["data", "pg_data", "A1", &"x".repeat(30)] {
            assert_eq!(name_problem(ok), None, "{ok}");
        }
        for bad in ["", "no-dashes", "sp ace", &"x".repeat(31)] {
            assert!(name_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn settings_default_and_bounds() {
        let (size, s) =
            check_create(&req(serde_json::json!({"name": "d", "region": "x"}))).unwrap();
        assert_eq!(
            (size, s.snapshot_retention, s.auto_backup_enabled),
            (1, 5, false)
        );
        for (days, ok) in [(0, false), (1, true), (60, true), (61, false)] {
            let body = serde_json::json!({"name": "d", "region": "x", "snapshot_retention": days});
            assert_eq!(check_create(&req(body)).is_ok(), ok, "{days}");
            let update = UpdateVolumeRequest {
                snapshot_retention: Some(days),
                auto_backup_enabled: None,
            };
            assert_eq!(apply_update(s, &update).is_ok(), ok, "{days}");
        }
        let update = UpdateVolumeRequest {
            snapshot_retention: None,
            auto_backup_enabled: Some(true),
        };
        let changed = apply_update(s, &update).unwrap();
        assert_eq!(
            (changed.snapshot_retention, changed.auto_backup_enabled),
            (5, true)
        );
    }
}
