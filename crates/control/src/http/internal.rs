//! The cluster-internal endpoints: join tokens (the operator) and joining (a join token); host
//! registration and heartbeats, host numbers, the mesh (the operator or the host itself, with
//! its credential); operators' requests to one host, orgs and token checks (the operator).

use super::Reply;
use super::extract::{Internal, PathParams, RawBody};
use crate::ControlPlane;
use crate::forward::AgentReply;
use crate::host_credentials::ClusterCaller;
use aloft_types::ApiError;
use aloft_types::api::{
    HostInfo, HostNumber, MeshJoin, MeshPeer, OkResponse, VerifyTokenRequest, VerifyTokenResponse,
};
use aloft_types::join::{HostJoined, JoinToken, JoinTokenRequest};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

/// `POST /internal/v1/hosts`: an agent registers or sends its heartbeat.
pub(super) async fn register_host(
    State(cp): State<ControlPlane>,
    caller: ClusterCaller,
    RawBody(body): RawBody,
) -> Reply<axum::Json<OkResponse>> {
    let info: HostInfo = ApiError::parse_json(&body)?;
    caller.check_is(&info.id)?;
    cp.record_host(info).await?;
    Ok(axum::Json(OkResponse::ok()))
}

/// `POST /internal/v1/hosts/{host}/number`: the host part of 6PN addresses for a host, asked
/// once by its agent before it opens (given on first ask, the same ever after).
pub(super) async fn host_number(
    State(cp): State<ControlPlane>,
    caller: ClusterCaller,
    Path(host): Path<String>,
) -> Reply<axum::Json<HostNumber>> {
    if host.trim().is_empty() {
        return Err(ApiError::invalid("host", "a host id is required").into());
    }
    caller.check_is(&host)?;
    let number = cp.host_number(&host).await.map_err(ApiError::from)?;
    Ok(axum::Json(HostNumber { host, number }))
}

/// `POST /internal/v1/join-tokens`: a one-time join token for a new host (201; shown once).
pub(super) async fn create_join_token(
    State(cp): State<ControlPlane>,
    _internal: Internal,
    RawBody(body): RawBody,
) -> Reply<(StatusCode, axum::Json<JoinToken>)> {
    let req: JoinTokenRequest = if body.is_empty() {
        JoinTokenRequest::default()
    } else {
        ApiError::parse_json(&body)?
    };
    Ok((
        StatusCode::CREATED,
        axum::Json(cp.create_join_token(&req).await?),
    ))
}

/// `POST /internal/v1/hosts/{host}/join` (a join token as bearer): the host's own credential
/// and keys (201), once per host id.
pub(super) async fn join_host(
    State(cp): State<ControlPlane>,
    PathParams(host): PathParams<String>,
    headers: HeaderMap,
) -> Reply<(StatusCode, axum::Json<HostJoined>)> {
    let joined = cp
        .join_host(&host, aloft_http::authorization(&headers))
        .await?;
    Ok((StatusCode::CREATED, axum::Json(joined)))
}

/// `DELETE /internal/v1/hosts/{host}/credential`: the host's credential stops working at once,
/// and the id may get a new one (204; 404 when it has none).
pub(super) async fn revoke_host_credential(
    State(cp): State<ControlPlane>,
    _internal: Internal,
    PathParams(host): PathParams<String>,
) -> Reply<StatusCode> {
    cp.revoke_host_credential(&host).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /internal/v1/mesh/{host}`: a host says how the mesh reaches it (after it has its number)
/// and gets every member.
pub(super) async fn join_mesh(
    State(cp): State<ControlPlane>,
    caller: ClusterCaller,
    Path(host): Path<String>,
    body: Bytes,
) -> Reply<axum::Json<Vec<MeshPeer>>> {
    caller.check_is(&host)?;
    let join: MeshJoin = ApiError::parse_json(&body)?;
    if join.endpoint.parse::<std::net::SocketAddr>().is_err() {
        return Err(ApiError::invalid("endpoint", "expected ip:port, e.g. 10.0.0.5:51820").into());
    }
    if !is_wireguard_key(&join.public_key) {
        return Err(ApiError::invalid(
            "public_key",
            "expected a WireGuard public key (32 bytes, base64)",
        )
        .into());
    }
    if !cp.join_mesh(&host, join).await.map_err(ApiError::from)? {
        return Err(ApiError::invalid(
            "host",
            format!("host `{host}` has no number: POST /internal/v1/hosts/{host}/number first"),
        )
        .into());
    }
    Ok(axum::Json(cp.mesh_peers().await.map_err(ApiError::from)?))
}

/// `GET /internal/v1/mesh`: every member of the mesh between hosts.
pub(super) async fn mesh_peers(
    State(cp): State<ControlPlane>,
    _caller: ClusterCaller,
) -> Reply<axum::Json<Vec<MeshPeer>>> {
    Ok(axum::Json(cp.mesh_peers().await.map_err(ApiError::from)?))
}

/// 44 characters of base64 for 32 bytes.
fn is_wireguard_key(key: &str) -> bool {
    key.len() == 44
        && key.ends_with('=')
        && key[..43]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// `GET /internal/v1/hosts`: every registered host (operators).
pub(super) async fn list_hosts(
    State(cp): State<ControlPlane>,
    _internal: Internal,
) -> Reply<axum::Json<Vec<HostInfo>>> {
    Ok(axum::Json(cp.hosts().await?))
}

/// `GET /internal/v1/hosts/{host}/images`: the images on a host and the machines using them
/// (its agent's `GET /internal/v1/images`).
pub(super) async fn host_images(
    State(cp): State<ControlPlane>,
    _internal: Internal,
    PathParams(host): PathParams<String>,
) -> Reply<AgentReply> {
    Ok(cp
        .ask_host(&host, |agent| async move { agent.images().await })
        .await?)
}

/// `POST /internal/v1/hosts/{host}/images/prune`: removes the images no machine on the host
/// uses (its agent's `POST /internal/v1/images/prune`).
pub(super) async fn host_images_prune(
    State(cp): State<ControlPlane>,
    _internal: Internal,
    PathParams(host): PathParams<String>,
) -> Reply<AgentReply> {
    Ok(cp
        .ask_host(&host, |agent| async move { agent.prune_images().await })
        .await?)
}

/// `POST /internal/v1/orgs` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateOrgRequest {
    slug: String,
    /// The new token's name (default `default`); agents see it as the actor of requests.
    #[serde(default)]
    token_name: Option<String>,
}

/// `POST /internal/v1/orgs` reply: the org and a new token for it (shown once).
#[derive(Debug, Serialize)]
pub(super) struct CreateOrgResponse {
    slug: String,
    token: String,
}

/// `POST /internal/v1/orgs`: creates the org if missing and a new token for it (operators, tests).
pub(super) async fn create_org(
    State(cp): State<ControlPlane>,
    _internal: Internal,
    RawBody(body): RawBody,
) -> Reply<(StatusCode, axum::Json<CreateOrgResponse>)> {
    let req: CreateOrgRequest = ApiError::parse_json(&body)?;
    cp.ensure_org(&req.slug).await.map_err(ApiError::from)?;
    let name = req.token_name.as_deref().unwrap_or("default");
    let token = cp
        .create_token(&req.slug, name)
        .await
        .map_err(ApiError::from)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreateOrgResponse {
            slug: req.slug,
            token,
        }),
    ))
}

/// `POST /internal/v1/tokens/verify`: the org of an API token, and the app of a deploy token (404
/// when unknown, revoked or expired), for cluster services that authenticate tokens themselves (a
/// region's registry cache, as its host, or a registry of the operator's). Asked on every
/// request, so a revoked token stops at once.
pub(super) async fn verify_token(
    State(cp): State<ControlPlane>,
    _caller: ClusterCaller,
    RawBody(body): RawBody,
) -> Reply<axum::Json<VerifyTokenResponse>> {
    let req: VerifyTokenRequest = ApiError::parse_json(&body)?;
    match cp.verify_token(&req.token).await {
        Some(verified) => Ok(axum::Json(verified)),
        None => Err(ApiError::NotFound(
            "unknown, revoked or expired token; create a new one with `aloft tokens create`".into(),
        )
        .into()),
    }
}
