//! The org's logins to third-party registries (`aloft registry login`): `PUT/DELETE
//! /v1/registry-logins/{host}` and `GET /v1/registry-logins` (hosts and usernames, never
//! passwords), org tokens only (a deploy token is 403: it pulls with them but cannot change or
//! list them). The password is sealed like app secrets (`crate::secrets`), with
//! `registry-login/<org>` and the host as associated data, so a row copied to another org or
//! host does not open. It leaves the control plane only to host agents
//! (`GET /internal/v1/orgs/{org}/registry-credentials/{host}`), for a pull from exactly that
//! host by a machine of that org.
//!
//! No state of its own: every call reads the store.

use crate::ControlPlane;
use crate::store::{Caller, RegistryLoginRecord};
use aloft_types::ApiError;
use aloft_types::api::{RegistryLogin, RegistryLoginRequest};
use aloft_types::time::{now_ms, rfc3339};

/// The longest username and password accepted.
const MAX_FIELD_BYTES: usize = 16 * 1024;

/// The first part of the associated data a password is sealed with (the rest is the host).
fn seal_scope(org: &str) -> String {
    format!("registry-login/{org}")
}

/// `host` as stored (lower case), or 422 when it is not a registry host (`name[:port]`,
/// `[v6]:port`).
fn registry_host(host: &str) -> Result<String, ApiError> {
    let host = host.trim().to_ascii_lowercase();
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if !n.ends_with(']') || n.starts_with('[') => (n, Some(p)),
        _ => (host.as_str(), None),
    };
    let name_ok = if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if !name_ok || !port_ok {
        return Err(ApiError::invalid(
            "host",
            format!(
                "`{host}` is not a registry host: give the host (and port) of the registry, as in \
                 image references, e.g. `ghcr.io` or `registry.example.com:5000`"
            ),
        ));
    }
    Ok(host)
}

impl ControlPlane {
    /// `PUT /v1/registry-logins/{host}`.
    pub(crate) async fn registry_login_set(
        &self,
        caller: &Caller,
        host: &str,
        body: &[u8],
    ) -> Result<RegistryLogin, ApiError> {
        caller.require_org_wide("manage registry logins")?;
        let host = registry_host(host)?;
        let req: RegistryLoginRequest = ApiError::parse_json(body)?;
        if req.username.is_empty() || req.password.is_empty() {
            return Err(ApiError::invalid(
                "password",
                "a registry login needs a username and a password (or an access token as password)",
            ));
        }
        if req.username.len() > MAX_FIELD_BYTES || req.password.len() > MAX_FIELD_BYTES {
            return Err(ApiError::invalid(
                "password",
                format!(
                    "the username and the password are at most {} KiB each",
                    MAX_FIELD_BYTES / 1024
                ),
            ));
        }
        let org = &caller.org.slug;
        let record = RegistryLoginRecord {
            sealed: self
                .inner
                .secrets
                .seal(&seal_scope(org), &host, &req.password),
            host,
            username: req.username,
            created_at: now_ms(),
        };
        self.inner
            .store
            .set_registry_login(org, record.clone())
            .await?;
        Ok(listed(record))
    }

    /// `GET /v1/registry-logins`.
    pub(crate) async fn registry_logins(
        &self,
        caller: &Caller,
    ) -> Result<Vec<RegistryLogin>, ApiError> {
        caller.require_org_wide("list registry logins")?;
        let logins = self.inner.store.registry_logins(&caller.org.slug).await?;
        Ok(logins.into_iter().map(listed).collect())
    }

    /// `DELETE /v1/registry-logins/{host}`.
    pub(crate) async fn registry_logout(
        &self,
        caller: &Caller,
        host: &str,
    ) -> Result<(), ApiError> {
        caller.require_org_wide("manage registry logins")?;
        let host = registry_host(host)?;
        if !self
            .inner
            .store
            .remove_registry_login(&caller.org.slug, &host)
            .await?
        {
            return Err(ApiError::NotFound(format!(
                "this org has no login for {host}: `aloft registry list` shows its logins"
            )));
        }
        Ok(())
    }

    /// `GET /internal/v1/orgs/{org}/registry-credentials/{host}`: the org's credentials for
    /// exactly `host`, for a host agent pulling an image from it; 404 when the org stored none
    /// (the pull is then anonymous). A password that does not open is logged and left out.
    pub(crate) async fn registry_credentials(
        &self,
        org: &str,
        host: &str,
    ) -> Result<RegistryLoginRequest, ApiError> {
        let host = registry_host(host)?;
        let none = || ApiError::NotFound(format!("org {org} has no login for {host}"));
        let record = self
            .inner
            .store
            .registry_login(org, &host)
            .await?
            .ok_or_else(none)?;
        let Some(password) = self
            .inner
            .secrets
            .open(&seal_scope(org), &host, &record.sealed)
        else {
            tracing::error!(
                org,
                host,
                "a registry login does not open with this control plane's secrets.key: log in again (`aloft registry login`)"
            );
            return Err(none());
        };
        Ok(RegistryLoginRequest {
            username: record.username,
            password,
        })
    }
}

fn listed(r: RegistryLoginRecord) -> RegistryLogin {
    RegistryLogin {
        host: r.host,
        username: r.username,
        created_at: rfc3339(r.created_at),
    }
}

#[cfg(test)]
mod tests;
