//! The host agent's HTTP interface as data, shared by the agent (which serves it) and by its
//! callers (the control plane, other hosts): nobody writes an agent path or header as a string.
//!
//! - [`paths`]: every route the agent serves, as axum templates, and the concrete paths built
//!   from them;
//! - [`headers`]: the internal headers the control plane sets on forwarded requests;
//! - [`params`]: the agent-only path parameters (the bodies live in [`aloft_types::api`]);
//! - [`MachinesApiDoc`]: the OpenAPI document of the machine endpoints (described on stub
//!   operations in [`operations`], so the document is produced without linking the agent);
//! - [`AgentClient`]: a typed client (base URL + internal token), one method per internal
//!   endpoint, plus [`AgentClient::forward`] for a public request passed on as it came;
//! - [`AgentRequest`] / [`AgentReply`]: a request to an agent and its answer, kept byte for byte.
//!
//! No state beyond what a client holds (a pooled HTTP client, a base URL and the token).

mod client;
pub mod headers;
mod message;
mod openapi;
pub mod operations;
pub mod params;
pub mod paths;

pub use client::{AgentClient, AgentError, CallerHeaders};
pub use message::{AgentReply, AgentRequest};
pub use openapi::MachinesApiDoc;
