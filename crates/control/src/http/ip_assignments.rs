//! `/v1/apps/{app}/ip_assignments`: the reference's per-app IP addresses. aloft has none to give:
//! every host's proxy serves every app (at `<app>.<domain>` and the hostnames of its
//! certificates), so an app's list is empty and asking for an address is a 422 that says so.

use super::Reply;
use super::extract::{PathParams, RawBody};
use crate::ControlPlane;
use crate::store::Caller;
use aloft_types::api::{AssignIpRequest, IpAssignments};
use aloft_types::{ApiError, ErrorBody};
use axum::extract::State;

/// The app's IP addresses: none (every host's proxy serves every app).
#[utoipa::path(
    get, path = "/v1/apps/{app}/ip_assignments", tag = "Apps", operation_id = "IpAssignments_list",
    params(("app" = String, Path, description = "The app's name")),
    responses(
        (status = 200, description = "The app's addresses: always none", body = IpAssignments),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
    )
)]
pub(crate) async fn list_ip_assignments(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams(app): PathParams<String>,
) -> Reply<axum::Json<IpAssignments>> {
    cp.app_of(&caller, &app).await?;
    Ok(axum::Json(IpAssignments { ips: Vec::new() }))
}

/// Ask for an address for the app: refused, naming why (aloft has no per-app addresses).
#[utoipa::path(
    post, path = "/v1/apps/{app}/ip_assignments", tag = "Apps", operation_id = "IpAssignments_create",
    params(("app" = String, Path, description = "The app's name")),
    request_body = AssignIpRequest,
    responses(
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
        (status = 422, description = "aloft gives apps no addresses of their own", body = ErrorBody),
    )
)]
pub(crate) async fn assign_ip(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams(app): PathParams<String>,
    RawBody(body): RawBody,
) -> Reply<axum::Json<IpAssignments>> {
    let app = cp.app_of(&caller, &app).await?;
    let _: AssignIpRequest = ApiError::parse_json(&body)?;
    Err(ApiError::invalid(
        "type",
        format!(
            "aloft gives apps no IP addresses of their own: every host's proxy serves every app, \
             so point {}'s DNS names at your hosts' addresses (`aloft certs add HOSTNAME -a {}` \
             for a hostname of your own); inside the org's network use {}.internal",
            app.name, app.name, app.name
        ),
    )
    .into())
}

/// Release an address of the app: it has none.
#[utoipa::path(
    delete, path = "/v1/apps/{app}/ip_assignments/{ip}", tag = "Apps", operation_id = "IpAssignments_delete",
    params(
        ("app" = String, Path, description = "The app's name"),
        ("ip" = String, Path, description = "The address"),
    ),
    responses(
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org, or (always) no such address of it", body = ErrorBody),
    )
)]
pub(crate) async fn delete_ip_assignment(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams((app, ip)): PathParams<(String, String)>,
) -> Reply<axum::Json<IpAssignments>> {
    let app = cp.app_of(&caller, &app).await?;
    Err(ApiError::NotFound(format!(
        "app {} has no address {ip}: aloft gives apps no IP addresses of their own",
        app.name
    ))
    .into())
}
