//! Serves a registry with one fixed token, for benchmarks and manual tries until
//! `aloft server registry` exists:
//!
//! ```text
//! cargo run --release -p aloft-registry --example serve -- \
//!     --data-dir /tmp/reg --addr 127.0.0.1:0 [--token T] [--org O] [--upstream URL]
//! ```
//!
//! Prints `listening on http://ADDR` once it accepts connections; push with
//! `skopeo copy --dest-tls-verify=false --dest-creds x:T ... docker://ADDR/O/name:tag`.

use aloft_registry::{Registry, RegistryConfig, StaticTokens, Upstream};
use std::io::Write;
use std::sync::Arc;

const USAGE: &str = "usage: serve --data-dir DIR [--addr 127.0.0.1:5000] [--token bench-token] [--org bench] [--upstream URL]";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut data_dir = None;
    let mut addr = "127.0.0.1:5000".to_string();
    let mut token = "bench-token".to_string();
    let mut org = "bench".to_string();
    let mut upstream = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value; {USAGE}"));
        match flag.as_str() {
            "--data-dir" => data_dir = Some(value()?),
            "--addr" => addr = value()?,
            "--token" => token = value()?,
            "--org" => org = value()?,
            "--upstream" => upstream = Some(value()?),
            _ => return Err(format!("unknown argument `{flag}`; {USAGE}").into()),
        }
    }
    let data_dir = data_dir.ok_or(USAGE)?;
    let mut config = RegistryConfig::new(data_dir);
    config.upstream = upstream.map(Upstream::new);
    let registry = Registry::open(config, Arc::new(StaticTokens::new([(token, org)]))).await?;
    registry.spawn_janitor();
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    axum::serve(listener, registry.router()).await?;
    Ok(())
}
