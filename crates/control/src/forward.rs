//! Calling host agents through the typed [`AgentClient`] of `aloft_agent_api`: one pooled HTTP
//! client for all of them, the caller as the internal headers, the agent's reply kept byte for
//! byte, and an agent that does not answer named without its address.

use crate::error::ControlPlaneError;
use crate::store::{Caller, HostRecord};
use aloft_agent_api::{AgentClient, AgentError, CallerHeaders};
use aloft_types::ApiError;
use std::future::Future;

pub(crate) use aloft_agent_api::{AgentReply, AgentRequest};

/// Sends requests to agents, each with its own agent key (derived from the cluster secret: see
/// `crate::join`), through one pooled HTTP client.
#[derive(Clone)]
pub(crate) struct Forwarder {
    http: reqwest::Client,
    cluster_secret: String,
}

impl Forwarder {
    pub fn new(cluster_secret: String) -> Result<Self, ControlPlaneError> {
        let http = AgentClient::pool().map_err(ControlPlaneError::HttpClient)?;
        Ok(Self {
            http,
            cluster_secret,
        })
    }

    /// The client of `host`'s agent (sharing the pool), with that agent's key.
    fn agent(&self, host: &HostRecord) -> AgentClient {
        let key = crate::join::derive_host_keys(&self.cluster_secret, &host.info.id).agent;
        AgentClient::new(self.http.clone(), &host.info.address, &key)
    }

    /// Passes `req` to `host` on behalf of `caller`: the internal headers say who asks, and the
    /// caller's own token goes along (`x-aloft-registry-token`) for the registry pulls the
    /// request triggers. Headers the caller sent other than the content type and the lease
    /// nonce are never forwarded, so a caller cannot set any of these.
    pub async fn send(
        &self,
        host: &HostRecord,
        caller: &Caller,
        req: &AgentRequest,
    ) -> Result<AgentReply, ForwardError> {
        let caller = caller_headers(caller);
        self.ask(
            host,
            |agent| async move { agent.forward(&caller, req).await },
        )
        .await
    }

    /// Calls one endpoint of `host`'s agent (`op` gets its client): the answer as it came, or
    /// the [`ForwardError`] naming the host (the URL and the causes go to the log).
    pub async fn ask<F, Fut>(&self, host: &HostRecord, op: F) -> Result<AgentReply, ForwardError>
    where
        F: FnOnce(AgentClient) -> Fut,
        Fut: Future<Output = Result<AgentReply, AgentError>>,
    {
        op(self.agent(host)).await.map_err(|e| {
            // The URL and reqwest's causes are for the operator's log, not for the caller.
            tracing::warn!(host = %host.info.id, url = %e.url(), error = %error_chain(e.cause()), "agent did not answer");
            ForwardError {
                host_id: host.info.id.clone(),
                connect: e.is_connect(),
                timeout: e.is_timeout(),
            }
        })
    }
}

/// Who asks, as the internal headers say it: the caller's org, its network, the token's name and
/// the token itself.
pub(crate) fn caller_headers(caller: &Caller) -> CallerHeaders {
    CallerHeaders {
        org: caller.org.slug.clone(),
        network_id: caller.org.network_id.to_string(),
        actor: caller.token_name.clone(),
        registry_token: caller.token.expose().to_string(),
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
        let err = fwd
            .ask(&host, |agent| async move { agent.images().await })
            .await
            .unwrap_err();
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
