//! The example app deployed by aloft's demo: a tiny HTTP/1.1 server with no dependencies, built as
//! a static binary (`-C target-feature=+crt-static`) so its image needs nothing else.
//!
//! It listens on `PORT` (default 8080) on every address, IPv4 and IPv6, and answers every request
//! with the machine it runs on (`FLY_MACHINE_ID`/`ALOFT_MACHINE_ID`), its region and the request's
//! headers, so a user can see which machine the proxy chose and what it added.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

fn env(names: &[&str]) -> String {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Reads the request head (at most 64 headers of at most 8 KiB in all) and answers it.
fn serve(stream: TcpStream) -> std::io::Result<()> {
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
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello from aloft".into());
    let mut body = format!(
        "{greeting}!\nmachine: {}\nregion: {}\nrequest: {}\n\n",
        env(&["FLY_MACHINE_ID", "ALOFT_MACHINE_ID"]),
        env(&["FLY_REGION", "ALOFT_REGION"]),
        request_line.trim_end()
    );
    for h in &headers {
        body.push_str(h);
        body.push('\n');
    }
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}

fn main() {
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
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            if let Err(e) = serve(stream) {
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
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            serve(stream).unwrap();
        });
        let mut client = TcpStream::connect(addr).unwrap();
        client
            .write_all(b"GET /hi HTTP/1.1\r\nHost: hello.localhost\r\nX-Probe: yes\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        client.read_to_string(&mut reply).unwrap();
        server.join().unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.contains("request: GET /hi HTTP/1.1"), "{reply}");
        assert!(reply.contains("X-Probe: yes"), "{reply}");
        assert!(reply.contains("machine: "), "{reply}");
    }
}
