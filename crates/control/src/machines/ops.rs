//! Every other machine operation: forwarded to the machine's host unchanged, with the index kept
//! in step (destroy, rename, a volume mounted by an update).

use super::{host_gone, is_destroyed};
use crate::ControlPlane;
use crate::forward::{AgentReply, AgentRequest};
use crate::store::{Caller, MachineRecord};
use aloft_types::ApiError;
use axum::http::Method;
use serde_json::Value;

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

impl ControlPlane {
    /// Every other machine operation: finds the machine in the index (404 when unknown or of
    /// another app), forwards the request to its host unchanged, and keeps the index in step
    /// (destroy, rename on update, a destroyed machine seen on a read).
    pub(crate) async fn forward_machine(
        &self,
        caller: &Caller,
        app: &str,
        machine_id: &str,
        sub_path: Option<&str>,
        req: AgentRequest,
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
}
