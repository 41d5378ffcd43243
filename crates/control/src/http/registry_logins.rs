//! `/v1/registry-logins`: the org's logins to third-party registries (`aloft registry login`,
//! `logout`, `list`), and their credentials for host agents
//! (`/internal/v1/orgs/{org}/registry-credentials/{host}`).

use super::Reply;
use super::extract::{PathParams, RawBody};
use crate::ControlPlane;
use crate::host_credentials::HostCaller;
use crate::store::Caller;
use aloft_types::ErrorBody;
use aloft_types::api::{OkResponse, RegistryLogin, RegistryLoginRequest};
use axum::extract::State;

/// Store (or replace) the org's username and password for a registry host. Machines of the org
/// pulling an image from exactly that host use them; the password is never shown again.
#[utoipa::path(
    put, path = "/v1/registry-logins/{host}", tag = "Registry logins", operation_id = "RegistryLogins_set",
    params(("host" = String, Path, description = "The registry host (and port), e.g. ghcr.io", pattern = "^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?$", max_length = 253)),
    request_body = RegistryLoginRequest,
    responses(
        (status = 200, description = "The stored login (never the password)", body = RegistryLogin),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 403, description = "A deploy token cannot manage registry logins", body = ErrorBody),
        (status = 422, description = "Not a registry host, or an empty or oversized username or password", body = ErrorBody),
    )
)]
pub(crate) async fn set_registry_login(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams(host): PathParams<String>,
    RawBody(body): RawBody,
) -> Reply<axum::Json<RegistryLogin>> {
    Ok(axum::Json(
        cp.registry_login_set(&caller, &host, &body).await?,
    ))
}

/// The org's registry logins: hosts and usernames, never passwords.
#[utoipa::path(
    get, path = "/v1/registry-logins", tag = "Registry logins", operation_id = "RegistryLogins_list",
    responses(
        (status = 200, description = "The org's registry logins", body = Vec<RegistryLogin>),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 403, description = "A deploy token cannot list registry logins", body = ErrorBody),
    )
)]
pub(crate) async fn list_registry_logins(
    State(cp): State<ControlPlane>,
    caller: Caller,
) -> Reply<axum::Json<Vec<RegistryLogin>>> {
    Ok(axum::Json(cp.registry_logins(&caller).await?))
}

/// Forget the org's login for a registry host: its pulls from there are anonymous again.
#[utoipa::path(
    delete, path = "/v1/registry-logins/{host}", tag = "Registry logins", operation_id = "RegistryLogins_delete",
    params(("host" = String, Path, description = "The registry host (and port)", pattern = "^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?$", max_length = 253)),
    responses(
        (status = 200, description = "Removed", body = OkResponse),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 403, description = "A deploy token cannot manage registry logins", body = ErrorBody),
        (status = 404, description = "The org has no login for that host", body = ErrorBody),
        (status = 422, description = "Not a registry host", body = ErrorBody),
    )
)]
pub(crate) async fn remove_registry_login(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams(host): PathParams<String>,
) -> Reply<axum::Json<OkResponse>> {
    cp.registry_logout(&caller, &host).await?;
    Ok(axum::Json(OkResponse::ok()))
}

/// `GET /internal/v1/orgs/{org}/registry-credentials/{host}`: the org's credentials for that
/// registry host, for a host agent pulling one of the org's images from it (404: none).
pub(super) async fn registry_credentials(
    State(cp): State<ControlPlane>,
    caller: HostCaller,
    PathParams((org, host)): PathParams<(String, String)>,
) -> Reply<axum::Json<RegistryLoginRequest>> {
    cp.check_host_runs_org(&caller, &org).await?;
    Ok(axum::Json(cp.registry_credentials(&org, &host).await?))
}
