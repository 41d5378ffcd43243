//! An app's secrets: set and unset all or none, listed by name and digest, and opened for the
//! app's hosts (`/internal/v1/apps/{app}/secrets`).

use crate::ControlPlane;
use crate::host_credentials::HostCaller;
use crate::secrets;
use crate::store::{Caller, SecretRecord};
use aloft_types::ApiError;
use aloft_types::api::{Secret, SetSecretsRequest, UnsetSecretsRequest};
use aloft_types::time::{now_ms, rfc3339};

impl ControlPlane {
    /// `POST /v1/apps/{app}/secrets`.
    pub(crate) async fn set_secrets(
        &self,
        caller: &Caller,
        app: &str,
        body: &[u8],
    ) -> Result<Vec<Secret>, ApiError> {
        let app = self.app_of(caller, app).await?;
        let req: SetSecretsRequest = ApiError::parse_json(body)?;
        if req.secrets.is_empty() {
            return Err(ApiError::invalid(
                "secrets",
                "no secrets given: send {\"secrets\": {\"NAME\": \"value\"}}",
            ));
        }
        let now = now_ms();
        let mut records = Vec::new();
        for (name, value) in &req.secrets {
            if let Some(problem) = secrets::name_problem(name) {
                return Err(ApiError::invalid(format!("secrets.{name}"), problem));
            }
            if value.len() > secrets::MAX_VALUE_BYTES {
                return Err(ApiError::invalid(
                    format!("secrets.{name}"),
                    format!(
                        "secret {name} is {} bytes; at most {} KiB: keep large files in a volume or the image",
                        value.len(),
                        secrets::MAX_VALUE_BYTES / 1024
                    ),
                ));
            }
            records.push(SecretRecord {
                name: name.clone(),
                sealed: self.inner.secrets.seal(&app.name, name, value),
                digest: secrets::digest(value),
                created_at: now,
            });
        }
        if let Err(count) = self
            .inner
            .store
            .set_secrets(&app.name, records, secrets::MAX_SECRETS)
            .await?
        {
            return Err(ApiError::invalid(
                "secrets",
                format!(
                    "{} would have {count} secrets; at most {}: unset some first",
                    app.name,
                    secrets::MAX_SECRETS
                ),
            ));
        }
        self.secrets_listed(&app.name).await
    }

    /// `GET /v1/apps/{app}/secrets`.
    pub(crate) async fn list_secrets(
        &self,
        caller: &Caller,
        app: &str,
    ) -> Result<Vec<Secret>, ApiError> {
        let app = self.app_of(caller, app).await?;
        self.secrets_listed(&app.name).await
    }

    /// The app's secrets as listed: names and digests.
    async fn secrets_listed(&self, app: &str) -> Result<Vec<Secret>, ApiError> {
        Ok(self
            .inner
            .store
            .secrets(app)
            .await?
            .into_iter()
            .map(|s| Secret {
                name: s.name,
                digest: s.digest,
                created_at: rfc3339(s.created_at),
            })
            .collect())
    }

    /// `POST /v1/apps/{app}/secrets/unset`.
    pub(crate) async fn unset_secrets(
        &self,
        caller: &Caller,
        app: &str,
        body: &[u8],
    ) -> Result<Vec<Secret>, ApiError> {
        let app = self.app_of(caller, app).await?;
        let req: UnsetSecretsRequest = ApiError::parse_json(body)?;
        if let Err(missing) = self.inner.store.unset_secrets(&app.name, req.names).await? {
            return Err(ApiError::NotFound(format!(
                "{} has no secret named {}: `aloft secrets list -a {}` shows its secrets (nothing was removed)",
                app.name,
                missing.join(", "),
                app.name
            )));
        }
        self.secrets_listed(&app.name).await
    }

    /// `GET /internal/v1/apps/{app}/secrets`: the values, for the host agent starting one of
    /// the app's machines (only a host running or being given one of them). A value that does
    /// not open (another key) is left out and logged.
    pub(crate) async fn secret_values(
        &self,
        host: &HostCaller,
        app: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, ApiError> {
        self.check_host_runs_app(host, app).await?;
        let mut values = std::collections::BTreeMap::new();
        for s in self.inner.store.secrets(app).await? {
            match self.inner.secrets.open(app, &s.name, &s.sealed) {
                Some(v) => {
                    values.insert(s.name, v);
                }
                None => tracing::error!(
                    app,
                    secret = %s.name,
                    "a secret does not open with this control plane's secrets.key: set it again"
                ),
            }
        }
        Ok(values)
    }
}
