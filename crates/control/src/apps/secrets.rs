//! An app's secrets: changed all or none (the reference's `{"values"}` with `null` to remove,
//! aloft's `{"secrets"}`, one at a time by name), each change a new version of the app's
//! secrets; shown by name and digest, never value; and opened for the app's hosts
//! (`/internal/v1/apps/{app}/secrets`).

use crate::ControlPlane;
use crate::host_credentials::HostCaller;
use crate::secrets;
use crate::store::{Caller, SecretRecord, SecretsChange, SecretsRefused};
use aloft_types::ApiError;
use aloft_types::api::{
    AppSecrets, Secret, SecretsVersion, SetSecretRequest, SetSecretResponse, SetSecretsRequest,
};
use aloft_types::time::{now_ms, rfc3339};

impl ControlPlane {
    /// `POST /v1/apps/{app}/secrets`: `{"values": {NAME: value|null}}`.
    pub(crate) async fn update_secrets(
        &self,
        caller: &Caller,
        app: &str,
        body: &[u8],
    ) -> Result<AppSecrets, ApiError> {
        let app = self.app_of(caller, app).await?;
        let req: SetSecretsRequest = ApiError::parse_json(body)?;
        if req.values.is_empty() {
            return Err(ApiError::invalid(
                "values",
                "no secrets given: send {\"values\": {\"NAME\": \"value\"}} (a null value removes NAME)",
            ));
        }
        let now = now_ms();
        let mut change = SecretsChange::default();
        for (name, value) in req.values {
            match value {
                Some(value) => {
                    let field = format!("values.{name}");
                    change
                        .set
                        .push(self.sealed(&app.name, field, &name, &value, now)?);
                }
                None => change.unset.push(name),
            }
        }
        self.change_secrets(&app.name, change).await?;
        self.app_secrets(&app.name).await
    }

    /// `POST /v1/apps/{app}/secrets/{name}` `{"value": ...}`.
    pub(crate) async fn set_secret(
        &self,
        caller: &Caller,
        app: &str,
        name: &str,
        body: &[u8],
    ) -> Result<SetSecretResponse, ApiError> {
        let app = self.app_of(caller, app).await?;
        let req: SetSecretRequest = ApiError::parse_json(body)?;
        let record = self.sealed(&app.name, "name".into(), name, &req.value, now_ms())?;
        let change = SecretsChange {
            set: vec![record],
            unset: Vec::new(),
        };
        let version = self.change_secrets(&app.name, change).await?;
        let s = self.one_secret(&app.name, name).await?;
        Ok(SetSecretResponse {
            name: s.name,
            digest: s.digest,
            created_at: s.created_at,
            updated_at: s.updated_at,
            version,
        })
    }

    /// `DELETE /v1/apps/{app}/secrets/{name}`.
    pub(crate) async fn delete_secret(
        &self,
        caller: &Caller,
        app: &str,
        name: &str,
    ) -> Result<SecretsVersion, ApiError> {
        let app = self.app_of(caller, app).await?;
        let change = SecretsChange {
            set: Vec::new(),
            unset: vec![name.to_string()],
        };
        let version = self.change_secrets(&app.name, change).await?;
        Ok(SecretsVersion { version })
    }

    /// `GET /v1/apps/{app}/secrets`.
    pub(crate) async fn list_secrets(
        &self,
        caller: &Caller,
        app: &str,
    ) -> Result<AppSecrets, ApiError> {
        let app = self.app_of(caller, app).await?;
        self.app_secrets(&app.name).await
    }

    /// `GET /v1/apps/{app}/secrets/{name}`.
    pub(crate) async fn get_secret(
        &self,
        caller: &Caller,
        app: &str,
        name: &str,
    ) -> Result<Secret, ApiError> {
        let app = self.app_of(caller, app).await?;
        self.one_secret(&app.name, name).await
    }

    /// `value` sealed for `app`'s secret `name`, once `name` and the value's size are checked
    /// (`field` names where the request gave them).
    fn sealed(
        &self,
        app: &str,
        field: String,
        name: &str,
        value: &str,
        now: i64,
    ) -> Result<SecretRecord, ApiError> {
        if let Some(problem) = secrets::name_problem(name) {
            return Err(ApiError::invalid(field, problem));
        }
        if value.len() > secrets::MAX_VALUE_BYTES {
            return Err(ApiError::invalid(
                field,
                format!(
                    "secret {name} is {} bytes; at most {} KiB: keep large files in a volume or the image",
                    value.len(),
                    secrets::MAX_VALUE_BYTES / 1024
                ),
            ));
        }
        Ok(SecretRecord {
            name: name.to_string(),
            sealed: self.inner.secrets.seal(app, name, value),
            digest: secrets::digest(value),
            created_at: now,
            updated_at: now,
        })
    }

    /// Makes `change`, all or none; the new version of the app's secrets.
    async fn change_secrets(&self, app: &str, change: SecretsChange) -> Result<u64, ApiError> {
        match self
            .inner
            .store
            .change_secrets(app, change, secrets::MAX_SECRETS)
            .await?
        {
            Ok(version) => Ok(version),
            Err(SecretsRefused::TooMany(count)) => Err(ApiError::invalid(
                "values",
                format!(
                    "{app} would have {count} secrets; at most {}: unset some first",
                    secrets::MAX_SECRETS
                ),
            )),
            Err(SecretsRefused::Missing(missing)) => Err(ApiError::NotFound(format!(
                "{app} has no secret named {}: `aloft secrets list -a {app}` shows its secrets (nothing was changed)",
                missing.join(", "),
            ))),
        }
    }

    /// The app's secrets as shown (names and digests) and their version.
    async fn app_secrets(&self, app: &str) -> Result<AppSecrets, ApiError> {
        let (records, version) = self.inner.store.secrets_and_version(app).await?;
        Ok(AppSecrets {
            secrets: records.into_iter().map(shown).collect(),
            version,
        })
    }

    async fn one_secret(&self, app: &str, name: &str) -> Result<Secret, ApiError> {
        let (records, _) = self.inner.store.secrets_and_version(app).await?;
        records
            .into_iter()
            .find(|s| s.name == name)
            .map(shown)
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "{app} has no secret named {name}: `aloft secrets list -a {app}` shows its secrets"
                ))
            })
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

/// A stored secret as the API shows it: never its value.
fn shown(s: SecretRecord) -> Secret {
    Secret {
        name: s.name,
        digest: s.digest,
        created_at: rfc3339(s.created_at),
        updated_at: rfc3339(s.updated_at),
    }
}
