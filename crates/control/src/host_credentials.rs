//! Each host's own credential (`aloft_host_` + 40 hex characters; only its SHA-256 is stored):
//! issued once per host id when it joins (see `crate::join`), what the host calls the control
//! plane with ([`ClusterCaller`]), and the only thing that reads app secrets and volume keys (`/internal/v1/apps/{app}/secrets`,
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

/// A caller holding a host's credential: the host's id.
pub(crate) struct HostCaller(pub String);

/// A caller of the endpoints hosts use (their number, the mesh, heartbeats, certificates): the
/// operator (the cluster secret) or a host (its credential).
pub(crate) enum ClusterCaller {
    Operator,
    Host(String),
}

impl ClusterCaller {
    /// 403 unless the caller is the operator or host `host` itself.
    pub(crate) fn check_is(&self, host: &str) -> Result<(), ApiError> {
        match self {
            ClusterCaller::Host(me) if me != host => Err(ApiError::Forbidden(format!(
                "host `{me}` cannot act for host `{host}`"
            ))),
            _ => Ok(()),
        }
    }
}

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
    /// `DELETE /internal/v1/hosts/{host}/credential` (the operator, with the cluster secret): the
    /// host's credential stops working at once, and the host id may join again with a new join
    /// token (to rotate a leaked credential, or after its file was lost: remove the host's
    /// `host-credential.json`, give it a new join token and start it again).
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
        match self.authenticate_cluster(header).await? {
            ClusterCaller::Host(host) => Ok(HostCaller(host)),
            ClusterCaller::Operator => Err(ApiError::Forbidden(
                "the cluster secret does not read secrets or volume keys; a host reads them with \
                 its own credential (<data-dir>/host-credential.json, issued when it joined)"
                    .into(),
            )),
        }
    }

    /// The operator (the cluster secret) or the host whose credential is in the header.
    pub(crate) async fn authenticate_cluster(
        &self,
        header: Option<&str>,
    ) -> Result<ClusterCaller, ApiError> {
        let token = auth::bearer(header)?;
        if aloft_http::tokens_equal(token, &self.inner.config.internal_token) {
            return Ok(ClusterCaller::Operator);
        }
        match self
            .inner
            .store
            .host_of_credential(auth::hash_token(token))
            .await?
        {
            Some(host) => Ok(ClusterCaller::Host(host)),
            None => Err(ApiError::Unauthorized(
                "neither the cluster secret nor a host credential (a host uses the one in \
                 <data-dir>/host-credential.json; join it with a join token)"
                    .into(),
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

    /// 403 unless `host` has a machine of an app of `org`, or a create of one being placed on it.
    pub(crate) async fn check_host_runs_org(
        &self,
        host: &HostCaller,
        org: &str,
    ) -> Result<(), ApiError> {
        let placing: Vec<String> = self
            .inner
            .placing
            .lock()
            .keys()
            .filter(|(h, _)| *h == host.0)
            .map(|(_, app)| app.clone())
            .collect();
        for app in placing {
            if let Some(record) = self.inner.store.app(&app).await?
                && record.org_slug == org
            {
                return Ok(());
            }
        }
        if self.inner.store.org_has_machine_on(org, &host.0).await? {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "host `{}` runs no machine of org `{org}`; a host reads only its own machines' registry logins",
            host.0
        )))
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
