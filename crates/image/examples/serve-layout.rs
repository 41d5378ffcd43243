//! Serves an OCI layout directory read-only as one repository over the distribution API (the
//! test registry of this crate's tests), for benchmarks and manual tries:
//!
//! ```text
//! cargo run --release -p aloft-image --example serve-layout -- \
//!     --layout DIR --repo bench/app [--addr 127.0.0.1:0]
//! ```
//!
//! Prints `listening on http://ADDR` once it accepts connections, and runs until killed.

#[path = "../tests/common/server.rs"]
mod server;

use std::io::Write;

const USAGE: &str = "usage: serve-layout --layout DIR --repo NAME [--addr 127.0.0.1:0]";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut layout = None;
    let mut repo = None;
    let mut addr = "127.0.0.1:0".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value; {USAGE}"));
        match flag.as_str() {
            "--layout" => layout = Some(value()?),
            "--repo" => repo = Some(value()?),
            "--addr" => addr = value()?,
            _ => return Err(format!("unknown argument `{flag}`; {USAGE}").into()),
        }
    }
    let (layout, repo) = (layout.ok_or(USAGE)?, repo.ok_or(USAGE)?);
    let registry = server::TestRegistry::start_on(&addr, layout, &repo, server::Auth::None).await;
    println!("listening on http://{}", registry.host());
    std::io::stdout().flush()?;
    tokio::signal::ctrl_c().await?;
    Ok(())
}
