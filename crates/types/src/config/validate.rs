//! [`MachineConfig::validate`]: every rule the reference applies, one function per section, in
//! the order the sections are checked; the first problem is the error.

use super::{
    Check, Concurrency, File, Handler, MachineConfig, Port, Protocol, Restart, Service,
    mount_path_problem,
};
use crate::error::ApiError;
use std::collections::BTreeMap;

impl MachineConfig {
    /// Checks every rule the reference applies; the error names the field (`config.x.y`) and what
    /// it accepts.
    pub fn validate(&self) -> Result<(), ApiError> {
        self.validate_image()?;
        self.guest.validate()?;
        self.validate_env()?;
        self.validate_services()?;
        for (name, c) in &self.checks {
            validate_check(&format!("config.checks.{name}"), c, true)?;
        }
        self.validate_mounts()?;
        self.validate_restart()?;
        self.validate_files()
    }

    /// `image`: given, without whitespace.
    fn validate_image(&self) -> Result<(), ApiError> {
        if self.image.trim().is_empty() {
            return Err(ApiError::invalid(
                "config.image",
                "config.image is required: name the image to run, e.g. \"registry.example/org/app:v1\" or \"app:latest\"",
            ));
        }
        if self.image.chars().any(char::is_whitespace) {
            return Err(ApiError::invalid(
                "config.image",
                format!(
                    "config.image `{}` contains whitespace; an image reference has none",
                    self.image
                ),
            ));
        }
        Ok(())
    }

    /// `env`: every name a valid variable name.
    fn validate_env(&self) -> Result<(), ApiError> {
        for key in self.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(ApiError::invalid(
                    format!("config.env.{key}"),
                    format!("config.env: `{key}` is not a valid variable name (no `=`, not empty)"),
                ));
            }
        }
        Ok(())
    }

    /// `services`: each service in order, a public port (per protocol) used by one only.
    fn validate_services(&self) -> Result<(), ApiError> {
        let mut public_ports: BTreeMap<(u32, Protocol), usize> = BTreeMap::new();
        for (i, svc) in self.services.iter().enumerate() {
            validate_service(i, svc, &mut public_ports)?;
        }
        Ok(())
    }

    /// `mounts`: at most one, at a path a volume can be mounted at, naming its volume.
    fn validate_mounts(&self) -> Result<(), ApiError> {
        if self.mounts.len() > 1 {
            return Err(ApiError::invalid(
                "config.mounts",
                "config.mounts: a machine can mount at most one volume",
            ));
        }
        for (i, m) in self.mounts.iter().enumerate() {
            if let Some(problem) = mount_path_problem(&m.path) {
                return Err(ApiError::invalid(
                    format!("config.mounts[{i}].path"),
                    format!("config.mounts[{i}].path `{}` {problem}", m.path),
                ));
            }
            if m.volume.is_empty() {
                return Err(ApiError::invalid(
                    format!("config.mounts[{i}].volume"),
                    format!("config.mounts[{i}].volume is required (the volume's id)"),
                ));
            }
        }
        Ok(())
    }

    /// `restart`: a bounded retry budget.
    fn validate_restart(&self) -> Result<(), ApiError> {
        if let Some(Restart {
            max_retries: Some(n),
            ..
        }) = &self.restart
            && *n > 1000
        {
            return Err(ApiError::invalid(
                "config.restart.max_retries",
                format!("config.restart.max_retries {n} is too many; use at most 1000"),
            ));
        }
        Ok(())
    }

    /// `files`: each at an absolute path, with one source, and a file mode.
    fn validate_files(&self) -> Result<(), ApiError> {
        for (i, file) in self.files.iter().enumerate() {
            validate_file(&format!("config.files[{i}]"), file)?;
        }
        Ok(())
    }
}

/// `config.services[i]`: its internal port, concurrency, ports (`public_ports` holds the public
/// ports of the services before it) and checks.
fn validate_service(
    i: usize,
    svc: &Service,
    public_ports: &mut BTreeMap<(u32, Protocol), usize>,
) -> Result<(), ApiError> {
    let f = format!("config.services[{i}]");
    check_port(&format!("{f}.internal_port"), svc.internal_port)?;
    if let Some(c) = &svc.concurrency {
        validate_concurrency(&f, c)?;
    }
    for (j, p) in svc.ports.iter().enumerate() {
        let pf = format!("{f}.ports[{j}]");
        validate_port(&pf, p)?;
        for port in p.range() {
            if let Some(other) = public_ports.insert((port, svc.protocol), i) {
                return Err(ApiError::invalid(
                    format!("{pf}.port"),
                    format!(
                        "{pf}: public port {port} is already used by config.services[{other}]; give each service its own port"
                    ),
                ));
            }
        }
    }
    for (j, c) in svc.checks.iter().enumerate() {
        validate_check(&format!("{f}.checks[{j}]"), c, false)?;
    }
    Ok(())
}

/// A service's (`f`) load limits: both at least 1, the soft one not above the hard one.
fn validate_concurrency(f: &str, c: &Concurrency) -> Result<(), ApiError> {
    if c.soft_limit == 0 || c.hard_limit == 0 {
        return Err(ApiError::invalid(
            format!("{f}.concurrency"),
            format!("{f}.concurrency: soft_limit and hard_limit must be at least 1"),
        ));
    }
    if c.soft_limit > c.hard_limit {
        return Err(ApiError::invalid(
            format!("{f}.concurrency.soft_limit"),
            format!(
                "{f}.concurrency: soft_limit ({}) is above hard_limit ({}); make soft_limit <= hard_limit",
                c.soft_limit, c.hard_limit
            ),
        ));
    }
    Ok(())
}

/// A service's port `pf`: a port or a range, and options its handlers understand.
fn validate_port(pf: &str, p: &Port) -> Result<(), ApiError> {
    match (p.port, p.start_port, p.end_port) {
        (Some(port), None, None) => check_port(&format!("{pf}.port"), port)?,
        (None, Some(a), Some(b)) => {
            check_port(&format!("{pf}.start_port"), a)?;
            check_port(&format!("{pf}.end_port"), b)?;
            if a > b {
                return Err(ApiError::invalid(
                    format!("{pf}.start_port"),
                    format!("{pf}: start_port {a} is above end_port {b}"),
                ));
            }
        }
        _ => {
            return Err(ApiError::invalid(
                format!("{pf}.port"),
                format!("{pf}: set either `port`, or both `start_port` and `end_port`"),
            ));
        }
    }
    if let Some(v) = p.http_options.as_ref().and_then(|o| o.get("h2_backend"))
        && !v.is_boolean()
    {
        return Err(ApiError::invalid(
            format!("{pf}.http_options.h2_backend"),
            format!("{pf}.http_options.h2_backend: {v} is not true or false"),
        ));
    }
    if let Some(v) = p
        .proxy_proto_options
        .as_ref()
        .and_then(|o| o.get("version"))
        && !matches!(v.as_str(), Some("v1" | "v2"))
    {
        return Err(ApiError::Invalid {
            message: format!(
                "{pf}.proxy_proto_options.version: {v} is not a PROXY protocol version; use \"v1\" or \"v2\""
            ),
            field: format!("{pf}.proxy_proto_options.version"),
            allowed: vec!["v1".into(), "v2".into()],
        });
    }
    if p.force_https && !p.handlers.contains(&Handler::Http) {
        return Err(ApiError::invalid(
            format!("{pf}.force_https"),
            format!("{pf}: force_https needs the `http` handler on this port"),
        ));
    }
    Ok(())
}

/// The file `f`: an absolute guest path, exactly one of a base64 value and a secret, a file mode.
fn validate_file(f: &str, file: &File) -> Result<(), ApiError> {
    if !file.guest_path.starts_with('/') {
        return Err(ApiError::invalid(
            format!("{f}.guest_path"),
            format!(
                "{f}.guest_path `{}` must be an absolute path",
                file.guest_path
            ),
        ));
    }
    match (&file.raw_value, &file.secret_name) {
        (Some(v), None) => {
            if !is_base64(v) {
                return Err(ApiError::invalid(
                    format!("{f}.raw_value"),
                    format!("{f}.raw_value must be base64 (e.g. the output of `base64 -w0 FILE`)"),
                ));
            }
        }
        (None, Some(_)) => {}
        _ => {
            return Err(ApiError::invalid(
                format!("{f}.raw_value"),
                format!("{f}: set exactly one of `raw_value` and `secret_name`"),
            ));
        }
    }
    if let Some(mode) = file.mode
        && mode > 0o7777
    {
        return Err(ApiError::invalid(
            format!("{f}.mode"),
            format!("{f}.mode {mode:o} is not a file mode; use at most 0o7777 (4095)"),
        ));
    }
    Ok(())
}

fn check_port(field: &str, port: u32) -> Result<(), ApiError> {
    if port == 0 || port > 65535 {
        return Err(ApiError::Invalid {
            message: format!("{field}: {port} is not a port; use 1 to 65535"),
            field: field.to_string(),
            allowed: vec!["1..=65535".into()],
        });
    }
    Ok(())
}

fn validate_check(field: &str, c: &Check, needs_port: bool) -> Result<(), ApiError> {
    match c.port {
        Some(p) => check_port(&format!("{field}.port"), p)?,
        None if needs_port => {
            return Err(ApiError::invalid(
                format!("{field}.port"),
                format!("{field}.port is required: the port inside the machine to check"),
            ));
        }
        None => {}
    }
    if let Some(path) = &c.path
        && !path.starts_with('/')
    {
        return Err(ApiError::invalid(
            format!("{field}.path"),
            format!("{field}.path `{path}` must start with `/`"),
        ));
    }
    if let Some(m) = &c.method {
        const METHODS: [&str; 5] = ["GET", "HEAD", "POST", "PUT", "OPTIONS"];
        if !METHODS.contains(&m.to_ascii_uppercase().as_str()) {
            return Err(ApiError::invalid_choice(
                format!("{field}.method"),
                m,
                &METHODS,
            ));
        }
    }
    if let Some(p) = &c.protocol
        && p != "http"
        && p != "https"
    {
        return Err(ApiError::invalid_choice(
            format!("{field}.protocol"),
            p,
            &["http", "https"],
        ));
    }
    Ok(())
}

fn is_base64(s: &str) -> bool {
    let t = s.trim_end_matches('=');
    s.len() - t.len() <= 2
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}
