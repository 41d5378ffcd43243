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
        nameservers: Vec::new(),
        network,
        vm,
    })
}
