//! What the proxy routes to. A [`Catalog`] answers "which machines of this app serve this public
//! port" and can start and stop them (autostart, autostop); on one host it is the local
//! catalog (`LocalCatalog`), across hosts the gossip catalog (`gossip::ClusterCatalog`); both
//! implement it. Lookups are synchronous: they are on every request's path and must be
//! answered from memory.

use crate::target::{PublicPort, Target};
use async_trait::async_trait;
use std::sync::Arc;

/// The machines the proxy may route to, and the machine operations it needs.
#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    /// The machines of `app` whose config serves public `port`, in any state. `None` when there
    /// is no such app.
    fn targets(&self, app: &str, port: u16) -> Option<Arc<Vec<Target>>>;

    /// Every public TCP port that apps' services list; the proxy listens on those its HTTP
    /// listeners do not stand for.
    fn ports(&self) -> Vec<PublicPort>;

    /// Every machine with a service, as a target for its first service (for autostop).
    fn all_targets(&self) -> Vec<Target>;

    /// Starts a stopped or suspended machine (autostart).
    async fn start(&self, target: &Target) -> Result<(), String>;

    /// Stops, or with `suspend` suspends, an idle machine (autostop).
    async fn stop(&self, target: &Target, suspend: bool) -> Result<(), String>;

    /// The round-trip time to `region`'s nearest host, as measured (never configured); `None`
    /// when not measured (one host, or not yet).
    fn rtt(&self, _region: &str) -> Option<std::time::Duration> {
        None
    }
}
