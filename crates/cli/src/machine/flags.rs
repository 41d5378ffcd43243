//! `machine run`'s flags turned into a machine config: env and metadata pairs, memory sizes,
//! ports and services, checks, restart policy, signals and timeouts in the reference's syntax.

use super::args::{AutostopArg, CpuKindArg, RestartArg, RunArgs};
use aloft_appconfig::values::split_command;
use aloft_types::MachineConfig;
use aloft_types::config::{
    Autostop, Check, CheckType, CpuKind, DurationStr, Guest, Handler, InitConfig, Mount, Port,
    Protocol, Restart, RestartPolicy, Service,
};
use aloft_types::signal::Signal;
use aloft_types::time::parse_duration;
use anyhow::{Result, anyhow, bail};
use std::collections::BTreeMap;

/// The machine config `machine run` sends.
pub(super) fn build_config(args: &RunArgs) -> Result<MachineConfig> {
    let mut config = MachineConfig::for_image(args.image.clone());
    config.env = parse_pairs("--env", &args.env)?;
    config.metadata = parse_pairs("--metadata", &args.metadata)?;
    let cpu_kind = cpu_kind(args.cpu_kind);
    let cpus = args.cpus.unwrap_or(1);
    let memory_mb = match &args.memory {
        Some(m) => parse_memory(m)?,
        None => Guest::memory_range(cpu_kind, cpus).0,
    };
    config.guest = Guest {
        cpu_kind,
        cpus,
        memory_mb,
        ..Guest::default()
    };
    let cmd = match &args.cmd {
        Some(c) => split_command(c).map_err(|e| anyhow!("--cmd: {e}"))?,
        None => args.command.clone(),
    };
    let entrypoint = match &args.entrypoint {
        Some(e) => split_command(e).map_err(|e| anyhow!("--entrypoint: {e}"))?,
        None => Vec::new(),
    };
    if !cmd.is_empty() || !entrypoint.is_empty() {
        config.init = Some(InitConfig {
            entrypoint,
            cmd,
            ..InitConfig::default()
        });
    }
    let autostop = match args.autostop {
        None | Some(AutostopArg::Off) => Autostop::Off,
        Some(AutostopArg::Stop) => Autostop::Stop,
        Some(AutostopArg::Suspend) => Autostop::Suspend,
    };
    config.services = services(&args.port, autostop)?;
    if autostop != Autostop::Off && config.services.is_empty() {
        bail!(
            "--autostop applies to published services; publish a port with -p too (e.g. -p 80:8080/tcp:http)"
        );
    }
    for spec in &args.check {
        let (name, check) = parse_check(spec)?;
        config.checks.insert(name, check);
    }
    if let Some(v) = &args.volume {
        let (volume, path) = v.split_once(':').filter(|(v, p)| !v.is_empty() && p.starts_with('/')).ok_or_else(|| {
            anyhow!("--volume `{v}` is not VOLUME_ID:/path; write it like --volume vol_0123456789abcdef:/data")
        })?;
        config.mounts = vec![Mount {
            extra: Default::default(),
            volume: volume.to_string(),
            path: path.to_string(),
            name: None,
            size_gb: None,
            encrypted: None,
        }];
    }
    config.restart = args.restart.map(|r| Restart {
        extra: Default::default(),
        policy: match r {
            RestartArg::No => RestartPolicy::No,
            RestartArg::Always => RestartPolicy::Always,
            RestartArg::OnFail => RestartPolicy::OnFailure,
        },
        max_retries: None,
    });
    Ok(config)
}

/// The CPU kind a flag names (shared when none).
pub(super) fn cpu_kind(arg: Option<CpuKindArg>) -> CpuKind {
    match arg {
        Some(CpuKindArg::Performance) => CpuKind::Performance,
        Some(CpuKindArg::Shared) | None => CpuKind::Shared,
    }
}

/// `NAME=VALUE` pairs of a repeatable flag.
pub(super) fn parse_pairs(flag: &str, items: &[String]) -> Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(anyhow!(
                "{flag} `{item}` is not NAME=VALUE; write it like {flag} NAME=value"
            )),
        })
        .collect()
}

/// `512`, `512mb`, `1gb`, `1.5GB` -> MB.
pub(super) fn parse_memory(s: &str) -> Result<u32> {
    let lower = s.trim().to_ascii_lowercase();
    const UNITS: [(&str, f64); 6] = [
        ("gib", 1024.0),
        ("gb", 1024.0),
        ("g", 1024.0),
        ("mib", 1.0),
        ("mb", 1.0),
        ("m", 1.0),
    ];
    let (number, factor) = UNITS
        .iter()
        .find_map(|(unit, f)| lower.strip_suffix(unit).map(|n| (n, *f)))
        .unwrap_or((lower.as_str(), 1.0));
    let mb = number.trim().parse::<f64>().ok().map(|n| n * factor);
    match mb {
        Some(mb) if mb >= 1.0 && mb.fract() == 0.0 && mb <= f64::from(u32::MAX) => Ok(mb as u32),
        _ => bail!(
            "--memory `{s}` is not a memory size; write MB as a number (512) or with a unit (512mb, 1gb)"
        ),
    }
}

/// `-p` specs grouped into services: ports with the same internal port and protocol share one.
/// `alive=http:8080/healthz` or `db=tcp:5432`.
fn parse_check(spec: &str) -> Result<(String, Check)> {
    let bad = || {
        anyhow!(
            "--check `{spec}`: write NAME=tcp:PORT or NAME=http:PORT/PATH, e.g. alive=http:8080/healthz"
        )
    };
    let (name, rest) = spec.split_once('=').ok_or_else(bad)?;
    let (kind, target) = rest.split_once(':').ok_or_else(bad)?;
    let (port, path) = match target.split_once('/') {
        Some((port, path)) => (port, Some(format!("/{path}"))),
        None => (target, None),
    };
    let port: u32 = port.parse().map_err(|_| bad())?;
    let kind = match kind {
        "tcp" if path.is_none() => CheckType::Tcp,
        "http" => CheckType::Http,
        _ => return Err(bad()),
    };
    if name.is_empty() {
        return Err(bad());
    }
    Ok((
        name.to_string(),
        Check {
            extra: Default::default(),
            kind,
            port: Some(port),
            interval: None,
            timeout: None,
            grace_period: None,
            method: None,
            path,
            protocol: None,
            headers: Vec::new(),
        },
    ))
}

fn services(specs: &[String], autostop: Autostop) -> Result<Vec<Service>> {
    let mut services: Vec<Service> = Vec::new();
    for spec in specs {
        let (public, internal, protocol, handlers) = parse_port(spec)?;
        let port = Port {
            port: Some(public),
            handlers,
            ..Port::default()
        };
        match services
            .iter_mut()
            .find(|s| s.internal_port == internal && s.protocol == protocol)
        {
            Some(service) => service.ports.push(port),
            None => services.push(Service {
                protocol,
                internal_port: internal,
                autostop,
                ports: vec![port],
                ..Service::default()
            }),
        }
    }
    Ok(services)
}

/// `PUBLIC[:INTERNAL][/PROTOCOL[:HANDLER...]]`.
fn parse_port(spec: &str) -> Result<(u32, u32, Protocol, Vec<Handler>)> {
    let usage = "write it as PUBLIC[:INTERNAL][/PROTOCOL[:HANDLER...]], e.g. 443:8080/tcp:http:tls or 5432/tcp";
    let (ports, rest) = spec.split_once('/').unwrap_or((spec, ""));
    let (public, internal) = ports.split_once(':').unwrap_or((ports, ports));
    let number = |s: &str| -> Result<u32> {
        match s.trim().parse::<u16>() {
            Ok(p) if p > 0 => Ok(u32::from(p)),
            _ => bail!("--port `{spec}`: `{s}` is not a port (1 to 65535); {usage}"),
        }
    };
    let (public, internal) = (number(public)?, number(internal)?);
    let mut parts = rest.split(':');
    let protocol = match parts.next().unwrap_or("") {
        "" | "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => bail!("--port `{spec}`: unknown protocol `{other}`; use tcp or udp"),
    };
    let handlers = parts
        .filter(|h| !h.is_empty())
        .map(|h| match h {
            "http" => Ok(Handler::Http),
            "tls" => Ok(Handler::Tls),
            "proxy_proto" => Ok(Handler::ProxyProto),
            "pg_tls" => Ok(Handler::PgTls),
            other => Err(anyhow!(
                "--port `{spec}`: unknown handler `{other}`; use http, tls, proxy_proto or pg_tls"
            )),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((public, internal, protocol, handlers))
}

pub(super) fn parse_signal(s: &str) -> Result<Signal> {
    Signal::parse(s).map_err(|e| anyhow!("{e}"))
}

pub(super) fn parse_timeout(s: &str) -> Result<DurationStr> {
    parse_duration(s).map_err(|e| anyhow!("--timeout: {e}"))?;
    Ok(DurationStr(s.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_from_the_command_line() {
        let (name, c) = parse_check("alive=http:8080/healthz").unwrap();
        assert_eq!(name, "alive");
        assert_eq!(
            (c.kind, c.port, c.path.as_deref()),
            (CheckType::Http, Some(8080), Some("/healthz"))
        );
        let (_, c) = parse_check("db=tcp:5432").unwrap();
        assert_eq!((c.kind, c.port, c.path), (CheckType::Tcp, Some(5432), None));
        for bad in [
            "alive",
            "alive=http",
            "alive=udp:53",
            "=tcp:1",
            "x=tcp:1/path",
            "x=http:port/",
        ] {
            let e = parse_check(bad).unwrap_err().to_string();
            assert!(e.contains("NAME=tcp:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn ports_follow_the_reference_syntax() {
        let (p, i, proto, h) = parse_port("443:8080/tcp:http:tls").unwrap();
        assert_eq!((p, i, proto), (443, 8080, Protocol::Tcp));
        assert_eq!(h, vec![Handler::Http, Handler::Tls]);
        let (p, i, proto, h) = parse_port("5432/tcp").unwrap();
        assert_eq!((p, i, proto, h.len()), (5432, 5432, Protocol::Tcp, 0));
        let (p, i, proto, _) = parse_port("53:5353/udp").unwrap();
        assert_eq!((p, i, proto), (53, 5353, Protocol::Udp));
        assert_eq!(parse_port("80").unwrap().1, 80);
        for bad in ["0", "x:80", "80/sctp", "80/tcp:gopher", "70000"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
        let s = services(
            &[
                "80:8080/tcp:http".into(),
                "443:8080/tcp:http:tls".into(),
                "5432/tcp".into(),
            ],
            Autostop::Stop,
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].ports.len(), 2);
        assert_eq!(s[0].autostop, Autostop::Stop);
        assert_eq!(s[1].internal_port, 5432);
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512").unwrap(), 512);
        assert_eq!(parse_memory("512mb").unwrap(), 512);
        assert_eq!(parse_memory("1gb").unwrap(), 1024);
        assert_eq!(parse_memory("1.5GB").unwrap(), 1536);
        assert_eq!(parse_memory("2g").unwrap(), 2048);
        for bad in ["", "lots", "0", "-1", "1.5"] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pairs() {
        let m = parse_pairs("--env", &["A=1".into(), "B=x=y".into(), "C=".into()]).unwrap();
        assert_eq!(m["B"], "x=y");
        assert_eq!(m["C"], "");
        assert!(parse_pairs("--env", &["A".into()]).is_err());
        assert!(parse_pairs("--env", &["=1".into()]).is_err());
    }
}
