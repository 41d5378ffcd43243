//! aloft's OCI registry: the distribution API (OCI Distribution Spec v1.1) over HTTP, with one
//! namespace per org, content-addressed storage on disk, and a regional pull-through cache mode.
//!
//! # Use
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use aloft_registry::{Registry, RegistryConfig, StaticTokens, Upstream};
//! use std::sync::Arc;
//!
//! let mut config = RegistryConfig::new("/var/lib/aloft/registry");
//! // A regional cache instead: config.upstream = Some(Upstream::new("http://10.0.0.1:5000"));
//! let tokens = Arc::new(StaticTokens::new([("secret-token", "acme")]));
//! let registry = Registry::open(config, tokens).await?;
//! registry.spawn_janitor(); // removes abandoned uploads
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
//! axum::serve(listener, registry.router()).await?;
//! // Elsewhere, `aloft registry gc`: registry.gc(false).await? -> GcReport
//! # Ok(()) }
//! ```
//!
//! Public API: [`Registry::open`], [`Registry::router`], [`Registry::gc`],
//! [`Registry::cleanup_uploads`], [`Registry::spawn_janitor`]; [`RegistryConfig`], [`Upstream`];
//! the [`TokenAuthority`] trait the control plane implements, with the [`TokenGrant`] it answers
//! (and [`StaticTokens`], a table for tests); [`GcReport`]; [`RegistryError`] and [`ErrorCode`].
//!
//! # The API served
//!
//! `GET /v2/` (ping), `GET /v2/token` (token endpoint), `GET /v2/_catalog`, and under
//! `/v2/<org>/<name>/`: `tags/list` (`n`/`last` paging with a `Link` header), `manifests/<tag or
//! digest>` (GET, HEAD, PUT, DELETE; OCI image manifests and indexes, Docker schema2 manifests and
//! manifest lists, stored and served byte for byte with their media type), `blobs/<digest>` (GET
//! with single `Range`s, HEAD, DELETE = unlink from the repository), and uploads:
//! `POST blobs/uploads/` (a session; `?digest=` for a monolithic upload; `?mount=&from=` for a
//! cross-repository mount), `PATCH`/`PUT`/`GET`/`DELETE blobs/uploads/<id>` (chunks must follow
//! each other: a `Content-Range` that does not start at the current offset is a 416). Errors use
//! the spec's body, `{"errors":[{"code","message"}]}`, and every message says what to do.
//!
//! # Decisions
//!
//! - **Tokens.** Every `/v2` request carries an API token, as Basic auth (any username, the
//!   token as password) or as a Bearer token. A token is org-wide, or a deploy token for one app,
//!   which reaches only the repositories `<org>/<app>` and `<org>/<app>/...` (an app's images are
//!   pushed there by `aloft deploy`); other repositories of its org are `403 DENIED` like another
//!   org's, and the catalog lists only its app's. Without one the answer is 401 with
//!   `WWW-Authenticate: Bearer realm="<base>/v2/token",service="aloft",scope="repository:<name>:<actions>"`.
//!   The token endpoint takes Basic auth and answers `{"token","access_token","expires_in",
//!   "issued_at"}` where the token **is the org token itself**: nothing is kept in memory, so the
//!   registry can restart or run as several replicas without clients noticing, and a revoked or
//!   expired token stops working on the next request (every request asks the [`TokenAuthority`]).
//!   The endpoint only hands back the token the caller already presented, so it grants nothing
//!   new; scopes are not encoded in it, because authorization happens on every request.
//! - **Tenancy.** Repositories are `<org>/<name>[/...]`; the first component is the owning org.
//!   A request for a repository of another org is `403 DENIED` whether or not that repository
//!   exists (so existence never leaks), and so are uploads, mounts (a mount from another org's
//!   repository falls back to a plain upload) and tag lists; `/v2/_catalog` lists only the
//!   caller's repositories. Blobs are stored once for all orgs but are visible in a repository
//!   only when linked there, so a digest learnt elsewhere reads nothing.
//! - **Storage.** `<data_dir>/blobs/sha256/<2 hex>/<hex>` plus per-repository links and tag files
//!   (see `store.rs`). Content is hashed while it streams to a file on the same filesystem, and
//!   only content that matches its digest is fsynced and renamed into `blobs/`: a crash or a wrong
//!   digest never leaves a visible partial blob. Uploads idle for [`RegistryConfig::upload_ttl`]
//!   are removed by [`Registry::cleanup_uploads`] (run by [`Registry::spawn_janitor`]).
//! - **Garbage collection** ([`Registry::gc`]) keeps every blob referenced by any manifest
//!   revision of any repository, tagged or not, including children of indexes; it deletes other
//!   blobs only when older than [`RegistryConfig::gc_grace`], and excludes manifest pushes and
//!   blob links while it runs.
//! - **Cache mode** ([`RegistryConfig::upstream`]). Pulls are served from the local store; what
//!   is missing is fetched from the upstream once (concurrent requests for the same blob digest
//!   share one download), verified against its digest, stored and linked. Tags are revalidated
//!   against the upstream on every manifest GET/HEAD, falling back to the local copy when the
//!   upstream is unreachable; digests are served locally when present. HEAD of a missing blob asks
//!   the upstream without downloading. Pushes are write-through: a blob or manifest is pushed to
//!   the upstream first and becomes visible locally only when the upstream took it (if it
//!   refuses, the push fails); checking that a manifest's blobs exist is left to the upstream.
//!   Deletes go to the upstream first. Tag lists come from the upstream (local when unreachable);
//!   the catalog lists what this cache holds. The upstream is retried with backoff
//!   ([`Upstream::attempts`]), then the answer is `503 UNAVAILABLE` naming it. The caller's own
//!   org token is forwarded to the upstream unless [`Upstream::token`] is set, so the upstream
//!   enforces tenancy too and the cache holds no credential of its own.
//!
//! Not supported: digests other than sha256, the referrers API, Docker schema1 manifests, and
//! https upstreams (this build has no TLS client).

mod auth;
mod body;
mod config;
mod error;
mod gc;
mod http;
mod service;
mod store;
mod upload;
mod upstream;

pub use auth::{StaticTokens, TokenAuthority, TokenGrant};
pub use config::{RegistryConfig, Upstream};
pub use error::{ErrorCode, RegistryError};
pub use gc::GcReport;

use std::sync::Arc;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A registry over one data dir. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    config: RegistryConfig,
    authority: Arc<dyn TokenAuthority>,
    store: store::Store,
    uploads: upload::Uploads,
    upstream: Option<upstream::UpstreamClient>,
    /// Upstream fetches in progress (one per blob or manifest), shared by concurrent pulls.
    flights: aloft_oci::flight::Flights<(), Arc<RegistryError>>,
    /// Held for reading while manifests are stored and blobs linked, for writing by GC.
    gc_lock: tokio::sync::RwLock<()>,
}

impl Registry {
    /// Opens (creating if needed) the registry stored under `config.data_dir`. Half-written
    /// files left by a crash are removed; upload sessions survive.
    pub async fn open(
        config: RegistryConfig,
        authority: Arc<dyn TokenAuthority>,
    ) -> Result<Registry, RegistryError> {
        config.validate()?;
        let upstream = config
            .upstream
            .as_ref()
            .map(upstream::UpstreamClient::new)
            .transpose()?;
        let store = store::Store::open(&config.data_dir).await?;
        let uploads = upload::Uploads::new(store.uploads_dir());
        Ok(Registry {
            inner: Arc::new(Inner {
                config,
                authority,
                store,
                uploads,
                upstream,
                flights: aloft_oci::flight::Flights::default(),
                gc_lock: tokio::sync::RwLock::new(()),
            }),
        })
    }

    /// The HTTP API (`/v2/...`), ready to serve.
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// Removes uploads idle for longer than [`RegistryConfig::upload_ttl`] and stale temporary
    /// files. Returns how many uploads were removed.
    pub async fn cleanup_uploads(&self) -> Result<usize, RegistryError> {
        let ttl = self.inner.config.upload_ttl;
        self.inner.store.cleanup_tmp(ttl).await?;
        self.inner.uploads.cleanup(ttl).await
    }

    /// Runs [`Registry::cleanup_uploads`] periodically (a quarter of the upload TTL, between 1 s
    /// and 5 min) until the returned task is aborted.
    pub fn spawn_janitor(&self) -> tokio::task::JoinHandle<()> {
        let registry = self.clone();
        let every = (registry.inner.config.upload_ttl / 4)
            .clamp(Duration::from_secs(1), Duration::from_secs(300));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(e) = registry.cleanup_uploads().await {
                    tracing::warn!(error = %e, "upload cleanup failed; will retry");
                }
            }
        })
    }
}

/// 32 random hex characters (upload ids, temporary file names).
pub(crate) fn random_id() -> Result<String, RegistryError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| {
        RegistryError::api(
            ErrorCode::Internal,
            format!("the system random number generator failed ({e}); retry"),
        )
    })?;
    Ok(hex::encode(bytes))
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
