//! Types shared by every part of aloft.
//!
//! This crate is the vocabulary of the Machines API: the machine [`config`] users send (and its
//! [`config::MachineConfig::validate`] step), the [`state::MachineState`] machine every host agent
//! drives, the [`machine::Machine`] object the API returns, the request and response bodies in
//! [`api`], and the [`error::ApiError`] every server maps to an HTTP status at its edge.
//!
//! JSON field names follow the reference platform (Fly.io's Machines API) so that its users'
//! scripts and habits carry over unchanged.

pub mod api;
pub mod certificates;
pub mod config;
pub mod datadir;
pub mod error;
pub mod ids;
pub mod init;
pub mod join;
pub mod machine;
pub mod resolv;
pub mod signal;
pub mod sixpn;
pub mod state;
pub mod time;

pub use config::MachineConfig;
pub use error::{ApiError, ErrorBody};
pub use ids::{InstanceId, MachineId};
pub use machine::{Machine, MachineEvent};
pub use state::MachineState;
