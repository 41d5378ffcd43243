//! What the proxy writes around what it forwards, and reads from what it gets: the forwarding
//! headers a machine sees (`Fly-*`, `X-Forwarded-*`, `Via`), the hop-by-hop headers it never
//! passes on, the internal `aloft-*` headers between edges and workers, the headers every
//! response carries, the app a request names in `Host`, and the PROXY protocol header in front
//! of passed-through connections.

use super::{Conn, Failure, Proxy};
use crate::names::app_of_name;
use aloft_catalog::Target;
use aloft_types::config::ProxyProtoVersion;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, StatusCode, Uri};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use subtle::ConstantTimeEq;

/// Headers that describe one hop, never passed on (RFC 9110 7.6.1).
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

pub(super) const FLY_CLIENT_IP: HeaderName = HeaderName::from_static("fly-client-ip");
pub(super) const FLY_FORWARDED_PORT: HeaderName = HeaderName::from_static("fly-forwarded-port");
pub(super) const FLY_REGION: HeaderName = HeaderName::from_static("fly-region");
pub(super) const FLY_REQUEST_ID: HeaderName = HeaderName::from_static("fly-request-id");
pub(super) const FLY_REPLAY: HeaderName = HeaderName::from_static("fly-replay");
pub(super) const FLY_REPLAY_SRC: HeaderName = HeaderName::from_static("fly-replay-src");
pub(super) const FLY_PREFER_REGION: HeaderName = HeaderName::from_static("fly-prefer-region");
pub(super) const FLY_FORCE_INSTANCE: HeaderName = HeaderName::from_static("fly-force-instance-id");
pub(super) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(super) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(super) const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub(super) const X_FORWARDED_SSL: HeaderName = HeaderName::from_static("x-forwarded-ssl");
const VIA: &str = "1.1 aloft";
/// Edge to worker: the machine the edge picked, the public port the client used, and the
/// cluster's token. Never taken from clients.
pub(super) const ALOFT_TARGET: HeaderName = HeaderName::from_static("aloft-target");
pub(super) const ALOFT_PORT: HeaderName = HeaderName::from_static("aloft-port");
pub(super) const ALOFT_WORKER_TOKEN: HeaderName = HeaderName::from_static("aloft-worker-token");
/// Edge to worker, on a `CONNECT` for a connection passed through whole: the client's address
/// and the address it connected to (for the machine's PROXY header).
pub(super) const ALOFT_TCP: HeaderName = HeaderName::from_static("aloft-tcp");
/// Worker to edge: the machine cannot take the request (full, or no longer running); the edge
/// tries its next choice.
pub(super) const ALOFT_REFUSED: HeaderName = HeaderName::from_static("aloft-refused");

impl Proxy {
    /// The request's headers as the machine gets them.
    pub(super) fn forward_headers(
        &self,
        mut h: HeaderMap,
        uri: &Uri,
        conn: Conn,
        request_id: &str,
        upgrade: bool,
    ) -> HeaderMap {
        strip_hop_by_hop(&mut h, upgrade);
        if !h.contains_key(header::HOST)
            && let Some(a) = uri.authority()
            && let Ok(v) = HeaderValue::from_str(a.as_str())
        {
            h.insert(header::HOST, v);
        }
        let ip = conn.peer.ip();
        let ip_text = canonical_ip(ip);
        // Clients cannot choose their own address.
        h.insert(FLY_CLIENT_IP, value(&ip_text));
        let xff = match h.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prior) if !prior.trim().is_empty() => format!("{prior}, {ip_text}"),
            _ => ip_text,
        };
        h.insert(X_FORWARDED_FOR, value(&xff));
        let port = HeaderValue::from(conn.listener.public_port);
        let https = conn.listener.https;
        h.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(if https { "https" } else { "http" }),
        );
        h.insert(
            X_FORWARDED_SSL,
            HeaderValue::from_static(if https { "on" } else { "off" }),
        );
        h.insert(X_FORWARDED_PORT, port.clone());
        h.insert(FLY_FORWARDED_PORT, port);
        h.insert(FLY_REGION, self.inner.region.clone());
        h.insert(FLY_REQUEST_ID, value(request_id));
        h.remove(&FLY_REPLAY_SRC);
        for internal in [&ALOFT_TARGET, &ALOFT_PORT, &ALOFT_WORKER_TOKEN] {
            h.remove(internal);
        }
        append_via(&mut h);
        h
    }

    /// The headers that tell the worker on `target`'s host which machine and port.
    pub(super) fn to_worker(&self, h: &mut HeaderMap, target: &Target, conn: Conn) {
        h.insert(ALOFT_TARGET, value(&target.machine_id));
        h.insert(ALOFT_PORT, HeaderValue::from(conn.listener.public_port));
        if let Some(token) = &self.inner.config.worker_token {
            h.insert(ALOFT_WORKER_TOKEN, value(token));
        }
    }

    /// The app a request is for, from `Host` (or the HTTP/2 authority).
    pub(super) fn app_of<B>(&self, req: &Request<B>) -> Result<String, Failure> {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()))
            .unwrap_or_default();
        let name = host
            .rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host.as_str(), |(h, _)| h)
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if let Some(d) = self.inner.config.domains.get(&name) {
            return Ok(d.app);
        }
        let domain = self.inner.config.app_domain.as_deref();
        let app = app_of_name(&name, domain);
        let served = match domain {
            Some(d) => format!("<app>.localhost or <app>.{d}"),
            None => "<app>.localhost".to_string(),
        };
        let app = app.ok_or_else(|| {
            Failure::new(
                StatusCode::NOT_FOUND,
                None,
                format!("no app is served at `{name}`: apps are served as {served}"),
            )
        })?;
        Ok(app.to_string())
    }
}

/// Equal, in a time that does not depend on where they differ.
pub(super) fn constant_time_eq(a: Option<&[u8]>, b: Option<&[u8]>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.ct_eq(b).into(),
        _ => false,
    }
}

pub(super) fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

pub(super) fn header_str(h: &HeaderMap, name: &HeaderName) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// An IPv4 client on a dual-stack socket shows as itself, not as `::ffff:a.b.c.d`.
fn canonical_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

pub(super) fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// Removes hop-by-hop headers, and those `Connection` names; an upgrade keeps `Connection` and
/// `Upgrade`, which the machine needs to see.
pub(super) fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !(upgrade && *n == header::UPGRADE))
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        if upgrade && n == header::CONNECTION {
            continue;
        }
        h.remove(n);
    }
    if !upgrade {
        h.remove(header::UPGRADE);
    }
}

pub(super) fn append_via(h: &mut HeaderMap) {
    let via = match h.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {VIA}"),
        None => VIA.to_string(),
    };
    h.insert(header::VIA, value(&via));
}

/// What every response carries: the request id, `Server` (unless the machine set one), `Via`.
pub(super) fn finish_headers(h: &mut HeaderMap, request_id: &str) {
    h.insert(FLY_REQUEST_ID, value(request_id));
    if !h.contains_key(header::SERVER) {
        h.insert(header::SERVER, HeaderValue::from_static("aloft"));
    }
    append_via(h);
}

/// The PROXY protocol header telling the machine who the client is (`source`) and which
/// address it connected to (`destination`). Mixed families are written as IPv6 (IPv4-mapped).
pub(super) fn proxy_header(
    version: ProxyProtoVersion,
    source: SocketAddr,
    destination: SocketAddr,
) -> Vec<u8> {
    let (source, destination) = match (source.ip(), destination.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => (source, destination),
        _ => (v6(source), v6(destination)),
    };
    match version {
        ProxyProtoVersion::V1 => {
            let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                source.ip(),
                destination.ip(),
                source.port(),
                destination.port()
            )
            .into_bytes()
        }
        ProxyProtoVersion::V2 => {
            let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
            h.push(0x21); // version 2, PROXY
            let mut addresses = Vec::with_capacity(36);
            match (source.ip(), destination.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    h.push(0x11); // TCP over IPv4
                    addresses.extend(s.octets());
                    addresses.extend(d.octets());
                }
                (s, d) => {
                    h.push(0x21); // TCP over IPv6
                    addresses.extend(v6_of(s).octets());
                    addresses.extend(v6_of(d).octets());
                }
            }
            addresses.extend(source.port().to_be_bytes());
            addresses.extend(destination.port().to_be_bytes());
            h.extend((addresses.len() as u16).to_be_bytes());
            h.extend(addresses);
            h
        }
    }
}

fn v6(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(v6_of(a.ip())), a.port())
}

fn v6_of(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_v1_is_one_line() {
        let h = proxy_header(
            ProxyProtoVersion::V1,
            "192.0.2.1:5555".parse().unwrap(),
            "127.0.0.1:5432".parse().unwrap(),
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.1 127.0.0.1 5555 5432\r\n");
        let h = proxy_header(
            ProxyProtoVersion::V1,
            "[2001:db8::1]:5555".parse().unwrap(),
            "127.0.0.1:5432".parse().unwrap(),
        );
        assert_eq!(
            h,
            b"PROXY TCP6 2001:db8::1 ::ffff:127.0.0.1 5555 5432\r\n".to_vec()
        );
    }

    #[test]
    fn proxy_v2_is_the_binary_header() {
        let h = proxy_header(
            ProxyProtoVersion::V2,
            "192.0.2.1:5555".parse().unwrap(),
            "127.0.0.1:5432".parse().unwrap(),
        );
        let mut expected = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        expected.extend([0x21, 0x11, 0, 12, 192, 0, 2, 1, 127, 0, 0, 1]);
        expected.extend(5555u16.to_be_bytes());
        expected.extend(5432u16.to_be_bytes());
        assert_eq!(h, expected);
        let h = proxy_header(
            ProxyProtoVersion::V2,
            "[2001:db8::1]:1".parse().unwrap(),
            "[::1]:2".parse().unwrap(),
        );
        assert_eq!(&h[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(h.len(), 16 + 36);
    }
}
