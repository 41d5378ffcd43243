//! Which machine gets a request: the order in which the proxy tries an app's machines.
//!
//! Only routable machines under their hard limit count. The closest region comes first (a
//! request leaves its region only when every machine there is unhealthy or at its hard limit,
//! as on the reference platform); within a region, machines under their soft limit come before
//! those at or over it, then the least loaded; ties are broken at random so equal machines share
//! the traffic.

use aloft_catalog::Load;
use aloft_catalog::Target;

/// How far a region is from the proxy's own: 0 for its own region; more for farther ones.
pub trait Distance {
    fn distance(&self, region: &str) -> u32;
}

/// `targets` in the order to try them; machines that cannot take a request now (not routable,
/// or at their hard limit) are left out.
pub fn rank<'a>(targets: &[&'a Target], load: &Load, distance: &dyn Distance) -> Vec<&'a Target> {
    // (distance, over the soft limit, load, random tie-break)
    type Key = (u32, bool, u32, u64);
    let mut keyed: Vec<(Key, &'a Target)> = targets
        .iter()
        .filter(|t| t.routable)
        .filter_map(|t| {
            // This proxy's own count, or the machine's host's word if that is more.
            let now = load.current(&t.machine_id).max(t.load);
            (now < t.limits.hard).then(|| {
                let key = (
                    distance.distance(&t.region),
                    now >= t.limits.soft,
                    now,
                    fastrand::u64(..),
                );
                (key, *t)
            })
        })
        .collect();
    keyed.sort_unstable_by_key(|(key, _)| *key);
    keyed.into_iter().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every other region is equally far.
    struct SameRegionFirst(String);

    impl Distance for SameRegionFirst {
        fn distance(&self, region: &str) -> u32 {
            u32::from(region != self.0)
        }
    }
    use aloft_catalog::Limits;
    use std::sync::Arc;

    fn target(id: &str, region: &str, soft: u32, hard: u32) -> Target {
        Target {
            machine_id: id.into(),
            app: "a".into(),
            region: region.into(),
            address: "fdaa::1".parse().unwrap(),
            port: 8080,
            network: None,
            limits: Limits {
                soft,
                hard,
                ..Limits::default()
            },
            state: aloft_types::MachineState::Started,
            routable: true,
            autostart: true,
            autostop: aloft_types::config::Autostop::Off,
            min_machines_running: 0,
            primary_region: region.into(),
            force_https: false,
            handlers: Default::default(),
            via: None,
            load: 0,
        }
    }

    fn ids(order: &[&Target]) -> Vec<String> {
        order.iter().map(|t| t.machine_id.clone()).collect()
    }

    fn refs(targets: &[Target]) -> Vec<&Target> {
        targets.iter().collect()
    }

    #[test]
    fn the_least_loaded_local_machine_under_its_soft_limit_comes_first() {
        let load = Arc::new(Load::default());
        let targets = vec![
            target("busy", "local", 2, 4),
            target("idle", "local", 2, 4),
            target("far", "ams", 2, 4),
        ];
        let _s = load.try_acquire("busy", 4).unwrap();
        let order = rank(&refs(&targets), &load, &SameRegionFirst("local".into()));
        assert_eq!(ids(&order), ["idle", "busy", "far"]);
    }

    #[test]
    fn over_the_soft_limit_comes_after_under_it_and_the_hard_limit_is_left_out() {
        let load = Arc::new(Load::default());
        let targets = vec![target("over", "local", 1, 3), target("full", "local", 1, 1)];
        let _a = load.try_acquire("over", 3).unwrap();
        let _b = load.try_acquire("full", 1).unwrap();
        let order = rank(&refs(&targets), &load, &SameRegionFirst("local".into()));
        assert_eq!(ids(&order), ["over"]);
        let mut cordoned = target("cordoned", "local", 5, 5);
        cordoned.routable = false;
        assert!(rank(&[&cordoned], &load, &SameRegionFirst("local".into())).is_empty());
    }

    #[test]
    fn another_region_only_when_every_local_machine_is_full() {
        let load = Arc::new(Load::default());
        let targets = vec![target("local", "local", 1, 2), target("far", "ams", 1, 2)];
        let _a = load.try_acquire("local", 2).unwrap();
        let order = rank(&refs(&targets), &load, &SameRegionFirst("local".into()));
        assert_eq!(ids(&order), ["local", "far"], "over soft: still local");
        let _b = load.try_acquire("local", 2).unwrap();
        let order = rank(&refs(&targets), &load, &SameRegionFirst("local".into()));
        assert_eq!(ids(&order), ["far"]);
    }

    #[test]
    fn equal_machines_share_the_traffic() {
        let load = Arc::new(Load::default());
        let targets = vec![target("a", "local", 5, 5), target("b", "local", 5, 5)];
        let firsts: Vec<String> = (0..200)
            .map(|_| {
                ids(&rank(
                    &refs(&targets),
                    &load,
                    &SameRegionFirst("local".into()),
                ))[0]
                    .clone()
            })
            .collect();
        assert!(firsts.iter().any(|f| f == "a") && firsts.iter().any(|f| f == "b"));
    }
}
