//! Hosts as the app layer sees them: regions for users, and for operators and agents the
//! registry of hosts, a request to one host, and registrations and heartbeats.

use crate::ControlPlane;
use crate::forward::AgentReply;
use crate::placement;
use aloft_agent_api::{AgentClient, AgentError};
use aloft_types::ApiError;
use aloft_types::api::{HostInfo, PlacementList, PlacementRequest, RegionList, RegionPlacement};
use aloft_types::time::now_ms;
use std::future::Future;

impl ControlPlane {
    pub(crate) async fn regions(&self) -> Result<RegionList, ApiError> {
        let hosts = self.inner.store.hosts().await?;
        Ok(RegionList {
            nearest: self.inner.config.default_region.clone(),
            regions: placement::regions(&hosts),
        })
    }

    /// `POST /v1/platform/placements`: where `count` machines of the size would go, filling the
    /// preferred regions first, then the roomiest others (`concurrency`: how many of that
    /// memory size the region has room for; shared CPUs are oversubscribed, so memory is what
    /// limits). A region with no room for one is left out.
    pub(crate) async fn placements(
        &self,
        req: &PlacementRequest,
    ) -> Result<PlacementList, ApiError> {
        let hosts = self.inner.store.hosts().await?;
        let compute = req.compute.clone().unwrap_or_default();
        // Memory is what limits: shared CPUs are oversubscribed.
        let memory_mb = u64::from(compute.memory_mb.unwrap_or(256).max(1));
        let preferred: Vec<&str> = req
            .region
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .collect();
        let mut room: Vec<(String, u64)> = placement::regions(&hosts)
            .into_iter()
            .map(|r| {
                let fits = hosts
                    .iter()
                    .filter(|h| h.info.region == r.code)
                    .map(|h| h.free_memory_mb() / memory_mb)
                    .sum();
                (r.code, fits)
            })
            .filter(|(_, fits)| *fits > 0)
            .collect();
        room.sort_by_key(|(code, fits)| {
            (
                preferred
                    .iter()
                    .position(|p| p == code)
                    .unwrap_or(usize::MAX),
                std::cmp::Reverse(*fits),
            )
        });
        let mut left = u64::from(req.count.unwrap_or(1).max(1));
        let mut regions = Vec::new();
        for (region, fits) in room {
            let count = left.min(fits);
            left -= count;
            regions.push(RegionPlacement {
                region,
                count,
                concurrency: fits,
            });
        }
        Ok(PlacementList { regions })
    }

    /// The registered hosts (operators: `aloft image list` asks each of them).
    pub(crate) async fn hosts(&self) -> Result<Vec<HostInfo>, ApiError> {
        Ok(self
            .inner
            .store
            .hosts()
            .await?
            .into_iter()
            .map(|h| h.info)
            .collect())
    }

    /// An operator request about one host (its images): `op` calls its agent, whose answer is
    /// returned as is.
    pub(crate) async fn ask_host<F, Fut>(
        &self,
        host_id: &str,
        op: F,
    ) -> Result<AgentReply, ApiError>
    where
        F: FnOnce(AgentClient) -> Fut,
        Fut: Future<Output = Result<AgentReply, AgentError>>,
    {
        let Some(host) = self.inner.store.host(host_id).await? else {
            let known: Vec<String> = self.hosts().await?.into_iter().map(|h| h.id).collect();
            return Err(ApiError::NotFound(format!(
                "no host `{host_id}` is registered; the hosts are: {}",
                if known.is_empty() {
                    "none yet".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        Ok(self.inner.forwarder.ask(&host, op).await?)
    }

    /// Records an agent's registration or heartbeat.
    pub(crate) async fn record_host(&self, info: HostInfo) -> Result<(), ApiError> {
        for (field, value) in [
            ("id", &info.id),
            ("region", &info.region),
            ("address", &info.address),
        ] {
            if value.trim().is_empty() {
                return Err(ApiError::invalid(
                    field,
                    format!(
                        "{field} is required: a host registers with its id, region and address"
                    ),
                ));
            }
        }
        if !info.address.starts_with("http://") && !info.address.starts_with("https://") {
            return Err(ApiError::invalid(
                "address",
                format!(
                    "address `{}` must be a URL such as http://host-1.example:4281",
                    info.address
                ),
            ));
        }
        self.inner.store.upsert_host(info, now_ms()).await?;
        Ok(())
    }
}
