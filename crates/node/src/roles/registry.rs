//! The registry role: `aloft server registry` (a registry on its own: a region's pull-through
//! cache, or a registry host apart from the control plane), and the registry the control plane's
//! process serves beside it (`aloft dev up`, `aloft server control` with `[registry]`).
//!
//! API tokens (org-wide, or deploy tokens for one app's repositories) are checked by the control
//! plane on every request: in-process in `dev up` ([`ControlPlaneTokens`]), over its internal API
//! (`POST /internal/v1/tokens/verify`) everywhere else ([`RemoteTokens`]).
//! A region's cache asks with the credential of the host it runs on (`--host-credential-file`,
//! read once the host has joined), so it needs no cluster secret; a registry apart from hosts
//! may ask with the cluster's internal token instead (`--internal-token-file`).
//! Garbage collection runs inside the registry process (`POST /internal/v1/registry/gc`, behind
//! the same secret it checks tokens with), so it takes the same lock as pushes.

use crate::NodeCtx;
use crate::files::read_secret;
use crate::supervisor::Supervisor;
use aloft_control::ControlPlane;
use aloft_registry::{GcReport, Registry, RegistryConfig, TokenAuthority, TokenGrant, Upstream};
use aloft_types::api::{VerifyTokenRequest, VerifyTokenResponse};
use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// API tokens checked by a control plane in this process.
pub(crate) struct ControlPlaneTokens(pub ControlPlane);

#[async_trait::async_trait]
impl TokenAuthority for ControlPlaneTokens {
    async fn grant_of_token(&self, token: &str) -> Option<TokenGrant> {
        let v = self.0.verify_token(token).await?;
        Some(TokenGrant {
            org: v.org,
            app: v.app,
        })
    }
}

/// What a registry checks tokens with (and opens its GC endpoint with).
pub(crate) enum Secret {
    /// The cluster's internal token.
    Fixed(String),
    /// The credential in a host's `host-credential.json`, read once it exists.
    HostFile(PathBuf, std::sync::OnceLock<String>),
}

impl Secret {
    /// The secret, or `None` while the host has not joined.
    fn get(&self) -> Option<&str> {
        match self {
            Secret::Fixed(s) => Some(s),
            Secret::HostFile(path, cell) => {
                if let Some(s) = cell.get() {
                    return Some(s);
                }
                let text = std::fs::read_to_string(path).ok()?;
                let joined: aloft_types::join::HostJoined = serde_json::from_str(&text).ok()?;
                Some(cell.get_or_init(|| joined.credential))
            }
        }
    }
}

/// API tokens checked by a remote control plane over its internal API.
struct RemoteTokens {
    verify_url: String,
    secret: Arc<Secret>,
    http: reqwest::Client,
}

#[async_trait::async_trait]
impl TokenAuthority for RemoteTokens {
    async fn grant_of_token(&self, token: &str) -> Option<TokenGrant> {
        let Some(secret) = self.secret.get() else {
            tracing::warn!(
                "the host has not joined yet (no host-credential.json): no token can be checked"
            );
            return None;
        };
        let resp = self
            .http
            .post(&self.verify_url)
            .bearer_auth(secret)
            .json(&VerifyTokenRequest {
                token: token.to_string(),
            })
            .send()
            .await;
        match resp {
            Ok(r) if r.status().is_success() => {
                r.json::<VerifyTokenResponse>()
                    .await
                    .ok()
                    .map(|v| TokenGrant {
                        org: v.org,
                        app: v.app,
                    })
            }
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => None,
            Ok(r) => {
                tracing::warn!(status = %r.status(), url = %self.verify_url, "the control plane refused a token check; check --host-credential-file (or --internal-token-file)");
                None
            }
            Err(e) => {
                tracing::warn!(url = %self.verify_url, "cannot reach the control plane to check a token: {e}");
                None
            }
        }
    }
}

/// The registry's routes plus its admin endpoint (`POST /internal/v1/registry/gc?dry_run=`),
/// which needs `secret` (the cluster's internal token, or a cache's host credential).
pub(crate) fn router(registry: Registry, secret: Arc<Secret>) -> Router {
    let admin = Router::new()
        .route("/internal/v1/registry/gc", post(gc_endpoint))
        .with_state((registry.clone(), secret));
    registry.router().merge(admin)
}

#[derive(Debug, serde::Deserialize)]
struct GcQuery {
    #[serde(default)]
    dry_run: bool,
}

async fn gc_endpoint(
    State((registry, secret)): State<(Registry, Arc<Secret>)>,
    headers: HeaderMap,
    Query(q): Query<GcQuery>,
) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let allowed = match (presented, secret.get()) {
        (Some(given), Some(expected)) => aloft_http::tokens_equal(given, expected),
        _ => false,
    };
    if !allowed {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"error": "registry GC needs the cluster's internal token (the `internal-token` file of `aloft dev up`)"})),
        )
            .into_response();
    }
    match registry.gc(q.dry_run).await {
        Ok(report) => axum::Json(report_json(&report)).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(serde_json::json!({"error": format!("garbage collection failed: {e}")})),
        )
            .into_response(),
    }
}

fn report_json(r: &GcReport) -> serde_json::Value {
    serde_json::json!({
        "dry_run": r.dry_run,
        "manifests": r.manifests,
        "blobs_referenced": r.blobs_referenced,
        "blobs_young": r.blobs_young,
        "blobs_deleted": r.blobs_deleted,
        "bytes_deleted": r.bytes_deleted,
        "links_removed": r.links_removed,
    })
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the registry listens (`127.0.0.1:0` picks a free port; the URL is printed).
    #[arg(long, default_value = "127.0.0.1:5000")]
    addr: SocketAddr,
    /// Where blobs, manifests and uploads are kept.
    #[arg(long, value_name = "DIR")]
    storage: PathBuf,
    /// Serve as a regional cache of this registry: pulls are fetched from it once, pushes go
    /// through to it.
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// The control plane that checks org tokens [default: $ALOFT_API_URL, else
    /// http://127.0.0.1:4280].
    #[arg(long, value_name = "URL")]
    control_plane: Option<String>,
    /// A file holding the cluster's internal token [default: <dev data dir>/internal-token].
    #[arg(long, value_name = "FILE", conflicts_with = "host_credential_file")]
    internal_token_file: Option<PathBuf>,
    /// Check tokens as the host this cache runs on: its `<data_dir>/host-credential.json`
    /// (read once the host has joined), instead of the cluster's internal token.
    #[arg(long, value_name = "FILE")]
    host_credential_file: Option<PathBuf>,
}

/// `aloft server registry`: serves until SIGTERM or SIGINT.
pub async fn serve(args: ServeArgs, ctx: &NodeCtx) -> Result<ExitCode> {
    let mut supervisor = Supervisor::install()?;
    let data_dir = ctx.data_dir()?;
    let secret = Arc::new(match args.host_credential_file {
        Some(file) => Secret::HostFile(file, std::sync::OnceLock::new()),
        None => {
            let token_file = args
                .internal_token_file
                .unwrap_or_else(|| data_dir.join("internal-token"));
            Secret::Fixed(read_secret(&token_file)?)
        }
    });
    let control_plane = args.control_plane.unwrap_or_else(|| ctx.api_url.clone());
    let tokens = RemoteTokens {
        verify_url: format!(
            "{}/internal/v1/tokens/verify",
            control_plane.trim_end_matches('/')
        ),
        secret: secret.clone(),
        http: reqwest::Client::new(),
    };
    let mut config = RegistryConfig::new(&args.storage);
    config.upstream = args.upstream.as_deref().map(Upstream::new);
    let registry = Registry::open(config, Arc::new(tokens))
        .await
        .with_context(|| format!("opening the registry storage {}", args.storage.display()))?;
    supervisor.task(registry.spawn_janitor());
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is another registry running there? stop it or pass --addr",
                args.addr
            )
        })?;
    let url = format!("http://{}", listener.local_addr()?);
    let mut banner = format!("aloft registry listening on {url}\n");
    match &args.upstream {
        Some(up) => banner.push_str(&format!("  a pull-through, write-through cache of {up}\n")),
        None => banner.push_str(&format!("  storage {}\n", args.storage.display())),
    }
    banner.push_str(&format!(
        "  org tokens checked by the control plane at {control_plane}\n"
    ));
    // One write, and a closed stdout is not an error: whoever started the server may read
    // the first line only and go away (`println!` would panic on the broken pipe).
    use std::io::Write;
    let mut stdout = std::io::stdout();
    let _ = stdout
        .write_all(banner.as_bytes())
        .and_then(|()| stdout.flush());
    supervisor.serve("registry", listener, router(registry, secret));
    let which = supervisor.wait().await;
    tracing::info!("{which} received: stopping");
    supervisor.shutdown(async {}).await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aloft_control::ControlPlaneConfig;
    use serde_json::{Value, json};

    /// Both authorities pass the control plane's verdict on: the org, a deploy token's app (which
    /// the registry limits it to), and nothing for a revoked token, on the next check.
    #[tokio::test]
    async fn authorities_carry_deploy_scopes_and_revocation() {
        let dir = tempfile::tempdir().unwrap();
        let cp = ControlPlane::open(ControlPlaneConfig {
            data_dir: dir.path().to_path_buf(),
            internal_token: "internal".into(),
            default_region: "local".into(),
            hostnames: aloft_control::HostnamePolicy::allow_any(),
        })
        .await
        .unwrap();
        cp.ensure_org("acme").await.unwrap();
        let org = cp.create_token("acme", "owner").await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = cp.router();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let http = reqwest::Client::new();
        let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
            let mut req = http
                .request(method, format!("{url}{path}"))
                .bearer_auth(&org);
            if let Some(body) = body {
                req = req.json(&body);
            }
            async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
        };
        call(
            reqwest::Method::POST,
            "/v1/apps",
            Some(json!({"app_name": "web"})),
        )
        .await;
        let created = call(
            reqwest::Method::POST,
            "/v1/tokens",
            Some(json!({"scope": "deploy", "app": "web"})),
        )
        .await;
        let deploy = created["token"].as_str().unwrap().to_string();
        let remote = RemoteTokens {
            verify_url: format!("{url}/internal/v1/tokens/verify"),
            secret: Arc::new(Secret::Fixed("internal".into())),
            http: reqwest::Client::new(),
        };
        // A region's cache: as its host, once the host has joined.
        let credential_file = dir.path().join("host-credential.json");
        let as_host = RemoteTokens {
            verify_url: format!("{url}/internal/v1/tokens/verify"),
            secret: Arc::new(Secret::HostFile(
                credential_file.clone(),
                std::sync::OnceLock::new(),
            )),
            http: reqwest::Client::new(),
        };
        assert_eq!(as_host.grant_of_token(&org).await, None, "not joined yet");
        let joined = cp.enroll_host("ord-1").await.unwrap();
        std::fs::write(&credential_file, serde_json::to_string(&joined).unwrap()).unwrap();
        let local = ControlPlaneTokens(cp.clone());
        let authorities: [&dyn TokenAuthority; 3] = [&remote, &as_host, &local];
        for authority in authorities {
            assert_eq!(
                authority.grant_of_token(&org).await,
                Some(TokenGrant::org("acme"))
            );
            assert_eq!(
                authority.grant_of_token(&deploy).await,
                Some(TokenGrant {
                    org: "acme".into(),
                    app: Some("web".into())
                })
            );
        }
        let id = created["id"].as_str().unwrap();
        call(reqwest::Method::DELETE, &format!("/v1/tokens/{id}"), None).await;
        for authority in authorities {
            assert_eq!(authority.grant_of_token(&deploy).await, None);
        }
    }
}
