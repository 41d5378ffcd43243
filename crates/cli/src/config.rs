//! The one place that reads the environment.
//!
//! Client commands need the API's URL (`ALOFT_API_URL`, default [`DEFAULT_API_URL`]) and a token
//! (`ALOFT_API_TOKEN`, else flyctl's `FLY_API_TOKEN`, else the token file `aloft dev up` writes to
//! `<dev data dir>/token`); operator commands (`aloft hosts`, `aloft image list|prune`) need the
//! cluster's internal token instead (`$ALOFT_INTERNAL_TOKEN_FILE`, else
//! `<dev data dir>/internal-token`). The dev data dir is `--data-dir`, else `$ALOFT_DATA_DIR`, else
//! `$HOME/.local/share/aloft/dev`. The app is `-a/--app`, else `$ALOFT_APP`, else flyctl's
//! `$FLY_APP`. The log filter is `$RUST_LOG`, else a per-command default.

use anyhow::{Context, Result, anyhow, bail};
use std::path::{Path, PathBuf};

pub use aloft_types::datadir::{DEFAULT_API_URL, INTERNAL_TOKEN_FILE, TOKEN_FILE};

/// A snapshot of the environment variables aloft reads. Empty values count as unset.
#[derive(Debug, Clone, Default)]
pub struct Env {
    api_url: Option<String>,
    /// The token and the variable it came from.
    api_token: Option<(String, &'static str)>,
    data_dir: Option<PathBuf>,
    home: Option<PathBuf>,
    app: Option<String>,
    rust_log: Option<String>,
    /// `$ALOFT_INTERNAL_TOKEN_FILE`: the cluster secret's file, for operator commands.
    internal_token_file: Option<PathBuf>,
}

/// What a client command needs to talk to the API.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub api_url: String,
    pub token: String,
    /// Where the token came from, for error messages (`ALOFT_API_TOKEN` or the file's path).
    pub token_source: String,
}

impl Env {
    /// Reads the process environment.
    pub fn read() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self {
            api_url: var("ALOFT_API_URL"),
            api_token: var("ALOFT_API_TOKEN")
                .map(|t| (t, "ALOFT_API_TOKEN"))
                .or_else(|| var("FLY_API_TOKEN").map(|t| (t, "FLY_API_TOKEN"))),
            data_dir: var("ALOFT_DATA_DIR").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
            app: var("ALOFT_APP").or_else(|| var("FLY_APP")),
            rust_log: var("RUST_LOG"),
            internal_token_file: var("ALOFT_INTERNAL_TOKEN_FILE").map(PathBuf::from),
        }
    }

    /// The dev data dir: the flag, else `$ALOFT_DATA_DIR`, else `$HOME/.local/share/aloft/dev`.
    pub fn data_dir(&self, flag: Option<&Path>) -> Result<PathBuf> {
        if let Some(dir) = flag {
            return Ok(dir.to_path_buf());
        }
        if let Some(dir) = &self.data_dir {
            return Ok(dir.clone());
        }
        match &self.home {
            Some(home) => Ok(home.join(".local/share/aloft/dev")),
            None => bail!(
                "HOME is not set, so there is no default data directory; pass --data-dir DIR or set ALOFT_DATA_DIR"
            ),
        }
    }

    /// The app a command works on: `-a/--app`, else `$ALOFT_APP`, else `$FLY_APP`.
    pub fn app(&self, flag: Option<String>) -> Result<String> {
        flag.or_else(|| self.app.clone()).ok_or_else(|| {
            anyhow!(
                "no app given: pass -a APP, set ALOFT_APP, or run it where a fly.toml names the app (or pass -c PATH); `aloft apps list` shows your apps"
            )
        })
    }

    /// The Machines API's URL: `$ALOFT_API_URL`, else the default.
    pub fn api_url(&self) -> String {
        self.api_url
            .clone()
            .unwrap_or_else(|| DEFAULT_API_URL.to_string())
            .trim_end_matches('/')
            .to_string()
    }

    /// The API URL and token for client commands.
    pub fn client(&self, data_dir_flag: Option<&Path>) -> Result<ClientConfig> {
        let api_url = self.api_url();
        if !api_url.starts_with("http://") && !api_url.starts_with("https://") {
            bail!("ALOFT_API_URL `{api_url}` is not an http:// URL; set it like {DEFAULT_API_URL}");
        }
        let (token, token_source) = match &self.api_token {
            Some((t, from)) => (t.trim().to_string(), (*from).to_string()),
            None => {
                let path = self.data_dir(data_dir_flag)?.join(TOKEN_FILE);
                (
                    read_token_file(&path)?,
                    format!("the token file {}", path.display()),
                )
            }
        };
        Ok(ClientConfig {
            api_url,
            token,
            token_source,
        })
    }

    /// The cluster's internal token (its secret), for operator commands:
    /// `$ALOFT_INTERNAL_TOKEN_FILE` (a cluster's `internal_token_file`), else
    /// `<dev data dir>/internal-token`.
    pub fn internal_token(&self, data_dir_flag: Option<&Path>) -> Result<String> {
        let path = match &self.internal_token_file {
            Some(file) => file.clone(),
            None => self.data_dir(data_dir_flag)?.join(INTERNAL_TOKEN_FILE),
        };
        match std::fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            Ok(_) => bail!(
                "{} is empty: it should hold the cluster's internal token; restart `aloft dev up` to write it",
                path.display()
            ),
            Err(e) => Err(e).with_context(|| {
                format!(
                    "cannot read the cluster's internal token from {}: this is an operator command, run it where `aloft dev up` keeps its data (pass --data-dir or set ALOFT_DATA_DIR), or set ALOFT_INTERNAL_TOKEN_FILE to the control plane's internal_token_file",
                    path.display()
                )
            }),
        }
    }

    /// The log filter: `$RUST_LOG`, else `default`.
    pub fn log_filter(&self, default: &str) -> String {
        self.rust_log.clone().unwrap_or_else(|| default.to_string())
    }
}

fn read_token_file(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Ok(_) => bail!(
            "the token file {} is empty; restart `aloft dev up` to write a new one, or set ALOFT_API_TOKEN",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no API token: set ALOFT_API_TOKEN, or start `aloft dev up` (it writes a token to {}); pass --data-dir or set ALOFT_DATA_DIR if it uses another data directory",
            path.display()
        ),
        Err(e) => Err(e).with_context(|| {
            format!(
                "cannot read the token file {}; fix its permissions or set ALOFT_API_TOKEN",
                path.display()
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_precedence() {
        let mut env = Env {
            home: Some("/home/u".into()),
            ..Env::default()
        };
        assert_eq!(
            env.data_dir(None).unwrap(),
            PathBuf::from("/home/u/.local/share/aloft/dev")
        );
        env.data_dir = Some("/d".into());
        assert_eq!(env.data_dir(None).unwrap(), PathBuf::from("/d"));
        assert_eq!(
            env.data_dir(Some(Path::new("/flag"))).unwrap(),
            PathBuf::from("/flag")
        );
        assert!(Env::default().data_dir(None).is_err());
    }

    #[test]
    fn token_from_env_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = Env {
            data_dir: Some(dir.path().to_path_buf()),
            ..Env::default()
        };
        let err = env.client(None).unwrap_err().to_string();
        assert!(
            err.contains("ALOFT_API_TOKEN") && err.contains("aloft dev up"),
            "{err}"
        );
        std::fs::write(dir.path().join(TOKEN_FILE), "abc\n").unwrap();
        let c = env.client(None).unwrap();
        assert_eq!(
            (c.api_url.as_str(), c.token.as_str()),
            (DEFAULT_API_URL, "abc")
        );
        env.api_token = Some(("xyz".into(), "FLY_API_TOKEN"));
        env.api_url = Some("http://h:1/".into());
        let c = env.client(None).unwrap();
        assert_eq!(
            (
                c.api_url.as_str(),
                c.token.as_str(),
                c.token_source.as_str()
            ),
            ("http://h:1", "xyz", "FLY_API_TOKEN")
        );
        env.api_url = Some("h:1".into());
        assert!(env.client(None).is_err());
    }

    #[test]
    fn app_from_flag_or_env() {
        let mut env = Env::default();
        assert!(env.app(None).unwrap_err().to_string().contains("-a APP"));
        env.app = Some("e".into());
        assert_eq!(env.app(None).unwrap(), "e");
        assert_eq!(env.app(Some("f".into())).unwrap(), "f");
    }
}
