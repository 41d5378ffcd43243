//! What an image says about how to run it ([`ImageDefaults`]), and how a machine config's
//! `init` and `env` combine with it into the process to start ([`ProcessSpec`]).
//!
//! The rule is the reference platform's (its guest init merges the image config with
//! `init`), which differs from `docker run --entrypoint` in one respect:
//!
//! 1. `init.exec`, when set, is the whole command line; entrypoint and cmd are ignored.
//! 2. Otherwise the command line is `entrypoint + cmd`, where `entrypoint` is `init.entrypoint`
//!    if set, else the image's `Entrypoint`, and `cmd` is `init.cmd` if set, else the image's
//!    `Cmd`. Overriding only the entrypoint **keeps the image's Cmd** (Docker would clear it;
//!    the reference does not, and aloft follows the reference). Set `init.cmd` as well to
//!    replace both.
//! 3. Environment: the image's `Env`, then the machine's `env` on top (same name: the machine
//!    wins). `PATH` defaults to Docker's default when the image sets none.
//! 4. Working directory: the image's `WorkingDir`, else `/`. User: the image's `User`, else
//!    `root` (the guest init resolves names against the image's `/etc/passwd`, and sets `HOME`
//!    from it when the environment has none).

use crate::error::ImageError;
use aloft_oci::defaults::{DEFAULT_PATH, ImageDefaults};
use aloft_types::MachineConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The process a machine runs: what the guest init execs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// argv, never empty.
    pub argv: Vec<String>,
    /// The environment (image env, then the machine's).
    pub env: BTreeMap<String, String>,
    /// Absolute working directory.
    pub working_dir: String,
    /// User (and optional group) to run as, resolved inside the guest.
    pub user: String,
}

/// How a machine config's `init` and `env` combine with an image's [`ImageDefaults`] into the
/// process to start (the rules of the module doc). Import it to call `image.config.process(..)`.
pub trait ImageProcess {
    /// The process to start for `config` on this image (rules in the module doc).
    fn process(&self, config: &MachineConfig) -> Result<ProcessSpec, ImageError>;
}

impl ImageProcess for ImageDefaults {
    fn process(&self, config: &MachineConfig) -> Result<ProcessSpec, ImageError> {
        let init = config.init.clone().unwrap_or_default();
        let argv = if !init.exec.is_empty() {
            init.exec
        } else {
            let mut argv = if init.entrypoint.is_empty() {
                self.entrypoint.clone()
            } else {
                init.entrypoint
            };
            argv.extend(if init.cmd.is_empty() {
                self.cmd.clone()
            } else {
                init.cmd
            });
            argv
        };
        if argv.is_empty() {
            return Err(ImageError::NoCommand);
        }
        let mut env: BTreeMap<String, String> = self
            .env
            .iter()
            .filter(|e| !e.is_empty())
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.clone(), String::new()),
            })
            .collect();
        env.entry("PATH".to_string())
            .or_insert_with(|| DEFAULT_PATH.to_string());
        env.extend(config.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(ProcessSpec {
            argv,
            env,
            working_dir: if self.working_dir.is_empty() {
                "/".to_string()
            } else {
                self.working_dir.clone()
            },
            user: if self.user.is_empty() {
                "root".to_string()
            } else {
                self.user.clone()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aloft_types::config::InitConfig;

    fn image() -> ImageDefaults {
        ImageDefaults {
            entrypoint: vec!["/entry.sh".into()],
            cmd: vec!["serve".into(), "--port=8080".into()],
            env: vec![
                "PATH=/app/bin:/bin".into(),
                "MODE=image".into(),
                "EMPTY".into(),
            ],
            working_dir: "/app".into(),
            user: "app:app".into(),
            exposed_ports: vec!["8080/tcp".into()],
        }
    }

    fn config(init: Option<InitConfig>, env: &[(&str, &str)]) -> MachineConfig {
        MachineConfig {
            image: "x".into(),
            init,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn init(exec: &[&str], entrypoint: &[&str], cmd: &[&str]) -> Option<InitConfig> {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        Some(InitConfig {
            exec: v(exec),
            entrypoint: v(entrypoint),
            cmd: v(cmd),
            ..Default::default()
        })
    }

    #[test]
    fn image_entrypoint_and_cmd() {
        let p = image().process(&config(None, &[])).unwrap();
        assert_eq!(p.argv, ["/entry.sh", "serve", "--port=8080"]);
        assert_eq!(p.working_dir, "/app");
        assert_eq!(p.user, "app:app");
    }

    #[test]
    fn cmd_override_keeps_the_entrypoint() {
        let p = image()
            .process(&config(init(&[], &[], &["migrate"]), &[]))
            .unwrap();
        assert_eq!(p.argv, ["/entry.sh", "migrate"]);
    }

    #[test]
    fn entrypoint_override_keeps_the_image_cmd() {
        // the reference's rule (Docker's `--entrypoint` would clear the Cmd)
        let p = image()
            .process(&config(init(&[], &["/bin/sh", "-c"], &[]), &[]))
            .unwrap();
        assert_eq!(p.argv, ["/bin/sh", "-c", "serve", "--port=8080"]);
        let p = image()
            .process(&config(init(&[], &["/bin/sh"], &["-c", "echo hi"]), &[]))
            .unwrap();
        assert_eq!(p.argv, ["/bin/sh", "-c", "echo hi"]);
    }

    #[test]
    fn exec_replaces_everything() {
        let p = image()
            .process(&config(init(&["/bin/sleep", "inf"], &["/x"], &["y"]), &[]))
            .unwrap();
        assert_eq!(p.argv, ["/bin/sleep", "inf"]);
    }

    #[test]
    fn env_machine_wins_and_path_defaults() {
        let p = image()
            .process(&config(None, &[("MODE", "machine"), ("EXTRA", "1")]))
            .unwrap();
        assert_eq!(p.env["MODE"], "machine");
        assert_eq!(p.env["EXTRA"], "1");
        assert_eq!(p.env["PATH"], "/app/bin:/bin");
        assert_eq!(p.env["EMPTY"], "");
        let bare = ImageDefaults {
            cmd: vec!["/bin/true".into()],
            ..Default::default()
        };
        let p = bare.process(&config(None, &[])).unwrap();
        assert_eq!(p.env["PATH"], DEFAULT_PATH);
        assert_eq!((p.working_dir.as_str(), p.user.as_str()), ("/", "root"));
    }

    #[test]
    fn nothing_to_run_is_an_error() {
        let e = ImageDefaults::default()
            .process(&config(None, &[]))
            .unwrap_err();
        assert!(e.to_string().contains("init.cmd"), "{e}");
    }
}
