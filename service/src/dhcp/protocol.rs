//! The DHCPv4 server's decisions (RFC 2131), as a pure state machine: bytes
//! of a request in, a reply and the lease change out. No sockets, no clock,
//! no disk, so the fuzz target and the unit tests drive it directly.

use super::lease::{sanitize_hostname, Lease, LeaseChange, LeaseEvent};
use super::lease_store::Record;
use dhcproto::v4::{DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use guestnet_mode_api::{DhcpPlan, MacAddr};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

pub mod options;

/// How long an offered address stays reserved for the client it was offered to.
const OFFER_SECS: u64 = 30;
/// How long a declined address (in use by someone unknown) stays out of the pool.
const DECLINE_SECS: u64 = 600;

// Every table a packet can grow has a limit, as the DNS server's have
// (`dns/server.rs`): a flood from guests costs time, never memory without
// end. Leases are also bounded by the range and by the per-port limit.
/// Most leases one network holds (a /16 of guests); a pool with a larger
/// range stops granting new ones at this many.
pub const LEASES_MAX: usize = 65_536;
/// Most outstanding offers; a new one pushes out the one nearest its end
/// (an offer reserves nothing a REQUEST could not still take if free).
const OFFERS_MAX: usize = 4_096;
/// Most addresses held out of the pool by DECLINEs; a new one pushes out
/// the one nearest its end.
const DECLINED_MAX: usize = 4_096;
/// How many departed clients' addresses are remembered for their return.
const REMEMBERED_MAX: usize = 65_536;

/// The bridge port a request came in on, as the server could tell it
/// (`dhcp/server.rs`): an opaque, stable number per port. `None` when the
/// port cannot be known; such requests are limited per MAC only (one lease
/// per client, as always).
pub type PortId = u32;
/// Requests larger than this are not DHCP (the largest an Ethernet frame carries).
pub const MAX_PACKET: usize = 1500;

/// Where a reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// To 255.255.255.255:68 on the network's bridge: the client has no
    /// address yet.
    Broadcast,
    /// To the client's own address, port 68 (renewals, INFORM).
    Client(Ipv4Addr),
    /// To the address being given, at the client's hardware address (RFC
    /// 2131 4.1, a client without an address that did not ask for
    /// broadcast): only its own port of the bridge sees the reply, where a
    /// broadcast would wake every guest on the network.
    Hardware { ip: Ipv4Addr, mac: MacAddr },
    /// To the relay agent, port 67.
    Relay(Ipv4Addr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub bytes: Vec<u8>,
    pub to: Destination,
}

/// What handling one packet decided.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub reply: Option<Reply>,
    /// Journal records that must be durable before the reply goes out.
    pub records: Vec<Record>,
    pub events: Vec<LeaseEvent>,
}

impl Outcome {
    fn reply(bytes: Vec<u8>, to: Destination) -> Self {
        Outcome {
            reply: Some(Reply { bytes, to }),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Offer {
    ip: Ipv4Addr,
    until: u64,
    /// The port this offer is counted against; `None` for clients that
    /// already hold their address (a lease or a static one).
    port: Option<PortId>,
}

#[derive(Debug, Clone, Copy)]
struct Declined {
    until: u64,
    /// The port of the client that declined it: a declined address is
    /// out of the pool, so it counts against that port until it returns.
    port: Option<PortId>,
}

/// One network's addresses and leases.
pub struct Pool {
    plan: DhcpPlan,
    first: u32,
    last: u32,
    leases: HashMap<MacAddr, Lease>,
    by_ip: HashMap<Ipv4Addr, MacAddr>,
    by_expiry: BTreeSet<(u64, MacAddr)>,
    offers: HashMap<MacAddr, Offer>,
    offered: HashMap<Ipv4Addr, MacAddr>,
    /// Offers by the time they end, so expiry reads only what is due.
    offers_by_end: BTreeSet<(u64, MacAddr)>,
    declined: HashMap<Ipv4Addr, Declined>,
    declined_by_end: BTreeSet<(u64, Ipv4Addr)>,
    remembered: HashMap<MacAddr, Ipv4Addr>,
    /// The port each lease is counted against (absent: unknown, as for
    /// leases replayed from the journal until their client renews).
    lease_port: HashMap<MacAddr, PortId>,
    /// How many addresses each port holds: leases, counted offers and
    /// declines. Only ports holding some are present.
    claims: HashMap<PortId, usize>,
    static_by_mac: HashMap<MacAddr, (Ipv4Addr, Option<String>)>,
    static_ips: HashSet<Ipv4Addr>,
    /// The static hosts with a boot file or options of their own, by MAC:
    /// their index in the plan's hosts.
    host_options: HashMap<MacAddr, usize>,
    cursor: u32,
    /// When a scan last found the pool full.
    full_since: Option<u64>,
}

impl Pool {
    /// A pool for `plan`, holding the `leases` a journal replayed (those
    /// that no longer fit the network are dropped).
    pub fn new(plan: DhcpPlan, leases: impl IntoIterator<Item = Lease>) -> Pool {
        let first = u32::from(plan.range_start);
        let last = u32::from(plan.range_end);
        let static_by_mac = plan
            .hosts
            .iter()
            .map(|h| (h.mac, (h.ip, h.name.clone())))
            .collect();
        let static_ips = plan.hosts.iter().map(|h| h.ip).collect();
        let host_options = plan
            .hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| h.filename.is_some() || !h.options.is_empty())
            .map(|(i, h)| (h.mac, i))
            .collect();
        let mut pool = Pool {
            plan,
            first,
            last,
            leases: HashMap::new(),
            by_ip: HashMap::new(),
            by_expiry: BTreeSet::new(),
            offers: HashMap::new(),
            offered: HashMap::new(),
            offers_by_end: BTreeSet::new(),
            declined: HashMap::new(),
            declined_by_end: BTreeSet::new(),
            remembered: HashMap::new(),
            lease_port: HashMap::new(),
            claims: HashMap::new(),
            static_by_mac,
            static_ips,
            host_options,
            cursor: first,
            full_since: None,
        };
        // Linear in the leases: each check and insertion is a hash or tree
        // operation.
        for lease in leases {
            let fits = pool.leases.len() < LEASES_MAX
                && pool.plan.subnet.contains(&lease.ip)
                && lease.ip != pool.plan.server
                && pool.static_owner_ok(lease.mac, lease.ip)
                && !pool.by_ip.contains_key(&lease.ip);
            if fits {
                pool.insert_lease(lease);
            }
        }
        pool
    }

    /// The pool for a changed `plan` (an Update), keeping every lease that
    /// still fits and the port each is counted against.
    pub fn reconfigured(&self, plan: DhcpPlan) -> Pool {
        let mut pool = Pool::new(plan, self.leases.values().cloned());
        for (mac, port) in &self.lease_port {
            let kept = pool.leases.contains_key(mac) && !pool.static_by_mac.contains_key(mac);
            if kept {
                pool.lease_port.insert(*mac, *port);
                pool.claim(Some(*port));
            }
        }
        pool
    }

    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    pub fn lease_count(&self) -> usize {
        self.leases.len()
    }

    pub fn lease_of(&self, mac: &MacAddr) -> Option<&Lease> {
        self.leases.get(mac)
    }

    /// Handles one datagram that arrived at the server at `now` (unix
    /// seconds), from an unknown port.
    pub fn handle(&mut self, bytes: &[u8], now: u64) -> Outcome {
        self.handle_from(bytes, now, None)
    }

    /// Handles one datagram that arrived at `now` on bridge port `port`.
    pub fn handle_from(&mut self, bytes: &[u8], now: u64, port: Option<PortId>) -> Outcome {
        if bytes.len() > MAX_PACKET {
            return Outcome::default();
        }
        let Ok(msg) = Message::decode(&mut Decoder::new(bytes)) else {
            return Outcome::default();
        };
        let Some(request) = Request::read(&msg, port) else {
            return Outcome::default();
        };
        // A relay speaks for one subnet: answer only for ours.
        if !request.giaddr.is_unspecified() && !self.plan.subnet.contains(&request.giaddr) {
            return Outcome::default();
        }
        match request.kind {
            MessageType::Discover => self.discover(&msg, &request, now),
            MessageType::Request => self.request(&msg, &request, now),
            MessageType::Decline => self.decline(&request, now),
            MessageType::Release => self.release(&request),
            MessageType::Inform => self.inform(&msg, &request),
            _ => Outcome::default(),
        }
    }

    /// Removes leases, offers and declines whose time has come.
    pub fn expire(&mut self, now: u64) -> Outcome {
        let mut out = Outcome::default();
        while let Some(&(at, mac)) = self.by_expiry.first() {
            if at > now {
                break;
            }
            self.by_expiry.pop_first();
            let current = self.leases.get(&mac).is_some_and(|l| l.expires == at);
            if current {
                let lease = self.remove_lease(&mac).expect("checked above");
                out.records.push(Record::Remove { mac });
                out.events.push(LeaseEvent {
                    change: LeaseChange::Removed,
                    lease,
                });
            }
        }
        // Offers and declines by their end: only what is due is read.
        while let Some(&(until, mac)) = self.offers_by_end.first() {
            if until > now {
                break;
            }
            self.drop_offer(&mac);
        }
        while let Some(&(until, ip)) = self.declined_by_end.first() {
            if until > now {
                break;
            }
            self.drop_decline(ip);
        }
        out
    }

    fn discover(&mut self, msg: &Message, req: &Request, now: u64) -> Outcome {
        // A client that holds its address takes nothing more from the
        // pool; any other is counted against its port.
        let holds = self.static_by_mac.contains_key(&req.mac) || self.leases.contains_key(&req.mac);
        let counted = if holds { None } else { req.port };
        let had_counted_offer = self
            .offers
            .get(&req.mac)
            .is_some_and(|o| o.port.is_some() && o.port == counted);
        if !had_counted_offer && self.port_full(counted) {
            tracing::debug!("DHCP: port limit reached; no offer for {}", req.mac);
            return Outcome::default();
        }
        let Some(ip) = self.choose(req.mac, req.requested_ip, now) else {
            tracing::warn!("DHCP: no free address for {}", req.mac);
            return Outcome::default();
        };
        self.drop_offer(&req.mac);
        if self.offers.len() >= OFFERS_MAX {
            if let Some(&(_, oldest)) = self.offers_by_end.first() {
                self.drop_offer(&oldest);
            }
        }
        let until = now + OFFER_SECS;
        self.offers.insert(
            req.mac,
            Offer {
                ip,
                until,
                port: counted,
            },
        );
        self.offers_by_end.insert((until, req.mac));
        self.offered.insert(ip, req.mac);
        self.claim(counted);
        let reply = self.answer(msg, req, MessageType::Offer, ip, true);
        Outcome::reply(reply, self.destination(req, false, ip))
    }

    fn request(&mut self, msg: &Message, req: &Request, now: u64) -> Outcome {
        if let Some(server) = req.server_id {
            // SELECTING: the client picked one server's offer.
            if server != self.plan.server {
                self.drop_offer(&req.mac);
                return Outcome::default();
            }
            let ip = req.requested_ip.unwrap_or(req.ciaddr);
            return self.grant_or_nak(msg, req, ip, now);
        }
        if let Some(ip) = req.requested_ip {
            // INIT-REBOOT: a client that remembers its address.
            return self.grant_or_nak(msg, req, ip, now);
        }
        if !req.ciaddr.is_unspecified() {
            // RENEWING (unicast to us) or REBINDING (broadcast).
            return self.grant_or_nak(msg, req, req.ciaddr, now);
        }
        Outcome::default()
    }

    fn grant_or_nak(&mut self, msg: &Message, req: &Request, ip: Ipv4Addr, now: u64) -> Outcome {
        if ip.is_unspecified() {
            return Outcome::default();
        }
        if !self.may_hold(req.mac, ip, now) {
            let nak = self.nak(msg);
            return Outcome::reply(nak, self.destination(req, true, Ipv4Addr::UNSPECIFIED));
        }
        // A new lease (or one moving to this port) must fit the port's
        // limit; the client's own counted offer makes room for it. Static
        // hosts are the administrator's and always served.
        let is_static = self.static_by_mac.contains_key(&req.mac);
        let counted_here = |p: Option<PortId>| p.is_some() && p == req.port;
        let already = self
            .lease_port
            .get(&req.mac)
            .copied()
            .is_some_and(|p| Some(p) == req.port)
            || self
                .offers
                .get(&req.mac)
                .is_some_and(|o| counted_here(o.port));
        if !is_static && !already && self.port_full(req.port) {
            tracing::debug!("DHCP: port limit reached; no lease for {}", req.mac);
            return Outcome::default();
        }
        if !self.leases.contains_key(&req.mac) && self.leases.len() >= LEASES_MAX {
            tracing::warn!("DHCP: {LEASES_MAX} leases held; no lease for {}", req.mac);
            return Outcome::default();
        }
        let hostname = self.hostname_for(req);
        let lease = Lease {
            mac: req.mac,
            ip,
            hostname,
            client_id: req.client_id.clone(),
            expires: now + u64::from(self.plan.lease_time_secs),
        };
        let mut out = Outcome::default();
        let change = match self.leases.get(&req.mac) {
            Some(old) if old.ip == ip => LeaseChange::Renewed,
            Some(_) => {
                let old = self.remove_lease(&req.mac).expect("present");
                out.events.push(LeaseEvent {
                    change: LeaseChange::Removed,
                    lease: old,
                });
                LeaseChange::Added
            }
            None => LeaseChange::Added,
        };
        self.drop_offer(&req.mac);
        if self.leases.contains_key(&req.mac) {
            // A renewal, perhaps from another port now: count it there.
            let old_port = self.lease_port.remove(&req.mac);
            self.unclaim(old_port);
            let old_expiry = self.leases[&req.mac].expires;
            self.by_expiry.remove(&(old_expiry, req.mac));
        }
        self.insert_lease(lease.clone());
        if !is_static {
            if let Some(p) = req.port {
                self.lease_port.insert(req.mac, p);
                self.claim(Some(p));
            }
        }
        out.records.push(Record::Grant(lease.clone()));
        out.events.push(LeaseEvent { change, lease });
        let ack = self.answer(msg, req, MessageType::Ack, ip, true);
        out.reply = Some(Reply {
            bytes: ack,
            to: self.destination(req, false, ip),
        });
        out
    }

    /// A client found the address it was given in use (RFC 2131 4.3.3).
    /// Believed only from the client that holds or was offered that
    /// address: anyone else's DECLINE would take addresses out of the pool
    /// at will. The address then counts against the decliner's port until
    /// it returns to the pool, so declining cannot empty the pool either.
    fn decline(&mut self, req: &Request, now: u64) -> Outcome {
        let Some(ip) = req.requested_ip else {
            return Outcome::default();
        };
        if req.server_id.is_some_and(|s| s != self.plan.server) {
            return Outcome::default();
        }
        // From the port that client was counted on, when both are known: a
        // guest that copies another's MAC into chaddr is on another port.
        let same_port = |p: Option<PortId>| p.is_none() || req.port.is_none() || p == req.port;
        let held = self.leases.get(&req.mac).is_some_and(|l| l.ip == ip)
            && same_port(self.lease_port.get(&req.mac).copied());
        let offered = self
            .offers
            .get(&req.mac)
            .is_some_and(|o| o.ip == ip && o.until > now && same_port(o.port));
        if !held && !offered {
            tracing::debug!(
                "DHCP: ignoring {}'s DECLINE of {ip}, not its address",
                req.mac
            );
            return Outcome::default();
        }
        self.drop_offer(&req.mac);
        let out = self.remove_if_held(req.mac, ip);
        self.drop_decline(ip);
        if self.declined.len() >= DECLINED_MAX {
            if let Some(&(_, oldest)) = self.declined_by_end.first() {
                self.drop_decline(oldest);
            }
        }
        let until = now + DECLINE_SECS;
        self.declined.insert(
            ip,
            Declined {
                until,
                port: req.port,
            },
        );
        self.declined_by_end.insert((until, ip));
        self.claim(req.port);
        out
    }

    fn release(&mut self, req: &Request) -> Outcome {
        let out = self.remove_if_held(req.mac, req.ciaddr);
        if !out.events.is_empty() {
            self.remember(req.mac, req.ciaddr);
        }
        out
    }

    fn inform(&mut self, msg: &Message, req: &Request) -> Outcome {
        if req.ciaddr.is_unspecified() || !self.plan.subnet.contains(&req.ciaddr) {
            return Outcome::default();
        }
        let ack = self.answer(msg, req, MessageType::Ack, Ipv4Addr::UNSPECIFIED, false);
        Outcome::reply(ack, self.destination(req, false, Ipv4Addr::UNSPECIFIED))
    }

    fn remove_if_held(&mut self, mac: MacAddr, ip: Ipv4Addr) -> Outcome {
        let held = self.leases.get(&mac).is_some_and(|l| l.ip == ip);
        if !held {
            return Outcome::default();
        }
        let lease = self.remove_lease(&mac).expect("held");
        Outcome {
            reply: None,
            records: vec![Record::Remove { mac }],
            events: vec![LeaseEvent {
                change: LeaseChange::Removed,
                lease,
            }],
        }
    }

    /// The address to offer `mac`, in order of preference: its static one,
    /// the one it holds or was offered, the one it asks for, the one it had
    /// before, then the next free one in the pool.
    fn choose(&mut self, mac: MacAddr, requested: Option<Ipv4Addr>, now: u64) -> Option<Ipv4Addr> {
        if let Some((ip, _)) = self.static_by_mac.get(&mac) {
            return Some(*ip);
        }
        if let Some(l) = self.leases.get(&mac) {
            return Some(l.ip);
        }
        if let Some(o) = self.offers.get(&mac) {
            if o.until > now {
                return Some(o.ip);
            }
        }
        for candidate in [requested, self.remembered.get(&mac).copied()]
            .into_iter()
            .flatten()
        {
            if self.in_range(candidate) && self.is_free(candidate, mac, now) {
                return Some(candidate);
            }
        }
        self.next_free(mac, now)
    }

    fn next_free(&mut self, mac: MacAddr, now: u64) -> Option<Ipv4Addr> {
        // A flood of DISCOVERs into a full pool must not become a flood of
        // full scans: after a scan finds nothing, the next one waits until
        // an address is freed or a second has passed.
        if self.full_since == Some(now) {
            return None;
        }
        let size = u64::from(self.last - self.first) + 1;
        for _ in 0..size {
            let ip = Ipv4Addr::from(self.cursor);
            self.cursor = if self.cursor >= self.last {
                self.first
            } else {
                self.cursor + 1
            };
            if self.is_free(ip, mac, now) {
                return Some(ip);
            }
        }
        self.full_since = Some(now);
        None
    }

    fn in_range(&self, ip: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&u32::from(ip))
    }

    /// Whether `ip` is free for `mac`: not the server's, not a static
    /// host's, not declined, not leased or offered to another client.
    fn is_free(&self, ip: Ipv4Addr, mac: MacAddr, now: u64) -> bool {
        if ip == self.plan.server || self.static_ips.contains(&ip) {
            return false;
        }
        if ip == self.plan.subnet.network() || ip == self.plan.subnet.broadcast() {
            return false;
        }
        if self.declined.get(&ip).is_some_and(|d| d.until > now) {
            return false;
        }
        if self.by_ip.get(&ip).is_some_and(|holder| *holder != mac) {
            return false;
        }
        let offered_to_other = self
            .offered
            .get(&ip)
            .is_some_and(|m| *m != mac && self.offers.get(m).is_some_and(|o| o.until > now));
        !offered_to_other
    }

    /// Whether `mac` may hold `ip` now (for an ACK).
    fn may_hold(&self, mac: MacAddr, ip: Ipv4Addr, now: u64) -> bool {
        if let Some((fixed, _)) = self.static_by_mac.get(&mac) {
            return *fixed == ip;
        }
        if self.leases.get(&mac).is_some_and(|l| l.ip == ip) {
            return true;
        }
        self.in_range(ip) && self.is_free(ip, mac, now)
    }

    fn static_owner_ok(&self, mac: MacAddr, ip: Ipv4Addr) -> bool {
        match self.static_by_mac.get(&mac) {
            Some((fixed, _)) => *fixed == ip,
            None => !self.static_ips.contains(&ip),
        }
    }

    fn hostname_for(&self, req: &Request) -> Option<String> {
        if let Some((_, Some(name))) = self.static_by_mac.get(&req.mac) {
            return Some(name.clone());
        }
        req.hostname
            .as_deref()
            .and_then(sanitize_hostname)
            .or_else(|| self.leases.get(&req.mac).and_then(|l| l.hostname.clone()))
    }

    fn insert_lease(&mut self, lease: Lease) {
        self.by_ip.insert(lease.ip, lease.mac);
        self.by_expiry.insert((lease.expires, lease.mac));
        self.leases.insert(lease.mac, lease);
    }

    fn remove_lease(&mut self, mac: &MacAddr) -> Option<Lease> {
        let lease = self.leases.remove(mac)?;
        self.full_since = None;
        self.by_ip.remove(&lease.ip);
        self.by_expiry.remove(&(lease.expires, lease.mac));
        let port = self.lease_port.remove(mac);
        self.unclaim(port);
        Some(lease)
    }

    fn drop_offer(&mut self, mac: &MacAddr) {
        if let Some(o) = self.offers.remove(mac) {
            self.full_since = None;
            self.offers_by_end.remove(&(o.until, *mac));
            if self.offered.get(&o.ip) == Some(mac) {
                self.offered.remove(&o.ip);
            }
            self.unclaim(o.port);
        }
    }

    fn drop_decline(&mut self, ip: Ipv4Addr) {
        if let Some(d) = self.declined.remove(&ip) {
            self.full_since = None;
            self.declined_by_end.remove(&(d.until, ip));
            self.unclaim(d.port);
        }
    }

    /// Whether `port` holds as many addresses as it may.
    fn port_full(&self, port: Option<PortId>) -> bool {
        port.is_some_and(|p| {
            self.claims.get(&p).copied().unwrap_or(0) >= self.plan.max_leases_per_port as usize
        })
    }

    fn claim(&mut self, port: Option<PortId>) {
        if let Some(p) = port {
            *self.claims.entry(p).or_default() += 1;
        }
    }

    fn unclaim(&mut self, port: Option<PortId>) {
        if let Some(p) = port {
            if let Some(n) = self.claims.get_mut(&p) {
                *n -= 1;
                if *n == 0 {
                    self.claims.remove(&p);
                }
            }
        }
    }

    /// How many addresses `port` holds (leases, offers, declines).
    pub fn claims_of(&self, port: PortId) -> usize {
        self.claims.get(&port).copied().unwrap_or(0)
    }

    /// The sizes of the pool's tables, for tests of their bounds.
    pub fn table_sizes(&self) -> [usize; 6] {
        [
            self.leases.len(),
            self.offers.len(),
            self.offered.len(),
            self.declined.len(),
            self.remembered.len(),
            self.claims.len(),
        ]
    }

    fn remember(&mut self, mac: MacAddr, ip: Ipv4Addr) {
        if self.remembered.len() >= REMEMBERED_MAX {
            self.remembered.clear();
        }
        self.remembered.insert(mac, ip);
    }

    /// Where a reply goes (RFC 2131 4.1); `yiaddr` is the address it
    /// gives, unspecified when it gives none.
    fn destination(&self, req: &Request, nak: bool, yiaddr: Ipv4Addr) -> Destination {
        if !req.giaddr.is_unspecified() {
            Destination::Relay(req.giaddr)
        } else if nak {
            Destination::Broadcast
        } else if !req.ciaddr.is_unspecified() {
            Destination::Client(req.ciaddr)
        } else if !req.broadcast && !yiaddr.is_unspecified() {
            Destination::Hardware {
                ip: yiaddr,
                mac: req.mac,
            }
        } else {
            Destination::Broadcast
        }
    }

    /// An OFFER or ACK for `yiaddr` (unspecified for INFORM), with the
    /// network's options; `with_lease` adds the lease times. The further
    /// options ([`options`]) go to a client that asked for them, as many
    /// as fit the size it accepts.
    fn answer(
        &self,
        msg: &Message,
        req: &Request,
        kind: MessageType,
        yiaddr: Ipv4Addr,
        with_lease: bool,
    ) -> Vec<u8> {
        let mut reply = self.reply_to(msg, yiaddr);
        let p = &self.plan;
        // A static host's own boot file and options take the network's place.
        let own = self
            .host_options
            .get(&req.mac)
            .and_then(|i| p.hosts.get(*i))
            .map(|h| options::for_host(&p.options, h));
        let extra = own.as_ref().unwrap_or(&p.options);
        // The boot server and file go in the header whenever configured:
        // PXE ROMs and BOOTP clients read them there without asking.
        if let Some(next) = extra.next_server {
            reply.set_siaddr(next);
        }
        if let Some(file) = options::boot_file(extra) {
            reply.set_fname_str(file);
        }
        let opts = reply.opts_mut();
        opts.insert(DhcpOption::MessageType(kind));
        opts.insert(DhcpOption::ServerIdentifier(p.server));
        opts.insert(DhcpOption::SubnetMask(p.subnet.netmask()));
        if let Some(router) = p.router {
            opts.insert(DhcpOption::Router(vec![router]));
        }
        if let Some(dns) = p.dns_server {
            opts.insert(DhcpOption::DomainNameServer(vec![dns]));
        }
        if let Some(domain) = &p.domain {
            opts.insert(DhcpOption::DomainName(domain.to_string()));
        }
        if let Some(mtu) = p.mtu {
            opts.insert(DhcpOption::InterfaceMtu(mtu.min(u32::from(u16::MAX)) as u16));
        }
        if with_lease {
            let t = p.lease_time_secs;
            opts.insert(DhcpOption::AddressLeaseTime(t));
            opts.insert(DhcpOption::Renewal(t / 2));
            opts.insert(DhcpOption::Rebinding(t / 8 * 7));
        }
        let extras = options::wanted(extra, p.router, &req.asked);
        let mut buf = encode_unpadded(&reply);
        let limit = options::message_limit(req.max_size, MAX_PACKET);
        let dropped = options::append(&mut buf, &extras, limit);
        if !dropped.is_empty() {
            tracing::debug!(
                "DHCP: options {dropped:?} left out of the reply to {}: they do not fit its {limit} bytes",
                req.mac
            );
        }
        pad(buf)
    }

    fn nak(&self, msg: &Message) -> Vec<u8> {
        let mut reply = self.reply_to(msg, Ipv4Addr::UNSPECIFIED);
        reply.set_ciaddr(Ipv4Addr::UNSPECIFIED);
        let opts = reply.opts_mut();
        opts.insert(DhcpOption::MessageType(MessageType::Nak));
        opts.insert(DhcpOption::ServerIdentifier(self.plan.server));
        opts.insert(DhcpOption::Message("address not available".into()));
        encode(&reply)
    }

    fn reply_to(&self, msg: &Message, yiaddr: Ipv4Addr) -> Message {
        let mut reply = Message::new_with_id(
            msg.xid(),
            msg.ciaddr(),
            yiaddr,
            Ipv4Addr::UNSPECIFIED,
            msg.giaddr(),
            &msg.chaddr()[..6],
        );
        reply.set_opcode(Opcode::BootReply);
        reply.set_htype(HType::Eth);
        reply.set_flags(msg.flags());
        reply
    }
}

fn encode(msg: &Message) -> Vec<u8> {
    pad(encode_unpadded(msg))
}

fn encode_unpadded(msg: &Message) -> Vec<u8> {
    let mut buf = Vec::with_capacity(576);
    // Encoding our own well-formed message into a Vec cannot fail.
    let _ = msg.encode(&mut Encoder::new(&mut buf));
    buf
}

/// Some clients drop replies shorter than a BOOTP packet (300 bytes).
fn pad(mut buf: Vec<u8>) -> Vec<u8> {
    if buf.len() < 300 {
        buf.resize(300, 0);
    }
    buf
}

/// The parts of a client message the server decides on.
struct Request {
    kind: MessageType,
    mac: MacAddr,
    ciaddr: Ipv4Addr,
    giaddr: Ipv4Addr,
    /// The client asked for broadcast replies (it cannot receive unicast
    /// before it has an address).
    broadcast: bool,
    requested_ip: Option<Ipv4Addr>,
    server_id: Option<Ipv4Addr>,
    hostname: Option<String>,
    client_id: Option<Vec<u8>>,
    /// The bridge port it came in on, when known.
    port: Option<PortId>,
    /// The options it asked for (its parameter request list, option 55).
    asked: Vec<u8>,
    /// The largest message it accepts (option 57), if it said.
    max_size: Option<u16>,
}

impl Request {
    /// `None` for anything that is not a client's Ethernet DHCP message.
    fn read(msg: &Message, port: Option<PortId>) -> Option<Request> {
        if msg.opcode() != Opcode::BootRequest || msg.htype() != HType::Eth || msg.hlen() != 6 {
            return None;
        }
        let chaddr = msg.chaddr();
        let mac = MacAddr(chaddr.get(..6)?.try_into().ok()?);
        if mac.0[0] & 1 == 1 || mac.0 == [0; 6] {
            return None;
        }
        let opts = msg.opts();
        let kind = opts.msg_type()?;
        let ip_opt = |code| match opts.get(code) {
            Some(DhcpOption::RequestedIpAddress(ip)) | Some(DhcpOption::ServerIdentifier(ip)) => {
                Some(*ip)
            }
            _ => None,
        };
        let hostname = match opts.get(OptionCode::Hostname) {
            Some(DhcpOption::Hostname(h)) => Some(h.clone()),
            _ => None,
        };
        let client_id = match opts.get(OptionCode::ClientIdentifier) {
            Some(DhcpOption::ClientIdentifier(id)) if !id.is_empty() && id.len() <= 64 => {
                Some(id.clone())
            }
            _ => None,
        };
        let asked = match opts.get(OptionCode::ParameterRequestList) {
            Some(DhcpOption::ParameterRequestList(codes)) => {
                codes.iter().map(|c| u8::from(*c)).collect()
            }
            _ => Vec::new(),
        };
        let max_size = match opts.get(OptionCode::MaxMessageSize) {
            Some(DhcpOption::MaxMessageSize(n)) => Some(*n),
            _ => None,
        };
        Some(Request {
            kind,
            mac,
            ciaddr: msg.ciaddr(),
            giaddr: msg.giaddr(),
            broadcast: msg.flags().broadcast(),
            requested_ip: ip_opt(OptionCode::RequestedIpAddress),
            server_id: ip_opt(OptionCode::ServerIdentifier),
            hostname,
            client_id,
            port,
            asked,
            max_size,
        })
    }
}

/// Builds a client message; for tests, fuzz seeds and benchmarks.
pub fn client_message(kind: MessageType, mac: MacAddr, xid: u32, opts: Vec<DhcpOption>) -> Message {
    let mut msg = Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac.0,
    );
    msg.set_flags(Flags::default().set_broadcast());
    msg.opts_mut().insert(DhcpOption::MessageType(kind));
    for o in opts {
        msg.opts_mut().insert(o);
    }
    msg
}

/// Encodes a message built by [`client_message`].
pub fn to_bytes(msg: &Message) -> Vec<u8> {
    encode(msg)
}

#[cfg(test)]
mod tests;
