//! `/v1/apps/{app}/certificates`: the hostnames an app is served at; and every hostname with its
//! certificate for the proxies (`/internal/v1/certificates`).

use super::Reply;
use super::extract::{PathParams, RawBody};
use crate::ControlPlane;
use crate::store::Caller;
use aloft_types::api::{Certificate, CreateCertificateRequest, OkResponse, ProxyCertificate};
use aloft_types::{ApiError, ErrorBody};
use axum::extract::State;
use axum::http::StatusCode;

/// Serve the app at a hostname too (`Host` and SNI), with the given certificate or one from the
/// development CA.
#[utoipa::path(
    post, path = "/v1/apps/{app}/certificates", tag = "Certificates", operation_id = "Certificates_add",
    params(("app" = String, Path, description = "The app's name")),
    request_body = CreateCertificateRequest,
    responses(
        (status = 201, description = "The hostname is served", body = Certificate),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
        (status = 409, description = "Another app is served at the hostname", body = ErrorBody),
        (status = 422, description = "Not a hostname; a certificate or key that does not load", body = ErrorBody),
    )
)]
pub(crate) async fn add_certificate(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams(app): PathParams<String>,
    RawBody(body): RawBody,
) -> Reply<(StatusCode, axum::Json<Certificate>)> {
    let cert = cp.add_certificate(&caller, &app, &body).await?;
    Ok((StatusCode::CREATED, axum::Json(cert)))
}

/// The hostnames the app is served at (never their keys).
#[utoipa::path(
    get, path = "/v1/apps/{app}/certificates", tag = "Certificates", operation_id = "Certificates_list",
    params(("app" = String, Path, description = "The app's name")),
    responses(
        (status = 200, description = "The app's hostnames", body = Vec<Certificate>),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
    )
)]
pub(crate) async fn list_certificates(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams(app): PathParams<String>,
) -> Reply<axum::Json<Vec<Certificate>>> {
    Ok(axum::Json(cp.list_certificates(&caller, &app).await?))
}

/// Stop serving the app at a hostname.
#[utoipa::path(
    delete, path = "/v1/apps/{app}/certificates/{hostname}", tag = "Certificates", operation_id = "Certificates_remove",
    params(
        ("app" = String, Path, description = "The app's name"),
        ("hostname" = String, Path, description = "The hostname"),
    ),
    responses(
        (status = 200, description = "Removed", body = OkResponse),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app, or the app has no such hostname", body = ErrorBody),
    )
)]
pub(crate) async fn remove_certificate(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams((app, hostname)): PathParams<(String, String)>,
) -> Reply<axum::Json<OkResponse>> {
    cp.remove_certificate(&caller, &app, &hostname).await?;
    Ok(axum::Json(OkResponse::ok()))
}

/// `GET /internal/v1/certificates`: every hostname apps are served at, with uploaded
/// certificates and keys, for hosts' proxies (which read it over the mesh).
pub(super) async fn proxy_certificates(
    State(cp): State<ControlPlane>,
    _caller: crate::host_credentials::ClusterCaller,
) -> Reply<axum::Json<Vec<ProxyCertificate>>> {
    let certs = cp.certificates().await.map_err(ApiError::from)?;
    Ok(axum::Json(certs.into_iter().map(Into::into).collect()))
}
