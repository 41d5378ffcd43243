//! Listing an app's machines: a fan-out to every host holding some, merged; the hosts that do not
//! answer are named instead of failing the list.

use crate::ControlPlane;
use crate::error::internal;
use crate::forward::{AgentReply, AgentRequest};
use crate::store::{Caller, MachineRecord};
use aloft_types::api::ListMachinesQuery;
use aloft_types::{ApiError, MachineState};
use axum::http::Method;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
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

impl ControlPlane {
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
            let req = AgentRequest::bodiless(Method::GET, path_and_query.clone());
            let (fwd, caller) = (self.inner.forwarder.clone(), caller.clone());
            tasks.spawn(async move {
                let result = fwd.send(&host, &caller, &req).await;
                (host.info.id, result)
            });
        }
        let mut machines = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let (host_id, result) = done.map_err(|e| {
                internal(
                    "the control plane failed (a request to a host did not finish)",
                    &e,
                )
            })?;
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
}
