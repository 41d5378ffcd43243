//! How a host's proxy learns the hostnames users added (`aloft certs`) and their certificates:
//! one loop for every role, reading from the control plane in the same process (`dev up`: at
//! once and again on every change) or over its internal API (`server host`: every 5 s). The
//! last good list stays in place while the control plane does not answer.

use aloft_control::ControlPlane;
use aloft_proxy::tls::Domains;
use aloft_types::api::ProxyCertificate;
use anyhow::{Result, bail};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often a remote control plane is asked again.
const POLL: Duration = Duration::from_secs(5);

/// Where the hostnames come from.
pub enum CertificateSource {
    /// The control plane in this process.
    InProcess(ControlPlane),
    /// The control plane's `GET /internal/v1/certificates`, with the host's credential.
    Remote {
        control_plane: String,
        token: String,
        /// The control plane's client (the pinned cluster CA for `https://`).
        http: reqwest::Client,
    },
}

impl CertificateSource {
    /// Keeps `domains` in step with the source until the task is aborted.
    pub(crate) fn spawn_sync(self, domains: Arc<Domains>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut reader = Reader::new(self);
            loop {
                match reader.read().await {
                    Ok(certs) => domains.replace(certs.into_iter().map(Into::into).collect()),
                    Err(e) => tracing::warn!("reading the apps' hostnames: {e:#}"),
                }
                if !reader.changed().await {
                    return;
                }
            }
        })
    }
}

/// A source being read: its client, or its change notifications.
enum Reader {
    InProcess {
        plane: ControlPlane,
        changes: tokio::sync::watch::Receiver<u64>,
    },
    Remote {
        url: String,
        token: String,
        http: reqwest::Client,
    },
}

impl Reader {
    fn new(source: CertificateSource) -> Self {
        match source {
            CertificateSource::InProcess(plane) => Reader::InProcess {
                changes: plane.certificate_changes(),
                plane,
            },
            CertificateSource::Remote {
                control_plane,
                token,
                http,
            } => Reader::Remote {
                url: format!(
                    "{}/internal/v1/certificates",
                    control_plane.trim_end_matches('/')
                ),
                token,
                http,
            },
        }
    }

    async fn read(&self) -> Result<Vec<ProxyCertificate>> {
        match self {
            Reader::InProcess { plane, .. } => Ok(plane.certificates().await?),
            Reader::Remote { url, token, http } => {
                let resp = http
                    .get(url)
                    .timeout(Duration::from_secs(10))
                    .bearer_auth(token)
                    .send()
                    .await?;
                if !resp.status().is_success() {
                    bail!("{url} answered {}", resp.status());
                }
                Ok(resp.json::<Vec<ProxyCertificate>>().await?)
            }
        }
    }

    /// Waits until the list may have changed; `false` when it never will again.
    async fn changed(&mut self) -> bool {
        match self {
            Reader::InProcess { changes, .. } => changes.changed().await.is_ok(),
            Reader::Remote { .. } => {
                tokio::time::sleep(POLL).await;
                true
            }
        }
    }
}
