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
//! - [`MachinesApiDoc`] (re-exported): the OpenAPI document, from `aloft_agent_api`, whose
//!   `paths` this router is built from.
//!
//! No state of its own: every handler gets the [`Agent`] as the router's state.

mod extract;
mod internal;
mod machines;

pub use aloft_agent_api::MachinesApiDoc;

use crate::agent::Agent;
use aloft_agent_api::paths;
use aloft_types::{ApiError, ErrorBody};
use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use extract::HttpError;
use internal::*;
use machines::*;

/// The largest request body accepted (1 MiB).
const MAX_BODY: usize = aloft_http::MAX_BODY_BYTES;

impl Agent {
    /// The internal HTTP API: the machine endpoints on the public paths
    /// (/v1/apps/{app}/machines/...) plus GET /internal/v1/host; bearer `agent_token` required
    /// (`peer_token` opens only the autostart).
    pub fn router(&self) -> axum::Router {
        router(self.clone())
    }
}

/// The router behind the internal token.
fn router(agent: Agent) -> Router {
    Router::new()
        .route(paths::MACHINES, get(machines_list).post(machines_create))
        .route(
            paths::MACHINE,
            get(machines_show)
                .post(machines_update)
                .delete(machines_delete),
        )
        .route(paths::MACHINE_START, post(machines_start))
        .route(paths::MACHINE_STOP, post(machines_stop))
        .route(paths::MACHINE_RESTART, post(machines_restart))
        .route(paths::MACHINE_SIGNAL, post(machines_signal))
        .route(paths::MACHINE_SUSPEND, post(machines_suspend))
        .route(paths::MACHINE_WAIT, get(machines_wait))
        .route(
            paths::MACHINE_LEASE,
            get(machines_show_lease)
                .post(machines_create_lease)
                .delete(machines_release_lease),
        )
        .route(paths::MACHINE_CORDON, post(machines_cordon))
        .route(paths::MACHINE_UNCORDON, post(machines_uncordon))
        .route(paths::MACHINE_METADATA, get(machines_show_metadata))
        .route(
            paths::MACHINE_METADATA_KEY,
            post(machines_update_metadata).delete(machines_delete_metadata),
        )
        .route(paths::MACHINE_EVENTS, get(machines_list_events))
        .route(paths::MACHINE_VERSIONS, get(machines_list_versions))
        .route(paths::MACHINE_PS, get(machines_list_processes))
        .route(paths::MACHINE_EXEC, post(machines_exec))
        .route(paths::MACHINE_LOGS, get(machines_logs))
        .route(paths::HOST, get(host_show))
        .route(paths::AUTOSTART, post(machines_autostart))
        .route(paths::IMAGES, get(images_list))
        .route(paths::IMAGES_PRUNE, post(images_prune))
        .route(
            paths::VOLUME,
            axum::routing::delete(volumes_delete).post(volumes_make),
        )
        .route(paths::VOLUME_SNAPSHOTS, post(volumes_snapshot))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(agent.clone(), require_token))
        .with_state(agent)
}

async fn require_token(State(agent): State<Agent>, req: Request, next: Next) -> Response {
    let config = agent.config();
    let given = aloft_http::authorization(req.headers()).and_then(aloft_http::bearer_token);
    let Some(token) = given else {
        return HttpError(ApiError::Unauthorized(
            "missing bearer token: the agent's API is internal, send `Authorization: Bearer <agent key>`".into(),
        ))
        .into_response();
    };
    if aloft_http::tokens_equal(token, &config.agent_token) {
        return next.run(req).await;
    }
    if aloft_http::tokens_equal(token, &config.peer_token) {
        if req.method() == Method::POST && is_autostart(req.uri().path()) {
            return next.run(req).await;
        }
        return HttpError(ApiError::Forbidden(
            "another host may only autostart a machine here; the rest of the agent's API is the control plane's".into(),
        ))
        .into_response();
    }
    HttpError(ApiError::Unauthorized(
        "the bearer token is not this agent's key; the control plane sends it".into(),
    ))
    .into_response()
}

/// Whether `path` is `/internal/v1/apps/{app}/machines/{id}/autostart` (one segment each).
fn is_autostart(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    matches!(
        segments.as_slice(),
        ["internal", "v1", "apps", app, "machines", id, "autostart"]
            if !app.is_empty() && !id.is_empty()
    )
}

async fn not_found(uri: Uri) -> HttpError {
    HttpError(ApiError::NotFound(format!(
        "no endpoint at {}; the agent serves /v1/apps/{{app}}/machines/..., /internal/v1/host, /internal/v1/images and /internal/v1/volumes/...",
        uri.path()
    )))
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let body = ErrorBody::new(
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    );
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}
