//! `aloft machine exec`: a command run in a started machine, its output printed and its exit
//! code passed on.

use super::args::ExecArgs;
use super::scope::Scope;
use crate::Ctx;
use crate::output::print_json;
use aloft_types::api::ExecRequest;
use aloft_types::time::parse_duration;
use anyhow::{Result, anyhow};
use std::io::Write;
use std::process::ExitCode;

pub(super) async fn exec(ctx: &Ctx, args: ExecArgs) -> Result<ExitCode> {
    let scope = Scope::new(ctx, &args.id.app)?;
    let id = &args.id.id;
    let timeout = parse_duration(&args.timeout).map_err(|e| anyhow!("--timeout: {e}"))?;
    let req = ExecRequest {
        command: args.command.clone(),
        cmd: None,
        timeout: Some(timeout.as_secs().max(1)),
        stdin: None,
    };
    let resp = match scope.client.exec(&scope.app, id, &req).await {
        Ok(r) => r,
        Err(e) => return Err(scope.explain(e, Some(id)).await),
    };
    if ctx.json {
        print_json(&resp)?;
    } else {
        print!("{}", resp.stdout);
        eprint!("{}", resp.stderr);
        std::io::stdout().flush()?;
        if resp.truncated {
            eprintln!(
                "the output passed exec's limit (1 MiB of each stream): it was cut there and the \
                 command ended; write bulk output to a file or a volume and read it in parts"
            );
        }
    }
    let code = match resp.exit_code {
        c @ 0..=255 => c,
        _ if resp.exit_signal > 0 => 128 + resp.exit_signal,
        _ => 1,
    };
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
