//! Choosing and opening a host's backend: where its parts are (aloft-init, the guest kernel),
//! and `auto` = microVMs where KVM works, else gVisor.

use crate::gvisor::{GvisorOptions, GvisorRuntime};
use crate::microvm::{Accel, MicrovmOptions, MicrovmRuntime, kvm_usable};
use crate::net::NetworkOptions;
use crate::{Runtime, RuntimeError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where `scripts/guest-kernel.sh` caches Debian's kernel.
pub const DEFAULT_KERNEL_DIR: &str = "/var/cache/aloft/kernel";

/// The backends a host can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Gvisor,
    Microvm,
    /// microVMs where KVM works, else gVisor.
    Auto,
}

/// What a real backend needs from the host.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Where the backend keeps its machines' files (bundles, overlays, logs, sockets).
    pub state_dir: PathBuf,
    /// The static `aloft-init` binary.
    pub init_binary: PathBuf,
    /// Debian's kernel, fetched by `scripts/guest-kernel.sh`.
    pub kernel_dir: PathBuf,
    pub network: NetworkOptions,
}

impl HostOptions {
    /// Options from the environment: `ALOFT_INIT` (else the static build next to this binary),
    /// `ALOFT_KERNEL_DIR` (else [`DEFAULT_KERNEL_DIR`]), default network.
    pub fn from_env(state_dir: PathBuf) -> Result<Self, RuntimeError> {
        let kernel_dir = std::env::var_os("ALOFT_KERNEL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_KERNEL_DIR));
        Ok(Self {
            state_dir,
            init_binary: find_init_binary()?,
            kernel_dir,
            network: NetworkOptions::default(),
        })
    }
}

/// The static `aloft-init`: `$ALOFT_INIT`, else `target/static/...` of the source tree this
/// binary was built in, else `aloft-init` next to this binary.
pub fn find_init_binary() -> Result<PathBuf, RuntimeError> {
    if let Some(p) = std::env::var_os("ALOFT_INIT") {
        let p = PathBuf::from(p);
        return check_static(&p).map(|()| p);
    }
    let exe = std::env::current_exe()
        .map_err(|e| RuntimeError::Other(format!("cannot find this program's path: {e}")))?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let candidates = [
        dir.join("../static/x86_64-unknown-linux-gnu/release/aloft-init"),
        dir.join("../../static/x86_64-unknown-linux-gnu/release/aloft-init"),
        dir.join("aloft-init"),
    ];
    let mut dynamic = None;
    for c in candidates {
        if c.is_file() {
            match check_static(&c) {
                Ok(()) => return Ok(c),
                Err(e) => dynamic = Some(e),
            }
        }
    }
    Err(dynamic.unwrap_or_else(|| {
        RuntimeError::Other(
            "aloft-init (the machines' PID 1) was not found: build it with scripts/build-init.sh (scripts/setup.sh does), or set ALOFT_INIT to its path".into(),
        )
    }))
}

/// Machines have no C library of ours: aloft-init must be statically linked (no ELF interpreter).
fn check_static(path: &Path) -> Result<(), RuntimeError> {
    let bytes = std::fs::read(path).map_err(|e| {
        RuntimeError::Other(format!("cannot read aloft-init at {}: {e}", path.display()))
    })?;
    if has_interpreter(&bytes) {
        return Err(RuntimeError::Other(format!(
            "{} is dynamically linked, but machines need a static aloft-init: build it with scripts/build-init.sh or point ALOFT_INIT at a static build",
            path.display()
        )));
    }
    Ok(())
}

/// Whether a 64-bit little-endian ELF file has a `PT_INTERP` program header.
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..usize::from(phnum)).any(|i| {
        u32_at(phoff as usize + i * usize::from(phentsize)) == Some(3) // PT_INTERP
    })
}

/// How long a microVM may take to boot: generous, since TCG emulation is slow.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Opens the backend `kind` on this host.
pub fn open(kind: Backend, options: HostOptions) -> Result<Arc<dyn Runtime>, RuntimeError> {
    let microvm = |accel| {
        MicrovmRuntime::new(MicrovmOptions {
            state_dir: options.state_dir.clone(),
            init_binary: options.init_binary.clone(),
            kernel_dir: options.kernel_dir.clone(),
            network: options.network.clone(),
            accel,
            boot_timeout: BOOT_TIMEOUT,
            qemu: None,
        })
    };
    let gvisor = || {
        GvisorRuntime::new(GvisorOptions {
            state_dir: options.state_dir.clone(),
            init_binary: options.init_binary.clone(),
            network: options.network.clone(),
            runsc: None,
        })
    };
    Ok(match kind {
        Backend::Gvisor => Arc::new(gvisor()?),
        Backend::Microvm => Arc::new(microvm(Accel::Auto)?),
        Backend::Auto => match kvm_usable(&options.state_dir, &options.kernel_dir) {
            Ok(true) => Arc::new(microvm(Accel::Kvm)?),
            Ok(false) | Err(_) => {
                tracing::info!(
                    "no usable KVM for microVMs on this host: machines run in gVisor (--runtime microvm forces TCG emulation)"
                );
                Arc::new(gvisor()?)
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpreters_are_found_in_dynamic_binaries_only() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(has_interpreter(&me), "test binaries are dynamically linked");
        assert!(!has_interpreter(b"#!/bin/sh\n"));
        let busybox = Path::new("/bin/busybox");
        if let Ok(b) = std::fs::read(busybox) {
            assert!(!has_interpreter(&b), "busybox-static has no interpreter");
        }
    }
}
