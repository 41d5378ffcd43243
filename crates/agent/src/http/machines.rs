//! The machine endpoints of the Machines API (`/v1/apps/{app}/machines/...`), each with its
//! OpenAPI description: read the request, call one [`Agent`] method, write the answer. No state.

use super::extract::{ApiResult, Body, HttpError, OptionalBody, PathParams, QueryParams};
use crate::agent::Agent;
use crate::machine::Caller;
use aloft_types::api::{
    CreateMachineRequest, DestroyQuery, ExecRequest, ExecResponse, LeaseRequest, LeaseResponse,
    ListMachinesQuery, LogLine, LogsQuery, MachineVersion, MetadataValue, OkResponse, ProcessInfo,
    RestartQuery, SignalRequest, StartResponse, StopRequest, SuspendResponse, UpdateMachineRequest,
    WaitQuery, WaitResponse,
};
use aloft_types::{ApiError, ErrorBody, Machine, MachineEvent};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use std::collections::BTreeMap;
use utoipa::IntoParams;

/// The OpenAPI tag of every machine endpoint.
const TAG: &str = "Machines";

/// `{app}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct AppPath {
    /// The app's name.
    pub app: String,
}

/// `{app}` and `{id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct MachinePath {
    /// The app's name.
    pub app: String,
    /// The machine's id (14 hex characters).
    pub id: String,
}

/// `{app}`, `{id}` and a metadata `{key}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct MetadataPath {
    /// The app's name.
    pub app: String,
    /// The machine's id (14 hex characters).
    pub id: String,
    /// The metadata key.
    pub key: String,
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
pub(super) async fn machines_list(
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
pub(super) async fn machines_create(
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
pub(super) async fn machines_show(
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
pub(super) async fn machines_update(
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
pub(super) async fn machines_delete(
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
pub(super) async fn machines_start(
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
pub(super) async fn machines_stop(
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
pub(super) async fn machines_restart(
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
pub(super) async fn machines_signal(
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
pub(super) async fn machines_suspend(
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
pub(super) async fn machines_wait(
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
pub(super) async fn machines_create_lease(
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
pub(super) async fn machines_show_lease(
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
pub(super) async fn machines_release_lease(
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
pub(super) async fn machines_cordon(
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
pub(super) async fn machines_uncordon(
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
pub(super) async fn machines_show_metadata(
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
pub(super) async fn machines_update_metadata(
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
pub(super) async fn machines_delete_metadata(
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
pub(super) async fn machines_list_events(
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
pub(super) async fn machines_list_versions(
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
pub(super) async fn machines_list_processes(
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
pub(super) async fn machines_exec(
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
pub(super) async fn machines_logs(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    QueryParams(q): QueryParams<LogsQuery>,
) -> ApiResult<Vec<LogLine>> {
    Ok(Json(agent.logs(&p.app, &p.id, q.since).await?))
}
