//! `aloft machine run`: a machine created from an image and the flags, started, and the pull of
//! its image shown while it launches (also for `aloft deploy`'s new machines).

use super::START_WAIT;
use super::args::RunArgs;
use super::flags::build_config;
use super::scope::{Scope, WaitFailure};
use super::show::{print_events_to_stderr, summary};
use crate::Ctx;
use crate::output::{megabytes, print_fields, print_json};
use aloft_types::api::WaitQuery;
use aloft_types::machine::{ImagePull, ImagePullPhase, ImageRef};
use aloft_types::{Machine, MachineState};
use anyhow::{Result, bail};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How often `machine run` looks at a launching machine to show the pull of its image.
const PULL_POLL: Duration = Duration::from_millis(250);

pub(super) async fn run_machine(ctx: &Ctx, args: RunArgs) -> Result<ExitCode> {
    let scope = Scope::new(ctx, &args.app)?;
    let config = build_config(&args)?;
    let req = aloft_types::api::CreateMachineRequest {
        config,
        name: args.name.clone(),
        region: args.region.clone(),
        skip_launch: args.skip_launch,
        lease_ttl: None,
        skip_service_registration: false,
    };
    let machine = match scope.client.create_machine(&scope.app, &req).await {
        Ok(m) => m,
        Err(e) => return Err(scope.explain(e, None).await),
    };
    let id = machine.id.to_string();
    let machine = if args.detach || args.skip_launch {
        machine
    } else {
        eprintln!("Waiting for machine {id} to start...");
        let launched = follow_pull(&scope, &id).await?;
        let waited = match launched.state {
            MachineState::Started => Ok(launched),
            // A launch that failed (its image could not be pulled, say) will not start.
            MachineState::Failed | MachineState::Destroyed => {
                Err(WaitFailure::NotReached(Box::new(launched)))
            }
            _ => {
                scope
                    .await_state(&id, MachineState::Started, START_WAIT)
                    .await
            }
        };
        match waited {
            Ok(m) => m,
            Err(WaitFailure::Error(e)) => return Err(e),
            Err(WaitFailure::NotReached(m)) => {
                print_events_to_stderr(&m.events);
                bail!(
                    "machine {id} did not start: it is {} (its last events are above); see `aloft machine status {id} -a {}`, and `aloft machine destroy {id} -a {}` to remove it",
                    m.state,
                    scope.app,
                    scope.app
                );
            }
        }
    };
    if ctx.json {
        print_json(&machine)?;
        return Ok(ExitCode::SUCCESS);
    }
    let app = &scope.app;
    let (verb, next) = match machine.state {
        MachineState::Started => (
            "is started",
            format!("See it with `aloft machine status {id} -a {app}`."),
        ),
        MachineState::Created if args.skip_launch => (
            "is created (not started)",
            format!("Start it with `aloft machine start {id} -a {app}`."),
        ),
        _ => (
            "is launching",
            format!("`aloft machine wait {id} -a {app}` waits until it is started."),
        ),
    };
    println!("Machine {id} {verb} in region {}.", machine.region);
    print_fields(&summary(&machine));
    println!("{next}");
    Ok(ExitCode::SUCCESS)
}

/// While the machine launches (`created`, `starting`), looks at it every [`PULL_POLL`] and shows
/// the pull of its image on stderr. Returns the machine once it has left those states, or when
/// nothing has changed for [`START_WAIT`].
pub(crate) async fn follow_pull(scope: &Scope, id: &str) -> Result<Machine> {
    let mut line = PullLine::new(std::io::stderr().is_terminal());
    let mut last: Option<ImagePull> = None;
    let mut changed = Instant::now();
    loop {
        let m = match scope.client.get_machine(&scope.app, id).await {
            Ok(m) => m,
            Err(e) => return Err(scope.explain(e, Some(id)).await),
        };
        if m.image_pull != last {
            changed = Instant::now();
            last = m.image_pull.clone();
        }
        if let Some(pull) = &m.image_pull {
            line.show(&m.image_ref, pull);
        }
        let launching = matches!(m.state, MachineState::Created | MachineState::Starting);
        if !launching || changed.elapsed() >= START_WAIT {
            line.finish(&m);
            return Ok(m);
        }
        let pulling = m
            .image_pull
            .as_ref()
            .is_some_and(|p| p.phase != ImagePullPhase::Done);
        if pulling {
            tokio::time::sleep(PULL_POLL).await;
        } else {
            // Nothing to show until it runs: a long poll answers the moment it does (a sleep
            // here would add up to a whole poll to every `machine run`).
            let query = WaitQuery {
                state: Some(MachineState::Started.as_str().to_string()),
                timeout: Some("1".into()),
                ..WaitQuery::default()
            };
            let asked = Instant::now();
            let answer = scope
                .client
                .wait(&scope.app, id, &query, Duration::from_secs(1))
                .await;
            if answer.is_err() && asked.elapsed() < PULL_POLL {
                tokio::time::sleep(PULL_POLL - asked.elapsed()).await;
            }
        }
    }
}

/// The pull progress line: redrawn in place on a terminal; elsewhere one line per phase or layer
/// change, so logs stay short.
struct PullLine {
    tty: bool,
    /// What the last line was about (`None`: nothing shown yet).
    last: Option<(ImagePullPhase, u32)>,
}

impl PullLine {
    fn new(tty: bool) -> Self {
        Self { tty, last: None }
    }

    fn show(&mut self, image: &ImageRef, p: &ImagePull) {
        let text = pull_text(image, p);
        if self.tty {
            eprint!("\r\x1b[2K{text}");
            let _ = std::io::stderr().flush();
        } else if self.last != Some((p.phase, p.layers_done)) {
            eprintln!("{text}");
        }
        self.last = Some((p.phase, p.layers_done));
    }

    /// Ends what was shown: with the image the machine got, when the pull was seen to start but
    /// not to end (it may end between two looks).
    fn finish(&mut self, m: &Machine) {
        let Some((phase, _)) = self.last.take() else {
            return;
        };
        let pulled = !m.image_ref.digest.is_empty() && m.state != MachineState::Failed;
        if phase != ImagePullPhase::Done && pulled {
            let text = format!(
                "Pulled {} ({})",
                image_name(&m.image_ref),
                m.image_ref.digest
            );
            if self.tty {
                eprintln!("\r\x1b[2K{text}");
            } else {
                eprintln!("{text}");
            }
        } else if self.tty {
            eprintln!();
        }
    }
}

/// `registry/repository:tag`.
fn image_name(image: &ImageRef) -> String {
    let mut name = image.repository.clone();
    if !image.registry.is_empty() {
        name = format!("{}/{name}", image.registry);
    }
    if !image.tag.is_empty() {
        name = format!("{name}:{}", image.tag);
    }
    name
}

/// `Pulling 127.0.0.1:5000/personal/hello:latest: 2/3 layers, 12.1/40.3 MB`.
fn pull_text(image: &ImageRef, p: &ImagePull) -> String {
    let name = image_name(image);
    let layers = format!("{}/{} layers", p.layers_done, p.layers_total);
    match p.phase {
        ImagePullPhase::Resolving => format!("Pulling {name}: resolving"),
        ImagePullPhase::Fetching => format!(
            "Pulling {name}: {layers}, {}/{} MB",
            megabytes(p.bytes_fetched),
            megabytes(p.bytes_total)
        ),
        ImagePullPhase::Assembling => {
            format!("Pulling {name}: {layers}, assembling the root filesystem")
        }
        ImagePullPhase::Done => format!(
            "Pulled {name}: {} layers ({} already on the host)",
            p.layers_total, p.layers_cached
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_lines() {
        let image = ImageRef {
            registry: "127.0.0.1:5000".into(),
            repository: "personal/hello".into(),
            tag: "latest".into(),
            digest: String::new(),
        };
        let p = ImagePull {
            phase: ImagePullPhase::Fetching,
            layers_total: 3,
            layers_done: 2,
            layers_cached: 1,
            bytes_total: 40_300_000,
            bytes_fetched: 12_100_000,
        };
        assert_eq!(
            pull_text(&image, &p),
            "Pulling 127.0.0.1:5000/personal/hello:latest: 2/3 layers, 12.1/40.3 MB"
        );
        let done = ImagePull {
            phase: ImagePullPhase::Done,
            ..p
        };
        assert_eq!(
            pull_text(&image, &done),
            "Pulled 127.0.0.1:5000/personal/hello:latest: 3 layers (1 already on the host)"
        );
    }
}
