//! The app layer between the HTTP handlers and the store/agents for apps: who calls
//! (authentication), the org rule (an app of another org, or of another app's deploy token, is
//! "not found", exactly like a missing one, everywhere but `GET /v1/apps/{name}`, which answers
//! the reference's 403 `unauthorized` for a name that is taken), and the apps themselves. Child modules hold what
//! belongs to one app: its secrets, its releases and the hostnames it is served at.

pub(crate) mod certificates;
mod releases;
mod secrets;

use crate::ControlPlane;
use crate::auth;
use crate::error::internal;
use crate::forward::caller_headers;
use crate::machines::host_gone;
use crate::store::{AppRecord, Caller, MachineRecord};
use aloft_agent_api::AgentClient;
use aloft_types::api::{App, AppList, OrgRef};
use aloft_types::time::{now_ms, rfc3339};
use aloft_types::{ApiError, ErrorBody};
use axum::http::StatusCode;
use tokio::task::JoinSet;

/// The error text of `GET /v1/apps/{name}` for a name no app has (the reference's, exactly).
pub(crate) const APP_NOT_FOUND: &str = "app not found";
/// The error text of `GET /v1/apps/{name}` for an app the caller may not see (the reference's).
pub(crate) const APP_UNAUTHORIZED: &str = "unauthorized";

/// Whether the caller may see the app: its org's, and reached by its token.
fn sees(caller: &Caller, app: &AppRecord) -> bool {
    app.org_slug == caller.org.slug && caller.reaches(&app.id)
}

impl ControlPlane {
    /// The caller behind an `Authorization` header value.
    pub(crate) async fn authenticate(&self, header: Option<&str>) -> Result<Caller, ApiError> {
        self.caller_of_token(auth::bearer(header)?).await
    }

    /// Checks the cluster-internal token (agents and operators).
    pub(crate) fn authenticate_internal(&self, header: Option<&str>) -> Result<(), ApiError> {
        let token = auth::bearer(header)?;
        if aloft_http::tokens_equal(token, &self.inner.config.internal_token) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized(
                "this endpoint needs the cluster's internal token (the one agents are started with)"
                    .into(),
            ))
        }
    }

    /// The caller's app, or 404 exactly as if it did not exist when it belongs to another org
    /// or the caller's token is a deploy token of another app.
    pub(crate) async fn app_of(&self, caller: &Caller, name: &str) -> Result<AppRecord, ApiError> {
        match self.inner.store.app(name).await? {
            Some(app) if sees(caller, &app) => Ok(app),
            _ => Err(ApiError::NotFound(format!(
                "app `{name}` not found; list your apps with `aloft apps list` or GET /v1/apps"
            ))),
        }
    }

    /// `org_slug` as the caller named it: only its own org (another org is 404, as if missing);
    /// empty is the same as absent.
    fn own_org(&self, caller: &Caller, org_slug: Option<&str>) -> Result<(), ApiError> {
        match org_slug {
            Some(slug) if !slug.is_empty() && slug != caller.org.slug => {
                Err(ApiError::NotFound(format!(
                    "org `{slug}` not found; your token belongs to the org `{}`",
                    caller.org.slug
                )))
            }
            _ => Ok(()),
        }
    }

    fn app_json(&self, app: AppRecord) -> App {
        App {
            id: app.id,
            organization: OrgRef {
                name: app.org_slug.clone(),
                slug: app.org_slug,
            },
            status: if app.machine_count > 0 {
                "deployed"
            } else {
                "pending"
            }
            .into(),
            machine_count: app.machine_count,
            network: "default".into(),
            created_at: rfc3339(app.created_at),
            name: app.name,
        }
    }

    pub(crate) async fn list_apps(
        &self,
        caller: &Caller,
        org_slug: Option<&str>,
    ) -> Result<AppList, ApiError> {
        self.own_org(caller, org_slug)?;
        let apps: Vec<App> = self
            .inner
            .store
            .apps_of_org(&caller.org.slug)
            .await?
            .into_iter()
            .filter(|a| caller.reaches(&a.id))
            .map(|a| self.app_json(a))
            .collect();
        Ok(AppList {
            total_apps: u32::try_from(apps.len()).unwrap_or(u32::MAX),
            apps,
        })
    }

    pub(crate) async fn create_app(&self, caller: &Caller, body: &[u8]) -> Result<App, ApiError> {
        caller.require_org_wide("create apps")?;
        let req: aloft_types::api::CreateAppRequest = ApiError::parse_json(body)?;
        if !auth::is_dns_label(&req.app_name) {
            return Err(ApiError::invalid(
                "app_name",
                format!(
                    "app_name `{}` is not allowed: use 1-63 lowercase letters, digits and hyphens, \
                     not starting or ending with a hyphen (e.g. \"my-app\")",
                    req.app_name
                ),
            ));
        }
        self.own_org(caller, req.org_slug.as_deref())?;
        let app = AppRecord {
            id: aloft_types::ids::random_hex(8),
            name: req.app_name.clone(),
            org_slug: caller.org.slug.clone(),
            created_at: now_ms(),
            machine_count: 0,
        };
        if !self.inner.store.insert_app(app.clone()).await? {
            return Err(ApiError::NameTaken(format!(
                "an app named `{}` already exists (app names are global); pick another name",
                req.app_name
            )));
        }
        Ok(self.app_json(app))
    }

    /// `GET /v1/apps/{name}`, answered as the reference does, because its clients decide from
    /// the exact text whether a name is free (fly-go's `AppNameAvailable`): no app of that name
    /// anywhere is 404 `app not found`; an app the caller may not see (another org's, or
    /// another app's for a deploy token) is 403 `unauthorized`. App names are global and
    /// creating one already says a name is taken, so this tells nothing new; aloft's CLI turns
    /// both into sentences that name the fix.
    pub(crate) async fn get_app(&self, caller: &Caller, name: &str) -> Result<App, ApiError> {
        match self.inner.store.app(name).await? {
            Some(app) if sees(caller, &app) => Ok(self.app_json(app)),
            Some(_) => Err(ApiError::Forbidden(APP_UNAUTHORIZED.into())),
            None => Err(ApiError::NotFound(APP_NOT_FOUND.into())),
        }
    }

    /// Destroys every machine of the app (force) on its host, then the app. When a machine
    /// cannot be destroyed the app is kept and the error says which machine and why.
    pub(crate) async fn delete_app(&self, caller: &Caller, name: &str) -> Result<(), ApiError> {
        let app = self.app_of(caller, name).await?;
        caller.require_org_wide("delete its app")?;
        let live: Vec<MachineRecord> = self
            .inner
            .store
            .machines_of_app(&app.name)
            .await?
            .into_iter()
            .filter(|m| !m.destroyed)
            .collect();
        let mut targets = Vec::with_capacity(live.len());
        for m in live {
            match self.inner.store.host(&m.host_id).await? {
                Some(host) => targets.push((m, host)),
                None => return Err(host_gone(&m)),
            }
        }
        let mut tasks = JoinSet::new();
        for (m, host) in targets {
            let (fwd, caller) = (self.inner.forwarder.clone(), caller_headers(caller));
            let app = app.name.clone();
            tasks.spawn(async move {
                let (app, id) = (&app, &m.id);
                let destroy = move |agent: AgentClient| async move {
                    agent.destroy_machine(&caller, app, id, true).await
                };
                let result = fwd.ask(&host, destroy).await;
                (m.id, result)
            });
        }
        let mut failures = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let (id, result) = done.map_err(|e| {
                internal(
                    "the control plane failed (a request to a host did not finish)",
                    &e,
                )
            })?;
            match result {
                Ok(r) if r.status.is_success() || r.status == StatusCode::NOT_FOUND => {
                    self.inner.store.mark_destroyed(&id).await?;
                }
                Ok(r) => failures.push((id, r.error())),
                Err(e) => failures.push((id, ApiError::from(e))),
            }
        }
        if let Some((_, first)) = failures.first() {
            let reasons: Vec<String> = failures
                .iter()
                .map(|(id, e)| format!("machine {id}: {e}"))
                .collect();
            return Err(ApiError::from_response(
                first.status(),
                ErrorBody {
                    error: format!(
                        "app `{name}` was not deleted because some of its machines could not be \
                         destroyed ({}); fix that and delete the app again",
                        reasons.join("; ")
                    ),
                    ..first.body()
                },
            ));
        }
        // Then the volumes' data on their hosts: an app is not gone while its data is kept.
        for v in self.inner.store.volumes_of_app(&app.name).await? {
            self.remove_volume_data(&v).await.map_err(|e| {
                ApiError::from_response(
                    e.status(),
                    ErrorBody {
                        error: format!(
                            "app `{name}` was not deleted (its machines were): {e}; delete the app again once the volume's host answers"
                        ),
                        ..e.body()
                    },
                )
            })?;
            self.inner.store.delete_volume(&v.id).await?;
        }
        self.inner.store.delete_app(&app.name).await?;
        Ok(())
    }
}
