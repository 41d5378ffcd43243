//! The `[mesh]` section of the server roles' configs: a host (or the control plane, as number 0)
//! makes its WireGuard key, brings its mesh endpoint up, tells the control plane how to reach it
//! and keeps its peers in step with the control plane's list.

use aloft_control::ControlPlane;
use aloft_mesh::{Key, Mesh, MeshConfig, Peer};
use aloft_types::api::{MeshJoin, MeshPeer};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often a member reads the list of members again.
const REFRESH: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshFile {
    /// WireGuard's UDP address.
    pub listen: SocketAddr,
    /// The address other hosts send to [default: `listen`].
    #[serde(default)]
    pub advertise: Option<SocketAddr>,
    /// The TUN device's name.
    #[serde(default = "interface")]
    pub interface: String,
    /// Development clusters only: the round trip (ms) to add towards each other region.
    #[serde(default)]
    pub emulated_rtt_ms: BTreeMap<String, u64>,
}

fn interface() -> String {
    "alwg0".into()
}

/// A running mesh endpoint and the task that keeps its peers current.
pub(crate) struct Joined {
    pub mesh: Arc<Mesh>,
    pub peers: Vec<MeshPeer>,
    refresh: JoinHandle<()>,
}

impl Drop for Joined {
    fn drop(&mut self) {
        self.refresh.abort();
    }
}

/// Where the members come from: the control plane in this process, or over HTTP.
#[derive(Clone)]
pub(crate) enum Members {
    Local(ControlPlane),
    Remote {
        control_plane: String,
        token: String,
        /// The control plane's client (the pinned cluster CA for `https://`).
        http: reqwest::Client,
    },
}

impl Members {
    async fn list(&self) -> Result<Vec<MeshPeer>> {
        match self {
            Members::Local(cp) => Ok(cp.mesh_peers().await?),
            Members::Remote {
                control_plane,
                token,
                http,
            } => {
                let url = format!("{}/internal/v1/mesh", control_plane.trim_end_matches('/'));
                let resp = http
                    .get(&url)
                    .timeout(Duration::from_secs(5))
                    .bearer_auth(token)
                    .send()
                    .await?;
                if !resp.status().is_success() {
                    bail!(
                        "{}: {}",
                        resp.status(),
                        resp.text().await.unwrap_or_default()
                    );
                }
                Ok(resp.json().await?)
            }
        }
    }
}

/// Brings this member's mesh endpoint up (key in `data_dir/mesh.key`) and registers it: `me` is
/// its entry (its number 0 for the control plane). Hosts route every 6PN address into the mesh;
/// the control plane only the hosts' own addresses (network 0).
pub(crate) async fn join(
    file: &MeshFile,
    data_dir: &Path,
    me: MeshPeer,
    members: Members,
) -> Result<Joined> {
    let key = Key::load_or_create(&data_dir.join("mesh.key"))?;
    let routes = if me.number == 0 {
        vec!["fdaa::/48".to_string()]
    } else {
        vec!["fdaa::/16".to_string()]
    };
    let mesh = Arc::new(
        Mesh::start(MeshConfig {
            interface: file.interface.clone(),
            host: me.number,
            key: key.clone(),
            listen: file.listen,
            routes,
            handshakes_per_second: aloft_mesh::HANDSHAKES_PER_SECOND,
        })
        .await
        .context("starting the mesh (the `[mesh]` section of the config)")?,
    );
    let me = MeshPeer {
        public_key: key.public(),
        endpoint: file.advertise.unwrap_or(mesh.local_endpoint()).to_string(),
        ..me
    };
    let peers = match &members {
        Members::Local(cp) => {
            cp.set_mesh_self(me.clone());
            cp.mesh_peers().await?
        }
        Members::Remote {
            control_plane,
            token,
            http,
        } => {
            let url = format!(
                "{}/internal/v1/mesh/{}",
                control_plane.trim_end_matches('/'),
                me.host
            );
            let body = MeshJoin {
                region: me.region.clone(),
                public_key: me.public_key.clone(),
                endpoint: me.endpoint.clone(),
            };
            // The control plane may be starting too (or busy): asked again for up to a minute.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let resp = loop {
                let put = http
                    .put(&url)
                    .timeout(Duration::from_secs(5))
                    .bearer_auth(token)
                    .json(&body);
                match put.send().await {
                    Ok(resp) => break resp,
                    Err(e) if std::time::Instant::now() < deadline => {
                        tracing::info!("waiting for the control plane at {url}: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        return Err(
                            anyhow::Error::new(e).context(format!("joining the mesh at {url}"))
                        );
                    }
                }
            };
            if !resp.status().is_success() {
                bail!(
                    "the control plane refused this host's mesh endpoint: {}: {}",
                    resp.status(),
                    resp.text().await.unwrap_or_default()
                );
            }
            resp.json().await.context("reading the mesh's members")?
        }
    };
    let emulated = file.emulated_rtt_ms.clone();
    let region = me.region.clone();
    mesh.set_peers(&to_peers(&peers, &region, &emulated))?;
    let refresh = {
        let mesh = mesh.clone();
        let mut joins = match &members {
            Members::Local(cp) => Some(cp.mesh_changes()),
            Members::Remote { .. } => None,
        };
        tokio::spawn(async move {
            loop {
                // Every REFRESH, or at once when a host joins this control plane.
                let joined = async {
                    let gone = match joins.as_mut() {
                        Some(rx) => rx.changed().await.is_err(),
                        None => true,
                    };
                    if gone {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    () = tokio::time::sleep(REFRESH) => {}
                    () = joined => {}
                }
                match members.list().await {
                    Ok(peers) => {
                        if let Err(e) = mesh.set_peers(&to_peers(&peers, &region, &emulated)) {
                            tracing::warn!("the mesh's members: {e}");
                        }
                    }
                    Err(e) => tracing::debug!("reading the mesh's members: {e:#}"),
                }
            }
        })
    };
    Ok(Joined {
        mesh,
        peers,
        refresh,
    })
}

/// The members as the mesh takes them, with half the emulated round trip to their region added
/// each way. Members with an endpoint that does not parse are left out.
fn to_peers(members: &[MeshPeer], region: &str, rtt_ms: &BTreeMap<String, u64>) -> Vec<Peer> {
    members
        .iter()
        .filter_map(|m| {
            let delay = match rtt_ms.get(&m.region) {
                Some(ms) if m.region != region => Duration::from_micros(ms * 500),
                _ => Duration::ZERO,
            };
            Some(Peer {
                host: m.number,
                public_key: m.public_key.clone(),
                endpoint: m.endpoint.parse().ok()?,
                delay,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulated_distance_is_half_the_round_trip_each_way() {
        let member = |n: u32, region: &str| MeshPeer {
            host: format!("{region}-1"),
            number: n,
            region: region.into(),
            public_key: "k".into(),
            endpoint: "10.0.0.1:4300".into(),
        };
        let rtt = BTreeMap::from([("syd".to_string(), 200), ("ord".to_string(), 50)]);
        let peers = to_peers(
            &[member(1, "ord"), member(2, "syd"), member(3, "ams")],
            "ord",
            &rtt,
        );
        let delays: Vec<u128> = peers.iter().map(|p| p.delay.as_millis()).collect();
        assert_eq!(delays, [0, 100, 0]);
    }
}
