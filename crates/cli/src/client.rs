//! A small typed client of the Machines API: one method per endpoint the CLI uses, the request
//! and response bodies of `aloft_types::api`, and errors rebuilt with [`ApiError::from_response`].

use crate::config::ClientConfig;
use aloft_types::api::PARTIAL_HEADER;
use aloft_types::api::{
    App, AppList, AppSecrets, CreateAppRequest, CreateMachineRequest, CreateReleaseRequest,
    ExecRequest, ExecResponse, LEASE_NONCE_HEADER, LeaseRequest, LeaseResponse, ListMachinesQuery,
    LogLine, LogsQuery, RegionList, Release, RestartQuery, SetSecretsRequest, SignalRequest,
    StartResponse, StopRequest, SuspendResponse, UpdateMachineRequest, UpdateReleaseRequest,
    WaitQuery, WaitResponse,
};
use aloft_types::api::{CreateTokenRequest, CreatedToken, ListTokensQuery, TokenInfo};
use aloft_types::api::{
    CreateVolumeRequest, ExtendVolumeRequest, ExtendVolumeResponse, UpdateVolumeRequest, Volume,
    VolumeSnapshot,
};
use aloft_types::api::{DeployedConfig, OrgList};
use aloft_types::api::{RegistryLogin, RegistryLoginRequest};
use aloft_types::certificates::{
    CertificateDetailResponse, CreateAcmeCertificateRequest, ImportCertificateRequest,
    ListCertificatesQuery, ListCertificatesResponse,
};
use aloft_types::{ApiError, ErrorBody, Machine};
use reqwest::{Method, RequestBuilder, Url};
use serde::de::DeserializeOwned;
use std::fmt;
use std::time::Duration;

/// How long a request may take unless the endpoint needs longer (wait, exec).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);

/// Why a request failed.
#[derive(Debug)]
pub enum ClientError {
    /// The API answered with an error.
    Api(ApiError),
    /// The API refused the token; `source` says where the token came from.
    Unauthorized { message: String, source: String },
    /// Nothing answered at the API's address.
    Unreachable { url: String },
    /// The request failed on the way, or the answer could not be read.
    Transport(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unauthorized { message, source } => {
                write!(f, "{message} (the token came from {source})")
            }
            Self::Api(e) => write!(f, "{e}"),
            Self::Unreachable { url } => write!(
                f,
                "cannot reach the aloft API at {url}: is `aloft dev up` running? (set ALOFT_API_URL to use another)"
            ),
            Self::Transport(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// The API's error, if the API answered with one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Self::Api(e) => Some(e),
            _ => None,
        }
    }
}

/// A successful answer: what it was (status and path, for error messages) and its body.
struct Answer {
    what: String,
    bytes: Vec<u8>,
    headers: reqwest::header::HeaderMap,
}

/// `GET /v1/apps/{app}/machines`: the machines, and the hosts that did not answer (their machines
/// are missing from the list).
pub struct MachineList {
    pub machines: Vec<Machine>,
    pub unreachable_hosts: Vec<String>,
}

/// A client of one Machines API with one token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: String,
    token_source: String,
}

impl Client {
    pub fn new(config: &ClientConfig) -> Result<Self, ClientError> {
        let base = Url::parse(&config.api_url).map_err(|e| {
            ClientError::Transport(format!(
                "ALOFT_API_URL `{}` is not a URL ({e}); set it like http://127.0.0.1:4280",
                config.api_url
            ))
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("aloft/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Transport(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            token: config.token.clone(),
            token_source: config.token_source.clone(),
        })
    }

    fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        self.http
            .request(method, url)
            .bearer_auth(&self.token)
            .timeout(REQUEST_TIMEOUT)
    }

    fn machine(&self, method: Method, app: &str, id: &str, action: &str) -> RequestBuilder {
        let mut segments = vec!["v1", "apps", app, "machines", id];
        if !action.is_empty() {
            segments.push(action);
        }
        self.request(method, &segments)
    }

    /// Sends a request and returns the successful answer's body.
    async fn send_raw(&self, req: RequestBuilder) -> Result<Answer, ClientError> {
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        let what = format!("{} {}", status.as_u16(), resp.url().path());
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        if status.is_success() {
            return Ok(Answer {
                what,
                bytes: bytes.to_vec(),
                headers,
            });
        }
        let body = serde_json::from_slice::<ErrorBody>(&bytes).unwrap_or_else(|_| {
            let text = String::from_utf8_lossy(&bytes);
            ErrorBody::new("", format!("the API answered {status}: {}", text.trim()))
        });
        Err(match ApiError::from_response(status.as_u16(), body) {
            ApiError::Unauthorized(message) => ClientError::Unauthorized {
                message,
                source: self.token_source.clone(),
            },
            e => ClientError::Api(e),
        })
    }

    async fn send<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, ClientError> {
        let body = self.send_raw(req).await?;
        self.parse(&body)
    }

    fn parse<T: DeserializeOwned>(&self, body: &Answer) -> Result<T, ClientError> {
        serde_json::from_slice(&body.bytes).map_err(|e| {
            ClientError::Transport(format!(
                "the API's answer ({}) could not be read: {e}; is ALOFT_API_URL ({}) an aloft API of the same version as this CLI?",
                body.what, self.base
            ))
        })
    }

    /// Sends a request whose answer is `{"ok": true}` or empty; returns the answer's `note`.
    async fn send_ok(&self, req: RequestBuilder) -> Result<Option<String>, ClientError> {
        let body = self.send_raw(req).await?;
        Ok(serde_json::from_slice::<serde_json::Value>(&body.bytes)
            .ok()
            .and_then(|v| v.get("note").and_then(|n| n.as_str()).map(str::to_string)))
    }

    fn transport_error(&self, e: reqwest::Error) -> ClientError {
        let url = self.base.as_str().trim_end_matches('/').to_string();
        if e.is_connect() {
            ClientError::Unreachable { url }
        } else if e.is_timeout() {
            ClientError::Transport(format!(
                "the aloft API at {url} did not answer in time; check that `aloft dev up` is healthy and try again"
            ))
        } else {
            ClientError::Transport(format!(
                "the request to the aloft API at {url} failed: {e}; try again"
            ))
        }
    }

    pub async fn list_apps(&self) -> Result<AppList, ClientError> {
        self.list_apps_in(None).await
    }

    /// `GET /v1/apps?org_slug=`: the apps of `org` (the token's own when `None`).
    pub async fn list_apps_in(&self, org: Option<&str>) -> Result<AppList, ClientError> {
        let mut req = self.request(Method::GET, &["v1", "apps"]);
        if let Some(org) = org {
            req = req.query(&[("org_slug", org)]);
        }
        self.send(req).await
    }

    /// `GET /v1/apps/{app}/config`: the config file the newest complete release deployed.
    pub async fn deployed_config(&self, app: &str) -> Result<DeployedConfig, ClientError> {
        self.send(self.request(Method::GET, &["v1", "apps", app, "config"]))
            .await
    }

    /// `GET /v1/orgs`: the orgs the token may act in.
    pub async fn list_orgs(&self) -> Result<OrgList, ClientError> {
        self.send(self.request(Method::GET, &["v1", "orgs"])).await
    }

    pub async fn create_app(&self, req: &CreateAppRequest) -> Result<App, ClientError> {
        self.send(self.request(Method::POST, &["v1", "apps"]).json(req))
            .await
    }

    /// `POST .../certificates/acme`: a managed certificate for the hostname.
    pub async fn request_certificate(
        &self,
        app: &str,
        hostname: &str,
    ) -> Result<CertificateDetailResponse, ClientError> {
        let req = CreateAcmeCertificateRequest {
            hostname: hostname.into(),
        };
        self.send(
            self.request(Method::POST, &["v1", "apps", app, "certificates", "acme"])
                .json(&req),
        )
        .await
    }

    /// `POST .../certificates/custom`: the user's own certificate for the hostname.
    pub async fn import_certificate(
        &self,
        app: &str,
        req: &ImportCertificateRequest,
    ) -> Result<CertificateDetailResponse, ClientError> {
        self.send(
            self.request(Method::POST, &["v1", "apps", app, "certificates", "custom"])
                .json(req),
        )
        .await
    }

    /// `GET .../certificates`: one page.
    pub async fn certificates(
        &self,
        app: &str,
        query: &ListCertificatesQuery,
    ) -> Result<ListCertificatesResponse, ClientError> {
        self.send(
            self.request(Method::GET, &["v1", "apps", app, "certificates"])
                .query(query),
        )
        .await
    }

    /// `GET .../certificates/{hostname}`, or with `check` `POST .../{hostname}/check`.
    pub async fn certificate(
        &self,
        app: &str,
        hostname: &str,
        check: bool,
    ) -> Result<CertificateDetailResponse, ClientError> {
        let req = if check {
            let path = ["v1", "apps", app, "certificates", hostname, "check"];
            self.request(Method::POST, &path)
        } else {
            self.request(Method::GET, &["v1", "apps", app, "certificates", hostname])
        };
        self.send(req).await
    }

    /// `DELETE .../certificates/{hostname}`, or of one part (`acme`, `custom`).
    pub async fn remove_certificate(
        &self,
        app: &str,
        hostname: &str,
        part: Option<&str>,
    ) -> Result<(), ClientError> {
        let mut path = vec!["v1", "apps", app, "certificates", hostname];
        path.extend(part);
        self.send_ok(self.request(Method::DELETE, &path))
            .await
            .map(drop)
    }

    pub async fn create_volume(
        &self,
        app: &str,
        req: &CreateVolumeRequest,
    ) -> Result<Volume, ClientError> {
        self.send(
            self.request(Method::POST, &["v1", "apps", app, "volumes"])
                .json(req),
        )
        .await
    }

    pub async fn volumes(&self, app: &str) -> Result<Vec<Volume>, ClientError> {
        self.send(self.request(Method::GET, &["v1", "apps", app, "volumes"]))
            .await
    }

    pub async fn volume(&self, app: &str, id: &str) -> Result<Volume, ClientError> {
        self.send(self.request(Method::GET, &["v1", "apps", app, "volumes", id]))
            .await
    }

    /// `PUT /v1/apps/{app}/volumes/{id}`: a volume's snapshot settings.
    pub async fn update_volume(
        &self,
        app: &str,
        id: &str,
        req: &UpdateVolumeRequest,
    ) -> Result<Volume, ClientError> {
        self.send(
            self.request(Method::PUT, &["v1", "apps", app, "volumes", id])
                .json(req),
        )
        .await
    }

    pub async fn extend_volume(
        &self,
        app: &str,
        id: &str,
        size_gb: u32,
    ) -> Result<ExtendVolumeResponse, ClientError> {
        self.send(
            self.request(Method::PUT, &["v1", "apps", app, "volumes", id, "extend"])
                .json(&ExtendVolumeRequest { size_gb }),
        )
        .await
    }

    pub async fn destroy_volume(&self, app: &str, id: &str) -> Result<Volume, ClientError> {
        self.send(self.request(Method::DELETE, &["v1", "apps", app, "volumes", id]))
            .await
    }

    pub async fn create_snapshot(
        &self,
        app: &str,
        id: &str,
    ) -> Result<VolumeSnapshot, ClientError> {
        self.send(self.request(
            Method::POST,
            &["v1", "apps", app, "volumes", id, "snapshots"],
        ))
        .await
    }

    pub async fn snapshots(&self, app: &str, id: &str) -> Result<Vec<VolumeSnapshot>, ClientError> {
        self.send(self.request(
            Method::GET,
            &["v1", "apps", app, "volumes", id, "snapshots"],
        ))
        .await
    }

    /// `POST /v1/apps/{app}/secrets`: sets and removes (a `null` value) secrets, all or none.
    pub async fn update_secrets(
        &self,
        app: &str,
        req: &SetSecretsRequest,
    ) -> Result<AppSecrets, ClientError> {
        self.send(
            self.request(Method::POST, &["v1", "apps", app, "secrets"])
                .json(req),
        )
        .await
    }

    pub async fn secrets(&self, app: &str) -> Result<AppSecrets, ClientError> {
        self.send(self.request(Method::GET, &["v1", "apps", app, "secrets"]))
            .await
    }

    pub async fn create_release(
        &self,
        app: &str,
        req: &CreateReleaseRequest,
    ) -> Result<Release, ClientError> {
        self.send(
            self.request(Method::POST, &["v1", "apps", app, "releases"])
                .json(req),
        )
        .await
    }

    pub async fn releases(&self, app: &str) -> Result<Vec<Release>, ClientError> {
        self.send(self.request(Method::GET, &["v1", "apps", app, "releases"]))
            .await
    }

    pub async fn finish_release(
        &self,
        app: &str,
        version: u32,
        req: &UpdateReleaseRequest,
    ) -> Result<Release, ClientError> {
        let version = version.to_string();
        self.send(
            self.request(Method::PATCH, &["v1", "apps", app, "releases", &version])
                .json(req),
        )
        .await
    }

    pub async fn get_app(&self, app: &str) -> Result<App, ClientError> {
        self.send(self.request(Method::GET, &["v1", "apps", app]))
            .await
    }

    pub async fn destroy_app(&self, app: &str) -> Result<(), ClientError> {
        self.send_ok(self.request(Method::DELETE, &["v1", "apps", app]))
            .await
            .map(drop)
    }

    pub async fn create_token(
        &self,
        req: &CreateTokenRequest,
    ) -> Result<CreatedToken, ClientError> {
        self.send(self.request(Method::POST, &["v1", "tokens"]).json(req))
            .await
    }

    pub async fn list_tokens(
        &self,
        query: &ListTokensQuery,
    ) -> Result<Vec<TokenInfo>, ClientError> {
        self.send(self.request(Method::GET, &["v1", "tokens"]).query(query))
            .await
    }

    pub async fn revoke_token(&self, id: &str) -> Result<(), ClientError> {
        self.send_ok(self.request(Method::DELETE, &["v1", "tokens", id]))
            .await
            .map(drop)
    }

    pub async fn registry_login(
        &self,
        host: &str,
        req: &RegistryLoginRequest,
    ) -> Result<RegistryLogin, ClientError> {
        self.send(
            self.request(Method::PUT, &["v1", "registry-logins", host])
                .json(req),
        )
        .await
    }

    pub async fn registry_logins(&self) -> Result<Vec<RegistryLogin>, ClientError> {
        self.send(self.request(Method::GET, &["v1", "registry-logins"]))
            .await
    }

    pub async fn registry_logout(&self, host: &str) -> Result<(), ClientError> {
        self.send_ok(self.request(Method::DELETE, &["v1", "registry-logins", host]))
            .await
            .map(drop)
    }

    pub async fn regions(&self) -> Result<RegionList, ClientError> {
        self.send(self.request(Method::GET, &["v1", "platform", "regions"]))
            .await
    }

    pub async fn list_machines(
        &self,
        app: &str,
        query: &ListMachinesQuery,
    ) -> Result<MachineList, ClientError> {
        let answer = self
            .send_raw(
                self.request(Method::GET, &["v1", "apps", app, "machines"])
                    .query(query),
            )
            .await?;
        let unreachable_hosts = answer
            .headers
            .get(PARTIAL_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(',')
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(MachineList {
            machines: self.parse(&answer)?,
            unreachable_hosts,
        })
    }

    pub async fn create_machine(
        &self,
        app: &str,
        req: &CreateMachineRequest,
    ) -> Result<Machine, ClientError> {
        self.send(
            self.request(Method::POST, &["v1", "apps", app, "machines"])
                .json(req),
        )
        .await
    }

    pub async fn get_machine(&self, app: &str, id: &str) -> Result<Machine, ClientError> {
        self.send(self.machine(Method::GET, app, id, "")).await
    }

    pub async fn start(&self, app: &str, id: &str) -> Result<StartResponse, ClientError> {
        self.send(self.machine(Method::POST, app, id, "start"))
            .await
    }

    pub async fn stop(
        &self,
        app: &str,
        id: &str,
        req: &StopRequest,
    ) -> Result<Option<String>, ClientError> {
        self.send_ok(self.machine(Method::POST, app, id, "stop").json(req))
            .await
    }

    pub async fn restart(
        &self,
        app: &str,
        id: &str,
        query: &RestartQuery,
    ) -> Result<Option<String>, ClientError> {
        self.send_ok(self.machine(Method::POST, app, id, "restart").query(query))
            .await
    }

    pub async fn suspend(&self, app: &str, id: &str) -> Result<SuspendResponse, ClientError> {
        self.send(self.machine(Method::POST, app, id, "suspend"))
            .await
    }

    pub async fn signal(
        &self,
        app: &str,
        id: &str,
        req: &SignalRequest,
    ) -> Result<Option<String>, ClientError> {
        self.send_ok(self.machine(Method::POST, app, id, "signal").json(req))
            .await
    }

    pub async fn destroy_machine(
        &self,
        app: &str,
        id: &str,
        force: bool,
    ) -> Result<Option<String>, ClientError> {
        let mut req = self.machine(Method::DELETE, app, id, "");
        if force {
            req = req.query(&[("force", "true")]);
        }
        self.send_ok(req).await
    }

    /// `GET .../wait`; `query.timeout` is in seconds (1 to 60).
    pub async fn wait(
        &self,
        app: &str,
        id: &str,
        query: &WaitQuery,
        timeout: Duration,
    ) -> Result<WaitResponse, ClientError> {
        self.send(
            self.machine(Method::GET, app, id, "wait")
                .query(query)
                .timeout(timeout + Duration::from_secs(15)),
        )
        .await
    }

    pub async fn cordon(&self, app: &str, id: &str, cordon: bool) -> Result<(), ClientError> {
        let action = if cordon { "cordon" } else { "uncordon" };
        self.send_ok(self.machine(Method::POST, app, id, action))
            .await
            .map(drop)
    }

    pub async fn exec(
        &self,
        app: &str,
        id: &str,
        req: &ExecRequest,
    ) -> Result<ExecResponse, ClientError> {
        let timeout = Duration::from_secs(req.timeout.unwrap_or(30)) + Duration::from_secs(15);
        self.send(
            self.machine(Method::POST, app, id, "exec")
                .json(req)
                .timeout(timeout),
        )
        .await
    }

    /// The machine's recent log lines, oldest first; from `since` (ms since the epoch) if given.
    pub async fn logs(
        &self,
        app: &str,
        id: &str,
        since: Option<i64>,
    ) -> Result<Vec<LogLine>, ClientError> {
        self.send(
            self.machine(Method::GET, app, id, "logs")
                .query(&LogsQuery { since }),
        )
        .await
    }

    pub async fn lease(&self, app: &str, id: &str) -> Result<LeaseResponse, ClientError> {
        self.send(self.machine(Method::GET, app, id, "lease")).await
    }

    /// `POST .../lease`: takes the machine's lease (409 when someone else holds it), or with
    /// the `nonce` of one held, holds it `req.ttl` longer (409 when it is gone).
    pub async fn acquire_lease(
        &self,
        app: &str,
        id: &str,
        req: &LeaseRequest,
        nonce: Option<&str>,
    ) -> Result<LeaseResponse, ClientError> {
        let mut rb = self.machine(Method::POST, app, id, "lease").json(req);
        if let Some(nonce) = nonce {
            rb = rb.header(LEASE_NONCE_HEADER, nonce);
        }
        self.send(rb).await
    }

    /// `POST .../machines/{id}`: a new config (a new version), under the lease `nonce`.
    pub async fn update_machine(
        &self,
        app: &str,
        id: &str,
        req: &UpdateMachineRequest,
        nonce: &str,
    ) -> Result<Machine, ClientError> {
        self.send(
            self.machine(Method::POST, app, id, "")
                .header(LEASE_NONCE_HEADER, nonce)
                .json(req),
        )
        .await
    }

    pub async fn release_lease(&self, app: &str, id: &str, nonce: &str) -> Result<(), ClientError> {
        self.send_ok(
            self.machine(Method::DELETE, app, id, "lease")
                .header(LEASE_NONCE_HEADER, nonce),
        )
        .await
        .map(drop)
    }
}
