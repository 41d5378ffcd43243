//! What a deploy tells its user: the strategy it uses and why, the release it records, a
//! roll-back, and at the end each machine it created or updated (a table of lines, or JSON with
//! `--json`), with a warning for each machine left in a process group the config dropped.

use super::plan::{Plan, StrategyChoice};
use crate::output::print_json;
use aloft_appconfig::schema::Strategy;
use aloft_types::MachineState;
use anyhow::Result;
use serde::Serialize;
use std::path::Path;

/// What happened to one machine.
#[derive(Debug, Serialize)]
pub(super) struct Step {
    pub id: String,
    pub group: String,
    pub region: String,
    /// `created` or `updated`.
    pub action: &'static str,
    pub state: MachineState,
}

/// Why the strategy asked for cannot be used, when it cannot.
pub(super) fn strategy(quiet: bool, app: &str, choice: &StrategyChoice) {
    if let (false, Some(reason)) = (quiet, choice.reason) {
        println!(
            "==> {app} {reason}, so {} (new machines beside the old) cannot be used: deploying with {}",
            choice.requested.as_str(),
            choice.used.as_str()
        );
    }
}

/// The deploy starts.
pub(super) fn deploying(quiet: bool, app: &str, image: &str, strategy: Strategy, path: &Path) {
    if !quiet {
        println!(
            "==> Deploying {app} ({image}, {}) from {}",
            strategy.as_str(),
            path.display()
        );
    }
}

/// The release is recorded.
pub(super) fn release(quiet: bool, app: &str, version: u32) {
    if !quiet {
        println!("==> Release v{version} of {app}");
    }
}

/// A step failed: the release is rolled back.
pub(super) fn rolling_back(quiet: bool, version: u32, reason: &str) {
    if !quiet {
        println!("==> Rolling back release v{version}: {reason}");
    }
}

/// The deploy is done: the machines left out (on stderr), then what changed.
pub(super) fn deployed(
    json: bool,
    app: &str,
    image: &str,
    version: u32,
    plan: &Plan,
    path: &Path,
    steps: &[Step],
) -> Result<()> {
    for stray in &plan.strays {
        eprintln!(
            "Warning: machine {} is in process group `{}`, which {} no longer has: destroy it with `aloft machine destroy {} -a {app}`",
            stray.id,
            stray.group,
            path.display(),
            stray.id
        );
    }
    if json {
        print_json(
            &serde_json::json!({"app": app, "release": version, "image": image, "machines": steps}),
        )?;
    } else {
        println!(
            "==> Deployed release v{version} of {app}: {} machine{} on {image}",
            steps.len(),
            if steps.len() == 1 { "" } else { "s" }
        );
    }
    Ok(())
}
