//! What `dev cluster up` writes and asks for before it starts the roles: the control plane's and
//! each host's config (read back by `aloft server control|host` exactly as an operator's), the
//! emulated round trips between regions, and each host's one-time join token.

use super::{BRIDGE_IP, CONTROL_MESH_IF, CONTROL_TLS_PORT, HostState, MESH_PORT};
use crate::host_setup::RuntimeKind;
use crate::mesh::MeshFile;
use crate::server::{
    AgentFile, ControlFile, GossipFile, HostFile, OrgFile, ProxyFile, RegistryFile, TlsFile,
};
use aloft_types::datadir::TOKEN_FILE;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Round trips (ms) between regions, roughly what the public internet gives between those cities.
/// Pairs not listed get [`DEFAULT_RTT_MS`]; `--rtt-file` replaces any of them.
const RTT_MS: &[(&str, &str, u64)] = &[
    ("ord", "iad", 20),
    ("ord", "ams", 95),
    ("ord", "lhr", 90),
    ("ord", "syd", 200),
    ("ord", "nrt", 150),
    ("ord", "sin", 220),
    ("iad", "ams", 85),
    ("iad", "lhr", 75),
    ("iad", "syd", 210),
    ("iad", "nrt", 160),
    ("ams", "lhr", 10),
    ("ams", "fra", 10),
    ("ams", "syd", 280),
    ("ams", "nrt", 230),
    ("ams", "sin", 160),
    ("syd", "nrt", 110),
    ("syd", "sin", 95),
    ("nrt", "sin", 70),
];
const DEFAULT_RTT_MS: u64 = 100;

/// The round trip between two regions: from `overrides` (lines `a b ms`), else the built-in matrix.
pub(super) fn rtt_ms(a: &str, b: &str, overrides: &[(String, String, u64)]) -> u64 {
    let is = |x: &str, y: &str| (x == a && y == b) || (x == b && y == a);
    overrides
        .iter()
        .find(|(x, y, _)| is(x, y))
        .map(|o| o.2)
        .or_else(|| RTT_MS.iter().find(|(x, y, _)| is(x, y)).map(|r| r.2))
        .unwrap_or(DEFAULT_RTT_MS)
}

/// An `--rtt-file`: lines `<region> <region> <ms>`; `#` starts a comment.
pub(super) fn read_rtt_file(path: &Path) -> Result<Vec<(String, String, u64)>> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read the round-trip file {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            [a, b, ms] if ms.parse::<u64>().is_ok() => {
                out.push((a.to_string(), b.to_string(), ms.parse()?))
            }
            _ => bail!(
                "{}:{}: expected `<region> <region> <ms>`, e.g. `ord ams 95`",
                path.display(),
                i + 1
            ),
        }
    }
    Ok(out)
}

/// The control plane's config: the API and the registry on loopback (the external contract's
/// ports) and on the bridge, the org `personal` with its token in the data dir, the mesh.
pub(super) fn control_config(dir: &Path, token_file: &Path, default_region: &str) -> ControlFile {
    ControlFile {
        data_dir: dir.join("control"),
        internal_token_file: token_file.to_path_buf(),
        listen: vec![
            SocketAddr::from((Ipv4Addr::LOCALHOST, 4280)),
            SocketAddr::from((BRIDGE_IP, 4280)),
        ],
        default_region: default_region.to_string(),
        org: Some(OrgFile {
            slug: "personal".into(),
            token_file: dir.join(TOKEN_FILE),
        }),
        registry: Some(RegistryFile {
            listen: vec![
                SocketAddr::from((Ipv4Addr::LOCALHOST, 5000)),
                SocketAddr::from((BRIDGE_IP, 5000)),
            ],
            storage: dir.join("registry"),
        }),
        mesh: Some(MeshFile {
            listen: SocketAddr::from((BRIDGE_IP, MESH_PORT)),
            advertise: None,
            interface: CONTROL_MESH_IF.into(),
            emulated_rtt_ms: BTreeMap::new(),
        }),
        // One user's cloud on one machine: the user is its operator.
        hostnames: aloft_control::HostnamePolicy::allow_any(),
        // Hosts join and read their credentials over TLS, pinning the cluster CA.
        tls: Some(TlsFile {
            listen: vec![SocketAddr::from((BRIDGE_IP, CONTROL_TLS_PORT))],
            names: vec![BRIDGE_IP.to_string()],
            cert_file: None,
            key_file: None,
        }),
    }
}

/// Where the control plane's cluster CA is (what every host pins).
fn cluster_ca(dir: &Path) -> PathBuf {
    crate::cluster_tls::ca_path(&dir.join("control").join("tls"))
}

/// A host's config: its services on its own address in its namespace, public HTTP(S) on every
/// address, its region cache as the registry, the emulated round trips to the other regions.
fn host_config(
    h: &HostState,
    hdir: &Path,
    runtime: RuntimeKind,
    cluster_ca: PathBuf,
    join_token_file: &Path,
    ca_dir: &Path,
    emulated_rtt_ms: BTreeMap<String, u64>,
) -> HostFile {
    let at = |port: u16| SocketAddr::from((h.ip, port));
    HostFile {
        id: h.id.clone(),
        region: h.region.clone(),
        data_dir: hdir.to_path_buf(),
        runtime,
        control_plane: format!("https://{BRIDGE_IP}:{CONTROL_TLS_PORT}"),
        control_plane_ca: Some(cluster_ca),
        join_token_file: Some(join_token_file.to_path_buf()),
        registry: "127.0.0.1:5000".into(),
        private_registries: Vec::new(),
        cpus: None,
        memory_mb: None,
        agent: AgentFile {
            listen: at(4281),
            advertise: None,
        },
        proxy: ProxyFile {
            http: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 80)),
            https: Some(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 443))),
            ca_dir: Some(ca_dir.to_path_buf()),
            worker: at(4282),
            worker_advertise: None,
            metrics: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 9091))),
            autostop_interval: None,
        },
        gossip: GossipFile {
            listen: at(4283),
            advertise: None,
            seeds: Vec::new(),
            interval_ms: 100,
        },
        network: None,
        mesh: Some(MeshFile {
            listen: at(MESH_PORT),
            advertise: None,
            interface: "alwg0".into(),
            emulated_rtt_ms,
        }),
    }
}

/// Writes host `h`'s config to `<dir>/hosts/<id>/host.toml` (returned) and, unless it has
/// already joined, a one-time join token beside it (`join-token`, 0600).
pub(super) async fn write_host_config(
    dir: &Path,
    h: &HostState,
    runtime: RuntimeKind,
    secret_file: &Path,
    ca_dir: &Path,
    rtts: BTreeMap<String, u64>,
) -> Result<PathBuf> {
    let hdir = dir.join("hosts").join(&h.id);
    let join_file = hdir.join("join-token");
    if !crate::host_identity::identity_file(&hdir).exists() {
        let token = join_token(secret_file, &h.id).await?;
        crate::files::write_atomic(&join_file, &token, 0o600)?;
    }
    let config = host_config(h, &hdir, runtime, cluster_ca(dir), &join_file, ca_dir, rtts);
    let config =
        toml::to_string(&config).with_context(|| format!("writing host {}'s config", h.id))?;
    let config_file = hdir.join("host.toml");
    fs::write(&config_file, config)?;
    Ok(config_file)
}

/// A one-time join token for host `id`, made with the cluster secret in `secret_file` as an
/// operator would (`aloft hosts join-token`), waiting up to a minute for the control plane.
async fn join_token(secret_file: &Path, id: &str) -> Result<String> {
    let secret = crate::files::read_secret(secret_file)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sent = http
            .post("http://127.0.0.1:4280/internal/v1/join-tokens")
            .bearer_auth(&secret)
            .json(&aloft_types::join::JoinTokenRequest {
                host: Some(id.to_string()),
                expires_in: Some("10m".into()),
            })
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => {
                let made: aloft_types::join::JoinToken = resp.json().await?;
                return Ok(made.token);
            }
            Ok(resp) => bail!(
                "the control plane made no join token for {id}: {} {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            ),
            Err(e) if Instant::now() > deadline => {
                bail!("the control plane did not answer within 60 s: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `dev cluster up` writes is what `aloft server control|host` reads (unknown keys are
    /// refused there, so a field written under another name would fail here).
    #[test]
    fn the_configs_it_writes_read_back_as_the_roles_read_them() {
        let dir = Path::new("/var/lib/aloft/cluster");
        let token = dir.join("internal-token");
        let control = toml::to_string(&control_config(dir, &token, "ord")).unwrap();
        let join = dir.join("hosts/ams-1/join-token");
        let back: ControlFile = toml::from_str(&control).unwrap();
        assert_eq!(back.listen.len(), 2);
        assert_eq!(back.org.unwrap().token_file, dir.join(TOKEN_FILE));
        assert_eq!(back.mesh.unwrap().interface, CONTROL_MESH_IF);

        let h = HostState {
            id: "ams-1".into(),
            region: "ams".into(),
            netns: "alc-ams-1".into(),
            ip: Ipv4Addr::new(10, 77, 1, 2),
            pid: None,
            registry_pid: None,
        };
        let rtts = BTreeMap::from([("ord".to_string(), 95)]);
        let host = host_config(
            &h,
            &dir.join("hosts/ams-1"),
            RuntimeKind::Gvisor,
            cluster_ca(dir),
            &join,
            &dir.join("ca"),
            rtts.clone(),
        );
        let text = toml::to_string(&host).unwrap();
        let back: HostFile = toml::from_str(&text).unwrap();
        assert_eq!(back.runtime, RuntimeKind::Gvisor);
        assert_eq!(back.agent.listen, "10.77.1.2:4281".parse().unwrap());
        assert_eq!(back.proxy.https, Some("0.0.0.0:443".parse().unwrap()));
        assert_eq!(back.gossip.interval_ms, 100);
        assert_eq!(back.join_token_file, Some(join));
        assert_eq!(back.control_plane, "https://10.77.0.1:4443");
        assert_eq!(back.control_plane_ca, Some(dir.join("control/tls/ca.pem")));
        assert_eq!(back.mesh.unwrap().emulated_rtt_ms, rtts);
        assert!(text.contains("runtime = \"gvisor\""), "{text}");
    }
}
