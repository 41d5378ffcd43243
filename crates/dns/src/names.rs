//! The `.internal` names (fly-platform.md, "Private networking"), answered from the started
//! machines an asker may see: those in its own org's /48.
//!
//! | name | answer |
//! |---|---|
//! | `<app>.internal`, `global.<app>.internal` | AAAA of every machine of the app |
//! | `<region>.<app>.internal` | AAAA of the app's machines in the region |
//! | `top<N>.nearest.of.<app>.internal` | AAAA of the N nearest (the asker's region first) |
//! | `<id>.vm.<app>.internal` | AAAA of that machine |
//! | `vms.<app>.internal` | TXT `<id> <region>,...` |
//! | `regions.<app>.internal` | TXT `<region>,...` |
//! | `_apps.internal` | TXT `<app>,...` |

use crate::wire::{Record, TYPE_AAAA, TYPE_ANY, TYPE_TXT};
use aloft_types::sixpn::network_of as network;
use std::collections::BTreeSet;
use std::net::Ipv6Addr;

/// A started machine, as internal DNS knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub app: String,
    pub region: String,
    pub ip: Ipv6Addr,
}

/// What a name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The name exists: its records of the asked type (none for another type).
    Records(Vec<Record>),
    /// No such name for this asker.
    NxDomain,
    /// The asker has no org network (not a 6PN address): nothing is answered.
    Refused,
}

/// Whether `name` is one internal DNS answers itself (anything under `internal`).
pub fn is_internal(name: &str) -> bool {
    name == "internal" || name.ends_with(".internal")
}

/// The answer to `name` (lowercase, no trailing dot) of type `qtype` for `asker`, from the
/// started machines in `entries`; `here` is this host's region (for an asker it cannot place),
/// `rtt_ms` the measured round trip from this host to a region (`None`: not measured), which
/// orders the other regions for "nearest".
pub fn answer(
    name: &str,
    qtype: u16,
    asker: Ipv6Addr,
    here: &str,
    entries: &[Entry],
    rtt_ms: &dyn Fn(&str) -> Option<u64>,
) -> Answer {
    let Some(org) = network(asker) else {
        return Answer::Refused;
    };
    let visible: Vec<&Entry> = entries
        .iter()
        .filter(|e| network(e.ip) == Some(org))
        .collect();
    let labels: Vec<&str> = name.split('.').collect();
    let Some((&"internal", labels)) = labels.split_last() else {
        return Answer::NxDomain;
    };
    let of_app = |app: &str| -> Vec<&Entry> {
        let mut found: Vec<&Entry> = visible.iter().copied().filter(|e| e.app == app).collect();
        found.sort_by(|a, b| (&a.region, &a.id).cmp(&(&b.region, &b.id)));
        found
    };
    let addresses = |found: Vec<&Entry>| -> Answer {
        if found.is_empty() {
            return Answer::NxDomain;
        }
        Answer::Records(if matches!(qtype, TYPE_AAAA | TYPE_ANY) {
            found.iter().map(|e| Record::Aaaa(e.ip)).collect()
        } else {
            Vec::new()
        })
    };
    let text = |exists: bool, value: String| -> Answer {
        if !exists {
            return Answer::NxDomain;
        }
        Answer::Records(if matches!(qtype, TYPE_TXT | TYPE_ANY) {
            vec![Record::Txt(value)]
        } else {
            Vec::new()
        })
    };
    match labels {
        ["_apps"] => {
            let apps: BTreeSet<&str> = visible.iter().map(|e| e.app.as_str()).collect();
            text(true, apps.into_iter().collect::<Vec<_>>().join(","))
        }
        [app] | ["global", app] => addresses(of_app(app)),
        ["vms", app] => {
            let found = of_app(app);
            let list: Vec<String> = found
                .iter()
                .map(|e| format!("{} {}", e.id, e.region))
                .collect();
            text(!found.is_empty(), list.join(","))
        }
        ["regions", app] => {
            let found = of_app(app);
            let regions: BTreeSet<&str> = found.iter().map(|e| e.region.as_str()).collect();
            text(
                !found.is_empty(),
                regions.into_iter().collect::<Vec<_>>().join(","),
            )
        }
        [id, "vm", app] => addresses(of_app(app).into_iter().filter(|e| e.id == *id).collect()),
        [top, "nearest", "of", app] => {
            let Some(n) = top
                .strip_prefix("top")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n > 0)
            else {
                return Answer::NxDomain;
            };
            let from = entries
                .iter()
                .find(|e| e.ip == asker)
                .map_or(here, |e| e.region.as_str());
            // The asker's region, then the others by measured distance (unmeasured last).
            let mut found = of_app(app);
            found.sort_by_cached_key(|e| {
                let far = e.region != from;
                (far, far.then(|| rtt_ms(&e.region).unwrap_or(u64::MAX)))
            });
            found.truncate(n);
            addresses(found)
        }
        [region, app] => addresses(
            of_app(app)
                .into_iter()
                .filter(|e| e.region == *region)
                .collect(),
        ),
        _ => Answer::NxDomain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, app: &str, region: &str, ip: &str) -> Entry {
        Entry {
            id: id.into(),
            app: app.into(),
            region: region.into(),
            ip: ip.parse().unwrap(),
        }
    }

    fn entries() -> Vec<Entry> {
        vec![
            entry("m1", "web", "ams", "fdaa:0:1:0:1:0:1:2"),
            entry("m2", "web", "ord", "fdaa:0:1:0:2:0:2:2"),
            entry("m3", "db", "ord", "fdaa:0:1:0:2:0:3:2"),
            // Another org's machine of an app with the same name.
            entry("x1", "web", "ams", "fdaa:0:2:0:1:0:1:2"),
        ]
    }

    fn ips(a: Answer) -> Vec<String> {
        match a {
            Answer::Records(r) => r
                .into_iter()
                .map(|r| match r {
                    Record::Aaaa(ip) => ip.to_string(),
                    Record::Txt(t) => t,
                })
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nearest_is_the_askers_region_then_by_measured_distance() {
        let e = vec![
            entry("a", "web", "ams", "fdaa:0:1:0:1:0:1:2"),
            entry("s", "web", "syd", "fdaa:0:1:0:3:0:1:2"),
            entry("o", "web", "ord", "fdaa:0:1:0:2:0:1:2"),
            entry("n", "web", "nrt", "fdaa:0:1:0:4:0:1:2"),
        ];
        let asker: Ipv6Addr = "fdaa:0:1:0:3:0:1:2".parse().unwrap(); // in syd
        let rtt = |r: &str| match r {
            "ord" => Some(200),
            "ams" => Some(280),
            _ => None,
        };
        assert_eq!(
            ips(answer(
                "top4.nearest.of.web.internal",
                TYPE_AAAA,
                asker,
                "syd",
                &e,
                &rtt
            )),
            [
                "fdaa:0:1:0:3:0:1:2",
                "fdaa:0:1:0:2:0:1:2",
                "fdaa:0:1:0:1:0:1:2",
                "fdaa:0:1:0:4:0:1:2"
            ]
        );
    }

    #[test]
    fn names_resolve_within_the_askers_org_only() {
        let e = entries();
        let asker: Ipv6Addr = "fdaa:0:1:0:2:0:3:2".parse().unwrap(); // m3, in ord
        let ask = |name: &str, t: u16| answer(name, t, asker, "local", &e, &|_| None);
        assert_eq!(
            ips(ask("web.internal", TYPE_AAAA)),
            ["fdaa:0:1:0:1:0:1:2", "fdaa:0:1:0:2:0:2:2"]
        );
        assert_eq!(ips(ask("global.web.internal", TYPE_AAAA)).len(), 2);
        assert_eq!(
            ips(ask("ord.web.internal", TYPE_AAAA)),
            ["fdaa:0:1:0:2:0:2:2"]
        );
        assert_eq!(
            ips(ask("m1.vm.web.internal", TYPE_AAAA)),
            ["fdaa:0:1:0:1:0:1:2"]
        );
        assert_eq!(
            ips(ask("top1.nearest.of.web.internal", TYPE_AAAA)),
            ["fdaa:0:1:0:2:0:2:2"],
            "the asker is in ord"
        );
        assert_eq!(ips(ask("vms.web.internal", TYPE_TXT)), ["m1 ams,m2 ord"]);
        assert_eq!(ips(ask("regions.web.internal", TYPE_TXT)), ["ams,ord"]);
        assert_eq!(ips(ask("_apps.internal", TYPE_TXT)), ["db,web"]);
        // A name that exists, asked for another type: no records, not NXDOMAIN.
        assert!(ips(ask("web.internal", 1)).is_empty());
        // Another org's machine is not there; unknown names are NXDOMAIN.
        assert_eq!(ask("x1.vm.web.internal", TYPE_AAAA), Answer::NxDomain);
        assert_eq!(ask("nope.internal", TYPE_AAAA), Answer::NxDomain);
        assert_eq!(ask("syd.web.internal", TYPE_AAAA), Answer::NxDomain);
        assert_eq!(
            ask("top0.nearest.of.web.internal", TYPE_AAAA),
            Answer::NxDomain
        );
        assert_eq!(ask("a.b.c.d.e.internal", TYPE_AAAA), Answer::NxDomain);
        // The other org sees its own machine only.
        let other: Ipv6Addr = "fdaa:0:2:0:1:0:1:2".parse().unwrap();
        assert_eq!(
            ips(answer(
                "web.internal",
                TYPE_AAAA,
                other,
                "local",
                &e,
                &|_| None
            )),
            ["fdaa:0:2:0:1:0:1:2"]
        );
        // An asker outside 6PN gets nothing.
        let outside: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            answer("web.internal", TYPE_AAAA, outside, "local", &e, &|_| None),
            Answer::Refused
        );
    }
}
