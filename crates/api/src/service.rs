//! The app layer between the HTTP handlers and the store/agents: authentication, the org rules
//! (an app of another org is "not found"), placement, the machine index, and forwarding.

use crate::ControlPlane;
use crate::auth;
use crate::forward::{AgentReply, ForwardError, Outbound};
use crate::placement;
use crate::secrets;
use crate::store::{
    AppRecord, Caller, CertRecord, HostRecord, MachineRecord, ReleaseRecord, SecretRecord,
};
use aloft_types::api::{
    App, AppList, Certificate, CreateCertificateRequest, CreateMachineRequest,
    CreateReleaseRequest, HostInfo, ListMachinesQuery, OrgRef, RegionList, Release, ReleaseStatus,
    Secret, SetSecretsRequest, UnsetSecretsRequest, UpdateReleaseRequest,
};
use aloft_types::time::{now_ms, rfc3339};
use aloft_types::{ApiError, ErrorBody, MachineState};
use axum::http::{Method, StatusCode};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, PoisonError};
use tokio::task::JoinSet;

/// What a fan-out list found.
#[derive(Debug)]
pub(crate) enum Listing {
    /// The machines of every host that answered, and the ids of the hosts that did not.
    Machines {
        machines: Vec<Value>,
        unreachable_hosts: Vec<String>,
    },
    /// An agent refused the query (4xx): its answer is the answer.
    Refused(AgentReply),
}

impl ControlPlane {
    /// The caller behind an `Authorization` header value.
    pub(crate) async fn authenticate(&self, header: Option<&str>) -> Result<Caller, ApiError> {
        let token = auth::bearer(header)?;
        self.inner
            .store
            .caller(auth::hash_token(token), auth::ApiToken::new(token))
            .await?
            .ok_or_else(auth::invalid_token)
    }

    /// Checks the cluster-internal token (agents and operators).
    pub(crate) fn authenticate_internal(&self, header: Option<&str>) -> Result<(), ApiError> {
        let token = auth::bearer(header)?;
        if auth::constant_time_eq(token, &self.inner.config.internal_token) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized(
                "this endpoint needs the cluster's internal token (the one agents are started with)"
                    .into(),
            ))
        }
    }

    /// The caller's app, or 404 exactly as if it did not exist when it belongs to another org.
    pub(crate) async fn app_of(&self, caller: &Caller, name: &str) -> Result<AppRecord, ApiError> {
        match self.inner.store.app(name).await? {
            Some(app) if app.org_slug == caller.org.slug => Ok(app),
            _ => Err(ApiError::NotFound(format!(
                "app `{name}` not found; list your apps with `aloft apps list` or GET /v1/apps"
            ))),
        }
    }

    /// `org_slug` as the caller named it: only its own org (another org is 404, as if missing).
    fn own_org(&self, caller: &Caller, org_slug: Option<&str>) -> Result<(), ApiError> {
        match org_slug {
            Some(slug) if slug != caller.org.slug => Err(ApiError::NotFound(format!(
                "org `{slug}` not found; your token belongs to the org `{}`",
                caller.org.slug
            ))),
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
            .map(|a| self.app_json(a))
            .collect();
        Ok(AppList {
            total_apps: u32::try_from(apps.len()).unwrap_or(u32::MAX),
            apps,
        })
    }

    pub(crate) async fn create_app(&self, caller: &Caller, body: &[u8]) -> Result<App, ApiError> {
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
            return Err(ApiError::Conflict(format!(
                "an app named `{}` already exists (app names are global); pick another name",
                req.app_name
            )));
        }
        Ok(self.app_json(app))
    }

    /// `POST /v1/apps/{app}/secrets`.
    pub(crate) async fn set_secrets(
        &self,
        caller: &Caller,
        app: &str,
        body: &[u8],
    ) -> Result<Vec<Secret>, ApiError> {
        let app = self.app_of(caller, app).await?;
        let req: SetSecretsRequest = ApiError::parse_json(body)?;
        if req.secrets.is_empty() {
            return Err(ApiError::invalid(
                "secrets",
                "no secrets given: send {\"secrets\": {\"NAME\": \"value\"}}",
            ));
        }
        let now = now_ms();
        let mut records = Vec::new();
        for (name, value) in &req.secrets {
            if let Some(problem) = secrets::name_problem(name) {
                return Err(ApiError::invalid(format!("secrets.{name}"), problem));
            }
            if value.len() > secrets::MAX_VALUE_BYTES {
                return Err(ApiError::invalid(
                    format!("secrets.{name}"),
                    format!(
                        "secret {name} is {} bytes; at most {} KiB: keep large files in a volume or the image",
                        value.len(),
                        secrets::MAX_VALUE_BYTES / 1024
                    ),
                ));
            }
            records.push(SecretRecord {
                name: name.clone(),
                sealed: self.inner.secrets.seal(&app.name, name, value),
                digest: secrets::digest(value),
                created_at: now,
            });
        }
        if let Err(count) = self
            .inner
            .store
            .set_secrets(&app.name, records, secrets::MAX_SECRETS)
            .await?
        {
            return Err(ApiError::invalid(
                "secrets",
                format!(
                    "{} would have {count} secrets; at most {}: unset some first",
                    app.name,
                    secrets::MAX_SECRETS
                ),
            ));
        }
        self.secrets_listed(&app.name).await
    }

    /// `GET /v1/apps/{app}/secrets`.
    pub(crate) async fn list_secrets(
        &self,
        caller: &Caller,
        app: &str,
    ) -> Result<Vec<Secret>, ApiError> {
        let app = self.app_of(caller, app).await?;
        self.secrets_listed(&app.name).await
    }

    /// The app's secrets as listed: names and digests.
    async fn secrets_listed(&self, app: &str) -> Result<Vec<Secret>, ApiError> {
        Ok(self
            .inner
            .store
            .secrets(app)
            .await?
            .into_iter()
            .map(|s| Secret {
                name: s.name,
                digest: s.digest,
                created_at: rfc3339(s.created_at),
            })
            .collect())
    }

    /// `POST /v1/apps/{app}/secrets/unset`.
    pub(crate) async fn unset_secrets(
        &self,
        caller: &Caller,
        app: &str,
        body: &[u8],
    ) -> Result<Vec<Secret>, ApiError> {
        let app = self.app_of(caller, app).await?;
        let req: UnsetSecretsRequest = ApiError::parse_json(body)?;
        if let Err(missing) = self.inner.store.unset_secrets(&app.name, req.names).await? {
            return Err(ApiError::NotFound(format!(
                "{} has no secret named {}: `aloft secrets list -a {}` shows its secrets (nothing was removed)",
                app.name,
                missing.join(", "),
                app.name
            )));
        }
        self.secrets_listed(&app.name).await
    }

    /// `GET /internal/v1/apps/{app}/secrets`: the values, for the host agent starting one of
    /// the app's machines. A value that does not open (another key) is left out and logged.
    pub(crate) async fn secret_values(
        &self,
        app: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, ApiError> {
        let mut values = std::collections::BTreeMap::new();
        for s in self.inner.store.secrets(app).await? {
            match self.inner.secrets.open(app, &s.name, &s.sealed) {
                Some(v) => {
                    values.insert(s.name, v);
                }
                None => tracing::error!(
                    app,
                    secret = %s.name,
                    "a secret does not open with this control plane's secrets.key: set it again"
                ),
            }
        }
        Ok(values)
    }

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

    /// `POST /v1/apps/{app}/certificates`.
    pub(crate) async fn add_certificate(
        &self,
        caller: &Caller,
        app: &str,
        body: &[u8],
    ) -> Result<Certificate, ApiError> {
        let app = self.app_of(caller, app).await?;
        let req: CreateCertificateRequest = ApiError::parse_json(body)?;
        let hostname = req
            .hostname
            .trim()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let valid = hostname.split('.').count() >= 2
            && hostname.split('.').all(auth::is_dns_label)
            && !hostname.ends_with(".localhost");
        if !valid {
            return Err(ApiError::invalid(
                "hostname",
                format!(
                    "hostname `{}` is not a DNS name the app can be served at: use something like \
                     \"www.example.com\" (`<app>.localhost` is served already)",
                    req.hostname
                ),
            ));
        }
        let pem = match (req.certificate, req.private_key) {
            (Some(c), Some(k)) => {
                aloft_proxy::tls::certified_key_from_pem(&c, &k)
                    .map_err(|e| ApiError::invalid("certificate", e))?;
                Some((c, k))
            }
            (None, None) => None,
            _ => {
                return Err(ApiError::invalid(
                    "certificate",
                    "give both certificate and private_key, or neither (for a certificate from \
                     the development CA)",
                ));
            }
        };
        let record = CertRecord {
            hostname: hostname.clone(),
            app: app.name.clone(),
            certificate: pem.as_ref().map(|(c, _)| c.clone()),
            private_key: pem.map(|(_, k)| k),
            created_at: now_ms(),
        };
        if self
            .inner
            .store
            .insert_certificate(record.clone())
            .await?
            .is_err()
        {
            return Err(ApiError::Conflict(format!(
                "hostname `{hostname}` is served by another app already; remove it there first"
            )));
        }
        self.inner.certificates.send_modify(|n| *n += 1);
        Ok(certificate_json(record))
    }

    /// `GET /v1/apps/{app}/certificates`.
    pub(crate) async fn list_certificates(
        &self,
        caller: &Caller,
        app: &str,
    ) -> Result<Vec<Certificate>, ApiError> {
        let app = self.app_of(caller, app).await?;
        Ok(self
            .inner
            .store
            .certificates(Some(&app.name))
            .await?
            .into_iter()
            .map(certificate_json)
            .collect())
    }

    /// `DELETE /v1/apps/{app}/certificates/{hostname}`.
    pub(crate) async fn remove_certificate(
        &self,
        caller: &Caller,
        app: &str,
        hostname: &str,
    ) -> Result<(), ApiError> {
        let app = self.app_of(caller, app).await?;
        let hostname = hostname.to_ascii_lowercase();
        if !self
            .inner
            .store
            .delete_certificate(&app.name, &hostname)
            .await?
        {
            return Err(ApiError::NotFound(format!(
                "app `{}` has no certificate for `{hostname}`; `aloft certs list -a {}` shows its hostnames",
                app.name, app.name
            )));
        }
        self.inner.certificates.send_modify(|n| *n += 1);
        Ok(())
    }

    pub(crate) async fn get_app(&self, caller: &Caller, name: &str) -> Result<App, ApiError> {
        Ok(self.app_json(self.app_of(caller, name).await?))
    }

    /// Destroys every machine of the app (force) on its host, then the app. When a machine
    /// cannot be destroyed the app is kept and the error says which machine and why.
    pub(crate) async fn delete_app(&self, caller: &Caller, name: &str) -> Result<(), ApiError> {
        let app = self.app_of(caller, name).await?;
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
            let req = Outbound::bodiless(
                Method::DELETE,
                format!("/v1/apps/{}/machines/{}?force=true", app.name, m.id),
            );
            let (fwd, caller) = (self.inner.forwarder.clone(), caller.clone());
            tasks.spawn(async move { (m.id, fwd.send(&host, &caller, &req).await) });
        }
        let mut failures = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let (id, result) = done.map_err(|e| ApiError::Internal(e.to_string()))?;
            match result {
                Ok(r) if r.status.is_success() || r.status == StatusCode::NOT_FOUND => {
                    self.inner.store.mark_destroyed(&id).await?;
                }
                Ok(r) => failures.push((id, agent_error(&r))),
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

    /// Places a new machine: validates the request, picks a host in the region with room (the
    /// next one when a host refuses for lack of room or cannot be reached), forwards the request
    /// unchanged, and indexes the machine the agent created.
    pub(crate) async fn create_machine(
        &self,
        caller: &Caller,
        app: &str,
        req: Outbound,
    ) -> Result<AgentReply, ApiError> {
        let app = self.app_of(caller, app).await?;
        let body: CreateMachineRequest = ApiError::parse_json(&req.body)?;
        body.config.validate()?;
        // Names and volumes are taken under the app's lock: two creates cannot both take one.
        let mounts_volume = crate::volumes::mounted_volume(&body.config).is_some();
        let _guard = if body.name.is_some() || mounts_volume {
            Some(self.lock_names(&app.name).await)
        } else {
            None
        };
        if let Some(name) = &body.name {
            self.ensure_name_free(caller, &app.name, name, None).await?;
        }
        let region = body
            .region
            .clone()
            .unwrap_or_else(|| self.inner.config.default_region.clone());
        let hosts = self.inner.store.hosts().await?;
        let guest = &body.config.guest;
        // A machine that mounts a volume runs on the volume's host, or nowhere.
        let volume = match crate::volumes::mounted_volume(&body.config) {
            Some(id) => Some(
                self.volume_placement(&app.name, id, body.region.as_deref(), None)
                    .await?,
            ),
            None => None,
        };
        let candidates = match &volume {
            Some((_, host)) => vec![host],
            None => {
                let mut app_machines = std::collections::BTreeMap::new();
                for m in self.inner.store.machines_of_app(&app.name).await? {
                    if !m.destroyed {
                        *app_machines.entry(m.host_id).or_insert(0) += 1;
                    }
                }
                placement::candidates(&hosts, &region, guest, &app_machines)?
            }
        };
        let mut refusals = Vec::new();
        for host in candidates {
            match self.inner.forwarder.send(host, caller, &req).await {
                Ok(reply) if reply.status.is_success() => {
                    let id = self.index_new_machine(&app, host, &reply).await?;
                    if let Some((v, _)) = &volume
                        && let Err(holder) = self
                            .inner
                            .store
                            .set_machine_volume(&id, Some(&v.id))
                            .await?
                    {
                        // Not reached while creates hold the app's lock; the host refuses to
                        // start a second machine on a volume anyway.
                        tracing::error!(volume = %v.id, machine = %id, %holder, "two machines were created on one volume at once");
                    }
                    let allocated = self.inner.store.add_allocation(
                        &host.info.id,
                        guest.cpus,
                        u64::from(guest.memory_mb),
                    );
                    if let Err(e) = allocated.await {
                        // Only an estimate until the next heartbeat: not worth failing the create.
                        tracing::warn!(host = %host.info.id, error = %e, "cannot count the new machine against its host");
                    }
                    return Ok(reply);
                }
                Ok(reply) if reply.status == StatusCode::SERVICE_UNAVAILABLE => {
                    refusals.push(format!("{}: {}", host.info.id, agent_error(&reply)));
                }
                Ok(reply) => return Ok(reply),
                Err(e) if e.is_connect() && volume.is_some() => {
                    let (v, _) = volume.as_ref().expect("checked");
                    return Err(crate::volumes::volume_host_down(v, &e.to_string()));
                }
                // Only a request that never reached the agent is safe to send elsewhere.
                Err(e) if e.is_connect() => refusals.push(e.to_string()),
                Err(e) => return Err(e.into()),
            }
        }
        if let Some((v, host)) = &volume {
            return Err(ApiError::Unavailable(format!(
                "host `{}`, where volume {} lives, cannot take the machine: {}; a machine with this volume runs there only: free room on it, or use another volume",
                host.info.id,
                v.id,
                refusals.join("; ")
            )));
        }
        Err(ApiError::Unavailable(format!(
            "no host in region `{region}` could take the machine: {}; retry later or pick another \
             region",
            refusals.join("; ")
        )))
    }

    /// Indexes the machine an agent created; its id.
    async fn index_new_machine(
        &self,
        app: &AppRecord,
        host: &HostRecord,
        reply: &AgentReply,
    ) -> Result<String, ApiError> {
        let json = reply.json().unwrap_or_default();
        let (Some(id), Some(name)) = (json["id"].as_str(), json["name"].as_str()) else {
            tracing::error!(host = %host.info.id, "agent answered a create without a machine id and name");
            return Err(ApiError::Internal(format!(
                "host `{}` created a machine but its answer has no machine id and name; the \
                 machine may exist there without being reachable through the API: tell the \
                 operator",
                host.info.id
            )));
        };
        self.inner
            .store
            .insert_machine(
                MachineRecord {
                    id: id.to_string(),
                    app: app.name.clone(),
                    host_id: host.info.id.clone(),
                    name: name.to_string(),
                    destroyed: false,
                },
                now_ms(),
            )
            .await?;
        Ok(id.to_string())
    }

    /// Serializes name and volume checks within an app, so two creates cannot both take a free
    /// name or a free volume.
    async fn lock_names(&self, app: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self
                .inner
                .name_locks
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(locks.entry(app.to_string()).or_default())
        };
        lock.lock_owned().await
    }

    /// 409 when another live machine of the app has this name. The index does not see machines
    /// the agent destroyed by itself (`auto_destroy`), so a clash is confirmed with the owning
    /// agent first.
    async fn ensure_name_free(
        &self,
        caller: &Caller,
        app: &str,
        name: &str,
        except: Option<&str>,
    ) -> Result<(), ApiError> {
        while let Some(other) = self.inner.store.live_machine_named(app, name).await? {
            if Some(other.id.as_str()) == except {
                return Ok(());
            }
            if self.still_exists(caller, &other).await {
                return Err(ApiError::Conflict(format!(
                    "app `{app}` already has a machine named `{name}` ({}); pick another name or \
                     destroy that machine",
                    other.id
                )));
            }
            self.inner.store.mark_destroyed(&other.id).await?;
        }
        Ok(())
    }

    /// Whether the owning agent still has the machine (not destroyed). When in doubt (the agent
    /// does not answer), it does.
    async fn still_exists(&self, caller: &Caller, m: &MachineRecord) -> bool {
        let Ok(Some(host)) = self.inner.store.host(&m.host_id).await else {
            return true;
        };
        let req = Outbound::bodiless(Method::GET, format!("/v1/apps/{}/machines/{}", m.app, m.id));
        match self.inner.forwarder.send(&host, caller, &req).await {
            Ok(r) if r.status == StatusCode::NOT_FOUND => false,
            Ok(r) if r.status.is_success() => !is_destroyed(&r),
            _ => true,
        }
    }

    /// Lists the app's machines: asks every host the index has machines of the app on (with the
    /// caller's query string) and merges the answers in creation order. Hosts that do not answer are
    /// reported in `unreachable_hosts`; an agent refusing the query (4xx) is the answer.
    pub(crate) async fn list_machines(
        &self,
        caller: &Caller,
        app: &str,
        query: &ListMachinesQuery,
        path_and_query: String,
    ) -> Result<Listing, ApiError> {
        let app = self.app_of(caller, app).await?;
        validate_state_filter(query)?;
        let index = self.inner.store.machines_of_app(&app.name).await?;
        // Position in the index (creation order, to the millisecond) is the merge order.
        let known: HashMap<&str, (usize, &MachineRecord)> = index
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.as_str(), (i, m)))
            .collect();
        let host_ids: BTreeSet<&str> = index.iter().map(|m| m.host_id.as_str()).collect();
        let mut unreachable_hosts = Vec::new();
        let mut tasks = JoinSet::new();
        for host_id in host_ids {
            let Some(host) = self.inner.store.host(host_id).await? else {
                unreachable_hosts.push(host_id.to_string());
                continue;
            };
            let req = Outbound::bodiless(Method::GET, path_and_query.clone());
            let (fwd, caller) = (self.inner.forwarder.clone(), caller.clone());
            tasks.spawn(async move {
                let result = fwd.send(&host, &caller, &req).await;
                (host.info.id, result)
            });
        }
        let mut machines = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let (host_id, result) = done.map_err(|e| ApiError::Internal(e.to_string()))?;
            match result {
                Ok(r) if r.status.is_success() => {
                    match serde_json::from_slice::<Vec<Value>>(&r.body) {
                        Ok(list) => {
                            machines.extend(list.into_iter().filter(|m| {
                                m["id"].as_str().is_some_and(|id| known.contains_key(id))
                            }))
                        }
                        Err(e) => {
                            tracing::warn!(host = %host_id, error = %e, "agent listed machines in a form the control plane cannot read");
                            unreachable_hosts.push(host_id);
                        }
                    }
                }
                Ok(r) if r.status.is_client_error() => return Ok(Listing::Refused(r)),
                Ok(_) | Err(_) => unreachable_hosts.push(host_id),
            }
        }
        let indexed = |m: &Value| m["id"].as_str().and_then(|id| known.get(id)).copied();
        for m in machines.iter().filter(|m| m["state"] == "destroyed") {
            if let Some((_, rec)) = indexed(m).filter(|(_, rec)| !rec.destroyed) {
                self.inner.store.mark_destroyed(&rec.id).await?;
            }
        }
        machines.sort_by_key(|m| indexed(m).map(|(position, _)| position));
        unreachable_hosts.sort();
        Ok(Listing::Machines {
            machines,
            unreachable_hosts,
        })
    }

    /// Every other machine operation: finds the machine in the index (404 when unknown or of
    /// another app), forwards the request to its host unchanged, and keeps the index in step
    /// (destroy, rename on update, a destroyed machine seen on a read).
    pub(crate) async fn forward_machine(
        &self,
        caller: &Caller,
        app: &str,
        machine_id: &str,
        sub_path: Option<&str>,
        req: Outbound,
    ) -> Result<AgentReply, ApiError> {
        let app = self.app_of(caller, app).await?;
        if let Some(rest) = sub_path {
            check_sub_path(rest)?;
        }
        let machine = match self.inner.store.machine(machine_id).await? {
            Some(m) if m.app == app.name => m,
            _ => {
                return Err(ApiError::NotFound(format!(
                    "machine `{machine_id}` not found in app `{}`; list its machines with \
                     `aloft machine list -a {}`",
                    app.name, app.name
                )));
            }
        };
        let host = self
            .inner
            .store
            .host(&machine.host_id)
            .await?
            .ok_or_else(|| host_gone(&machine))?;
        let is_update = req.method == Method::POST && sub_path.is_none();
        let update: Option<Value> = is_update
            .then(|| serde_json::from_slice(&req.body).ok())
            .flatten();
        let new_name = update
            .as_ref()
            .and_then(|v| v["name"].as_str().map(str::to_owned))
            .filter(|n| !n.is_empty() && *n != machine.name);
        let mounts = update.as_ref().is_some_and(|v| {
            v["config"]["mounts"]
                .as_array()
                .is_some_and(|m| !m.is_empty())
        });
        // Names and volumes are taken under the app's lock, as on create.
        let _guard = if new_name.is_some() || mounts {
            Some(self.lock_names(&app.name).await)
        } else {
            None
        };
        if let Some(name) = &new_name {
            self.ensure_name_free(caller, &app.name, name, Some(&machine.id))
                .await?;
        }
        // An update may mount a volume only if it lives on the machine's host.
        let volume = if is_update {
            self.update_volume(&app.name, &machine, &req.body).await?
        } else {
            None
        };
        let reply = self.inner.forwarder.send(&host, caller, &req).await?;
        if reply.status.is_success() && sub_path.is_none() {
            let store = &self.inner.store;
            if req.method == Method::DELETE || (req.method == Method::GET && is_destroyed(&reply)) {
                store.mark_destroyed(&machine.id).await?;
            } else if is_update {
                if let Some(v) = &volume
                    && let Err(holder) = store.set_machine_volume(&machine.id, v.as_deref()).await?
                {
                    tracing::error!(volume = ?v, machine = %machine.id, %holder, "two machines were given one volume at once");
                }
                let renamed = reply
                    .json()
                    .and_then(|v| v["name"].as_str().map(str::to_owned));
                if let Some(name) = renamed {
                    store.rename_machine(&machine.id, &name).await?;
                }
            }
        }
        Ok(reply)
    }

    /// The volume an update's config mounts (`Some(None)`: none), checked against the machine:
    /// the app's, on the machine's host, not mounted by another live machine. `None` for a body
    /// the agent will refuse anyway.
    async fn update_volume(
        &self,
        app: &str,
        machine: &MachineRecord,
        body: &[u8],
    ) -> Result<Option<Option<String>>, ApiError> {
        let Ok(update) = serde_json::from_slice::<aloft_types::api::UpdateMachineRequest>(body)
        else {
            return Ok(None);
        };
        let Some(id) = crate::volumes::mounted_volume(&update.config) else {
            return Ok(Some(None));
        };
        let (v, _) = self
            .volume_placement(app, id, None, Some(&machine.id))
            .await?;
        if v.host_id != machine.host_id {
            return Err(ApiError::invalid(
                "config.mounts[0].volume",
                format!(
                    "volume {} lives on host `{}` but machine {} runs on `{}`; a machine cannot move: create a new machine with the volume instead",
                    v.id, v.host_id, machine.id, machine.host_id
                ),
            ));
        }
        Ok(Some(Some(v.id)))
    }

    pub(crate) async fn regions(&self) -> Result<RegionList, ApiError> {
        let hosts = self.inner.store.hosts().await?;
        Ok(RegionList {
            regions: placement::regions(&hosts),
        })
    }

    /// The registered hosts (operators: `aloft image list` asks each of them).
    pub(crate) async fn hosts(&self) -> Result<Vec<HostInfo>, ApiError> {
        Ok(self
            .inner
            .store
            .hosts()
            .await?
            .into_iter()
            .map(|h| h.info)
            .collect())
    }

    /// An operator request about one host (its images), answered by its agent as is.
    pub(crate) async fn ask_host(
        &self,
        host_id: &str,
        method: Method,
        agent_path: &str,
    ) -> Result<AgentReply, ApiError> {
        let Some(host) = self.inner.store.host(host_id).await? else {
            let known: Vec<String> = self.hosts().await?.into_iter().map(|h| h.id).collect();
            return Err(ApiError::NotFound(format!(
                "no host `{host_id}` is registered; the hosts are: {}",
                if known.is_empty() {
                    "none yet".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        let req = Outbound::bodiless(method, agent_path.to_string());
        Ok(self.inner.forwarder.send_internal(&host, &req).await?)
    }

    /// Records an agent's registration or heartbeat.
    pub(crate) async fn record_host(&self, info: HostInfo) -> Result<(), ApiError> {
        for (field, value) in [
            ("id", &info.id),
            ("region", &info.region),
            ("address", &info.address),
        ] {
            if value.trim().is_empty() {
                return Err(ApiError::invalid(
                    field,
                    format!(
                        "{field} is required: a host registers with its id, region and address"
                    ),
                ));
            }
        }
        if !info.address.starts_with("http://") && !info.address.starts_with("https://") {
            return Err(ApiError::invalid(
                "address",
                format!(
                    "address `{}` must be a URL such as http://host-1.example:4281",
                    info.address
                ),
            ));
        }
        self.inner.store.upsert_host(info, now_ms()).await?;
        Ok(())
    }
}

/// The error an agent answered with, rebuilt (its message when the body is an error body).
pub(crate) fn agent_error(reply: &AgentReply) -> ApiError {
    let body = serde_json::from_slice::<ErrorBody>(&reply.body).unwrap_or_else(|_| ErrorBody {
        error: String::from_utf8_lossy(&reply.body).trim().to_string(),
        field: None,
        allowed: Vec::new(),
    });
    ApiError::from_response(reply.status.as_u16(), body)
}

fn is_destroyed(reply: &AgentReply) -> bool {
    reply
        .json()
        .is_some_and(|v| v["state"] == MachineState::Destroyed.as_str())
}

fn host_gone(m: &MachineRecord) -> ApiError {
    ApiError::Unavailable(format!(
        "machine {} lives on host `{}`, which is no longer registered; start its agent again",
        m.id, m.host_id
    ))
}

/// The part of a machine path after its id must stay under that machine once the agent's URL is
/// built: no empty, `.` or `..` segments and no backslashes (HTTP clients resolve those, which
/// would let a request for one machine reach another app's).
fn check_sub_path(decoded: &str) -> Result<(), ApiError> {
    let bad = decoded.contains('\\')
        || decoded
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if bad {
        return Err(ApiError::BadRequest(format!(
            "`{decoded}` is not a machine operation: paths may not hold empty, `.` or `..` \
             segments or backslashes"
        )));
    }
    Ok(())
}

/// `state=` must list known states (the same answer whether or not any host is asked).
fn validate_state_filter(query: &ListMachinesQuery) -> Result<(), ApiError> {
    let Some(states) = &query.state else {
        return Ok(());
    };
    for s in states.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if MachineState::parse(s).is_none() {
            let allowed: Vec<&str> = MachineState::ALL.iter().map(|s| s.as_str()).collect();
            return Err(ApiError::invalid_choice("state", s, &allowed));
        }
    }
    Ok(())
}

impl From<ForwardError> for ApiError {
    fn from(e: ForwardError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

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

fn certificate_json(r: CertRecord) -> Certificate {
    Certificate {
        source: if r.certificate.is_some() {
            "uploaded"
        } else {
            "development-ca"
        }
        .into(),
        hostname: r.hostname,
        app: r.app,
        created_at: rfc3339(r.created_at),
    }
}
