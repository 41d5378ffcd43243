//! `aloft scale count N` and `aloft scale count web=2 worker=1`: the number of machines of each
//! process group in each region, as the reference's `fly scale count`. New machines copy the
//! config of the group's newest machine (its release, image and size); extra ones are retired
//! newest first (cordoned, stopped, destroyed).

use super::app_machines;
use crate::Ctx;
use crate::deploy::group_of;
use crate::machine::{AppArg, Scope, WaitFailure};
use crate::output::print_json;
use aloft_types::api::CreateMachineRequest;
use aloft_types::{Machine, MachineState};
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::Duration;

/// How long a new machine has to start.
const START_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Args)]
pub struct CountArgs {
    /// Machines per region: `N` for the app's process group (or --process-group's), or
    /// `GROUP=N` for each group to change, e.g. `web=2 worker=1`.
    #[arg(required = true, value_name = "N|GROUP=N")]
    counts: Vec<String>,
    /// The regions, comma-separated (default: those where the group has machines).
    #[arg(short = 'r', long, value_delimiter = ',')]
    region: Vec<String>,
    /// The process group of a bare `N` (default: the app's only one).
    #[arg(long = "process-group", value_name = "GROUP")]
    process_group: Option<String>,
    /// Do not ask (aloft does not ask; accepted as flyctl has it).
    #[arg(long, short = 'y')]
    yes: bool,
    #[command(flatten)]
    app: AppArg,
}

/// One machine scaling made or removed.
#[derive(Debug, Serialize)]
struct Change {
    id: String,
    region: String,
    group: String,
    /// `created` or `destroyed`.
    action: &'static str,
}

/// What the arguments ask for: a count for one group (`None`: the app's only group), or a count
/// for each named group.
#[derive(Debug, PartialEq, Eq)]
enum Counts {
    One(Option<String>, usize),
    Groups(BTreeMap<String, usize>),
}

fn parse_counts(counts: &[String], process_group: Option<&str>) -> Result<Counts> {
    let number = |s: &str, what: &str| -> Result<usize> {
        s.trim().parse::<usize>().map_err(|_| {
            anyhow!(
                "`{what}` is not a count: write N (e.g. `2`) or GROUP=N (e.g. `web=2 worker=1`)"
            )
        })
    };
    if let [only] = counts
        && !only.contains('=')
    {
        return Ok(Counts::One(
            process_group.map(str::to_string),
            number(only, only)?,
        ));
    }
    if process_group.is_some() {
        bail!(
            "--process-group goes with a bare N; with GROUP=N pairs the groups are named already"
        );
    }
    let mut groups = BTreeMap::new();
    for item in counts {
        let (group, n) = item.split_once('=').ok_or_else(|| {
            anyhow!("`{item}` is not GROUP=N: give one bare N, or a GROUP=N for every group (e.g. `web=2 worker=1`)")
        })?;
        if group.is_empty() {
            bail!("`{item}` names no group: write it like web=2");
        }
        if groups.insert(group.to_string(), number(n, item)?).is_some() {
            bail!("process group `{group}` is given twice");
        }
    }
    Ok(Counts::Groups(groups))
}

pub(super) async fn count(args: CountArgs, ctx: &Ctx) -> Result<ExitCode> {
    let app = ctx.app_of(&args.app)?;
    let wanted = parse_counts(&args.counts, args.process_group.as_deref())?;
    let (scope, machines) = app_machines(ctx, &app).await?;
    let groups: BTreeSet<String> = machines.iter().map(group_of).collect();
    let wanted: BTreeMap<String, usize> = match wanted {
        Counts::One(Some(g), n) => [(g, n)].into(),
        Counts::One(None, n) => match groups.len() {
            1 => [(groups.first().cloned().expect("one group"), n)].into(),
            0 => bail!("{app} has no machines to copy: deploy it first (`aloft deploy -a {app}`)"),
            _ => bail!(
                "{app} has several process groups ({}): name one with --process-group, or give GROUP=N for each",
                groups.into_iter().collect::<Vec<_>>().join(", ")
            ),
        },
        Counts::Groups(g) => g,
    };
    let mut changes = Vec::new();
    for (group, n) in &wanted {
        scale_group(
            ctx,
            &scope,
            &machines,
            group,
            *n,
            &args.region,
            &mut changes,
        )
        .await?;
    }
    if ctx.json {
        print_json(&serde_json::json!({"app": app, "counts": wanted, "changes": changes}))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Brings `group` to `count` machines in each region (`regions`, else those it runs in).
async fn scale_group(
    ctx: &Ctx,
    scope: &Scope,
    machines: &[Machine],
    group: &str,
    count: usize,
    regions: &[String],
    changes: &mut Vec<Change>,
) -> Result<()> {
    let app = scope.app.as_str();
    let mut mine: Vec<&Machine> = machines.iter().filter(|m| group_of(m) == group).collect();
    // Oldest first (by their first event, in milliseconds): the newest is the template, and the
    // first to go.
    let born = |m: &Machine| {
        m.events
            .iter()
            .map(|e| e.timestamp)
            .min()
            .unwrap_or(i64::MAX)
    };
    mine.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then(born(a).cmp(&born(b)))
            .then(a.id.cmp(&b.id))
    });
    let template = mine.last().ok_or_else(|| {
        anyhow!(
            "process group `{group}` of {app} has no machines to copy: deploy it first (`aloft deploy -a {app}`)"
        )
    })?;
    let regions: Vec<String> = if regions.is_empty() {
        mine.iter()
            .map(|m| m.region.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    } else {
        regions.to_vec()
    };
    let mut by_region: BTreeMap<&str, Vec<&Machine>> = BTreeMap::new();
    for m in &mine {
        by_region.entry(m.region.as_str()).or_default().push(m);
    }
    for region in &regions {
        let have = by_region.get(region.as_str()).cloned().unwrap_or_default();
        if !ctx.json {
            println!(
                "{group} in {region}: {} machine{} -> {count}",
                have.len(),
                if have.len() == 1 { "" } else { "s" },
            );
        }
        let mut volumes_taken = Vec::new();
        for _ in have.len()..count {
            let id = create_copy(ctx, scope, template, region, &mut volumes_taken)
                .await
                .with_context(|| format!("creating a machine of `{group}` in {region}"))?;
            if !ctx.json {
                println!("  created machine {id} (started)");
            }
            changes.push(Change {
                id,
                region: region.clone(),
                group: group.to_string(),
                action: "created",
            });
        }
        for m in have.iter().rev().take(have.len().saturating_sub(count)) {
            let id = m.id.to_string();
            scope
                .retire(&id)
                .await
                .with_context(|| format!("retiring machine {id}"))?;
            if !ctx.json {
                println!("  destroyed machine {id}");
            }
            changes.push(Change {
                id,
                region: region.clone(),
                group: group.to_string(),
                action: "destroyed",
            });
        }
    }
    Ok(())
}

/// A new started machine in `region` with `template`'s config (and a volume of its own when the
/// template mounts one); its id.
async fn create_copy(
    ctx: &Ctx,
    scope: &Scope,
    template: &Machine,
    region: &str,
    volumes_taken: &mut Vec<String>,
) -> Result<String> {
    let app = scope.app.as_str();
    let mut config = template.config.clone();
    // Each machine mounts a volume of its own: of the template's volume's name.
    if let Some(mount) = config.mounts.first_mut() {
        let (name, size) = match (&mount.name, mount.size_gb) {
            (Some(n), Some(size)) => (n.clone(), size),
            // A machine given its volume by hand (`machine run --volume`): as that one.
            _ => {
                let v = scope.client.volume(app, &mount.volume).await?;
                (v.name, v.size_gb)
            }
        };
        let v = crate::volumes::volume_for(
            &scope.client,
            app,
            &name,
            region,
            size,
            volumes_taken,
            ctx.json,
        )
        .await?;
        volumes_taken.push(v.id.clone());
        mount.volume = v.id;
    }
    let req = CreateMachineRequest {
        config,
        name: None,
        region: Some(region.to_string()),
        skip_launch: false,
        lease_ttl: None,
        skip_service_registration: false,
    };
    let created = scope.client.create_machine(app, &req).await?;
    let id = created.id.to_string();
    match scope
        .await_state(&id, MachineState::Started, START_TIMEOUT)
        .await
    {
        Ok(_) => Ok(id),
        Err(WaitFailure::NotReached(m)) => bail!(
            "machine {id} is {}, not started: see `aloft logs -a {app} -m {id}`",
            m.state.as_str()
        ),
        Err(WaitFailure::Error(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], group: Option<&str>) -> Result<Counts> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse_counts(&args, group)
    }

    #[test]
    fn counts_are_a_bare_number_or_a_pair_per_group() {
        assert_eq!(parse(&["3"], None).unwrap(), Counts::One(None, 3));
        assert_eq!(
            parse(&["2"], Some("web")).unwrap(),
            Counts::One(Some("web".into()), 2)
        );
        assert_eq!(
            parse(&["web=2", "worker=0"], None).unwrap(),
            Counts::Groups([("web".into(), 2), ("worker".into(), 0)].into())
        );
        for (bad, why) in [
            (&["x"][..], "not a count"),
            (&["-1"][..], "not a count"),
            (&["web=two"][..], "not a count"),
            (&["web=2", "3"][..], "is not GROUP=N"),
            (&["=2"][..], "names no group"),
            (&["web=1", "web=2"][..], "given twice"),
        ] {
            let e = parse(bad, None).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        let e = parse(&["web=2"], Some("web")).unwrap_err().to_string();
        assert!(e.contains("--process-group goes with a bare N"), "{e}");
    }
}
