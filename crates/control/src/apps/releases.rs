//! An app's releases: one per deploy, numbered per app, ended once.

use crate::ControlPlane;
use crate::store::{Caller, ReleaseRecord};
use aloft_types::ApiError;
use aloft_types::api::{
    CreateReleaseRequest, DeployedConfig, Release, ReleaseStatus, UpdateReleaseRequest,
};
use aloft_types::time::{now_ms, rfc3339};

/// The largest config file a release keeps (fly.toml files are a few KiB).
const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// The strategies a release may name (`[deploy] strategy`).
const RELEASE_STRATEGIES: &[&str] = &["rolling", "immediate", "canary", "bluegreen"];

fn release_json(r: ReleaseRecord) -> Release {
    Release {
        version: r.version,
        app: r.app,
        image: r.image,
        strategy: r.strategy,
        // Only this code writes the column.
        status: ReleaseStatus::parse(&r.status).unwrap_or(ReleaseStatus::Failed),
        description: r.description,
        reason: r.reason,
        created_at: rfc3339(r.created_at),
        updated_at: rfc3339(r.updated_at),
    }
}

impl ControlPlane {
    /// `POST /v1/apps/{app}/releases`.
    pub(crate) async fn create_release(
        &self,
        caller: &Caller,
        app: &str,
        body: &[u8],
    ) -> Result<Release, ApiError> {
        let app = self.app_of(caller, app).await?;
        let req: CreateReleaseRequest = ApiError::parse_json(body)?;
        if req.image.trim().is_empty() {
            return Err(ApiError::invalid(
                "image",
                "image is empty: name the image the release runs, e.g. \"registry.localhost/hello:v2\"",
            ));
        }
        if !RELEASE_STRATEGIES.contains(&req.strategy.as_str()) {
            return Err(ApiError::invalid(
                "strategy",
                format!(
                    "strategy `{}` is not one of {}",
                    req.strategy,
                    RELEASE_STRATEGIES.join(", ")
                ),
            ));
        }
        if req
            .config
            .as_ref()
            .is_some_and(|c| c.len() > MAX_CONFIG_BYTES)
        {
            return Err(ApiError::invalid(
                "config",
                format!(
                    "config is larger than {} KiB: a release keeps the app's config file, not other data",
                    MAX_CONFIG_BYTES / 1024
                ),
            ));
        }
        let now = now_ms();
        let record = self
            .inner
            .store
            .insert_release(ReleaseRecord {
                app: app.name,
                version: 0,
                image: req.image,
                strategy: req.strategy,
                status: ReleaseStatus::Running.as_str().into(),
                description: req.description,
                reason: None,
                config: req.config,
                created_at: now,
                updated_at: now,
            })
            .await?;
        Ok(release_json(record))
    }

    /// `GET /v1/apps/{app}/releases`.
    pub(crate) async fn list_releases(
        &self,
        caller: &Caller,
        app: &str,
    ) -> Result<Vec<Release>, ApiError> {
        let app = self.app_of(caller, app).await?;
        Ok(self
            .inner
            .store
            .releases(&app.name)
            .await?
            .into_iter()
            .map(release_json)
            .collect())
    }

    /// `GET /v1/apps/{app}/config`: the config file of the newest complete release.
    pub(crate) async fn deployed_config(
        &self,
        caller: &Caller,
        app: &str,
    ) -> Result<DeployedConfig, ApiError> {
        let app = self.app_of(caller, app).await?;
        let (version, config, created_at) = self
            .inner
            .store
            .deployed_config(&app.name)
            .await?
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "app {} has no deployed config: no deploy with `aloft deploy` has completed yet",
                    app.name
                ))
            })?;
        Ok(DeployedConfig {
            version,
            config,
            created_at: rfc3339(created_at),
        })
    }

    /// `PATCH /v1/apps/{app}/releases/{version}`: a running release ends (once).
    pub(crate) async fn finish_release(
        &self,
        caller: &Caller,
        app: &str,
        version: u32,
        body: &[u8],
    ) -> Result<Release, ApiError> {
        let app = self.app_of(caller, app).await?;
        let req: UpdateReleaseRequest = ApiError::parse_json(body)?;
        if req.status == ReleaseStatus::Running {
            return Err(ApiError::invalid(
                "status",
                "a release cannot become running again: give complete, failed, rolled_back or interrupted",
            ));
        }
        let running = ReleaseStatus::Running.as_str();
        let record = self
            .inner
            .store
            .finish_release(
                &app.name,
                version,
                running,
                req.status.as_str(),
                req.reason,
                now_ms(),
            )
            .await?
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "app {} has no release v{version}: `aloft releases -a {}` lists them",
                    app.name, app.name
                ))
            })?;
        if record.status != req.status.as_str() {
            return Err(ApiError::Conflict(format!(
                "release v{version} of {} is {} already; only a running release's status changes",
                app.name, record.status
            )));
        }
        Ok(release_json(record))
    }
}
