//! The control plane's HTTP edge: routes, extractors that turn every rejection into the API's
//! JSON error shape, and handlers that stay a few lines long (parse -> app layer -> reply).
//!
//! Machine endpoints other than create and list are forwarded whatever their sub-path, so every
//! operation the agent serves (`/start`, `/wait`, `/lease`, `/exec`, ...) is reachable without
//! listing it here; the agent is the one that knows them.
//!
//! This module holds the router and the error reply; `extract` the extractors; one child module per
//! resource holds its handlers (`apps`, `secrets`, `volumes`, `releases`, `certificates`,
//! `machines`, `platform`, `tokens`, `registry_logins`, and `internal` for the cluster-internal endpoints); `openapi` lists
//! them in the OpenAPI document.

mod apps;
mod certificates;
mod extract;
mod internal;
mod ip_assignments;
mod machines;
pub(crate) mod openapi;
mod orgs;
mod platform;
mod registry_logins;
mod releases;
mod secrets;
#[cfg(test)]
mod tests;
mod tokens;
mod volumes;

use crate::ControlPlane;
use aloft_types::{ApiError, ErrorBody};
use apps::{create_app, delete_app, get_app, list_apps};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use certificates::{
    check_certificate, import_custom_certificate, list_certificates, proxy_certificates,
    remove_acme_certificate, remove_certificate, remove_custom_certificate,
    request_acme_certificate, show_certificate,
};
use internal::{
    create_join_token, create_org, host_images, host_images_prune, host_number, join_host,
    join_mesh, list_hosts, mesh_peers, register_host, revoke_host_credential, verify_token,
};
use machines::{create_machine, list_machines, machine, machine_sub_path};
use openapi::openapi_json;
use platform::{list_regions, placements};
use registry_logins::{
    list_registry_logins, registry_credentials, remove_registry_login, set_registry_login,
};
use releases::{create_release, deployed_config, finish_release, list_releases};
use secrets::{delete_secret, get_secret, list_secrets, secret_values, set_secret, update_secrets};
use tokens::{create_token, list_tokens, revoke_token};
use volumes::{
    create_snapshot, create_volume, destroy_volume, extend_volume, get_volume, list_snapshots,
    list_volumes, update_volume, volume_access,
};

/// The largest request body accepted (413 above).
pub use aloft_http::MAX_BODY_BYTES;

/// Names the hosts that did not answer a machine list (the list is partial).
pub use aloft_types::api::PARTIAL_HEADER;

pub(crate) fn router(cp: ControlPlane) -> Router {
    Router::new()
        .route("/v1/apps", get(list_apps).post(create_app))
        .route("/v1/apps/{app}", get(get_app).delete(delete_app))
        .route("/v1/apps/{app}/certificates", get(list_certificates))
        .route(
            "/v1/apps/{app}/certificates/acme",
            post(request_acme_certificate),
        )
        .route(
            "/v1/apps/{app}/certificates/custom",
            post(import_custom_certificate),
        )
        .route(
            "/v1/apps/{app}/certificates/{hostname}",
            get(show_certificate).delete(remove_certificate),
        )
        .route(
            "/v1/apps/{app}/certificates/{hostname}/check",
            post(check_certificate),
        )
        .route(
            "/v1/apps/{app}/certificates/{hostname}/acme",
            axum::routing::delete(remove_acme_certificate),
        )
        .route(
            "/v1/apps/{app}/certificates/{hostname}/custom",
            axum::routing::delete(remove_custom_certificate),
        )
        .route(
            "/v1/apps/{app}/secrets",
            get(list_secrets).post(update_secrets),
        )
        .route(
            "/v1/apps/{app}/secrets/{name}",
            get(get_secret).post(set_secret).delete(delete_secret),
        )
        .route("/internal/v1/apps/{app}/secrets", get(secret_values))
        .route(
            "/v1/apps/{app}/volumes",
            get(list_volumes).post(create_volume),
        )
        .route(
            "/v1/apps/{app}/volumes/{id}",
            get(get_volume).put(update_volume).delete(destroy_volume),
        )
        .route("/v1/apps/{app}/volumes/{id}/extend", put(extend_volume))
        .route(
            "/v1/apps/{app}/volumes/{id}/snapshots",
            get(list_snapshots).post(create_snapshot),
        )
        .route("/internal/v1/volumes/{id}", get(volume_access))
        .route(
            "/v1/apps/{app}/releases",
            get(list_releases).post(create_release),
        )
        .route(
            "/v1/apps/{app}/releases/{version}",
            axum::routing::patch(finish_release),
        )
        .route(
            "/v1/apps/{app}/machines",
            get(list_machines).post(create_machine),
        )
        .route("/v1/apps/{app}/machines/{id}", any(machine))
        .route(
            "/v1/apps/{app}/machines/{id}/{*rest}",
            any(machine_sub_path),
        )
        .route("/v1/orgs", get(orgs::list_orgs))
        .route(
            "/v1/apps/{app}/ip_assignments",
            get(ip_assignments::list_ip_assignments).post(ip_assignments::assign_ip),
        )
        .route(
            "/v1/apps/{app}/ip_assignments/{ip}",
            axum::routing::delete(ip_assignments::delete_ip_assignment),
        )
        .route("/v1/apps/{app}/config", get(deployed_config))
        .route("/v1/platform/regions", get(list_regions))
        .route("/v1/platform/placements", post(placements))
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/{id}", axum::routing::delete(revoke_token))
        .route("/v1/registry-logins", get(list_registry_logins))
        .route(
            "/v1/registry-logins/{host}",
            put(set_registry_login).delete(remove_registry_login),
        )
        .route(
            "/internal/v1/orgs/{org}/registry-credentials/{host}",
            get(registry_credentials),
        )
        .route("/v1/openapi.json", get(openapi_json))
        .route("/internal/v1/hosts", get(list_hosts).post(register_host))
        .route("/internal/v1/hosts/{host}/images", get(host_images))
        .route("/internal/v1/hosts/{host}/number", post(host_number))
        .route(
            "/internal/v1/hosts/{host}/credential",
            axum::routing::delete(revoke_host_credential),
        )
        .route("/internal/v1/hosts/{host}/join", post(join_host))
        .route("/internal/v1/join-tokens", post(create_join_token))
        .route("/internal/v1/mesh", get(mesh_peers))
        .route("/internal/v1/certificates", get(proxy_certificates))
        .route("/internal/v1/mesh/{host}", put(join_mesh))
        .route(
            "/internal/v1/hosts/{host}/images/prune",
            post(host_images_prune),
        )
        .route("/internal/v1/orgs", post(create_org))
        .route("/internal/v1/tokens/verify", post(verify_token))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(cp)
}

pub(crate) use aloft_http::{HttpError, Reply};

pub(super) async fn no_route(method: Method, uri: Uri) -> HttpError {
    HttpError(ApiError::NotFound(format!(
        "no endpoint {method} {}; the API is described at /v1/openapi.json",
        uri.path()
    )))
}

pub(super) async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let body = ErrorBody::new(
        "method_not_allowed",
        format!(
            "{method} is not allowed on {}; the API is described at /v1/openapi.json",
            uri.path()
        ),
    );
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}
