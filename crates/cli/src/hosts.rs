//! `aloft hosts list|join-token|revoke`: operator commands (the cluster's internal token) for
//! the hosts of a cluster. A new host joins with a one-time join token: make one with
//! `aloft hosts join-token --host ord-2`, write it to the file the host's config names as
//! `join_token_file`, start the host. `aloft hosts revoke ord-2` stops a host's credential at
//! once (a lost or leaked one); the host id may then join again with a new token.

use crate::Ctx;
use crate::operator::Operator;
use crate::output::{Table, print_json};
use aloft_types::join::{JoinToken, JoinTokenRequest};
use anyhow::Result;
use clap::Subcommand;
use reqwest::Method;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// List the hosts registered with the control plane.
    #[command(visible_alias = "ls")]
    List,
    /// Make a one-time join token for a new host; it is printed once, alone on stdout.
    JoinToken {
        /// The one host id that may use it [default: any id that has not joined].
        #[arg(long, value_name = "ID")]
        host: Option<String>,
        /// How long it may be used, e.g. 30m, 24h (at most 7d).
        #[arg(long, value_name = "DURATION", default_value = "1h")]
        expires_in: String,
    },
    /// Revoke a host's credential: it stops working at once, and the id may join again.
    Revoke {
        #[arg(value_name = "ID")]
        host: String,
    },
}

pub async fn run(cmd: HostsCommand, ctx: &Ctx) -> Result<ExitCode> {
    let op = Operator::new(ctx)?;
    match cmd {
        HostsCommand::List => {
            let hosts = op.registered().await?;
            if ctx.json {
                print_json(&hosts)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut table =
                Table::new(&["ID", "REGION", "RUNTIME", "CPUS", "MEMORY (MB)", "ADDRESS"]);
            for h in &hosts {
                table.row(vec![
                    h.id.clone(),
                    h.region.clone(),
                    h.runtime.clone(),
                    format!("{}/{}", h.allocated_cpus, h.cpus),
                    format!("{}/{}", h.allocated_memory_mb, h.memory_mb),
                    h.address.clone(),
                ]);
            }
            table.print("No hosts have registered yet; start one with `aloft server host`.");
        }
        HostsCommand::JoinToken { host, expires_in } => {
            let req = JoinTokenRequest {
                host,
                expires_in: Some(expires_in),
            };
            let made: JoinToken = op
                .call_with(Method::POST, "/internal/v1/join-tokens", Some(&req))
                .await?;
            if ctx.json {
                print_json(&made)?;
            } else {
                println!("{}", made.token);
                eprintln!(
                    "Put it in the file the new host's config names as join_token_file; it works once{}.",
                    made.host
                        .as_deref()
                        .map(|h| format!(", for host {h}"))
                        .unwrap_or_default()
                );
            }
        }
        HostsCommand::Revoke { host } => {
            op.send(
                Method::DELETE,
                &format!("/internal/v1/hosts/{host}/credential"),
                None::<&()>,
            )
            .await?;
            if ctx.json {
                print_json(&serde_json::json!({"host": host, "revoked": true}))?;
            } else {
                println!(
                    "Revoked host {host}'s credential. To let it back in: remove its \
                     host-credential.json, give it a new join token (`aloft hosts join-token \
                     --host {host}`) and start it."
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
