//! The path parameters of the machine endpoints, as the agent reads them and as the OpenAPI
//! document describes them. (Query strings and bodies are shared with the control plane and
//! the CLI, so they live in [`aloft_types::api`].)

use serde::Deserialize;
use utoipa::IntoParams;

/// `{app}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AppPath {
    /// The app's name.
    pub app: String,
}

/// `{app}` and `{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MachinePath {
    /// The app's name.
    pub app: String,
    /// The machine's id (14 hex characters).
    pub id: String,
}

/// `{app}`, `{id}` and a metadata `{key}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MetadataPath {
    /// The app's name.
    pub app: String,
    /// The machine's id (14 hex characters).
    pub id: String,
    /// The metadata key: 1 to 128 letters, digits, `-`, `_`, `.` or `/`.
    #[param(pattern = "^[A-Za-z0-9_./-]{1,128}$")]
    pub key: String,
}
