//! The HTTP edge's error response ([`HttpError`]: an [`ApiError`] with its status and
//! [`ErrorBody`](aloft_types::ErrorBody)) and the extractors that turn axum's own rejections of a
//! bad body, path or query into it; the [`Caller`] read from the forwarded headers. No state.

use super::MAX_BODY;
use crate::images::credentials;
use crate::machine::Caller;
use aloft_agent_api::headers::{
    ACTOR_HEADER, LEASE_NONCE_HEADER, NETWORK_HEADER, ORG_HEADER, REGISTRY_TOKEN_HEADER,
};
use aloft_types::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

/// An [`ApiError`] as an HTTP response: its status and its [`ErrorBody`](aloft_types::ErrorBody).
pub(super) struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0.body())).into_response()
    }
}

pub(super) type ApiResult<T> = Result<Json<T>, HttpError>;

/// A JSON body: malformed is 400, a bad value 422 naming the field, over 1 MiB 413.
pub(super) struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        Ok(Self(ApiError::parse_json(&bytes)?))
    }
}

/// A JSON body that may be left out (an empty body means the defaults).
pub(super) struct OptionalBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalBody<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        Ok(Self(ApiError::parse_json(&bytes)?))
    }
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, HttpError> {
    Bytes::from_request(req, state).await.map_err(|r| {
        HttpError(if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!(
                "the request body is larger than {MAX_BODY} bytes (1 MiB); send a smaller body"
            ))
        } else {
            ApiError::BadRequest(format!("cannot read the request body: {}", r.body_text()))
        })
    })
}

/// Path parameters; a bad one is a 400 in the API's error shape.
pub(super) struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Self(v))
            .map_err(|r| HttpError(ApiError::BadRequest(format!("bad path: {}", r.body_text()))))
    }
}

/// Query parameters; a bad one is a 400 in the API's error shape.
pub(super) struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|r| {
                HttpError(ApiError::BadRequest(format!(
                    "bad query string: {}",
                    r.body_text()
                )))
            })
    }
}

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
