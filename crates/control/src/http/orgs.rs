//! `/v1/orgs`: the orgs the token may act in (`aloft orgs list`); a token belongs to one org.

use super::Reply;
use crate::store::Caller;
use aloft_types::ErrorBody;
use aloft_types::api::{OrgList, OrgRef};

/// The orgs the token may act in: its own.
#[utoipa::path(
    get, path = "/v1/orgs", tag = "Apps", operation_id = "Orgs_list",
    responses(
        (status = 200, description = "The token's org", body = OrgList),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
    )
)]
pub(crate) async fn list_orgs(caller: Caller) -> Reply<axum::Json<OrgList>> {
    Ok(axum::Json(OrgList {
        orgs: vec![OrgRef {
            name: caller.org.slug.clone(),
            slug: caller.org.slug,
        }],
    }))
}
