//! A [`Plan`] carried out: the release recorded, the release command run, each process group's
//! machines created, updated or replaced as the plan says, every lease kept fresh while held and
//! released whatever happens; Ctrl-C stops it (`interrupted`), a failed step rolls the release
//! back (or marks the app's first `failed`), and the release's outcome is recorded.

use super::RELEASE_VERSION_KEY;
use super::leases::{Held, keep_leases, release_held};
use super::plan::{Action, Plan, WAIT_TIMEOUT, group_of};
use super::report::{self, Step};
use super::steps::Deploy;
use crate::machine::Scope;
use aloft_types::api::{CreateReleaseRequest, ReleaseStatus, UpdateReleaseRequest};
use aloft_types::{Machine, MachineConfig};
use anyhow::{Context, Result, anyhow};
use std::time::Duration;

/// A lease's length when the command does not say (the reference's `--lease-timeout`).
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(13);

/// A deploy that went through: its release, and what happened to each machine.
pub(super) struct Deployed {
    pub version: u32,
    pub steps: Vec<Step>,
}

/// Carries out `plan` (deploying `image`, from the config file `config`) in `scope`, each lease
/// `lease_ttl` long; prints its progress unless `quiet`.
pub(super) async fn execute(
    scope: &Scope,
    plan: &Plan,
    (image, config): (&str, Option<String>),
    lease_ttl: Duration,
    quiet: bool,
) -> Result<Deployed> {
    let app = &scope.app;
    let release = scope
        .client
        .create_release(
            app,
            &CreateReleaseRequest {
                image: image.to_string(),
                strategy: plan.strategy.used.as_str().into(),
                description: None,
                config,
            },
        )
        .await
        .context("recording the release")?;
    let version = release.version;
    report::release(quiet, app, version);
    let held: Held = Held::default();
    // Leases expire on whole seconds: below 2 s a refresh could come after the expiry.
    let ttl = lease_ttl.max(Duration::from_secs(2));
    let mut deploy = Deploy::new(scope, held.clone(), plan.wait, ttl, quiet);
    let result = tokio::select! {
        r = apply(&mut deploy, plan, version) => r.map_err(Some),
        _ = tokio::signal::ctrl_c() => Err(None),
        () = keep_leases(scope, &held, ttl) => unreachable!("keep_leases never ends"),
    };
    // Whatever happened, no lease stays behind.
    release_held(scope, &held).await;
    let (status, reason, outcome) = match result {
        Ok(()) => (ReleaseStatus::Complete, None, Ok(())),
        Err(None) => (
            ReleaseStatus::Interrupted,
            Some("interrupted (Ctrl-C)".to_string()),
            Err(anyhow!(
                "the deploy of release v{version} of {app} was interrupted: machines already changed run it, the others the previous release (no lease is left held; deploy again to finish)"
            )),
        ),
        Err(Some(e)) if plan.first => (
            ReleaseStatus::Failed,
            Some(format!("{e:#}")),
            Err(e.context(format!(
                "release v{version} of {app} failed; it is the app's first, so there is nothing to roll back to (its machines stay, for `aloft logs -a {app}`)"
            ))),
        ),
        Err(Some(e)) => {
            let reason = format!("{e:#}");
            report::rolling_back(quiet, version, &reason);
            let outcome = roll_back(&mut deploy, &held, ttl, version, e).await;
            (ReleaseStatus::RolledBack, Some(reason), Err(outcome))
        }
    };
    if let Err(e) = scope
        .client
        .finish_release(app, version, &UpdateReleaseRequest { status, reason })
        .await
    {
        eprintln!(
            "Warning: recording that release v{version} is {}: {e}",
            status.as_str()
        );
    }
    outcome?;
    Ok(Deployed {
        version,
        steps: deploy.steps,
    })
}

/// The plan's steps, in order: the release command, then each group's machines.
async fn apply(deploy: &mut Deploy<'_>, plan: &Plan, version: u32) -> Result<()> {
    let versioned = |config: &MachineConfig| {
        let mut config = config.clone();
        config
            .metadata
            .insert(RELEASE_VERSION_KEY.into(), version.to_string());
        config
    };
    if let Some(rc) = &plan.release_command {
        deploy
            .release_command(
                &rc.command,
                versioned(&rc.config),
                rc.region.clone(),
                rc.timeout,
            )
            .await?;
    }
    for g in &plan.groups {
        let (group, config) = (g.group.as_str(), versioned(&g.config));
        match &g.action {
            Action::Create { region } => deploy.create(group, config, region.clone()).await?,
            Action::BlueGreen { blue } => deploy.blue_green(group, &config, blue).await?,
            Action::Update { canary, batches } => {
                if let Some(region) = canary {
                    deploy.canary(group, &config, region).await?;
                }
                deploy.update(group, &config, batches).await?;
            }
        }
    }
    deploy.retire_blue().await;
    Ok(())
}

/// Rolls the release back after `failure` (Ctrl-C stops the roll-back too; its leases are
/// released): the error to report.
async fn roll_back(
    deploy: &mut Deploy<'_>,
    held: &Held,
    ttl: Duration,
    version: u32,
    failure: anyhow::Error,
) -> anyhow::Error {
    let scope = deploy.scope;
    let app = &scope.app;
    let rolled_back = tokio::select! {
        r = deploy.roll_back() => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted (Ctrl-C)")),
        () = keep_leases(scope, held, ttl) => unreachable!("keep_leases never ends"),
    };
    release_held(scope, held).await;
    match rolled_back {
        Ok(()) => failure.context(format!(
            "release v{version} of {app} failed and was rolled back: its machines run the previous release again"
        )),
        Err(problem) => failure.context(format!(
            "release v{version} of {app} failed, and rolling it back did not finish ({problem:#}): see `aloft status -a {app}`"
        )),
    }
}

/// Updates `machines` one at a time to `config_for(machine)`, each leased and then started and
/// passing its checks before the next (for commands that change part of every machine's config,
/// `aloft scale vm|memory`); Ctrl-C stops it with no lease left held. How many were updated.
pub(crate) async fn update_each(
    scope: &Scope,
    machines: &[&Machine],
    config_for: impl Fn(&Machine) -> MachineConfig,
    quiet: bool,
) -> Result<usize> {
    let held: Held = Held::default();
    let mut deploy = Deploy::new(scope, held.clone(), WAIT_TIMEOUT, LEASE_TTL, quiet);
    let work = async {
        for m in machines {
            deploy
                .update(&group_of(m), &config_for(m), &[vec![(*m).clone()]])
                .await?;
        }
        Ok::<(), anyhow::Error>(())
    };
    let result = tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted (Ctrl-C): machines already changed keep the change")),
        () = keep_leases(scope, &held, LEASE_TTL) => unreachable!("keep_leases never ends"),
    };
    release_held(scope, &held).await;
    result?;
    Ok(deploy.steps.len())
}
