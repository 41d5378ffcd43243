//! The dev data directory's contract: the files `aloft dev up` (and `aloft dev cluster`) write
//! and client commands read, and the addresses clients use when nothing else is said. Names
//! only; the CLI reads them, the node roles write them.

/// Where the Machines API listens unless `ALOFT_API_URL` says otherwise (the external contract).
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:4280";
/// The registry's URL when nothing says otherwise (the external contract's port).
pub const DEFAULT_REGISTRY_URL: &str = "http://127.0.0.1:5000";
/// An API token for the org `personal`.
pub const TOKEN_FILE: &str = "token";
/// The cluster's internal token (control plane, agents and registry between them).
pub const INTERNAL_TOKEN_FILE: &str = "internal-token";
/// The URL the registry really listens on.
pub const REGISTRY_URL_FILE: &str = "registry-url";
/// The URL the API really listens on: written last, once everything is ready, and removed on a
/// clean stop.
pub const API_URL_FILE: &str = "api-url";
