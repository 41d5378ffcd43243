//! `/v1/apps/{app}/certificates`: the hostnames an app is served at and their certificates, in
//! the reference's routes and shapes (see `apps::certificates`); and every served hostname with
//! its certificate for the proxies (`/internal/v1/certificates`).

use super::Reply;
use super::extract::{PathParams, QueryParams, RawBody};
use crate::ControlPlane;
use crate::store::{Caller, CertPart};
use aloft_types::api::{OkResponse, ProxyCertificate};
use aloft_types::certificates::{
    CertificateDetailResponse, CreateAcmeCertificateRequest, ImportCertificateRequest,
    ListCertificatesQuery, ListCertificatesResponse,
};
use aloft_types::{ApiError, ErrorBody};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

/// A hostname's certificates.
type Detail = Json<CertificateDetailResponse>;

/// The app's hostnames, a page at a time (never their keys).
#[utoipa::path(
    get, path = "/v1/apps/{app}/certificates", tag = "Certificates", operation_id = "Certificates_list",
    params(("app" = String, Path, description = "The app's name"), ListCertificatesQuery),
    responses(
        (status = 200, description = "A page of the app's hostnames", body = ListCertificatesResponse),
        (status = 400, description = "A query parameter is not of its type", body = ErrorBody),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
        (status = 422, description = "`limit` over 1000, `cursor` or `filter` too long", body = ErrorBody),
    )
)]
pub(crate) async fn list_certificates(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams(app): PathParams<String>,
    QueryParams(q): QueryParams<ListCertificatesQuery>,
) -> Reply<Json<ListCertificatesResponse>> {
    Ok(Json(cp.list_certificates(&caller, &app, q).await?))
}

/// Serve the app at a hostname with a managed certificate (the reference's ACME certificate;
/// here from the development CA, for reserved names only until an ACME issuer is plugged in).
#[utoipa::path(
    post, path = "/v1/apps/{app}/certificates/acme", tag = "Certificates", operation_id = "Certificates_request_acme",
    params(("app" = String, Path, description = "The app's name")),
    request_body = CreateAcmeCertificateRequest,
    responses(
        (status = 201, description = "The hostname is served (or will be)", body = CertificateDetailResponse),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
        (status = 409, description = "Another app is served at the hostname", body = ErrorBody),
        (status = 422, description = "Not a hostname, not granted to the org, or no issuer for it", body = ErrorBody),
    )
)]
pub(crate) async fn request_acme_certificate(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams(app): PathParams<String>,
    RawBody(body): RawBody,
) -> Reply<(StatusCode, Detail)> {
    let detail = cp.request_managed_certificate(&caller, &app, &body).await?;
    Ok((StatusCode::CREATED, Json(detail)))
}

/// Serve the app at a hostname with the user's own certificate and key.
#[utoipa::path(
    post, path = "/v1/apps/{app}/certificates/custom", tag = "Certificates", operation_id = "Certificates_import_custom",
    params(("app" = String, Path, description = "The app's name")),
    request_body = ImportCertificateRequest,
    responses(
        (status = 201, description = "The certificate is stored and served", body = CertificateDetailResponse),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app in the token's org", body = ErrorBody),
        (status = 409, description = "Another app is served at the hostname", body = ErrorBody),
        (status = 422, description = "Not a hostname; a certificate that does not load, is not the key's, does not name the hostname or is not valid now", body = ErrorBody),
    )
)]
pub(crate) async fn import_custom_certificate(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams(app): PathParams<String>,
    RawBody(body): RawBody,
) -> Reply<(StatusCode, Detail)> {
    let detail = cp.import_certificate(&caller, &app, &body).await?;
    Ok((StatusCode::CREATED, Json(detail)))
}

/// A hostname's certificates and their status, checked now.
#[utoipa::path(
    get, path = "/v1/apps/{app}/certificates/{hostname}", tag = "Certificates", operation_id = "Certificates_show",
    params(
        ("app" = String, Path, description = "The app's name"),
        ("hostname" = String, Path, description = "The hostname"),
    ),
    responses(
        (status = 200, description = "The hostname's certificates", body = CertificateDetailResponse),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app, or the app has no such hostname", body = ErrorBody),
    )
)]
pub(crate) async fn show_certificate(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams((app, hostname)): PathParams<(String, String)>,
) -> Reply<Detail> {
    Ok(Json(cp.certificate_detail(&caller, &app, &hostname).await?))
}

/// Checks a hostname's certificates again (the custom one still loads with its key, names the
/// hostname and is within its validity; the managed one can be issued).
#[utoipa::path(
    post, path = "/v1/apps/{app}/certificates/{hostname}/check", tag = "Certificates", operation_id = "Certificates_check",
    params(
        ("app" = String, Path, description = "The app's name"),
        ("hostname" = String, Path, description = "The hostname"),
    ),
    responses(
        (status = 200, description = "The hostname's certificates", body = CertificateDetailResponse),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app, or the app has no such hostname", body = ErrorBody),
    )
)]
pub(crate) async fn check_certificate(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams((app, hostname)): PathParams<(String, String)>,
) -> Reply<Detail> {
    Ok(Json(cp.certificate_detail(&caller, &app, &hostname).await?))
}

/// Stop serving the app at a hostname (every certificate of it).
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
) -> Reply<Json<OkResponse>> {
    remove(cp, caller, app, hostname, CertPart::All).await
}

/// Stop the hostname's managed certificate; its custom one stays.
#[utoipa::path(
    delete, path = "/v1/apps/{app}/certificates/{hostname}/acme", tag = "Certificates", operation_id = "Certificates_remove_acme",
    params(
        ("app" = String, Path, description = "The app's name"),
        ("hostname" = String, Path, description = "The hostname"),
    ),
    responses(
        (status = 200, description = "Stopped", body = OkResponse),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app or hostname, or no managed certificate requested", body = ErrorBody),
    )
)]
pub(crate) async fn remove_acme_certificate(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams((app, hostname)): PathParams<(String, String)>,
) -> Reply<Json<OkResponse>> {
    remove(cp, caller, app, hostname, CertPart::Managed).await
}

/// Remove the hostname's custom certificate; its managed one stays.
#[utoipa::path(
    delete, path = "/v1/apps/{app}/certificates/{hostname}/custom", tag = "Certificates", operation_id = "Certificates_remove_custom",
    params(
        ("app" = String, Path, description = "The app's name"),
        ("hostname" = String, Path, description = "The hostname"),
    ),
    responses(
        (status = 200, description = "Removed", body = OkResponse),
        (status = 401, description = "No token, or a token that is not valid", body = ErrorBody),
        (status = 404, description = "No such app or hostname, or no custom certificate", body = ErrorBody),
    )
)]
pub(crate) async fn remove_custom_certificate(
    State(cp): State<ControlPlane>,
    caller: Caller,
    PathParams((app, hostname)): PathParams<(String, String)>,
) -> Reply<Json<OkResponse>> {
    remove(cp, caller, app, hostname, CertPart::Custom).await
}

async fn remove(
    cp: ControlPlane,
    caller: Caller,
    app: String,
    hostname: String,
    part: CertPart,
) -> Reply<Json<OkResponse>> {
    cp.remove_certificate(&caller, &app, &hostname, part)
        .await?;
    Ok(Json(OkResponse::ok()))
}

/// `GET /internal/v1/certificates`: every hostname the proxies serve, with custom certificates
/// and keys, for hosts' proxies (which read it over the mesh).
pub(super) async fn proxy_certificates(
    State(cp): State<ControlPlane>,
    _caller: crate::host_credentials::ClusterCaller,
) -> Reply<Json<Vec<ProxyCertificate>>> {
    Ok(Json(cp.certificates().await.map_err(ApiError::from)?))
}
