//! Listening: a bind whose error names the option that sets the address, and the URL clients
//! use for a listener.

use anyhow::{Result, anyhow};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use tokio::net::TcpListener;

/// Listens on `addr`; errors name `flag`, the option that sets it.
pub(crate) async fn bind(addr: SocketAddr, flag: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow!("{addr} is in use: is another `aloft dev up` running? stop it or pass {flag}")
        } else {
            anyhow!("cannot listen on {addr}: {e}; pass another {flag} (e.g. 127.0.0.1:0)")
        }
    })
}

/// The URL clients use for a listening address (loopback when it listens on every address).
pub(crate) fn url_for(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_for_listeners() {
        assert_eq!(
            url_for("127.0.0.1:4280".parse().unwrap()),
            "http://127.0.0.1:4280"
        );
        assert_eq!(url_for("0.0.0.0:1".parse().unwrap()), "http://127.0.0.1:1");
        assert_eq!(url_for("[::]:2".parse().unwrap()), "http://[::1]:2");
    }
}
