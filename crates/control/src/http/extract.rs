//! Extractors that turn every rejection into the API's JSON error shape: the caller (org
//! token), the internal token, and a request to pass on to an agent as it came (an agent's reply
//! is a response as it came: `aloft_agent_api::AgentReply`); path, query and body are
//! `aloft_http`'s.

use super::{HttpError, Reply};
use crate::ControlPlane;
use crate::forward::AgentRequest;
use crate::store::Caller;
use aloft_agent_api::headers::LEASE_NONCE_HEADER;
pub(crate) use aloft_http::{PathParams, QueryParams, RawBody};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;

fn authorization(parts: &Parts) -> Option<&str> {
    aloft_http::authorization(&parts.headers)
}

impl FromRequestParts<ControlPlane> for Caller {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, cp: &ControlPlane) -> Reply<Self> {
        Ok(cp.authenticate(authorization(parts)).await?)
    }
}

/// A caller holding the cluster's internal token.
pub(crate) struct Internal;

impl FromRequestParts<ControlPlane> for Internal {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, cp: &ControlPlane) -> Reply<Self> {
        cp.authenticate_internal(authorization(parts))?;
        Ok(Internal)
    }
}

impl FromRequestParts<ControlPlane> for crate::host_credentials::HostCaller {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, cp: &ControlPlane) -> Reply<Self> {
        Ok(cp.authenticate_host(authorization(parts)).await?)
    }
}

impl FromRequestParts<ControlPlane> for crate::host_credentials::ClusterCaller {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, cp: &ControlPlane) -> Reply<Self> {
        Ok(cp.authenticate_cluster(authorization(parts)).await?)
    }
}

/// A request to pass on to an agent as it came: method, path and query, body, content type and
/// lease nonce.
pub(crate) struct Forwarded(pub AgentRequest);

impl<S: Send + Sync> FromRequest<S> for Forwarded {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Reply<Self> {
        let method = req.method().clone();
        let path_and_query = req.uri().path_and_query().map_or_else(
            || req.uri().path().to_string(),
            |pq| pq.as_str().to_string(),
        );
        let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
        let lease_nonce = req.headers().get(LEASE_NONCE_HEADER).cloned();
        let RawBody(body) = RawBody::from_request(req, state).await?;
        Ok(Forwarded(AgentRequest {
            method,
            path_and_query,
            body,
            content_type,
            lease_nonce,
        }))
    }
}
