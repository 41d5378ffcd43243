//! Registration with the control plane: `POST {cp}/internal/v1/hosts` with this host's
//! [`HostInfo`](aloft_types::api::HostInfo), at once and then every 10 s, for as long as the agent
//! runs.
//!
//! State: the task it spawns, and the address it advertises, kept by the agent
//! (`Agent::set_advertise`) for `GET /internal/v1/host`.

use crate::agent::Agent;
use std::time::Duration;

/// How often the agent registers again.
const INTERVAL: Duration = Duration::from_secs(10);
/// How long one registration may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Registers with the control plane now and every 10 s (POST {cp}/internal/v1/hosts, HostInfo
/// body) through `client` (which trusts the pinned cluster CA for `https://`), with this host's
/// `credential`.
pub fn spawn_heartbeat(
    agent: Agent,
    client: reqwest::Client,
    control_plane_url: String,
    credential: String,
    advertise_url: String,
) -> tokio::task::JoinHandle<()> {
    agent.set_advertise(&advertise_url);
    tokio::spawn(async move {
        let url = format!(
            "{}/internal/v1/hosts",
            control_plane_url.trim_end_matches('/')
        );
        let mut ticker = tokio::time::interval(INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if !agent.is_running() {
                return;
            }
            let info = agent.host_info(&advertise_url);
            let sent = client
                .post(&url)
                .timeout(REQUEST_TIMEOUT)
                .bearer_auth(&credential)
                .json(&info)
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status().is_success() => {
                    tracing::debug!(%url, "registered with the control plane");
                }
                Ok(resp) => {
                    let status = resp.status();
                    let body = resp.text().await.unwrap_or_default();
                    tracing::warn!(%url, %status, %body, "the control plane refused this host's registration; retrying in 10 s (check the host's credential: host-credential.json)");
                }
                Err(e) => {
                    tracing::warn!(%url, "cannot reach the control plane ({e}); retrying in 10 s");
                }
            }
        }
    })
}
