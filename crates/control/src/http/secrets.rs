//! `/v1/apps/{app}/secrets`: change, list and read an app's secrets (names and digests, never
//! values), in the reference's shapes; and their values for the app's hosts
//! (`/internal/v1/apps/{app}/secrets`).

use super::Reply;
use super::extract::{PathParams, QueryParams, RawBody};
use crate::ControlPlane;
use crate::host_credentials::HostCaller;
use crate::store::Caller;
use aloft_types::ErrorBody;
use aloft_types::api::{
    AppSecrets, Secret, SecretsQuery, SecretsVersion, SetSecretRequest, SetSecretResponse,
    SetSecretsRequest,
};
use axum::extract::State;

/// Change secrets, all or none: `{"values": {"NAME": "value"}}` sets NAME and `{"values":
/// {"NAME": null}}` removes it (the reference's form). Machines get the change when they next
/// start.
#[utoipa::path(
    post, path = "/v1/apps/{app}/secrets", tag = "Secrets", operation_id = "Secrets_update",
    params(("app" = String, Path, description = "The app's name")),
    request_body = SetSecretsRequest,
    responses(
        (status = 200, description = "The app's secrets now (names and digests) and their version", body = AppSecrets),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org, or a name to remove it has no secret of (nothing changed)", body = ErrorBody),
        (status = 422, description = "A name that is not an environment variable's or is the platform's, a value over 64 KiB, too many secrets, no secrets or both forms", body = ErrorBody),
    )
)]
pub(crate) async fn update_secrets(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams(app): PathParams<String>,
    RawBody(body): RawBody,
) -> Reply<axum::Json<AppSecrets>> {
    Ok(axum::Json(cp.update_secrets(&caller, &app, &body).await?))
}

/// The app's secrets: names and digests, never values (`show_secrets` is accepted and changes
/// nothing; `version` too: every read has the newest).
#[utoipa::path(
    get, path = "/v1/apps/{app}/secrets", tag = "Secrets", operation_id = "Secrets_list",
    params(("app" = String, Path, description = "The app's name"), SecretsQuery),
    responses(
        (status = 200, description = "The app's secrets and their version", body = AppSecrets),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
    )
)]
pub(crate) async fn list_secrets(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams(app): PathParams<String>,
    QueryParams(_): QueryParams<SecretsQuery>,
) -> Reply<axum::Json<AppSecrets>> {
    Ok(axum::Json(cp.list_secrets(&caller, &app).await?))
}

/// Set one secret: `{"value": "..."}`.
#[utoipa::path(
    post, path = "/v1/apps/{app}/secrets/{name}", tag = "Secrets", operation_id = "Secret_set",
    params(
        ("app" = String, Path, description = "The app's name"),
        ("name" = String, Path, description = "The secret's name (an environment variable's)", pattern = "^[A-Za-z_][A-Za-z0-9_]*$"),
    ),
    request_body = SetSecretRequest,
    responses(
        (status = 200, description = "The secret (name and digest) and the version of the app's secrets", body = SetSecretResponse),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
        (status = 422, description = "A name that is not an environment variable's or is the platform's, a value over 64 KiB, too many secrets", body = ErrorBody),
    )
)]
pub(crate) async fn set_secret(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams((app, name)): PathParams<(String, String)>,
    RawBody(body): RawBody,
) -> Reply<axum::Json<SetSecretResponse>> {
    Ok(axum::Json(
        cp.set_secret(&caller, &app, &name, &body).await?,
    ))
}

/// One secret: its name and digest, never its value (`show_secrets` and `version` are
/// accepted and change nothing).
#[utoipa::path(
    get, path = "/v1/apps/{app}/secrets/{name}", tag = "Secrets", operation_id = "Secret_get",
    params(
        ("app" = String, Path, description = "The app's name"),
        ("name" = String, Path, description = "The secret's name", pattern = "^[A-Za-z_][A-Za-z0-9_]*$"),
        SecretsQuery,
    ),
    responses(
        (status = 200, description = "The secret", body = Secret),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org, or no such secret", body = ErrorBody),
    )
)]
pub(crate) async fn get_secret(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams((app, name)): PathParams<(String, String)>,
    QueryParams(_): QueryParams<SecretsQuery>,
) -> Reply<axum::Json<Secret>> {
    Ok(axum::Json(cp.get_secret(&caller, &app, &name).await?))
}

/// Remove one secret.
#[utoipa::path(
    delete, path = "/v1/apps/{app}/secrets/{name}", tag = "Secrets", operation_id = "Secret_delete",
    params(
        ("app" = String, Path, description = "The app's name"),
        ("name" = String, Path, description = "The secret's name", pattern = "^[A-Za-z_][A-Za-z0-9_]*$"),
    ),
    responses(
        (status = 200, description = "The version of the app's secrets without it", body = SecretsVersion),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org, or no such secret (nothing changed)", body = ErrorBody),
    )
)]
pub(crate) async fn delete_secret(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams((app, name)): PathParams<(String, String)>,
) -> Reply<axum::Json<SecretsVersion>> {
    Ok(axum::Json(cp.delete_secret(&caller, &app, &name).await?))
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
