//! The HTTP edge's types (`aloft_http`'s error response and extractors, named as the
//! handlers use them) and the [`Caller`] read from the forwarded headers. No state.

use crate::images::credentials;
use crate::machine::Caller;
use aloft_agent_api::headers::{
    ACTOR_HEADER, LEASE_NONCE_HEADER, NETWORK_HEADER, ORG_HEADER, REGISTRY_TOKEN_HEADER,
};
use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

pub(super) use aloft_http::{
    HttpError, JsonBody as Body, OptionalJsonBody as OptionalBody, PathParams, QueryParams,
};

pub(super) type ApiResult<T> = Result<Json<T>, HttpError>;

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Ok(Caller {
            nonce: header(LEASE_NONCE_HEADER),
            actor: header(ACTOR_HEADER),
            org: header(ORG_HEADER),
            network_id: header(NETWORK_HEADER),
            registry: header(REGISTRY_TOKEN_HEADER).map(|t| credentials(&t)),
        })
    }
}
