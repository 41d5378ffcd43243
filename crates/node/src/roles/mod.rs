//! The roles a node runs, each started from a typed config and stopped through the
//! [`Supervisor`](crate::supervisor::Supervisor) that owns its tasks.
//!
//! - `certificates`: users' hostnames and certificates, kept in step for a host's proxy.
//! - `control`: the control plane (Machines API) and the registry beside it.
//! - `host`: the agent, the proxy, internal DNS and the catalog of one host.
//! - `registry`: the OCI registry (in the control plane's process, or on its own as a region's
//!   pull-through cache) and how it checks org tokens.

pub mod certificates;
pub mod control;
pub mod host;
pub mod registry;
