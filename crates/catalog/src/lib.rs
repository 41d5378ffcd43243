//! aloft's catalog: what the proxy and internal DNS route from, on one host and across a cluster.
//!
//! - [`entry`]: a machine as a host publishes it ([`MachineEntry`], no secrets).
//! - [`target`]: a machine's service on a public port as the proxy sees it ([`Target`], its
//!   [`Limits`] and [`PortHandlers`]), and the [`PublicPort`]s the apps list.
//! - [`route`]: the [`Catalog`] trait the proxy routes from (lookups from memory; autostart,
//!   autostop). Internal DNS reads the same catalogs through its own
//!   [`Directory`](aloft_dns::server::Directory) trait, which stays in `aloft-dns`: moving it
//!   here would make DNS depend on this crate (and gossip's dependencies) for one trait and one
//!   record type, where today DNS depends only on `aloft-types`.
//! - [`view`]: machines as of one moment ([`CatalogView`]) with each one [`Placed`] on its host,
//!   answering both traits with map lookups.
//! - [`load`]: the per-machine count of requests in flight ([`Load`]): the proxy counts, the
//!   agent drains a stopping machine by it, gossip publishes it.
//! - [`local`]: one host's machines ([`LocalCatalog`]) from a [`MachineSource`], which the host
//!   agent implements: the agent depends on this crate, never the other way.
//! - [`gossip`]: the hosts of a cluster as one catalog ([`gossip::ClusterCatalog`], was
//!   `aloft-cluster`): this host's machines merged with the other live hosts', over chitchat.
//!
//! Dependencies run one way: `aloft-types` and `aloft-dns` below, the proxy, the agent and the
//! node above.

pub mod entry;
pub mod gossip;
pub mod load;
pub mod local;
pub mod route;
pub mod target;
pub mod view;

pub use entry::MachineEntry;
pub use load::Load;
pub use local::{LocalCatalog, MachineSource};
pub use route::Catalog;
pub use target::{
    Limits, MAX_RANGE, PortHandlers, PublicPort, Target, first_service_target, machine_targets,
    public_ports,
};
pub use view::{CatalogView, Placed};
