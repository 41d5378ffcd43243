//! The TOML configs of `aloft server control|host` (unknown keys are errors: a typo should not
//! be a silent default). `aloft dev cluster` writes them with `toml::to_string`, so what it
//! starts is what an operator would write by hand; the README has a three-region example.

use crate::host_setup::RuntimeKind;
use crate::mesh::MeshFile;
use aloft_control::HostnamePolicy;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The control role's config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlFile {
    pub data_dir: PathBuf,
    /// The cluster's secret, shared with every host.
    pub internal_token_file: PathBuf,
    /// Where the Machines API listens (several addresses: loopback and the hosts' network).
    pub listen: Vec<SocketAddr>,
    /// Where machines go when a create names no region.
    pub default_region: String,
    /// An org to create at start, with an API token for it written to `token_file`.
    #[serde(default)]
    pub org: Option<OrgFile>,
    /// The registry, in this process.
    #[serde(default)]
    pub registry: Option<RegistryFile>,
    /// The mesh between hosts: the control plane joins it as number 0 and reaches agents (and
    /// is reached by them) on it, at `[fdaa::1]`, the first `listen` port and each `tls.listen`
    /// port (plain there: the mesh encrypts).
    #[serde(default)]
    pub mesh: Option<MeshFile>,
    /// Which org may serve which hostnames (`aloft certs add`); the default approves none.
    #[serde(default)]
    pub hostnames: HostnamePolicy,
    /// The API behind TLS too, for hosts (they join and read their credentials through it).
    #[serde(default)]
    pub tls: Option<TlsFile>,
}

/// The control plane's TLS listeners.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// Where the API listens behind TLS, e.g. `["10.0.0.1:4443"]`.
    pub listen: Vec<SocketAddr>,
    /// The DNS names and IP addresses hosts reach it at: its certificate is issued for them at
    /// each start by the cluster CA in `<data_dir>/tls` (made once; hosts pin its `ca.pem`).
    #[serde(default)]
    pub names: Vec<String>,
    /// Or the operator's own certificate chain and key (PEM), instead of `names`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgFile {
    pub slug: String,
    pub token_file: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    pub listen: Vec<SocketAddr>,
    pub storage: PathBuf,
}

/// The host role's config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostFile {
    /// Unique in the cluster, e.g. `ord-1`.
    pub id: String,
    pub region: String,
    pub data_dir: PathBuf,
    #[serde(default = "auto")]
    pub runtime: RuntimeKind,
    /// The control plane's URL: `https://` (its `[tls]` listener) unless it is on a private
    /// network hosts trust.
    pub control_plane: String,
    /// The CA the control plane's certificate must chain to (its `<data_dir>/tls/ca.pem`, or the
    /// operator's): the only one trusted for `https://`.
    #[serde(default)]
    pub control_plane_ca: Option<PathBuf>,
    /// A one-time join token (`aloft hosts join-token`), needed only at the first start: the
    /// host trades it for its own credential and keys, kept in `<data_dir>/host-credential.json`.
    #[serde(default)]
    pub join_token_file: Option<PathBuf>,
    /// The registry `name:tag` images are on (`host:port`): aloft's own, the only one that gets
    /// the caller's org token, and always allowed on a private address.
    pub registry: String,
    /// Other registries images may name although they are on private, loopback or link-local
    /// addresses: `host` (any port) or `host:port`. Every other registry (and token realm, and
    /// redirect target) must resolve to public addresses [default: none].
    #[serde(default)]
    pub private_registries: Vec<String>,
    /// CPUs and memory (MB) offered for machines [default: the host's].
    #[serde(default)]
    pub cpus: Option<u32>,
    #[serde(default)]
    pub memory_mb: Option<u64>,
    pub agent: AgentFile,
    pub proxy: ProxyFile,
    pub gossip: GossipFile,
    #[serde(default)]
    pub network: Option<NetworkFile>,
    /// The encrypted mesh between hosts. With it, the agent, the worker listener and gossip
    /// listen on the host's mesh address (at the ports of their `listen`), and nothing between
    /// hosts travels outside it.
    #[serde(default)]
    pub mesh: Option<MeshFile>,
}

fn auto() -> RuntimeKind {
    RuntimeKind::Auto
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    pub listen: SocketAddr,
    /// The URL the control plane and other hosts reach the agent at [default: from `listen`].
    #[serde(default)]
    pub advertise: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyFile {
    /// Public HTTP (port 80); other public ports are listened on at the same address.
    pub http: SocketAddr,
    /// Public HTTPS (port 443): users' certificates (`aloft certs`) from the control plane,
    /// others issued by the CA in `ca_dir`.
    #[serde(default)]
    pub https: Option<SocketAddr>,
    /// The CA that issues certificates for names without one (`<app>.localhost`); share it
    /// between hosts so clients trust one `ca.pem` [default: `<data_dir>/proxy`].
    #[serde(default)]
    pub ca_dir: Option<PathBuf>,
    /// Where other hosts' edges send requests for this host's machines.
    pub worker: SocketAddr,
    /// The address other hosts reach the worker listener at [default: `worker`].
    #[serde(default)]
    pub worker_advertise: Option<SocketAddr>,
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// How often idle machines are stopped (`2m`).
    #[serde(default)]
    pub autostop_interval: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GossipFile {
    pub listen: SocketAddr,
    #[serde(default)]
    pub advertise: Option<SocketAddr>,
    /// Other hosts' gossip addresses to join through.
    #[serde(default)]
    pub seeds: Vec<String>,
    #[serde(default = "gossip_interval_ms")]
    pub interval_ms: u64,
}

fn gossip_interval_ms() -> u64 {
    200
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkFile {
    pub bridge: String,
    /// The IPv4 subnet machines get addresses from, e.g. `172.19.0.0/16`.
    pub subnet_v4: String,
}
