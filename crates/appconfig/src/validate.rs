//! Checks across keys that the types alone cannot make: each problem with the key it is about and
//! what to do.

use crate::keypath::KeyPath;
use crate::schema::{AppConfig, Strategy};
use aloft_types::ids::is_dns_label;
use std::collections::BTreeMap;

/// The machine size presets of the reference (`[[vm]] size`), with CPU kind, CPUs and memory:
/// fly-go's `MachinePresets` (256 MB per shared CPU, 2048 MB per performance CPU), less the GPU
/// sizes (aloft's hosts have no GPUs).
pub const VM_SIZES: &[(&str, &str, u32, u32)] = &[
    ("shared-cpu-1x", "shared", 1, 256),
    ("shared-cpu-2x", "shared", 2, 512),
    ("shared-cpu-4x", "shared", 4, 1024),
    ("shared-cpu-6x", "shared", 6, 1536),
    ("shared-cpu-8x", "shared", 8, 2048),
    ("performance-1x", "performance", 1, 2048),
    ("performance-2x", "performance", 2, 4096),
    ("performance-4x", "performance", 4, 8192),
    ("performance-6x", "performance", 6, 12288),
    ("performance-8x", "performance", 8, 16384),
    ("performance-10x", "performance", 10, 20480),
    ("performance-12x", "performance", 12, 24576),
    ("performance-14x", "performance", 14, 28672),
    ("performance-16x", "performance", 16, 32768),
];

/// The size named `name`: (CPU kind, CPUs, memory MB), or what the names are.
pub fn vm_size(name: &str) -> Result<(&'static str, u32, u32), String> {
    VM_SIZES
        .iter()
        .find(|(n, ..)| *n == name)
        .map(|(_, kind, cpus, memory)| (*kind, *cpus, *memory))
        .ok_or_else(|| {
            format!(
                "unknown size `{name}`: use one of {}",
                VM_SIZES
                    .iter()
                    .map(|(n, ..)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// The process group of an app without `[processes]`.
pub const DEFAULT_GROUP: &str = "app";

/// A problem: the key it is about, and what to do.
type Problems = Vec<(KeyPath, String)>;

/// Every problem found, with its key.
pub fn check(c: &AppConfig) -> Vec<(KeyPath, String)> {
    let mut problems = Vec::new();
    names(c, &mut problems);
    // Process groups named by sections must exist.
    let groups: Vec<&str> = if c.processes.is_empty() {
        vec![DEFAULT_GROUP]
    } else {
        c.processes.keys().map(String::as_str).collect()
    };
    known_groups(c, &groups, &mut problems);
    mounts(c, &groups, &mut problems);
    public_ports(c, &mut problems);
    check_ports(c, &mut problems);
    vm(c, &mut problems);
    files(c, &mut problems);
    deploy(c, &mut problems);
    problems
}

/// The app's name, its environment variables' names and its process groups.
fn names(c: &AppConfig, problems: &mut Problems) {
    let mut problem = |key: KeyPath, message: String| problems.push((key, message));
    let root = KeyPath::default;

    if let Some(app) = &c.app
        && !is_dns_label(app)
    {
        problem(
            root().key("app"),
            format!(
                "`{app}` is not an app name: use lowercase letters, digits and dashes (up to 63)"
            ),
        );
    }
    for name in c.env.keys() {
        if name.starts_with("FLY_") || name.starts_with("ALOFT_") {
            problem(
                root().key("env").key(name),
                "names starting with FLY_ or ALOFT_ are the platform's: rename the variable".into(),
            );
        }
    }
    for (name, command) in &c.processes {
        if !is_dns_label(name) {
            problem(
                root().key("processes").key(name),
                format!(
                    "`{name}` is not a process group name: use lowercase letters, digits and dashes"
                ),
            );
        }
        if command.0.is_empty() {
            problem(
                root().key("processes").key(name),
                "the command is empty: give the command this group runs".into(),
            );
        }
    }
}

/// The process groups every section names are among `groups`.
fn known_groups(c: &AppConfig, groups: &[&str], problems: &mut Problems) {
    let root = KeyPath::default;
    let mut known_groups = |key: KeyPath, named: &[String]| {
        for g in named {
            if !groups.contains(&g.as_str()) {
                problems.push((
                    key.clone().key("processes"),
                    format!(
                        "no process group `{g}`: the groups are {} (from [processes])",
                        groups.join(", ")
                    ),
                ));
            }
        }
    };
    if let Some(h) = &c.http_service {
        known_groups(root().key("http_service"), &h.processes);
    }
    for (i, s) in c.services.iter().enumerate() {
        known_groups(root().key("services").index(i), &s.processes);
    }
    for (name, check) in &c.checks {
        known_groups(root().key("checks").key(name), &check.processes);
    }
    for (i, v) in c.vm.iter().enumerate() {
        known_groups(root().key("vm").index(i), &v.processes);
    }
    for (i, m) in c.mounts.iter().enumerate() {
        known_groups(root().key("mounts").index(i), &m.processes);
    }
    for (i, r) in c.restart.iter().enumerate() {
        known_groups(root().key("restart").index(i), &r.processes);
    }
    for (i, f) in c.files.iter().enumerate() {
        known_groups(root().key("files").index(i), &f.processes);
    }
}

/// A machine mounts one volume, at an absolute path other than /.
fn mounts(c: &AppConfig, groups: &[&str], problems: &mut Problems) {
    let mut problem = |key: KeyPath, message: String| problems.push((key, message));
    let root = KeyPath::default;
    let mut mounted: Vec<(&str, usize)> = Vec::new();
    for (i, m) in c.mounts.iter().enumerate() {
        if let Some(why) = aloft_types::config::mount_path_problem(&m.destination) {
            problem(
                root().key("mounts").index(i).key("destination"),
                format!("`{}` {why}", m.destination),
            );
        }
        for g in groups
            .iter()
            .filter(|g| m.processes.is_empty() || m.processes.iter().any(|p| p == *g))
        {
            match mounted.iter().find(|(other, _)| other == g) {
                Some((_, first)) => problem(
                    root().key("mounts").index(i),
                    format!(
                        "process group `{g}` already mounts a volume ([[mounts]] number {}), and a machine mounts one: give each [[mounts]] the processes it is for",
                        first + 1
                    ),
                ),
                None => mounted.push((g, i)),
            }
        }
    }
}

/// Public ports: each used once ([http_service] takes 80 and 443).
fn public_ports(c: &AppConfig, problems: &mut Problems) {
    let mut problem = |key: KeyPath, message: String| problems.push((key, message));
    let root = KeyPath::default;
    let mut public: BTreeMap<u16, String> = BTreeMap::new();
    if c.http_service.is_some() {
        public.insert(80, "[http_service]".into());
        public.insert(443, "[http_service]".into());
    }
    for (i, s) in c.services.iter().enumerate() {
        for (j, p) in s.ports.iter().enumerate() {
            let key = root().key("services").index(i).key("ports").index(j);
            let range = match (p.port, p.start_port, p.end_port) {
                (Some(port), None, None) => port.0..=port.0,
                (None, Some(start), Some(end)) if start <= end => start.0..=end.0,
                (None, Some(start), Some(end)) => {
                    problem(key, format!("start_port {start} is after end_port {end}"));
                    continue;
                }
                _ => {
                    problem(
                        key,
                        "give either `port`, or `start_port` and `end_port`".into(),
                    );
                    continue;
                }
            };
            for port in range {
                let owner = format!(
                    "[[services]] #{} (internal port {})",
                    i + 1,
                    s.internal_port
                );
                if let Some(other) = public.insert(port, owner) {
                    problem(
                        key.clone(),
                        format!("public port {port} is used by {other} already: pick another port"),
                    );
                    break;
                }
            }
        }
    }
}

/// Checks on ports that some service serves.
fn check_ports(c: &AppConfig, problems: &mut Problems) {
    let root = KeyPath::default;
    let internal: Vec<u16> = c
        .http_service
        .iter()
        .map(|h| h.internal_port.0)
        .chain(c.services.iter().map(|s| s.internal_port.0))
        .collect();
    for (name, check) in &c.checks {
        if let Some(port) = check.port
            && !internal.contains(&port.0)
        {
            let served = if internal.is_empty() {
                "no service is defined".to_string()
            } else {
                format!(
                    "services listen on {}",
                    internal
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            problems.push((
                root().key("checks").key(name).key("port"),
                format!(
                    "no service has internal_port {port} ({served}): the check would never pass; check a port the app serves"
                ),
            ));
        }
    }
}

/// `[[vm]]`: a known size, and memory given once.
fn vm(c: &AppConfig, problems: &mut Problems) {
    let root = KeyPath::default;
    for (i, v) in c.vm.iter().enumerate() {
        if let Some(Err(e)) = v.size.as_deref().map(vm_size) {
            problems.push((root().key("vm").index(i).key("size"), e));
        }
        if v.memory.is_some() && v.memory_mb.is_some() {
            problems.push((
                root().key("vm").index(i),
                "give `memory` or `memory_mb`, not both".into(),
            ));
        }
    }
}

/// `[[files]]`: each with one source.
fn files(c: &AppConfig, problems: &mut Problems) {
    let root = KeyPath::default;
    for (i, f) in c.files.iter().enumerate() {
        let sources = [&f.raw_value, &f.local_path, &f.secret_name]
            .iter()
            .filter(|s| s.is_some())
            .count();
        if sources != 1 {
            problems.push((
                root().key("files").index(i),
                "give exactly one of raw_value, local_path or secret_name".into(),
            ));
        }
    }
}

/// `[deploy]`: machines can be replaced, and the strategy can work with the app's checks and
/// volumes.
fn deploy(c: &AppConfig, problems: &mut Problems) {
    let mut problem = |key: KeyPath, message: String| problems.push((key, message));
    let root = KeyPath::default;
    if let Some(d) = &c.deploy {
        let key = || root().key("deploy");
        if let Some(m) = d.max_unavailable
            && m <= 0.0
        {
            problem(
                key().key("max_unavailable"),
                format!("{m} lets no machine be replaced: use a fraction (0.33) or a count (1)"),
            );
        }
        let has_check = !c.checks.is_empty()
            || c.http_service
                .as_ref()
                .is_some_and(|h| !h.checks.is_empty())
            || c.services
                .iter()
                .any(|s| !s.tcp_checks.is_empty() || !s.http_checks.is_empty());
        if d.strategy == Some(Strategy::Bluegreen) && !has_check {
            problem(
                key().key("strategy"),
                "bluegreen needs a health check to know the new machines are good: add [[http_service.checks]] or [checks.<name>]".into(),
            );
        }
        if let Some(s @ (Strategy::Bluegreen | Strategy::Canary)) = d.strategy
            && !c.mounts.is_empty()
        {
            problem(
                key().key("strategy"),
                format!(
                    "{} needs new machines beside the old ones, but a volume is mounted by one machine at a time: use rolling",
                    s.as_str()
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aloft_types::MachineConfig;
    use aloft_types::config::{CpuKind, Guest};

    #[test]
    fn every_preset_of_the_reference_is_a_size_the_api_takes() {
        for (name, kind, cpus, memory) in VM_SIZES {
            let cpu_kind = if *kind == "performance" {
                CpuKind::Performance
            } else {
                CpuKind::Shared
            };
            let guest = Guest {
                cpu_kind,
                cpus: *cpus,
                memory_mb: *memory,
                ..Guest::default()
            };
            assert_eq!(guest.size_name(), *name);
            let config: MachineConfig =
                serde_json::from_value(serde_json::json!({"image": "a", "guest": guest})).unwrap();
            assert!(config.validate().is_ok(), "{name}");
        }
        assert_eq!(vm_size("performance-6x"), Ok(("performance", 6, 12288)));
        assert_eq!(vm_size("performance-14x"), Ok(("performance", 14, 28672)));
        assert!(
            vm_size("performance-3x")
                .unwrap_err()
                .contains("performance-10x")
        );
    }
}
