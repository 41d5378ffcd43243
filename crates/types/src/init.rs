//! The contract between a host's isolation backends and `aloft-init`, the PID 1 of every machine.
//!
//! The backend writes an [`InitConfig`] where init finds it (gVisor: `/.aloft/config.json` in the
//! machine's root filesystem; microVM: `/aloft/config.json` inside the per-machine initramfs).
//! Init sets the machine up, runs the process, and when the process ends writes one
//! [`ExitReport`] to the exit channel (gVisor: `/.aloft/exit.json`; microVM: the virtio-serial
//! port [`EXIT_PORT`], which QEMU writes to a host file) before it exits / powers off.
//!
//! In a microVM the agent talks to init over the virtio-serial port [`CONTROL_PORT`]:
//! newline-delimited JSON, one [`ControlRequest`] per line from the host, one [`ControlReply`]
//! per request (matched by `id`, in any order). Init serves requests once the machine's process
//! runs. ([`ControlEvent`]s are reserved: a guest's write to a virtio port blocks while the host
//! is not connected, so init sends none yet.)
//! In gVisor the same operations go through `runsc exec` of `aloft-init exec|ps` instead.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Name of the virtio-serial port carrying [`ControlRequest`]s (guest: `/dev/virtio-ports/...`).
pub const CONTROL_PORT: &str = "aloft.control";
/// Name of the virtio-serial port init writes its [`ExitReport`] to.
pub const EXIT_PORT: &str = "aloft.exit";
/// Where init reads its config in a gVisor sandbox (and where `aloft-init exec` finds it).
pub const CONTAINER_CONFIG_PATH: &str = "/.aloft/config.json";
/// Where init writes its exit report in a gVisor sandbox.
pub const CONTAINER_EXIT_PATH: &str = "/.aloft/exit.json";
/// Where the init binary itself sits in a gVisor sandbox's root filesystem.
pub const CONTAINER_INIT_PATH: &str = "/.aloft/init";
/// Where init reads its config inside the microVM's initramfs.
pub const VM_CONFIG_PATH: &str = "/aloft/config.json";

/// Everything init needs to set up and run one machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitConfig {
    pub machine_id: String,
    pub app: String,
    pub region: String,
    pub hostname: String,
    /// The process to run: argv (entrypoint + cmd, or `init.exec`), env, working dir, user.
    pub process: InitProcess,
    /// Files from `config.files`, written before the process starts.
    #[serde(default)]
    pub files: Vec<InitFile>,
    /// Extra `/etc/hosts` entries: address -> names (the machine's own names, `fly-local-6pn`).
    #[serde(default)]
    pub hosts: Vec<HostsEntry>,
    /// Name servers for `/etc/resolv.conf`; empty leaves the image's file alone.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// Search domains for `/etc/resolv.conf` (written only with `nameservers`).
    #[serde(default)]
    pub dns_searches: Vec<String>,
    /// Interfaces to configure by netlink. `None` when the host configured the network already
    /// (gVisor runs inside a network namespace the agent set up).
    #[serde(default)]
    pub network: Option<NetworkConfig>,
    /// Present in a microVM: what to do before the root filesystem can be mounted.
    #[serde(default)]
    pub vm: Option<VmBoot>,
}

/// The main process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitProcess {
    /// Never empty.
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Absolute; `/` when the image does not say.
    pub working_dir: String,
    /// `user`, `uid`, `user:group` or `uid:gid`, resolved against the image's `/etc/passwd` and
    /// `/etc/group`; empty = root.
    #[serde(default)]
    pub user: String,
}

/// A file to write before the process starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitFile {
    pub path: String,
    /// Base64 of the content.
    pub content_base64: String,
    /// Permission bits; 0644 when absent.
    #[serde(default)]
    pub mode: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostsEntry {
    pub address: String,
    pub names: Vec<String>,
}

/// One interface (by name, e.g. `eth0`) and its addresses and routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    pub interface: String,
    /// CIDR addresses, IPv4 and IPv6 (`172.19.0.5/16`, `fdaa:0:1:0:1:0:5:2/112`).
    pub addresses: Vec<String>,
    /// IPv4 default gateway, if the host gives IPv4.
    #[serde(default)]
    pub gateway_v4: Option<String>,
    /// IPv6 routes: destination CIDR -> `None` for on-link, or a gateway address.
    #[serde(default)]
    pub routes_v6: Vec<Route>,
    #[serde(default)]
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub destination: String,
    #[serde(default)]
    pub gateway: Option<String>,
}

/// MicroVM boot: modules to load (paths inside the initramfs, in order), then the root disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmBoot {
    pub modules: Vec<String>,
    /// The root block device (`/dev/vda`), ext4, mounted read-write (its writes go to the
    /// per-machine copy-on-write overlay on the host).
    pub root_device: String,
    /// Volumes to mount once the root disk is mounted, before the process starts.
    #[serde(default)]
    pub volumes: Vec<VmVolume>,
}

/// A volume attached to a microVM as a virtio disk, found by its serial (the volume id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmVolume {
    pub serial: String,
    /// Where the machine sees it (ext4, mounted nosuid, nodev).
    pub path: String,
}

/// How the machine's process ended, as init saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitReport {
    /// The exit code, or 128 + signal.
    pub exit_code: i32,
    #[serde(default)]
    pub signal: Option<i32>,
    /// The kernel OOM-killed the process (seen by init in the guest's `oom_kill` counter).
    #[serde(default)]
    pub oom_killed: bool,
    /// Init could not start the process at all (no such entrypoint, bad user, ...): the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A request from the host to init (microVM control port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRequest {
    pub id: u64,
    #[serde(flatten)]
    pub op: ControlOp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlOp {
    /// Run a command with the main process's environment, user and working directory.
    Exec {
        argv: Vec<String>,
        #[serde(default)]
        stdin: Option<String>,
        timeout_ms: u64,
    },
    /// Send a signal (number) to the main process.
    Signal { signal: i32 },
    /// The processes in the machine.
    Ps,
    /// Uptime, load, memory.
    Sysinfo,
}

/// init's answer to one [`ControlRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlReply {
    pub id: u64,
    #[serde(flatten)]
    pub result: ControlResult,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlResult {
    Exec(crate::api::ExecResponse),
    Ps(Vec<crate::api::ProcessStat>),
    Sysinfo(Sysinfo),
    Ok(bool),
    Error(String),
}

/// A message from init that answers no request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ControlEvent {
    /// The main process is running.
    Started { pid: u32 },
    /// The main process ended (also written to the exit port).
    Exited(ExitReport),
}

/// `Sysinfo` reply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sysinfo {
    pub uptime_secs: f64,
    pub load_1m: f64,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    pub processes: u32,
}

/// One line on the control port from the guest: a reply or an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GuestMessage {
    Reply(ControlReply),
    Event(ControlEvent),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip() {
        let req = ControlRequest {
            id: 7,
            op: ControlOp::Exec {
                argv: vec!["ls".into()],
                stdin: None,
                timeout_ms: 1000,
            },
        };
        let line = serde_json::to_string(&req).unwrap();
        assert_eq!(
            line,
            r#"{"id":7,"op":"exec","argv":["ls"],"stdin":null,"timeout_ms":1000}"#
        );
        assert_eq!(serde_json::from_str::<ControlRequest>(&line).unwrap(), req);

        let reply: GuestMessage = serde_json::from_str(r#"{"id":7,"ok":true}"#).unwrap();
        assert_eq!(
            reply,
            GuestMessage::Reply(ControlReply {
                id: 7,
                result: ControlResult::Ok(true)
            })
        );
        let ev: GuestMessage =
            serde_json::from_str(r#"{"event":"exited","exit_code":3,"signal":null}"#).unwrap();
        assert!(matches!(
            ev,
            GuestMessage::Event(ControlEvent::Exited(ExitReport { exit_code: 3, .. }))
        ));
    }
}
