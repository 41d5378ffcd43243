//! App secrets, volume keys and registry logins for the machines this host starts: asked of the
//! control plane (`GET {cp}/internal/v1/apps/{app}/secrets` and `GET {cp}/internal/v1/volumes/{id}`
//! and `GET {cp}/internal/v1/orgs/{org}/registry-credentials/{host}`, with this host's own
//! credential: the control plane answers only for its own machines) at every start
//! (logins: at every pull from a registry that is not aloft's own; never kept). Secrets are added to the machine's environment, never to its config
//! (the API never shows them); volume keys are kept in memory only (see the `volumes` module).
//!
//! Availability first: when the control plane does not answer, the last values this agent got for
//! the app are used; with none, the machine starts without secrets and its start event says so
//! (an app without secrets, the common case, must survive a control-plane outage).
//!
//! State: the agent's `Secrets`, the source it was opened with and the last values got per app
//! and per volume, each map behind a `parking_lot` mutex held only to read or write it.

use aloft_types::api::VolumeAccess;
use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Where an app's secret values and its volumes' keys come from.
#[async_trait]
pub trait SecretSource: Send + Sync {
    async fn secrets(&self, app: &str) -> Result<BTreeMap<String, String>, String>;

    /// A volume's size, host and key.
    async fn volume(&self, id: &str) -> Result<VolumeAccess, String>;

    /// The org's stored login (`aloft registry login`) for exactly the registry `host`, `None`
    /// when it stored none. Asked for each pull from a registry that is not aloft's own, never
    /// kept. Sources that know of no logins have none.
    async fn registry_login(&self, org: &str, host: &str) -> Result<Option<RegistryLogin>, String> {
        let _ = (org, host);
        Ok(None)
    }
}

/// A username and password for one registry host.
pub type RegistryLogin = aloft_types::api::RegistryLoginRequest;

/// The control plane's internal endpoints, asked with this host's credential.
pub struct ControlPlaneSecrets {
    url: String,
    credential: String,
    http: reqwest::Client,
}

impl ControlPlaneSecrets {
    /// Asks the control plane at `control_plane_url` through `http` (which trusts the pinned
    /// cluster CA for `https://`) with `credential` (the host's own, got when it joined).
    pub fn new(http: reqwest::Client, control_plane_url: &str, credential: &str) -> Self {
        Self {
            url: control_plane_url.trim_end_matches('/').to_string(),
            credential: credential.to_string(),
            http,
        }
    }
}

#[async_trait]
impl SecretSource for ControlPlaneSecrets {
    async fn secrets(&self, app: &str) -> Result<BTreeMap<String, String>, String> {
        let url = format!("{}/internal/v1/apps/{app}/secrets", self.url);
        self.get_if(&url, false)
            .await?
            .ok_or_else(|| format!("{url} answered nothing"))
    }

    async fn volume(&self, id: &str) -> Result<VolumeAccess, String> {
        let url = format!("{}/internal/v1/volumes/{id}", self.url);
        self.get_if(&url, false)
            .await?
            .ok_or_else(|| format!("{url} answered nothing"))
    }

    async fn registry_login(&self, org: &str, host: &str) -> Result<Option<RegistryLogin>, String> {
        let url = format!(
            "{}/internal/v1/orgs/{org}/registry-credentials/{host}",
            self.url
        );
        self.get_if(&url, true).await
    }
}

impl ControlPlaneSecrets {
    /// A JSON answer of the control plane's internal API; `None` for a 404 when `absent_ok`,
    /// else every failure is an error.
    async fn get_if<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        absent_ok: bool,
    ) -> Result<Option<T>, String> {
        let resp = self
            .http
            .get(url)
            .timeout(Duration::from_secs(5))
            .bearer_auth(&self.credential)
            .send()
            .await
            .map_err(|e| format!("asking {url}: {e}"))?;
        if absent_ok && resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(format!("{url} answered {status}: {}", body.trim()));
        }
        resp.json()
            .await
            .map(Some)
            .map_err(|e| format!("reading {url}: {e}"))
    }
}

/// The agent's side of a [`SecretSource`]: the source it was opened with and the last values it
/// got from it (memory only), for starts while the control plane does not answer.
#[derive(Default)]
pub(crate) struct Secrets {
    source: Option<Arc<dyn SecretSource>>,
    /// The last secret values got per app.
    apps: Mutex<HashMap<String, BTreeMap<String, String>>>,
    /// The last size, host and key got per volume.
    volumes: Mutex<HashMap<String, VolumeAccess>>,
}

impl Secrets {
    pub fn new(source: Option<Arc<dyn SecretSource>>) -> Self {
        Secrets {
            source,
            ..Secrets::default()
        }
    }

    /// The app's secrets for a start, and a note when they could not be had fresh.
    pub async fn app_secrets(&self, app: &str) -> (BTreeMap<String, String>, Option<String>) {
        let Some(source) = &self.source else {
            return (BTreeMap::new(), None);
        };
        match source.secrets(app).await {
            Ok(values) => {
                self.apps.lock().insert(app.to_string(), values.clone());
                (values, None)
            }
            Err(e) => {
                let cached = self.apps.lock().get(app).cloned();
                tracing::warn!(app, error = %e, cached = cached.is_some(), "cannot fetch the app's secrets");
                match cached {
                    Some(values) => (
                        values,
                        Some(format!(
                            "secrets from this host's last copy (the control plane did not give them: {e})"
                        )),
                    ),
                    None => (
                        BTreeMap::new(),
                        Some(format!(
                            "started without secrets: the control plane did not give them ({e}); restart the machine once it does"
                        )),
                    ),
                }
            }
        }
    }

    /// The org's stored login for exactly registry `host`, asked fresh for each pull (no copy is
    /// kept: a logout takes effect at the next pull). `Err` says why it could not be asked.
    pub async fn registry_login(
        &self,
        org: &str,
        host: &str,
    ) -> Result<Option<RegistryLogin>, String> {
        match &self.source {
            Some(source) => source.registry_login(org, host).await,
            None => Ok(None),
        }
    }

    /// The size, host and key of `volume` for a start. `Err` says why the machine cannot start.
    pub async fn volume_access(&self, volume: &str) -> Result<VolumeAccess, String> {
        let Some(source) = &self.source else {
            return Err(format!(
                "volume {volume}: this host has no control plane to get the volume's key from"
            ));
        };
        match source.volume(volume).await {
            Ok(access) => {
                self.volumes
                    .lock()
                    .insert(volume.to_string(), access.clone());
                Ok(access)
            }
            // Availability first, as with secrets: the last key this agent was given.
            Err(e) => match self.volumes.lock().get(volume).cloned() {
                Some(access) => {
                    tracing::warn!(volume = %volume, error = %e, "the control plane did not answer; using the volume's last known key");
                    Ok(access)
                }
                None => Err(format!(
                    "volume {volume}: cannot get its key from the control plane ({e}); start the machine again once it answers"
                )),
            },
        }
    }
}
