//! `/v1/tokens`: create (the token is shown once), list (never the secrets) and revoke the org's
//! API tokens. Only org-wide tokens may use them (403 for deploy tokens).

use super::Reply;
use super::extract::{PathParams, QueryParams, RawBody};
use crate::ControlPlane;
use crate::store::Caller;
use aloft_types::ErrorBody;
use aloft_types::api::{CreateTokenRequest, CreatedToken, ListTokensQuery, OkResponse, TokenInfo};
use axum::extract::State;
use axum::http::StatusCode;

/// Create an API token of the token's org: org-wide, or a deploy token for one app, with an
/// optional expiry. The reply holds the token itself; it is not shown again.
#[utoipa::path(
    post, path = "/v1/tokens", tag = "Tokens", operation_id = "Tokens_create",
    request_body = CreateTokenRequest,
    responses(
        (status = 201, description = "The new token (shown this once) and its record", body = CreatedToken),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 403, description = "A deploy token cannot create tokens", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
        (status = 422, description = "A bad name, scope, app or expiry", body = ErrorBody),
    )
)]
pub(crate) async fn create_token(
    State(cp): State<ControlPlane>,
    caller: Caller,
    RawBody(body): RawBody,
) -> Reply<(StatusCode, axum::Json<CreatedToken>)> {
    let created = cp.create_scoped_token(&caller, &body).await?;
    Ok((StatusCode::CREATED, axum::Json(created)))
}

/// The org's tokens that are not revoked (expired ones included, marked): never the secrets.
#[utoipa::path(
    get, path = "/v1/tokens", tag = "Tokens", operation_id = "Tokens_list",
    params(ListTokensQuery),
    responses(
        (status = 200, description = "The org's tokens", body = Vec<TokenInfo>),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 403, description = "A deploy token cannot list tokens", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
    )
)]
pub(crate) async fn list_tokens(
    State(cp): State<ControlPlane>,
    caller: Caller,
    QueryParams(q): QueryParams<ListTokensQuery>,
) -> Reply<axum::Json<Vec<TokenInfo>>> {
    Ok(axum::Json(cp.list_tokens(&caller, &q).await?))
}

/// Revoke a token: it stops working at once, at the API and at the registry.
#[utoipa::path(
    delete, path = "/v1/tokens/{id}", tag = "Tokens", operation_id = "Tokens_revoke",
    params(("id" = String, Path, description = "The token's id (from the list)")),
    responses(
        (status = 200, description = "Revoked", body = OkResponse),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 403, description = "A deploy token cannot revoke tokens", body = ErrorBody),
        (status = 404, description = "No such token in the org, or revoked already", body = ErrorBody),
    )
)]
pub(crate) async fn revoke_token(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Reply<axum::Json<OkResponse>> {
    cp.revoke_token(&caller, &id).await?;
    Ok(axum::Json(OkResponse::ok()))
}
