//! App secrets, volume keys and registry logins for the machines this host starts: asked of the
//! control plane (`GET {cp}/internal/v1/apps/{app}/secrets` and `GET {cp}/internal/v1/volumes/{id}`
//! with this host's own credential, `GET {cp}/internal/v1/orgs/{org}/registry-credentials/{host}`
//! with the internal token) at every start
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
use std::path::PathBuf;
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

/// The control plane's internal endpoint.
pub struct ControlPlaneSecrets {
    url: String,
    token: String,
    http: reqwest::Client,
    /// This host's id and where its credential is kept (see [`ControlPlaneSecrets::for_host`]).
    host: Option<(String, PathBuf)>,
    /// This host's credential once read or issued.
    credential: tokio::sync::Mutex<Option<String>>,
}

impl ControlPlaneSecrets {
    pub fn new(control_plane_url: &str, internal_token: &str) -> Result<Self, reqwest::Error> {
        Ok(Self {
            url: control_plane_url.trim_end_matches('/').to_string(),
            token: internal_token.to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
            host: None,
            credential: tokio::sync::Mutex::default(),
        })
    }

    /// Reads secrets and volume keys as host `host_id` with its own credential, kept at
    /// `credential_file` (0600): read from there, or issued by the control plane at the first
    /// read (`POST /internal/v1/hosts/{host}/credential`, once per host id) and written there.
    #[must_use]
    pub fn for_host(mut self, host_id: &str, credential_file: PathBuf) -> Self {
        self.host = Some((host_id.to_string(), credential_file));
        self
    }

    /// The bearer token for secrets and volume keys: this host's credential (read, or issued
    /// and kept), or without a host the internal token (which the control plane refuses).
    async fn host_token(&self) -> Result<String, String> {
        let Some((host, file)) = &self.host else {
            return Ok(self.token.clone());
        };
        let mut credential = self.credential.lock().await;
        if let Some(c) = credential.as_ref() {
            return Ok(c.clone());
        }
        let c = match std::fs::read_to_string(file) {
            Ok(c) => c.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let c = self.issue_credential(host).await?;
                aloft_durable::write(file, c.as_bytes(), 0o600).map_err(|e| {
                    format!(
                        "keeping this host's credential in {}: {e} (fix the data dir's permissions)",
                        file.display()
                    )
                })?;
                c
            }
            Err(e) => return Err(format!("reading {}: {e}", file.display())),
        };
        *credential = Some(c.clone());
        Ok(c)
    }

    /// Asks the control plane for this host's credential (given once per host id).
    async fn issue_credential(&self, host: &str) -> Result<String, String> {
        #[derive(serde::Deserialize)]
        struct Issued {
            credential: String,
        }
        let url = format!("{}/internal/v1/hosts/{host}/credential", self.url);
        let resp = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("asking {url}: {e}"))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(format!("{url} answered {status}: {}", body.trim()));
        }
        let issued: Issued = resp
            .json()
            .await
            .map_err(|e| format!("reading {url}: {e}"))?;
        Ok(issued.credential)
    }
}

#[async_trait]
impl SecretSource for ControlPlaneSecrets {
    async fn secrets(&self, app: &str) -> Result<BTreeMap<String, String>, String> {
        let token = self.host_token().await?;
        let url = format!("{}/internal/v1/apps/{app}/secrets", self.url);
        self.get_if(&url, &token, false)
            .await?
            .ok_or_else(|| format!("{url} answered nothing"))
    }

    async fn volume(&self, id: &str) -> Result<VolumeAccess, String> {
        let token = self.host_token().await?;
        let url = format!("{}/internal/v1/volumes/{id}", self.url);
        self.get_if(&url, &token, false)
            .await?
            .ok_or_else(|| format!("{url} answered nothing"))
    }

    async fn registry_login(&self, org: &str, host: &str) -> Result<Option<RegistryLogin>, String> {
        let url = format!(
            "{}/internal/v1/orgs/{org}/registry-credentials/{host}",
            self.url
        );
        self.get_if(&url, &self.token, true).await
    }
}

impl ControlPlaneSecrets {
    /// A JSON answer of the control plane's internal API (bearer `token`); `None` for a 404
    /// when `absent_ok`, else every failure is an error.
    async fn get_if<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        token: &str,
        absent_ok: bool,
    ) -> Result<Option<T>, String> {
        let resp = self
            .http
            .get(url)
            .bearer_auth(token)
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
