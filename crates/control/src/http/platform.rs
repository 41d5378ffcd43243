//! `/v1/platform/regions`: the regions machines can be placed in.

use super::Reply;
use crate::ControlPlane;
use crate::store::Caller;
use aloft_types::ErrorBody;
use aloft_types::api::RegionList;
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
