//! Where a new machine goes, and what `GET /v1/platform/regions` says about each region.
//!
//! Placement uses the capacity each host reported in its last heartbeat (plus machines placed on
//! it since). A guest fits a host when its memory fits the host's free memory and, for
//! `performance` guests, its CPUs fit the free CPUs (`shared` CPUs are oversubscribed, as on the
//! reference platform). Among the hosts it fits, the one with the fewest of the app's machines goes
//! first (an app's machines in a region spread across its hosts, so one host down leaves others),
//! then the one with the most free memory.

use crate::store::HostRecord;
use aloft_types::ApiError;
use aloft_types::api::Region;
use aloft_types::config::{CpuKind, Guest};
use std::collections::BTreeMap;

/// The region codes aloft knows a place for (the reference's codes, plus `local`).
const CATALOG: &[(&str, &str, f64, f64)] = &[
    ("ams", "Amsterdam, Netherlands", 52.374, 4.8897),
    ("fra", "Frankfurt, Germany", 50.1109, 8.6821),
    ("gru", "São Paulo, Brazil", -23.5505, -46.6333),
    ("iad", "Ashburn, Virginia (US)", 39.0438, -77.4874),
    ("lhr", "London, United Kingdom", 51.5074, -0.1278),
    ("local", "Local development", 0.0, 0.0),
    ("nrt", "Tokyo, Japan", 35.6762, 139.6503),
    ("ord", "Chicago, Illinois (US)", 41.8781, -87.6298),
    ("sin", "Singapore, Singapore", 1.3521, 103.8198),
    ("sjc", "San Jose, California (US)", 37.3382, -121.8863),
    ("syd", "Sydney, Australia", -33.8688, 151.2093),
];

/// The regions that have at least one host, with their free capacity, by code.
pub(crate) fn regions(hosts: &[HostRecord]) -> Vec<Region> {
    let mut by_code: BTreeMap<&str, Region> = BTreeMap::new();
    for h in hosts {
        let r = by_code.entry(h.info.region.as_str()).or_insert_with(|| {
            let (name, latitude, longitude) = CATALOG
                .iter()
                .find(|(code, ..)| *code == h.info.region)
                .map_or((h.info.region.as_str(), 0.0, 0.0), |(_, n, lat, long)| {
                    (*n, *lat, *long)
                });
            Region {
                code: h.info.region.clone(),
                name: name.to_string(),
                latitude,
                longitude,
                hosts: 0,
                free_cpus: 0,
                free_memory_mb: 0,
            }
        });
        r.hosts += 1;
        r.free_cpus += h.free_cpus();
        r.free_memory_mb += h.free_memory_mb();
    }
    by_code.into_values().collect()
}

/// The hosts of `region` the guest fits on, best first (`app_machines`: how many of the app's
/// machines each host has). 422 when the region has no host (the
/// error lists the regions that have), 503 when no host has room (the error says how much each
/// has free).
pub(crate) fn candidates<'h>(
    hosts: &'h [HostRecord],
    region: &str,
    guest: &Guest,
    app_machines: &BTreeMap<String, usize>,
) -> Result<Vec<&'h HostRecord>, ApiError> {
    let in_region: Vec<&HostRecord> = hosts.iter().filter(|h| h.info.region == region).collect();
    if in_region.is_empty() {
        let available: Vec<String> = regions(hosts).into_iter().map(|r| r.code).collect();
        return Err(ApiError::Invalid {
            message: format!(
                "region `{region}` has no hosts; pick one of the available regions: {}",
                if available.is_empty() {
                    "(none: no host agent has registered yet; start one)".to_string()
                } else {
                    available.join(", ")
                }
            ),
            field: "region".into(),
            allowed: available,
        });
    }
    let mut fitting: Vec<&HostRecord> = in_region
        .iter()
        .copied()
        .filter(|h| fits(h, guest))
        .collect();
    if fitting.is_empty() {
        let free: Vec<String> = in_region
            .iter()
            .map(|h| {
                format!(
                    "{} has {} MB and {} CPUs free",
                    h.info.id,
                    h.free_memory_mb(),
                    h.free_cpus()
                )
            })
            .collect();
        return Err(ApiError::NoCapacity(format!(
            "no host in region `{region}` has room for a {} machine with {} MB: {}; pick a smaller \
             size, another region, or destroy machines you no longer need",
            guest.size_name(),
            guest.memory_mb,
            free.join("; ")
        )));
    }
    let of_app = |h: &HostRecord| app_machines.get(&h.info.id).copied().unwrap_or(0);
    fitting.sort_by(|a, b| {
        of_app(a)
            .cmp(&of_app(b))
            .then(b.free_memory_mb().cmp(&a.free_memory_mb()))
            .then(b.free_cpus().cmp(&a.free_cpus()))
            .then(a.info.id.cmp(&b.info.id))
    });
    Ok(fitting)
}

fn fits(host: &HostRecord, guest: &Guest) -> bool {
    host.free_memory_mb() >= u64::from(guest.memory_mb)
        && (guest.cpu_kind == CpuKind::Shared || host.free_cpus() >= guest.cpus)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aloft_types::api::HostInfo;

    fn host(id: &str, region: &str, memory_mb: u64, allocated_mb: u64) -> HostRecord {
        HostRecord {
            info: HostInfo {
                id: id.into(),
                region: region.into(),
                address: String::new(),
                runtime: "sim".into(),
                cpus: 4,
                memory_mb,
                allocated_cpus: 2,
                allocated_memory_mb: allocated_mb,
            },
            last_seen: 0,
        }
    }

    fn guest(kind: CpuKind, cpus: u32, memory_mb: u32) -> Guest {
        Guest {
            cpu_kind: kind,
            cpus,
            memory_mb,
            ..Guest::default()
        }
    }

    #[test]
    fn the_host_with_most_free_memory_goes_first() {
        let hosts = [
            host("a", "ord", 8192, 6144),
            host("b", "ord", 4096, 0),
            host("c", "ams", 65536, 0),
        ];
        let ids: Vec<&str> = candidates(&hosts, "ord", &Guest::default(), &BTreeMap::new())
            .unwrap()
            .iter()
            .map(|h| h.info.id.as_str())
            .collect();
        assert_eq!(ids, ["b", "a"]);
    }

    #[test]
    fn an_apps_machines_spread_across_the_hosts_of_a_region() {
        let hosts = [host("a", "ord", 8192, 0), host("b", "ord", 4096, 0)];
        let order = |counts: &[(&str, usize)]| -> Vec<String> {
            let counts = counts.iter().map(|(h, n)| (h.to_string(), *n)).collect();
            candidates(&hosts, "ord", &Guest::default(), &counts)
                .unwrap()
                .iter()
                .map(|h| h.info.id.clone())
                .collect()
        };
        assert_eq!(order(&[]), ["a", "b"]);
        assert_eq!(order(&[("a", 1)]), ["b", "a"]);
        assert_eq!(order(&[("a", 1), ("b", 1)]), ["a", "b"]);
    }

    #[test]
    fn hosts_without_room_are_skipped_and_none_is_503() {
        let hosts = [host("a", "ord", 1024, 512), host("b", "ord", 4096, 0)];
        let g = guest(CpuKind::Shared, 1, 1024);
        let ids: Vec<&str> = candidates(&hosts, "ord", &g, &BTreeMap::new())
            .unwrap()
            .iter()
            .map(|h| h.info.id.as_str())
            .collect();
        assert_eq!(ids, ["b"]);

        let err = candidates(
            &hosts,
            "ord",
            &guest(CpuKind::Shared, 4, 8192),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert_eq!(err.status(), 503);
        let msg = err.to_string();
        assert!(
            msg.contains("ord") && msg.contains("a has 512 MB") && msg.contains("b has 4096 MB"),
            "{msg}"
        );
    }

    #[test]
    fn performance_guests_need_free_cpus() {
        let hosts = [host("a", "ord", 65536, 0)];
        // 2 of 4 CPUs are allocated.
        assert!(
            candidates(
                &hosts,
                "ord",
                &guest(CpuKind::Performance, 2, 4096),
                &BTreeMap::new()
            )
            .is_ok()
        );
        assert_eq!(
            candidates(
                &hosts,
                "ord",
                &guest(CpuKind::Performance, 4, 8192),
                &BTreeMap::new()
            )
            .unwrap_err()
            .status(),
            503
        );
        assert!(
            candidates(
                &hosts,
                "ord",
                &guest(CpuKind::Shared, 4, 1024),
                &BTreeMap::new()
            )
            .is_ok()
        );
    }

    #[test]
    fn an_unknown_region_is_422_listing_the_regions() {
        let hosts = [host("a", "ord", 1024, 0), host("b", "ams", 1024, 0)];
        let err = candidates(&hosts, "xyz", &Guest::default(), &BTreeMap::new()).unwrap_err();
        let body = err.body();
        assert_eq!(err.status(), 422);
        assert_eq!(body.field.as_deref(), Some("region"));
        assert_eq!(body.allowed, ["ams", "ord"]);
        assert!(body.error.contains("ams, ord"), "{}", body.error);
    }

    #[test]
    fn regions_sum_their_hosts() {
        let hosts = [
            host("a", "ord", 4096, 1024),
            host("b", "ord", 2048, 0),
            host("c", "mars", 1024, 0),
        ];
        let rs = regions(&hosts);
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].code, "mars");
        assert_eq!(rs[0].name, "mars");
        let ord = &rs[1];
        assert_eq!(ord.name, "Chicago, Illinois (US)");
        assert_eq!((ord.hosts, ord.free_cpus, ord.free_memory_mb), (2, 4, 5120));
    }
}
