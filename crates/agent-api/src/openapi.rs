//! The OpenAPI document of the agent's machine endpoints ([`MachinesApiDoc`]), from the
//! descriptions on the stub operations in [`crate::operations`]. No state.

use crate::operations::*;
use aloft_types::api::{
    CreateMachineRequest, ExecRequest, ExecResponse, LeaseRequest, LeaseResponse, ListenSocket,
    LogLine, MachineVersion, MetadataValue, OkResponse, ProcessStat, SignalRequest, StartResponse,
    StopRequest, SuspendResponse, UpdateMachineRequest, WaitResponse,
};
use aloft_types::{ErrorBody, Machine, MachineEvent};

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
        ProcessStat,
        ListenSocket,
        LogLine,
        ErrorBody,
    )),
    tags((name = "Machines", description = "Create machines and drive their lifecycle: start, stop, update, wait, lease, exec."))
)]
pub struct MachinesApiDoc;
