//! Creating a machine: validation, placement on a host with room (the next one when a host
//! refuses), forwarding, and indexing what the agent created.

use crate::ControlPlane;
use crate::forward::{AgentReply, AgentRequest};
use crate::placement;
use crate::store::Caller;
use aloft_types::ApiError;
use aloft_types::api::CreateMachineRequest;
use axum::http::StatusCode;

impl ControlPlane {
    /// Places a new machine: validates the request, picks a host in the region with room (the
    /// next one when a host refuses for lack of room or cannot be reached), forwards the request
    /// unchanged, and indexes the machine the agent created.
    pub(crate) async fn create_machine(
        &self,
        caller: &Caller,
        app: &str,
        req: AgentRequest,
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
        // Whether every host refused for lack of room (`insufficient_capacity`), not because it
        // could not be reached.
        let mut all_full = true;
        for host in candidates {
            // The agent asks for the app's secrets while it starts the machine: the host may
            // read them from before the create is forwarded until the index has the machine.
            let _placing = self.placing(&host.info.id, &app.name);
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
                    let error = reply.error();
                    all_full &= matches!(error, ApiError::NoCapacity(_));
                    refusals.push(format!("{}: {error}", host.info.id));
                }
                Ok(reply) => return Ok(reply),
                Err(e) if e.is_connect() && volume.is_some() => {
                    let (v, _) = volume.as_ref().expect("checked");
                    return Err(crate::volumes::volume_host_down(v, &e.to_string()));
                }
                // Only a request that never reached the agent is safe to send elsewhere.
                Err(e) if e.is_connect() => {
                    all_full = false;
                    refusals.push(e.to_string());
                }
                Err(e) => return Err(e.into()),
            }
        }
        let unplaced = if all_full {
            ApiError::NoCapacity
        } else {
            ApiError::Unavailable
        };
        if let Some((v, host)) = &volume {
            return Err(unplaced(format!(
                "host `{}`, where volume {} lives, cannot take the machine: {}; a machine with this volume runs there only: free room on it, or use another volume",
                host.info.id,
                v.id,
                refusals.join("; ")
            )));
        }
        Err(unplaced(format!(
            "no host in region `{region}` could take the machine: {}; retry later or pick another \
             region",
            refusals.join("; ")
        )))
    }
}
