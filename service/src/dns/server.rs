//! The sockets and tasks of one network's DNS server.
//!
//! Both sockets are bound to the bridge address and, with SO_BINDTODEVICE,
//! to the bridge itself: on Linux's weak-host model a query for the bridge
//! address arriving on any other interface would otherwise be delivered,
//! making the server an open resolver for whoever can route to the host.
//!
//! UDP: several receive tasks share one socket so that every core answers;
//! local answers are sent from the receive loop itself, forwarded queries
//! run in tasks of their own (at most `MAX_FORWARDS` at once, further ones
//! are dropped and the client retries). TCP: at most
//! `MAX_TCP_CONNECTIONS`, each with an idle and a read deadline and at
//! most `MAX_PIPELINED` queries in flight; one client address holds at most
//! `MAX_TCP_PER_CLIENT` of them, and when every slot is taken a newcomer
//! takes the least recently active slot of the client holding the most, or
//! else the slot held longest (see [`TcpSlots`]), so no client, however
//! busy it keeps its connections and however many addresses it uses, can
//! keep another out.
//!
//! Every task hangs off a task the server holds (through `JoinSet`s):
//! stopping the server tells its loops to take no more queries, and what
//! they started ends with them.

use super::answer::{handle_query_over, Action, Transport, MAX_UDP_QUERY};
use super::framing::{self, Frame};
use super::upstream::Upstreams;
use super::zone::{SharedZone, Zone};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, PoisonError, RwLockReadGuard, Weak};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{timeout, timeout_at, Instant};

/// Forwarded queries in flight at once, over UDP, for one server.
pub const MAX_FORWARDS: usize = 256;
/// TCP connections served at once.
pub const MAX_TCP_CONNECTIONS: usize = 64;
/// TCP connections of one client address served at once: a further one
/// takes the place of that client's least recently active connection.
pub const MAX_TCP_PER_CLIENT: usize = 4;
/// When every slot is taken and each client holds one, a newcomer takes
/// the place of a connection idle for this long, or is closed.
pub const TCP_IDLE_WHEN_FULL: Duration = Duration::from_secs(1);
/// When every slot is taken and none is idle, a newcomer takes the place
/// of the connection open longest, once it has been open this long: time
/// for many queries (a query takes milliseconds), not for keeping a slot.
pub const TCP_GRACE_WHEN_FULL: Duration = Duration::from_secs(2);
/// Queries of one TCP connection in flight at once.
pub const MAX_PIPELINED: usize = 16;
/// A TCP connection without a query for this long is closed.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// A query begun over TCP must be complete within this.
pub const TCP_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A reply must be taken by the TCP client within this.
pub const TCP_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Room for bursts of queries (a benchmark, a boot storm of guests).
const UDP_RECEIVE_BUFFER: usize = 1 << 20;
const TCP_BACKLOG: i32 = 128;

/// One network's DNS server. Dropping it stops it too.
#[derive(Debug)]
pub struct DnsServer {
    local_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    /// Tells every receive and accept loop to stop taking queries.
    shutdown: watch::Sender<bool>,
}

/// What every task of a server needs.
struct Shared {
    zone: SharedZone,
    upstreams: Upstreams,
    /// The server's own address, never used as an upstream.
    own: SocketAddr,
}

impl Shared {
    fn zone(&self) -> RwLockReadGuard<'_, Zone> {
        // A writer that panicked left a zone that is still consistent
        // enough to answer from.
        self.zone.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl DnsServer {
    /// Serves `zone` on `listen`:`port` (port 53 in production; tests may
    /// pass another, or 0 for any free one), UDP and TCP, both sockets bound
    /// to the address and to `interface` (SO_BINDTODEVICE), so that queries
    /// arriving on any other interface are never answered. Forwards the
    /// rest to `upstreams`. Returns once the sockets are bound (bind errors
    /// are returned, e.g. address in use), serving on spawned tokio tasks.
    pub async fn start(
        interface: &str,
        listen: Ipv4Addr,
        port: u16,
        zone: SharedZone,
        upstreams: Upstreams,
    ) -> io::Result<DnsServer> {
        if interface.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a DNS server must be bound to an interface",
            ));
        }
        let (udp, tcp) = bind_both(interface, listen, port)?;
        let udp = UdpSocket::from_std(udp.into())?;
        let local_addr = udp.local_addr()?;
        let tcp = TcpListener::from_std(tcp.into())?;

        let shared = Arc::new(Shared {
            zone,
            upstreams,
            own: local_addr,
        });
        let udp = Arc::new(udp);
        let receivers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, 8);
        let forwards = Arc::new(Semaphore::new(MAX_FORWARDS));
        let (shutdown, stopping) = watch::channel(false);
        let mut tasks: Vec<JoinHandle<()>> = (0..receivers)
            .map(|_| {
                tokio::spawn(serve_udp(
                    udp.clone(),
                    shared.clone(),
                    forwards.clone(),
                    stopping.clone(),
                ))
            })
            .collect();
        tasks.push(tokio::spawn(serve_tcp(tcp, shared, stopping)));
        tracing::debug!(%local_addr, interface, "DNS server started");
        Ok(DnsServer {
            local_addr,
            tasks,
            shutdown,
        })
    }

    /// Where the server listens (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops every task and closes the sockets (also on Drop). The tasks
    /// end on the runtime's next turn; to be sure the address is free again
    /// before binding it anew, use [`DnsServer::stop`].
    pub fn shutdown(self) {
        drop(self);
    }

    /// Stops taking queries (what is in flight ends with its loop) and
    /// returns once the sockets are closed.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// The UDP and TCP sockets on one port. With port 0 TCP takes the port UDP
/// was given, which may be taken for TCP: then another is tried.
fn bind_both(interface: &str, listen: Ipv4Addr, port: u16) -> io::Result<(Socket, Socket)> {
    let mut attempts = if port == 0 { 16 } else { 1 };
    loop {
        let udp = bind_udp(interface, SocketAddrV4::new(listen, port))?;
        let bound = udp.local_addr()?.as_socket().map_or(port, |a| a.port());
        match bind_tcp(interface, SocketAddrV4::new(listen, bound)) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempts > 1 => attempts -= 1,
            Err(e) => return Err(e),
        }
    }
}

fn bind_udp(interface: &str, addr: SocketAddrV4) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.bind_device(Some(interface.as_bytes()))?;
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(UDP_RECEIVE_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::from(addr))?;
    Ok(socket)
}

fn bind_tcp(interface: &str, addr: SocketAddrV4) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.bind_device(Some(interface.as_bytes()))?;
    // A restarted network rebinds at once despite connections in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(TCP_BACKLOG)?;
    Ok(socket)
}

/// One UDP receive loop; the forwards it starts live in its `JoinSet`.
/// Queries are taken up to [`udp_batch::UDP_BATCH`] at a time (`recvmmsg`) and the
/// local answers to them sent together (`sendmmsg`): two system calls for
/// a batch rather than two for each query; the buffers are the loop's own,
/// made once.
async fn serve_udp(
    socket: Arc<UdpSocket>,
    shared: Arc<Shared>,
    forwards: Arc<Semaphore>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut rx = udp_batch::Received::new();
    let mut tx = udp_batch::Outbox::new();
    let mut in_flight = JoinSet::new();
    loop {
        let received = tokio::select! {
            r = socket.async_io(tokio::io::Interest::READABLE, || rx.receive(&*socket)) => r,
            _ = stopping.wait_for(|s| *s) => return,
        };
        if let Err(e) = received {
            tracing::debug!("DNS receive error: {e}");
            // Do not spin if the error persists.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        {
            // The zone lock is released before anything is awaited.
            let zone = shared.zone();
            for (query, peer) in rx.iter() {
                match handle_query_over(query, &zone, Transport::Udp) {
                    Action::Drop => {}
                    Action::Reply(reply) | Action::Reject(reply) => tx.push(reply, peer),
                    Action::Forward(fwd) => {
                        while in_flight.try_join_next().is_some() {}
                        let Ok(permit) = forwards.clone().try_acquire_owned() else {
                            tracing::debug!(%peer, "too many DNS queries in flight; query dropped");
                            continue;
                        };
                        // Weak: a forward still running must not keep the
                        // socket (and so the address) bound after the server
                        // stopped.
                        let socket = Arc::downgrade(&socket);
                        let shared = shared.clone();
                        in_flight.spawn(async move {
                            let reply = shared
                                .upstreams
                                .forward(&fwd, Transport::Udp, shared.own)
                                .await;
                            drop(permit);
                            send_weak(&socket, &reply, peer);
                        });
                    }
                }
            }
        }
        while !tx.is_empty() {
            let sent = tokio::select! {
                r = socket.async_io(tokio::io::Interest::WRITABLE, || tx.send(&*socket)) => r,
                _ = stopping.wait_for(|s| *s) => return,
            };
            if let Err(e) = sent {
                // The first reply cannot go (its peer unreachable, say):
                // it is dropped, the others still go.
                tracing::debug!(peer = %tx.first_peer(), "DNS reply not sent: {e}");
                tx.drop_first();
            }
        }
        tx.clear();
    }
}

/// Batched UDP receive and send with `recvmmsg` and `sendmmsg`.
mod udp_batch {
    use super::MAX_UDP_QUERY;
    use std::io;
    use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
    use std::os::fd::AsRawFd;

    /// Datagrams taken by one `recvmmsg` (and answers sent by one
    /// `sendmmsg`). Each receive loop holds this many buffers of
    /// `MAX_UDP_QUERY` bytes (64 KiB; their pages are touched only as
    /// queries arrive).
    pub const UDP_BATCH: usize = 16;

    /// One buffer per datagram, one byte more than the largest query taken
    /// (to see oversized ones), and each sender's address.
    pub struct Received {
        bufs: Vec<u8>,
        lens: [usize; UDP_BATCH],
        addrs: [libc::sockaddr_in; UDP_BATCH],
        count: usize,
    }

    const SLOT: usize = MAX_UDP_QUERY + 1;

    fn zero_addr() -> libc::sockaddr_in {
        // SAFETY: sockaddr_in is plain old data; all zeroes is valid.
        unsafe { std::mem::zeroed() }
    }

    fn to_socket_addr(a: &libc::sockaddr_in) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
            u16::from_be(a.sin_port),
        ))
    }

    fn to_sockaddr_in(peer: SocketAddr) -> libc::sockaddr_in {
        let mut a = zero_addr();
        if let SocketAddr::V4(v4) = peer {
            a.sin_family = libc::AF_INET as libc::sa_family_t;
            a.sin_port = v4.port().to_be();
            a.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
        }
        a
    }

    impl Received {
        pub fn new() -> Received {
            Received {
                bufs: vec![0; SLOT * UDP_BATCH],
                lens: [0; UDP_BATCH],
                addrs: [zero_addr(); UDP_BATCH],
                count: 0,
            }
        }

        /// Takes what is queued on `socket`, up to [`UDP_BATCH`]
        /// datagrams, without blocking (WouldBlock when none is).
        pub fn receive(&mut self, socket: &impl AsRawFd) -> io::Result<()> {
            self.count = 0;
            // SAFETY: zeroed iovec/mmsghdr are valid; every pointer set
            // below points into self, which outlives the call.
            let mut iovs: [libc::iovec; UDP_BATCH] = unsafe { std::mem::zeroed() };
            let mut msgs: [libc::mmsghdr; UDP_BATCH] = unsafe { std::mem::zeroed() };
            let base = self.bufs.as_mut_ptr();
            for i in 0..UDP_BATCH {
                iovs[i].iov_base = unsafe { base.add(i * SLOT) }.cast();
                iovs[i].iov_len = SLOT;
                let h = &mut msgs[i].msg_hdr;
                h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_in).cast();
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                h.msg_iov = &mut iovs[i];
                h.msg_iovlen = 1;
            }
            // SAFETY: msgs describes UDP_BATCH valid buffers.
            let n = unsafe {
                libc::recvmmsg(
                    socket.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    UDP_BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = n as usize;
            for (i, m) in msgs.iter().enumerate().take(n) {
                // A datagram longer than the slot is cut; its length is then
                // the slot's, which the query parser refuses as oversized.
                self.lens[i] = (m.msg_len as usize).min(SLOT);
            }
            self.count = n;
            Ok(())
        }

        /// The datagrams of the last receive, with their senders.
        pub fn iter(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> + '_ {
            (0..self.count).map(move |i| {
                (
                    &self.bufs[i * SLOT..i * SLOT + self.lens[i]],
                    to_socket_addr(&self.addrs[i]),
                )
            })
        }
    }

    /// Replies waiting to be sent together.
    pub struct Outbox {
        replies: Vec<(Vec<u8>, SocketAddr)>,
        /// How many of `replies` are gone already.
        sent: usize,
    }

    impl Outbox {
        pub fn new() -> Outbox {
            Outbox {
                replies: Vec::with_capacity(UDP_BATCH),
                sent: 0,
            }
        }

        pub fn push(&mut self, reply: Vec<u8>, peer: SocketAddr) {
            self.replies.push((reply, peer));
        }

        pub fn is_empty(&self) -> bool {
            self.sent >= self.replies.len()
        }

        pub fn first_peer(&self) -> SocketAddr {
            self.replies[self.sent].1
        }

        pub fn drop_first(&mut self) {
            self.sent += 1;
        }

        pub fn clear(&mut self) {
            self.replies.clear();
            self.sent = 0;
        }

        /// Sends what is left, as much as the socket takes at once; an
        /// error is the first reply's (WouldBlock: none went).
        pub fn send(&mut self, socket: &impl AsRawFd) -> io::Result<()> {
            let left = &self.replies[self.sent..];
            let n = left.len().min(UDP_BATCH);
            // SAFETY: zeroed iovec/mmsghdr/sockaddr_in are valid; the
            // pointers set below point into `left`, `addrs` and `iovs`,
            // which outlive the call.
            let mut iovs: [libc::iovec; UDP_BATCH] = unsafe { std::mem::zeroed() };
            let mut msgs: [libc::mmsghdr; UDP_BATCH] = unsafe { std::mem::zeroed() };
            let mut addrs = [zero_addr(); UDP_BATCH];
            for (i, (reply, peer)) in left.iter().take(n).enumerate() {
                addrs[i] = to_sockaddr_in(*peer);
                iovs[i].iov_base = reply.as_ptr() as *mut libc::c_void;
                iovs[i].iov_len = reply.len();
                let h = &mut msgs[i].msg_hdr;
                h.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in).cast();
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                h.msg_iov = &mut iovs[i];
                h.msg_iovlen = 1;
            }
            // SAFETY: msgs describes n valid replies and addresses.
            let sent = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if sent < 0 {
                return Err(io::Error::last_os_error());
            }
            self.sent += sent as usize;
            Ok(())
        }
    }
}

fn send_weak(socket: &Weak<UdpSocket>, reply: &[u8], peer: SocketAddr) {
    if let Some(socket) = socket.upgrade() {
        if let Err(e) = socket.try_send_to(reply, peer) {
            tracing::debug!(%peer, "DNS reply not sent: {e}");
        }
    }
}

/// Which TCP connections hold the server's slots, by client address: the
/// admission policy, kept free of sockets so that it is tested alone.
///
/// A newcomer is admitted outright while its address holds fewer than
/// `MAX_TCP_PER_CLIENT` slots and a slot is free. At its address's limit it
/// takes the place of that address's least recently active connection (a
/// client only ever crowds out itself). When every slot is taken it takes
/// the place of the least recently active connection of the address holding
/// the most slots, if that address holds more than one slot beyond the
/// newcomer's or that connection was idle for `TCP_IDLE_WHEN_FULL`. Failing
/// that (every address holds one, say, and keeps it busy), it takes the
/// place of the connection open longest, if that one has been open for
/// `TCP_GRACE_WHEN_FULL`; only when every connection is younger is the
/// newcomer closed. So one guest keeping its connections busy holds
/// `MAX_TCP_PER_CLIENT` slots per address, and one with many addresses
/// (a guest may put any number on its interface) can fill the table but
/// not keep any connection in it for longer than the grace once others
/// knock: a newcomer's query, answered in milliseconds, is served.
///
/// Both maps hold only live connections: at most `MAX_TCP_CONNECTIONS`
/// entries each.
#[derive(Debug, Default)]
struct TcpSlots {
    connections: HashMap<u64, Holder>,
    per_client: HashMap<IpAddr, usize>,
    next_id: u64,
}

#[derive(Debug)]
struct Holder {
    client: IpAddr,
    /// When it was accepted.
    since: Instant,
    /// When it last sent a query (or connected).
    active: Instant,
    /// Told when another connection takes its place.
    evict: Arc<Notify>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Admit,
    /// Admit, in the place of this connection.
    Replace(u64),
    Refuse,
}

impl TcpSlots {
    fn decide(&self, client: IpAddr, now: Instant) -> Admission {
        let least_active = |of: &dyn Fn(IpAddr) -> bool| {
            self.connections
                .iter()
                .filter(|(_, h)| of(h.client))
                .min_by_key(|(id, h)| (h.active, **id))
                .map(|(id, h)| (*id, h.active))
        };
        let own = self.per_client.get(&client).copied().unwrap_or(0);
        if own >= MAX_TCP_PER_CLIENT {
            return match least_active(&|c| c == client) {
                Some((id, _)) => Admission::Replace(id),
                None => Admission::Refuse,
            };
        }
        if self.connections.len() < MAX_TCP_CONNECTIONS {
            return Admission::Admit;
        }
        let most = self.per_client.values().copied().max().unwrap_or(0);
        let crowded = |c: IpAddr| self.per_client.get(&c) == Some(&most);
        match least_active(&crowded) {
            Some((id, active))
                if most > own + 1 || now.duration_since(active) >= TCP_IDLE_WHEN_FULL =>
            {
                return Admission::Replace(id);
            }
            _ => {}
        }
        match self
            .connections
            .iter()
            .min_by_key(|(id, h)| (h.since, **id))
        {
            Some((id, h)) if now.duration_since(h.since) >= TCP_GRACE_WHEN_FULL => {
                Admission::Replace(*id)
            }
            _ => Admission::Refuse,
        }
    }

    /// Admits a connection from `client` if the policy lets it in: its id
    /// and what tells it to leave. The connection it replaces is told.
    fn admit(&mut self, client: IpAddr, now: Instant) -> Option<(u64, Arc<Notify>)> {
        match self.decide(client, now) {
            Admission::Refuse => return None,
            Admission::Replace(id) => {
                if let Some(h) = self.release(id) {
                    h.evict.notify_one();
                }
            }
            Admission::Admit => {}
        }
        let id = self.next_id;
        self.next_id += 1;
        let evict = Arc::new(Notify::new());
        self.connections.insert(
            id,
            Holder {
                client,
                since: now,
                active: now,
                evict: evict.clone(),
            },
        );
        *self.per_client.entry(client).or_insert(0) += 1;
        Some((id, evict))
    }

    fn touch(&mut self, id: u64, now: Instant) {
        if let Some(h) = self.connections.get_mut(&id) {
            h.active = now;
        }
    }

    /// Frees a slot (nothing if it was already given away).
    fn release(&mut self, id: u64) -> Option<Holder> {
        let holder = self.connections.remove(&id)?;
        if let Some(n) = self.per_client.get_mut(&holder.client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&holder.client);
            }
        }
        Some(holder)
    }
}

/// A connection's slot, freed when the connection ends.
struct Slot {
    slots: Arc<Mutex<TcpSlots>>,
    id: u64,
    evict: Arc<Notify>,
}

impl Slot {
    fn table(&self) -> std::sync::MutexGuard<'_, TcpSlots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn touch(&self) {
        self.table().touch(self.id, Instant::now());
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table().release(self.id);
    }
}

/// Accepts TCP clients and gives them slots by [`TcpSlots`]' policy.
async fn serve_tcp(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopping: watch::Receiver<bool>,
) {
    let slots = Arc::new(Mutex::new(TcpSlots::default()));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopping.wait_for(|s| *s) => return,
        };
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, peer)) => {
                // The lock is held for the decision only.
                let admitted = slots
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .admit(peer.ip(), Instant::now());
                let Some((id, evict)) = admitted else {
                    tracing::debug!(%peer, "DNS TCP slots all taken; connection closed");
                    continue;
                };
                let slot = Slot {
                    slots: slots.clone(),
                    id,
                    evict,
                };
                connections.spawn(serve_connection(stream, shared.clone(), slot));
            }
            Err(e) => {
                // Out of descriptors, most likely: wait for some to free up.
                tracing::debug!("DNS TCP accept error: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, slot: Slot) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let (replies, outbox) = mpsc::channel(MAX_PIPELINED);
    let evict = slot.evict.clone();
    let reading = read_queries(reader, shared, replies, &slot);
    let writing = write_replies(writer, outbox);
    tokio::pin!(reading, writing);
    tokio::select! {
        // Another connection took the slot: drop everything.
        () = evict.notified() => {}
        // The writer ends first only when the client stopped taking
        // replies: drop everything (and the forwards in flight with it).
        () = &mut writing => {}
        () = &mut reading => {
            tokio::select! {
                () = evict.notified() => {}
                () = writing => {}
            }
        }
    }
}

/// Reads framed queries until the client is done, idle, too slow or sends
/// garbage; then waits for the forwards in flight.
async fn read_queries(
    mut reader: OwnedReadHalf,
    shared: Arc<Shared>,
    replies: mpsc::Sender<Vec<u8>>,
    slot: &Slot,
) {
    let mut buf = vec![0u8; 512];
    let (mut start, mut filled) = (0, 0);
    // When the partial query at the start of the buffer began arriving.
    let mut partial_since: Option<Instant> = None;
    let mut in_flight = JoinSet::new();
    loop {
        match framing::next_frame(&buf[start..filled]) {
            Frame::Message { message, consumed } => {
                slot.touch();
                let action = handle_query_over(message, &shared.zone(), Transport::Tcp);
                start += consumed;
                partial_since = None;
                match action {
                    Action::Reply(reply) => {
                        if !send_framed(&replies, &reply).await {
                            break;
                        }
                    }
                    Action::Reject(reply) => {
                        send_framed(&replies, &reply).await;
                        break;
                    }
                    Action::Drop => break,
                    Action::Forward(fwd) => {
                        while in_flight.len() >= MAX_PIPELINED {
                            in_flight.join_next().await;
                        }
                        let replies = replies.clone();
                        let shared = shared.clone();
                        in_flight.spawn(async move {
                            let reply = shared
                                .upstreams
                                .forward(&fwd, Transport::Tcp, shared.own)
                                .await;
                            send_framed(&replies, &reply).await;
                        });
                    }
                }
            }
            Frame::Empty => break,
            Frame::Incomplete { needed } => {
                buf.copy_within(start..filled, 0);
                filled -= start;
                start = 0;
                if buf.len() < needed {
                    buf.resize(needed, 0);
                }
                let deadline = match (filled, partial_since) {
                    (0, _) => Instant::now() + TCP_IDLE_TIMEOUT,
                    (_, Some(since)) => since + TCP_READ_TIMEOUT,
                    (_, None) => *partial_since.insert(Instant::now()) + TCP_READ_TIMEOUT,
                };
                match timeout_at(deadline, reader.read(&mut buf[filled..])).await {
                    Ok(Ok(n)) if n > 0 => filled += n,
                    // End of stream, error or timeout.
                    _ => break,
                }
            }
        }
    }
    while in_flight.join_next().await.is_some() {}
}

async fn send_framed(replies: &mpsc::Sender<Vec<u8>>, reply: &[u8]) -> bool {
    match framing::frame(reply) {
        Some(framed) => replies.send(framed).await.is_ok(),
        None => false,
    }
}

async fn write_replies(mut writer: OwnedWriteHalf, mut outbox: mpsc::Receiver<Vec<u8>>) {
    while let Some(framed) = outbox.recv().await {
        match timeout(TCP_WRITE_TIMEOUT, writer.write_all(&framed)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
    let _ = timeout(TCP_WRITE_TIMEOUT, writer.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::query::tests::query_bytes;

    use hickory_proto::op::{Message, ResponseCode};
    use std::sync::RwLock;

    const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

    fn zone() -> SharedZone {
        Arc::new(RwLock::new(super::super::zone::example()))
    }

    /// An upstream on 127.0.0.1 answering every UDP query with 10.9.9.9.
    async fn upstream() -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            loop {
                let (n, peer) = socket.recv_from(&mut buf).await.unwrap();
                let question = crate::dns::query::parse(&buf[..n])
                    .unwrap()
                    .question_bytes
                    .len();
                let mut out = buf[..12 + question].to_vec();
                out[2] |= 0x80;
                out[3] = 0x80;
                out[7] = 1;
                out[11] = 0;
                out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 9, 9, 9]);
                socket.send_to(&out, peer).await.unwrap();
            }
        });
        addr
    }

    async fn start() -> DnsServer {
        let up = Upstreams::fixed_addrs(vec![upstream().await]);
        DnsServer::start("lo", LOOPBACK, 0, zone(), up)
            .await
            .unwrap()
    }

    async fn ask_udp(server: SocketAddr, query: &[u8]) -> Option<Message> {
        ask_udp_within(server, query, Duration::from_secs(3)).await
    }

    async fn ask_udp_within(server: SocketAddr, query: &[u8], wait: Duration) -> Option<Message> {
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(query, server).await.unwrap();
        let mut buf = [0u8; 4096];
        let n = timeout(wait, client.recv(&mut buf)).await.ok()?.unwrap();
        Some(Message::from_vec(&buf[..n]).unwrap())
    }

    async fn read_framed(stream: &mut TcpStream) -> Option<Message> {
        let mut len = [0u8; 2];
        timeout(Duration::from_secs(3), stream.read_exact(&mut len))
            .await
            .ok()?
            .ok()?;
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut body).await.ok()?;
        Some(Message::from_vec(&body).unwrap())
    }

    fn first_a(m: &Message) -> Ipv4Addr {
        match &m.answers[0].data {
            hickory_proto::rr::RData::A(a) => a.0,
            other => panic!("not an A record: {other:?}"),
        }
    }

    #[tokio::test]
    async fn answers_and_forwards_over_udp() {
        let server = start().await;
        let addr = server.local_addr();
        let m = ask_udp(addr, &query_bytes(1, "web.guest.lan", 1, None))
            .await
            .unwrap();
        assert_eq!(first_a(&m), Ipv4Addr::new(192, 168, 122, 5));
        let m = ask_udp(addr, &query_bytes(2, "nope.guest.lan", 1, None))
            .await
            .unwrap();
        assert_eq!(m.response_code, ResponseCode::NXDomain);
        let m = ask_udp(addr, &query_bytes(3, "example.com", 1, Some(1232)))
            .await
            .unwrap();
        assert_eq!(m.id, 3);
        assert_eq!(first_a(&m), Ipv4Addr::new(10, 9, 9, 9));
        // Garbage gets nothing or an error, and the server still serves.
        let short = Duration::from_millis(300);
        assert!(ask_udp_within(addr, &[0xff; 5], short).await.is_none());
        let mut response = query_bytes(4, "web", 1, None);
        response[2] |= 0x80;
        assert!(ask_udp_within(addr, &response, short).await.is_none());
        let m = ask_udp(addr, &[0; 40]).await.unwrap();
        assert_eq!(m.response_code, ResponseCode::FormErr);
        let m = ask_udp(addr, &query_bytes(4, "vm1", 1, None))
            .await
            .unwrap();
        assert_eq!(first_a(&m), Ipv4Addr::new(192, 168, 122, 50));
        server.stop().await;
    }

    #[tokio::test]
    async fn the_zone_changes_take_effect_at_once() {
        let z = zone();
        let up = Upstreams::fixed(vec![]);
        let server = DnsServer::start("lo", LOOPBACK, 0, z.clone(), up)
            .await
            .unwrap();
        let q = query_bytes(1, "vm2.guest.lan", 1, None);
        let m = ask_udp(server.local_addr(), &q).await.unwrap();
        assert_eq!(m.response_code, ResponseCode::NXDomain);
        z.write()
            .unwrap()
            .add_lease("vm2", Ipv4Addr::new(192, 168, 122, 51));
        let m = ask_udp(server.local_addr(), &q).await.unwrap();
        assert_eq!(first_a(&m), Ipv4Addr::new(192, 168, 122, 51));
    }

    #[tokio::test]
    async fn tcp_pipelines_and_closes_on_garbage() {
        let server = start().await;
        let addr = server.local_addr();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut pipelined = Vec::new();
        pipelined.extend(framing::frame(&query_bytes(1, "example.com", 1, None)).unwrap());
        pipelined.extend(framing::frame(&query_bytes(2, "web", 1, None)).unwrap());
        stream.write_all(&pipelined).await.unwrap();
        let mut ids = vec![
            read_framed(&mut stream).await.unwrap().id,
            read_framed(&mut stream).await.unwrap().id,
        ];
        ids.sort();
        assert_eq!(ids, [1, 2]);

        // A query split across writes is put together.
        let q = framing::frame(&query_bytes(3, "vm1.guest.lan", 1, None)).unwrap();
        stream.write_all(&q[..5]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        stream.write_all(&q[5..]).await.unwrap();
        assert_eq!(read_framed(&mut stream).await.unwrap().id, 3);

        // Garbage: a FORMERR, then the connection is closed...
        let mut bad = TcpStream::connect(addr).await.unwrap();
        bad.write_all(&framing::frame(&[0; 30]).unwrap())
            .await
            .unwrap();
        let m = read_framed(&mut bad).await.unwrap();
        assert_eq!(m.response_code, ResponseCode::FormErr);
        assert!(read_framed(&mut bad).await.is_none());
        // ...and a zero length closes it at once.
        let mut zero = TcpStream::connect(addr).await.unwrap();
        zero.write_all(&[0, 0]).await.unwrap();
        assert!(read_framed(&mut zero).await.is_none());

        // The well-behaved client is still served.
        stream
            .write_all(&framing::frame(&query_bytes(4, "web", 1, None)).unwrap())
            .await
            .unwrap();
        assert_eq!(read_framed(&mut stream).await.unwrap().id, 4);
        server.stop().await;
    }

    #[tokio::test]
    async fn stop_frees_the_address() {
        let server = start().await;
        let addr = server.local_addr();
        let mut idle = TcpStream::connect(addr).await.unwrap();
        server.stop().await;
        // Its connections are closed too, not left to their idle timeout.
        let started = std::time::Instant::now();
        assert!(read_framed(&mut idle).await.is_none());
        assert!(started.elapsed() < Duration::from_secs(1));
        let again = DnsServer::start(
            "lo",
            LOOPBACK,
            addr.port(),
            zone(),
            Upstreams::fixed(vec![]),
        )
        .await
        .unwrap();
        assert_eq!(again.local_addr(), addr);
        // A second server on the same address is refused.
        let err = DnsServer::start(
            "lo",
            LOOPBACK,
            addr.port(),
            zone(),
            Upstreams::fixed(vec![]),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[tokio::test]
    async fn sockets_are_bound_to_the_interface() {
        let socket = bind_udp("lo", SocketAddrV4::new(LOOPBACK, 0)).unwrap();
        assert_eq!(socket.device().unwrap().as_deref(), Some(&b"lo"[..]));
        let socket = bind_tcp("lo", SocketAddrV4::new(LOOPBACK, 0)).unwrap();
        assert_eq!(socket.device().unwrap().as_deref(), Some(&b"lo"[..]));
        let err = DnsServer::start("no-such-if0", LOOPBACK, 0, zone(), Upstreams::fixed(vec![]))
            .await
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENODEV));
        assert!(
            DnsServer::start("", LOOPBACK, 0, zone(), Upstreams::fixed(vec![]))
                .await
                .is_err()
        );
    }

    fn client(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }

    #[test]
    fn one_client_holds_at_most_its_share_of_tcp_slots() {
        let mut t = TcpSlots::default();
        let t0 = Instant::now();
        let ids: Vec<u64> = (0..MAX_TCP_PER_CLIENT as u64)
            .map(|i| {
                let now = t0 + Duration::from_millis(i);
                t.admit(client(1), now).unwrap().0
            })
            .collect();
        // Kept busy, the first is now the most recently active.
        t.touch(ids[0], t0 + Duration::from_secs(1));
        let now = t0 + Duration::from_secs(2);
        assert_eq!(t.decide(client(1), now), Admission::Replace(ids[1]));
        let (_, _) = t.admit(client(1), now).unwrap();
        assert_eq!(t.per_client[&client(1)], MAX_TCP_PER_CLIENT);
        assert!(!t.connections.contains_key(&ids[1]));
        // Another client is let in at once.
        assert_eq!(t.decide(client(2), now), Admission::Admit);
        // Releasing a slot already given away changes nothing.
        assert!(t.release(ids[1]).is_none());
        assert_eq!(t.connections.len(), MAX_TCP_PER_CLIENT);
        for id in t.connections.keys().copied().collect::<Vec<_>>() {
            t.release(id);
        }
        assert!(t.per_client.is_empty());
    }

    #[test]
    fn a_full_table_makes_room_from_the_biggest_holder() {
        let mut t = TcpSlots::default();
        let t0 = Instant::now();
        // Every slot busy: clients 1.. each at their limit.
        let holders = MAX_TCP_CONNECTIONS / MAX_TCP_PER_CLIENT;
        for c in 0..holders {
            for _ in 0..MAX_TCP_PER_CLIENT {
                t.admit(client(c as u8 + 1), t0).unwrap();
            }
        }
        assert_eq!(t.connections.len(), MAX_TCP_CONNECTIONS);
        // All active just now, yet a new client gets a slot.
        let now = t0 + Duration::from_millis(10);
        for c in 0..holders {
            t.touch(
                *t.connections
                    .iter()
                    .find(|(_, h)| h.client == client(c as u8 + 1))
                    .unwrap()
                    .0,
                now,
            );
        }
        let (id, _) = t.admit(client(200), now).unwrap();
        assert_eq!(t.connections.len(), MAX_TCP_CONNECTIONS);
        assert_eq!(t.per_client[&client(200)], 1);
        t.release(id);

        // One client per slot, all busy and just opened: a newcomer is
        // refused...
        let mut t = TcpSlots::default();
        for c in 0..MAX_TCP_CONNECTIONS {
            t.admit(client(c as u8 + 1), t0).unwrap();
        }
        assert!(t.admit(client(200), now).is_none());
        // ...unless one has been idle for a while.
        let later = t0 + TCP_IDLE_WHEN_FULL;
        for (id, h) in t.connections.iter_mut() {
            if *id != 7 {
                h.active = later;
            }
        }
        assert_eq!(t.decide(client(200), later), Admission::Replace(7));
        let evicted = t.connections[&7].evict.clone();
        t.admit(client(200), later).unwrap();
        // The connection replaced is told to go.
        assert!(futures_now(evicted.notified()));
    }

    #[test]
    fn a_full_table_of_busy_addresses_gives_up_its_oldest_connection() {
        // One guest with an address per slot, each connection kept busy
        // (as one with 64 addresses on its interface can).
        let mut t = TcpSlots::default();
        let t0 = Instant::now();
        let ids: Vec<u64> = (0..MAX_TCP_CONNECTIONS)
            .map(|c| {
                let at = t0 + Duration::from_millis(c as u64);
                t.admit(client(c as u8 + 1), at).unwrap().0
            })
            .collect();
        let busy = |t: &mut TcpSlots, now| {
            for id in t.connections.keys().copied().collect::<Vec<_>>() {
                t.touch(id, now);
            }
        };
        // Within the grace, every connection keeps its slot.
        let now = t0 + TCP_GRACE_WHEN_FULL - Duration::from_millis(1);
        busy(&mut t, now);
        assert_eq!(t.decide(client(200), now), Admission::Refuse);
        // Past it, the oldest gives way, busy or not, then the next oldest.
        let now = t0 + TCP_GRACE_WHEN_FULL + Duration::from_millis(100);
        busy(&mut t, now);
        assert_eq!(t.decide(client(200), now), Admission::Replace(ids[0]));
        t.admit(client(200), now).unwrap();
        assert_eq!(t.decide(client(201), now), Admission::Replace(ids[1]));
        t.admit(client(201), now).unwrap();
        // The ones just let in keep their slots for the grace: the hog
        // coming back takes the next of its own.
        assert_eq!(t.decide(client(1), now), Admission::Replace(ids[2]));
        assert_eq!(t.connections.len(), MAX_TCP_CONNECTIONS);
    }

    /// Whether a future is ready at its first poll.
    fn futures_now<F: std::future::Future>(f: F) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        std::pin::pin!(f).poll(&mut cx).is_ready()
    }

    #[tokio::test]
    async fn a_busy_tcp_client_cannot_keep_others_out() {
        let server = start().await;
        let addr = server.local_addr();
        let q = framing::frame(&query_bytes(1, "web", 1, None)).unwrap();
        // Many connections from one address, each kept busy.
        let mut hog = Vec::new();
        for _ in 0..MAX_TCP_CONNECTIONS + 8 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let _ = s.write_all(&q).await;
            hog.push(s);
        }
        // Another address (127.0.0.2 is loopback too) is served at once.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut other = socket.connect(addr).await.unwrap();
        other.write_all(&q).await.unwrap();
        assert_eq!(read_framed(&mut other).await.unwrap().id, 1);
        // The hog kept its latest connections only.
        let mut served = 0;
        for s in hog.iter_mut() {
            if read_framed(s).await.is_some() {
                served += 1;
            }
        }
        assert!(served >= MAX_TCP_PER_CLIENT, "{served}");
        server.stop().await;
    }

    #[tokio::test]
    async fn an_idle_tcp_client_does_not_block_udp() {
        let server = start().await;
        let addr = server.local_addr();
        let mut idle = Vec::new();
        for _ in 0..MAX_TCP_CONNECTIONS + 4 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let m = ask_udp(addr, &query_bytes(9, "web", 1, None))
            .await
            .unwrap();
        assert_eq!(m.id, 9);
    }
}
