//! The leases a deploy holds: refreshed while it works, so a deploy that is killed leaves none
//! for longer than their length, and released whatever happens (Ctrl-C included).

use crate::machine::Scope;
use aloft_types::api::LeaseRequest;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

/// The leases held, (machine id, nonce): shared with the refresh loop, and left for Ctrl-C to
/// release.
pub(super) type Held = Arc<Mutex<Vec<(String, String)>>>;

/// Refreshes every lease in `held` three times per `ttl`, for as long as it is polled: a lease
/// outlives the deploy that holds it by at most `ttl`, however long the deploy waits. A refresh
/// that fails is left to the next round (the step using the lease then says what is wrong).
pub(super) async fn keep_leases(scope: &Scope, held: &Mutex<Vec<(String, String)>>, ttl: Duration) {
    let req = LeaseRequest {
        ttl: Some(ttl.as_secs()),
        description: Some("aloft deploy".into()),
    };
    loop {
        tokio::time::sleep(ttl / 3).await;
        let leases = held.lock().clone();
        // All at once, each bounded: one machine busy with a long operation must not hold up
        // the others' refreshes. A lease released meanwhile is not revived: the agent refuses
        // to refresh a lease that is gone.
        let mut refreshes = tokio::task::JoinSet::new();
        for (id, nonce) in leases {
            let (client, app, req) = (scope.client.clone(), scope.app.clone(), req.clone());
            refreshes.spawn(async move {
                let refreshed = tokio::time::timeout(
                    ttl / 3,
                    client.acquire_lease(&app, &id, &req, Some(&nonce)),
                )
                .await;
                (id, refreshed)
            });
        }
        while let Some(Ok((id, refreshed))) = refreshes.join_next().await {
            let still_held = held.lock().iter().any(|(h, _)| *h == id);
            match refreshed {
                Ok(Ok(_)) => {}
                _ if !still_held => {}
                Ok(Err(e)) => eprintln!("Warning: refreshing machine {id}'s lease: {e}"),
                Err(_) => eprintln!("Warning: refreshing machine {id}'s lease: no answer in time"),
            }
        }
    }
}

/// Releases every lease in `held` (what an interrupted or failed step left).
pub(super) async fn release_held(scope: &Scope, held: &Mutex<Vec<(String, String)>>) {
    let leftover: Vec<(String, String)> = std::mem::take(&mut *held.lock());
    for (id, nonce) in leftover {
        let _ = scope.client.release_lease(&scope.app, &id, &nonce).await;
    }
}
