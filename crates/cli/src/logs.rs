//! `aloft logs`: the log lines of an app's machines (stdout, stderr and, for microVMs, the
//! console), merged by time, then followed until Ctrl-C unless `--no-tail`.

use crate::Ctx;
use crate::machine::{AppArg, app_missing};
use aloft_types::api::{ListMachinesQuery, LogLine};
use aloft_types::{ApiError, Machine};
use anyhow::Result;
use clap::Args;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::time::Duration;

/// How often a followed log asks for new lines.
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    app: AppArg,
    /// Only this machine.
    #[arg(short = 'm', long = "machine", value_name = "ID")]
    machine: Option<String>,
    /// Only machines in this region.
    #[arg(short = 'r', long = "region")]
    region: Option<String>,
    /// Print what there is and exit instead of following new lines.
    #[arg(long)]
    no_tail: bool,
}

/// One line as `--json` prints it (one JSON object per line).
#[derive(Debug, Serialize)]
struct Entry<'a> {
    timestamp: String,
    machine: &'a str,
    region: &'a str,
    stream: &'a str,
    message: &'a str,
}

pub async fn run(ctx: &Ctx, args: LogsArgs) -> Result<ExitCode> {
    let app = ctx.app_of(&args.app)?;
    let client = ctx.client()?;
    // Per machine: the newest timestamp printed and how many lines at exactly that time, so a
    // poll prints only what is new even when lines share a millisecond.
    let mut seen: HashMap<String, (i64, usize)> = HashMap::new();
    loop {
        let query = ListMachinesQuery {
            region: args.region.clone(),
            ..Default::default()
        };
        let machines = match client.list_machines(&app, &query).await {
            Ok(list) => list.machines,
            Err(e) if matches!(e.api(), Some(ApiError::NotFound(_))) => {
                return Err(app_missing(&client, &app).await);
            }
            Err(e) => return Err(e.into()),
        };
        let machines: Vec<&Machine> = machines
            .iter()
            .filter(|m| args.machine.as_deref().is_none_or(|id| m.id.as_str() == id))
            .collect();
        if let (Some(id), true) = (&args.machine, machines.is_empty()) {
            anyhow::bail!(
                "app `{app}` has no machine {id}; `aloft machine list -a {app}` shows its machines"
            );
        }
        let mut batch: BTreeMap<(i64, usize), (&Machine, LogLine)> = BTreeMap::new();
        for m in &machines {
            // A machine that disappears between the listing and this call has no more logs.
            let (last, at_last) = seen.get(m.id.as_str()).copied().unwrap_or((i64::MIN, 0));
            let since = (last != i64::MIN).then_some(last);
            let Ok(lines) = client.logs(&app, m.id.as_str(), since).await else {
                continue;
            };
            let mut same = 0;
            let mut newest = (last, at_last);
            for line in lines {
                if line.timestamp < last {
                    continue;
                }
                if line.timestamp == last {
                    same += 1;
                    if same <= at_last {
                        continue;
                    }
                }
                newest = if line.timestamp == newest.0 {
                    (newest.0, newest.1 + 1)
                } else {
                    (line.timestamp, 1)
                };
                let key = (line.timestamp, batch.len());
                batch.insert(key, (m, line));
            }
            seen.insert(m.id.to_string(), newest);
        }
        for (m, line) in batch.values() {
            print_line(ctx, m, line)?;
        }
        if args.no_tail {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(POLL).await;
    }
}

fn print_line(ctx: &Ctx, m: &Machine, line: &LogLine) -> Result<()> {
    let timestamp = aloft_types::time::rfc3339_millis(line.timestamp);
    if ctx.json {
        let entry = Entry {
            timestamp,
            machine: m.id.as_str(),
            region: &m.region,
            stream: &line.stream,
            message: &line.message,
        };
        println!("{}", serde_json::to_string(&entry)?);
        return Ok(());
    }
    let marker = if line.stream == "stderr" { "!" } else { " " };
    println!(
        "{timestamp} {}[{}]{marker} {}",
        m.region, m.id, line.message
    );
    Ok(())
}
