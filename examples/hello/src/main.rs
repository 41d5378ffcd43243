//! The example app deployed by aloft's demo: a tiny HTTP/1.1 server with no dependencies, built as
//! a static binary (`-C target-feature=+crt-static`) so its image needs nothing else.
//!
//! It listens on `PORT` (default 8080) on every address, IPv4 and IPv6, and answers every request
//! with the machine it runs on (`FLY_MACHINE_ID`/`ALOFT_MACHINE_ID`), its region and the request's
//! headers, so a user can see which machine the proxy chose and what it added.
//!
//! Two more things show the platform's routing at work:
//! - writes (any method but GET, HEAD and OPTIONS) reaching a machine outside `PRIMARY_REGION` are
//!   answered with `fly-replay: region=<primary>`, and the proxy replays them there (the pattern
//!   for apps whose database's primary lives in one region);
//! - `?sleep=MS` waits that long (at most 30 s) before answering, to see concurrency limits and
//!   overflow to another region.
//!
//! `hello release` is its release task (`[deploy] release_command = "release"` in its fly.toml):
//! what a real app would do before a new version serves (migrate a database), here a line of
//! output and exit code 0; `hello release fail` exits 1, to see a deploy stop on a failed one.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// Who answers: read from the environment the platform gives every machine.
struct Machine {
    id: String,
    region: String,
    /// `PRIMARY_REGION`: where writes go.
    primary: Option<String>,
    greeting: String,
}

impl Machine {
    fn from_env() -> Self {
        let env = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok())
                .unwrap_or_else(|| "unknown".into())
        };
        Self {
            id: env(&["FLY_MACHINE_ID", "ALOFT_MACHINE_ID"]),
            region: env(&["FLY_REGION", "ALOFT_REGION"]),
            primary: std::env::var("PRIMARY_REGION").ok(),
            greeting: std::env::var("GREETING").unwrap_or_else(|_| "Hello from aloft".into()),
        }
    }
}

/// Reads the request head (at most 64 headers of at most 8 KiB in all) and answers it.
fn serve(stream: TcpStream, me: &Machine) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    let mut total = request_line.len();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        total += n;
        if n == 0 || line == "\r\n" || line == "\n" || headers.len() >= 64 || total > 8192 {
            break;
        }
        headers.push(line.trim_end().to_string());
    }
    // The body, read and dropped (closing with it unread could reset the connection).
    let length = headers
        .iter()
        .find_map(|h| {
            let (name, value) = h.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<u64>().ok())?
        })
        .unwrap_or(0);
    std::io::copy(&mut reader.take(length.min(1 << 20)), &mut std::io::sink())?;
    let mut out = stream;
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    if let Some(primary) = &me.primary
        && !matches!(method, "GET" | "HEAD" | "OPTIONS")
        && *primary != me.region
    {
        return write!(
            out,
            "HTTP/1.1 409 Conflict\r\nfly-replay: region={primary}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
        .and_then(|()| out.flush());
    }
    if let Some(ms) = query_value(target, "sleep").and_then(|v| v.parse::<u64>().ok()) {
        std::thread::sleep(Duration::from_millis(ms.min(30_000)));
    }
    let mut body = format!(
        "{}!\nmachine: {}\nregion: {}\nrequest: {}\n\n",
        me.greeting,
        me.id,
        me.region,
        request_line.trim_end()
    );
    for h in &headers {
        body.push_str(h);
        body.push('\n');
    }
    write!(
        out,
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}

/// The value of `name` in the request target's query string.
fn query_value<'a>(target: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = target.split_once('?')?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("release") {
        let greeting = Machine::from_env().greeting;
        if args.get(1).map(String::as_str) == Some("fail") {
            eprintln!("hello: release task for `{greeting}` failed (as asked)");
            std::process::exit(1);
        }
        println!("hello: release task for `{greeting}` done");
        return;
    }
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    // `[::]` accepts IPv4 too where the host allows dual-stack sockets; fall back to IPv4.
    let listener = TcpListener::bind(format!("[::]:{port}"))
        .or_else(|_| TcpListener::bind(format!("0.0.0.0:{port}")))
        .unwrap_or_else(|e| {
            eprintln!("hello: cannot listen on port {port}: {e}");
            std::process::exit(1);
        });
    println!(
        "hello: listening on {}",
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    let me = std::sync::Arc::new(Machine::from_env());
    for stream in listener.incoming().flatten() {
        let me = me.clone();
        std::thread::spawn(move || {
            if let Err(e) = serve(stream, &me) {
                eprintln!("hello: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn answers_with_the_machine_and_the_headers() {
        let reply = answer(b"GET /hi HTTP/1.1\r\nHost: hello.localhost\r\nX-Probe: yes\r\n\r\n");
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.contains("request: GET /hi HTTP/1.1"), "{reply}");
        assert!(reply.contains("X-Probe: yes"), "{reply}");
        assert!(reply.contains("machine: m1\n"), "{reply}");
    }

    /// `request` answered by `serve` as machine m1 in ams, whose primary region is ord.
    fn answer(request: &[u8]) -> String {
        let me = Machine {
            id: "m1".into(),
            region: "ams".into(),
            primary: Some("ord".into()),
            greeting: "hi".into(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            serve(stream, &me).unwrap();
        });
        let mut client = TcpStream::connect(addr).unwrap();
        client.write_all(request).unwrap();
        let mut reply = String::new();
        client.read_to_string(&mut reply).unwrap();
        server.join().unwrap();
        reply
    }

    #[test]
    fn writes_outside_the_primary_region_are_replayed_there_and_reads_are_not() {
        let write = answer(b"POST /items HTTP/1.1\r\nHost: h\r\ncontent-length: 5\r\n\r\nhello");
        assert!(write.starts_with("HTTP/1.1 409"), "{write}");
        assert!(write.contains("fly-replay: region=ord\r\n"), "{write}");
        let read = answer(b"GET /items?sleep=20 HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(read.starts_with("HTTP/1.1 200"), "{read}");
        assert!(read.contains("region: ams"), "{read}");
    }

    #[test]
    fn query_values_are_found_by_name() {
        assert_eq!(query_value("/?sleep=100", "sleep"), Some("100"));
        assert_eq!(query_value("/a?x=1&sleep=7", "sleep"), Some("7"));
        assert_eq!(query_value("/a?sleepy=7", "sleep"), None);
        assert_eq!(query_value("/sleep=7", "sleep"), None);
    }
}
