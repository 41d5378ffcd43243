//! `aloft machine leases view|clear`: who holds a machine's lease, and letting it go whoever
//! holds it.

use super::args::IdArgs;
use super::scope::Scope;
use crate::Ctx;
use crate::client::ClientError;
use crate::output::{Table, or_dash, print_json};
use aloft_types::ApiError;
use aloft_types::time::rfc3339;
use anyhow::Result;
use serde_json::json;
use std::process::ExitCode;

pub(super) async fn lease_view(ctx: &Ctx, args: IdArgs) -> Result<ExitCode> {
    let scope = Scope::new(ctx, &args.app)?;
    let id = &args.id;
    let lease = match scope.client.lease(&scope.app, id).await {
        Ok(l) => Some(l.data),
        Err(e) => {
            no_lease(&scope, id, e).await?;
            None
        }
    };
    if ctx.json {
        print_json(&lease)?;
        return Ok(ExitCode::SUCCESS);
    }
    match lease {
        None => println!("Machine {id} has no lease."),
        Some(l) => {
            let mut table = Table::new(&["NONCE", "OWNER", "EXPIRES", "DESCRIPTION", "VERSION"]);
            table.row(vec![
                l.nonce,
                l.owner,
                rfc3339(l.expires_at.saturating_mul(1000)),
                or_dash(&l.description),
                l.version,
            ]);
            table.print("");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn lease_clear(ctx: &Ctx, args: IdArgs) -> Result<ExitCode> {
    let scope = Scope::new(ctx, &args.app)?;
    let id = &args.id;
    let lease = match scope.client.lease(&scope.app, id).await {
        Ok(l) => l.data,
        Err(e) => {
            no_lease(&scope, id, e).await?;
            if ctx.json {
                print_json(&json!({"id": id, "ok": true, "cleared": false}))?;
            } else {
                println!("Machine {id} has no lease; nothing to clear.");
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    if let Err(e) = scope
        .client
        .release_lease(&scope.app, id, &lease.nonce)
        .await
    {
        return Err(scope.explain(e, Some(id)).await);
    }
    if ctx.json {
        print_json(&json!({"id": id, "ok": true, "cleared": true, "owner": lease.owner}))?;
    } else {
        println!(
            "Cleared the lease on machine {id} (held by {}).",
            lease.owner
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A 404 from `GET .../lease` means "no lease" (`Ok`) when the machine exists; any other error
/// stays one.
async fn no_lease(scope: &Scope, id: &str, err: ClientError) -> Result<()> {
    if matches!(err.api(), Some(ApiError::NotFound(_)))
        && scope.client.get_machine(&scope.app, id).await.is_ok()
    {
        return Ok(());
    }
    Err(scope.explain(err, Some(id)).await)
}
