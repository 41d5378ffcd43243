//! The agent's internal HTTP API: the machine endpoints of the Machines API on the public paths
//! and JSON (the control plane forwards requests unchanged), plus `GET /internal/v1/host`,
//! `GET /internal/v1/images`, `POST /internal/v1/images/prune`, and the volumes' data
//! (`POST`/`DELETE /internal/v1/volumes/{id}`, `POST /internal/v1/volumes/{id}/snapshots`). Every
//! request needs `Authorization: Bearer <internal token>`.
//!
//! Handlers stay thin: read the request, call one [`Agent`] method, write the answer. Every error
//! (including axum's own rejections of a bad path, query or body) is an
//! [`ErrorBody`] with the status of its [`ApiError`].
//!
//! - this module: the router, the bearer-token check and the fallbacks;
//! - `extract`: the error response and the extractors (body, path, query, `Caller`);
//! - `machines`: the machine endpoints; `internal`: host, images, volumes and autostart;
//! - `openapi`: [`MachinesApiDoc`].
//!
//! No state of its own: every handler gets the [`Agent`] as the router's state.

mod extract;
mod internal;
mod machines;
mod openapi;

pub use openapi::MachinesApiDoc;

use crate::agent::Agent;
use aloft_types::{ApiError, ErrorBody};
use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use extract::HttpError;
use internal::*;
use machines::*;

/// The largest request body accepted (1 MiB).
const MAX_BODY: usize = 1 << 20;

impl Agent {
    /// The internal HTTP API: the machine endpoints on the public paths
    /// (/v1/apps/{app}/machines/...) plus GET /internal/v1/host; bearer `internal_token` required.
    pub fn router(&self) -> axum::Router {
        router(self.clone())
    }
}

/// The router behind the internal token.
fn router(agent: Agent) -> Router {
    let machine = "/v1/apps/{app}/machines/{id}";
    Router::new()
        .route(
            "/v1/apps/{app}/machines",
            get(machines_list).post(machines_create),
        )
        .route(
            machine,
            get(machines_show)
                .post(machines_update)
                .delete(machines_delete),
        )
        .route(&format!("{machine}/start"), post(machines_start))
        .route(&format!("{machine}/stop"), post(machines_stop))
        .route(&format!("{machine}/restart"), post(machines_restart))
        .route(&format!("{machine}/signal"), post(machines_signal))
        .route(&format!("{machine}/suspend"), post(machines_suspend))
        .route(&format!("{machine}/wait"), get(machines_wait))
        .route(
            &format!("{machine}/lease"),
            get(machines_show_lease)
                .post(machines_create_lease)
                .delete(machines_release_lease),
        )
        .route(&format!("{machine}/cordon"), post(machines_cordon))
        .route(&format!("{machine}/uncordon"), post(machines_uncordon))
        .route(&format!("{machine}/metadata"), get(machines_show_metadata))
        .route(
            &format!("{machine}/metadata/{{key}}"),
            post(machines_update_metadata).delete(machines_delete_metadata),
        )
        .route(&format!("{machine}/events"), get(machines_list_events))
        .route(&format!("{machine}/versions"), get(machines_list_versions))
        .route(&format!("{machine}/ps"), get(machines_list_processes))
        .route(&format!("{machine}/exec"), post(machines_exec))
        .route(&format!("{machine}/logs"), get(machines_logs))
        .route("/internal/v1/host", get(host_show))
        .route(
            "/internal/v1/apps/{app}/machines/{id}/autostart",
            post(machines_autostart),
        )
        .route("/internal/v1/images", get(images_list))
        .route("/internal/v1/images/prune", post(images_prune))
        .route(
            "/internal/v1/volumes/{id}",
            axum::routing::delete(volumes_delete).post(volumes_make),
        )
        .route(
            "/internal/v1/volumes/{id}/snapshots",
            post(volumes_snapshot),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(agent.clone(), require_token))
        .with_state(agent)
}

async fn require_token(State(agent): State<Agent>, req: Request, next: Next) -> Response {
    let expected = agent.config().internal_token.as_bytes();
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim())
        });
    match given {
        Some(token) if !expected.is_empty() && constant_time_eq(token.as_bytes(), expected) => {
            next.run(req).await
        }
        Some(_) => HttpError(ApiError::Unauthorized(
            "the bearer token is not this agent's internal token; send the cluster's internal token".into(),
        ))
        .into_response(),
        None => HttpError(ApiError::Unauthorized(
            "missing bearer token: the agent's API is internal, send `Authorization: Bearer <internal token>`".into(),
        ))
        .into_response(),
    }
}

/// Compares without stopping at the first difference (the token is a secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found(uri: Uri) -> HttpError {
    HttpError(ApiError::NotFound(format!(
        "no endpoint at {}; the agent serves /v1/apps/{{app}}/machines/..., /internal/v1/host, /internal/v1/images and /internal/v1/volumes/...",
        uri.path()
    )))
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let body = ErrorBody {
        error: format!("{method} is not allowed on {}", uri.path()),
        field: None,
        allowed: Vec::new(),
    };
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}
