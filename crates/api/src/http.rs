//! The control plane's HTTP edge: routes, extractors that turn every rejection into the API's
//! JSON error shape, and handlers that stay a few lines long (parse -> app layer -> reply).
//!
//! Machine endpoints other than create and list are forwarded whatever their sub-path, so every
//! operation the agent serves (`/start`, `/wait`, `/lease`, `/exec`, ...) is reachable without
//! listing it here; the agent is the one that knows them.

use crate::ControlPlane;
use crate::forward::{AgentReply, Outbound};
use crate::machines::Listing;
use crate::openapi::openapi_document;
use crate::store::Caller;
use aloft_types::api::{
    App, AppList, Certificate, CreateAppRequest, CreateCertificateRequest, CreateMachineRequest,
    CreateReleaseRequest, HostInfo, HostNumber, LEASE_NONCE_HEADER, ListMachinesQuery, MeshJoin,
    MeshPeer, OkResponse, ProxyCertificate, RegionList, Release, Secret, SetSecretsRequest,
    UnsetSecretsRequest, UpdateReleaseRequest, VerifyTokenRequest, VerifyTokenResponse,
};
use aloft_types::api::{
    CreateVolumeRequest, ExtendVolumeRequest, ExtendVolumeResponse, Volume, VolumeAccess,
    VolumeSnapshot,
};
use aloft_types::{ApiError, ErrorBody, Machine};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The largest request body accepted (413 above).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The header listing hosts whose machines are missing from a machine list because they did not
/// answer (comma-separated host ids). Absent when every host answered.
pub const PARTIAL_HEADER: &str = "x-aloft-partial";

pub(crate) fn router(cp: ControlPlane) -> Router {
    Router::new()
        .route("/v1/apps", get(list_apps).post(create_app))
        .route("/v1/apps/{app}", get(get_app).delete(delete_app))
        .route(
            "/v1/apps/{app}/certificates",
            get(list_certificates).post(add_certificate),
        )
        .route(
            "/v1/apps/{app}/secrets",
            get(list_secrets).post(set_secrets),
        )
        .route("/v1/apps/{app}/secrets/unset", post(unset_secrets))
        .route("/internal/v1/apps/{app}/secrets", get(secret_values))
        .route(
            "/v1/apps/{app}/volumes",
            get(list_volumes).post(create_volume),
        )
        .route(
            "/v1/apps/{app}/volumes/{id}",
            get(get_volume).delete(destroy_volume),
        )
        .route("/v1/apps/{app}/volumes/{id}/extend", put(extend_volume))
        .route(
            "/v1/apps/{app}/volumes/{id}/snapshots",
            get(list_snapshots).post(create_snapshot),
        )
        .route("/internal/v1/volumes/{id}", get(volume_access))
        .route(
            "/v1/apps/{app}/releases",
            get(list_releases).post(create_release),
        )
        .route(
            "/v1/apps/{app}/releases/{version}",
            axum::routing::patch(finish_release),
        )
        .route(
            "/v1/apps/{app}/certificates/{hostname}",
            axum::routing::delete(remove_certificate),
        )
        .route(
            "/v1/apps/{app}/machines",
            get(list_machines).post(create_machine),
        )
        .route("/v1/apps/{app}/machines/{id}", any(machine))
        .route(
            "/v1/apps/{app}/machines/{id}/{*rest}",
            any(machine_sub_path),
        )
        .route("/v1/platform/regions", get(list_regions))
        .route("/v1/openapi.json", get(openapi_json))
        .route("/internal/v1/hosts", get(list_hosts).post(register_host))
        .route("/internal/v1/hosts/{host}/images", get(host_images))
        .route("/internal/v1/hosts/{host}/number", post(host_number))
        .route("/internal/v1/mesh", get(mesh_peers))
        .route("/internal/v1/certificates", get(proxy_certificates))
        .route("/internal/v1/mesh/{host}", put(join_mesh))
        .route(
            "/internal/v1/hosts/{host}/images/prune",
            post(host_images_prune),
        )
        .route("/internal/v1/orgs", post(create_org))
        .route("/internal/v1/tokens/verify", post(verify_token))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(cp)
}

/// An [`ApiError`] as a response: its status and [`ErrorBody`].
#[derive(Debug)]
pub(crate) struct HttpError(ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.0.body())).into_response()
    }
}

impl IntoResponse for AgentReply {
    fn into_response(self) -> Response {
        let mut resp = (self.status, self.body).into_response();
        match self.content_type {
            Some(ct) => resp.headers_mut().insert(header::CONTENT_TYPE, ct),
            None => resp.headers_mut().remove(header::CONTENT_TYPE),
        };
        resp
    }
}

type Reply<T> = Result<T, HttpError>;

fn authorization(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

impl FromRequestParts<ControlPlane> for Caller {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, cp: &ControlPlane) -> Reply<Self> {
        Ok(cp.authenticate(authorization(parts)).await?)
    }
}

/// A caller holding the cluster's internal token.
pub(crate) struct Internal;

impl FromRequestParts<ControlPlane> for Internal {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, cp: &ControlPlane) -> Reply<Self> {
        cp.authenticate_internal(authorization(parts))?;
        Ok(Internal)
    }
}

/// Path parameters; a path that cannot be read is a 400 in the API's error shape.
pub(crate) struct ApiPath<T>(T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Reply<Self> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| ApiPath(t))
            .map_err(|e| HttpError(ApiError::BadRequest(e.body_text())))
    }
}

/// A query string; one that cannot be read is a 400 in the API's error shape.
pub(crate) struct ApiQuery<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Reply<Self> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| ApiQuery(t))
            .map_err(|e| {
                HttpError(ApiError::BadRequest(format!(
                    "{}; check the query string",
                    e.body_text()
                )))
            })
    }
}

/// The request body, at most [`MAX_BODY_BYTES`] (413 above).
pub(crate) struct ApiBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBody {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Reply<Self> {
        Bytes::from_request(req, state)
            .await
            .map(ApiBody)
            .map_err(|e| {
                HttpError(if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge(format!(
                        "the request body is larger than {} KiB; send a smaller one",
                        MAX_BODY_BYTES / 1024
                    ))
                } else {
                    ApiError::BadRequest(format!("the request body could not be read: {e}"))
                })
            })
    }
}

/// A request to pass on to an agent as it came: method, path and query, body, content type and
/// lease nonce.
impl<S: Send + Sync> FromRequest<S> for Outbound {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Reply<Self> {
        let method = req.method().clone();
        let path_and_query = req.uri().path_and_query().map_or_else(
            || req.uri().path().to_string(),
            |pq| pq.as_str().to_string(),
        );
        let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
        let lease_nonce = req.headers().get(LEASE_NONCE_HEADER).cloned();
        let ApiBody(body) = ApiBody::from_request(req, state).await?;
        Ok(Outbound {
            method,
            path_and_query,
            body,
            content_type,
            lease_nonce,
        })
    }
}

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
    ApiQuery(q): ApiQuery<aloft_types::api::ListAppsQuery>,
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
        (status = 409, description = "An app of that name exists", body = ErrorBody),
        (status = 422, description = "`app_name` is not a DNS label", body = ErrorBody),
    )
)]
pub(crate) async fn create_app(
    State(cp): State<ControlPlane>,
    caller: Caller,
    ApiBody(body): ApiBody,
) -> Reply<(StatusCode, axum::Json<App>)> {
    let app = cp.create_app(&caller, &body).await?;
    Ok((StatusCode::CREATED, axum::Json(app)))
}

/// Get an app.
#[utoipa::path(
    get, path = "/v1/apps/{app}", tag = "Apps", operation_id = "Apps_show",
    params(("app" = String, Path, description = "The app's name")),
    responses(
        (status = 200, description = "The app", body = App),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
    )
)]
pub(crate) async fn get_app(
    State(cp): State<ControlPlane>,
    caller: Caller,
    ApiPath(app): ApiPath<String>,
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
    ApiPath(app): ApiPath<String>,
) -> Reply<StatusCode> {
    cp.delete_app(&caller, &app).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Set secrets (names and values), all or none. Machines get them as environment variables when
/// they next start.
#[utoipa::path(
    post, path = "/v1/apps/{app}/secrets", tag = "Secrets", operation_id = "Secrets_set",
    params(("app" = String, Path, description = "The app's name")),
    request_body = SetSecretsRequest,
    responses(
        (status = 200, description = "The app's secrets now (names and digests)", body = Vec<Secret>),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
        (status = 422, description = "A name that is not an environment variable's or is the platform's, a value over 64 KiB, too many secrets", body = ErrorBody),
    )
)]
pub(crate) async fn set_secrets(
    State(cp): State<ControlPlane>,
    caller: Caller,
    ApiPath(app): ApiPath<String>,
    ApiBody(body): ApiBody,
) -> Reply<axum::Json<Vec<Secret>>> {
    Ok(axum::Json(cp.set_secrets(&caller, &app, &body).await?))
}

/// The app's secrets: names and digests, never values.
#[utoipa::path(
    get, path = "/v1/apps/{app}/secrets", tag = "Secrets", operation_id = "Secrets_list",
    params(("app" = String, Path, description = "The app's name")),
    responses(
        (status = 200, description = "The app's secrets", body = Vec<Secret>),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
    )
)]
pub(crate) async fn list_secrets(
    State(cp): State<ControlPlane>,
    caller: Caller,
    ApiPath(app): ApiPath<String>,
) -> Reply<axum::Json<Vec<Secret>>> {
    Ok(axum::Json(cp.list_secrets(&caller, &app).await?))
}

/// Remove secrets, all or none.
#[utoipa::path(
    post, path = "/v1/apps/{app}/secrets/unset", tag = "Secrets", operation_id = "Secrets_unset",
    params(("app" = String, Path, description = "The app's name")),
    request_body = UnsetSecretsRequest,
    responses(
        (status = 200, description = "The app's secrets now", body = Vec<Secret>),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app, or a name it has no secret of (nothing removed)", body = ErrorBody),
    )
)]
pub(crate) async fn unset_secrets(
    State(cp): State<ControlPlane>,
    caller: Caller,
    ApiPath(app): ApiPath<String>,
    ApiBody(body): ApiBody,
) -> Reply<axum::Json<Vec<Secret>>> {
    Ok(axum::Json(cp.unset_secrets(&caller, &app, &body).await?))
}

/// `GET /internal/v1/apps/{app}/secrets`: the app's secret values, for a host agent starting one
/// of its machines.
async fn secret_values(
    State(cp): State<ControlPlane>,
    _internal: Internal,
    ApiPath(app): ApiPath<String>,
) -> Reply<axum::Json<std::collections::BTreeMap<String, String>>> {
    Ok(axum::Json(cp.secret_values(&app).await?))
}

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
        (status = 422, description = "A bad name or size, or a region without hosts", body = ErrorBody),
        (status = 503, description = "No host of the region could make the volume's disk", body = ErrorBody),
    )
)]
pub(crate) async fn create_volume(
    State(cp): State<ControlPlane>,
    caller: Caller,
    ApiPath(app): ApiPath<String>,
    ApiBody(body): ApiBody,
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
    ApiPath(app): ApiPath<String>,
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
    ApiPath((app, id)): ApiPath<(String, String)>,
) -> Reply<axum::Json<Volume>> {
    Ok(axum::Json(cp.get_volume(&caller, &app, &id).await?))
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
    ApiPath((app, id)): ApiPath<(String, String)>,
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
    ApiPath((app, id)): ApiPath<(String, String)>,
    ApiBody(body): ApiBody,
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
    ApiPath((app, id)): ApiPath<(String, String)>,
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
    ApiPath((app, id)): ApiPath<(String, String)>,
) -> Reply<axum::Json<Vec<VolumeSnapshot>>> {
    Ok(axum::Json(cp.list_snapshots(&caller, &app, &id).await?))
}

/// `GET /internal/v1/volumes/{id}`: a volume's size and key, for its host starting a machine
/// that mounts it.
async fn volume_access(
    State(cp): State<ControlPlane>,
    _internal: Internal,
    ApiPath(id): ApiPath<String>,
) -> Reply<axum::Json<VolumeAccess>> {
    Ok(axum::Json(cp.volume_access(&id).await?))
}

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
    ApiPath(app): ApiPath<String>,
    ApiBody(body): ApiBody,
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
    ApiPath(app): ApiPath<String>,
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
    ApiPath((app, version)): ApiPath<(String, u32)>,
    ApiBody(body): ApiBody,
) -> Reply<axum::Json<Release>> {
    Ok(axum::Json(
        cp.finish_release(&caller, &app, version, &body).await?,
    ))
}

/// Serve the app at a hostname too (`Host` and SNI), with the given certificate or one from the
/// development CA.
#[utoipa::path(
    post, path = "/v1/apps/{app}/certificates", tag = "Certificates", operation_id = "Certificates_add",
    params(("app" = String, Path, description = "The app's name")),
    request_body = CreateCertificateRequest,
    responses(
        (status = 201, description = "The hostname is served", body = Certificate),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
        (status = 409, description = "Another app is served at the hostname", body = ErrorBody),
        (status = 422, description = "Not a hostname; a certificate or key that does not load", body = ErrorBody),
    )
)]
pub(crate) async fn add_certificate(
    State(cp): State<ControlPlane>,
    caller: Caller,
    ApiPath(app): ApiPath<String>,
    ApiBody(body): ApiBody,
) -> Reply<(StatusCode, axum::Json<Certificate>)> {
    let cert = cp.add_certificate(&caller, &app, &body).await?;
    Ok((StatusCode::CREATED, axum::Json(cert)))
}

/// The hostnames the app is served at (never their keys).
#[utoipa::path(
    get, path = "/v1/apps/{app}/certificates", tag = "Certificates", operation_id = "Certificates_list",
    params(("app" = String, Path, description = "The app's name")),
    responses(
        (status = 200, description = "The app's hostnames", body = Vec<Certificate>),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
    )
)]
pub(crate) async fn list_certificates(
    State(cp): State<ControlPlane>,
    caller: Caller,
    ApiPath(app): ApiPath<String>,
) -> Reply<axum::Json<Vec<Certificate>>> {
    Ok(axum::Json(cp.list_certificates(&caller, &app).await?))
}

/// Stop serving the app at a hostname.
#[utoipa::path(
    delete, path = "/v1/apps/{app}/certificates/{hostname}", tag = "Certificates", operation_id = "Certificates_remove",
    params(
        ("app" = String, Path, description = "The app's name"),
        ("hostname" = String, Path, description = "The hostname"),
    ),
    responses(
        (status = 200, description = "Removed", body = OkResponse),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app, or the app has no such hostname", body = ErrorBody),
    )
)]
pub(crate) async fn remove_certificate(
    State(cp): State<ControlPlane>,
    caller: Caller,
    ApiPath((app, hostname)): ApiPath<(String, String)>,
) -> Reply<axum::Json<OkResponse>> {
    cp.remove_certificate(&caller, &app, &hostname).await?;
    Ok(axum::Json(OkResponse::ok()))
}

/// List the app's machines, from every host that holds some. When a host does not answer, the
/// machines of the hosts that did are returned and the `x-aloft-partial` header names the others.
#[utoipa::path(
    get, path = "/v1/apps/{app}/machines", tag = "Machines", operation_id = "Machines_list",
    params(
        ("app" = String, Path, description = "The app's name"),
        ("include_deleted" = Option<bool>, Query, description = "Include destroyed machines"),
        ("region" = Option<String>, Query, description = "Only machines in this region"),
        ("state" = Option<String>, Query, description = "Only machines in these states (comma-separated)"),
        ("metadata.{key}" = Option<String>, Query, description = "Only machines whose `config.metadata.{key}` has this value"),
    ),
    responses(
        (status = 200, description = "The machines, oldest first", body = [Machine],
         headers(("x-aloft-partial" = String, description = "Comma-separated ids of hosts that did not answer; their machines are missing"))),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
        (status = 422, description = "A filter value is not allowed", body = ErrorBody),
    )
)]
pub(crate) async fn list_machines(
    State(cp): State<ControlPlane>,
    caller: Caller,
    ApiPath(app): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListMachinesQuery>,
    uri: Uri,
) -> Reply<Listing> {
    let path_and_query = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_string(), |pq| pq.as_str().to_string());
    Ok(cp
        .list_machines(&caller, &app, &query, path_and_query)
        .await?)
}

/// The merged list, with the partial header when some hosts did not answer; or an agent's
/// refusal of the query as it came.
impl IntoResponse for Listing {
    fn into_response(self) -> Response {
        let (machines, unreachable_hosts) = match self {
            Listing::Machines {
                machines,
                unreachable_hosts,
            } => (machines, unreachable_hosts),
            Listing::Refused(reply) => return reply.into_response(),
        };
        let mut resp = axum::Json(machines).into_response();
        let partial = Some(unreachable_hosts.join(","))
            .filter(|hosts| !hosts.is_empty())
            .and_then(|hosts| HeaderValue::from_str(&hosts).ok());
        if let Some(v) = partial {
            resp.headers_mut().insert(PARTIAL_HEADER, v);
        }
        resp
    }
}

/// Create a machine: the control plane picks a host with room in the region (the default region
/// when none is named) and the host creates and, unless `skip_launch`, starts it.
#[utoipa::path(
    post, path = "/v1/apps/{app}/machines", tag = "Machines", operation_id = "Machines_create",
    params(("app" = String, Path, description = "The app's name")),
    request_body = CreateMachineRequest,
    responses(
        (status = 200, description = "The new machine (with `nonce` when `lease_ttl` was given)", body = Machine),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
        (status = 409, description = "A machine of the app already has that name", body = ErrorBody),
        (status = 413, description = "The body is larger than 1 MiB", body = ErrorBody),
        (status = 422, description = "A config value is not allowed, or the region has no hosts (`allowed` lists the regions)", body = ErrorBody),
        (status = 503, description = "No host in the region has room, or none answered", body = ErrorBody),
    )
)]
pub(crate) async fn create_machine(
    State(cp): State<ControlPlane>,
    caller: Caller,
    ApiPath(app): ApiPath<String>,
    req: Outbound,
) -> Reply<AgentReply> {
    Ok(cp.create_machine(&caller, &app, req).await?)
}

/// `/v1/apps/{app}/machines/{id}` (get, update, destroy): forwarded to the machine's host.
async fn machine(
    State(cp): State<ControlPlane>,
    caller: Caller,
    ApiPath((app, id)): ApiPath<(String, String)>,
    req: Outbound,
) -> Reply<AgentReply> {
    Ok(cp.forward_machine(&caller, &app, &id, None, req).await?)
}

/// `/v1/apps/{app}/machines/{id}/...` (every operation on a machine): forwarded to its host.
async fn machine_sub_path(
    State(cp): State<ControlPlane>,
    caller: Caller,
    ApiPath((app, id, rest)): ApiPath<(String, String, String)>,
    req: Outbound,
) -> Reply<AgentReply> {
    Ok(cp
        .forward_machine(&caller, &app, &id, Some(&rest), req)
        .await?)
}

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

/// This document (no token needed).
#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "Platform", operation_id = "Platform_openapi", security(()),
    responses((status = 200, description = "The OpenAPI document of the Machines API", content_type = "application/json"))
)]
pub(crate) async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(openapi_document())
}

/// `POST /internal/v1/hosts`: an agent registers or sends its heartbeat.
async fn register_host(
    State(cp): State<ControlPlane>,
    _internal: Internal,
    ApiBody(body): ApiBody,
) -> Reply<axum::Json<OkResponse>> {
    let info: HostInfo = ApiError::parse_json(&body)?;
    cp.record_host(info).await?;
    Ok(axum::Json(OkResponse::ok()))
}

/// `POST /internal/v1/hosts/{host}/number`: the host part of 6PN addresses for a host, asked
/// once by its agent before it opens (given on first ask, the same ever after).
async fn host_number(
    State(cp): State<ControlPlane>,
    _internal: Internal,
    Path(host): Path<String>,
) -> Reply<axum::Json<HostNumber>> {
    if host.trim().is_empty() {
        return Err(ApiError::invalid("host", "a host id is required").into());
    }
    let number = cp.host_number(&host).await.map_err(ApiError::from)?;
    Ok(axum::Json(HostNumber { host, number }))
}

/// `PUT /internal/v1/mesh/{host}`: a host says how the mesh reaches it (after it has its number)
/// and gets every member.
async fn join_mesh(
    State(cp): State<ControlPlane>,
    _internal: Internal,
    Path(host): Path<String>,
    body: Bytes,
) -> Reply<axum::Json<Vec<MeshPeer>>> {
    let join: MeshJoin = ApiError::parse_json(&body)?;
    if join.endpoint.parse::<std::net::SocketAddr>().is_err() {
        return Err(ApiError::invalid("endpoint", "expected ip:port, e.g. 10.0.0.5:51820").into());
    }
    if !is_wireguard_key(&join.public_key) {
        return Err(ApiError::invalid(
            "public_key",
            "expected a WireGuard public key (32 bytes, base64)",
        )
        .into());
    }
    if !cp.join_mesh(&host, join).await.map_err(ApiError::from)? {
        return Err(ApiError::invalid(
            "host",
            format!("host `{host}` has no number: POST /internal/v1/hosts/{host}/number first"),
        )
        .into());
    }
    Ok(axum::Json(cp.mesh_peers().await.map_err(ApiError::from)?))
}

/// `GET /internal/v1/certificates`: every hostname apps are served at, with uploaded
/// certificates and keys, for hosts' proxies (which read it over the mesh).
async fn proxy_certificates(
    State(cp): State<ControlPlane>,
    _internal: Internal,
) -> Reply<axum::Json<Vec<ProxyCertificate>>> {
    let certs = cp.certificates().await.map_err(ApiError::from)?;
    Ok(axum::Json(certs.into_iter().map(Into::into).collect()))
}

/// `GET /internal/v1/mesh`: every member of the mesh between hosts.
async fn mesh_peers(
    State(cp): State<ControlPlane>,
    _internal: Internal,
) -> Reply<axum::Json<Vec<MeshPeer>>> {
    Ok(axum::Json(cp.mesh_peers().await.map_err(ApiError::from)?))
}

/// 44 characters of base64 for 32 bytes.
fn is_wireguard_key(key: &str) -> bool {
    key.len() == 44
        && key.ends_with('=')
        && key[..43]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// `GET /internal/v1/hosts`: every registered host (operators).
async fn list_hosts(
    State(cp): State<ControlPlane>,
    _internal: Internal,
) -> Reply<axum::Json<Vec<HostInfo>>> {
    Ok(axum::Json(cp.hosts().await?))
}

/// `GET /internal/v1/hosts/{host}/images`: the images on a host and the machines using them
/// (its agent's `GET /internal/v1/images`).
async fn host_images(
    State(cp): State<ControlPlane>,
    _internal: Internal,
    ApiPath(host): ApiPath<String>,
) -> Reply<AgentReply> {
    Ok(cp
        .ask_host(&host, Method::GET, "/internal/v1/images")
        .await?)
}

/// `POST /internal/v1/hosts/{host}/images/prune`: removes the images no machine on the host
/// uses (its agent's `POST /internal/v1/images/prune`).
async fn host_images_prune(
    State(cp): State<ControlPlane>,
    _internal: Internal,
    ApiPath(host): ApiPath<String>,
) -> Reply<AgentReply> {
    Ok(cp
        .ask_host(&host, Method::POST, "/internal/v1/images/prune")
        .await?)
}

/// `POST /internal/v1/orgs` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOrgRequest {
    slug: String,
    /// The new token's name (default `default`); agents see it as the actor of requests.
    #[serde(default)]
    token_name: Option<String>,
}

/// `POST /internal/v1/orgs` reply: the org and a new token for it (shown once).
#[derive(Debug, Serialize)]
struct CreateOrgResponse {
    slug: String,
    token: String,
}

/// `POST /internal/v1/orgs`: creates the org if missing and a new token for it (operators, tests).
async fn create_org(
    State(cp): State<ControlPlane>,
    _internal: Internal,
    ApiBody(body): ApiBody,
) -> Reply<(StatusCode, axum::Json<CreateOrgResponse>)> {
    let req: CreateOrgRequest = ApiError::parse_json(&body)?;
    cp.ensure_org(&req.slug).await.map_err(ApiError::from)?;
    let name = req.token_name.as_deref().unwrap_or("default");
    let token = cp
        .create_token(&req.slug, name)
        .await
        .map_err(ApiError::from)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreateOrgResponse {
            slug: req.slug,
            token,
        }),
    ))
}

/// `POST /internal/v1/tokens/verify`: the org of an API token (404 when unknown or revoked), for
/// cluster services that authenticate org tokens themselves (a registry on another host).
async fn verify_token(
    State(cp): State<ControlPlane>,
    _internal: Internal,
    ApiBody(body): ApiBody,
) -> Reply<axum::Json<VerifyTokenResponse>> {
    let req: VerifyTokenRequest = ApiError::parse_json(&body)?;
    match cp.org_of_token(&req.token).await {
        Some(org) => Ok(axum::Json(VerifyTokenResponse { org })),
        None => Err(ApiError::NotFound(
            "unknown or revoked token; create a new one for the org".into(),
        )
        .into()),
    }
}

async fn no_route(method: Method, uri: Uri) -> HttpError {
    HttpError(ApiError::NotFound(format!(
        "no endpoint {method} {}; the API is described at /v1/openapi.json",
        uri.path()
    )))
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let body = ErrorBody {
        error: format!(
            "{method} is not allowed on {}; the API is described at /v1/openapi.json",
            uri.path()
        ),
        field: None,
        allowed: Vec::new(),
    };
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}
