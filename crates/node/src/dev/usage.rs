//! What `aloft dev up` prints once it is ready: where everything listens and how to use it (JSON
//! with `--json`).

use super::{ORG, UpArgs};
use crate::{NodeCtx, print_json};
use aloft_types::datadir::DEFAULT_API_URL;
use anyhow::Result;
use std::io::Write;
use std::path::Path;

/// Where the servers of a `dev up` listen.
pub(super) struct Urls<'a> {
    pub api: &'a str,
    pub registry: &'a str,
    pub proxy: &'a str,
    pub https: &'a str,
    /// The development CA's certificate, for clients of the HTTPS listener.
    pub ca: &'a Path,
    pub metrics: &'a str,
}

pub(super) fn print_usage(
    ctx: &NodeCtx,
    args: &UpArgs,
    runtime: &str,
    root: &Path,
    token_file: &Path,
    urls: &Urls<'_>,
) -> Result<()> {
    let Urls {
        api: api_url,
        registry: registry_url,
        proxy: proxy_url,
        https: https_url,
        ca,
        metrics,
    } = *urls;
    let apps_url = proxy_url.replacen("127.0.0.1", "<app>.localhost", 1);
    let apps_https_url = https_url.replacen("127.0.0.1", "<app>.localhost", 1);
    if ctx.json {
        return print_json(&serde_json::json!({
            "api_url": api_url,
            "registry_url": registry_url,
            "proxy_url": proxy_url,
            "proxy_https_url": https_url,
            "ca_file": ca,
            "metrics_url": metrics,
            "data_dir": root,
            "token_file": token_file,
            "org": ORG,
            "region": args.region,
            "runtime": runtime,
            "pull": !args.no_pull,
        }));
    }
    let mut out = String::new();
    out.push_str(&format!(
        "aloft is running: a control plane and one host agent (region {}, {runtime} runtime).\n",
        args.region
    ));
    out.push_str(&format!("  Machines API  {api_url}\n"));
    out.push_str(&format!(
        "  apps          {apps_url} and {apps_https_url} (the proxy)\n"
    ));
    out.push_str(&format!(
        "  CA            {} (HTTPS certificates: curl --cacert)\n",
        ca.display()
    ));
    out.push_str(&format!("  metrics       {metrics} (Prometheus)\n"));
    out.push_str(&format!(
        "  registry      {registry_url} (org token as password)\n"
    ));
    out.push_str(&format!("  data          {}\n", root.display()));
    out.push_str(&format!(
        "  API token     {} (org {ORG})\n\n",
        token_file.display()
    ));
    out.push_str("Use it from another shell:\n");
    if api_url != DEFAULT_API_URL {
        out.push_str(&format!("  export ALOFT_API_URL={api_url}\n"));
    }
    out.push_str(&format!(
        "  export ALOFT_API_TOKEN=$(cat {})\n",
        shell_quote(&token_file.display().to_string())
    ));
    let registry_host = registry_url.trim_start_matches("http://");
    if args.no_pull {
        out.push_str("  aloft apps create hello\n");
        out.push_str("  aloft machine run nginx:latest -a hello -p 80:8080/tcp:http\n");
        out.push_str("  aloft machine list -a hello\n");
        out.push_str("  aloft machine exec MACHINE_ID -a hello -- echo hi\n\n");
        out.push_str("--no-pull: machines run without pulling their image (no root filesystem).\n");
    } else {
        out.push_str("  aloft image build --busybox -o oci:/tmp/hello-image:v1\n");
        out.push_str(&format!(
            "  skopeo copy --dest-tls-verify=false --dest-creds x:$ALOFT_API_TOKEN oci:/tmp/hello-image:v1 docker://{registry_host}/{ORG}/hello:v1\n"
        ));
        out.push_str("  aloft apps create hello\n");
        out.push_str("  aloft machine run hello:v1 -a hello -p 80:8080/tcp:http --cmd \"httpd -f -p 8080 -h /etc\"\n");
        out.push_str("  aloft machine exec MACHINE_ID -a hello -- ls /bin\n");
        out.push_str("  aloft machine list -a hello\n");
        out.push_str(&format!(
            "  curl {}/hosts\n\n",
            apps_url.replace("<app>", "hello")
        ));
        out.push_str(&format!(
            "Machines pull their image from this registry (`hello:v1` is {registry_host}/{ORG}/hello:v1) and run it with its defaults.\n"
        ));
    }
    out.push_str(
        "Stop with Ctrl-C or SIGTERM; machines keep running and the next `aloft dev up` reattaches them.\n",
    );
    print!("{out}");
    std::io::stdout().flush()?;
    Ok(())
}

fn shell_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
