//! Machines through the control plane: placement and indexing on create, the fan-out list, and
//! every other operation forwarded to the machine's host. The machine index (`crate::store`)
//! says where each machine lives; its state stays with the agents.
//!
//! Names are claimed under a per-app lock (`lock_names`), so two creates cannot take one name.

mod create;
mod list;
mod ops;

pub(crate) use list::Listing;

use crate::ControlPlane;
use crate::forward::{AgentReply, caller_headers};
use crate::store::{AppRecord, Caller, HostRecord, MachineRecord};
use aloft_agent_api::AgentClient;
use aloft_types::time::now_ms;
use aloft_types::{ApiError, MachineState};
use axum::http::StatusCode;
use std::sync::Arc;

fn is_destroyed(reply: &AgentReply) -> bool {
    reply
        .json()
        .is_some_and(|v| v["state"] == MachineState::Destroyed.as_str())
}

pub(crate) fn host_gone(m: &MachineRecord) -> ApiError {
    ApiError::Unavailable(format!(
        "machine {} lives on host `{}`, which is no longer registered; start its agent again",
        m.id, m.host_id
    ))
}

impl ControlPlane {
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
            let mut locks = self.inner.name_locks.lock();
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
        let caller = caller_headers(caller);
        let (app, id) = (&m.app, &m.id);
        let get = |agent: AgentClient| async move { agent.get_machine(&caller, app, id).await };
        match self.inner.forwarder.ask(&host, get).await {
            Ok(r) if r.status == StatusCode::NOT_FOUND => false,
            Ok(r) if r.status.is_success() => !is_destroyed(&r),
            _ => true,
        }
    }
}
