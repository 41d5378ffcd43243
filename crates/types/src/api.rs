//! Request and response bodies of the Machines API (and of the internal agent API, which uses the
//! same bodies).

use crate::config::MachineConfig;
use crate::signal::Signal;
use crate::state::MachineState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

mod volumes;
pub use volumes::*;

/// The header naming the hosts that did not answer a listing (the list is partial).
pub const PARTIAL_HEADER: &str = "x-aloft-partial";

/// The header that carries a lease's nonce on writes.
pub const LEASE_NONCE_HEADER: &str = "fly-machine-lease-nonce";

/// `POST /v1/apps`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateAppRequest {
    /// The app's name (`name`, as the reference's clients send it, is the same).
    #[serde(alias = "name")]
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub app_name: String,
    /// Defaults to the token's org.
    #[serde(default)]
    pub org_slug: Option<String>,
    /// The reference's `network` (custom 6PN network name); accepted and ignored.
    #[serde(default)]
    pub network: Option<String>,
}

/// `POST /v1/apps/{app}/secrets`: change secrets, all or none, in the reference's form
/// (`values`; a `null` value removes that secret).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct SetSecretsRequest {
    /// Name to value; `null` removes the secret. Names are environment variable names.
    #[schema(schema_with = secret_map)]
    pub values: BTreeMap<String, Option<String>>,
}

/// A secret's name: an environment variable's (names starting `FLY_` or `ALOFT_` are the
/// platform's and refused too).
pub const SECRET_NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";

/// The schema of `values`: at least one secret name, each to a value or `null`.
fn secret_map() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, SchemaType, Type};
    let value = ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null]));
    let name = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(SECRET_NAME_PATTERN));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::from(value)))
        .property_names(Some(name))
        .min_properties(Some(1))
        .build()
}

/// `POST /v1/apps/{app}/secrets/{name}`: set one secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SetSecretRequest {
    pub value: String,
}

/// A secret as shown: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Secret {
    pub name: String,
    /// The first 16 hex digits of the value's SHA-256: tells two values apart without showing them.
    pub digest: String,
    /// RFC 3339: when it was first set.
    pub created_at: String,
    /// RFC 3339: when its value was last set.
    pub updated_at: String,
}

/// The app's secrets (names and digests) and their version: `GET /v1/apps/{app}/secrets` and
/// the answer to a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppSecrets {
    pub secrets: Vec<Secret>,
    /// The version of the app's secrets: 1 more after every change (0: never changed).
    pub version: u64,
}

/// `POST /v1/apps/{app}/secrets/{name}`: the secret set, and the version of the app's secrets
/// that has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SetSecretResponse {
    pub name: String,
    pub digest: String,
    pub created_at: String,
    pub updated_at: String,
    pub version: u64,
}

/// `DELETE /v1/apps/{app}/secrets/{name}`: the version of the app's secrets without it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecretsVersion {
    pub version: u64,
}

/// `GET /v1/apps/{app}/secrets[/{name}]?version=&show_secrets=`: both are the reference's and
/// accepted but change nothing. aloft's store is one database, so every read has the newest
/// version; and the public API never shows secret values, `show_secrets` or not.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SecretsQuery {
    pub version: Option<i64>,
    pub show_secrets: Option<String>,
}

/// `PUT /v1/registry-logins/{host}`: store the org's credentials for a third-party registry
/// (`aloft registry login`). Machines of the org pulling from exactly that host use them.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryLoginRequest {
    #[schema(min_length = 1)]
    pub username: String,
    /// Sealed at rest; never shown again.
    #[schema(min_length = 1)]
    pub password: String,
}

impl std::fmt::Debug for RegistryLoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryLoginRequest")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A stored registry login as listed: the host and username, never the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RegistryLogin {
    /// The registry host (and port), lower case: `ghcr.io`, `registry.example.com:5000`.
    pub host: String,
    pub username: String,
    /// RFC 3339: when it was last stored.
    pub created_at: String,
}

/// `POST /v1/apps/{app}/releases`: a deploy begins (`aloft deploy` records one per deploy).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateReleaseRequest {
    /// The image every machine of the release runs.
    #[schema(pattern = "\\S")]
    pub image: String,
    /// `rolling`, `immediate`, `canary` or `bluegreen`.
    #[schema(pattern = "^(rolling|immediate|canary|bluegreen)$")]
    pub strategy: String,
    /// What the release is, in the deployer's words.
    #[serde(default)]
    pub description: Option<String>,
    /// The app's config file as deployed (fly.toml's text, at most 64 KiB):
    /// `GET /v1/apps/{app}/config` gives back the newest complete release's
    /// (`aloft config save`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

/// `GET /v1/apps/{app}/config`: the config file the app's newest complete release deployed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeployedConfig {
    /// The release that deployed it.
    pub version: u32,
    /// The file's text (fly.toml), with `app` set to the app.
    pub config: String,
    /// RFC 3339: when that release began.
    pub created_at: String,
}

/// `PATCH /v1/apps/{app}/releases/{version}`: how a running release's deploy ended.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateReleaseRequest {
    /// Anything but `running`.
    #[schema(schema_with = finished_status)]
    pub status: ReleaseStatus,
    /// Why it failed, was rolled back or interrupted.
    #[serde(default)]
    pub reason: Option<String>,
}

/// How a release may end: a [`ReleaseStatus`] but `running`.
fn finished_status() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["complete", "failed", "rolled_back", "interrupted"]))
        .build()
}

/// Where a release's deploy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    /// Being deployed.
    Running,
    /// Every machine runs it.
    Complete,
    /// A step failed and there was nothing to roll back to (the app's first release).
    Failed,
    /// A step failed and the machines it had changed went back to the previous release.
    RolledBack,
    /// Stopped by the deployer (Ctrl-C): machines already changed run it, the others the
    /// previous release.
    Interrupted,
}

impl ReleaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseStatus::Running => "running",
            ReleaseStatus::Complete => "complete",
            ReleaseStatus::Failed => "failed",
            ReleaseStatus::RolledBack => "rolled_back",
            ReleaseStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Running,
            Self::Complete,
            Self::Failed,
            Self::RolledBack,
            Self::Interrupted,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// One deploy of an app: version `n` is the app's n-th.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Release {
    pub version: u32,
    pub app: String,
    pub image: String,
    pub strategy: String,
    pub status: ReleaseStatus,
    pub description: Option<String>,
    pub reason: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339: when the status last changed.
    pub updated_at: String,
}

/// An app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct App {
    pub id: String,
    pub name: String,
    pub organization: OrgRef,
    pub status: String,
    pub machine_count: u32,
    pub network: String,
    pub created_at: String,
}

/// `GET /v1/apps/{app}/ip_assignments`: the app's own IP addresses (aloft gives none).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct IpAssignments {
    pub ips: Vec<serde_json::Value>,
}

/// `POST /v1/apps/{app}/ip_assignments` (fly-go's `AssignIPRequest`); refused with a 422.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct AssignIpRequest {
    /// `v6`, `shared_v4`, `private_v6`, ...
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub org_slug: Option<String>,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub service_name: Option<String>,
}

/// `GET /v1/orgs`: the orgs the token may act in (its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrgList {
    pub orgs: Vec<OrgRef>,
}

/// An org as it appears inside other objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrgRef {
    pub name: String,
    pub slug: String,
}

/// `GET /v1/apps`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AppList {
    pub total_apps: u32,
    pub apps: Vec<App>,
}

/// `GET /v1/apps?org_slug=`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
pub struct ListAppsQuery {
    pub org_slug: Option<String>,
}

/// `POST /v1/apps/{app}/machines`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateMachineRequest {
    pub config: MachineConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Create the machine without starting it (state `created`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_launch: bool,
    /// Take a lease of this many seconds on the new machine; its nonce comes back as `nonce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ttl: Option<u64>,
    /// Accepted for compatibility; there is no service registration step to skip.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_service_registration: bool,
}

/// `POST /v1/apps/{app}/machines/{id}` (update): a full new config, making a new version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UpdateMachineRequest {
    pub config: MachineConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Must match the region the machine is in, if given (machines do not move).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Do not run the new version: a started machine ends `stopped` instead of being restarted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_launch: bool,
    /// Refuse the update (412) unless this is the machine's current `instance_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ttl: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_service_registration: bool,
}

/// `GET /v1/apps/{app}/machines` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListMachinesQuery {
    /// Include destroyed machines.
    #[serde(default)]
    pub include_deleted: Option<bool>,
    pub region: Option<String>,
    /// A comma-separated list of states.
    #[param(
        pattern = "^((creating|created|starting|started|stopping|stopped|restarting|suspending|suspended|updating|replacing|replaced|destroying|destroyed|failed|launch_failed)(,(creating|created|starting|started|stopping|stopped|restarting|suspending|suspended|updating|replacing|replaced|destroying|destroyed|failed|launch_failed))*)?$"
    )]
    pub state: Option<String>,
    /// `metadata.{key}=value` filters are read from the raw query string.
    #[serde(skip)]
    #[param(ignore)]
    pub metadata: BTreeMap<String, String>,
}

/// `POST .../stop` body (all optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct StopRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<Signal>,
    /// `"30s"` or a number of seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<crate::config::DurationStr>,
}

/// `POST .../restart` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RestartQuery {
    /// The signal that stops the machine (default: its `stop_config`'s); empty is the default.
    #[param(value_type = Option<crate::signal::Signal>)]
    pub signal: Option<String>,
    /// `"30s"` or a number of seconds; empty is the default.
    #[param(value_type = Option<crate::config::DurationStr>)]
    pub timeout: Option<String>,
    pub force_stop: Option<bool>,
}

/// `POST .../signal` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SignalRequest {
    pub signal: Signal,
}

/// `DELETE .../{id}` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DestroyQuery {
    /// Kill a started machine instead of refusing.
    pub force: Option<bool>,
    /// The same as `force` (what the reference's clients send).
    pub kill: Option<bool>,
}

/// `POST .../lease` query: the reference's clients give the TTL here (`?ttl=120`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LeaseQuery {
    /// Seconds the lease lasts, when the body gives none.
    #[param(minimum = 1, maximum = 86400)]
    pub ttl: Option<u64>,
}

/// `GET .../wait` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// `started` (default), `stopped`, `suspended`, `destroyed`, or `settled` (any state the
    /// machine rests in); several (repeated, or separated by commas) wait for the first reached.
    #[param(
        pattern = "^((started|stopped|suspended|destroyed|settled)(,(started|stopped|suspended|destroyed|settled))*)?$"
    )]
    pub state: Option<String>,
    /// Seconds, 1 to 60 (default 60).
    pub timeout: Option<String>,
    /// Wait for this version of the machine (`version` is the same).
    pub instance_id: Option<String>,
    /// Accepted for compatibility with the reference's clients.
    pub from_event_id: Option<String>,
}

/// The reply to a successful wait.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WaitResponse {
    pub ok: bool,
    pub state: MachineState,
}

/// `{"ok": true}`, with a note when the operation was not done exactly as asked.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OkResponse {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl OkResponse {
    pub fn ok() -> Self {
        Self {
            ok: true,
            note: None,
        }
    }
}

/// `POST .../start` reply.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StartResponse {
    pub previous_state: MachineState,
}

/// `POST .../suspend` reply: `suspended` is false when the backend could not suspend and the
/// machine was stopped instead (the note says so).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SuspendResponse {
    pub ok: bool,
    pub suspended: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `POST .../lease` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct LeaseRequest {
    /// Seconds the lease lasts (default 30).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub ttl: Option<u64>,
    #[serde(default)]
    pub description: Option<String>,
}

/// A lease on a machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Lease {
    pub nonce: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub owner: String,
    #[serde(default)]
    pub description: String,
    pub version: String,
}

/// The reply of the lease endpoints: `{"status": "success", "data": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaseResponse {
    pub status: String,
    pub data: Lease,
}

/// `POST .../metadata/{key}` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MetadataValue {
    pub value: String,
}

/// `POST .../exec` body: `command`, or the reference's older `cmd` (see its schema below).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecRequest {
    /// The program and its arguments.
    #[serde(default)]
    pub command: Vec<String>,
    /// The reference's older form: one string, split on whitespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    /// Seconds (default 30, at most 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
}

/// An exec body names its program: a non-empty `command`, or a `cmd` with something in it.
impl utoipa::PartialSchema for ExecRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AllOfBuilder, AnyOfBuilder, ArrayBuilder, ObjectBuilder, SchemaType, Type,
        };
        let string = || ObjectBuilder::new().schema_type(Type::String);
        let command = || ArrayBuilder::new().items(string()).min_items(Some(1));
        let cmd = string().pattern(Some("\\S"));
        let body = ObjectBuilder::new()
            .property(
                "command",
                command().description(Some("The program and its arguments.")),
            )
            .property(
                "cmd",
                string()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .description(Some(
                        "The reference's older form: one string, split on whitespace.",
                    )),
            )
            .property(
                "timeout",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
                    .minimum(Some(1))
                    .maximum(Some(300))
                    .description(Some("Seconds (default 30, at most 300).")),
            )
            .property(
                "stdin",
                ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null])),
            );
        let names = AnyOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .property("command", command())
                    .required("command"),
            )
            .item(ObjectBuilder::new().property("cmd", cmd).required("cmd"));
        AllOfBuilder::new().item(body).item(names).into()
    }
}

impl ToSchema for ExecRequest {}

impl ExecRequest {
    /// The argv to run.
    pub fn argv(&self) -> Vec<String> {
        if !self.command.is_empty() {
            self.command.clone()
        } else {
            self.cmd
                .as_deref()
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect()
        }
    }
}

/// `POST .../exec` reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecResponse {
    pub exit_code: i32,
    pub exit_signal: i32,
    pub stdout: String,
    pub stderr: String,
    /// The command wrote more than 1 MiB to stdout or stderr: each holds its first MiB only,
    /// and the command was ended when it passed that.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// The most of each of stdout and stderr an exec keeps (1 MiB).
pub const EXEC_OUTPUT_CAP: usize = 1 << 20;

/// One version of a machine's config (`GET .../versions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MachineVersion {
    pub version: String,
    pub user_config: MachineConfig,
    pub created_at: String,
}

/// A line of a machine's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub stream: String,
    pub message: String,
}

/// `GET /v1/apps/{app}/machines/{id}/logs` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Only lines at or after this time (milliseconds since the Unix epoch): what a client
    /// following the log asks for after its first call.
    pub since: Option<i64>,
}

/// A process in a machine (`GET .../ps`), in the reference's shape (fly-go's `ProcessStat`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProcessStat {
    pub pid: i32,
    /// When the process started, in seconds since the Unix epoch.
    pub stime: u64,
    /// How long it has run, in seconds.
    pub rtime: u64,
    /// Its command line, arguments separated by spaces.
    pub command: String,
    /// Its working directory (empty when it cannot be read).
    pub directory: String,
    /// The share of one CPU it used over its life, in percent (as `ps` shows `%CPU`).
    pub cpu: u64,
    /// Its resident memory, in bytes.
    pub rss: u64,
    /// The sockets it listens on (TCP) or is bound to (UDP).
    pub listen_sockets: Vec<ListenSocket>,
}

/// A socket a process listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ListenSocket {
    /// `tcp` or `udp`.
    pub proto: String,
    /// `address:port`, an IPv6 address in brackets (`[::]:8080`).
    pub address: String,
}

/// A region (`GET /v1/platform/regions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Region {
    pub code: String,
    pub name: String,
    pub latitude: f64,
    pub longitude: f64,
    /// Hosts serving this region.
    pub hosts: u32,
    /// Free capacity across them.
    pub free_cpus: u32,
    pub free_memory_mb: u64,
}

/// `GET /v1/platform/regions` reply.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegionList {
    pub regions: Vec<Region>,
    /// The region nearest the caller: the default region (where a create naming none goes).
    pub nearest: String,
}

/// `POST /v1/platform/placements` body: where `count` machines of a size (and a volume) would go.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PlacementRequest {
    /// The machines' size (`cpus`, `memory_mb`; the rest is ignored) [default: 1 shared CPU,
    /// 256 MB].
    #[serde(default, deserialize_with = "object_or_null")]
    pub compute: Option<PlacementCompute>,
    /// Regions to prefer, comma-separated [default: any].
    #[serde(default)]
    pub region: Option<String>,
    /// How many machines [default: 1].
    #[serde(default)]
    #[schema(minimum = 0, maximum = 65535)]
    pub count: Option<u16>,
    /// Must be the caller's own org, if given.
    #[serde(default)]
    pub org_slug: Option<String>,
}

/// The size part of a [`PlacementRequest`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PlacementCompute {
    #[serde(default)]
    #[schema(minimum = 0, maximum = 65535)]
    pub cpus: Option<u16>,
    #[serde(default)]
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 4294967295_u64)]
    pub memory_mb: Option<u32>,
}

/// A struct given as a JSON object (or `null`): never as an array, serde's positional form,
/// which the schema does not allow.
fn object_or_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::de::Error;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        v @ serde_json::Value::Object(_) => serde_json::from_value(v)
            .map(Some)
            .map_err(D::Error::custom),
        other => Err(D::Error::custom(format!(
            "invalid type: {}, expected an object",
            match other {
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Number(_) => "a number",
                _ => "a string",
            }
        ))),
    }
}

/// `POST /v1/platform/placements` reply: regions with how many of the machines go there.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlacementList {
    pub regions: Vec<RegionPlacement>,
}

/// How many machines a region takes, and how many of that size it has room for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RegionPlacement {
    pub region: String,
    pub count: u64,
    pub concurrency: u64,
}

/// What a host agent tells the control plane about itself (internal API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HostInfo {
    pub id: String,
    pub region: String,
    /// Where the control plane reaches the agent's internal API (`http://host:port`).
    pub address: String,
    pub runtime: String,
    pub cpus: u32,
    pub memory_mb: u64,
    pub allocated_cpus: u32,
    pub allocated_memory_mb: u64,
}

/// `POST /internal/v1/hosts/{host}/number` reply: the host part of its machines' 6PN addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostNumber {
    pub host: String,
    pub number: u32,
}

/// `PUT /internal/v1/mesh/{host}` body: how other hosts reach this one over the mesh. The host
/// must have asked for its number first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MeshJoin {
    pub region: String,
    /// Its WireGuard public key (32 bytes, base64).
    pub public_key: String,
    /// Its WireGuard UDP address, `ip:port`.
    pub endpoint: String,
}

/// A member of the mesh between hosts (`GET /internal/v1/mesh`); number 0 is the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MeshPeer {
    pub host: String,
    pub number: u32,
    pub region: String,
    pub public_key: String,
    pub endpoint: String,
}

/// One of `GET /internal/v1/certificates`: a hostname an app is served at, with the certificate
/// and key a user uploaded (PEM), or none for a managed certificate (hosts' proxies then issue
/// one from their development CA).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProxyCertificate {
    pub hostname: String,
    pub app: String,
    #[serde(default)]
    pub certificate: Option<String>,
    #[serde(default)]
    pub private_key: Option<String>,
}

/// `POST /internal/v1/tokens/verify` body: which org does this API token belong to? Other
/// cluster services (a registry on another host) use it to authenticate org tokens.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyTokenRequest {
    pub token: String,
}

/// `POST /internal/v1/tokens/verify` reply (404 when the token is unknown, revoked or expired).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerifyTokenResponse {
    pub org: String,
    /// Set for a deploy token: the one app it is limited to (in the registry: the repository
    /// `<org>/<app>` and those under it). Absent for an org-wide token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
}

/// `POST /v1/tokens` body: a new API token of the caller's org.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// What the token is for (1-64 printable ASCII characters); agents see it as the actor.
    #[serde(default)]
    #[schema(pattern = "^[ -~]{1,64}$")]
    pub name: Option<String>,
    /// `org` (every app of the org) or `deploy` (one app: `app`).
    pub scope: TokenScope,
    /// The app of a `deploy` token.
    #[serde(default)]
    pub app: Option<String>,
    /// Seconds until the token expires (at most 20 years); absent: it never expires.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 630720000)]
    pub expiry_secs: Option<u64>,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    /// Everything in its org: apps, their machines, secrets, releases and tokens.
    #[default]
    Org,
    /// One app's machines, secrets, volumes, certificates and releases, and its repository in
    /// the registry; no other app, no new apps, no tokens.
    Deploy,
}

/// An API token as `GET /v1/tokens` lists it: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub scope: TokenScope,
    /// The app of a `deploy` token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    pub created_at: String,
    /// Absent: it never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Whether it has expired already (it is listed until revoked).
    #[serde(default)]
    pub expired: bool,
}

/// `POST /v1/tokens` reply: the token's record and the token itself, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    pub token: String,
}

/// `GET /v1/tokens` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListTokensQuery {
    /// Only the deploy tokens of this app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
}

/// An image on a host (`GET /internal/v1/images` on an agent, `GET
/// /internal/v1/hosts/{host}/images` on the control plane).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostImage {
    /// The digest of its (linux/amd64) manifest: the image's identity on the host.
    pub manifest_digest: String,
    /// Every reference it was pulled by on the host.
    pub references: Vec<String>,
    /// Layer digests, bottom first.
    pub layers: Vec<String>,
    /// Uncompressed size of its layers.
    pub unpacked_bytes: u64,
    /// When it was assembled on the host (RFC 3339).
    pub created_at: String,
    /// Its root filesystem on the host.
    pub rootfs: String,
    /// Its ext4 image on the host, if one was built (microVM backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext4: Option<String>,
    /// The machines (not destroyed) whose current version runs it.
    pub machines: Vec<String>,
}

/// What pruning a host's images removed (`POST /internal/v1/images/prune`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PruneImagesResponse {
    /// Manifest digests of the removed images.
    pub images_removed: Vec<String>,
    /// Manifest digests of the images kept because a machine uses them.
    pub images_kept: Vec<String>,
    pub ext4_removed: usize,
    pub layers_removed: usize,
    /// Bytes freed (removed layers and ext4 images).
    pub bytes_freed: u64,
}

/// The headers the control plane adds when it forwards a request to an agent. A client cannot
/// set them: the control plane forwards only the headers it builds itself.
pub mod internal {
    /// The org that owns the app (slug).
    pub const ORG_HEADER: &str = "x-aloft-org";
    /// The org's 6PN network id.
    pub const NETWORK_HEADER: &str = "x-aloft-network-id";
    /// Who the caller is, for lease ownership.
    pub const ACTOR_HEADER: &str = "x-aloft-actor";
    /// The caller's own org API token, for the registry pulls that request triggers (create,
    /// start, restart, update). The agent keeps it in memory for that request only and never
    /// stores it.
    pub const REGISTRY_TOKEN_HEADER: &str = "x-aloft-registry-token";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ApiError;

    /// A placement's `compute` is an object or `null`, never serde's positional array form.
    #[test]
    fn nested_structs_are_objects() {
        let ok: PlacementRequest =
            ApiError::parse_json(br#"{"compute": {"cpus": 2, "memory_mb": 512}}"#).unwrap();
        assert_eq!(ok.compute.unwrap().memory_mb, Some(512));
        let none: PlacementRequest = ApiError::parse_json(br#"{"compute": null}"#).unwrap();
        assert!(none.compute.is_none());
        let e = ApiError::parse_json::<PlacementRequest>(br#"{"compute": [2, 512]}"#).unwrap_err();
        assert_eq!(
            (e.status(), e.body().field.as_deref()),
            (422, Some("compute"))
        );
    }
}
