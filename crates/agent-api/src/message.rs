//! A request to an agent ([`AgentRequest`]) and its answer ([`AgentReply`]), both kept as bytes:
//! the control plane passes a user's request on unchanged and the agent's answer back byte for
//! byte, so neither is re-encoded on the way. No state.

use crate::paths;
use aloft_types::api::{MakeVolumeRequest, TakeSnapshotRequest};
use aloft_types::{ApiError, ErrorBody};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;

/// A request to pass to an agent.
#[derive(Debug, Clone)]
pub struct AgentRequest {
    pub method: Method,
    /// The path and query string (for a forwarded request, exactly as the caller sent them).
    pub path_and_query: String,
    pub body: Bytes,
    pub content_type: Option<HeaderValue>,
    /// The `fly-machine-lease-nonce` the caller sent, if any.
    pub lease_nonce: Option<HeaderValue>,
}

impl AgentRequest {
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

    /// `GET /v1/apps/{app}/machines/{id}`.
    pub fn get_machine(app: &str, id: &str) -> Self {
        Self::bodiless(Method::GET, paths::machine(app, id))
    }

    /// `DELETE /v1/apps/{app}/machines/{id}`, with `?force=true` when `force`.
    pub fn destroy_machine(app: &str, id: &str, force: bool) -> Self {
        let mut path = paths::machine(app, id);
        if force {
            path.push_str("?force=true");
        }
        Self::bodiless(Method::DELETE, path)
    }

    /// `GET /internal/v1/host`.
    pub fn host() -> Self {
        Self::bodiless(Method::GET, paths::HOST.to_string())
    }

    /// `POST /internal/v1/apps/{app}/machines/{id}/autostart`.
    pub fn autostart(app: &str, id: &str) -> Self {
        Self::bodiless(Method::POST, paths::autostart(app, id))
    }

    /// `GET /internal/v1/images`.
    pub fn images() -> Self {
        Self::bodiless(Method::GET, paths::IMAGES.to_string())
    }

    /// `POST /internal/v1/images/prune`.
    pub fn prune_images() -> Self {
        Self::bodiless(Method::POST, paths::IMAGES_PRUNE.to_string())
    }

    /// `POST /internal/v1/volumes/{id}`.
    pub fn make_volume(id: &str, req: &MakeVolumeRequest) -> Self {
        Self::json(Method::POST, paths::volume(id), req)
    }

    /// `DELETE /internal/v1/volumes/{id}`.
    pub fn delete_volume(id: &str) -> Self {
        Self::bodiless(Method::DELETE, paths::volume(id))
    }

    /// `POST /internal/v1/volumes/{id}/snapshots`.
    pub fn snapshot_volume(id: &str, req: &TakeSnapshotRequest) -> Self {
        Self::json(Method::POST, paths::volume_snapshots(id), req)
    }
}

/// An agent's answer, as it came.
#[derive(Debug, Clone)]
pub struct AgentReply {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    /// A 405's `Allow`: the methods the path takes, passed on to the caller.
    pub allow: Option<HeaderValue>,
    pub body: Bytes,
}

impl AgentReply {
    /// The body as JSON, when it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as `T` (the endpoint's typed answer), when it is one.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The error the agent answered with, rebuilt: its message when the body is an error body,
    /// else the body's text.
    pub fn error(&self) -> ApiError {
        let body = serde_json::from_slice::<ErrorBody>(&self.body)
            .unwrap_or_else(|_| ErrorBody::new("", String::from_utf8_lossy(&self.body).trim()));
        ApiError::from_response(self.status.as_u16(), body)
    }
}

/// The reply as a response: its status, its body and its content type (none when it had none).
impl IntoResponse for AgentReply {
    fn into_response(self) -> Response {
        let mut resp = (self.status, self.body).into_response();
        match self.content_type {
            Some(ct) => resp.headers_mut().insert(header::CONTENT_TYPE, ct),
            None => resp.headers_mut().remove(header::CONTENT_TYPE),
        };
        if let Some(allow) = self.allow {
            resp.headers_mut().insert(header::ALLOW, allow);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_requests_name_the_agents_paths() {
        let r = AgentRequest::destroy_machine("web", "m1", true);
        assert_eq!(
            (r.method, r.path_and_query.as_str()),
            (Method::DELETE, "/v1/apps/web/machines/m1?force=true")
        );
        let r = AgentRequest::snapshot_volume(
            "vol_1",
            &TakeSnapshotRequest {
                snapshot_id: "s".into(),
            },
        );
        assert_eq!(r.path_and_query, "/internal/v1/volumes/vol_1/snapshots");
        assert_eq!(r.content_type.unwrap(), "application/json");
        assert_eq!(&r.body[..], br#"{"snapshot_id":"s"}"#);
    }

    #[test]
    fn an_error_reply_keeps_its_status_and_message() {
        let reply = AgentReply {
            status: StatusCode::CONFLICT,
            content_type: None,
            allow: None,
            body: Bytes::from_static(br#"{"error":"held"}"#),
        };
        let e = reply.error();
        assert_eq!((e.status(), e.body().error), (409, "held".to_string()));
    }
}
