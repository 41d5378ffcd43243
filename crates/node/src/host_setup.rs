//! What a host needs from the machine it runs on: the isolation backend machines run on
//! (`--runtime`, `runtime` in a host's config), the IPv4 subnet of its machines, and its
//! capacity.

use aloft_runtime::net::NetworkOptions;
use aloft_runtime::sim::SimRuntime;
use aloft_runtime::{Backend, HostOptions, Runtime};
use anyhow::{Context, Result, anyhow};
use clap::ValueEnum;
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Simulated machines (no image is run).
    Sim,
    /// gVisor sandboxes (runsc).
    Gvisor,
    /// QEMU microVMs (KVM where usable, else TCG emulation: slow).
    Microvm,
    /// microVMs where KVM works, else gVisor.
    Auto,
}

/// The backend for `--runtime`, keeping its state under `state_dir`.
pub(crate) fn runtime_for(
    kind: RuntimeKind,
    state_dir: &Path,
    network: NetworkOptions,
) -> Result<Arc<dyn Runtime>> {
    let kind = match kind {
        RuntimeKind::Sim => return Ok(Arc::new(SimRuntime::new())),
        RuntimeKind::Gvisor => Backend::Gvisor,
        RuntimeKind::Microvm => Backend::Microvm,
        RuntimeKind::Auto => Backend::Auto,
    };
    let options = HostOptions {
        network,
        ..HostOptions::from_env(state_dir.to_path_buf())
            .context("finding what machines need on this host")?
    };
    aloft_runtime::open(kind, options).context("starting the machine runtime")
}

/// `a.b.c.d/n` with a prefix a bridge and at least a few machines fit in.
pub(crate) fn parse_subnet(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (ip, len) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` is not a CIDR subnet like 172.19.0.0/16"))?;
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| format!("`{ip}` is not an IPv4 address (e.g. 172.19.0.0/16)"))?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| (8..=28).contains(l))
        .ok_or_else(|| format!("the prefix length `{len}` must be between 8 and 28"))?;
    Ok((ip, len))
}

/// This host's CPU count and memory (MB), advertised for placement.
pub(crate) fn host_capacity() -> Result<(u32, u64)> {
    let cpus = std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1);
    let meminfo = fs::read_to_string("/proc/meminfo")
        .context("cannot read /proc/meminfo to size this host; `aloft dev up` needs Linux")?;
    let kb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .ok_or_else(|| anyhow!("/proc/meminfo has no MemTotal line; cannot size this host"))?;
    Ok((cpus, kb / 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_subnets_are_checked() {
        assert_eq!(
            parse_subnet("172.19.0.0/16").unwrap(),
            (Ipv4Addr::new(172, 19, 0, 0), 16)
        );
        assert!(parse_subnet("172.19.0.0").unwrap_err().contains("CIDR"));
        assert!(parse_subnet("nope/16").unwrap_err().contains("IPv4"));
        assert!(
            parse_subnet("10.0.0.0/30")
                .unwrap_err()
                .contains("between 8 and 28")
        );
    }
}
