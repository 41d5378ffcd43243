//! The HTTP edge the agent's API and the control plane's Machines API share.
//!
//! - [`HttpError`]: an [`ApiError`] on its way out, answered with its status and the API's JSON
//!   error body. Errors keep their type up to here; nothing else turns them into responses.
//! - Extractors that answer every rejection in that shape: [`JsonBody`] (malformed JSON is 400,
//!   a bad value 422 naming the field), [`OptionalJsonBody`], [`RawBody`], [`PathParams`],
//!   [`QueryParams`]; a body over the router's limit ([`MAX_BODY_BYTES`], set with axum's
//!   `DefaultBodyLimit`) is 413.
//! - [`bearer_token`] and [`tokens_equal`] (constant time, `subtle`): how a server checks the
//!   token it was given.
//! - [`tls::certified_key_from_pem`]: a user's certificate and key, checked the same way by the
//!   control plane (before storing them) and by the proxies (loading them).
//! - [`internal`]: a failure inside a server (a store error's SQLite text, a path, an address)
//!   is logged with an error id; the caller gets a summary, the id and what to do.
//!
//! - [`conn`]: the bounds on a served connection's idle phases (first bytes, idle, request
//!   body), shared by the proxy and [`serve`]; [`serve::serve`] serves an axum router with them
//!   and a cap on open connections.
//!
//! No state.

pub mod conn;
pub mod serve;
pub mod tls;

use aloft_types::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

/// The largest request body the APIs accept (1 MiB).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// An API error on its way to the caller.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.0.body())).into_response()
    }
}

/// A handler's result.
pub type Reply<T> = Result<T, HttpError>;

/// The request body as bytes, at most the router's limit (413 above).
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Reply<Self> {
        Bytes::from_request(req, state).await.map(RawBody).map_err(|r| {
            HttpError(if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(format!(
                    "the request body is larger than {MAX_BODY_BYTES} bytes (1 MiB); send a smaller body"
                ))
            } else {
                ApiError::BadRequest(format!("cannot read the request body: {}", r.body_text()))
            })
        })
    }
}

/// A JSON body: malformed is 400, a bad value 422 naming the field.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Reply<Self> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        Ok(Self(ApiError::parse_json(&bytes)?))
    }
}

/// A JSON body that may be left out (an empty body, or `null`, means the defaults).
pub struct OptionalJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Reply<Self> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        // JSON `null` is no body too (what a client sends for an optional body it leaves out).
        let body: Option<T> = ApiError::parse_json(&bytes)?;
        Ok(Self(body.unwrap_or_default()))
    }
}

/// Path parameters; a bad one is a 400.
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Reply<Self> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Self(v))
            .map_err(|r| HttpError(ApiError::BadRequest(format!("bad path: {}", r.body_text()))))
    }
}

/// Query parameters; a bad one is a 400.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Reply<Self> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|r| {
                HttpError(ApiError::BadRequest(format!(
                    "bad query string: {}; check the query string",
                    r.body_text()
                )))
            })
    }
}

/// The value of the `Authorization` header, when it is text.
pub fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// The token of an `Authorization: Bearer <token>` value (the scheme in any case, the token
/// trimmed); `None` for another scheme or an empty token.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    authorization
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
}

/// Whether a presented token is the expected one, in time that does not depend on where they
/// differ. An empty expected token matches nothing.
pub fn tokens_equal(given: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// A 500 for a failure inside `server` ("the agent", "the control plane"): the caller gets
/// `summary`, an error id and what to do; the failure itself is logged under that id (it can
/// hold SQLite's text, paths or addresses, which are not the caller's business).
pub fn internal(server: &str, summary: &str, failure: &dyn std::fmt::Display) -> ApiError {
    let error_id = aloft_types::ids::random_hex(6);
    tracing::error!(%error_id, error = %failure, "{summary}");
    ApiError::Internal(format!(
        "{summary}; {server}'s log has the details under error id {error_id}: retry, and tell \
         the operator if it persists"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_in_any_case_and_trimmed() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn tokens_are_compared_whole_and_never_match_an_empty_one() {
        assert!(tokens_equal("abc", "abc"));
        assert!(!tokens_equal("abc", "abd"));
        assert!(!tokens_equal("abc", "ab"));
        assert!(!tokens_equal("", ""));
    }

    #[test]
    fn an_internal_failure_is_summarized_with_an_id_not_sent() {
        let err = internal(
            "the agent",
            "the agent's store failed",
            &"no such table: machines (/var/lib/aloft/agent.db)",
        );
        assert_eq!(err.status(), 500);
        let msg = err.body().error;
        assert!(
            msg.starts_with("the agent's store failed; the agent's log"),
            "{msg}"
        );
        assert!(msg.contains("error id"), "{msg}");
        assert!(
            !msg.contains("no such table") && !msg.contains("agent.db"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn errors_answer_with_their_status_and_the_json_shape() {
        let resp = HttpError(ApiError::NotFound("no such app".into())).into_response();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(text.contains("\"error\":\"no such app\""), "{text}");
    }
}
