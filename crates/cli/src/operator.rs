//! The control plane's internal API as an operator calls it: with the cluster's internal token
//! (see `config::Env::internal_token`), errors as sentences.

use crate::Ctx;
use aloft_types::ErrorBody;
use aloft_types::api::HostInfo;
use anyhow::{Context, Result, anyhow, bail};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// A client of the internal API.
pub(crate) struct Operator {
    http: reqwest::Client,
    api_url: String,
    token: String,
}

impl Operator {
    pub(crate) fn new(ctx: &Ctx) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(300))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Self {
            http,
            api_url: ctx.env.api_url(),
            token: ctx.env.internal_token(ctx.data_dir.as_deref())?,
        })
    }

    /// `method path` without a body; its JSON answer.
    pub(crate) async fn call<T: DeserializeOwned>(&self, method: Method, path: &str) -> Result<T> {
        self.call_with(method, path, None::<&()>).await
    }

    /// `method path` with `body` as JSON (if any); its JSON answer.
    pub(crate) async fn call_with<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let url = format!("{}{path}", self.api_url);
        let bytes = self.send(method, path, body).await?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("the answer of {url} is not what this aloft expects"))
    }

    /// `method path` with `body` as JSON (if any); the answer's bytes (empty for a 204).
    pub(crate) async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Vec<u8>> {
        let url = format!("{}{path}", self.api_url);
        let mut rb = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            rb = rb.json(body);
        }
        let resp = rb.send().await.map_err(|e| {
            anyhow!(
                "cannot reach the aloft API at {}: is `aloft dev up` running? (set ALOFT_API_URL to use another) ({e})",
                self.api_url
            )
        })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .with_context(|| format!("reading the answer of {url}"))?;
        if !status.is_success() {
            let why = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| b.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_string());
            if status == reqwest::StatusCode::UNAUTHORIZED {
                bail!(
                    "the control plane refused the internal token ({why}); use the `internal-token` of the `aloft dev up` behind ALOFT_API_URL (--data-dir or ALOFT_DATA_DIR), or set ALOFT_INTERNAL_TOKEN_FILE to the control plane's internal_token_file"
                );
            }
            bail!("{why} ({status})");
        }
        Ok(bytes.to_vec())
    }

    /// `--host`, else every registered host.
    pub(crate) async fn hosts(&self, only: Option<String>) -> Result<Vec<String>> {
        if let Some(host) = only {
            return Ok(vec![host]);
        }
        let hosts = self.registered().await?;
        if hosts.is_empty() {
            bail!("no hosts are registered with the control plane yet; start an agent first");
        }
        Ok(hosts.into_iter().map(|h| h.id).collect())
    }

    /// Every registered host.
    pub(crate) async fn registered(&self) -> Result<Vec<HostInfo>> {
        self.call(Method::GET, "/internal/v1/hosts").await
    }
}
