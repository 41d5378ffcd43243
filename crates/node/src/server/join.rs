//! How `server host` joins its cluster: it trades the one-time join token in `join_token_file`
//! for its identity (`POST /internal/v1/hosts/{id}/join`), waiting up to a minute for the control
//! plane to answer, and keeps it (`crate::host_identity`).

use super::HostFile;
use aloft_types::join::HostJoined;
use anyhow::{Context, Result, anyhow, bail};
use std::time::{Duration, Instant};

/// The host's identity: as kept, or got now with its join token and kept.
pub(super) async fn host_identity(config: &HostFile, http: &reqwest::Client) -> Result<HostJoined> {
    crate::host_identity::kept_or(&config.data_dir, &config.id, join(config, http)).await
}

/// Trades the join token for the host's identity, through `http` (the control plane's client).
async fn join(config: &HostFile, http: &reqwest::Client) -> Result<HostJoined> {
    let Some(token_file) = &config.join_token_file else {
        bail!(
            "host `{}` has not joined its cluster: make a join token on the control plane \
             (`aloft hosts join-token --host {}`), write it to a file and set `join_token_file` \
             in the config",
            config.id,
            config.id
        );
    };
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("cannot read the join token from {}", token_file.display()))?;
    let token = token.trim();
    let url = format!(
        "{}/internal/v1/hosts/{}/join",
        config.control_plane.trim_end_matches('/'),
        config.id
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sent = http
            .post(&url)
            .timeout(Duration::from_secs(10))
            .bearer_auth(token)
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => {
                return resp
                    .json::<HostJoined>()
                    .await
                    .with_context(|| format!("reading the answer of {url}"));
            }
            Ok(resp) => {
                let status = resp.status();
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                let why = body["error"].as_str().unwrap_or("no reason given");
                bail!(
                    "the control plane refused to join host `{}` ({status}): {why}",
                    config.id
                );
            }
            Err(e) if Instant::now() < deadline => {
                tracing::info!(
                    "waiting for the control plane at {}: {e}",
                    config.control_plane
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                return Err(anyhow!(e).context(format!(
                    "the control plane at {} did not answer; check `control_plane` in the config",
                    config.control_plane
                )));
            }
        }
    }
}
