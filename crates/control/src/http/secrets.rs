//! `/v1/apps/{app}/secrets`: set, list and unset an app's secrets; and their values for the
//! app's hosts (`/internal/v1/apps/{app}/secrets`).

use super::Reply;
use super::extract::{PathParams, RawBody};
use crate::ControlPlane;
use crate::host_credentials::HostCaller;
use crate::store::Caller;
use aloft_types::ErrorBody;
use aloft_types::api::{Secret, SetSecretsRequest, UnsetSecretsRequest};
use axum::extract::State;

/// Set secrets (names and values), all or none. Machines get them as environment variables when
/// they next start.
#[utoipa::path(
    post, path = "/v1/apps/{app}/secrets", tag = "Secrets", operation_id = "Secrets_set",
    params(("app" = String, Path, description = "The app's name")),
    request_body = SetSecretsRequest,
    responses(
        (status = 200, description = "The app's secrets now (names and digests)", body = Vec<Secret>),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
        (status = 422, description = "A name that is not an environment variable's or is the platform's, a value over 64 KiB, too many secrets", body = ErrorBody),
    )
)]
pub(crate) async fn set_secrets(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams(app): PathParams<String>,
    RawBody(body): RawBody,
) -> Reply<axum::Json<Vec<Secret>>> {
    Ok(axum::Json(cp.set_secrets(&caller, &app, &body).await?))
}

/// The app's secrets: names and digests, never values.
#[utoipa::path(
    get, path = "/v1/apps/{app}/secrets", tag = "Secrets", operation_id = "Secrets_list",
    params(("app" = String, Path, description = "The app's name")),
    responses(
        (status = 200, description = "The app's secrets", body = Vec<Secret>),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
    )
)]
pub(crate) async fn list_secrets(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams(app): PathParams<String>,
) -> Reply<axum::Json<Vec<Secret>>> {
    Ok(axum::Json(cp.list_secrets(&caller, &app).await?))
}

/// Remove secrets, all or none.
#[utoipa::path(
    post, path = "/v1/apps/{app}/secrets/unset", tag = "Secrets", operation_id = "Secrets_unset",
    params(("app" = String, Path, description = "The app's name")),
    request_body = UnsetSecretsRequest,
    responses(
        (status = 200, description = "The app's secrets now", body = Vec<Secret>),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app, or a name it has no secret of (nothing removed)", body = ErrorBody),
    )
)]
pub(crate) async fn unset_secrets(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams(app): PathParams<String>,
    RawBody(body): RawBody,
) -> Reply<axum::Json<Vec<Secret>>> {
    Ok(axum::Json(cp.unset_secrets(&caller, &app, &body).await?))
}

/// `GET /internal/v1/apps/{app}/secrets`: the app's secret values, for a host agent starting one
/// of its machines.
pub(super) async fn secret_values(
    State(cp): State<ControlPlane>,
    host: HostCaller,
    PathParams(app): PathParams<String>,
) -> Reply<axum::Json<std::collections::BTreeMap<String, String>>> {
    Ok(axum::Json(cp.secret_values(&host, &app).await?))
}
