//! The agent's internal HTTP API: the machine endpoints of the Machines API on the public paths
//! and JSON (the control plane forwards requests unchanged), plus `GET /internal/v1/host`,
//! `GET /internal/v1/images`, `POST /internal/v1/images/prune`, and the volumes' data
//! (`POST`/`DELETE /internal/v1/volumes/{id}`, `POST /internal/v1/volumes/{id}/snapshots`). Every
//! request needs `Authorization: Bearer <internal token>`.
//!
//! Handlers stay thin: read the request, call one [`Agent`] method, write the answer. Every error
//! (including axum's own rejections of a bad path, query or body) is an
//! [`ErrorBody`] with the status of its [`ApiError`].

use crate::agent::Agent;
use crate::machine::Caller;
use aloft_types::api::internal::{ACTOR_HEADER, NETWORK_HEADER, ORG_HEADER, REGISTRY_TOKEN_HEADER};
use aloft_types::api::{
    CreateMachineRequest, DestroyQuery, ExecRequest, ExecResponse, HostImage, HostInfo,
    LEASE_NONCE_HEADER, LeaseRequest, LeaseResponse, ListMachinesQuery, LogLine, LogsQuery,
    MachineVersion, MetadataValue, OkResponse, ProcessInfo, PruneImagesResponse, RestartQuery,
    SignalRequest, StartResponse, StopRequest, SuspendResponse, UpdateMachineRequest, WaitQuery,
    WaitResponse,
};
use aloft_types::{ApiError, ErrorBody, Machine, MachineEvent};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use utoipa::IntoParams;

/// The largest request body accepted (1 MiB).
const MAX_BODY: usize = 1 << 20;

/// The OpenAPI tag of every machine endpoint.
const TAG: &str = "Machines";

/// The OpenAPI document of the agent's machine endpoints. The control plane merges it into the
/// public Machines API document (the paths and bodies are the same).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        machines_list,
        machines_create,
        machines_show,
        machines_update,
        machines_delete,
        machines_start,
        machines_stop,
        machines_restart,
        machines_signal,
        machines_suspend,
        machines_wait,
        machines_create_lease,
        machines_show_lease,
        machines_release_lease,
        machines_cordon,
        machines_uncordon,
        machines_show_metadata,
        machines_update_metadata,
        machines_delete_metadata,
        machines_list_events,
        machines_list_versions,
        machines_list_processes,
        machines_exec,
        machines_logs,
    ),
    components(schemas(
        Machine,
        MachineEvent,
        CreateMachineRequest,
        UpdateMachineRequest,
        StopRequest,
        SignalRequest,
        StartResponse,
        SuspendResponse,
        WaitResponse,
        OkResponse,
        LeaseRequest,
        LeaseResponse,
        MetadataValue,
        ExecRequest,
        ExecResponse,
        MachineVersion,
        ProcessInfo,
        LogLine,
        ErrorBody,
    )),
    tags((name = "Machines", description = "Create machines and drive their lifecycle: start, stop, update, wait, lease, exec."))
)]
pub struct MachinesApiDoc;

impl Agent {
    /// The internal HTTP API: the machine endpoints on the public paths
    /// (/v1/apps/{app}/machines/...) plus GET /internal/v1/host; bearer `internal_token` required.
    pub fn router(&self) -> axum::Router {
        router(self.clone())
    }
}

/// The router behind the internal token.
fn router(agent: Agent) -> Router {
    let machine = "/v1/apps/{app}/machines/{id}";
    Router::new()
        .route(
            "/v1/apps/{app}/machines",
            get(machines_list).post(machines_create),
        )
        .route(
            machine,
            get(machines_show)
                .post(machines_update)
                .delete(machines_delete),
        )
        .route(&format!("{machine}/start"), post(machines_start))
        .route(&format!("{machine}/stop"), post(machines_stop))
        .route(&format!("{machine}/restart"), post(machines_restart))
        .route(&format!("{machine}/signal"), post(machines_signal))
        .route(&format!("{machine}/suspend"), post(machines_suspend))
        .route(&format!("{machine}/wait"), get(machines_wait))
        .route(
            &format!("{machine}/lease"),
            get(machines_show_lease)
                .post(machines_create_lease)
                .delete(machines_release_lease),
        )
        .route(&format!("{machine}/cordon"), post(machines_cordon))
        .route(&format!("{machine}/uncordon"), post(machines_uncordon))
        .route(&format!("{machine}/metadata"), get(machines_show_metadata))
        .route(
            &format!("{machine}/metadata/{{key}}"),
            post(machines_update_metadata).delete(machines_delete_metadata),
        )
        .route(&format!("{machine}/events"), get(machines_list_events))
        .route(&format!("{machine}/versions"), get(machines_list_versions))
        .route(&format!("{machine}/ps"), get(machines_list_processes))
        .route(&format!("{machine}/exec"), post(machines_exec))
        .route(&format!("{machine}/logs"), get(machines_logs))
        .route("/internal/v1/host", get(host_show))
        .route(
            "/internal/v1/apps/{app}/machines/{id}/autostart",
            post(machines_autostart),
        )
        .route("/internal/v1/images", get(images_list))
        .route("/internal/v1/images/prune", post(images_prune))
        .route(
            "/internal/v1/volumes/{id}",
            axum::routing::delete(volumes_delete).post(volumes_make),
        )
        .route(
            "/internal/v1/volumes/{id}/snapshots",
            post(volumes_snapshot),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(agent.clone(), require_token))
        .with_state(agent)
}

// ---------------------------------------------------------------------------------------------
// Errors and extractors

/// An [`ApiError`] as an HTTP response: its status and its [`ErrorBody`].
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
        (status, Json(self.0.body())).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, HttpError>;

/// A JSON body: malformed is 400, a bad value 422 naming the field, over 1 MiB 413.
struct Body<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        Ok(Self(ApiError::parse_json(&bytes)?))
    }
}

/// A JSON body that may be left out (an empty body means the defaults).
struct OptionalBody<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalBody<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        Ok(Self(ApiError::parse_json(&bytes)?))
    }
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, HttpError> {
    Bytes::from_request(req, state).await.map_err(|r| {
        HttpError(if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!(
                "the request body is larger than {MAX_BODY} bytes (1 MiB); send a smaller body"
            ))
        } else {
            ApiError::BadRequest(format!("cannot read the request body: {}", r.body_text()))
        })
    })
}

/// Path parameters; a bad one is a 400 in the API's error shape.
struct PathParams<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Self(v))
            .map_err(|r| HttpError(ApiError::BadRequest(format!("bad path: {}", r.body_text()))))
    }
}

/// Query parameters; a bad one is a 400 in the API's error shape.
struct QueryParams<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|r| {
                HttpError(ApiError::BadRequest(format!(
                    "bad query string: {}",
                    r.body_text()
                )))
            })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Ok(Caller {
            nonce: header(LEASE_NONCE_HEADER),
            actor: header(ACTOR_HEADER),
            org: header(ORG_HEADER),
            network_id: header(NETWORK_HEADER),
            registry: header(REGISTRY_TOKEN_HEADER).map(|t| crate::images::credentials(&t)),
        })
    }
}

/// `{app}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct AppPath {
    /// The app's name.
    app: String,
}

/// `{app}` and `{id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct MachinePath {
    /// The app's name.
    app: String,
    /// The machine's id (14 hex characters).
    id: String,
}

/// `{app}`, `{id}` and a metadata `{key}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct MetadataPath {
    /// The app's name.
    app: String,
    /// The machine's id (14 hex characters).
    id: String,
    /// The metadata key.
    key: String,
}

async fn require_token(State(agent): State<Agent>, req: Request, next: Next) -> Response {
    let expected = agent.config().internal_token.as_bytes();
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim())
        });
    match given {
        Some(token) if !expected.is_empty() && constant_time_eq(token.as_bytes(), expected) => {
            next.run(req).await
        }
        Some(_) => HttpError(ApiError::Unauthorized(
            "the bearer token is not this agent's internal token; send the cluster's internal token".into(),
        ))
        .into_response(),
        None => HttpError(ApiError::Unauthorized(
            "missing bearer token: the agent's API is internal, send `Authorization: Bearer <internal token>`".into(),
        ))
        .into_response(),
    }
}

/// Compares without stopping at the first difference (the token is a secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found(uri: Uri) -> HttpError {
    HttpError(ApiError::NotFound(format!(
        "no endpoint at {}; the agent serves /v1/apps/{{app}}/machines/..., /internal/v1/host, /internal/v1/images and /internal/v1/volumes/...",
        uri.path()
    )))
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let body = ErrorBody {
        error: format!("{method} is not allowed on {}", uri.path()),
        field: None,
        allowed: Vec::new(),
    };
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

/// Builds the list query from the raw pairs (`metadata.{key}=value` filters included).
fn list_query(pairs: Vec<(String, String)>) -> Result<ListMachinesQuery, ApiError> {
    let mut q = ListMachinesQuery::default();
    for (key, value) in pairs {
        match key.as_str() {
            "include_deleted" => {
                q.include_deleted = Some(match value.as_str() {
                    "true" | "1" => true,
                    "false" | "0" | "" => false,
                    other => {
                        return Err(ApiError::BadRequest(format!(
                            "include_deleted: `{other}` is not a boolean; use true or false"
                        )));
                    }
                })
            }
            "region" => q.region = Some(value),
            "state" => q.state = Some(value),
            other => {
                if let Some(k) = other.strip_prefix("metadata.") {
                    q.metadata.insert(k.to_string(), value);
                }
            }
        }
    }
    Ok(q)
}

// ---------------------------------------------------------------------------------------------
// Handlers

#[utoipa::path(
    get,
    path = "/v1/apps/{app}/machines",
    tag = TAG,
    operation_id = "Machines_list",
    summary = "List the app's machines",
    params(
        AppPath,
        ListMachinesQuery,
        ("metadata.{key}" = Option<String>, Query, description = "Only machines whose metadata `key` has this value (repeatable)"),
    ),
    responses(
        (status = 200, description = "The machines, oldest first", body = Vec<Machine>),
        (status = 400, description = "A bad filter", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
    )
)]
async fn machines_list(
    State(agent): State<Agent>,
    PathParams(p): PathParams<AppPath>,
    QueryParams(pairs): QueryParams<Vec<(String, String)>>,
) -> ApiResult<Vec<Machine>> {
    let query = list_query(pairs)?;
    Ok(Json(agent.list_machines(&p.app, &query)?))
}

#[utoipa::path(
    post,
    path = "/v1/apps/{app}/machines",
    tag = TAG,
    operation_id = "Machines_create",
    summary = "Create a machine (and start it unless skip_launch)",
    params(AppPath),
    request_body = CreateMachineRequest,
    responses(
        (status = 200, description = "The new machine (state `created`; it launches in the background: pulls its image, showing `image_pull`, then starts, or ends `failed` with an event saying why)", body = Machine),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 422, description = "An invalid value; `field` names it", body = ErrorBody),
        (status = 503, description = "The host has no room for the guest", body = ErrorBody),
    )
)]
async fn machines_create(
    State(agent): State<Agent>,
    PathParams(p): PathParams<AppPath>,
    caller: Caller,
    Body(req): Body<CreateMachineRequest>,
) -> ApiResult<Machine> {
    Ok(Json(agent.create_machine(&p.app, &caller, req).await?))
}

#[utoipa::path(
    get,
    path = "/v1/apps/{app}/machines/{id}",
    tag = TAG,
    operation_id = "Machines_show",
    summary = "Get a machine (destroyed ones too)",
    params(MachinePath),
    responses(
        (status = 200, description = "The machine", body = Machine),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such machine in the app", body = ErrorBody),
    )
)]
async fn machines_show(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
) -> ApiResult<Machine> {
    Ok(Json(agent.get_machine(&p.app, &p.id)?))
}

#[utoipa::path(
    post,
    path = "/v1/apps/{app}/machines/{id}",
    tag = TAG,
    operation_id = "Machines_update",
    summary = "Update a machine's config (a new version; a started machine restarts on it)",
    params(MachinePath, ("fly-machine-lease-nonce" = Option<String>, Header, description = "The lease's nonce, when one is held")),
    request_body = UpdateMachineRequest,
    responses(
        (status = 200, description = "The machine at its new version", body = Machine),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such machine in the app", body = ErrorBody),
        (status = 409, description = "Someone else holds the lease", body = ErrorBody),
        (status = 412, description = "current_version does not match, or the machine is destroyed", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 422, description = "An invalid value, or an image that cannot be pulled (the machine is left as it was); `field` names it", body = ErrorBody),
        (status = 500, description = "The new version could not start (the machine is `failed`)", body = ErrorBody),
        (status = 503, description = "The host has no room for the new guest size, or the registry does not answer (the machine is left as it was)", body = ErrorBody),
    )
)]
async fn machines_update(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    caller: Caller,
    Body(req): Body<UpdateMachineRequest>,
) -> ApiResult<Machine> {
    Ok(Json(
        agent.update_machine(&p.app, &p.id, &caller, req).await?,
    ))
}

#[utoipa::path(
    delete,
    path = "/v1/apps/{app}/machines/{id}",
    tag = TAG,
    operation_id = "Machines_delete",
    summary = "Destroy a machine",
    params(MachinePath, DestroyQuery, ("fly-machine-lease-nonce" = Option<String>, Header, description = "The lease's nonce, when one is held")),
    responses(
        (status = 200, description = "Destroyed", body = OkResponse),
        (status = 400, description = "A bad query", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such machine in the app", body = ErrorBody),
        (status = 409, description = "Someone else holds the lease", body = ErrorBody),
        (status = 412, description = "The machine is started and force is not set", body = ErrorBody),
    )
)]
async fn machines_delete(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    QueryParams(q): QueryParams<DestroyQuery>,
    caller: Caller,
) -> ApiResult<OkResponse> {
    let force = q.force.unwrap_or(false);
    Ok(Json(
        agent.destroy_machine(&p.app, &p.id, &caller, force).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/v1/apps/{app}/machines/{id}/start",
    tag = TAG,
    operation_id = "Machines_start",
    summary = "Start a machine (a started one is left as it is)",
    params(MachinePath, ("fly-machine-lease-nonce" = Option<String>, Header, description = "The lease's nonce, when one is held")),
    responses(
        (status = 200, description = "Started; the state it was in before", body = StartResponse),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such machine in the app", body = ErrorBody),
        (status = 409, description = "Someone else holds the lease", body = ErrorBody),
        (status = 412, description = "The machine is destroyed", body = ErrorBody),
        (status = 500, description = "The runtime could not start it (the machine is `failed`)", body = ErrorBody),
    )
)]
async fn machines_start(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    caller: Caller,
) -> ApiResult<StartResponse> {
    Ok(Json(agent.start_machine(&p.app, &p.id, &caller).await?))
}

#[utoipa::path(
    post,
    path = "/v1/apps/{app}/machines/{id}/stop",
    tag = TAG,
    operation_id = "Machines_stop",
    summary = "Stop a machine: the signal, then SIGKILL after the timeout",
    params(MachinePath, ("fly-machine-lease-nonce" = Option<String>, Header, description = "The lease's nonce, when one is held")),
    request_body(content = Option<StopRequest>, description = "Optional; defaults to config.stop_config, else SIGTERM and 5 s"),
    responses(
        (status = 200, description = "Stopped (or already not running; `note` says so)", body = OkResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such machine in the app", body = ErrorBody),
        (status = 409, description = "Someone else holds the lease", body = ErrorBody),
        (status = 412, description = "The machine is destroyed", body = ErrorBody),
        (status = 422, description = "An invalid signal or timeout", body = ErrorBody),
    )
)]
async fn machines_stop(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    caller: Caller,
    OptionalBody(req): OptionalBody<StopRequest>,
) -> ApiResult<OkResponse> {
    Ok(Json(agent.stop_machine(&p.app, &p.id, &caller, req).await?))
}

#[utoipa::path(
    post,
    path = "/v1/apps/{app}/machines/{id}/restart",
    tag = TAG,
    operation_id = "Machines_restart",
    summary = "Restart a started machine",
    params(MachinePath, RestartQuery, ("fly-machine-lease-nonce" = Option<String>, Header, description = "The lease's nonce, when one is held")),
    responses(
        (status = 200, description = "Restarted", body = OkResponse),
        (status = 400, description = "A bad query", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such machine in the app", body = ErrorBody),
        (status = 409, description = "Someone else holds the lease", body = ErrorBody),
        (status = 412, description = "The machine is not started", body = ErrorBody),
        (status = 422, description = "An invalid signal or timeout", body = ErrorBody),
        (status = 500, description = "The runtime could not start it again (the machine is `failed`)", body = ErrorBody),
    )
)]
async fn machines_restart(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    QueryParams(q): QueryParams<RestartQuery>,
    caller: Caller,
) -> ApiResult<OkResponse> {
    Ok(Json(
        agent.restart_machine(&p.app, &p.id, &caller, q).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/v1/apps/{app}/machines/{id}/signal",
    tag = TAG,
    operation_id = "Machines_signal",
    summary = "Send a signal to the machine's process",
    params(MachinePath, ("fly-machine-lease-nonce" = Option<String>, Header, description = "The lease's nonce, when one is held")),
    request_body = SignalRequest,
    responses(
        (status = 200, description = "Sent", body = OkResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such machine in the app", body = ErrorBody),
        (status = 409, description = "Someone else holds the lease", body = ErrorBody),
        (status = 412, description = "The machine is not started", body = ErrorBody),
        (status = 422, description = "An unknown signal", body = ErrorBody),
    )
)]
async fn machines_signal(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    caller: Caller,
    Body(req): Body<SignalRequest>,
) -> ApiResult<OkResponse> {
    Ok(Json(
        agent.signal_machine(&p.app, &p.id, &caller, req).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/v1/apps/{app}/machines/{id}/suspend",
    tag = TAG,
    operation_id = "Machines_suspend",
    summary = "Suspend a started machine (stopped instead when the backend cannot suspend)",
    params(MachinePath, ("fly-machine-lease-nonce" = Option<String>, Header, description = "The lease's nonce, when one is held")),
    responses(
        (status = 200, description = "Suspended, or stopped with a note", body = SuspendResponse),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such machine in the app", body = ErrorBody),
        (status = 409, description = "Someone else holds the lease", body = ErrorBody),
        (status = 412, description = "The machine is not started", body = ErrorBody),
    )
)]
async fn machines_suspend(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    caller: Caller,
) -> ApiResult<SuspendResponse> {
    Ok(Json(agent.suspend_machine(&p.app, &p.id, &caller).await?))
}

#[utoipa::path(
    get,
    path = "/v1/apps/{app}/machines/{id}/wait",
    tag = TAG,
    operation_id = "Machines_wait",
    summary = "Wait until the machine reaches a state",
    params(MachinePath, WaitQuery),
    responses(
        (status = 200, description = "The state was reached", body = WaitResponse),
        (status = 400, description = "A state that cannot be waited for, or a timeout outside 1..60", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such machine in the app", body = ErrorBody),
        (status = 408, description = "The timeout passed first", body = ErrorBody),
        (status = 412, description = "The machine was destroyed and can never reach the state", body = ErrorBody),
    )
)]
async fn machines_wait(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    QueryParams(q): QueryParams<WaitQuery>,
) -> ApiResult<WaitResponse> {
    Ok(Json(agent.wait_machine(&p.app, &p.id, q).await?))
}

#[utoipa::path(
    post,
    path = "/v1/apps/{app}/machines/{id}/lease",
    tag = TAG,
    operation_id = "Machines_create_lease",
    summary = "Take (or, with its nonce, refresh) the machine's lease",
    params(MachinePath, ("fly-machine-lease-nonce" = Option<String>, Header, description = "The nonce of the lease to refresh")),
    request_body(content = Option<LeaseRequest>, description = "Optional; ttl defaults to 30 s"),
    responses(
        (status = 200, description = "The lease", body = LeaseResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such machine in the app", body = ErrorBody),
        (status = 409, description = "Someone else holds the lease", body = ErrorBody),
        (status = 412, description = "The machine is destroyed", body = ErrorBody),
        (status = 422, description = "An invalid ttl", body = ErrorBody),
    )
)]
async fn machines_create_lease(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    caller: Caller,
    OptionalBody(req): OptionalBody<LeaseRequest>,
) -> ApiResult<LeaseResponse> {
    Ok(Json(
        agent.acquire_lease(&p.app, &p.id, &caller, req).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/v1/apps/{app}/machines/{id}/lease",
    tag = TAG,
    operation_id = "Machines_show_lease",
    summary = "The machine's current lease",
    params(MachinePath),
    responses(
        (status = 200, description = "The lease", body = LeaseResponse),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such machine, or no lease held", body = ErrorBody),
    )
)]
async fn machines_show_lease(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
) -> ApiResult<LeaseResponse> {
    Ok(Json(agent.get_lease(&p.app, &p.id)?))
}

#[utoipa::path(
    delete,
    path = "/v1/apps/{app}/machines/{id}/lease",
    tag = TAG,
    operation_id = "Machines_release_lease",
    summary = "Release the machine's lease",
    params(MachinePath, ("fly-machine-lease-nonce" = Option<String>, Header, description = "The lease's nonce")),
    responses(
        (status = 200, description = "Released (or none was held)", body = OkResponse),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such machine in the app", body = ErrorBody),
        (status = 409, description = "The nonce is not the lease's", body = ErrorBody),
    )
)]
async fn machines_release_lease(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    caller: Caller,
) -> ApiResult<OkResponse> {
    Ok(Json(agent.release_lease(&p.app, &p.id, &caller).await?))
}

#[utoipa::path(
    post,
    path = "/v1/apps/{app}/machines/{id}/cordon",
    tag = TAG,
    operation_id = "Machines_cordon",
    summary = "Take the machine out of proxy routing",
    params(MachinePath, ("fly-machine-lease-nonce" = Option<String>, Header, description = "The lease's nonce, when one is held")),
    responses(
        (status = 200, description = "Cordoned", body = OkResponse),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such machine in the app", body = ErrorBody),
        (status = 409, description = "Someone else holds the lease", body = ErrorBody),
        (status = 412, description = "The machine is destroyed", body = ErrorBody),
    )
)]
async fn machines_cordon(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    caller: Caller,
) -> ApiResult<OkResponse> {
    Ok(Json(
        agent.set_cordoned(&p.app, &p.id, &caller, true).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/v1/apps/{app}/machines/{id}/uncordon",
    tag = TAG,
    operation_id = "Machines_uncordon",
    summary = "Put the machine back into proxy routing",
    params(MachinePath, ("fly-machine-lease-nonce" = Option<String>, Header, description = "The lease's nonce, when one is held")),
    responses(
        (status = 200, description = "Uncordoned", body = OkResponse),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such machine in the app", body = ErrorBody),
        (status = 409, description = "Someone else holds the lease", body = ErrorBody),
        (status = 412, description = "The machine is destroyed", body = ErrorBody),
    )
)]
async fn machines_uncordon(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    caller: Caller,
) -> ApiResult<OkResponse> {
    Ok(Json(
        agent.set_cordoned(&p.app, &p.id, &caller, false).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/v1/apps/{app}/machines/{id}/metadata",
    tag = TAG,
    operation_id = "Machines_show_metadata",
    summary = "The machine's metadata",
    params(MachinePath),
    responses(
        (status = 200, description = "Key to value", body = BTreeMap<String, String>),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such machine in the app", body = ErrorBody),
    )
)]
async fn machines_show_metadata(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
) -> ApiResult<BTreeMap<String, String>> {
    Ok(Json(agent.metadata(&p.app, &p.id)?))
}

#[utoipa::path(
    post,
    path = "/v1/apps/{app}/machines/{id}/metadata/{key}",
    tag = TAG,
    operation_id = "Machines_update_metadata",
    summary = "Set one metadata key (no new version)",
    params(MetadataPath, ("fly-machine-lease-nonce" = Option<String>, Header, description = "The lease's nonce, when one is held")),
    request_body = MetadataValue,
    responses(
        (status = 204, description = "Set"),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such machine in the app", body = ErrorBody),
        (status = 409, description = "Someone else holds the lease", body = ErrorBody),
        (status = 412, description = "The machine is destroyed", body = ErrorBody),
        (status = 422, description = "An invalid key", body = ErrorBody),
    )
)]
async fn machines_update_metadata(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MetadataPath>,
    caller: Caller,
    Body(body): Body<MetadataValue>,
) -> Result<StatusCode, HttpError> {
    agent
        .write_metadata(&p.app, &p.id, &caller, p.key, Some(body.value))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/v1/apps/{app}/machines/{id}/metadata/{key}",
    tag = TAG,
    operation_id = "Machines_delete_metadata",
    summary = "Remove one metadata key",
    params(MetadataPath, ("fly-machine-lease-nonce" = Option<String>, Header, description = "The lease's nonce, when one is held")),
    responses(
        (status = 204, description = "Removed (or was not set)"),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such machine in the app", body = ErrorBody),
        (status = 409, description = "Someone else holds the lease", body = ErrorBody),
        (status = 412, description = "The machine is destroyed", body = ErrorBody),
        (status = 422, description = "An invalid key", body = ErrorBody),
    )
)]
async fn machines_delete_metadata(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MetadataPath>,
    caller: Caller,
) -> Result<StatusCode, HttpError> {
    agent
        .write_metadata(&p.app, &p.id, &caller, p.key, None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/v1/apps/{app}/machines/{id}/events",
    tag = TAG,
    operation_id = "Machines_list_events",
    summary = "Every event of the machine, newest first",
    params(MachinePath),
    responses(
        (status = 200, description = "The events", body = Vec<MachineEvent>),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such machine in the app", body = ErrorBody),
    )
)]
async fn machines_list_events(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
) -> ApiResult<Vec<MachineEvent>> {
    Ok(Json(agent.events(&p.app, &p.id)?))
}

#[utoipa::path(
    get,
    path = "/v1/apps/{app}/machines/{id}/versions",
    tag = TAG,
    operation_id = "Machines_list_versions",
    summary = "The machine's config versions, newest first",
    params(MachinePath),
    responses(
        (status = 200, description = "The versions", body = Vec<MachineVersion>),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such machine in the app", body = ErrorBody),
    )
)]
async fn machines_list_versions(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
) -> ApiResult<Vec<MachineVersion>> {
    Ok(Json(agent.versions(&p.app, &p.id)?))
}

#[utoipa::path(
    get,
    path = "/v1/apps/{app}/machines/{id}/ps",
    tag = TAG,
    operation_id = "Machines_list_processes",
    summary = "The processes in a started machine",
    params(MachinePath),
    responses(
        (status = 200, description = "The processes", body = Vec<ProcessInfo>),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such machine in the app", body = ErrorBody),
        (status = 412, description = "The machine is not started", body = ErrorBody),
    )
)]
async fn machines_list_processes(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
) -> ApiResult<Vec<ProcessInfo>> {
    Ok(Json(agent.ps(&p.app, &p.id).await?))
}

#[utoipa::path(
    post,
    path = "/v1/apps/{app}/machines/{id}/exec",
    tag = TAG,
    operation_id = "Machines_exec",
    summary = "Run a command in a started machine",
    params(MachinePath),
    request_body = ExecRequest,
    responses(
        (status = 200, description = "How the command ended and what it wrote", body = ExecResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such machine in the app", body = ErrorBody),
        (status = 412, description = "The machine is not started", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 422, description = "No command, or a timeout outside 1..300", body = ErrorBody),
    )
)]
async fn machines_exec(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    Body(req): Body<ExecRequest>,
) -> ApiResult<ExecResponse> {
    Ok(Json(agent.exec(&p.app, &p.id, req).await?))
}

#[utoipa::path(
    get,
    path = "/v1/apps/{app}/machines/{id}/logs",
    tag = TAG,
    operation_id = "Machines_logs",
    summary = "The machine's recent log lines, oldest first",
    params(MachinePath, LogsQuery),
    responses(
        (status = 200, description = "The log lines (the last 1000 at most)", body = Vec<LogLine>),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such machine in the app", body = ErrorBody),
    )
)]
async fn machines_logs(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    QueryParams(q): QueryParams<LogsQuery>,
) -> ApiResult<Vec<LogLine>> {
    Ok(Json(agent.logs(&p.app, &p.id, q.since).await?))
}

/// `GET /internal/v1/host`: internal only, so not part of [`MachinesApiDoc`] (the public API the
/// control plane publishes has no such path).
async fn host_show(State(agent): State<Agent>, headers: HeaderMap) -> Json<HostInfo> {
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
async fn machines_autostart(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
) -> ApiResult<OkResponse> {
    agent.autostart(&p.app, &p.id).await?;
    Ok(Json(OkResponse::ok()))
}

/// `GET /internal/v1/images`: the images on this host and the machines using each (internal:
/// operators reach it through the control plane, `GET /internal/v1/hosts/{host}/images`).
async fn images_list(State(agent): State<Agent>) -> ApiResult<Vec<HostImage>> {
    Ok(Json(agent.list_images().await?))
}

/// `POST /internal/v1/images/prune`: removes the images no machine (not destroyed) uses.
async fn images_prune(State(agent): State<Agent>) -> ApiResult<PruneImagesResponse> {
    Ok(Json(agent.prune_images().await?))
}

/// `POST /internal/v1/volumes/{id}`: makes the volume's encrypted disk on this host.
async fn volumes_make(
    State(agent): State<Agent>,
    PathParams(id): PathParams<String>,
    Body(req): Body<aloft_types::api::MakeVolumeRequest>,
) -> ApiResult<OkResponse> {
    agent.make_volume(&id, req).await?;
    Ok(Json(OkResponse::ok()))
}

/// `DELETE /internal/v1/volumes/{id}`: removes the volume's data and snapshots from this host.
async fn volumes_delete(
    State(agent): State<Agent>,
    PathParams(id): PathParams<String>,
) -> ApiResult<OkResponse> {
    agent.delete_volume(&id).await?;
    Ok(Json(OkResponse::ok()))
}

/// `POST /internal/v1/volumes/{id}/snapshots`: copies the volume's disk as a snapshot.
async fn volumes_snapshot(
    State(agent): State<Agent>,
    PathParams(id): PathParams<String>,
    Body(req): Body<aloft_types::api::TakeSnapshotRequest>,
) -> ApiResult<aloft_types::api::TakenSnapshot> {
    let size = agent.snapshot_volume(&id, &req.snapshot_id).await?;
    Ok(Json(aloft_types::api::TakenSnapshot { size }))
}
