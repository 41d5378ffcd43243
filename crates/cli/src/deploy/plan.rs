//! What a deploy will do, worked out before it does anything: from the app's config, the
//! machines it has now, the image and the command line's choices, [`plan`] returns each process
//! group's machine config and what happens to its machines (created, updated batch by batch,
//! replaced beside), the strategy that applies and why it differs from the one asked for.
//! Nothing here does I/O: the plan is a value, which `execute` carries out.

use aloft_appconfig::AppConfig;
use aloft_appconfig::machines::PROCESS_GROUP_KEY;
use aloft_appconfig::schema::Strategy;
use aloft_appconfig::validate::DEFAULT_GROUP;
use aloft_types::{Machine, MachineConfig};
use anyhow::{Result, bail};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a machine has to start and pass its checks, unless `[deploy] wait_timeout` says.
pub(super) const WAIT_TIMEOUT: Duration = Duration::from_secs(300);

/// How long the release command may run, unless `[deploy] release_command_timeout` says.
const RELEASE_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// The reference's default `[deploy] max_unavailable`: a third of a group's machines at once.
const MAX_UNAVAILABLE: f64 = 0.33;

/// What the plan is made from.
pub(super) struct Inputs<'a> {
    pub config: &'a AppConfig,
    /// The config's file: errors name it, and `[[files]]` paths are relative to its directory.
    pub path: &'a Path,
    pub app: &'a str,
    pub image: &'a str,
    /// The app's machines now, as the API lists them.
    pub machines: &'a [Machine],
    /// The strategy asked for ([`strategy`] tells it from the command line and the config).
    pub strategy: Strategy,
    /// `--region`: where a group without machines gets its first (else `primary_region`).
    pub region: Option<String>,
    /// `--wait-timeout`.
    pub wait_timeout: Option<Duration>,
}

/// A deploy, step by step.
#[derive(Debug)]
pub(super) struct Plan {
    /// The strategy asked for and the one used.
    pub strategy: StrategyChoice,
    /// How long each machine has to start and pass its checks.
    pub wait: Duration,
    /// `[deploy] release_command`, run before any machine changes.
    pub release_command: Option<ReleaseCommand>,
    /// Every process group of the config, in the config's order.
    pub groups: Vec<GroupPlan>,
    /// Machines in process groups the config no longer has: left alone, and named at the end.
    pub strays: Vec<Stray>,
    /// The app has no machine yet: a failure has nothing to roll back to.
    pub first: bool,
}

/// The strategy asked for, the one used, and why they differ when they do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StrategyChoice {
    pub requested: Strategy,
    pub used: Strategy,
    /// Why `requested` cannot be used, as "<app> {reason}".
    pub reason: Option<&'static str>,
}

impl StrategyChoice {
    /// The strategy used when `requested` is asked for: a volume is mounted by one machine at a
    /// time, so no new machine can stand beside an old one (`canary`, `bluegreen`) in an app
    /// with `[[mounts]]`; rolling instead.
    pub(super) fn of(requested: Strategy, config: &AppConfig) -> Self {
        let (used, reason) = match requested {
            Strategy::Canary | Strategy::Bluegreen if !config.mounts.is_empty() => (
                Strategy::Rolling,
                Some(
                    "mounts volumes ([[mounts]]), and a volume is mounted by one machine at a time",
                ),
            ),
            s => (s, None),
        };
        Self {
            requested,
            used,
            reason,
        }
    }
}

/// The release command and what it runs with.
#[derive(Debug)]
pub(super) struct ReleaseCommand {
    pub command: String,
    pub timeout: Duration,
    /// The first process group's machine config (the command's machine starts from it).
    pub config: MachineConfig,
    /// Where its machine runs (`--region`, else `primary_region`).
    pub region: Option<String>,
}

/// One process group's part of the deploy.
#[derive(Debug)]
pub(super) struct GroupPlan {
    pub group: String,
    /// The config its machines get (without the release's version, which the release gives).
    /// With `[[mounts]]`, its mount names a volume but has none yet: each machine this deploy
    /// creates gets one of its own, each machine updated keeps the one it mounts.
    pub config: MachineConfig,
    pub action: Action,
}

/// What happens to a group's machines.
#[derive(Debug)]
pub(super) enum Action {
    /// The group has no machine: one is created, in `region` (none: the API picks).
    Create { region: Option<String> },
    /// The machines are updated in place, a batch at a time (each batch started and passing
    /// its checks before the next); with `canary`, a machine in that region is created with
    /// the new config first, must pass, and is destroyed.
    Update {
        canary: Option<String>,
        batches: Vec<Vec<Machine>>,
    },
    /// `bluegreen`: a new machine beside each of `blue` (same region); once every group's new
    /// machines pass, the `blue` ones are destroyed.
    BlueGreen { blue: Vec<Machine> },
}

/// A machine whose process group the config no longer has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stray {
    pub id: String,
    pub group: String,
}

/// Why a config cannot be deployed: found before a release is recorded or a machine touched.
#[derive(Debug)]
pub(super) enum PlanError {
    /// A group's machine config cannot be made from the config.
    Config { path: PathBuf, message: String },
    /// `bluegreen` has no check to tell that a group's new machines work.
    NoHealthCheck { path: PathBuf, group: String },
    /// The group now mounts a volume, and these machines of it have none (a machine cannot
    /// gain one).
    NeedVolume {
        path: PathBuf,
        app: String,
        group: String,
        machines: Vec<String>,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config { path, message } => write!(f, "{}: {message}", path.display()),
            Self::NoHealthCheck { path, group } => write!(
                f,
                "the bluegreen strategy needs a health check to know the new machines work, and process group `{group}` has none: add one under [checks] or [[http_service.checks]] in {}, or deploy with --strategy rolling",
                path.display()
            ),
            Self::NeedVolume {
                path,
                app,
                group,
                machines,
            } => {
                let one = machines.len() == 1;
                write!(
                    f,
                    "{} now mounts a volume in process group `{group}`, but its machine{} {} {} none, and a machine cannot gain one: destroy {} (aloft machine destroy ID -a {app} --force) and deploy again, which creates machines with their volumes",
                    path.display(),
                    if one { "" } else { "s" },
                    machines.join(", "),
                    if one { "has" } else { "have" },
                    if one { "it" } else { "them" },
                )
            }
        }
    }
}

impl std::error::Error for PlanError {}

/// The strategy asked for (`--strategy`, else `[deploy] strategy`, else rolling) and the one used.
pub(super) fn strategy(flag: Option<&str>, config: &AppConfig) -> Result<StrategyChoice> {
    let requested = match flag {
        None => config
            .deploy
            .as_ref()
            .and_then(|d| d.strategy)
            .unwrap_or(Strategy::Rolling),
        Some("rolling") => Strategy::Rolling,
        Some("immediate") => Strategy::Immediate,
        Some("canary") => Strategy::Canary,
        Some("bluegreen") => Strategy::Bluegreen,
        Some(other) => bail!("--strategy {other}: use rolling, immediate, canary or bluegreen"),
    };
    Ok(StrategyChoice::of(requested, config))
}

/// The deploy of `inputs.image` with `inputs.config` over `inputs.machines`. Fails, naming the
/// file and what to change, when a group's config cannot be applied.
pub(super) fn plan(inputs: &Inputs<'_>) -> Result<Plan, PlanError> {
    let config = inputs.config;
    let deploy = config.deploy.clone().unwrap_or_default();
    let choice = StrategyChoice::of(inputs.strategy, config);
    let strategy = choice.used;
    let max_unavailable = deploy.max_unavailable.unwrap_or(MAX_UNAVAILABLE);
    let region = inputs
        .region
        .clone()
        .or_else(|| config.primary_region.clone());
    let group_names = config.groups();
    let mut groups = Vec::new();
    for group in &group_names {
        let machine_config = group_config(inputs, group, strategy)?;
        let mine: Vec<Machine> = inputs
            .machines
            .iter()
            .filter(|m| group_of(m) == *group)
            .cloned()
            .collect();
        let action = if mine.is_empty() {
            Action::Create {
                region: region.clone(),
            }
        } else {
            group_action(strategy, max_unavailable, mine)
        };
        groups.push(GroupPlan {
            group: group.clone(),
            config: machine_config,
            action,
        });
    }
    let release_command = deploy
        .release_command
        .clone()
        .map(|command| ReleaseCommand {
            command,
            timeout: deploy
                .release_command_timeout
                .map_or(RELEASE_COMMAND_TIMEOUT, |t| t.0),
            config: groups[0].config.clone(),
            region: region.clone(),
        });
    let strays = inputs
        .machines
        .iter()
        .map(|m| Stray {
            id: m.id.to_string(),
            group: group_of(m),
        })
        .filter(|s| !group_names.contains(&s.group))
        .collect();
    Ok(Plan {
        strategy: choice,
        wait: inputs
            .wait_timeout
            .or_else(|| deploy.wait_timeout.map(|t| t.0))
            .unwrap_or(WAIT_TIMEOUT),
        release_command,
        groups,
        strays,
        first: inputs.machines.is_empty(),
    })
}

/// `group`'s machine config, checked against what `strategy` and its machines need.
fn group_config(
    inputs: &Inputs<'_>,
    group: &str,
    strategy: Strategy,
) -> Result<MachineConfig, PlanError> {
    let path = inputs.path;
    let dir = path.parent().unwrap_or(Path::new("."));
    let config = inputs
        .config
        .machine_config(group, inputs.image, dir)
        .map_err(|message| PlanError::Config {
            path: path.to_path_buf(),
            message,
        })?;
    if strategy == Strategy::Bluegreen && check_count(&config) == 0 {
        return Err(PlanError::NoHealthCheck {
            path: path.to_path_buf(),
            group: group.to_string(),
        });
    }
    // A machine cannot gain a volume (it lives on one host; the machine may be elsewhere).
    if !config.mounts.is_empty() {
        let bare: Vec<String> = inputs
            .machines
            .iter()
            .filter(|m| group_of(m) == group && m.config.mounts.is_empty())
            .map(|m| m.id.to_string())
            .collect();
        if !bare.is_empty() {
            return Err(PlanError::NeedVolume {
                path: path.to_path_buf(),
                app: inputs.app.to_string(),
                group: group.to_string(),
                machines: bare,
            });
        }
    }
    Ok(config)
}

/// What `strategy` does with a group's existing machines.
fn group_action(strategy: Strategy, max_unavailable: f64, mine: Vec<Machine>) -> Action {
    let batch = match strategy {
        Strategy::Immediate => mine.len(),
        _ => batch_size(max_unavailable, mine.len()),
    };
    match strategy {
        Strategy::Bluegreen => Action::BlueGreen { blue: mine },
        Strategy::Canary | Strategy::Rolling | Strategy::Immediate => Action::Update {
            canary: (strategy == Strategy::Canary).then(|| mine[0].region.clone()),
            batches: mine.chunks(batch.max(1)).map(<[Machine]>::to_vec).collect(),
        },
    }
}

/// How many of a group's `total` machines a rolling deploy changes at once: `max_unavailable`
/// (a fraction below 1, else a count), at least one, and never all of a group of two or more.
pub(super) fn batch_size(max_unavailable: f64, total: usize) -> usize {
    let k = if max_unavailable < 1.0 {
        (max_unavailable * total as f64).ceil() as usize
    } else {
        max_unavailable as usize
    };
    k.clamp(1, total.saturating_sub(1).max(1))
}

/// How many health checks a machine config has (its own and its services').
pub(super) fn check_count(config: &MachineConfig) -> usize {
    config.checks.len()
        + config
            .services
            .iter()
            .map(|s| s.checks.len())
            .sum::<usize>()
}

/// A machine's process group: its `fly_process_group` metadata, else `app`.
pub(crate) fn group_of(m: &Machine) -> String {
    m.config
        .metadata
        .get(PROCESS_GROUP_KEY)
        .cloned()
        .unwrap_or_else(|| DEFAULT_GROUP.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aloft_types::config::Mount;

    const IMAGE: &str = "registry.local/acme/web:v2";

    fn config(toml: &str) -> AppConfig {
        aloft_appconfig::parse(Path::new("/src/fly.toml"), toml)
            .expect("a valid config")
            .config
    }

    /// A machine of `group` in `region`, mounting `volume` when given.
    fn machine(id: &str, group: &str, region: &str, volume: Option<&str>) -> Machine {
        let mut config = MachineConfig {
            image: "registry.local/acme/web:v1".into(),
            ..MachineConfig::default()
        };
        config
            .metadata
            .insert(PROCESS_GROUP_KEY.into(), group.into());
        config.mounts = volume
            .map(|v| Mount {
                extra: Default::default(),
                volume: v.into(),
                path: "/data".into(),
                name: Some("data".into()),
                size_gb: Some(1),
                encrypted: None,
            })
            .into_iter()
            .collect();
        serde_json::from_value(serde_json::json!({
            "id": id,
            "name": format!("m-{id}"),
            "state": "started",
            "region": region,
            "instance_id": "01JDK2Z6W5S0V5Q8X4C7B9N3M2",
            "private_ip": "fdaa::2",
            "config": config,
            "image_ref": {"registry": "", "repository": "", "tag": "", "digest": ""},
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
            "host_status": "ok",
        }))
        .expect("a machine")
    }

    /// `n` machines of `group` in `region`, ids `<prefix>0`, `<prefix>1`, …
    fn machines(prefix: &str, group: &str, region: &str, n: usize) -> Vec<Machine> {
        (0..n)
            .map(|i| machine(&format!("{prefix}{i}"), group, region, None))
            .collect()
    }

    fn plan_with(
        config: &AppConfig,
        machines: &[Machine],
        strategy: Option<&str>,
        region: Option<&str>,
    ) -> Result<Plan, PlanError> {
        let choice = super::strategy(strategy, config).expect("a known strategy");
        plan(&Inputs {
            config,
            path: Path::new("/src/fly.toml"),
            app: "web",
            image: IMAGE,
            machines,
            strategy: choice.requested,
            region: region.map(str::to_string),
            wait_timeout: None,
        })
    }

    /// The ids of each batch of the group's update, and its canary's region.
    fn update_of(g: &GroupPlan) -> (Option<&str>, Vec<Vec<String>>) {
        match &g.action {
            Action::Update { canary, batches } => (
                canary.as_deref(),
                batches
                    .iter()
                    .map(|b| b.iter().map(|m| m.id.to_string()).collect())
                    .collect(),
            ),
            other => panic!("group {} is not updated in place: {other:?}", g.group),
        }
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn batches_take_a_share_or_a_count_and_never_a_whole_group() {
        assert_eq!(batch_size(0.33, 1), 1);
        assert_eq!(batch_size(0.33, 2), 1);
        assert_eq!(batch_size(0.33, 6), 2);
        assert_eq!(batch_size(0.5, 5), 3);
        assert_eq!(batch_size(2.0, 6), 2);
        assert_eq!(batch_size(10.0, 3), 2);
        assert_eq!(batch_size(0.99, 4), 3);
        assert_eq!(batch_size(0.0, 4), 1);
    }

    #[test]
    fn rolling_is_the_default_and_takes_a_third_of_a_group_at_a_time() {
        let c = config("app = \"web\"\nprimary_region = \"ams\"\n");
        let ms = machines("a", "app", "ams", 6);
        let p = plan_with(&c, &ms, None, None).unwrap();
        assert_eq!(p.strategy.requested, Strategy::Rolling);
        assert_eq!(p.strategy.used, Strategy::Rolling);
        assert_eq!(p.strategy.reason, None);
        assert_eq!(p.groups.len(), 1);
        let g = &p.groups[0];
        assert_eq!(g.group, "app");
        assert_eq!(g.config.image, IMAGE);
        assert_eq!(
            update_of(g),
            (
                None,
                vec![ids(&["a0", "a1"]), ids(&["a2", "a3"]), ids(&["a4", "a5"])]
            )
        );
        assert_eq!(p.wait, WAIT_TIMEOUT);
        assert!(p.release_command.is_none());
        assert!(p.strays.is_empty());
        assert!(!p.first);
    }

    #[test]
    fn the_default_share_never_takes_a_whole_group_of_two_or_more() {
        let c = config("app = \"web\"\n");
        let two = machines("b", "app", "ams", 2);
        let p = plan_with(&c, &two, Some("rolling"), None).unwrap();
        assert_eq!(update_of(&p.groups[0]).1, vec![ids(&["b0"]), ids(&["b1"])]);
        let one = machines("c", "app", "ams", 1);
        let p = plan_with(&c, &one, Some("rolling"), None).unwrap();
        assert_eq!(update_of(&p.groups[0]).1, vec![ids(&["c0"])]);
        // 0.33 of 4 is 1.32: two at a time.
        let four = machines("d", "app", "ams", 4);
        let p = plan_with(&c, &four, None, None).unwrap();
        assert_eq!(
            update_of(&p.groups[0]).1,
            vec![ids(&["d0", "d1"]), ids(&["d2", "d3"])]
        );
    }

    #[test]
    fn max_unavailable_as_a_fraction_is_a_share_rounded_up() {
        let c = config("app = \"web\"\n[deploy]\nmax_unavailable = 0.5\n");
        let ms = machines("a", "app", "ams", 5);
        let p = plan_with(&c, &ms, None, None).unwrap();
        assert_eq!(
            update_of(&p.groups[0]).1,
            vec![ids(&["a0", "a1", "a2"]), ids(&["a3", "a4"])]
        );
        // Even 0.99 leaves one machine of the group serving.
        let c = config("app = \"web\"\n[deploy]\nmax_unavailable = 0.99\n");
        let ms = machines("b", "app", "ams", 3);
        let p = plan_with(&c, &ms, None, None).unwrap();
        assert_eq!(
            update_of(&p.groups[0]).1,
            vec![ids(&["b0", "b1"]), ids(&["b2"])]
        );
    }

    #[test]
    fn max_unavailable_as_a_count_is_that_many_but_never_the_whole_group() {
        let c = config("app = \"web\"\n[deploy]\nmax_unavailable = 2\n");
        let ms = machines("a", "app", "ams", 5);
        let p = plan_with(&c, &ms, None, None).unwrap();
        assert_eq!(
            update_of(&p.groups[0]).1,
            vec![ids(&["a0", "a1"]), ids(&["a2", "a3"]), ids(&["a4"])]
        );
        let c = config("app = \"web\"\n[deploy]\nmax_unavailable = 10\n");
        let ms = machines("b", "app", "ams", 3);
        let p = plan_with(&c, &ms, None, None).unwrap();
        assert_eq!(
            update_of(&p.groups[0]).1,
            vec![ids(&["b0", "b1"]), ids(&["b2"])]
        );
    }

    #[test]
    fn immediate_updates_every_machine_of_a_group_at_once() {
        let c = config("app = \"web\"\n[deploy]\nstrategy = \"immediate\"\nmax_unavailable = 1\n");
        let ms = machines("a", "app", "ams", 4);
        let p = plan_with(&c, &ms, None, None).unwrap();
        assert_eq!(p.strategy.used, Strategy::Immediate);
        assert_eq!(
            update_of(&p.groups[0]),
            (None, vec![ids(&["a0", "a1", "a2", "a3"])])
        );
        // The flag wins over the config.
        let p = plan_with(&c, &ms, Some("rolling"), None).unwrap();
        assert_eq!(p.strategy.used, Strategy::Rolling);
        assert_eq!(update_of(&p.groups[0]).1.len(), 4);
    }

    #[test]
    fn canary_tries_one_machine_in_the_first_machines_region_then_rolls() {
        let c = config("app = \"web\"\nprimary_region = \"ams\"\n");
        let mut ms = vec![machine("a0", "app", "fra", None)];
        ms.extend(machines("b", "app", "ams", 2));
        let p = plan_with(&c, &ms, Some("canary"), None).unwrap();
        assert_eq!(p.strategy.used, Strategy::Canary);
        assert_eq!(
            update_of(&p.groups[0]),
            (Some("fra"), vec![ids(&["a0"]), ids(&["b0"]), ids(&["b1"])])
        );
    }

    #[test]
    fn bluegreen_replaces_every_machine_and_needs_a_check() {
        let with_check = "app = \"web\"\n[http_service]\ninternal_port = 8080\n[[http_service.checks]]\npath = \"/health\"\n";
        let c = config(with_check);
        let ms = machines("a", "app", "ams", 3);
        let p = plan_with(&c, &ms, Some("bluegreen"), None).unwrap();
        assert_eq!(p.strategy.used, Strategy::Bluegreen);
        let Action::BlueGreen { blue } = &p.groups[0].action else {
            panic!("not bluegreen: {:?}", p.groups[0].action);
        };
        let blue: Vec<String> = blue.iter().map(|m| m.id.to_string()).collect();
        assert_eq!(blue, ids(&["a0", "a1", "a2"]));
        // Without a check there is no telling the green machines work.
        let c = config("app = \"web\"\n");
        match plan_with(&c, &ms, Some("bluegreen"), None) {
            Err(PlanError::NoHealthCheck { group, .. }) => assert_eq!(group, "app"),
            other => panic!("expected NoHealthCheck, got {other:?}"),
        }
    }

    #[test]
    fn each_process_group_gets_its_own_config_and_steps() {
        let c = config(
            "app = \"web\"\nprimary_region = \"ams\"\n[processes]\nweb = \"serve\"\nworker = \"work\"\n",
        );
        let mut ms = machines("w", "web", "ams", 3);
        ms.push(machine("o0", "old", "ams", None));
        let p = plan_with(&c, &ms, None, None).unwrap();
        let names: Vec<&str> = p.groups.iter().map(|g| g.group.as_str()).collect();
        assert_eq!(names, ["web", "worker"]);
        let (web, worker) = (&p.groups[0], &p.groups[1]);
        assert_eq!(
            update_of(web).1,
            vec![ids(&["w0"]), ids(&["w1"]), ids(&["w2"])]
        );
        assert_eq!(web.config.metadata[PROCESS_GROUP_KEY], "web");
        assert_eq!(worker.config.metadata[PROCESS_GROUP_KEY], "worker");
        assert_eq!(web.config.init.as_ref().unwrap().cmd, ["serve"]);
        assert_eq!(worker.config.init.as_ref().unwrap().cmd, ["work"]);
        // A group without machines gets one in the primary region, or --region's.
        assert!(
            matches!(&worker.action, Action::Create { region } if region.as_deref() == Some("ams"))
        );
        let p = plan_with(&c, &ms, None, Some("fra")).unwrap();
        assert!(
            matches!(&p.groups[1].action, Action::Create { region } if region.as_deref() == Some("fra"))
        );
        // A machine of a group the config dropped is left alone, and named.
        assert_eq!(
            p.strays,
            [Stray {
                id: "o0".into(),
                group: "old".into()
            }]
        );
    }

    #[test]
    fn the_apps_first_deploy_creates_and_has_nothing_to_roll_back_to() {
        let c = config("app = \"web\"\n");
        let p = plan_with(&c, &[], Some("bluegreen"), None);
        // bluegreen still needs its check, machines or not.
        assert!(matches!(p, Err(PlanError::NoHealthCheck { .. })));
        let p = plan_with(&c, &[], None, None).unwrap();
        assert!(p.first);
        assert!(matches!(
            &p.groups[0].action,
            Action::Create { region: None }
        ));
    }

    #[test]
    fn volumes_turn_canary_and_bluegreen_into_rolling_and_say_why() {
        let c = config(
            "app = \"web\"\nprimary_region = \"ams\"\n[[mounts]]\nsource = \"data\"\ndestination = \"/data\"\n",
        );
        let ms: Vec<Machine> = (0..3)
            .map(|i| machine(&format!("a{i}"), "app", "ams", Some(&format!("vol_{i}"))))
            .collect();
        for asked in [Strategy::Canary, Strategy::Bluegreen] {
            let p = plan_with(&c, &ms, Some(asked.as_str()), None).unwrap();
            assert_eq!(p.strategy.requested, asked);
            assert_eq!(p.strategy.used, Strategy::Rolling);
            assert!(
                p.strategy.reason.unwrap().contains("mounts volumes"),
                "{:?}",
                p.strategy.reason
            );
            assert_eq!(
                update_of(&p.groups[0]),
                (None, vec![ids(&["a0"]), ids(&["a1"]), ids(&["a2"])])
            );
        }
        // Rolling and immediate need no fallback.
        for asked in ["rolling", "immediate"] {
            let p = plan_with(&c, &ms, Some(asked), None).unwrap();
            assert_eq!(p.strategy.reason, None);
            assert_eq!(p.strategy.used, p.strategy.requested);
        }
    }

    #[test]
    fn new_machines_get_a_volume_of_their_own() {
        let c = config(
            "app = \"web\"\nprimary_region = \"ams\"\n[[mounts]]\nsource = \"pgdata\"\ndestination = \"/var/lib/pg\"\ninitial_size = \"3gb\"\n",
        );
        let p = plan_with(&c, &[], None, None).unwrap();
        let g = &p.groups[0];
        assert!(matches!(&g.action, Action::Create { region } if region.as_deref() == Some("ams")));
        // The mount names the volume to make; none is picked yet.
        assert_eq!(
            g.config.mounts,
            [Mount {
                extra: Default::default(),
                volume: String::new(),
                path: "/var/lib/pg".into(),
                name: Some("pgdata".into()),
                size_gb: Some(3),
                encrypted: None,
            }]
        );
    }

    #[test]
    fn machines_that_would_have_to_gain_a_volume_are_named() {
        let c = config("app = \"web\"\n[[mounts]]\nsource = \"data\"\ndestination = \"/data\"\n");
        let mut ms = vec![machine("a0", "app", "ams", Some("vol_0"))];
        ms.extend(machines("b", "app", "ams", 2));
        let err = plan_with(&c, &ms, None, None).unwrap_err();
        let PlanError::NeedVolume {
            group, machines, ..
        } = &err
        else {
            panic!("expected NeedVolume, got {err:?}");
        };
        assert_eq!(group, "app");
        assert_eq!(machines, &ids(&["b0", "b1"]));
        assert_eq!(
            err.to_string(),
            "/src/fly.toml now mounts a volume in process group `app`, but its machines b0, b1 have none, and a machine cannot gain one: destroy them (aloft machine destroy ID -a web --force) and deploy again, which creates machines with their volumes"
        );
        let one = [machine("c0", "app", "ams", None)];
        let err = plan_with(&c, &one, None, None).unwrap_err();
        assert!(
            err.to_string()
                .contains("its machine c0 has none, and a machine cannot gain one: destroy it ("),
            "{err}"
        );
        // Only the groups that mount a volume are concerned.
        let c = config(
            "app = \"web\"\n[processes]\nweb = \"serve\"\ndb = \"pg\"\n[[mounts]]\nsource = \"data\"\ndestination = \"/data\"\nprocesses = [\"db\"]\n",
        );
        let ms = vec![
            machine("w0", "web", "ams", None),
            machine("d0", "db", "ams", Some("vol_0")),
        ];
        let p = plan_with(&c, &ms, None, None).unwrap();
        assert!(
            p.groups
                .iter()
                .find(|g| g.group == "web")
                .unwrap()
                .config
                .mounts
                .is_empty()
        );
        let ms = vec![machine("d1", "db", "ams", None)];
        assert!(matches!(
            plan_with(&c, &ms, None, None),
            Err(PlanError::NeedVolume { group, machines, .. }) if group == "db" && machines == ["d1"]
        ));
    }

    #[test]
    fn release_command_and_timeouts_come_from_the_config_and_flags() {
        let c = config(
            "app = \"web\"\nprimary_region = \"ams\"\n[processes]\nweb = \"serve\"\nworker = \"work\"\n[deploy]\nrelease_command = \"migrate --all\"\nrelease_command_timeout = \"2m\"\nwait_timeout = \"90s\"\n",
        );
        let p = plan_with(&c, &[], None, None).unwrap();
        let rc = p.release_command.as_ref().expect("a release command");
        assert_eq!(rc.command, "migrate --all");
        assert_eq!(rc.timeout, Duration::from_secs(120));
        assert_eq!(rc.region.as_deref(), Some("ams"));
        // The first group's config (`web` sorts first).
        assert_eq!(rc.config.metadata[PROCESS_GROUP_KEY], "web");
        assert_eq!(p.wait, Duration::from_secs(90));
        let p = plan(&Inputs {
            config: &c,
            path: Path::new("/src/fly.toml"),
            app: "web",
            image: IMAGE,
            machines: &[],
            strategy: Strategy::Rolling,
            region: None,
            wait_timeout: Some(Duration::from_secs(7)),
        })
        .unwrap();
        assert_eq!(p.wait, Duration::from_secs(7));
    }

    #[test]
    fn an_unknown_strategy_names_the_ones_there_are() {
        let c = config("app = \"web\"\n");
        let err = super::strategy(Some("yolo"), &c).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--strategy yolo: use rolling, immediate, canary or bluegreen"
        );
    }
}
