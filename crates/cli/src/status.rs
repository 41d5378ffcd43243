//! `aloft status -a APP`: the app, its org, the release it serves, the regions and hosts it runs
//! on, and its machines.

use crate::Ctx;
use crate::machine::{AppArg, machines_table, warn_partial};
use crate::output::{print_fields, print_json};
use aloft_types::api::{ListMachinesQuery, ReleaseStatus};
use anyhow::Result;
use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    app: AppArg,
    /// Show finished machines too (destroyed ones).
    #[arg(long)]
    all: bool,
}

pub async fn run(args: StatusArgs, ctx: &Ctx) -> Result<ExitCode> {
    let client = ctx.client()?;
    let name = ctx.app_of(&args.app)?;
    let app = crate::machine::get_app(&client, &name).await?;
    let list = client
        .list_machines(
            &name,
            &ListMachinesQuery {
                include_deleted: args.all.then_some(true),
                ..ListMachinesQuery::default()
            },
        )
        .await?;
    warn_partial(&list);
    let machines = list.machines;
    // The release the app serves (its newest complete one), and the newest if that one differs.
    let releases = client.releases(&name).await.unwrap_or_default();
    let serving = releases
        .iter()
        .find(|r| r.status == ReleaseStatus::Complete);
    if ctx.json {
        print_json(&serde_json::json!({ "app": app, "release": serving, "machines": machines }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("App");
    print_fields(&[
        ("name", app.name.clone()),
        ("org", app.organization.slug.clone()),
        ("status", app.status.clone()),
        ("network", app.network.clone()),
        ("created", app.created_at.clone()),
        (
            "release",
            match (serving, releases.first()) {
                (Some(r), Some(newest)) if newest.version != r.version => format!(
                    "v{} ({}); v{} is {}",
                    r.version,
                    r.image,
                    newest.version,
                    newest.status.as_str()
                ),
                (Some(r), _) => format!("v{} ({})", r.version, r.image),
                (None, Some(newest)) => {
                    format!(
                        "none complete; v{} is {}",
                        newest.version,
                        newest.status.as_str()
                    )
                }
                (None, None) => "none (not deployed with `aloft deploy`)".into(),
            },
        ),
    ]);
    println!();
    if !machines.is_empty() {
        // Where the app runs: each region's machines and the hosts they are on.
        let mut regions: std::collections::BTreeMap<
            &str,
            (usize, std::collections::BTreeSet<&str>),
        > = Default::default();
        for m in &machines {
            let entry = regions.entry(m.region.as_str()).or_default();
            entry.0 += 1;
            if !m.host_id.is_empty() {
                entry.1.insert(m.host_id.as_str());
            }
        }
        println!("Regions");
        for (region, (count, hosts)) in regions {
            let hosts: Vec<&str> = hosts.into_iter().collect();
            println!(
                "  {region:<8} {count} machine{} on {}",
                if count == 1 { "" } else { "s" },
                if hosts.is_empty() {
                    "-".to_string()
                } else {
                    hosts.join(", ")
                }
            );
        }
        println!();
    }
    println!("Machines");
    machines_table(&machines).print(&format!(
        "No machines yet; run one with `aloft machine run IMAGE -a {name}`."
    ));
    Ok(ExitCode::SUCCESS)
}
