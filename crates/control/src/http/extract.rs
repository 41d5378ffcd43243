//! Extractors that turn every rejection into the API's JSON error shape: the caller (org
//! token), the internal token, path, query, body, and a request to pass on to an agent as it came
//! (an agent's reply is a response as it came: `aloft_agent_api::AgentReply`).

use super::MAX_BODY_BYTES;
use super::{HttpError, Reply};
use crate::ControlPlane;
use crate::forward::AgentRequest;
use crate::store::Caller;
use aloft_agent_api::headers::LEASE_NONCE_HEADER;
use aloft_types::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

fn authorization(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
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

/// Path parameters; a path that cannot be read is a 400 in the API's error shape.
pub(crate) struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Reply<Self> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| ApiPath(t))
            .map_err(|e| HttpError(ApiError::BadRequest(e.body_text())))
    }
}

/// A query string; one that cannot be read is a 400 in the API's error shape.
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Reply<Self> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| ApiQuery(t))
            .map_err(|e| {
                HttpError(ApiError::BadRequest(format!(
                    "{}; check the query string",
                    e.body_text()
                )))
            })
    }
}

/// The request body, at most [`MAX_BODY_BYTES`] (413 above).
pub(crate) struct ApiBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBody {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Reply<Self> {
        Bytes::from_request(req, state)
            .await
            .map(ApiBody)
            .map_err(|e| {
                HttpError(if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge(format!(
                        "the request body is larger than {} KiB; send a smaller one",
                        MAX_BODY_BYTES / 1024
                    ))
                } else {
                    ApiError::BadRequest(format!("the request body could not be read: {e}"))
                })
            })
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
        let ApiBody(body) = ApiBody::from_request(req, state).await?;
        Ok(Forwarded(AgentRequest {
            method,
            path_and_query,
            body,
            content_type,
            lease_nonce,
        }))
    }
}
