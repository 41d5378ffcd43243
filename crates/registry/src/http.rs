//! The HTTP edge: routes, request parsing into typed actions, authentication, and the mapping of
//! [`RegistryError`] to the spec's status codes, JSON error body and auth challenge. Every
//! repository endpoint goes through [`dispatch`], which parses `/v2/<name>/<target>` (names
//! contain slashes, so axum's path matching cannot split them), authenticates, checks the org,
//! and calls one short handler per action.

use crate::Registry;
use crate::auth::{Caller, TokenGrant, basic_token, presented_token, rfc3339};
use crate::body::{ChunkSource, FileBody};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::service::{Listing, PageRequest};
use aloft_oci::name::is_valid_org;
use aloft_oci::{Digest, ManifestRef, RepoName};
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http::header::{
    ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HOST, LINK, LOCATION, RANGE,
    WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use serde::Deserialize;
use std::time::SystemTime;
use tokio::io::AsyncSeekExt;

const DIGEST_HEADER: &str = "docker-content-digest";
const UPLOAD_UUID_HEADER: &str = "docker-upload-uuid";
/// Lifetime announced for bearer tokens; clients fetch a new one after it.
const TOKEN_TTL_SECS: u64 = 3600;

pub(crate) fn router(registry: Registry) -> Router {
    Router::new()
        .route("/v2", get(ping))
        .route("/v2/", get(ping))
        .route("/v2/token", get(token))
        .route("/v2/_catalog", get(catalog))
        .route("/v2/{*rest}", any(dispatch))
        .layer(axum::middleware::map_response(api_version))
        .with_state(registry)
}

async fn api_version(mut response: Response) -> Response {
    response.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    response
}

/// Query parameters any endpoint may use.
#[derive(Deserialize)]
struct Params {
    n: Option<String>,
    last: Option<String>,
    digest: Option<String>,
    mount: Option<String>,
    from: Option<String>,
}

impl Params {
    fn page(&self) -> Result<PageRequest> {
        let n = match &self.n {
            Some(n) => Some(n.parse().map_err(|_| {
                RegistryError::api(
                    ErrorCode::PaginationNumberInvalid,
                    format!("`n={n}` is not a number; use a non-negative integer"),
                )
            })?),
            None => None,
        };
        Ok(PageRequest {
            n,
            last: self.last.clone(),
        })
    }
}

/// What a repository request addresses, below `/v2/<name>/`.
enum Target<'a> {
    Tags,
    Manifest(&'a str),
    Uploads,
    Upload(&'a str),
    Blob(&'a str),
}

/// Splits `<name>/<target>`. The target is matched from the end, since names contain slashes.
fn split_target(path: &str) -> Option<(&str, Target<'_>)> {
    if let Some(name) = path.strip_suffix("/tags/list") {
        return Some((name, Target::Tags));
    }
    if let Some(name) = path
        .strip_suffix("/blobs/uploads/")
        .or_else(|| path.strip_suffix("/blobs/uploads"))
    {
        return Some((name, Target::Uploads));
    }
    let (rest, last) = path.rsplit_once('/')?;
    let (name, kind) = rest.rsplit_once('/')?;
    match kind {
        "manifests" => Some((name, Target::Manifest(last))),
        "blobs" => Some((name, Target::Blob(last))),
        "uploads" => {
            let name = name.strip_suffix("/blobs")?;
            Some((name, Target::Upload(last)))
        }
        _ => None,
    }
}

/// Challenge parameters of this request.
struct Challenge {
    realm: String,
    service: String,
    scope: Option<String>,
}

impl Challenge {
    fn new(registry: &Registry, headers: &HeaderMap, scope: Option<String>) -> Challenge {
        let config = &registry.inner.config;
        let realm = config.realm.clone().unwrap_or_else(|| {
            let host = headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| !h.contains('"'))
                .unwrap_or("localhost");
            format!("http://{host}/v2/token")
        });
        Challenge {
            realm,
            service: config.service.clone(),
            scope,
        }
    }

    fn header(&self) -> String {
        let mut value = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            self.realm, self.service
        );
        if let Some(scope) = &self.scope {
            value.push_str(&format!(",scope=\"{scope}\""));
        }
        value
    }
}

fn error_body(code: &str, message: &str) -> Vec<u8> {
    serde_json::json!({"errors": [{"code": code, "message": message}]})
        .to_string()
        .into_bytes()
}

/// The spec's answer for `error`, with the auth challenge on 401.
fn error_response(error: RegistryError, challenge: &Challenge) -> Response {
    let (status, code, message) = match &error {
        RegistryError::Api { code, message } => {
            (code.status(), code.as_str().to_string(), message.clone())
        }
        RegistryError::UpstreamUnavailable { .. } => (
            503,
            ErrorCode::Unavailable.as_str().into(),
            error.to_string(),
        ),
        RegistryError::UpstreamRefused { status, code, .. } => {
            let status = if (400..600).contains(status) {
                *status
            } else {
                502
            };
            (status, code.clone(), error.to_string())
        }
        RegistryError::Io { .. } | RegistryError::Config(_) => {
            tracing::error!(%error, "registry failure");
            (
                500,
                ErrorCode::Internal.as_str().into(),
                "the registry could not read or write its storage; retry, and tell the operator if it persists (the registry's log has the cause)".into(),
            )
        }
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (
        status,
        [(CONTENT_TYPE, "application/json")],
        error_body(&code, &message),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED
        && let Ok(value) = HeaderValue::from_str(&challenge.header())
    {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

fn unauthorized(message: &str) -> RegistryError {
    RegistryError::api(ErrorCode::Unauthorized, message)
}

async fn authenticate(registry: &Registry, headers: &HeaderMap) -> Result<Caller> {
    let token = presented_token(headers).ok_or_else(|| {
        unauthorized(
            "authentication required: log in with any username and your org's API token as the password",
        )
    })?;
    let TokenGrant { org, app } = registry
        .inner
        .authority
        .grant_of_token(&token)
        .await
        .ok_or_else(|| {
            unauthorized("the token is not valid (unknown, revoked or expired); log in again with a current API token (`aloft tokens create`)")
        })?;
    if !is_valid_org(&org) {
        tracing::error!(%org, "the token authority returned an org that cannot name repositories");
        return Err(unauthorized(&format!(
            "your token's org `{org}` cannot own repositories (not a valid repository name component); tell the operator"
        )));
    }
    Ok(Caller { org, app, token })
}

async fn ping(State(registry): State<Registry>, headers: HeaderMap) -> Response {
    match authenticate(&registry, &headers).await {
        Ok(_) => (StatusCode::OK, [(CONTENT_TYPE, "application/json")], "{}").into_response(),
        Err(e) => error_response(e, &Challenge::new(&registry, &headers, None)),
    }
}

/// `GET /v2/token`: Basic auth with the org token as password; the bearer token handed out is
/// that same org token (see the crate docs).
async fn token(State(registry): State<Registry>, headers: HeaderMap) -> Response {
    let org = match basic_token(&headers) {
        Some(token) => registry
            .inner
            .authority
            .grant_of_token(&token)
            .await
            .map(|grant| (grant.org, token)),
        None => None,
    };
    let Some((org, token)) = org else {
        let mut response = error_response(
            unauthorized(
                "the token endpoint needs Basic auth: any username, your org's API token as the password",
            ),
            &Challenge::new(&registry, &headers, None),
        );
        let basic = format!("Basic realm=\"{}\"", registry.inner.config.service);
        if let Ok(value) = HeaderValue::from_str(&basic) {
            response.headers_mut().insert(WWW_AUTHENTICATE, value);
        }
        return response;
    };
    tracing::debug!(%org, "issued a registry token");
    axum::Json(serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": TOKEN_TTL_SECS,
        "issued_at": rfc3339(SystemTime::now()),
    }))
    .into_response()
}

async fn catalog(State(registry): State<Registry>, headers: HeaderMap, uri: Uri) -> Response {
    let challenge = Challenge::new(&registry, &headers, Some("registry:catalog:*".into()));
    let result = async {
        let caller = authenticate(&registry, &headers).await?;
        let page = query(&uri)?.page()?;
        let listed = registry.catalog(&caller, &page).await?;
        let mut response =
            axum::Json(serde_json::json!({"repositories": listed.items})).into_response();
        if let (Some(after), Some(n)) = (listed.next_after, page.n) {
            set_link(&mut response, &format!("/v2/_catalog?n={n}&last={after}"));
        }
        Ok(response)
    }
    .await;
    result.unwrap_or_else(|e| error_response(e, &challenge))
}

fn query(uri: &Uri) -> Result<Params> {
    Query::<Params>::try_from_uri(uri)
        .map(|Query(p)| p)
        .map_err(|e| {
            RegistryError::api(
                ErrorCode::Unsupported,
                format!("cannot read the query string: {e}"),
            )
        })
}

fn set_link(response: &mut Response, next: &str) {
    if let Ok(value) = HeaderValue::from_str(&format!("<{next}>; rel=\"next\"")) {
        response.headers_mut().insert(LINK, value);
    }
}

/// Every `/v2/<name>/...` request.
async fn dispatch(
    State(registry): State<Registry>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let path = uri.path().strip_prefix("/v2/").unwrap_or_default();
    let split = split_target(path);
    let action = if matches!(method, Method::GET | Method::HEAD) {
        "pull"
    } else {
        "pull,push"
    };
    let scope = split
        .as_ref()
        .map(|(name, _)| format!("repository:{name}:{action}"));
    let challenge = Challenge::new(&registry, &headers, scope);
    let result = async {
        let caller = authenticate(&registry, &headers).await?;
        let Some((name, target)) = split else {
            return Err(RegistryError::api(
                ErrorCode::Unsupported,
                format!(
                    "{} is not an endpoint of the OCI distribution API",
                    uri.path()
                ),
            ));
        };
        let repo = RepoName::parse(name)?;
        registry.authorize(&caller, &repo)?;
        let params = query(&uri)?;
        let r = Request {
            registry: &registry,
            caller: &caller,
            repo: &repo,
            headers: &headers,
            params: &params,
        };
        let mut body = body;
        match (&method, target) {
            (&Method::GET, Target::Tags) => r.tags().await,
            (&Method::GET | &Method::HEAD, Target::Manifest(reference)) => {
                r.get_manifest(reference, method == Method::HEAD).await
            }
            (&Method::PUT, Target::Manifest(reference)) => r.put_manifest(reference, body).await,
            (&Method::DELETE, Target::Manifest(reference)) => r.delete_manifest(reference).await,
            (&Method::GET | &Method::HEAD, Target::Blob(digest)) => {
                r.get_blob(digest, method == Method::HEAD).await
            }
            (&Method::DELETE, Target::Blob(digest)) => r.delete_blob(digest).await,
            (&Method::POST, Target::Uploads) => r.start_upload(&mut body).await,
            (&Method::PATCH, Target::Upload(id)) => r.patch_upload(id, &mut body).await,
            (&Method::PUT, Target::Upload(id)) => r.put_upload(id, &mut body).await,
            (&Method::GET, Target::Upload(id)) => r.upload_status(id).await,
            (&Method::DELETE, Target::Upload(id)) => r.cancel_upload(id).await,
            _ => Err(RegistryError::api(
                ErrorCode::Unsupported,
                format!("{method} is not supported on {}", uri.path()),
            )),
        }
    }
    .await;
    result.unwrap_or_else(|e| error_response(e, &challenge))
}

/// One authenticated, authorized repository request.
struct Request<'a> {
    registry: &'a Registry,
    caller: &'a Caller,
    repo: &'a RepoName,
    headers: &'a HeaderMap,
    params: &'a Params,
}

impl Request<'_> {
    fn digest_param(&self) -> Result<Digest> {
        let digest = self.params.digest.as_deref().ok_or_else(|| {
            RegistryError::api(
                ErrorCode::DigestInvalid,
                "the `digest` query parameter is required to complete an upload",
            )
        })?;
        Ok(Digest::parse(digest)?)
    }

    fn content_range(&self) -> Result<Option<(u64, u64)>> {
        let Some(value) = self.headers.get(CONTENT_RANGE) else {
            return Ok(None);
        };
        let invalid = || {
            RegistryError::api(
                ErrorCode::BlobUploadInvalid,
                "Content-Range must be `<start>-<end>` (inclusive byte offsets)",
            )
        };
        let text = value.to_str().map_err(|_| invalid())?.trim();
        let text = text
            .strip_prefix("bytes ")
            .or_else(|| text.strip_prefix("bytes="))
            .unwrap_or(text);
        let text = text.split('/').next().unwrap_or_default();
        let (start, end) = text.split_once('-').ok_or_else(invalid)?;
        let start = start.trim().parse().map_err(|_| invalid())?;
        let end = end.trim().parse().map_err(|_| invalid())?;
        if end < start {
            return Err(invalid());
        }
        Ok(Some((start, end)))
    }

    fn upload_location(&self, id: &str) -> String {
        format!("/v2/{}/blobs/uploads/{id}", self.repo)
    }

    fn upload_response(&self, status: StatusCode, id: &str, offset: u64) -> Result<Response> {
        let range = format!("0-{}", offset.saturating_sub(1));
        Ok((
            status,
            [
                (LOCATION, self.upload_location(id)),
                (RANGE, range),
                (
                    http::HeaderName::from_static(UPLOAD_UUID_HEADER),
                    id.to_string(),
                ),
                (CONTENT_LENGTH, "0".to_string()),
            ],
        )
            .into_response())
    }

    fn blob_created(&self, digest: &Digest) -> Result<Response> {
        Ok((
            StatusCode::CREATED,
            [
                (LOCATION, format!("/v2/{}/blobs/{digest}", self.repo)),
                (
                    http::HeaderName::from_static(DIGEST_HEADER),
                    digest.to_string(),
                ),
                (CONTENT_LENGTH, "0".to_string()),
            ],
        )
            .into_response())
    }

    async fn tags(&self) -> Result<Response> {
        let page = self.params.page()?;
        match self.registry.tags(self.caller, self.repo, &page).await? {
            Listing::Local(listed) => {
                let mut response = axum::Json(serde_json::json!({
                    "name": self.repo.as_str(),
                    "tags": listed.items,
                }))
                .into_response();
                if let (Some(after), Some(n)) = (listed.next_after, page.n) {
                    set_link(
                        &mut response,
                        &format!("/v2/{}/tags/list?n={n}&last={after}", self.repo),
                    );
                }
                Ok(response)
            }
            Listing::Forwarded(forwarded) => {
                let mut response =
                    ([(CONTENT_TYPE, "application/json")], forwarded.body).into_response();
                if let Some(link) = forwarded.link.and_then(|l| HeaderValue::from_str(&l).ok()) {
                    response.headers_mut().insert(LINK, link);
                }
                Ok(response)
            }
        }
    }

    async fn get_manifest(&self, reference: &str, head: bool) -> Result<Response> {
        let reference = ManifestRef::parse(reference)?;
        let (digest, manifest) = self
            .registry
            .get_manifest(self.caller, self.repo, &reference)
            .await?;
        let len = manifest.bytes.len();
        let body = if head {
            Body::empty()
        } else {
            Body::from(manifest.bytes)
        };
        Ok((
            [
                (CONTENT_TYPE, manifest.media_type),
                (CONTENT_LENGTH, len.to_string()),
                (
                    http::HeaderName::from_static(DIGEST_HEADER),
                    digest.to_string(),
                ),
            ],
            body,
        )
            .into_response())
    }

    async fn put_manifest(&self, reference: &str, body: Body) -> Result<Response> {
        let reference = ManifestRef::parse(reference)?;
        let max = self.registry.inner.config.max_manifest_bytes;
        let bytes = read_limited(body, self.headers, max).await?;
        let content_type = self.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let digest = self
            .registry
            .put_manifest(self.caller, self.repo, &reference, content_type, &bytes)
            .await?;
        Ok((
            StatusCode::CREATED,
            [
                (LOCATION, format!("/v2/{}/manifests/{digest}", self.repo)),
                (
                    http::HeaderName::from_static(DIGEST_HEADER),
                    digest.to_string(),
                ),
                (CONTENT_LENGTH, "0".to_string()),
            ],
        )
            .into_response())
    }

    async fn delete_manifest(&self, reference: &str) -> Result<Response> {
        let reference = ManifestRef::parse(reference)?;
        self.registry
            .delete_manifest(self.caller, self.repo, &reference)
            .await?;
        Ok(StatusCode::ACCEPTED.into_response())
    }

    async fn get_blob(&self, digest: &str, head: bool) -> Result<Response> {
        let digest = Digest::parse(digest)?;
        let digest_header = (
            http::HeaderName::from_static(DIGEST_HEADER),
            digest.to_string(),
        );
        if head {
            let size = self
                .registry
                .blob_size(self.caller, self.repo, &digest)
                .await?;
            return Ok((
                [
                    (CONTENT_TYPE, "application/octet-stream".to_string()),
                    (CONTENT_LENGTH, size.to_string()),
                    (ACCEPT_RANGES, "bytes".to_string()),
                    digest_header,
                ],
                Body::empty(),
            )
                .into_response());
        }
        let (mut file, size) = self
            .registry
            .open_blob(self.caller, self.repo, &digest)
            .await?;
        let (status, start, len) = match requested_range(self.headers, size) {
            ByteRange::Whole => (StatusCode::OK, 0, size),
            ByteRange::Part(start, end) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
            ByteRange::Unsatisfiable => {
                return Ok((
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [
                        (CONTENT_RANGE, format!("bytes */{size}")),
                        (CONTENT_TYPE, "application/json".to_string()),
                    ],
                    error_body(
                        ErrorCode::SizeInvalid.as_str(),
                        &format!("the requested range is outside the blob ({size} bytes)"),
                    ),
                )
                    .into_response());
            }
        };
        if start > 0 {
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|e| RegistryError::io("seek in", digest.to_string(), e))?;
        }
        let mut response = (
            status,
            [
                (CONTENT_TYPE, "application/octet-stream".to_string()),
                (CONTENT_LENGTH, len.to_string()),
                (ACCEPT_RANGES, "bytes".to_string()),
                digest_header,
            ],
            Body::new(FileBody::new(file, len)),
        )
            .into_response();
        if status == StatusCode::PARTIAL_CONTENT
            && let Ok(value) =
                HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
        {
            response.headers_mut().insert(CONTENT_RANGE, value);
        }
        Ok(response)
    }

    async fn delete_blob(&self, digest: &str) -> Result<Response> {
        let digest = Digest::parse(digest)?;
        self.registry
            .delete_blob(self.caller, self.repo, &digest)
            .await?;
        Ok(StatusCode::ACCEPTED.into_response())
    }

    /// `POST .../blobs/uploads/`: a mount (`?mount=&from=`), a monolithic upload (`?digest=`),
    /// or a new session.
    async fn start_upload(&self, body: &mut Body) -> Result<Response> {
        if let (Some(mount), Some(from)) = (&self.params.mount, &self.params.from) {
            let digest = Digest::parse(mount)?;
            let from = RepoName::parse(from)?;
            if self
                .registry
                .mount_blob(self.caller, self.repo, &digest, &from)
                .await?
            {
                return self.blob_created(&digest);
            }
        } else if self.params.digest.is_some() {
            let digest = self.digest_param()?;
            self.registry
                .put_blob(self.caller, self.repo, &digest, body)
                .await?;
            return self.blob_created(&digest);
        }
        let upload = self.registry.start_upload(self.repo).await?;
        self.upload_response(StatusCode::ACCEPTED, &upload.id, 0)
    }

    async fn patch_upload(&self, id: &str, body: &mut Body) -> Result<Response> {
        let range = self.content_range()?;
        let mut upload = self.registry.open_upload(self.repo, id).await?;
        let offset = self
            .registry
            .append_upload(&mut upload, range, body)
            .await?;
        self.upload_response(StatusCode::ACCEPTED, id, offset)
    }

    async fn put_upload(&self, id: &str, body: &mut Body) -> Result<Response> {
        let digest = self.digest_param()?;
        let range = self.content_range()?;
        let upload = self.registry.open_upload(self.repo, id).await?;
        self.registry
            .complete_upload(self.caller, self.repo, upload, range, body, &digest)
            .await?;
        self.blob_created(&digest)
    }

    async fn upload_status(&self, id: &str) -> Result<Response> {
        let upload = self.registry.open_upload(self.repo, id).await?;
        let offset = upload.offset().await?;
        self.upload_response(StatusCode::NO_CONTENT, id, offset)
    }

    async fn cancel_upload(&self, id: &str) -> Result<Response> {
        let upload = self.registry.open_upload(self.repo, id).await?;
        self.registry.cancel_upload(upload).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
}

/// Reads a manifest body, refusing more than `max` bytes without reading them all.
async fn read_limited(mut body: Body, headers: &HeaderMap, max: usize) -> Result<Vec<u8>> {
    let too_large = |len: String| {
        RegistryError::api(
            ErrorCode::ManifestTooLarge,
            format!(
                "the manifest is {len} bytes; this registry accepts manifests of at most {max} bytes"
            ),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared
        && len > max as u64
    {
        return Err(too_large(len.to_string()));
    }
    let mut bytes = Vec::new();
    loop {
        match body.next_chunk().await {
            Ok(Some(chunk)) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > max {
                    return Err(too_large(format!("more than {max}")));
                }
            }
            Ok(None) => return Ok(bytes),
            Err(e) => {
                return Err(RegistryError::api(
                    ErrorCode::ManifestInvalid,
                    format!("the manifest body broke off ({e}); send it again"),
                ));
            }
        }
    }
}

enum ByteRange {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// The single byte range of a `Range: bytes=...` header; anything else serves the whole blob.
fn requested_range(headers: &HeaderMap, size: u64) -> ByteRange {
    let Some(spec) = headers
        .get(RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((start, end)) = spec.split_once('-') else {
        return ByteRange::Whole;
    };
    let (start, end) = (start.trim(), end.trim());
    let parsed = match (start.is_empty(), end.is_empty()) {
        // `-N`: the last N bytes.
        (true, false) => end
            .parse::<u64>()
            .ok()
            .map(|n| (size.saturating_sub(n), size.saturating_sub(1), n == 0)),
        (false, true) => start
            .parse::<u64>()
            .ok()
            .map(|s| (s, size.saturating_sub(1), false)),
        (false, false) => match (start.parse::<u64>(), end.parse::<u64>()) {
            (Ok(s), Ok(e)) if e >= s => Some((s, e.min(size.saturating_sub(1)), false)),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => ByteRange::Whole,
        Some((start, end, empty_suffix)) => {
            if empty_suffix || size == 0 || start >= size || end < start {
                ByteRange::Unsatisfiable
            } else {
                ByteRange::Part(start, end)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, size: u64) -> ByteRange {
        let mut headers = HeaderMap::new();
        headers.insert(RANGE, value.parse().expect("header"));
        requested_range(&headers, size)
    }

    #[test]
    fn byte_ranges() {
        assert!(matches!(range("bytes=0-9", 100), ByteRange::Part(0, 9)));
        assert!(matches!(range("bytes=90-", 100), ByteRange::Part(90, 99)));
        assert!(matches!(range("bytes=-10", 100), ByteRange::Part(90, 99)));
        assert!(matches!(range("bytes=-1000", 100), ByteRange::Part(0, 99)));
        assert!(matches!(
            range("bytes=50-1000", 100),
            ByteRange::Part(50, 99)
        ));
        assert!(matches!(range("bytes=100-", 100), ByteRange::Unsatisfiable));
        assert!(matches!(range("bytes=-0", 100), ByteRange::Unsatisfiable));
        assert!(matches!(range("bytes=0-1,5-6", 100), ByteRange::Whole));
        assert!(matches!(range("items=0-1", 100), ByteRange::Whole));
        assert!(matches!(range("bytes=9-1", 100), ByteRange::Whole));
    }

    #[test]
    fn targets_are_split_from_the_end() {
        let cases = [
            ("acme/app/tags/list", "acme/app", "tags"),
            ("acme/app/manifests/v1", "acme/app", "manifest v1"),
            ("acme/app/blobs/uploads/", "acme/app", "uploads"),
            ("acme/app/blobs/uploads", "acme/app", "uploads"),
            ("acme/app/blobs/uploads/abc", "acme/app", "upload abc"),
            ("acme/blobs/blobs/sha256:x", "acme/blobs", "blob sha256:x"),
            (
                "acme/blobs/uploads/blobs/sha256:x",
                "acme/blobs/uploads",
                "blob sha256:x",
            ),
            (
                "acme/manifests/manifests/v1",
                "acme/manifests",
                "manifest v1",
            ),
        ];
        for (path, name, what) in cases {
            let (got_name, target) = split_target(path).expect(path);
            let got_what = match target {
                Target::Tags => "tags".to_string(),
                Target::Manifest(r) => format!("manifest {r}"),
                Target::Uploads => "uploads".to_string(),
                Target::Upload(id) => format!("upload {id}"),
                Target::Blob(d) => format!("blob {d}"),
            };
            assert_eq!((got_name, got_what.as_str()), (name, what), "{path}");
        }
        assert!(split_target("acme/app/other/x").is_none());
        assert!(split_target("app").is_none());
    }
}
