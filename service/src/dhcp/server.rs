//! The DHCP server of one network: a socket bound to the network's bridge,
//! the [`Pool`] that decides, and the journal that makes leases durable.
//!
//! Three tasks: the receiver answers what needs no disk (OFFER, NAK,
//! INFORM) at once and queues the rest; the committer writes everything
//! queued as one journal batch with one sync (group commit), then sends
//! those replies and announces the lease changes; a timer expires leases.

use super::lease::{Lease, LeaseEvent};
use super::lease_store::{Journal, Record};
use super::neighbour;
use super::port;
use super::protocol::{Destination, Outcome, Pool, Reply, MAX_PACKET};
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
    let mut buf = vec![0u8; MAX_PACKET + 1];
    loop {
        let received = tokio::select! {
            r = socket.async_io(tokio::io::Interest::READABLE, || port::recv(&*socket, &mut buf)) => r,
            _ = stopping.wait_for(|s| *s) => return,
        };
        let (n, from_port) = match received {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("DHCP receive: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let outcome = pool
            .lock()
            .expect("pool lock")
            .handle_from(&buf[..n], unix_now(), from_port);
        if outcome.records.is_empty() {
            if let Some(reply) = &outcome.reply {
                replier.send(reply).await;
            }
        } else if queue.send(outcome).is_err() {
            return;
        }
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
            for reply in batch.iter().filter_map(|o| o.reply.as_ref()) {
                self.replier.send(reply).await;
            }
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
    async fn send(&self, reply: &Reply) {
        let to = match reply.to {
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
        };
        if let Err(e) = self.socket.send_to(&reply.bytes, to).await {
            tracing::debug!("DHCP: sending to {to}: {e}");
        }
    }
}
