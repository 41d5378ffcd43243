//! [`AgentClient`]: the typed client of one agent (its base URL and the cluster's internal token
//! over a shared, pooled HTTP client), with one method per internal endpoint and
//! [`AgentClient::forward`] for a user's request passed on as it came. Answers come back as
//! [`AgentReply`]s, byte for byte, whatever their status: callers decide what an error means
//! (and the control plane hands most answers to its own caller unchanged). No state beyond the
//! client's fields.

use crate::headers::{
    ACTOR_HEADER, LEASE_NONCE_HEADER, NETWORK_HEADER, ORG_HEADER, REGISTRY_TOKEN_HEADER,
};
use crate::message::{AgentReply, AgentRequest};
use aloft_types::api::{MakeVolumeRequest, TakeSnapshotRequest};
use axum::http::header;
use std::time::Duration;

/// How long a request may take: longer than the longest operation an agent allows (`exec` runs up
/// to 300 s; `wait` up to 60 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(330);
/// How long connecting to an agent may take before it counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Who a forwarded request is for, sent as the internal headers ([`crate::headers`]). Only the
/// control plane sets them, from the caller's verified token; a user's own headers never are.
#[derive(Debug, Clone)]
pub struct CallerHeaders {
    /// The org's slug (`x-aloft-org`).
    pub org: String,
    /// The org's 6PN network id (`x-aloft-network-id`).
    pub network_id: String,
    /// The token's name, for lease ownership (`x-aloft-actor`).
    pub actor: String,
    /// The caller's own token, for the registry pulls the request triggers
    /// (`x-aloft-registry-token`).
    pub registry_token: String,
}

/// An agent that could not be reached or did not answer in full.
#[derive(Debug, thiserror::Error)]
#[error("the agent at {url} did not answer: {source}")]
pub struct AgentError {
    url: String,
    #[source]
    source: reqwest::Error,
}

impl AgentError {
    /// The URL asked (for the operator's log: not for users).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The HTTP client's error.
    pub fn cause(&self) -> &reqwest::Error {
        &self.source
    }

    /// The request never reached the agent (so sending it elsewhere cannot duplicate it).
    pub fn is_connect(&self) -> bool {
        self.source.is_connect()
    }

    /// The agent did not answer in time.
    pub fn is_timeout(&self) -> bool {
        self.source.is_timeout()
    }
}

/// The client of one agent. Cheap to clone and to make per request from a shared
/// [`AgentClient::pool`] (the pool is what holds connections).
#[derive(Clone)]
pub struct AgentClient {
    http: reqwest::Client,
    base_url: String,
    internal_token: String,
}

impl AgentClient {
    /// An HTTP client fit for agents ([`REQUEST_TIMEOUT`], [`CONNECT_TIMEOUT`], idle connections
    /// kept 30 s), to share between the clients of many agents.
    pub fn pool() -> Result<reqwest::Client, reqwest::Error> {
        reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build()
    }

    /// The client of the agent at `base_url` (`http://host:port`), sending `internal_token` (the
    /// agent's key: the control plane derives one per host).
    pub fn new(http: reqwest::Client, base_url: &str, internal_token: &str) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            internal_token: internal_token.to_string(),
        }
    }

    /// The agent's base URL (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Passes a user's request on to the agent as it came (path, query, body, content type and
    /// lease nonce), with the internal headers saying who asks.
    pub async fn forward(
        &self,
        caller: &CallerHeaders,
        req: &AgentRequest,
    ) -> Result<AgentReply, AgentError> {
        self.send(Some(caller), req).await
    }

    /// `GET /v1/apps/{app}/machines/{id}` for `caller`.
    pub async fn get_machine(
        &self,
        caller: &CallerHeaders,
        app: &str,
        id: &str,
    ) -> Result<AgentReply, AgentError> {
        self.forward(caller, &AgentRequest::get_machine(app, id))
            .await
    }

    /// `DELETE /v1/apps/{app}/machines/{id}[?force=true]` for `caller`.
    pub async fn destroy_machine(
        &self,
        caller: &CallerHeaders,
        app: &str,
        id: &str,
        force: bool,
    ) -> Result<AgentReply, AgentError> {
        let req = AgentRequest::destroy_machine(app, id, force);
        self.forward(caller, &req).await
    }

    /// `GET /internal/v1/host`: the host's description.
    pub async fn host(&self) -> Result<AgentReply, AgentError> {
        self.send(None, &AgentRequest::host()).await
    }

    /// `POST /internal/v1/apps/{app}/machines/{id}/autostart`.
    pub async fn autostart(&self, app: &str, id: &str) -> Result<AgentReply, AgentError> {
        self.send(None, &AgentRequest::autostart(app, id)).await
    }

    /// `GET /internal/v1/images`: the images on the host.
    pub async fn images(&self) -> Result<AgentReply, AgentError> {
        self.send(None, &AgentRequest::images()).await
    }

    /// `POST /internal/v1/images/prune`: removes the images no machine uses.
    pub async fn prune_images(&self) -> Result<AgentReply, AgentError> {
        self.send(None, &AgentRequest::prune_images()).await
    }

    /// `POST /internal/v1/volumes/{id}`: makes the volume's encrypted disk.
    pub async fn make_volume(
        &self,
        id: &str,
        req: &MakeVolumeRequest,
    ) -> Result<AgentReply, AgentError> {
        self.send(None, &AgentRequest::make_volume(id, req)).await
    }

    /// `DELETE /internal/v1/volumes/{id}`: removes the volume's data and snapshots.
    pub async fn delete_volume(&self, id: &str) -> Result<AgentReply, AgentError> {
        self.send(None, &AgentRequest::delete_volume(id)).await
    }

    /// `POST /internal/v1/volumes/{id}/snapshots`: copies the volume's disk as a snapshot.
    pub async fn snapshot_volume(
        &self,
        id: &str,
        req: &TakeSnapshotRequest,
    ) -> Result<AgentReply, AgentError> {
        self.send(None, &AgentRequest::snapshot_volume(id, req))
            .await
    }

    /// Sends `req` with the internal token, and the internal headers when `caller` is given (the
    /// cluster itself asks otherwise). Only the request's content type and lease nonce go along.
    pub async fn send(
        &self,
        caller: Option<&CallerHeaders>,
        req: &AgentRequest,
    ) -> Result<AgentReply, AgentError> {
        let url = format!("{}{}", self.base_url, req.path_and_query);
        let mut builder = self
            .http
            .request(req.method.clone(), &url)
            .bearer_auth(&self.internal_token);
        if let Some(caller) = caller {
            builder = builder
                .header(ORG_HEADER, &caller.org)
                .header(NETWORK_HEADER, &caller.network_id)
                .header(ACTOR_HEADER, &caller.actor)
                .header(REGISTRY_TOKEN_HEADER, &caller.registry_token);
        }
        if let Some(ct) = &req.content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        if let Some(nonce) = &req.lease_nonce {
            builder = builder.header(LEASE_NONCE_HEADER, nonce);
        }
        if !req.body.is_empty() {
            builder = builder.body(req.body.clone());
        }
        let failed = |source| AgentError {
            url: url.clone(),
            source,
        };
        let resp = builder.send().await.map_err(failed)?;
        let status = resp.status();
        let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
        let allow = resp.headers().get(header::ALLOW).cloned();
        let body = resp.bytes().await.map_err(failed)?;
        Ok(AgentReply {
            status,
            content_type,
            allow,
            body,
        })
    }
}
