//! The machine endpoints as OpenAPI operations: one stub function per endpoint carries its
//! `#[utoipa::path]` description (method, path, parameters, bodies, every status it answers), so
//! [`MachinesApiDoc`](crate::MachinesApiDoc) is built here without linking the agent. The agent's
//! handlers (`aloft_agent::http`) implement them on the same paths ([`crate::paths`]); a test
//! checks every path here is one of those.
//!
//! The stubs have no doc comments on purpose: utoipa would copy them into the document, which is
//! checked in (`openapi/machines-api.json`) and must not change. The summary in each annotation
//! says what the operation does. No state.

use crate::params::{AppPath, MachinePath, MetadataPath};
use aloft_types::api::{
    CreateMachineRequest, DestroyQuery, ExecRequest, ExecResponse, LeaseRequest, LeaseResponse,
    ListMachinesQuery, LogLine, LogsQuery, MachineVersion, MetadataValue, OkResponse, ProcessStat,
    RestartQuery, SignalRequest, StartResponse, StopRequest, SuspendResponse, UpdateMachineRequest,
    WaitQuery, WaitResponse,
};
use aloft_types::{ErrorBody, Machine, MachineEvent};

/// The OpenAPI tag of every machine endpoint.
const TAG: &str = "Machines";

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
pub fn machines_list() {}

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
pub fn machines_create() {}

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
pub fn machines_show() {}

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
pub fn machines_update() {}

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
pub fn machines_delete() {}

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
pub fn machines_start() {}

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
pub fn machines_stop() {}

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
pub fn machines_restart() {}

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
pub fn machines_signal() {}

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
pub fn machines_suspend() {}

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
pub fn machines_wait() {}

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
pub fn machines_create_lease() {}

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
pub fn machines_show_lease() {}

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
pub fn machines_release_lease() {}

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
pub fn machines_cordon() {}

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
pub fn machines_uncordon() {}

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
pub fn machines_show_metadata() {}

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
pub fn machines_update_metadata() {}

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
pub fn machines_delete_metadata() {}

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
pub fn machines_list_events() {}

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
pub fn machines_list_versions() {}

#[utoipa::path(
    get,
    path = "/v1/apps/{app}/machines/{id}/ps",
    tag = TAG,
    operation_id = "Machines_list_processes",
    summary = "The processes in a started machine",
    params(MachinePath),
    responses(
        (status = 200, description = "The processes", body = Vec<ProcessStat>),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such machine in the app", body = ErrorBody),
        (status = 412, description = "The machine is not started", body = ErrorBody),
    )
)]
pub fn machines_list_processes() {}

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
pub fn machines_exec() {}

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
pub fn machines_logs() {}
