//! `[deploy] release_command`: run once per deploy, before any machine changes, in a temporary
//! machine that is destroyed after it; the deploy goes on only when it exits with code 0.

use super::steps::Deploy;
use crate::machine::WaitFailure;
use aloft_appconfig::machines::PROCESS_GROUP_KEY;
use aloft_appconfig::values::split_command;
use aloft_types::api::CreateMachineRequest;
use aloft_types::config::{InitConfig, Restart, RestartPolicy};
use aloft_types::{MachineConfig, MachineState};
use anyhow::{Context, Result, anyhow, bail};
use std::time::{Duration, Instant};

/// The process group of the release command's machine (the reference's).
const RELEASE_COMMAND_GROUP: &str = "fly_app_release_command";

impl Deploy<'_> {
    /// Runs `[deploy] release_command` once, before any machine changes, in a temporary machine
    /// with the release's config (no services or checks, never restarted) in `region`; anything
    /// but exit code 0 (or running past `timeout`) stops the deploy with the command's last output.
    pub(super) async fn release_command(
        &self,
        command: &str,
        mut config: MachineConfig,
        region: Option<String>,
        timeout: Duration,
    ) -> Result<()> {
        let cmd = split_command(command)
            .map_err(|e| anyhow!("[deploy] release_command `{command}`: {e}"))?;
        config.init = Some(InitConfig {
            cmd,
            ..config.init.unwrap_or_default()
        });
        config.services.clear();
        config.checks.clear();
        // Volumes stay with the app's machines (as the reference's release machines, none).
        config.mounts.clear();
        config.restart = Some(Restart {
            extra: Default::default(),
            policy: RestartPolicy::No,
            max_retries: None,
        });
        config
            .metadata
            .insert(PROCESS_GROUP_KEY.into(), RELEASE_COMMAND_GROUP.into());
        let (client, app) = (&self.scope.client, self.scope.app.as_str());
        let req = CreateMachineRequest {
            config,
            name: None,
            region,
            skip_launch: false,
            lease_ttl: None,
            skip_service_registration: true,
        };
        let created = client
            .create_machine(app, &req)
            .await
            .context("creating the release command's machine")?;
        let id = created.id.to_string();
        self.say(format!(
            "  running release command `{command}` in machine {id}"
        ));
        let launched = crate::machine::follow_pull(self.scope, &id).await?;
        let started = Instant::now();
        // A machine that could not start (`failed`) never stops: no wait for it.
        let ended = if launched.state == MachineState::Failed {
            Ok(launched)
        } else {
            self.scope
                .await_state(&id, MachineState::Stopped, timeout)
                .await
        };
        let exit_code = match &ended {
            Ok(m) => m
                .events
                .iter()
                .filter_map(|e| e.request.as_ref()?.exit_event.as_ref())
                .map(|x| x.exit_code)
                .next_back(),
            Err(_) => None,
        };
        let output = match client.logs(app, &id, None).await {
            Ok(lines) => {
                let tail: Vec<&str> = lines
                    .iter()
                    .rev()
                    .take(20)
                    .map(|l| l.message.as_str())
                    .collect();
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            }
            Err(_) => String::new(),
        };
        if let Err(e) = client.destroy_machine(app, &id, true).await {
            eprintln!("Warning: destroying the release command's machine {id}: {e}");
        }
        match (ended, exit_code) {
            (Ok(_), Some(0)) => {
                self.say(format!(
                    "    release command succeeded ({:.1}s)",
                    started.elapsed().as_secs_f64()
                ));
                Ok(())
            }
            (Ok(_), code) => bail!(
                "the release command `{command}` failed (exit code {}); no machine was changed. Its last output:\n{output}",
                code.map_or("unknown".to_string(), |c| c.to_string())
            ),
            (Err(WaitFailure::NotReached(_)), _) => bail!(
                "the release command `{command}` did not finish within {}s (`[deploy] release_command_timeout`); no machine was changed. Its last output:\n{output}",
                timeout.as_secs()
            ),
            (Err(WaitFailure::Error(e)), _) => Err(e.context("waiting for the release command")),
        }
    }
}
