//! Each host's own credential (`aloft_host_` + 40 hex characters; only its SHA-256 is stored):
//! issued once per host id, to a caller holding the cluster secret, and the only thing that
//! reads app secrets and volume keys (`/internal/v1/apps/{app}/secrets`,
//! `/internal/v1/volumes/{id}`). A host reads only the secrets of apps with a machine on it (or
//! one being placed on it) and only the keys of its own volumes.
//!
//! State: the creates being placed, per (host, app), behind a `parking_lot` mutex held only to
//! count; a [`Placing`] guard counts one from before the create is forwarded (the agent asks for
//! the secrets while it starts the machine, before the control plane indexes it) until it is
//! dropped after the index is written.

use crate::ControlPlane;
use crate::auth;
use aloft_types::ApiError;
use aloft_types::ids::random_hex;
use aloft_types::time::now_ms;

/// What every host credential starts with.
const CREDENTIAL_PREFIX: &str = "aloft_host_";

/// A caller holding a host's credential: the host's id.
pub(crate) struct HostCaller(pub String);

/// Counts a create being placed on a host until dropped (see the module doc).
pub(crate) struct Placing {
    cp: ControlPlane,
    key: (String, String),
}

impl Drop for Placing {
    fn drop(&mut self) {
        let mut placing = self.cp.inner.placing.lock();
        if let Some(n) = placing.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                placing.remove(&self.key);
            }
        }
    }
}

impl ControlPlane {
    /// `POST /internal/v1/hosts/{host}/credential`: a new credential for `host`, given once per
    /// host id (409 after), so another process claiming the id gets nothing.
    pub(crate) async fn issue_host_credential(&self, host: &str) -> Result<String, ApiError> {
        if host.trim().is_empty() {
            return Err(ApiError::invalid("host", "a host id is required"));
        }
        let credential = format!("{CREDENTIAL_PREFIX}{}", random_hex(20));
        let issued = self
            .inner
            .store
            .issue_host_credential(host, auth::hash_token(&credential), now_ms())
            .await?;
        if !issued {
            return Err(ApiError::Conflict(format!(
                "host `{host}` already has its credential (kept in its data dir as host-credential); \
                 restore that file, or start the host under a new id"
            )));
        }
        tracing::info!(host, "issued a host credential");
        Ok(credential)
    }

    /// `DELETE /internal/v1/hosts/{host}/credential` (the operator, with the cluster secret): the
    /// host's credential stops working at once, and the host id may be given a new one (to
    /// rotate a leaked credential, or after its file was lost: remove the host's
    /// `host-credential` file and start it again).
    pub(crate) async fn revoke_host_credential(&self, host: &str) -> Result<(), ApiError> {
        if !self.inner.store.revoke_host_credential(host).await? {
            return Err(ApiError::NotFound(format!(
                "host `{host}` has no credential to revoke"
            )));
        }
        tracing::warn!(host, "revoked a host credential");
        Ok(())
    }

    /// The host whose credential is in the `Authorization` header. The cluster secret is
    /// refused (403): it no longer reads secrets or volume keys.
    pub(crate) async fn authenticate_host(
        &self,
        header: Option<&str>,
    ) -> Result<HostCaller, ApiError> {
        let token = auth::bearer(header)?;
        if aloft_http::tokens_equal(token, &self.inner.config.internal_token) {
            return Err(ApiError::Forbidden(
                "the cluster secret does not read secrets or volume keys; a host reads them with \
                 its own credential (<data-dir>/host-credential, issued at its first start)"
                    .into(),
            ));
        }
        match self
            .inner
            .store
            .host_of_credential(auth::hash_token(token))
            .await?
        {
            Some(host) => Ok(HostCaller(host)),
            None => Err(ApiError::Unauthorized(
                "not a host credential: a host uses the one in <data-dir>/host-credential".into(),
            )),
        }
    }

    /// Counts a create of `app` as being placed on `host` until the guard is dropped.
    pub(crate) fn placing(&self, host: &str, app: &str) -> Placing {
        let key = (host.to_string(), app.to_string());
        *self.inner.placing.lock().entry(key.clone()).or_insert(0) += 1;
        Placing {
            cp: self.clone(),
            key,
        }
    }

    /// 403 unless `host` has a machine of `app` or a create of one being placed on it.
    pub(crate) async fn check_host_runs_app(
        &self,
        host: &HostCaller,
        app: &str,
    ) -> Result<(), ApiError> {
        let key = (host.0.clone(), app.to_string());
        if self.inner.placing.lock().contains_key(&key)
            || self.inner.store.app_has_machine_on(app, &host.0).await?
        {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "host `{}` runs no machine of app `{app}`; a host reads only its own machines' secrets",
            host.0
        )))
    }
}
