//! The agent's internal endpoints besides the machine API (`/internal/v1/...`): the host's
//! description, autostart from another host's proxy, the host's images and its volumes. Not in
//! the OpenAPI document. No state.

use super::extract::{ApiResult, Body, PathParams};
use crate::agent::Agent;
use aloft_agent_api::params::MachinePath;
use aloft_types::api::{HostImage, HostInfo, OkResponse, PruneImagesResponse};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};

/// `GET /internal/v1/host`: internal only, so not part of [`MachinesApiDoc`](super::MachinesApiDoc) (the public API the
/// control plane publishes has no such path).
pub(super) async fn host_show(State(agent): State<Agent>, headers: HeaderMap) -> Json<HostInfo> {
    let address = agent
        .advertise()
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| format!("http://{h}"))
        })
        .unwrap_or_default();
    Json(agent.host_info(&address))
}

/// `POST /internal/v1/apps/{app}/machines/{id}/autostart`: another host's proxy starts a
/// machine of this host for a request (as this host's proxy does in process).
pub(super) async fn machines_autostart(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
) -> ApiResult<OkResponse> {
    agent.autostart(&p.app, &p.id).await?;
    Ok(Json(OkResponse::ok()))
}

/// `GET /internal/v1/images`: the images on this host and the machines using each (internal:
/// operators reach it through the control plane, `GET /internal/v1/hosts/{host}/images`).
pub(super) async fn images_list(State(agent): State<Agent>) -> ApiResult<Vec<HostImage>> {
    Ok(Json(agent.list_images().await?))
}

/// `POST /internal/v1/images/prune`: removes the images no machine (not destroyed) uses.
pub(super) async fn images_prune(State(agent): State<Agent>) -> ApiResult<PruneImagesResponse> {
    Ok(Json(agent.prune_images().await?))
}

/// `POST /internal/v1/volumes/{id}`: makes the volume's encrypted disk on this host.
pub(super) async fn volumes_make(
    State(agent): State<Agent>,
    PathParams(id): PathParams<String>,
    Body(req): Body<aloft_types::api::MakeVolumeRequest>,
) -> ApiResult<OkResponse> {
    agent.make_volume(&id, req).await?;
    Ok(Json(OkResponse::ok()))
}

/// `DELETE /internal/v1/volumes/{id}`: removes the volume's data and snapshots from this host.
pub(super) async fn volumes_delete(
    State(agent): State<Agent>,
    PathParams(id): PathParams<String>,
) -> ApiResult<OkResponse> {
    agent.delete_volume(&id).await?;
    Ok(Json(OkResponse::ok()))
}

/// `POST /internal/v1/volumes/{id}/snapshots`: copies the volume's disk as a snapshot.
pub(super) async fn volumes_snapshot(
    State(agent): State<Agent>,
    PathParams(id): PathParams<String>,
    Body(req): Body<aloft_types::api::TakeSnapshotRequest>,
) -> ApiResult<aloft_types::api::TakenSnapshot> {
    let copy = agent.snapshot_volume(&id, &req.snapshot_id).await?;
    Ok(Json(aloft_types::api::TakenSnapshot {
        size: copy.size,
        digest: Some(copy.digest),
    }))
}
