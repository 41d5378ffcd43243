//! `/v1/apps`: list, create, show and delete apps.

use super::Reply;
use super::extract::{PathParams, QueryParams, RawBody};
use crate::ControlPlane;
use crate::store::Caller;
use aloft_types::ErrorBody;
use aloft_types::api::{App, AppList, CreateAppRequest};
use axum::extract::State;
use axum::http::StatusCode;

/// List the org's apps.
#[utoipa::path(
    get, path = "/v1/apps", tag = "Apps", operation_id = "Apps_list",
    params(("org_slug" = Option<String>, Query, description = "The org; only the token's own org is visible (default).")),
    responses(
        (status = 200, description = "The org's apps", body = AppList),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "`org_slug` is not the token's org", body = ErrorBody),
    )
)]
pub(crate) async fn list_apps(
    State(cp): State<ControlPlane>,
    caller: Caller,
    QueryParams(q): QueryParams<aloft_types::api::ListAppsQuery>,
) -> Reply<axum::Json<AppList>> {
    Ok(axum::Json(
        cp.list_apps(&caller, q.org_slug.as_deref()).await?,
    ))
}

/// Create an app. App names are global DNS labels.
#[utoipa::path(
    post, path = "/v1/apps", tag = "Apps", operation_id = "Apps_create",
    request_body = CreateAppRequest,
    responses(
        (status = 201, description = "The new app", body = App),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "`org_slug` is not the token's org", body = ErrorBody),
        (status = 409, description = "An app of that name exists (in any org; `status` is `name_taken`)", body = ErrorBody),
        (status = 422, description = "`app_name` is not a DNS label", body = ErrorBody),
    )
)]
pub(crate) async fn create_app(
    State(cp): State<ControlPlane>,
    caller: Caller,
    RawBody(body): RawBody,
) -> Reply<(StatusCode, axum::Json<App>)> {
    let app = cp.create_app(&caller, &body).await?;
    Ok((StatusCode::CREATED, axum::Json(app)))
}

/// Get an app. The errors are the reference's exact texts, which its clients read to tell a
/// free name from a taken one: 404 `app not found` when no org has an app of that name, 403
/// `unauthorized` when another org has it (app names are global).
#[utoipa::path(
    get, path = "/v1/apps/{app}", tag = "Apps", operation_id = "Apps_show",
    params(("app" = String, Path, description = "The app's name")),
    responses(
        (status = 200, description = "The app", body = App),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 403, description = "`unauthorized`: the app belongs to another org (or another app's deploy token calls)", body = ErrorBody),
        (status = 404, description = "`app not found`: no app of that name in any org", body = ErrorBody),
    )
)]
pub(crate) async fn get_app(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams(app): PathParams<String>,
) -> Reply<axum::Json<App>> {
    Ok(axum::Json(cp.get_app(&caller, &app).await?))
}

/// Delete an app: destroys every machine of it (forcibly), then the app.
#[utoipa::path(
    delete, path = "/v1/apps/{app}", tag = "Apps", operation_id = "Apps_delete",
    params(("app" = String, Path, description = "The app's name")),
    responses(
        (status = 202, description = "The app and its machines are destroyed"),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
        (status = 503, description = "A machine's host did not answer; the app is kept", body = ErrorBody),
    )
)]
pub(crate) async fn delete_app(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams(app): PathParams<String>,
) -> Reply<StatusCode> {
    cp.delete_app(&caller, &app).await?;
    Ok(StatusCode::ACCEPTED)
}
