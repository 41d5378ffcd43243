//! `/v1/apps/{app}/releases`: one release per deploy, created and then finished once; and
//! `/v1/apps/{app}/config`, the config file the newest complete one deployed.

use super::Reply;
use super::extract::{PathParams, RawBody};
use crate::ControlPlane;
use crate::store::Caller;
use aloft_types::ErrorBody;
use aloft_types::api::{CreateReleaseRequest, DeployedConfig, Release, UpdateReleaseRequest};
use axum::extract::State;
use axum::http::StatusCode;

/// Record that a deploy begins: a new release, numbered one past the app's last, `running`.
#[utoipa::path(
    post, path = "/v1/apps/{app}/releases", tag = "Releases", operation_id = "Releases_create",
    params(("app" = String, Path, description = "The app's name")),
    request_body = CreateReleaseRequest,
    responses(
        (status = 201, description = "The new release", body = Release),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
        (status = 422, description = "An empty image or an unknown strategy", body = ErrorBody),
    )
)]
pub(crate) async fn create_release(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams(app): PathParams<String>,
    RawBody(body): RawBody,
) -> Reply<(StatusCode, axum::Json<Release>)> {
    let release = cp.create_release(&caller, &app, &body).await?;
    Ok((StatusCode::CREATED, axum::Json(release)))
}

/// The app's releases, newest first.
#[utoipa::path(
    get, path = "/v1/apps/{app}/releases", tag = "Releases", operation_id = "Releases_list",
    params(("app" = String, Path, description = "The app's name")),
    responses(
        (status = 200, description = "The app's releases", body = Vec<Release>),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
    )
)]
pub(crate) async fn list_releases(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams(app): PathParams<String>,
) -> Reply<axum::Json<Vec<Release>>> {
    Ok(axum::Json(cp.list_releases(&caller, &app).await?))
}

/// Record how a running release's deploy ended.
#[utoipa::path(
    patch, path = "/v1/apps/{app}/releases/{version}", tag = "Releases", operation_id = "Releases_finish",
    params(
        ("app" = String, Path, description = "The app's name"),
        ("version" = u32, Path, description = "The release's version"),
    ),
    request_body = UpdateReleaseRequest,
    responses(
        (status = 200, description = "The release as it is now", body = Release),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app or release", body = ErrorBody),
        (status = 409, description = "The release has ended already", body = ErrorBody),
        (status = 422, description = "`running` as the new status", body = ErrorBody),
    )
)]
pub(crate) async fn finish_release(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams((app, version)): PathParams<(String, u32)>,
    RawBody(body): RawBody,
) -> Reply<axum::Json<Release>> {
    Ok(axum::Json(
        cp.finish_release(&caller, &app, version, &body).await?,
    ))
}

/// The config file (fly.toml) the app's newest complete release deployed.
#[utoipa::path(
    get, path = "/v1/apps/{app}/config", tag = "Releases", operation_id = "Apps_config",
    params(("app" = String, Path, description = "The app's name")),
    responses(
        (status = 200, description = "The deployed config", body = DeployedConfig),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org, or no deploy has completed", body = ErrorBody),
    )
)]
pub(crate) async fn deployed_config(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams(app): PathParams<String>,
) -> Reply<axum::Json<DeployedConfig>> {
    Ok(axum::Json(cp.deployed_config(&caller, &app).await?))
}
