//! How a host joins a cluster: the one-time join token an operator makes
//! (`POST /internal/v1/join-tokens`), and what the host gets for it
//! (`POST /internal/v1/hosts/{host}/join`): its own credential and the keys it needs, none of
//! which is the cluster secret.

use serde::{Deserialize, Serialize};

/// `POST /internal/v1/join-tokens` body (the operator, with the cluster secret).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinTokenRequest {
    /// The one host id that may use it [default: any id not yet joined].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// How long it may be used, as a duration (`30m`, `24h`) [default: `1h`; at most `7d`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
}

/// `POST /internal/v1/join-tokens` reply (201): the token, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    pub token: String,
    pub host: Option<String>,
    /// Milliseconds since the epoch.
    pub expires_at: i64,
}

/// `POST /internal/v1/hosts/{host}/join` reply (201), with the join token as bearer: everything
/// a host keeps in `<data_dir>/host-credential.json` (mode 0600) and uses from then on.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostJoined {
    pub host: String,
    /// The host's calls to the control plane (heartbeats, its number, the mesh, certificates,
    /// and the secrets, volume keys and registry logins of its own machines).
    pub credential: String,
    pub keys: HostKeys,
}

impl std::fmt::Debug for HostJoined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostJoined")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// The keys a host holds besides its credential, each derived from the cluster secret (which
/// the host never gets) so the control plane needs to store none of them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostKeys {
    /// What the control plane sends this host's agent (its own: another host's is different).
    pub agent: String,
    /// What hosts send each other: edge requests to a worker listener, and autostarts of a
    /// stopped machine on another host's agent (the only agent endpoint it opens).
    pub peer: String,
    /// What gossip values are sealed with.
    pub gossip: String,
}

impl std::fmt::Debug for HostKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostKeys { .. }")
    }
}
