//! `/v1/apps/{app}/volumes`: volumes and their snapshots; and what a volume's host needs to open
//! it (`/internal/v1/volumes/{id}`).

use super::Reply;
use super::extract::{PathParams, RawBody};
use crate::ControlPlane;
use crate::host_credentials::HostCaller;
use crate::store::Caller;
use aloft_types::ErrorBody;
use aloft_types::api::{
    CreateVolumeRequest, ExtendVolumeRequest, ExtendVolumeResponse, UpdateVolumeRequest, Volume,
    VolumeAccess, VolumeSnapshot,
};
use axum::extract::State;
use axum::http::StatusCode;

/// Create a volume on a host of the region; encrypted at rest with a key of its own.
#[utoipa::path(
    post, path = "/v1/apps/{app}/volumes", tag = "Volumes", operation_id = "Volumes_create",
    params(("app" = String, Path, description = "The app's name")),
    request_body = CreateVolumeRequest,
    responses(
        (status = 201, description = "The new volume", body = Volume),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
        (status = 422, description = "A bad name, size or snapshot retention, a region without hosts, no host left for `require_unique_zone`, or what aloft does not do (`fstype` other than ext4, `snapshot_id`, `source_volume_id`)", body = ErrorBody),
        (status = 503, description = "No host of the region could make the volume's disk", body = ErrorBody),
    )
)]
pub(crate) async fn create_volume(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams(app): PathParams<String>,
    RawBody(body): RawBody,
) -> Reply<(StatusCode, axum::Json<Volume>)> {
    let volume = cp.create_volume(&caller, &app, &body).await?;
    Ok((StatusCode::CREATED, axum::Json(volume)))
}

/// The app's volumes, oldest first.
#[utoipa::path(
    get, path = "/v1/apps/{app}/volumes", tag = "Volumes", operation_id = "Volumes_list",
    params(("app" = String, Path, description = "The app's name")),
    responses(
        (status = 200, description = "The app's volumes", body = Vec<Volume>),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
    )
)]
pub(crate) async fn list_volumes(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams(app): PathParams<String>,
) -> Reply<axum::Json<Vec<Volume>>> {
    Ok(axum::Json(cp.list_volumes(&caller, &app).await?))
}

/// One volume.
#[utoipa::path(
    get, path = "/v1/apps/{app}/volumes/{id}", tag = "Volumes", operation_id = "Volumes_show",
    params(("app" = String, Path, description = "The app's name"), ("id" = String, Path, description = "The volume's id")),
    responses(
        (status = 200, description = "The volume", body = Volume),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app or volume", body = ErrorBody),
    )
)]
pub(crate) async fn get_volume(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams((app, id)): PathParams<(String, String)>,
) -> Reply<axum::Json<Volume>> {
    Ok(axum::Json(cp.get_volume(&caller, &app, &id).await?))
}

/// Change a volume's snapshot settings (retention, scheduled snapshots).
#[utoipa::path(
    put, path = "/v1/apps/{app}/volumes/{id}", tag = "Volumes", operation_id = "Volumes_update",
    params(("app" = String, Path, description = "The app's name"), ("id" = String, Path, description = "The volume's id")),
    request_body = UpdateVolumeRequest,
    responses(
        (status = 200, description = "The volume with its new settings", body = Volume),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app or volume", body = ErrorBody),
        (status = 422, description = "A snapshot retention out of 1 to 60 days", body = ErrorBody),
    )
)]
pub(crate) async fn update_volume(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams((app, id)): PathParams<(String, String)>,
    RawBody(body): RawBody,
) -> Reply<axum::Json<Volume>> {
    Ok(axum::Json(
        cp.update_volume_settings(&caller, &app, &id, &body).await?,
    ))
}

/// Destroy a volume and its snapshots (refused while a machine mounts it).
#[utoipa::path(
    delete, path = "/v1/apps/{app}/volumes/{id}", tag = "Volumes", operation_id = "Volumes_delete",
    params(("app" = String, Path, description = "The app's name"), ("id" = String, Path, description = "The volume's id")),
    responses(
        (status = 200, description = "The volume, now gone", body = Volume),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app or volume", body = ErrorBody),
        (status = 409, description = "A machine mounts it", body = ErrorBody),
        (status = 503, description = "Its host does not answer; the volume is kept", body = ErrorBody),
    )
)]
pub(crate) async fn destroy_volume(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams((app, id)): PathParams<(String, String)>,
) -> Reply<axum::Json<Volume>> {
    Ok(axum::Json(cp.destroy_volume(&caller, &app, &id).await?))
}

/// Grow a volume; the machine mounting it sees the new size after its next start.
#[utoipa::path(
    put, path = "/v1/apps/{app}/volumes/{id}/extend", tag = "Volumes", operation_id = "Volumes_extend",
    params(("app" = String, Path, description = "The app's name"), ("id" = String, Path, description = "The volume's id")),
    request_body = ExtendVolumeRequest,
    responses(
        (status = 200, description = "The volume with its new size", body = ExtendVolumeResponse),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app or volume", body = ErrorBody),
        (status = 422, description = "Not larger than now, or over 500 GB", body = ErrorBody),
    )
)]
pub(crate) async fn extend_volume(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams((app, id)): PathParams<(String, String)>,
    RawBody(body): RawBody,
) -> Reply<axum::Json<ExtendVolumeResponse>> {
    Ok(axum::Json(
        cp.extend_volume(&caller, &app, &id, &body).await?,
    ))
}

/// Take a snapshot (a copy kept on the volume's host).
#[utoipa::path(
    post, path = "/v1/apps/{app}/volumes/{id}/snapshots", tag = "Volumes", operation_id = "Volumes_create_snapshot",
    params(("app" = String, Path, description = "The app's name"), ("id" = String, Path, description = "The volume's id")),
    responses(
        (status = 201, description = "The snapshot", body = VolumeSnapshot),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app or volume", body = ErrorBody),
        (status = 409, description = "The volume has no data yet (no machine has mounted it)", body = ErrorBody),
        (status = 503, description = "Its host does not answer", body = ErrorBody),
    )
)]
pub(crate) async fn create_snapshot(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams((app, id)): PathParams<(String, String)>,
) -> Reply<(StatusCode, axum::Json<VolumeSnapshot>)> {
    let snapshot = cp.create_snapshot(&caller, &app, &id).await?;
    Ok((StatusCode::CREATED, axum::Json(snapshot)))
}

/// The volume's snapshots, oldest first.
#[utoipa::path(
    get, path = "/v1/apps/{app}/volumes/{id}/snapshots", tag = "Volumes", operation_id = "Volumes_list_snapshots",
    params(("app" = String, Path, description = "The app's name"), ("id" = String, Path, description = "The volume's id")),
    responses(
        (status = 200, description = "The snapshots", body = Vec<VolumeSnapshot>),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app or volume", body = ErrorBody),
    )
)]
pub(crate) async fn list_snapshots(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams((app, id)): PathParams<(String, String)>,
) -> Reply<axum::Json<Vec<VolumeSnapshot>>> {
    Ok(axum::Json(cp.list_snapshots(&caller, &app, &id).await?))
}

/// `GET /internal/v1/volumes/{id}`: a volume's size and key, for its host starting a machine
/// that mounts it.
pub(super) async fn volume_access(
    State(cp): State<ControlPlane>,
    host: HostCaller,
    PathParams(id): PathParams<String>,
) -> Reply<axum::Json<VolumeAccess>> {
    Ok(axum::Json(cp.volume_access(&host, &id).await?))
}
