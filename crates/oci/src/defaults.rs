//! [`ImageDefaults`]: what an image config says about how to run it (Entrypoint, Cmd, Env,
//! WorkingDir, User, ExposedPorts), as read from a pulled image and as written into a built one.
//! How a machine config combines with it is the image pipeline's rule (`aloft-image`).

use crate::manifest::ContainerConfig;
use serde::{Deserialize, Serialize};

/// `PATH` when the image sets none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The run settings of an image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDefaults {
    /// `Entrypoint`.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// `Env`, as `NAME=value` strings in the image's order.
    #[serde(default)]
    pub env: Vec<String>,
    /// `WorkingDir` (empty when unset).
    #[serde(default)]
    pub working_dir: String,
    /// `User` (`name`, `uid`, `name:group`, `uid:gid`; empty when unset).
    #[serde(default)]
    pub user: String,
    /// `ExposedPorts` keys such as `8080/tcp`, sorted.
    #[serde(default)]
    pub exposed_ports: Vec<String>,
}

impl ImageDefaults {
    /// The run settings of an image config's `config` (all empty when it has none).
    pub fn from_config(c: Option<&ContainerConfig>) -> ImageDefaults {
        let Some(c) = c else {
            return ImageDefaults::default();
        };
        ImageDefaults {
            entrypoint: c.entrypoint.clone().unwrap_or_default(),
            cmd: c.cmd.clone().unwrap_or_default(),
            env: c.env.clone().unwrap_or_default(),
            working_dir: c.working_dir.clone().unwrap_or_default(),
            user: c.user.clone().unwrap_or_default(),
            exposed_ports: c
                .exposed_ports
                .as_ref()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default(),
        }
    }

    /// The image config's `config` with these settings (empty ones left out).
    pub fn to_config(&self) -> ContainerConfig {
        let some = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        let some_s = |v: &String| (!v.is_empty()).then(|| v.clone());
        ContainerConfig {
            entrypoint: some(&self.entrypoint),
            cmd: some(&self.cmd),
            env: some(&self.env),
            working_dir: some_s(&self.working_dir),
            user: some_s(&self.user),
            exposed_ports: (!self.exposed_ports.is_empty()).then(|| {
                self.exposed_ports
                    .iter()
                    .map(|p| (p.clone(), serde_json::json!({})))
                    .collect()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_through_an_image_config() {
        let d = ImageDefaults {
            entrypoint: vec!["/bin/sh".into()],
            cmd: vec!["-c".into(), "true".into()],
            env: vec![format!("PATH={DEFAULT_PATH}")],
            working_dir: "/app".into(),
            user: "nobody".into(),
            exposed_ports: vec!["8080/tcp".into(), "9000/udp".into()],
        };
        assert_eq!(ImageDefaults::from_config(Some(&d.to_config())), d);
        let empty = ImageDefaults::default().to_config();
        assert_eq!(empty, ContainerConfig::default());
        assert_eq!(ImageDefaults::from_config(None), ImageDefaults::default());
    }
}
