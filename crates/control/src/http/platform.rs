//! `/v1/platform/regions` and `/v1/platform/placements`: the regions machines can be placed in,
//! and where a number of machines would go.

use super::Reply;
use super::extract::RawBody;
use crate::ControlPlane;
use crate::store::Caller;
use aloft_types::ErrorBody;
use aloft_types::api::{PlacementList, PlacementRequest, RegionList};
use axum::extract::State;

/// The regions that have hosts, with their free capacity.
#[utoipa::path(
    get, path = "/v1/platform/regions", tag = "Platform", operation_id = "Platform_regions",
    responses(
        (status = 200, description = "Regions with at least one host", body = RegionList),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
    )
)]
pub(crate) async fn list_regions(
    State(cp): State<ControlPlane>,
    _caller: Caller,
) -> Reply<axum::Json<RegionList>> {
    Ok(axum::Json(cp.regions().await?))
}

/// Where `count` machines of a size would go: preferred regions first, then the roomiest.
#[utoipa::path(
    post, path = "/v1/platform/placements", tag = "Platform", operation_id = "Platform_placements",
    request_body = PlacementRequest,
    responses(
        (status = 200, description = "Regions and how many machines each takes", body = PlacementList),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
    )
)]
pub(crate) async fn placements(
    State(cp): State<ControlPlane>,
    _caller: Caller,
    RawBody(body): RawBody,
) -> Reply<axum::Json<PlacementList>> {
    let req: PlacementRequest = aloft_types::ApiError::parse_json(&body)?;
    Ok(axum::Json(cp.placements(&req).await?))
}
