//! A machine as a host publishes it to the proxy and internal DNS ([`MachineEntry`]): what the
//! catalog holds per machine, here and in gossip.

use aloft_types::config::Service;
use aloft_types::machine::CheckState;
use aloft_types::{Machine, MachineState};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// A machine as the proxy and internal DNS see it: what a host publishes about each of its
/// machines in the cluster's catalog (no secrets: no env but `PRIMARY_REGION`, no image).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineEntry {
    pub id: String,
    pub app: String,
    pub region: String,
    /// The machine's private (6PN) address.
    pub address: IpAddr,
    /// RFC 3339: the oldest machine's app keeps a contested public port.
    pub created_at: String,
    pub state: MachineState,
    /// Started, not cordoned, its checks passing.
    pub routable: bool,
    #[serde(default)]
    pub services: Vec<Service>,
    /// `PRIMARY_REGION` of the machine's env, else its own region.
    pub primary_region: String,
}

impl MachineEntry {
    /// `None` for a machine without a private address (never the case for a created one).
    pub fn of(m: &Machine) -> Option<Self> {
        Some(Self {
            id: m.id.to_string(),
            app: m.app_name.clone(),
            region: m.region.clone(),
            address: m.private_ip.parse().ok()?,
            created_at: m.created_at.clone(),
            state: m.state,
            routable: m.state == MachineState::Started
                && !m.cordoned
                && !m.checks.iter().any(|c| c.status == CheckState::Critical),
            services: m.config.services.clone(),
            primary_region: m
                .config
                .env
                .get("PRIMARY_REGION")
                .cloned()
                .unwrap_or_else(|| m.region.clone()),
        })
    }
}
