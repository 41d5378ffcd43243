//! aloft's proxy: the process on every host that takes users' requests for apps and sends each
//! to the closest machine with capacity.
//!
//! It plays two roles, shaped for the multi-region split: the *edge* accepts the client, finds
//! the app from `Host`, ranks the app's machines ([`balance`]) from the
//! [`Catalog`](aloft_catalog::Catalog), adds the forwarding headers and replays requests a
//! machine bounces with `fly-replay` ([`replay`]); the *worker* side holds the true load of each
//! local machine ([`Load`](aloft_catalog::Load)) and refuses a machine at its hard limit, so the
//! edge tries the next one. On one host both roles run in one process. What it routes to (the
//! machines, their targets and load) is `aloft-catalog`'s; the proxy only reads it.
//!
//! Request bodies up to 1 MB are buffered ([`body`]), once a machine is chosen, so a request can
//! be retried on another machine when a connection fails or a machine is full, and replayed.
//! Every idle phase of a client's connection is bounded ([`Protection`]): the first bytes, the
//! time between requests, between pieces of a body, and HTTP/2's pings; and a tunnel (a
//! WebSocket, a passed-through TCP connection) that carries no bytes either way is closed
//! ([`splice`]).

pub mod balance;
pub mod body;
pub mod clients;
pub mod metrics;
mod names;
pub mod replay;
mod server;
mod splice;
pub mod tls;

pub use server::{Listener, Protection, Proxy, ProxyConfig};
