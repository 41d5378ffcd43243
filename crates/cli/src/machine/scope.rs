//! What every machine verb works with: an app and a client ([`Scope`]), the errors that say
//! whether the app or the machine is missing and how to go on, and the wait for a machine to
//! reach a state.

use super::args::AppArg;
use crate::Ctx;
use crate::client::{Client, ClientError};
use aloft_types::api::{App, StopRequest, WaitQuery};
use aloft_types::{ApiError, Machine, MachineState};
use anyhow::{Result, anyhow};
use std::time::{Duration, Instant};

/// The client's error, or the app-missing sentence when the app is not there.
pub(crate) async fn explain_app_error(
    ctx: &Ctx,
    app: &str,
    e: crate::client::ClientError,
) -> anyhow::Error {
    match (e.api(), ctx.client()) {
        (Some(ApiError::NotFound(m)), Ok(client)) if m.contains("aloft apps list") => {
            app_missing(&client, app).await
        }
        _ => e.into(),
    }
}

/// The app, or a sentence that names the fix when it cannot be read: `GET /v1/apps/{name}`
/// answers the reference's terse `app not found` (404) and `unauthorized` (403, another org's
/// app), which its clients read to tell a free name from a taken one.
pub(crate) async fn get_app(client: &Client, app: &str) -> Result<App> {
    match client.get_app(app).await {
        Ok(found) => Ok(found),
        Err(e) => Err(match e.api() {
            Some(ApiError::NotFound(_)) => app_missing(client, app).await,
            Some(ApiError::Forbidden(_)) => app_elsewhere(app),
            _ => e.into(),
        }),
    }
}

/// The app exists but the token may not see it.
fn app_elsewhere(app: &str) -> anyhow::Error {
    anyhow!(
        "app `{app}` exists but not in your token's org (or your token is a deploy token of another app): \
         app names are global; set ALOFT_API_TOKEN to a token of the app's org, or use another app name"
    )
}

/// Seconds each `wait` call asks for (the API accepts up to 60); between calls the machine is
/// checked, so a machine that cannot reach the state is noticed early.
const WAIT_CHUNK: u64 = 10;

/// An app and a client: what every machine command works with.
pub(crate) struct Scope {
    pub(crate) client: Client,
    pub(crate) app: String,
}

impl Scope {
    /// A scope for `app` with an existing client.
    pub(crate) fn for_app(client: Client, app: String) -> Self {
        Self { client, app }
    }

    pub(super) fn new(ctx: &Ctx, app: &AppArg) -> Result<Self> {
        let app = ctx.app_of(app)?;
        Ok(Self {
            client: ctx.client()?,
            app,
        })
    }

    /// Turns a 404 into a sentence that says whether the app or the machine is missing, and how
    /// to go on.
    pub(super) async fn explain(&self, err: ClientError, machine: Option<&str>) -> anyhow::Error {
        let app = &self.app;
        if let (Some(ApiError::Conflict(msg)), Some(id)) = (err.api(), machine) {
            return anyhow!(
                "{msg}. If its holder is gone, clear it with `aloft machine leases clear {id} -a {app}`"
            );
        }
        if !matches!(err.api(), Some(ApiError::NotFound(_))) {
            return err.into();
        }
        match self.client.get_app(app).await {
            Err(e) if matches!(e.api(), Some(ApiError::NotFound(_))) => {
                app_missing(&self.client, app).await
            }
            Err(e) if matches!(e.api(), Some(ApiError::Forbidden(_))) => app_elsewhere(app),
            Ok(found) => match machine {
                Some(id) => anyhow!(
                    "no machine `{id}` in app `{app}` (org {}); `aloft machine list -a {app}` shows its machines",
                    found.organization.slug
                ),
                None => err.into(),
            },
            Err(_) => err.into(),
        }
    }

    /// Takes a machine out of service gently: cordoned (no new requests), stopped with its own
    /// signal and timeout, then destroyed.
    pub(crate) async fn retire(&self, id: &str) -> Result<()> {
        self.client.cordon(&self.app, id, true).await?;
        self.client
            .stop(&self.app, id, &StopRequest::default())
            .await?;
        if let Err(WaitFailure::Error(e)) = self
            .await_state(id, MachineState::Stopped, Duration::from_secs(60))
            .await
        {
            return Err(e);
        }
        self.client.destroy_machine(&self.app, id, true).await?;
        Ok(())
    }

    /// Waits until the machine is in `target`, for at most `limit`. Gives up early when the
    /// machine cannot get there (failed or destroyed while waiting to be started).
    pub(crate) async fn await_state(
        &self,
        id: &str,
        target: MachineState,
        limit: Duration,
    ) -> Result<Machine, WaitFailure> {
        let started = Instant::now();
        let mut stopped_checks = 0;
        loop {
            let remaining = limit.saturating_sub(started.elapsed());
            let chunk = remaining.as_secs().clamp(1, WAIT_CHUNK);
            let query = WaitQuery {
                state: Some(target.as_str().to_string()),
                timeout: Some(chunk.to_string()),
                ..WaitQuery::default()
            };
            match self
                .client
                .wait(&self.app, id, &query, Duration::from_secs(chunk))
                .await
            {
                Ok(_) => {}
                Err(ClientError::Api(ApiError::Timeout(_) | ApiError::Precondition(_))) => {}
                Err(e) => return Err(WaitFailure::Error(self.explain(e, Some(id)).await)),
            }
            let machine = match self.client.get_machine(&self.app, id).await {
                Ok(m) => m,
                Err(e) => return Err(WaitFailure::Error(self.explain(e, Some(id)).await)),
            };
            if machine.state == target {
                return Ok(machine);
            }
            if target == MachineState::Started {
                stopped_checks = match machine.state {
                    MachineState::Stopped => stopped_checks + 1,
                    _ => 0,
                };
                let hopeless = matches!(
                    machine.state,
                    MachineState::Failed | MachineState::Destroyed | MachineState::Destroying
                ) || stopped_checks >= 2;
                if hopeless {
                    return Err(WaitFailure::NotReached(Box::new(machine)));
                }
            }
            if started.elapsed() >= limit {
                return Err(WaitFailure::NotReached(Box::new(machine)));
            }
        }
    }
}

/// The error for an app the API does not know, naming the org when it can (the token's org is
/// the org of every app the token lists).
pub async fn app_missing(client: &Client, app: &str) -> anyhow::Error {
    app_missing_then(
        client,
        app,
        &format!("create it with `aloft apps create {app}`"),
    )
    .await
}

/// [`app_missing`] with another next step.
pub async fn app_missing_then(client: &Client, app: &str, next: &str) -> anyhow::Error {
    match client.list_apps().await {
        Ok(list) if !list.apps.is_empty() => {
            let org = &list.apps[0].organization.slug;
            let names: Vec<&str> = list.apps.iter().map(|a| a.name.as_str()).collect();
            anyhow!(
                "no app named `{app}` in org {org}; {next} (your apps: {})",
                names.join(", ")
            )
        }
        Ok(_) => anyhow!("no app named `{app}`: your org has no apps yet; {next}"),
        Err(_) => {
            anyhow!("no app named `{app}` in your org; {next} (`aloft apps list` shows your apps)")
        }
    }
}

/// Why a machine did not reach the state waited for.
pub(crate) enum WaitFailure {
    /// It is somewhere else (the machine as last seen).
    NotReached(Box<Machine>),
    /// The API could not be asked.
    Error(anyhow::Error),
}
