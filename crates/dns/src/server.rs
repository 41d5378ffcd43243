//! The DNS server on a host: `.internal` names from a [`Directory`] of started machines, every
//! other name relayed to the host's upstream resolvers. Over UDP, answers too large for the
//! client are truncated; clients then ask again over TCP ([`Dns::serve_tcp`]), where they are
//! whole.

use crate::names::{self, Answer, Entry};
use crate::wire::{self, Rcode, WireError};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

/// How long answers about machines may be cached: short, as machines come and go.
const TTL: u32 = 5;
/// How long an upstream resolver gets to answer before the next is asked.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Queries handled at once; more are dropped (the client retries), so a flood cannot exhaust
/// the host.
const MAX_IN_FLIGHT: usize = 256;
/// TCP connections served at once, and from one client address.
const MAX_TCP_CONNECTIONS: usize = 64;
const MAX_TCP_PER_CLIENT: usize = 4;
/// How long a TCP connection may sit without a query, or take to read an answer.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// How long a TCP connection is served at most.
const TCP_LIFETIME: Duration = Duration::from_secs(60);

/// The started machines internal DNS answers with, from memory.
pub trait Directory: Send + Sync + 'static {
    fn entries(&self) -> Arc<Vec<Entry>>;

    /// The measured round trip (ms) from this host to `region`'s nearest host, if known.
    fn rtt_ms(&self, _region: &str) -> Option<u64> {
        None
    }
}

pub struct Dns {
    directory: Arc<dyn Directory>,
    upstreams: Vec<SocketAddr>,
    /// This host's region: where "nearest" starts for an asker it cannot place.
    region: String,
}

impl Dns {
    pub fn new(directory: Arc<dyn Directory>, upstreams: Vec<SocketAddr>, region: String) -> Self {
        Self {
            directory,
            upstreams,
            region,
        }
    }

    /// The answer to one message from `from`; `None` for a message that gets none (a
    /// response, or something too short to carry an id).
    pub async fn handle(&self, msg: &[u8], from: IpAddr) -> Option<Vec<u8>> {
        self.answer(msg, from, None).await
    }

    /// [`Dns::handle`], with answers limited to `limit` bytes instead of the client's UDP size.
    async fn answer(&self, msg: &[u8], from: IpAddr, limit: Option<usize>) -> Option<Vec<u8>> {
        let q = match wire::parse_query(msg) {
            Ok(mut q) => {
                if let Some(limit) = limit {
                    q.udp_size = limit;
                }
                q
            }
            Err(WireError::NotAQuery) if msg.get(2).is_some_and(|f| f & 0x80 != 0) => return None,
            Err(e) => {
                tracing::debug!(%from, "a malformed query: {e}");
                let rcode = match e {
                    WireError::NotAQuery => Rcode::NotImp,
                    _ => Rcode::FormErr,
                };
                return wire::message_id(msg).map(|id| wire::bare_error(id, rcode));
            }
        };
        if names::is_internal(&q.name) {
            let asker = match from {
                IpAddr::V6(ip) => ip,
                IpAddr::V4(ip) => ip.to_ipv6_mapped(),
            };
            let entries = self.directory.entries();
            let (rcode, records) =
                match names::answer(&q.name, q.qtype, asker, &self.region, &entries, &|r| {
                    self.directory.rtt_ms(r)
                }) {
                    Answer::Records(r) => (Rcode::NoError, r),
                    Answer::NxDomain => (Rcode::NxDomain, Vec::new()),
                    Answer::Refused => (Rcode::Refused, Vec::new()),
                };
            return Some(wire::response(&q, rcode, &records, TTL));
        }
        // A client asking over TCP (an answer too large for UDP) is relayed over TCP.
        let answer = match limit {
            Some(_) => self.forward_tcp(msg, q.id).await,
            None => self.forward(msg, q.id).await,
        };
        match answer {
            Some(answer) => Some(answer),
            None => Some(wire::response(&q, Rcode::ServFail, &[], 0)),
        }
    }

    /// Relays `msg` over TCP to each upstream in turn until one answers it.
    async fn forward_tcp(&self, msg: &[u8], id: u16) -> Option<Vec<u8>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for upstream in &self.upstreams {
            let exchange = async {
                let mut stream = tokio::net::TcpStream::connect(upstream).await?;
                let mut out = (msg.len() as u16).to_be_bytes().to_vec();
                out.extend(msg);
                stream.write_all(&out).await?;
                let mut len = [0u8; 2];
                stream.read_exact(&mut len).await?;
                let mut answer = vec![0; usize::from(u16::from_be_bytes(len))];
                stream.read_exact(&mut answer).await?;
                Ok::<_, std::io::Error>(answer)
            };
            match tokio::time::timeout(UPSTREAM_TIMEOUT, exchange).await {
                Ok(Ok(answer)) if wire::message_id(&answer) == Some(id) => return Some(answer),
                _ => tracing::debug!(%upstream, "no answer over TCP from the upstream resolver"),
            }
        }
        None
    }

    /// Relays `msg` to each upstream in turn until one answers it.
    async fn forward(&self, msg: &[u8], id: u16) -> Option<Vec<u8>> {
        for upstream in &self.upstreams {
            let bind: SocketAddr = if upstream.is_ipv4() {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let Ok(socket) = UdpSocket::bind(bind).await else {
                continue;
            };
            if socket.send_to(msg, upstream).await.is_err() {
                continue;
            }
            let mut buf = vec![0; usize::from(u16::MAX)];
            let deadline = tokio::time::Instant::now() + UPSTREAM_TIMEOUT;
            // Anything else arriving on the socket (not from the upstream, another id) is
            // ignored.
            while let Ok(Ok((n, sender))) =
                tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await
            {
                if sender == *upstream && wire::message_id(&buf[..n]) == Some(id) {
                    return Some(buf[..n].to_vec());
                }
            }
            tracing::debug!(%upstream, "no answer from the upstream resolver");
        }
        None
    }

    /// Answers queries on `socket` until `shutdown`.
    pub async fn serve(self: Arc<Self>, socket: UdpSocket, shutdown: impl Future<Output = ()>) {
        let socket = Arc::new(socket);
        let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let mut buf = vec![0; 4096];
        tokio::pin!(shutdown);
        loop {
            let (n, from) = tokio::select! {
                received = socket.recv_from(&mut buf) => match received {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!("receiving a query: {e}");
                        continue;
                    }
                },
                () = &mut shutdown => return,
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tracing::debug!(%from, "too many queries at once: dropped");
                continue;
            };
            let msg = buf[..n].to_vec();
            let (dns, socket) = (self.clone(), socket.clone());
            tokio::spawn(async move {
                if let Some(answer) = dns.handle(&msg, from.ip()).await {
                    let _ = socket.send_to(&answer, from).await;
                }
                drop(permit);
            });
        }
    }
}

impl Dns {
    /// Answers queries over TCP on `listener` (two-byte length before each message, several
    /// per connection) until `shutdown`; an idle connection is closed after 10 s.
    pub async fn serve_tcp(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) {
        let permits = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
        // Connections per client address: one machine cannot take every slot.
        let per_client: Arc<parking_lot::Mutex<std::collections::HashMap<IpAddr, usize>>> =
            Arc::default();
        tokio::pin!(shutdown);
        loop {
            let (stream, from) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!("accepting a DNS connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => return,
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                continue;
            };
            let client = from.ip();
            {
                let mut open = per_client.lock();
                let n = open.entry(client).or_default();
                if *n >= MAX_TCP_PER_CLIENT {
                    tracing::debug!(%client, "too many DNS connections from one client: closed");
                    continue;
                }
                *n += 1;
            }
            let (dns, per_client) = (self.clone(), per_client.clone());
            tokio::spawn(async move {
                let _ = dns.tcp_connection(stream, client).await;
                let mut open = per_client.lock();
                if let Some(n) = open.get_mut(&client) {
                    *n -= 1;
                    if *n == 0 {
                        open.remove(&client);
                    }
                }
                drop(permit);
            });
        }
    }

    async fn tcp_connection(
        &self,
        mut stream: tokio::net::TcpStream,
        from: IpAddr,
    ) -> std::io::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let opened = tokio::time::Instant::now();
        // A connection is not kept for ever (slots are few), and a client that does not read
        // its answers is dropped.
        while opened.elapsed() < TCP_LIFETIME {
            let mut len = [0u8; 2];
            match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
                Ok(Ok(_)) => {}
                _ => return Ok(()),
            }
            let mut msg = vec![0; usize::from(u16::from_be_bytes(len))];
            tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut msg))
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
            let Some(answer) = self.answer(&msg, from, Some(usize::from(u16::MAX))).await else {
                return Ok(());
            };
            let mut out = Vec::with_capacity(answer.len() + 2);
            out.extend((answer.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
            out.extend(answer);
            tokio::time::timeout(TCP_IDLE, stream.write_all(&out))
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        }
        Ok(())
    }
}

/// The host's resolvers, from `/etc/resolv.conf` (this runs on the host, so loopback ones such
/// as systemd-resolved's stub work), on port 53.
pub fn host_upstreams() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .map(|text| upstreams_of(&text))
        .unwrap_or_default()
}

fn upstreams_of(resolv_conf: &str) -> Vec<SocketAddr> {
    aloft_types::resolv::nameservers(resolv_conf)
        .filter(|ip| !ip.is_unspecified() && *ip != IpAddr::V6(crate::INTERNAL_DNS))
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{TYPE_AAAA, query_bytes};

    struct Fixed(Arc<Vec<Entry>>);

    impl Directory for Fixed {
        fn entries(&self) -> Arc<Vec<Entry>> {
            self.0.clone()
        }
    }

    fn dns(upstreams: Vec<SocketAddr>) -> Dns {
        let entries = vec![Entry {
            id: "m1".into(),
            app: "web".into(),
            region: "local".into(),
            ip: "fdaa:0:1:0:1:0:1:2".parse().unwrap(),
        }];
        Dns::new(
            Arc::new(Fixed(Arc::new(entries))),
            upstreams,
            "local".into(),
        )
    }

    fn rcode(answer: &[u8]) -> u8 {
        answer[3] & 0x0f
    }

    #[tokio::test]
    async fn internal_names_are_answered_for_machines_of_the_org() {
        let d = dns(Vec::new());
        let machine: IpAddr = "fdaa:0:1:0:1:0:9:2".parse().unwrap();
        let a = d
            .handle(&query_bytes(5, "web.internal", TYPE_AAAA, None), machine)
            .await
            .unwrap();
        assert_eq!(rcode(&a), 0);
        assert_eq!(&a[6..8], &1u16.to_be_bytes());
        let a = d
            .handle(&query_bytes(5, "nope.internal", TYPE_AAAA, None), machine)
            .await
            .unwrap();
        assert_eq!(rcode(&a), 3);
        let other_org: IpAddr = "fdaa:0:2:0:1:0:1:2".parse().unwrap();
        let a = d
            .handle(&query_bytes(5, "web.internal", TYPE_AAAA, None), other_org)
            .await
            .unwrap();
        assert_eq!(rcode(&a), 3, "another org's names do not exist for it");
        let a = d.handle(&[0, 9, 1], machine).await.unwrap();
        assert_eq!(rcode(&a), 1, "FORMERR");
        assert!(d.handle(&[0], machine).await.is_none());
    }

    #[tokio::test]
    async fn other_names_are_relayed_upstream_and_servfail_without_one() {
        let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0; 512];
            loop {
                let (n, from) = upstream.recv_from(&mut buf).await.unwrap();
                // A stray packet with another id first: the relay must wait for the real one.
                let mut stray = buf[..n].to_vec();
                stray[1] ^= 0xff;
                stray[2] |= 0x80;
                upstream.send_to(&stray, from).await.unwrap();
                let mut answer = buf[..n].to_vec();
                answer[2] |= 0x80;
                answer[3] = 0x85; // RA, REFUSED: recognisable
                upstream.send_to(&answer, from).await.unwrap();
            }
        });
        let d = dns(vec![addr]);
        let q = query_bytes(77, "example.com", TYPE_AAAA, None);
        let a = d
            .handle(&q, "fdaa:0:1:0:1:0:9:2".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(&a[0..2], &77u16.to_be_bytes());
        assert_eq!(a[3], 0x85);

        let d = dns(Vec::new());
        let a = d
            .handle(&q, "fdaa:0:1:0:1:0:9:2".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(rcode(&a), 2, "SERVFAIL");
    }

    #[tokio::test]
    async fn the_server_answers_over_udp() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(Arc::new(dns(Vec::new())).serve(socket, std::future::pending()));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client
            .send_to(&query_bytes(3, "web.internal", TYPE_AAAA, None), addr)
            .await
            .unwrap();
        let mut buf = [0; 512];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rcode(&buf[..n]), 5, "loopback is not a machine: REFUSED");
    }

    #[tokio::test]
    async fn tcp_answers_whole_and_several_per_connection() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(Arc::new(dns(Vec::new())).serve_tcp(listener, std::future::pending()));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        for id in [1u16, 2] {
            let q = query_bytes(id, "web.internal", TYPE_AAAA, None);
            let mut msg = (q.len() as u16).to_be_bytes().to_vec();
            msg.extend(q);
            s.write_all(&msg).await.unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await.unwrap();
            let mut answer = vec![0; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut answer).await.unwrap();
            assert_eq!(&answer[0..2], &id.to_be_bytes());
            assert_eq!(rcode(&answer), 5, "loopback is not a machine: REFUSED");
        }
    }

    #[tokio::test]
    async fn one_client_gets_a_few_tcp_connections_only() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(Arc::new(dns(Vec::new())).serve_tcp(listener, std::future::pending()));
        let mut held = Vec::new();
        for _ in 0..MAX_TCP_PER_CLIENT {
            held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        // Over the limit: closed at once (a query gets no answer).
        let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
        let q = query_bytes(1, "web.internal", TYPE_AAAA, None);
        let mut msg = (q.len() as u16).to_be_bytes().to_vec();
        msg.extend(q);
        let _ = extra.write_all(&msg).await;
        let mut buf = [0u8; 2];
        let read = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf))
            .await
            .expect("closed, not left hanging");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // One let go: a new connection is served.
        drop(held.pop());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut again = tokio::net::TcpStream::connect(addr).await.unwrap();
        again.write_all(&msg).await.unwrap();
        let mut len = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(5), again.read_exact(&mut len))
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn queries_over_tcp_are_relayed_over_tcp() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = upstream.accept().await.unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await.unwrap();
            let mut q = vec![0; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut q).await.unwrap();
            q[2] |= 0x80;
            q[3] = 0x84; // RA, NOTIMP: recognisable
            let mut out = (q.len() as u16).to_be_bytes().to_vec();
            out.extend(q);
            s.write_all(&out).await.unwrap();
        });
        let d = dns(vec![addr]);
        let q = query_bytes(78, "example.com", TYPE_AAAA, None);
        let machine: IpAddr = "fdaa:0:1:0:1:0:9:2".parse().unwrap();
        let a = d.answer(&q, machine, Some(65535)).await.unwrap();
        assert_eq!(&a[0..2], &78u16.to_be_bytes());
        assert_eq!(a[3], 0x84);
    }

    #[test]
    fn upstreams_come_from_resolv_conf() {
        let conf = "nameserver 127.0.0.53\nnameserver fdaa::3\nnameserver 2001:db8::53\nsearch x\n";
        assert_eq!(
            upstreams_of(conf),
            [
                "127.0.0.53:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::53]:53".parse().unwrap()
            ]
        );
    }
}
