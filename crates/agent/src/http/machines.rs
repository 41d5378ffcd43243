//! The machine endpoints of the Machines API (`/v1/apps/{app}/machines/...`): read the request,
//! call one [`Agent`] method, write the answer. Their paths, parameters and OpenAPI descriptions
//! are in `aloft_agent_api` (`paths`, `params`, `operations`). No state.

use super::extract::{ApiResult, Body, HttpError, OptionalBody, PathParams, QueryParams};
use crate::agent::Agent;
use crate::machine::Caller;
use aloft_agent_api::params::{AppPath, MachinePath, MetadataPath};
use aloft_types::api::{
    CreateMachineRequest, DestroyQuery, ExecRequest, ExecResponse, LeaseQuery, LeaseRequest,
    LeaseResponse, ListMachinesQuery, LogLine, LogsQuery, MachineVersion, MetadataValue,
    OkResponse, ProcessStat, RestartQuery, SignalRequest, StartResponse, StopRequest,
    SuspendResponse, UpdateMachineRequest, WaitQuery, WaitResponse,
};
use aloft_types::{ApiError, Machine, MachineEvent};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use std::collections::BTreeMap;

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

/// Builds the wait query from the raw pairs as the reference's clients send them: `state` once,
/// repeated or comma-separated (kept comma-separated), `version` for `instance_id`; other keys
/// are ignored.
fn wait_query(pairs: Vec<(String, String)>) -> WaitQuery {
    let mut q = WaitQuery::default();
    let mut states: Vec<String> = Vec::new();
    for (key, value) in pairs {
        match key.as_str() {
            "state" => states.push(value),
            "timeout" => q.timeout = Some(value),
            "instance_id" | "version" if !value.is_empty() => q.instance_id = Some(value),
            "from_event_id" => q.from_event_id = Some(value),
            _ => {}
        }
    }
    if !states.is_empty() {
        q.state = Some(states.join(","));
    }
    q
}

// ---------------------------------------------------------------------------------------------
// Handlers

pub(super) async fn machines_list(
    State(agent): State<Agent>,
    PathParams(p): PathParams<AppPath>,
    QueryParams(pairs): QueryParams<Vec<(String, String)>>,
) -> ApiResult<Vec<Machine>> {
    let query = list_query(pairs)?;
    Ok(Json(agent.list_machines(&p.app, &query)?))
}

pub(super) async fn machines_create(
    State(agent): State<Agent>,
    PathParams(p): PathParams<AppPath>,
    caller: Caller,
    Body(req): Body<CreateMachineRequest>,
) -> ApiResult<Machine> {
    Ok(Json(agent.create_machine(&p.app, &caller, req).await?))
}

pub(super) async fn machines_show(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
) -> ApiResult<Machine> {
    Ok(Json(agent.get_machine(&p.app, &p.id)?))
}

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

pub(super) async fn machines_delete(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    QueryParams(q): QueryParams<DestroyQuery>,
    caller: Caller,
) -> ApiResult<OkResponse> {
    let force = q.force.or(q.kill).unwrap_or(false);
    Ok(Json(
        agent.destroy_machine(&p.app, &p.id, &caller, force).await?,
    ))
}

pub(super) async fn machines_start(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    caller: Caller,
) -> ApiResult<StartResponse> {
    Ok(Json(agent.start_machine(&p.app, &p.id, &caller).await?))
}

pub(super) async fn machines_stop(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    caller: Caller,
    OptionalBody(req): OptionalBody<StopRequest>,
) -> ApiResult<OkResponse> {
    Ok(Json(agent.stop_machine(&p.app, &p.id, &caller, req).await?))
}

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

pub(super) async fn machines_suspend(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    caller: Caller,
) -> ApiResult<SuspendResponse> {
    Ok(Json(agent.suspend_machine(&p.app, &p.id, &caller).await?))
}

pub(super) async fn machines_wait(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    QueryParams(pairs): QueryParams<Vec<(String, String)>>,
) -> ApiResult<WaitResponse> {
    let q = wait_query(pairs);
    Ok(Json(agent.wait_machine(&p.app, &p.id, q).await?))
}

pub(super) async fn machines_create_lease(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    caller: Caller,
    QueryParams(query): QueryParams<LeaseQuery>,
    OptionalBody(req): OptionalBody<LeaseRequest>,
) -> ApiResult<LeaseResponse> {
    // The body's TTL, else the query's (`?ttl=120`, as flyctl sends it).
    let req = LeaseRequest {
        ttl: req.ttl.or(query.ttl),
        ..req
    };
    Ok(Json(
        agent.acquire_lease(&p.app, &p.id, &caller, req).await?,
    ))
}

pub(super) async fn machines_show_lease(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
) -> ApiResult<LeaseResponse> {
    Ok(Json(agent.get_lease(&p.app, &p.id)?))
}

pub(super) async fn machines_release_lease(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    caller: Caller,
) -> ApiResult<OkResponse> {
    Ok(Json(agent.release_lease(&p.app, &p.id, &caller).await?))
}

pub(super) async fn machines_cordon(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    caller: Caller,
) -> ApiResult<OkResponse> {
    Ok(Json(
        agent.set_cordoned(&p.app, &p.id, &caller, true).await?,
    ))
}

pub(super) async fn machines_uncordon(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    caller: Caller,
) -> ApiResult<OkResponse> {
    Ok(Json(
        agent.set_cordoned(&p.app, &p.id, &caller, false).await?,
    ))
}

pub(super) async fn machines_show_metadata(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
) -> ApiResult<BTreeMap<String, String>> {
    Ok(Json(agent.metadata(&p.app, &p.id)?))
}

pub(super) async fn machines_update_metadata(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MetadataPath>,
    Body(body): Body<MetadataValue>,
) -> Result<StatusCode, HttpError> {
    agent
        .write_metadata(&p.app, &p.id, p.key, Some(body.value))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn machines_delete_metadata(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MetadataPath>,
) -> Result<StatusCode, HttpError> {
    agent.write_metadata(&p.app, &p.id, p.key, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn machines_list_events(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
) -> ApiResult<Vec<MachineEvent>> {
    Ok(Json(agent.events(&p.app, &p.id)?))
}

pub(super) async fn machines_list_versions(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
) -> ApiResult<Vec<MachineVersion>> {
    Ok(Json(agent.versions(&p.app, &p.id)?))
}

pub(super) async fn machines_list_processes(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
) -> ApiResult<Vec<ProcessStat>> {
    Ok(Json(agent.ps(&p.app, &p.id).await?))
}

pub(super) async fn machines_exec(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    Body(req): Body<ExecRequest>,
) -> ApiResult<ExecResponse> {
    Ok(Json(agent.exec(&p.app, &p.id, req).await?))
}

pub(super) async fn machines_logs(
    State(agent): State<Agent>,
    PathParams(p): PathParams<MachinePath>,
    QueryParams(q): QueryParams<LogsQuery>,
) -> ApiResult<Vec<LogLine>> {
    Ok(Json(agent.logs(&p.app, &p.id, q.since).await?))
}
