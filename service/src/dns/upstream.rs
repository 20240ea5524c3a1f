//! Forwarding queries that are not the zone's to upstream servers: those
//! of the name's domain (split DNS, chosen by the zone), else the
//! definition's forwarders, else the host's resolv.conf.
//!
//! Each forwarded query gets a fresh socket (a random source port) and a
//! random ID, and only a reply from the server's address with that ID and
//! the same question is taken, which makes forging replies a guessing game
//! over 32 bits. Servers are tried in order, each for `timeout`; a
//! truncated reply is fetched again over TCP when the client itself came
//! over TCP (a UDP client gets the truncated reply and retries over TCP).

use super::answer::{Forward, Transport};
use super::framing;
use super::resolv_conf::Watched;
use hickory_proto::op::{Header, MessageType, Query};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout, timeout_at, Instant};

/// How long one upstream server has to answer over UDP.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

const RCODE_SERVFAIL: u8 = 2;
const RCODE_REFUSED: u8 = 5;

/// Why one exchange with one upstream server gave nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("the reply does not answer the query")]
    Mismatch,
    #[error("the query is too long for TCP")]
    TooLong,
}

/// Where forwarded queries go. Cheap to clone: clones share the servers
/// and the state of the resolv.conf they follow, and see a
/// [`Upstreams::replace_with`] made through any of them.
#[derive(Debug, Clone)]
pub struct Upstreams {
    /// Locked only to copy the `Arc` out or swap it, never across an await.
    source: Arc<std::sync::RwLock<Arc<Source>>>,
    timeout: Duration,
}

#[derive(Debug)]
enum Source {
    Fixed(Arc<[SocketAddr]>),
    /// Locked only to look at the file, never across an await.
    ResolvConf(Mutex<Watched>),
}

impl Upstreams {
    /// The definition's forwarders, on port 53.
    pub fn fixed(servers: Vec<IpAddr>) -> Upstreams {
        Upstreams::fixed_addrs(
            servers
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 53))
                .collect(),
        )
    }

    /// Servers with their ports (tests run upstream servers on other ports).
    pub fn fixed_addrs(servers: Vec<SocketAddr>) -> Upstreams {
        Upstreams {
            source: Arc::new(std::sync::RwLock::new(Arc::new(Source::Fixed(
                servers.into(),
            )))),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The name servers of a resolv.conf, re-read when its identity (inode,
    /// size, mtime) changes, looked at no more than once a second.
    pub fn resolv_conf(path: PathBuf) -> Upstreams {
        Upstreams {
            source: Arc::new(std::sync::RwLock::new(Arc::new(Source::ResolvConf(
                Mutex::new(Watched::new(path)),
            )))),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// How long each server has to answer over UDP (TCP gets twice that).
    pub fn with_timeout(mut self, timeout: Duration) -> Upstreams {
        self.timeout = timeout;
        self
    }

    /// How often a resolv.conf is looked at, at most (tests shorten it).
    pub fn with_recheck_interval(self, interval: Duration) -> Upstreams {
        if let Source::ResolvConf(watched) = &*self.current() {
            watched
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .recheck = interval;
        }
        self
    }

    fn current(&self) -> Arc<Source> {
        self.source
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// From now on, forwards where `other` does (an Update that changed the
    /// forwarders): the server keeps its sockets and queries in flight.
    pub fn replace_with(&self, other: &Upstreams) {
        let next = other.current();
        *self.source.write().unwrap_or_else(PoisonError::into_inner) = next;
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The servers now, in order.
    pub fn servers(&self) -> Arc<[SocketAddr]> {
        match &*self.current() {
            Source::Fixed(servers) => servers.clone(),
            Source::ResolvConf(watched) => watched
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .servers(),
        }
    }

    /// The reply for the client of `fwd`: the first usable upstream reply,
    /// else SERVFAIL. The servers are those of the query's domain when the
    /// zone gave some (split DNS), else these. `own` (the server's own
    /// address) is skipped, so a resolv.conf naming the bridge address
    /// cannot make a loop.
    pub async fn forward(&self, fwd: &Forward, client: Transport, own: SocketAddr) -> Vec<u8> {
        let servers = match &fwd.servers {
            Some(servers) => servers.clone(),
            None => self.servers(),
        };
        // An upstream SERVFAIL or REFUSED is kept in case no one does better.
        let mut fallback: Option<Vec<u8>> = None;
        for &server in servers.iter() {
            if server == own {
                continue;
            }
            let mut reply = match udp_exchange(server, fwd, self.timeout).await {
                Ok(reply) => reply,
                Err(e) => {
                    tracing::debug!(%server, "upstream DNS server failed: {e}");
                    continue;
                }
            };
            if is_truncated(&reply) && client == Transport::Tcp {
                match tcp_exchange(server, fwd, self.timeout * 2).await {
                    Ok(full) => reply = full,
                    Err(e) => {
                        tracing::debug!(%server, "upstream DNS server failed over TCP: {e}");
                        fallback.get_or_insert(reply);
                        continue;
                    }
                }
            }
            if matches!(rcode(&reply), RCODE_SERVFAIL | RCODE_REFUSED) {
                fallback = Some(reply);
                continue;
            }
            return fwd.finish(&reply);
        }
        match fallback {
            Some(reply) => fwd.finish(&reply),
            None => fwd.servfail(),
        }
    }
}

/// Whether `reply` is a response with `id` to exactly `question`.
pub fn answers(reply: &[u8], id: u16, question: &Query) -> bool {
    let mut dec = BinDecoder::new(reply);
    let Ok(header) = Header::read(&mut dec) else {
        return false;
    };
    header.message_type == MessageType::Response
        && header.id == id
        && header.counts.queries == 1
        && Query::read(&mut dec).is_ok_and(|q| q == *question)
}

fn is_truncated(reply: &[u8]) -> bool {
    reply.get(2).is_some_and(|b| b & 0x02 != 0)
}

fn rcode(reply: &[u8]) -> u8 {
    reply.get(3).map_or(0, |b| b & 0x0f)
}

async fn udp_exchange(
    server: SocketAddr,
    fwd: &Forward,
    wait: Duration,
) -> Result<Vec<u8>, ExchangeError> {
    let any: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    // Connected: the kernel drops datagrams from any other address.
    let socket = UdpSocket::bind(any).await?;
    socket.connect(server).await?;
    let id = random_id();
    socket.send(&fwd.query_with_id(id)).await?;
    let deadline = Instant::now() + wait;
    // One byte more than the client can take, so that a reply cut by the
    // buffer is still seen as too long and truncated for the client.
    let mut buf = vec![0u8; fwd.reply_limit.min(framing::MAX_MESSAGE) + 1];
    loop {
        let n = timeout_at(deadline, socket.recv(&mut buf))
            .await
            .map_err(|_| ExchangeError::Timeout(wait))??;
        if answers(&buf[..n], id, &fwd.question) {
            buf.truncate(n);
            return Ok(buf);
        }
        // A stray or forged datagram: keep waiting for the real reply.
    }
}

async fn tcp_exchange(
    server: SocketAddr,
    fwd: &Forward,
    wait: Duration,
) -> Result<Vec<u8>, ExchangeError> {
    let id = random_id();
    let framed = framing::frame(&fwd.query_with_id(id)).ok_or(ExchangeError::TooLong)?;
    let exchange = async {
        let mut stream = TcpStream::connect(server).await?;
        stream.set_nodelay(true)?;
        stream.write_all(&framed).await?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut reply).await?;
        if answers(&reply, id, &fwd.question) {
            Ok(reply)
        } else {
            Err(ExchangeError::Mismatch)
        }
    };
    timeout(wait, exchange)
        .await
        .map_err(|_| ExchangeError::Timeout(wait))?
}

/// A query ID from the kernel's random pool (predictable IDs are what
/// makes cache poisoning easy).
fn random_id() -> u16 {
    let mut bytes = [0u8; 2];
    // SAFETY: `bytes` is valid for writes of its length.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n == 2 {
        return u16::from_ne_bytes(bytes);
    }
    // No getrandom (very old kernel): std's per-process random hash keys.
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish() as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::answer::{handle_query_over, Action};
    use crate::dns::query::tests::query_bytes;
    use crate::dns::Zone;
    use hickory_proto::op::{Message, ResponseCode};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// How a test upstream server behaves.
    #[derive(Clone, Copy)]
    enum Behaviour {
        /// Answers with one A record 10.9.9.9.
        Answer,
        /// Never answers.
        Silent,
        /// First a reply with a wrong ID, then the right one.
        WrongIdFirst,
        /// Answers with TC set and no records over UDP; fully over TCP.
        TruncatedOverUdp,
        /// Answers REFUSED.
        Refuse,
    }

    /// The reply of a test upstream server to `query`.
    fn respond(query: &[u8], truncated: bool, rcode: u8) -> Vec<u8> {
        let q = crate::dns::query::parse(query).unwrap();
        let mut out = query[..12 + q.question_bytes.len()].to_vec();
        out[2] |= 0x80 | if truncated { 0x02 } else { 0 };
        out[3] = 0x80 | rcode;
        out[11] = 0;
        if !truncated && rcode == 0 {
            out[7] = 1;
            out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 9, 9, 9]);
        }
        out
    }

    /// A tiny upstream on 127.0.0.1 (UDP and TCP on one port); counts the
    /// UDP queries it sees.
    async fn upstream(behaviour: Behaviour) -> (SocketAddr, Arc<AtomicUsize>) {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            loop {
                let (n, peer) = udp.recv_from(&mut buf).await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let query = &buf[..n];
                match behaviour {
                    Behaviour::Silent => continue,
                    Behaviour::Answer => {
                        udp.send_to(&respond(query, false, 0), peer).await.unwrap();
                    }
                    Behaviour::WrongIdFirst => {
                        let mut forged = respond(query, false, 0);
                        forged[0] ^= 0xff;
                        forged[15] = 66;
                        udp.send_to(&forged, peer).await.unwrap();
                        udp.send_to(&respond(query, false, 0), peer).await.unwrap();
                    }
                    Behaviour::TruncatedOverUdp => {
                        udp.send_to(&respond(query, true, 0), peer).await.unwrap();
                    }
                    Behaviour::Refuse => {
                        udp.send_to(&respond(query, false, 5), peer).await.unwrap();
                    }
                }
            }
        });
        tokio::spawn(async move {
            loop {
                let (mut s, _) = tcp.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut len = [0u8; 2];
                    s.read_exact(&mut len).await.unwrap();
                    let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    s.read_exact(&mut q).await.unwrap();
                    let r = framing::frame(&respond(&q, false, 0)).unwrap();
                    s.write_all(&r).await.unwrap();
                });
            }
        });
        (addr, seen)
    }

    fn forward_of(name: &str, transport: Transport) -> Forward {
        let bytes = query_bytes(0x4242, name, 1, None);
        match handle_query_over(&bytes, &Zone::default(), transport) {
            Action::Forward(f) => f,
            other => panic!("not forwarded: {other:?}"),
        }
    }

    fn own() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    fn a_record(reply: &[u8]) -> Message {
        let m = Message::from_vec(reply).unwrap();
        assert_eq!(m.id, 0x4242);
        m
    }

    #[tokio::test]
    async fn forwards_and_restores_the_client_id() {
        let (addr, seen) = upstream(Behaviour::Answer).await;
        let up = Upstreams::fixed_addrs(vec![addr]);
        let fwd = forward_of("example.com", Transport::Udp);
        let m = a_record(&up.forward(&fwd, Transport::Udp, own()).await);
        assert_eq!(m.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_silent_server_times_out_and_the_next_answers() {
        let (silent, silent_seen) = upstream(Behaviour::Silent).await;
        let (good, _) = upstream(Behaviour::Answer).await;
        let up =
            Upstreams::fixed_addrs(vec![silent, good]).with_timeout(Duration::from_millis(200));
        let fwd = forward_of("example.com", Transport::Udp);
        let started = std::time::Instant::now();
        let m = a_record(&up.forward(&fwd, Transport::Udp, own()).await);
        assert_eq!(m.answers.len(), 1);
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(silent_seen.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn all_silent_is_servfail() {
        let (silent, _) = upstream(Behaviour::Silent).await;
        let up = Upstreams::fixed_addrs(vec![silent]).with_timeout(Duration::from_millis(100));
        let fwd = forward_of("example.com", Transport::Udp);
        let m = a_record(&up.forward(&fwd, Transport::Udp, own()).await);
        assert_eq!(m.response_code, ResponseCode::ServFail);
        // No server at all: SERVFAIL at once.
        let none = Upstreams::fixed(vec![]);
        let m = a_record(&none.forward(&fwd, Transport::Udp, own()).await);
        assert_eq!(m.response_code, ResponseCode::ServFail);
    }

    #[tokio::test]
    async fn never_to_its_own_address() {
        let (addr, seen) = upstream(Behaviour::Answer).await;
        let up = Upstreams::fixed_addrs(vec![addr]);
        let fwd = forward_of("example.com", Transport::Udp);
        let m = a_record(&up.forward(&fwd, Transport::Udp, addr).await);
        assert_eq!(m.response_code, ResponseCode::ServFail);
        assert_eq!(seen.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_reply_with_the_wrong_id_is_ignored() {
        let (addr, _) = upstream(Behaviour::WrongIdFirst).await;
        let up = Upstreams::fixed_addrs(vec![addr]);
        let fwd = forward_of("example.com", Transport::Udp);
        let m = a_record(&up.forward(&fwd, Transport::Udp, own()).await);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].ttl, 60);
    }

    #[tokio::test]
    async fn truncation_goes_to_tcp_for_tcp_clients_only() {
        let (addr, _) = upstream(Behaviour::TruncatedOverUdp).await;
        let up = Upstreams::fixed_addrs(vec![addr]);
        let fwd = forward_of("example.com", Transport::Tcp);
        let m = a_record(&up.forward(&fwd, Transport::Tcp, own()).await);
        assert!(!m.truncation);
        assert_eq!(m.answers.len(), 1);
        let fwd = forward_of("example.com", Transport::Udp);
        let m = a_record(&up.forward(&fwd, Transport::Udp, own()).await);
        assert!(m.truncation);
        assert!(m.answers.is_empty());
    }

    #[tokio::test]
    async fn refused_tries_the_next_server_and_is_kept_as_a_last_resort() {
        let (refusing, _) = upstream(Behaviour::Refuse).await;
        let (good, _) = upstream(Behaviour::Answer).await;
        let fwd = forward_of("example.com", Transport::Udp);
        let up = Upstreams::fixed_addrs(vec![refusing, good]);
        let m = a_record(&up.forward(&fwd, Transport::Udp, own()).await);
        assert_eq!(m.answers.len(), 1);
        let up = Upstreams::fixed_addrs(vec![refusing]);
        let m = a_record(&up.forward(&fwd, Transport::Udp, own()).await);
        assert_eq!(m.response_code, ResponseCode::Refused);
    }

    #[tokio::test]
    async fn a_split_domain_goes_to_its_own_servers_only() {
        let (default, default_seen) = upstream(Behaviour::Answer).await;
        let (silent, silent_seen) = upstream(Behaviour::Silent).await;
        let (split, split_seen) = upstream(Behaviour::Answer).await;
        let up = Upstreams::fixed_addrs(vec![default]).with_timeout(Duration::from_millis(100));
        let mut fwd = forward_of("db.corp.example", Transport::Udp);
        fwd.servers = Some(vec![silent, split].into());
        let m = a_record(&up.forward(&fwd, Transport::Udp, own()).await);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(silent_seen.load(Ordering::SeqCst), 1, "tried in order");
        assert_eq!(split_seen.load(Ordering::SeqCst), 1);
        assert_eq!(default_seen.load(Ordering::SeqCst), 0);
        // Its servers all silent: SERVFAIL, never the default upstream.
        fwd.servers = Some(vec![silent].into());
        let m = a_record(&up.forward(&fwd, Transport::Udp, own()).await);
        assert_eq!(m.response_code, ResponseCode::ServFail);
        assert_eq!(default_seen.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn reply_checks() {
        let query = query_bytes(5, "example.com", 1, None);
        let q = crate::dns::query::parse(&query).unwrap().question;
        let good = respond(&query, false, 0);
        assert!(answers(&good, 5, &q));
        assert!(!answers(&good, 6, &q));
        assert!(!answers(&query, 5, &q), "a query is no reply");
        let other = respond(&query_bytes(5, "example.org", 1, None), false, 0);
        assert!(!answers(&other, 5, &q));
        let aaaa = respond(&query_bytes(5, "example.com", 28, None), false, 0);
        assert!(!answers(&aaaa, 5, &q));
        assert!(!answers(&good[..11], 5, &q));
        assert!(!answers(&good[..20], 5, &q));
    }

    #[test]
    fn ids_vary() {
        let ids: std::collections::HashSet<u16> = (0..64).map(|_| random_id()).collect();
        assert!(ids.len() > 32);
    }

    #[test]
    fn fixed_servers_use_port_53() {
        let up = Upstreams::fixed(vec![
            "10.0.0.1".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        ]);
        assert_eq!(
            &up.servers()[..],
            &[
                "10.0.0.1:53".parse().unwrap(),
                "[2001:db8::1]:53".parse().unwrap()
            ]
        );
    }
}
