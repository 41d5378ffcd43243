//! `/v1/apps/{app}/machines`: create and list here; every other machine path is forwarded to the
//! machine's host whatever its sub-path.

use super::extract::{Forwarded, PathParams, QueryParams};
use super::{PARTIAL_HEADER, Reply};
use crate::ControlPlane;
use crate::forward::AgentReply;
use crate::machines::Listing;
use crate::store::Caller;
use aloft_types::api::{CreateMachineRequest, ListMachinesQuery};
use aloft_types::{ErrorBody, Machine};
use axum::extract::State;
use axum::http::{HeaderValue, Uri};
use axum::response::{IntoResponse, Response};

/// List the app's machines, from every host that holds some. When a host does not answer, the
/// machines of the hosts that did are returned and the `x-aloft-partial` header names the others.
#[utoipa::path(
    get, path = "/v1/apps/{app}/machines", tag = "Machines", operation_id = "Machines_list",
    params(
        ("app" = String, Path, description = "The app's name"),
        ("include_deleted" = Option<bool>, Query, description = "Include destroyed machines"),
        ("region" = Option<String>, Query, description = "Only machines in this region"),
        ("state" = Option<String>, Query, description = "Only machines in these states (comma-separated)", pattern = "^((creating|created|starting|started|stopping|stopped|restarting|suspending|suspended|updating|replacing|replaced|destroying|destroyed|failed|launch_failed)(,(creating|created|starting|started|stopping|stopped|restarting|suspending|suspended|updating|replacing|replaced|destroying|destroyed|failed|launch_failed))*)?$"),
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
    PathParams(app): PathParams<String>,
    QueryParams(query): QueryParams<ListMachinesQuery>,
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
    PathParams(app): PathParams<String>,
    Forwarded(req): Forwarded,
) -> Reply<AgentReply> {
    Ok(cp.create_machine(&caller, &app, req).await?)
}

/// `/v1/apps/{app}/machines/{id}` (get, update, destroy): forwarded to the machine's host.
pub(super) async fn machine(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams((app, id)): PathParams<(String, String)>,
    Forwarded(req): Forwarded,
) -> Reply<AgentReply> {
    Ok(cp.forward_machine(&caller, &app, &id, None, req).await?)
}

/// `/v1/apps/{app}/machines/{id}/...` (every operation on a machine): forwarded to its host.
pub(super) async fn machine_sub_path(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams((app, id, rest)): PathParams<(String, String, String)>,
    Forwarded(req): Forwarded,
) -> Reply<AgentReply> {
    Ok(cp
        .forward_machine(&caller, &app, &id, Some(&rest), req)
        .await?)
}
