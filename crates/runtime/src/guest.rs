//! What every real backend tells aloft-init about a machine ([`InitConfig`]), built from the
//! [`MachineSpec`] the agent hands over.

use crate::{MachineSpec, RuntimeError};
use aloft_types::init::{HostsEntry, InitConfig, InitFile, InitProcess, NetworkConfig, VmBoot};

/// The init config of `spec`'s run. `network` is for guests that configure their own interface
/// (microVMs); `vm` for guests that boot from an initramfs.
pub fn init_config(
    spec: &MachineSpec,
    network: Option<NetworkConfig>,
    vm: Option<VmBoot>,
) -> Result<InitConfig, RuntimeError> {
    let image = spec.image.as_ref().ok_or_else(|| RuntimeError::StartFailed {
        id: spec.id.clone(),
        reason: "the machine has no image on this host (the agent runs without pulling images); only the sim runtime runs such machines".into(),
    })?;
    let id = spec.id.to_string();
    let files = spec
        .config
        .files
        .iter()
        .filter_map(|f| {
            f.raw_value.as_ref().map(|v| InitFile {
                path: f.guest_path.clone(),
                content_base64: v.clone(),
                mode: f.mode,
            })
        })
        .collect();
    // The machine's own name servers, else internal DNS, else the host's resolvers.
    let dns = spec.config.dns.as_ref();
    let nameservers = match dns.map(|d| d.nameservers.clone()).unwrap_or_default() {
        own if !own.is_empty() => own,
        _ => match &spec.internal_dns {
            Some(server) => vec![server.clone()],
            None => host_nameservers(),
        },
    };
    Ok(InitConfig {
        machine_id: id.clone(),
        app: spec.app.clone(),
        region: spec.region.clone(),
        hostname: id.clone(),
        process: InitProcess {
            argv: image.process.argv.clone(),
            env: image.process.env.clone(),
            working_dir: image.process.working_dir.clone(),
            user: image.process.user.clone(),
        },
        files,
        hosts: vec![HostsEntry {
            address: spec.private_ip.clone(),
            names: vec![
                id.clone(),
                format!("{id}.vm.{}.internal", spec.app),
                "fly-local-6pn".into(),
            ],
        }],
        nameservers,
        dns_searches: dns.map(|d| d.searches.clone()).unwrap_or_default(),
        network,
        vm,
    })
}

/// The host's upstream name servers, as machines can reach them: systemd-resolved's upstream
/// list if it runs, else `/etc/resolv.conf`, without loopback addresses (a machine's loopback
/// is its own). Empty when none is left: the image's `/etc/resolv.conf` stays.
fn host_nameservers() -> Vec<String> {
    ["/run/systemd/resolve/resolv.conf", "/etc/resolv.conf"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|text| nameservers_of(&text))
        .unwrap_or_default()
}

fn nameservers_of(resolv_conf: &str) -> Vec<String> {
    aloft_types::resolv::nameservers(resolv_conf)
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .map(|ip| ip.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_loopback_resolvers_are_left_out() {
        let conf = "# generated\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 10.0.0.2\nsearch example.com\nnameserver 2001:db8::53\nnameserver bogus\n";
        assert_eq!(nameservers_of(conf), ["10.0.0.2", "2001:db8::53"]);
        assert!(nameservers_of("nameserver 127.0.0.53\n").is_empty());
    }
}
