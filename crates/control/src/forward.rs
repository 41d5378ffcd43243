//! Forwarding requests to host agents: one pooled HTTP client, the internal headers, and the
//! agent's reply kept byte for byte.

use crate::error::ControlPlaneError;
use crate::store::{Caller, HostRecord};
use aloft_types::api::{LEASE_NONCE_HEADER, internal};
use aloft_types::{ApiError, ErrorBody};
use axum::http::{HeaderValue, Method, StatusCode, header};
use bytes::Bytes;
use std::time::Duration;

/// How long a forwarded request may take: longer than the longest operation an agent allows
/// (`exec` runs up to 300 s; `wait` up to 60 s).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(330);
/// How long connecting to an agent may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A request to pass to an agent.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    pub method: Method,
    /// The path and query string, exactly as the caller sent them.
    pub path_and_query: String,
    pub body: Bytes,
    pub content_type: Option<HeaderValue>,
    pub lease_nonce: Option<HeaderValue>,
}

impl Outbound {
    /// A request without a body.
    pub fn bodiless(method: Method, path_and_query: String) -> Self {
        Self {
            method,
            path_and_query,
            body: Bytes::new(),
            content_type: None,
            lease_nonce: None,
        }
    }

    /// A request with `body` as JSON.
    pub fn json(method: Method, path_and_query: String, body: &impl serde::Serialize) -> Self {
        Self {
            body: serde_json::to_vec(body).expect("serializable").into(),
            content_type: Some(HeaderValue::from_static("application/json")),
            ..Self::bodiless(method, path_and_query)
        }
    }
}

/// An agent's answer.
#[derive(Debug, Clone)]
pub(crate) struct AgentReply {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

impl AgentReply {
    /// The body as JSON, when it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Sends requests to agents with the cluster's internal token.
#[derive(Clone)]
pub(crate) struct Forwarder {
    client: reqwest::Client,
    internal_token: String,
}

impl Forwarder {
    pub fn new(internal_token: String) -> Result<Self, ControlPlaneError> {
        let client = reqwest::Client::builder()
            .timeout(FORWARD_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(ControlPlaneError::HttpClient)?;
        Ok(Self {
            client,
            internal_token,
        })
    }

    /// Sends `req` to `host` on behalf of `caller`: the internal headers say who asks, and the
    /// caller's own token goes along (`x-aloft-registry-token`) for the registry pulls the
    /// request triggers. Headers the caller sent other than the content type and the lease
    /// nonce are never forwarded, so a caller cannot set any of these.
    pub async fn send(
        &self,
        host: &HostRecord,
        caller: &Caller,
        req: &Outbound,
    ) -> Result<AgentReply, ForwardError> {
        self.dispatch(host, Some(caller), req).await
    }

    /// Sends `req` to `host` as the cluster itself (operator endpoints: no caller, no org).
    pub async fn send_internal(
        &self,
        host: &HostRecord,
        req: &Outbound,
    ) -> Result<AgentReply, ForwardError> {
        self.dispatch(host, None, req).await
    }

    async fn dispatch(
        &self,
        host: &HostRecord,
        caller: Option<&Caller>,
        req: &Outbound,
    ) -> Result<AgentReply, ForwardError> {
        let url = format!(
            "{}{}",
            host.info.address.trim_end_matches('/'),
            req.path_and_query
        );
        let mut builder = self
            .client
            .request(req.method.clone(), &url)
            .bearer_auth(&self.internal_token);
        if let Some(caller) = caller {
            builder = builder
                .header(internal::ORG_HEADER, &caller.org.slug)
                .header(internal::NETWORK_HEADER, caller.org.network_id.to_string())
                .header(internal::ACTOR_HEADER, &caller.token_name)
                .header(internal::REGISTRY_TOKEN_HEADER, caller.token.expose());
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
        let failed = |source: reqwest::Error| {
            // The URL and reqwest's causes are for the operator's log, not for the caller.
            tracing::warn!(host = %host.info.id, %url, error = %error_chain(&source), "agent did not answer");
            ForwardError {
                host_id: host.info.id.clone(),
                connect: source.is_connect(),
                timeout: source.is_timeout(),
            }
        };
        let resp = builder.send().await.map_err(failed)?;
        let status = resp.status();
        let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
        let body = resp.bytes().await.map_err(failed)?;
        Ok(AgentReply {
            status,
            content_type,
            body,
        })
    }
}

/// An agent that could not be reached or did not answer in time. What it says is for callers: the
/// host's address and the HTTP client's causes are logged where it is made, not carried here.
#[derive(Debug, thiserror::Error)]
#[error(
    "host `{host_id}` did not answer ({}); check that its agent is running and reachable from the \
     control plane",
    self.what()
)]
pub(crate) struct ForwardError {
    host_id: String,
    /// The request never reached the agent.
    connect: bool,
    /// The agent did not answer in time.
    timeout: bool,
}

impl ForwardError {
    /// What went wrong, in a few words.
    fn what(&self) -> &'static str {
        if self.connect {
            "it cannot be connected to"
        } else if self.timeout {
            "it took too long"
        } else {
            "the exchange with it failed"
        }
    }

    /// The request never reached the agent (so sending it elsewhere cannot duplicate it).
    pub fn is_connect(&self) -> bool {
        self.connect
    }
}

/// An error and its causes, `: `-separated (reqwest's own message omits the cause).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// The error an agent answered with, rebuilt (its message when the body is an error body).
pub(crate) fn agent_error(reply: &AgentReply) -> ApiError {
    let body = serde_json::from_slice::<ErrorBody>(&reply.body).unwrap_or_else(|_| ErrorBody {
        error: String::from_utf8_lossy(&reply.body).trim().to_string(),
        field: None,
        allowed: Vec::new(),
    });
    ApiError::from_response(reply.status.as_u16(), body)
}

impl From<ForwardError> for ApiError {
    fn from(e: ForwardError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aloft_types::api::HostInfo;

    #[tokio::test]
    async fn an_unreachable_agent_is_named_without_its_address_or_the_clients_causes() {
        // A port nothing listens on: the connection is refused.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", free.local_addr().unwrap());
        drop(free);
        let host = HostRecord {
            info: HostInfo {
                id: "ord-1".into(),
                region: "ord".into(),
                address: address.clone(),
                runtime: "sim".into(),
                cpus: 1,
                memory_mb: 1024,
                allocated_cpus: 0,
                allocated_memory_mb: 0,
            },
            last_seen: 0,
        };
        let fwd = Forwarder::new("internal".into()).unwrap();
        let req = Outbound::bodiless(Method::GET, "/internal/v1/images".into());
        let err = fwd.send_internal(&host, &req).await.unwrap_err();
        assert!(err.is_connect());
        let msg = ApiError::from(err).body().error;
        assert!(msg.contains("host `ord-1`"), "{msg}");
        assert!(msg.contains("cannot be connected to"), "{msg}");
        for leak in [
            address.as_str(),
            "127.0.0.1",
            "os error",
            "error sending request",
        ] {
            assert!(!msg.contains(leak), "`{leak}` reached the caller: {msg}");
        }
    }
}
