//! The DHCP server of one network: a socket bound to the network's bridge,
//! the [`Pool`] that decides, and the journal that makes leases durable.
//!
//! Three tasks: the receiver answers what needs no disk (OFFER, NAK,
//! INFORM) at once and queues the rest; the committer writes everything
//! queued as one journal batch with one sync (group commit), then sends
//! those replies and announces the lease changes; a timer expires leases.
//!
//! Requests are taken up to [`SOCKET_BATCH`] at a time (`recvmmsg`, into
//! buffers the receiver made once) and the replies to a batch sent together
//! (`sendmmsg`): a few system calls a batch rather than two a packet. An
//! ACK still goes out only after the sync that made its lease durable.

use super::lease::{Lease, LeaseEvent};
use super::lease_store::{Journal, Record};
use super::neighbour;
use super::port;
use super::protocol::{Destination, Outcome, Pool, Reply};
use guestnet_mode_api::{DhcpPlan, MacAddr};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

const SERVER_PORT: u16 = 67;
const CLIENT_PORT: u16 = 68;
/// Most outcomes one journal sync covers.
const BATCH_MAX: usize = 4096;
/// Datagrams one `recvmmsg` takes and one `sendmmsg` sends.
const SOCKET_BATCH: usize = 16;

/// Called with every batch of lease changes, once they are durable.
pub type EventSink = Arc<dyn Fn(&[LeaseEvent]) + Send + Sync>;

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub struct DhcpServer {
    pool: Arc<Mutex<Pool>>,
    tasks: Vec<JoinHandle<()>>,
    /// Tells the receiver and the timer to stop taking work; the committer
    /// then writes and answers what they queued, and ends.
    shutdown: watch::Sender<bool>,
}

impl Drop for DhcpServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl DhcpServer {
    /// Replays the journal at `journal_path` and starts serving on
    /// `interface`. Returns once the socket is bound.
    pub async fn start(
        interface: &str,
        plan: DhcpPlan,
        journal_path: &Path,
        sink: EventSink,
    ) -> std::io::Result<DhcpServer> {
        let (journal, replay) = Journal::open(journal_path)?;
        if replay.dropped_bytes > 0 {
            tracing::warn!(
                "{}: dropped {} bytes of a torn or corrupt journal tail",
                journal_path.display(),
                replay.dropped_bytes
            );
        }
        let socket = Arc::new(bind(interface)?);
        let replier = Arc::new(Replier {
            socket: socket.clone(),
            device: interface.to_owned(),
        });
        let pool = Arc::new(Mutex::new(Pool::new(plan, replay.leases.into_values())));
        let (queue, queued) = mpsc::unbounded_channel();
        let committer = Committer {
            journal: Arc::new(Mutex::new(journal)),
            pool: pool.clone(),
            replier: replier.clone(),
            sink,
        };
        let (shutdown, stopping) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(receive(
                socket,
                replier,
                pool.clone(),
                queue.clone(),
                stopping.clone(),
            )),
            tokio::spawn(committer.run(queued)),
            tokio::spawn(expire(pool.clone(), queue, stopping)),
        ];
        Ok(DhcpServer {
            pool,
            tasks,
            shutdown,
        })
    }

    /// Stops serving, cooperatively: no request is taken after this, every
    /// lease already granted is written and answered; returns once the
    /// socket is closed.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }

    /// Serves `plan` from now on (an Update: a new range, static hosts,
    /// options) on the same socket, keeping every lease that still fits.
    pub fn reconfigure(&self, plan: DhcpPlan) {
        let mut pool = self.pool.lock().expect("pool lock");
        *pool = pool.reconfigured(plan);
    }

    pub fn leases(&self) -> Vec<Lease> {
        let pool = self.pool.lock().expect("pool lock");
        let mut leases: Vec<Lease> = pool.leases().cloned().collect();
        leases.sort_by_key(|l| u32::from(l.ip));
        leases
    }

    pub fn lease_of(&self, mac: &MacAddr) -> Option<Lease> {
        self.pool.lock().expect("pool lock").lease_of(mac).cloned()
    }
}

/// A UDP socket on port 67 that sees only the bridge's traffic.
fn bind(interface: &str) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    s.bind_device(Some(interface.as_bytes()))?;
    s.set_nonblocking(true)?;
    if !port::enable(&s) {
        tracing::warn!(
            "DHCP on {interface}: this kernel cannot tell which bridge port a request came \
             from (no SO_RCVMARK); max_leases_per_port is not enforced, one lease per MAC is"
        );
    }
    // A thousand clients booting at once overflow the default buffers.
    crate::host::socket_buffers::grow(&s, 4 << 20, true);
    s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, SERVER_PORT).into())?;
    UdpSocket::from_std(s.into())
}

async fn receive(
    socket: Arc<UdpSocket>,
    replier: Arc<Replier>,
    pool: Arc<Mutex<Pool>>,
    queue: mpsc::UnboundedSender<Outcome>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut rx = batch::Received::new();
    let mut answers: Vec<Reply> = Vec::with_capacity(SOCKET_BATCH);
    loop {
        let received = tokio::select! {
            r = socket.async_io(tokio::io::Interest::READABLE, || rx.receive(&*socket)) => r,
            _ = stopping.wait_for(|s| *s) => return,
        };
        if let Err(e) = received {
            tracing::warn!("DHCP receive: {e}");
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let now = unix_now();
        {
            let mut pool = pool.lock().expect("pool lock");
            for (packet, from_port) in rx.iter() {
                let mut outcome = pool.handle_from(packet, now, from_port);
                if outcome.records.is_empty() {
                    if let Some(reply) = outcome.reply.take() {
                        answers.push(reply);
                    }
                } else if queue.send(outcome).is_err() {
                    return;
                }
            }
        }
        replier.send_all(answers.iter()).await;
        answers.clear();
    }
}

async fn expire(
    pool: Arc<Mutex<Pool>>,
    queue: mpsc::UnboundedSender<Outcome>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        let outcome = pool.lock().expect("pool lock").expire(unix_now());
        if !outcome.records.is_empty() && queue.send(outcome).is_err() {
            return;
        }
    }
}

struct Committer {
    journal: Arc<Mutex<Journal>>,
    pool: Arc<Mutex<Pool>>,
    replier: Arc<Replier>,
    sink: EventSink,
}

impl Committer {
    async fn run(self, mut queued: mpsc::UnboundedReceiver<Outcome>) {
        while let Some(first) = queued.recv().await {
            let mut batch = vec![first];
            while batch.len() < BATCH_MAX {
                match queued.try_recv() {
                    Ok(o) => batch.push(o),
                    Err(_) => break,
                }
            }
            let records: Vec<Record> = batch
                .iter_mut()
                .flat_map(|o| std::mem::take(&mut o.records))
                .collect();
            let journal = self.journal.clone();
            let written = tokio::task::spawn_blocking(move || {
                journal.lock().expect("journal lock").append(&records)
            })
            .await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    // No ACK without a durable lease: the clients retry.
                    tracing::error!("DHCP: writing leases failed, not answering: {e}");
                    continue;
                }
                Err(e) => {
                    tracing::error!("DHCP: journal task failed: {e}");
                    continue;
                }
            }
            self.replier
                .send_all(batch.iter().filter_map(|o| o.reply.as_ref()))
                .await;
            let events: Vec<LeaseEvent> = batch.into_iter().flat_map(|o| o.events).collect();
            if !events.is_empty() {
                (self.sink)(&events);
            }
            self.compact_if_due().await;
        }
    }

    async fn compact_if_due(&self) {
        let live: Vec<Lease> = {
            let pool = self.pool.lock().expect("pool lock");
            if !self
                .journal
                .lock()
                .expect("journal lock")
                .should_compact(pool.lease_count())
            {
                return;
            }
            pool.leases().cloned().collect()
        };
        let journal = self.journal.clone();
        let done = tokio::task::spawn_blocking(move || {
            journal.lock().expect("journal lock").compact(live.iter())
        })
        .await;
        if let Ok(Err(e)) = done {
            tracing::warn!("DHCP: compacting the lease journal: {e}");
        }
    }
}

/// Sends replies from the server's socket on the network's bridge.
struct Replier {
    socket: Arc<UdpSocket>,
    /// The bridge, for the ARP entries of unicast replies.
    device: String,
}

impl Replier {
    fn destination(&self, reply: &Reply) -> SocketAddrV4 {
        match reply.to {
            Destination::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT),
            Destination::Client(ip) => SocketAddrV4::new(ip, CLIENT_PORT),
            Destination::Relay(ip) => SocketAddrV4::new(ip, SERVER_PORT),
            Destination::Hardware { ip, mac } => {
                match neighbour::learn(&*self.socket, &self.device, ip, mac) {
                    Ok(()) => SocketAddrV4::new(ip, CLIENT_PORT),
                    Err(e) => {
                        // Still reaches the client, only less quietly.
                        tracing::debug!("DHCP: ARP entry {ip} -> {mac}: {e}; broadcasting");
                        SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT)
                    }
                }
            }
        }
    }

    /// Sends `replies`, [`SOCKET_BATCH`] to a system call; a reply the
    /// socket refuses (not WouldBlock: that is waited out) is skipped.
    async fn send_all<'a>(&self, replies: impl Iterator<Item = &'a Reply>) {
        let mut out = batch::Outgoing::new();
        for reply in replies {
            out.push(&reply.bytes, self.destination(reply));
            if out.is_full() {
                self.flush(&mut out).await;
            }
        }
        self.flush(&mut out).await;
    }

    async fn flush(&self, out: &mut batch::Outgoing<'_>) {
        while !out.is_empty() {
            let sent = self
                .socket
                .async_io(tokio::io::Interest::WRITABLE, || out.send(&*self.socket))
                .await;
            if let Err(e) = sent {
                tracing::debug!("DHCP: sending to {}: {e}", out.first_destination());
                out.skip_first();
            }
        }
        out.clear();
    }
}

/// `recvmmsg` with each datagram's mark (the bridge port it came from), and
/// `sendmmsg`.
mod batch {
    use super::super::port;
    use super::super::protocol::{PortId, MAX_PACKET};
    use super::SOCKET_BATCH;
    use std::io;
    use std::net::SocketAddrV4;
    use std::os::fd::AsRawFd;

    /// One byte more than the largest request taken, to see oversized ones.
    const SLOT: usize = MAX_PACKET + 1;
    /// Room for one cmsg carrying a u32 per datagram, aligned for cmsghdr.
    const CONTROL: usize = 8;

    pub struct Received {
        bufs: Vec<u8>,
        control: [[u64; CONTROL]; SOCKET_BATCH],
        lens: [usize; SOCKET_BATCH],
        ports: [Option<PortId>; SOCKET_BATCH],
        count: usize,
    }

    impl Received {
        pub fn new() -> Received {
            Received {
                bufs: vec![0; SLOT * SOCKET_BATCH],
                control: [[0; CONTROL]; SOCKET_BATCH],
                lens: [0; SOCKET_BATCH],
                ports: [None; SOCKET_BATCH],
                count: 0,
            }
        }

        /// Takes up to [`SOCKET_BATCH`] queued datagrams without blocking
        /// (WouldBlock when none is queued).
        pub fn receive(&mut self, socket: &impl AsRawFd) -> io::Result<()> {
            self.count = 0;
            // SAFETY: iovec and mmsghdr are plain data; all-zero is valid.
            let mut iovs: [libc::iovec; SOCKET_BATCH] = unsafe { std::mem::zeroed() };
            let mut msgs: [libc::mmsghdr; SOCKET_BATCH] = unsafe { std::mem::zeroed() };
            let base = self.bufs.as_mut_ptr();
            for i in 0..SOCKET_BATCH {
                // SAFETY: i * SLOT + SLOT <= bufs.len().
                iovs[i].iov_base = unsafe { base.add(i * SLOT) }.cast();
                iovs[i].iov_len = SLOT;
                let h = &mut msgs[i].msg_hdr;
                h.msg_iov = &mut iovs[i];
                h.msg_iovlen = 1;
                h.msg_control = self.control[i].as_mut_ptr().cast();
                h.msg_controllen = std::mem::size_of_val(&self.control[i]) as _;
            }
            // SAFETY: every header points at live buffers of the lengths it
            // states (into self and the locals above); the kernel writes
            // within them.
            let n = unsafe {
                libc::recvmmsg(
                    socket.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    SOCKET_BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = n as usize;
            for (i, m) in msgs.iter().enumerate().take(n) {
                self.lens[i] = (m.msg_len as usize).min(SLOT);
                self.ports[i] = port::mark_of(&m.msg_hdr).and_then(port::port_of);
            }
            self.count = n;
            Ok(())
        }

        /// The datagrams of the last receive, with the port each came from.
        pub fn iter(&self) -> impl Iterator<Item = (&[u8], Option<PortId>)> + '_ {
            (0..self.count)
                .map(move |i| (&self.bufs[i * SLOT..i * SLOT + self.lens[i]], self.ports[i]))
        }
    }

    /// Up to [`SOCKET_BATCH`] replies waiting to go.
    pub struct Outgoing<'a> {
        replies: [(&'a [u8], SocketAddrV4); SOCKET_BATCH],
        len: usize,
        sent: usize,
    }

    impl<'a> Outgoing<'a> {
        pub fn new() -> Outgoing<'a> {
            Outgoing {
                replies: [(&[][..], SocketAddrV4::new(0.into(), 0)); SOCKET_BATCH],
                len: 0,
                sent: 0,
            }
        }

        pub fn push(&mut self, bytes: &'a [u8], to: SocketAddrV4) {
            self.replies[self.len] = (bytes, to);
            self.len += 1;
        }

        pub fn is_full(&self) -> bool {
            self.len == SOCKET_BATCH
        }

        pub fn is_empty(&self) -> bool {
            self.sent >= self.len
        }

        pub fn clear(&mut self) {
            self.len = 0;
            self.sent = 0;
        }

        pub fn first_destination(&self) -> SocketAddrV4 {
            self.replies[self.sent].1
        }

        pub fn skip_first(&mut self) {
            self.sent += 1;
        }

        /// Sends what is left in one `sendmmsg`; an error is the first
        /// reply's (WouldBlock: none went).
        pub fn send(&mut self, socket: &impl AsRawFd) -> io::Result<()> {
            let left = &self.replies[self.sent..self.len];
            // SAFETY: plain data; all-zero is valid.
            let mut iovs: [libc::iovec; SOCKET_BATCH] = unsafe { std::mem::zeroed() };
            let mut msgs: [libc::mmsghdr; SOCKET_BATCH] = unsafe { std::mem::zeroed() };
            let mut addrs: [libc::sockaddr_in; SOCKET_BATCH] = unsafe { std::mem::zeroed() };
            for (i, (bytes, to)) in left.iter().enumerate() {
                addrs[i].sin_family = libc::AF_INET as libc::sa_family_t;
                addrs[i].sin_port = to.port().to_be();
                addrs[i].sin_addr.s_addr = u32::from(*to.ip()).to_be();
                iovs[i].iov_base = bytes.as_ptr() as *mut libc::c_void;
                iovs[i].iov_len = bytes.len();
                let h = &mut msgs[i].msg_hdr;
                h.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in).cast();
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                h.msg_iov = &mut iovs[i];
                h.msg_iovlen = 1;
            }
            // SAFETY: the first left.len() headers point at live replies
            // and addresses; the kernel only reads them.
            let sent = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    left.len() as libc::c_uint,
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
