//! The names a network's DNS server answers itself: the static records of
//! the definition (A, and CNAME, TXT, SRV and MX), the hostnames of the
//! guests that hold a lease, under the network's domain (and bare); and
//! where the names that are not its own go (the default upstream, a
//! domain's own servers, or nowhere when the definition says
//! `upstream = false`).
//!
//! Lookups run on every query, so names are kept lowercase in their final
//! form and resolving a query name builds its key on the stack.
//!
//! A guest names itself, so a lease name is published only if no one else
//! holds it: the definition's names, the [`RESERVED_NAMES`] that clients
//! look up on their own (WPAD, ISATAP) or trust (localhost), the labels of
//! the domain, and a name another lease already published (the first holder
//! keeps it until its lease ends). A refused name is not published; the
//! lease itself stands.

use guestnet_mode_api::names::check_label;
use guestnet_mode_api::{DnsName, DnsPlan, DnsRecord, DomainServers, RecordData, ResourceRecord};
use hickory_proto::rr::{Name, RecordType};
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};

/// The zone as the server and the lease keeper share it: the server only
/// reads (never across an await), the lease keeper writes on each change.
pub type SharedZone = Arc<RwLock<Zone>>;

/// TTL of names from the definition: they change only when it is updated.
pub const STATIC_TTL: u32 = 60;
/// TTL of lease names: a guest may come back with another address at any
/// time, so resolvers should not keep them.
pub const LEASE_TTL: u32 = 5;

/// The longest name in text form (without the final dot), RFC 1035 3.1.
const MAX_NAME_TEXT: usize = 253;
/// Most typed records and per-domain upstreams taken from a plan (the plan
/// check refuses more; this keeps the zone bounded whatever it is fed).
pub const MAX_TYPED_RECORDS: usize = guestnet_mode_api::check::MAX_DNS_RECORDS;
pub const MAX_SPLITS: usize = guestnet_mode_api::check::MAX_DOMAIN_SERVERS;
/// The port per-domain upstream servers are asked on.
const DNS_PORT: u16 = 53;

/// Names no lease may publish: clients ask for `wpad` (proxy
/// auto-configuration) and `isatap` (IPv6 tunnels) on their own and trust
/// the answer; `localhost` and its kin must stay the loopback; `gateway` is
/// what `_gateway` (systemd-resolved's name for the default router) comes
/// out as once sanitized.
pub const RESERVED_NAMES: &[&str] = &[
    "localhost",
    "localhost4",
    "localhost6",
    "ip6-localhost",
    "ip6-loopback",
    "wpad",
    "isatap",
    "gateway",
];

/// What became of a lease's host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Published (or already was), or it is the name the definition gives
    /// this very address.
    Published,
    /// Not published; `first` unless the same address was refused the same
    /// name before (a renewal), so that a refusal is reported once.
    Refused { why: Refusal, first: bool },
}

impl Claim {
    pub fn refusal(self) -> Option<Refusal> {
        match self {
            Claim::Published => None,
            Claim::Refused { why, .. } => Some(why),
        }
    }
}

/// Why a lease's host name is not published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a DNS label, or too long under the domain.
    Invalid,
    /// A reserved name, a name of the definition, or a label of the domain.
    Reserved,
    /// Another lease holds it.
    Taken,
}

#[derive(Debug, Clone, Default)]
struct Entry {
    /// Addresses from the definition; they win over `leases`.
    statics: Vec<Ipv4Addr>,
    /// The address of the lease that holds this name: one at most (a
    /// vector, to answer from as a slice).
    leases: Vec<Ipv4Addr>,
    /// `name.domain.` (or `name.`) in wire form, the target of PTR answers.
    wire: Box<[u8]>,
    /// Records of other types from the definition, in its order. A CNAME
    /// is alone: no addresses, no other record, no lease beside it.
    typed: Vec<Typed>,
}

impl Entry {
    fn is_empty(&self) -> bool {
        self.statics.is_empty() && self.leases.is_empty() && self.typed.is_empty()
    }

    fn has_cname(&self) -> bool {
        self.typed.iter().any(|t| t.rtype == RecordType::CNAME)
    }
}

/// A record of the definition other than an address, ready to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Typed {
    pub rtype: RecordType,
    /// The record's data in wire form (names in it uncompressed).
    pub rdata: Box<[u8]>,
    /// A CNAME's target, fully qualified, to follow it in the zone.
    pub target: Option<Name>,
}

/// A name with records of the definition besides, or instead of, addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node<'z> {
    /// Its addresses (the definition's, else its lease's), maybe none.
    pub addrs: &'z [Ipv4Addr],
    pub addr_ttl: u32,
    /// Its other records; a CNAME is the only one when there is one.
    pub records: &'z [Typed],
}

impl<'z> Node<'z> {
    /// The CNAME, when the name is an alias.
    pub fn cname(&self) -> Option<&'z Typed> {
        self.records.iter().find(|t| t.rtype == RecordType::CNAME)
    }
}

/// Where a query for a name that is not the zone's goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'z> {
    /// To the network's upstream servers (forwarders or resolv.conf).
    Default,
    /// To the servers of the longest `domain_servers` domain holding it.
    Servers(&'z Arc<[SocketAddr]>),
    /// Nowhere: `upstream = false`, answered REFUSED.
    Refuse,
}

/// A domain whose names have servers of their own (split DNS).
#[derive(Debug, Clone)]
struct Split {
    /// Lowercase labels, for suffix matching.
    labels: Vec<Box<[u8]>>,
    servers: Arc<[SocketAddr]>,
}

/// What the zone says about a query name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution<'z> {
    /// A name the zone knows: its addresses.
    Host { addrs: &'z [Ipv4Addr], ttl: u32 },
    /// A name the zone knows with records of other types.
    Node(Node<'z>),
    /// `d.c.b.a.in-addr.arpa.` of an address the zone knows: the name,
    /// in wire form.
    Reverse { target: &'z [u8], ttl: u32 },
    /// The network's domain itself, or a name only with names under it
    /// (`_tcp` of `_http._tcp`): it exists but holds no data.
    Apex,
    /// Under the network's domain, but unknown: never forwarded.
    NxDomain,
    /// Not the zone's business: forward it.
    Elsewhere,
}

/// The local names of one network.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    domain: Option<DnsName>,
    /// The domain's labels, lowercase, for suffix matching.
    domain_labels: Vec<Box<[u8]>>,
    /// Keyed by the lowercase name relative to the domain (`web`).
    names: HashMap<Box<[u8]>, Entry>,
    /// For PTR: the first static name of each address...
    static_by_ip: HashMap<Ipv4Addr, Box<[u8]>>,
    /// ...else its lease name; one per address, the newest lease's.
    lease_by_ip: HashMap<Ipv4Addr, Box<[u8]>>,
    /// The name each address was last refused, to report a refusal once:
    /// one per address of a lease, like `lease_by_ip`.
    refused: HashMap<Ipv4Addr, Box<[u8]>>,
    /// Names that exist only as parents of the definition's names (keys
    /// like `names`): bounded by the definition's records.
    parents: HashSet<Box<[u8]>>,
    /// Per-domain upstreams, longest domain first.
    splits: Vec<Split>,
    /// `upstream = false`: what is neither the zone's nor a split domain's
    /// is refused.
    refuse_outside: bool,
}

impl Zone {
    /// `records`: static names from the definition (`DnsPlan.records`,
    /// single labels like `web`); they win over lease names. A record whose
    /// name is not a valid DNS name is skipped with a warning.
    pub fn new(domain: Option<DnsName>, records: &[DnsRecord]) -> Zone {
        let mut zone = Zone::default();
        zone.set_definition(domain, records);
        zone
    }

    /// The zone of a plan: its domain, A records, typed records, where
    /// outside names go.
    pub fn from_plan(plan: &DnsPlan) -> Zone {
        let mut zone = Zone::default();
        zone.set_plan(plan);
        zone
    }

    /// Replaces what the definition says (an updated plan) and keeps the
    /// lease names.
    pub fn set_plan(&mut self, plan: &DnsPlan) {
        self.set_all(
            plan.domain.clone(),
            &plan.records,
            &plan.typed_records,
            &plan.domain_servers,
            plan.upstream,
        );
    }

    /// Replaces the domain and the static records (an updated definition)
    /// and keeps the lease names; no typed records, no per-domain
    /// upstreams, everything else forwarded.
    pub fn set_definition(&mut self, domain: Option<DnsName>, records: &[DnsRecord]) {
        self.set_all(domain, records, &[], &[], true);
    }

    fn set_all(
        &mut self,
        domain: Option<DnsName>,
        records: &[DnsRecord],
        typed: &[ResourceRecord],
        splits: &[DomainServers],
        upstream: bool,
    ) {
        let leases: Vec<(Box<[u8]>, Ipv4Addr)> = self
            .lease_by_ip
            .iter()
            .map(|(ip, name)| (name.clone(), *ip))
            .collect();
        self.domain_labels = domain
            .as_ref()
            .map(|d| d.as_str().split('.').map(|l| l.as_bytes().into()).collect())
            .unwrap_or_default();
        self.domain = domain;
        self.names.clear();
        self.static_by_ip.clear();
        self.lease_by_ip.clear();
        self.parents.clear();
        self.refuse_outside = !upstream;
        self.splits = splits
            .iter()
            .take(MAX_SPLITS)
            .map(|d| Split {
                labels: d
                    .domain
                    .as_str()
                    .split('.')
                    .map(|l| l.as_bytes().into())
                    .collect(),
                servers: d
                    .servers
                    .iter()
                    .take(MAX_SPLITS)
                    .map(|ip| SocketAddr::new(*ip, DNS_PORT))
                    .collect(),
            })
            .collect();
        self.splits
            .sort_by_key(|s| std::cmp::Reverse(s.labels.len()));
        for record in records {
            match self.key_for(&record.name) {
                Some(key) => self.add_static(key, record.ip),
                None => tracing::warn!(
                    name = %record.name,
                    "DNS record skipped: not a valid name under the network's domain"
                ),
            }
        }
        for record in typed.iter().take(MAX_TYPED_RECORDS) {
            if let Err(why) = self.add_typed(record) {
                tracing::warn!(name = %record.name, "DNS record skipped: {why}");
            }
        }
        let keys: Vec<Box<[u8]>> = self.names.keys().cloned().collect();
        for key in keys {
            self.add_parents(&key);
        }
        for (old_key, ip) in leases {
            // Re-derived: the new domain may leave less room for the name.
            let key = std::str::from_utf8(&old_key)
                .ok()
                .and_then(|name| self.key_for(name));
            if let Some(key) = key {
                if let Some(why) = self.insert_lease(key, ip).refusal() {
                    tracing::info!(%ip, ?why, "lease name no longer published under the new definition");
                }
            }
        }
    }

    pub fn domain(&self) -> Option<&DnsName> {
        self.domain.as_ref()
    }

    /// A guest's lease with a (sanitized, single-label) hostname, if the
    /// name is free (see the module's comment): replaces an older lease
    /// name for the same ip. A refused name leaves the address without one.
    pub fn add_lease(&mut self, hostname: &str, ip: Ipv4Addr) -> Claim {
        let key = if check_label(hostname).is_ok() {
            self.key_for(hostname)
        } else {
            None
        };
        match key {
            Some(key) => self.insert_lease(key, ip),
            None => {
                self.drop_lease(ip);
                let key = hostname.as_bytes().into();
                self.refuse(ip, key, Refusal::Invalid)
            }
        }
    }

    /// Forgets whatever name `ip` holds (a lease that no longer carries one).
    pub fn forget_address(&mut self, ip: Ipv4Addr) {
        self.refused.remove(&ip);
        self.drop_lease(ip);
    }

    /// Forgets the lease name of `ip`, if it is still `hostname` (a newer
    /// lease of the address may have brought another name).
    pub fn remove_lease(&mut self, hostname: &str, ip: Ipv4Addr) {
        let key = hostname
            .to_ascii_lowercase()
            .into_bytes()
            .into_boxed_slice();
        if self.refused.get(&ip) == Some(&key) {
            self.refused.remove(&ip);
        }
        if self.lease_by_ip.get(&ip) == Some(&key) {
            self.drop_lease(ip);
        }
    }

    /// The addresses a name relative to the domain (`web`) resolves to.
    pub fn addresses(&self, name: &str) -> &[Ipv4Addr] {
        let key = name.to_ascii_lowercase();
        match self.names.get(key.as_bytes()) {
            Some(e) if !e.statics.is_empty() => &e.statics,
            Some(e) => &e.leases,
            None => &[],
        }
    }

    /// What the zone says about `name` (any case, as it came in a query).
    pub fn resolve(&self, name: &Name) -> Resolution<'_> {
        if let Some(ip) = reverse_v4(name) {
            let key = self.static_by_ip.get(&ip).or(self.lease_by_ip.get(&ip));
            if let Some(entry) = key.and_then(|k| self.names.get(k)) {
                let ttl = if entry.statics.is_empty() {
                    LEASE_TTL
                } else {
                    STATIC_TTL
                };
                return Resolution::Reverse {
                    target: &entry.wire,
                    ttl,
                };
            }
        }
        let total = name.iter().len();
        let under_domain = !self.domain_labels.is_empty()
            && total >= self.domain_labels.len()
            && name
                .iter()
                .skip(total - self.domain_labels.len())
                .zip(&self.domain_labels)
                .all(|(a, b)| a.eq_ignore_ascii_case(b));
        let relative = if under_domain {
            total - self.domain_labels.len()
        } else {
            total
        };
        if under_domain && relative == 0 {
            return Resolution::Apex;
        }
        let not_found = if under_domain {
            Resolution::NxDomain
        } else {
            Resolution::Elsewhere
        };
        if relative == 0 {
            return not_found;
        }
        // The key is built on the stack: a name is at most 255 bytes.
        let mut buf = [0u8; 256];
        let mut len = 0;
        for (i, label) in name.iter().take(relative).enumerate() {
            if i > 0 {
                buf[len] = b'.';
                len += 1;
            }
            if len + label.len() > MAX_NAME_TEXT {
                return not_found;
            }
            for &c in label {
                // Zone names hold only these; anything else (a dot inside a
                // label, above all) could only make a false match.
                if !(c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
                    return not_found;
                }
                buf[len] = c.to_ascii_lowercase();
                len += 1;
            }
        }
        let key = &buf[..len];
        match self.names.get(key) {
            Some(e) => {
                let (addrs, ttl) = if e.statics.is_empty() {
                    (&e.leases[..], LEASE_TTL)
                } else {
                    (&e.statics[..], STATIC_TTL)
                };
                if e.typed.is_empty() {
                    Resolution::Host { addrs, ttl }
                } else {
                    Resolution::Node(Node {
                        addrs,
                        addr_ttl: ttl,
                        records: &e.typed,
                    })
                }
            }
            None if self.parents.contains(key) => Resolution::Apex,
            None => not_found,
        }
    }

    /// Where a query for `name` goes when the zone does not answer it:
    /// the servers of the longest per-domain upstream domain holding it
    /// (one under the network's domain only for names the zone does not
    /// know), else the default upstream, unless `upstream = false`.
    pub fn route(&self, name: &Name) -> Route<'_> {
        match self.split_for(name) {
            Some(s) => Route::Servers(&s.servers),
            None if self.refuse_outside => Route::Refuse,
            None => Route::Default,
        }
    }

    /// The per-domain upstream for a name under the network's domain that
    /// the zone does not know, when one of the split domains lies deeper
    /// than the network's domain and holds it.
    pub fn split_below_domain(&self, name: &Name) -> Option<&Arc<[SocketAddr]>> {
        self.split_for(name)
            .filter(|s| s.labels.len() > self.domain_labels.len())
            .map(|s| &s.servers)
    }

    /// The longest split domain holding `name` (the list is sorted).
    fn split_for(&self, name: &Name) -> Option<&Split> {
        let total = name.iter().len();
        self.splits.iter().find(|s| {
            s.labels.len() <= total
                && name
                    .iter()
                    .skip(total - s.labels.len())
                    .zip(&s.labels)
                    .all(|(a, b)| a.eq_ignore_ascii_case(b))
        })
    }

    /// The lookup key of a name from the definition or a lease: lowercase,
    /// relative to the domain, every label valid, and short enough that the
    /// full name still fits in a DNS name.
    fn key_for(&self, name: &str) -> Option<Box<[u8]>> {
        self.key_with(name, |l| check_label(l).is_ok())
    }

    /// Like [`Zone::key_for`] for the owner of a typed record: labels may
    /// start with `_` (`_http._tcp`).
    fn record_key(&self, name: &str) -> Option<Box<[u8]>> {
        self.key_with(name, |l| {
            check_label(l.strip_prefix('_').unwrap_or(l)).is_ok()
        })
    }

    fn key_with(&self, name: &str, label_ok: impl Fn(&str) -> bool) -> Option<Box<[u8]>> {
        let mut name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if let Some(domain) = &self.domain {
            if let Some(rel) = name.strip_suffix(domain.as_str()) {
                if let Some(rel) = rel.strip_suffix('.') {
                    name = rel.to_string();
                }
            }
        }
        if name.is_empty() || !name.split('.').all(label_ok) {
            return None;
        }
        let full = name.len() + self.domain.as_ref().map_or(0, |d| d.as_str().len() + 1);
        (full <= MAX_NAME_TEXT).then(|| name.into_bytes().into_boxed_slice())
    }

    fn entry(&mut self, key: &[u8]) -> &mut Entry {
        if !self.names.contains_key(key) {
            let wire = wire_name(key, &self.domain_labels);
            let entry = Entry {
                wire,
                ..Entry::default()
            };
            self.names.insert(key.into(), entry);
        }
        self.names.get_mut(key).expect("inserted above")
    }

    fn add_static(&mut self, key: Box<[u8]>, ip: Ipv4Addr) {
        let entry = self.entry(&key);
        if !entry.statics.contains(&ip) {
            entry.statics.push(ip);
        }
        self.static_by_ip.entry(ip).or_insert(key);
    }

    /// Adds a record of the definition, unless it is invalid or clashes
    /// with a CNAME (an alias holds nothing else).
    fn add_typed(&mut self, record: &ResourceRecord) -> Result<(), &'static str> {
        let key = self
            .record_key(&record.name)
            .ok_or("not a valid name under the network's domain")?;
        let existing = self.names.get(&key);
        let has_data = existing.is_some_and(|e| !e.statics.is_empty() || !e.typed.is_empty());
        let is_alias = existing.is_some_and(Entry::has_cname);
        let typed = match &record.data {
            RecordData::A { ip } => {
                if is_alias {
                    return Err("the name is an alias (CNAME)");
                }
                self.add_static(key, *ip);
                return Ok(());
            }
            RecordData::Cname { target } => {
                if has_data {
                    return Err("a CNAME must be the only record of its name");
                }
                let (wire, name) = self.target_name(target).ok_or("not a valid target")?;
                Typed {
                    rtype: RecordType::CNAME,
                    rdata: wire,
                    target: Some(name),
                }
            }
            RecordData::Txt { text } => {
                let mut rdata = Vec::new();
                for t in text {
                    let len = u8::try_from(t.len()).map_err(|_| "a TXT string over 255 bytes")?;
                    rdata.push(len);
                    rdata.extend_from_slice(t.as_bytes());
                }
                if rdata.is_empty() || rdata.len() > 4096 {
                    return Err("TXT data empty or too long");
                }
                Typed {
                    rtype: RecordType::TXT,
                    rdata: rdata.into_boxed_slice(),
                    target: None,
                }
            }
            RecordData::Srv {
                priority,
                weight,
                port,
                target,
            } => {
                let (wire, _) = self.target_name(target).ok_or("not a valid target")?;
                let mut rdata = Vec::with_capacity(6 + wire.len());
                for n in [priority, weight, port] {
                    rdata.extend_from_slice(&n.to_be_bytes());
                }
                rdata.extend_from_slice(&wire);
                Typed {
                    rtype: RecordType::SRV,
                    rdata: rdata.into_boxed_slice(),
                    target: None,
                }
            }
            RecordData::Mx {
                preference,
                exchange,
            } => {
                let (wire, _) = self.target_name(exchange).ok_or("not a valid exchange")?;
                let mut rdata = preference.to_be_bytes().to_vec();
                rdata.extend_from_slice(&wire);
                Typed {
                    rtype: RecordType::MX,
                    rdata: rdata.into_boxed_slice(),
                    target: None,
                }
            }
        };
        if is_alias {
            return Err("the name is an alias (CNAME)");
        }
        // Leases come back after the definition's records (set_all), so
        // none holds the name of a new alias.
        let entry = self.entry(&key);
        if !entry.typed.contains(&typed) {
            entry.typed.push(typed);
        }
        Ok(())
    }

    /// A name a record points to, fully qualified: relative to the domain
    /// unless it ends with a dot. In wire form (lowercase), and as a name.
    fn target_name(&self, target: &str) -> Option<(Box<[u8]>, Name)> {
        let full = match target.strip_suffix('.') {
            Some(absolute) => absolute.to_ascii_lowercase(),
            None => match &self.domain {
                Some(d) => format!("{}.{}", target.to_ascii_lowercase(), d.as_str()),
                None => target.to_ascii_lowercase(),
            },
        };
        if full.is_empty() || full.len() > MAX_NAME_TEXT {
            return None;
        }
        let ok = full
            .split('.')
            .all(|l| check_label(l.strip_prefix('_').unwrap_or(l)).is_ok());
        if !ok {
            return None;
        }
        let name = Name::from_ascii(format!("{full}.")).ok()?;
        let mut wire = Vec::with_capacity(full.len() + 2);
        for label in full.split('.') {
            wire.push(label.len() as u8);
            wire.extend_from_slice(label.as_bytes());
        }
        wire.push(0);
        Some((wire.into_boxed_slice(), name))
    }

    /// Records `a.b.c`'s parents `b.c` and `c` as existing names.
    fn add_parents(&mut self, key: &[u8]) {
        let mut rest = key;
        while let Some(dot) = rest.iter().position(|c| *c == b'.') {
            rest = &rest[dot + 1..];
            if !self.names.contains_key(rest) {
                self.parents.insert(rest.into());
            }
        }
    }

    fn insert_lease(&mut self, key: Box<[u8]>, ip: Ipv4Addr) -> Claim {
        if self.lease_by_ip.get(&ip) == Some(&key) {
            return Claim::Published;
        }
        self.drop_lease(ip);
        match self.claim(&key, ip) {
            None => {
                self.refused.remove(&ip);
                self.entry(&key).leases.push(ip);
                self.lease_by_ip.insert(ip, key);
                Claim::Published
            }
            Some(why) => self.refuse(ip, key, why),
        }
    }

    fn refuse(&mut self, ip: Ipv4Addr, key: Box<[u8]>, why: Refusal) -> Claim {
        let first = self.refused.get(&ip) != Some(&key);
        if first {
            self.refused.insert(ip, key);
        }
        Claim::Refused { why, first }
    }

    /// Why `ip` may not publish `key`, if it may not (it publishes none now).
    fn claim(&self, key: &[u8], ip: Ipv4Addr) -> Option<Refusal> {
        let reserved = RESERVED_NAMES.iter().any(|r| r.as_bytes() == key)
            || self.domain_labels.iter().any(|l| &l[..] == key);
        if reserved {
            return Some(Refusal::Reserved);
        }
        match self.names.get(key) {
            // The definition gives this address the name: its own lease
            // (the static record answers for it).
            Some(e) if e.statics.contains(&ip) => None,
            Some(e) if !e.statics.is_empty() || e.has_cname() => Some(Refusal::Reserved),
            Some(e) if !e.leases.is_empty() => Some(Refusal::Taken),
            _ => None,
        }
    }

    fn drop_lease(&mut self, ip: Ipv4Addr) {
        let Some(key) = self.lease_by_ip.remove(&ip) else {
            return;
        };
        if let Some(entry) = self.names.get_mut(&key) {
            entry.leases.retain(|a| *a != ip);
            if entry.is_empty() {
                self.names.remove(&key);
            }
        }
    }
}

/// `key` (dotted, relative) followed by the domain, in wire form.
fn wire_name(key: &[u8], domain: &[Box<[u8]>]) -> Box<[u8]> {
    let mut wire =
        Vec::with_capacity(key.len() + 2 + domain.iter().map(|l| l.len() + 1).sum::<usize>());
    for label in key
        .split(|c| *c == b'.')
        .chain(domain.iter().map(|l| &l[..]))
    {
        wire.push(label.len() as u8);
        wire.extend_from_slice(label);
    }
    wire.push(0);
    wire.into_boxed_slice()
}

/// The address of `d.c.b.a.in-addr.arpa.`, if `name` is one.
fn reverse_v4(name: &Name) -> Option<Ipv4Addr> {
    let mut labels = name.iter();
    if labels.len() != 6 {
        return None;
    }
    let mut octets = [0u8; 4];
    for slot in octets.iter_mut().rev() {
        *slot = decimal_octet(labels.next()?)?;
    }
    let in_addr = labels.next()?;
    let arpa = labels.next()?;
    (in_addr.eq_ignore_ascii_case(b"in-addr") && arpa.eq_ignore_ascii_case(b"arpa"))
        .then(|| Ipv4Addr::from(octets))
}

/// A reverse-name label: 0 to 255 in decimal, without leading zeros.
fn decimal_octet(label: &[u8]) -> Option<u8> {
    if label.is_empty() || label.len() > 3 || (label.len() > 1 && label[0] == b'0') {
        return None;
    }
    let mut value: u16 = 0;
    for &c in label {
        if !c.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u16::from(c - b'0');
    }
    u8::try_from(value).ok()
}

/// The zone the DNS tests answer from: `guest.lan` with the static host
/// `web` (192.168.122.5) and the lease `vm1` (192.168.122.50).
#[cfg(test)]
pub(crate) fn example() -> Zone {
    let mut z = Zone::new(
        Some(DnsName::new("guest.lan").unwrap()),
        &[DnsRecord {
            name: "web".into(),
            ip: Ipv4Addr::new(192, 168, 122, 5),
        }],
    );
    z.add_lease("vm1", Ipv4Addr::new(192, 168, 122, 50));
    z
}

/// A plan with typed records under `guest.lan`: `www` CNAME `web1` (a
/// guest's DHCP name), `_http._tcp` SRV `0 5 80 web1`, `info` TXT
/// `hello`, `mail` MX `10 web1`, `db` A 10.77.0.9, `ext` CNAME
/// `www.example.com.`, the loop `l1` -> `l2` -> `l1`; split domains
/// `corp.example` (10.0.0.53) and `eu.corp.example` (10.0.0.54).
#[cfg(test)]
pub(crate) fn typed_plan(upstream: bool) -> DnsPlan {
    let rr = |name: &str, data: RecordData| ResourceRecord {
        name: name.into(),
        data,
    };
    let cname = |target: &str| RecordData::Cname {
        target: target.into(),
    };
    DnsPlan {
        listen: Ipv4Addr::new(10, 77, 0, 1),
        domain: Some(DnsName::new("guest.lan").unwrap()),
        forwarders: vec![],
        records: vec![DnsRecord {
            name: "web".into(),
            ip: Ipv4Addr::new(10, 77, 0, 5),
        }],
        upstream,
        domain_servers: vec![
            DomainServers {
                domain: DnsName::new("corp.example").unwrap(),
                servers: vec!["10.0.0.53".parse().unwrap()],
            },
            DomainServers {
                domain: DnsName::new("eu.corp.example").unwrap(),
                servers: vec!["10.0.0.54".parse().unwrap()],
            },
        ],
        typed_records: vec![
            rr("www", cname("web1")),
            rr(
                "_http._tcp",
                RecordData::Srv {
                    priority: 0,
                    weight: 5,
                    port: 80,
                    target: "web1".into(),
                },
            ),
            rr(
                "info",
                RecordData::Txt {
                    text: vec!["hello".into()],
                },
            ),
            rr(
                "mail",
                RecordData::Mx {
                    preference: 10,
                    exchange: "web1".into(),
                },
            ),
            rr(
                "db",
                RecordData::A {
                    ip: Ipv4Addr::new(10, 77, 0, 9),
                },
            ),
            rr("ext", cname("www.example.com.")),
            rr("alias", cname("www")),
            rr("l1", cname("l2")),
            rr("l2", cname("l1")),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn name(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    fn zone() -> Zone {
        Zone::new(
            Some(DnsName::new("guest.lan").unwrap()),
            &[
                DnsRecord {
                    name: "web".into(),
                    ip: ip("192.168.122.5"),
                },
                DnsRecord {
                    name: "Db".into(),
                    ip: ip("192.168.122.6"),
                },
                DnsRecord {
                    name: "bad name".into(),
                    ip: ip("192.168.122.7"),
                },
            ],
        )
    }

    #[test]
    fn static_names_under_the_domain_and_bare() {
        let z = zone();
        let web = [ip("192.168.122.5")];
        let host = Resolution::Host {
            addrs: &web,
            ttl: STATIC_TTL,
        };
        assert_eq!(z.resolve(&name("web.guest.lan.")), host);
        assert_eq!(z.resolve(&name("WEB.Guest.LAN.")), host);
        assert_eq!(z.resolve(&name("web.")), host);
        assert_eq!(z.addresses("DB"), &[ip("192.168.122.6")]);
        assert!(z.addresses("bad name").is_empty());
    }

    #[test]
    fn unknown_names_in_the_domain_are_nxdomain_elsewhere_forwarded() {
        let z = zone();
        assert_eq!(z.resolve(&name("nope.guest.lan.")), Resolution::NxDomain);
        assert_eq!(z.resolve(&name("a.web.guest.lan.")), Resolution::NxDomain);
        assert_eq!(z.resolve(&name("guest.lan.")), Resolution::Apex);
        assert_eq!(z.resolve(&name("nope.")), Resolution::Elsewhere);
        assert_eq!(z.resolve(&name("example.com.")), Resolution::Elsewhere);
        assert_eq!(z.resolve(&name("lan.")), Resolution::Elsewhere);
        assert_eq!(z.resolve(&Name::root()), Resolution::Elsewhere);
        assert_eq!(
            z.resolve(&name("web.guest.lan.evil.")),
            Resolution::Elsewhere
        );
    }

    #[test]
    fn a_dot_inside_a_label_matches_nothing() {
        let mut z = Zone::new(
            None,
            &[DnsRecord {
                name: "a.b".into(),
                ip: ip("10.0.0.1"),
            }],
        );
        z.add_lease("c", ip("10.0.0.2"));
        assert!(matches!(z.resolve(&name("a.b.")), Resolution::Host { .. }));
        let raw = Name::from_labels(vec![&b"a.b"[..]]).unwrap();
        assert_eq!(z.resolve(&raw), Resolution::Elsewhere);
    }

    #[test]
    fn leases_come_and_go_and_statics_win() {
        let mut z = zone();
        z.add_lease("vm1", ip("192.168.122.50"));
        z.add_lease("web", ip("192.168.122.51"));
        assert_eq!(z.addresses("vm1"), &[ip("192.168.122.50")]);
        assert_eq!(z.addresses("web"), &[ip("192.168.122.5")]);
        // The same address renamed: the old name goes.
        z.add_lease("vm1b", ip("192.168.122.50"));
        assert!(z.addresses("vm1").is_empty());
        assert_eq!(z.resolve(&name("vm1.guest.lan.")), Resolution::NxDomain);
        // A stale removal (old name) leaves the new one.
        z.remove_lease("vm1", ip("192.168.122.50"));
        assert_eq!(z.addresses("vm1b"), &[ip("192.168.122.50")]);
        z.remove_lease("VM1B", ip("192.168.122.50"));
        assert!(z.addresses("vm1b").is_empty());
        assert!(z.names.keys().all(|k| &k[..] != b"vm1b"));
        // Not a label: ignored.
        z.add_lease("a.b", ip("192.168.122.52"));
        z.add_lease("", ip("192.168.122.53"));
        assert!(!z.lease_by_ip.contains_key(&ip("192.168.122.52")));
        assert!(!z.lease_by_ip.contains_key(&ip("192.168.122.53")));
        assert_eq!(z.resolve(&name("vm2.guest.lan.")), Resolution::NxDomain);
        z.add_lease("vm2", ip("192.168.122.53"));
        assert_eq!(
            z.resolve(&name("vm2.guest.lan.")),
            Resolution::Host {
                addrs: &[ip("192.168.122.53")],
                ttl: LEASE_TTL
            }
        );
    }

    #[test]
    fn the_first_holder_keeps_a_name_until_its_lease_ends() {
        let mut z = zone();
        let (a, b) = (ip("192.168.122.60"), ip("192.168.122.61"));
        assert_eq!(z.add_lease("victim", a), Claim::Published);
        assert_eq!(
            z.add_lease("Victim", b),
            Claim::Refused {
                why: Refusal::Taken,
                first: true
            }
        );
        assert_eq!(z.addresses("victim"), &[a]);
        // Renewing changes neither, and the refusal is not news.
        assert_eq!(z.add_lease("victim", a), Claim::Published);
        assert_eq!(
            z.add_lease("victim", b),
            Claim::Refused {
                why: Refusal::Taken,
                first: false
            }
        );
        assert_eq!(z.addresses("victim"), &[a]);
        // Nor a PTR for the second holder.
        assert_eq!(
            z.resolve(&name("61.122.168.192.in-addr.arpa.")),
            Resolution::Elsewhere
        );
    }

    #[test]
    fn a_name_freed_goes_to_the_next_lease_that_asks() {
        let mut z = zone();
        let (a, b) = (ip("192.168.122.60"), ip("192.168.122.61"));
        z.add_lease("victim", a);
        assert_eq!(z.add_lease("victim", b).refusal(), Some(Refusal::Taken));
        // A stale removal (another address) frees nothing.
        z.remove_lease("victim", b);
        assert_eq!(z.addresses("victim"), &[a]);
        z.remove_lease("victim", a);
        assert!(z.addresses("victim").is_empty());
        // Not handed over by itself: the second holder gets it when it
        // renews.
        assert_eq!(z.resolve(&name("victim.guest.lan.")), Resolution::NxDomain);
        assert_eq!(z.add_lease("victim", b), Claim::Published);
        assert_eq!(z.addresses("victim"), &[b]);
        // A holder that renames itself frees its old name.
        assert_eq!(z.add_lease("other", b), Claim::Published);
        assert_eq!(z.add_lease("victim", a), Claim::Published);
        // A lease that drops its name frees it too.
        z.forget_address(a);
        assert_eq!(z.add_lease("victim", b), Claim::Published);
        assert!(z.addresses("other").is_empty());
    }

    #[test]
    fn reserved_and_defined_names_are_refused() {
        let mut z = zone();
        let g = ip("192.168.122.70");
        for reserved in [
            "localhost",
            "wpad",
            "WPAD",
            "isatap",
            "gateway",
            "guest",
            "lan",
        ] {
            assert_eq!(
                z.add_lease(reserved, g).refusal(),
                Some(Refusal::Reserved),
                "{reserved}"
            );
            assert!(z.addresses(reserved).is_empty(), "{reserved}");
        }
        assert_eq!(z.resolve(&name("wpad.guest.lan.")), Resolution::NxDomain);
        assert_eq!(z.resolve(&name("localhost.")), Resolution::Elsewhere);
        // A static host's name: only its own address may carry it.
        assert_eq!(z.add_lease("web", g).refusal(), Some(Refusal::Reserved));
        assert_eq!(z.add_lease("db", g).refusal(), Some(Refusal::Reserved));
        assert_eq!(z.addresses("web"), &[ip("192.168.122.5")]);
        assert_eq!(z.add_lease("web", ip("192.168.122.5")), Claim::Published);
        assert_eq!(z.addresses("web"), &[ip("192.168.122.5")]);
        // A refused name takes away the one the address had.
        assert_eq!(z.add_lease("mine", g), Claim::Published);
        assert_eq!(z.add_lease("wpad", g).refusal(), Some(Refusal::Reserved));
        assert!(z.addresses("mine").is_empty());
        // A name the new definition gives a static host is taken from the
        // lease that had it.
        assert_eq!(z.add_lease("api", g), Claim::Published);
        z.set_definition(
            Some(DnsName::new("guest.lan").unwrap()),
            &[DnsRecord {
                name: "api".into(),
                ip: ip("192.168.122.9"),
            }],
        );
        assert_eq!(z.addresses("api"), &[ip("192.168.122.9")]);
        assert!(!z.lease_by_ip.contains_key(&g));
    }

    #[test]
    fn reverse_names() {
        let mut z = zone();
        z.add_lease("vm1", ip("192.168.122.50"));
        let Resolution::Reverse { target, ttl } = z.resolve(&name("50.122.168.192.in-addr.arpa."))
        else {
            panic!("no PTR for a lease");
        };
        assert_eq!(target, b"\x03vm1\x05guest\x03lan\x00");
        assert_eq!(ttl, LEASE_TTL);
        let Resolution::Reverse { target, ttl } = z.resolve(&name("5.122.168.192.IN-ADDR.ARPA."))
        else {
            panic!("no PTR for a static record");
        };
        assert_eq!(target, b"\x03web\x05guest\x03lan\x00");
        assert_eq!(ttl, STATIC_TTL);
        for other in [
            "9.122.168.192.in-addr.arpa.",
            "05.122.168.192.in-addr.arpa.",
            "256.122.168.192.in-addr.arpa.",
            "122.168.192.in-addr.arpa.",
            "x.122.168.192.in-addr.arpa.",
        ] {
            assert_eq!(z.resolve(&name(other)), Resolution::Elsewhere, "{other}");
        }
    }

    #[test]
    fn without_a_domain_bare_names_only() {
        let mut z = Zone::new(None, &[]);
        z.add_lease("vm1", ip("10.1.1.5"));
        assert!(matches!(z.resolve(&name("vm1.")), Resolution::Host { .. }));
        assert_eq!(z.resolve(&name("vm2.")), Resolution::Elsewhere);
        let Resolution::Reverse { target, .. } = z.resolve(&name("5.1.1.10.in-addr.arpa.")) else {
            panic!("no PTR");
        };
        assert_eq!(target, b"\x03vm1\x00");
    }

    #[test]
    fn a_new_definition_keeps_the_leases() {
        let mut z = zone();
        z.add_lease("vm1", ip("192.168.122.50"));
        z.set_definition(Some(DnsName::new("other.test").unwrap()), &[]);
        assert!(matches!(
            z.resolve(&name("vm1.other.test.")),
            Resolution::Host { .. }
        ));
        assert_eq!(z.resolve(&name("web.other.test.")), Resolution::NxDomain);
        assert_eq!(z.resolve(&name("vm1.guest.lan.")), Resolution::Elsewhere);
    }

    #[test]
    fn record_names_may_carry_the_domain() {
        let z = Zone::new(
            Some(DnsName::new("guest.lan").unwrap()),
            &[DnsRecord {
                name: "api.guest.lan.".into(),
                ip: ip("10.0.0.9"),
            }],
        );
        assert_eq!(z.addresses("api"), &[ip("10.0.0.9")]);
    }

    fn node<'z>(z: &'z Zone, n: &str) -> Node<'z> {
        match z.resolve(&name(n)) {
            Resolution::Node(node) => node,
            other => panic!("{n}: not a node: {other:?}"),
        }
    }

    #[test]
    fn typed_records_in_wire_form() {
        let z = Zone::from_plan(&typed_plan(true));
        let www = node(&z, "WWW.guest.lan.");
        let cname = www.cname().unwrap();
        assert_eq!(&cname.rdata[..], b"\x04web1\x05guest\x03lan\x00");
        assert_eq!(cname.target.as_ref().unwrap(), &name("web1.guest.lan."));
        assert_eq!(www.records.len(), 1);
        assert!(www.addrs.is_empty());
        let srv = node(&z, "_http._tcp.guest.lan.");
        assert_eq!(srv.records[0].rtype, RecordType::SRV);
        assert_eq!(
            &srv.records[0].rdata[..],
            b"\x00\x00\x00\x05\x00\x50\x04web1\x05guest\x03lan\x00"
        );
        assert_eq!(node(&z, "_http._tcp.").records.len(), 1, "bare too");
        let txt = node(&z, "info.guest.lan.");
        assert_eq!(&txt.records[0].rdata[..], b"\x05hello");
        let mx = node(&z, "mail.guest.lan.");
        assert_eq!(
            &mx.records[0].rdata[..],
            b"\x00\x0a\x04web1\x05guest\x03lan\x00"
        );
        // A typed A record is a static host (with its PTR).
        assert_eq!(z.addresses("db"), &[ip("10.77.0.9")]);
        assert!(matches!(
            z.resolve(&name("9.0.77.10.in-addr.arpa.")),
            Resolution::Reverse { .. }
        ));
        // An absolute target stays as written.
        let ext = node(&z, "ext.guest.lan.");
        assert_eq!(
            ext.cname().unwrap().target.as_ref().unwrap(),
            &name("www.example.com.")
        );
        // The parent of a service name exists, without data; others not.
        assert_eq!(z.resolve(&name("_tcp.guest.lan.")), Resolution::Apex);
        assert_eq!(z.resolve(&name("_udp.guest.lan.")), Resolution::NxDomain);
    }

    #[test]
    fn an_alias_holds_nothing_else_and_no_lease_takes_it() {
        let mut plan = typed_plan(true);
        plan.typed_records.extend([
            // An address for an alias, an alias for a static host, a second
            // alias: all skipped.
            ResourceRecord {
                name: "www".into(),
                data: RecordData::A {
                    ip: ip("10.77.0.7"),
                },
            },
            ResourceRecord {
                name: "web".into(),
                data: RecordData::Cname {
                    target: "db".into(),
                },
            },
            ResourceRecord {
                name: "www".into(),
                data: RecordData::Cname {
                    target: "db".into(),
                },
            },
            // Not a name.
            ResourceRecord {
                name: "bad name".into(),
                data: RecordData::Txt {
                    text: vec!["x".into()],
                },
            },
        ]);
        let mut z = Zone::from_plan(&plan);
        assert_eq!(node(&z, "www.guest.lan.").records.len(), 1);
        assert!(node(&z, "www.guest.lan.").addrs.is_empty());
        assert_eq!(
            z.resolve(&name("web.guest.lan.")),
            Resolution::Host {
                addrs: &[ip("10.77.0.5")],
                ttl: STATIC_TTL
            }
        );
        // A guest calling itself by the alias's name does not take it...
        assert_eq!(
            z.add_lease("www", ip("10.77.0.50")).refusal(),
            Some(Refusal::Reserved)
        );
        // ...but a guest may hold a name that has a TXT record.
        assert_eq!(z.add_lease("info", ip("10.77.0.51")), Claim::Published);
        let info = node(&z, "info.guest.lan.");
        assert_eq!(info.addrs, &[ip("10.77.0.51")]);
        assert_eq!(info.addr_ttl, LEASE_TTL);
        assert_eq!(info.records.len(), 1);
        // The lease goes, the TXT stays.
        z.remove_lease("info", ip("10.77.0.51"));
        assert!(node(&z, "info.guest.lan.").addrs.is_empty());
    }

    #[test]
    fn outside_names_go_to_the_longest_split_domain_else_upstream() {
        let z = Zone::from_plan(&typed_plan(true));
        let servers = |r: Route<'_>| match r {
            Route::Servers(s) => s.to_vec(),
            other => panic!("not split: {other:?}"),
        };
        let at = |s: &str| vec![SocketAddr::new(s.parse().unwrap(), 53)];
        assert_eq!(servers(z.route(&name("db.corp.example."))), at("10.0.0.53"));
        assert_eq!(servers(z.route(&name("CORP.example."))), at("10.0.0.53"));
        assert_eq!(
            servers(z.route(&name("x.eu.corp.example."))),
            at("10.0.0.54")
        );
        assert_eq!(servers(z.route(&name("eu.corp.example."))), at("10.0.0.54"));
        assert_eq!(z.route(&name("notcorp.example.")), Route::Default);
        assert_eq!(z.route(&name("example.")), Route::Default);
        assert_eq!(z.route(&name("corp.example.evil.")), Route::Default);
        // Not under the network's domain: nothing for the zone to hand on.
        assert!(z.split_below_domain(&name("db.corp.example.")).is_none());
        let z = Zone::from_plan(&typed_plan(false));
        assert_eq!(z.route(&name("example.com.")), Route::Refuse);
        assert_eq!(z.route(&Name::root()), Route::Refuse);
        assert!(matches!(
            z.route(&name("db.corp.example.")),
            Route::Servers(_)
        ));
    }

    #[test]
    fn a_split_domain_under_the_network_domain_takes_unknown_names() {
        let mut plan = typed_plan(true);
        plan.domain_servers = vec![DomainServers {
            domain: DnsName::new("sub.guest.lan").unwrap(),
            servers: vec!["10.0.0.55".parse().unwrap()],
        }];
        let z = Zone::from_plan(&plan);
        assert!(z.split_below_domain(&name("x.sub.guest.lan.")).is_some());
        assert!(z.split_below_domain(&name("x.guest.lan.")).is_none());
        assert!(z.split_below_domain(&name("guest.lan.")).is_none());
    }

    #[test]
    fn a_new_plan_replaces_records_and_routes_and_keeps_leases() {
        let mut z = Zone::from_plan(&typed_plan(false));
        z.add_lease("web1", ip("10.77.0.50"));
        z.set_definition(Some(DnsName::new("guest.lan").unwrap()), &[]);
        assert_eq!(z.resolve(&name("www.guest.lan.")), Resolution::NxDomain);
        assert_eq!(z.resolve(&name("_tcp.guest.lan.")), Resolution::NxDomain);
        assert_eq!(z.route(&name("example.com.")), Route::Default);
        assert_eq!(z.route(&name("db.corp.example.")), Route::Default);
        assert_eq!(z.addresses("web1"), &[ip("10.77.0.50")]);
        // An alias arriving for a name a lease holds takes it.
        let mut plan = typed_plan(true);
        plan.typed_records = vec![ResourceRecord {
            name: "web1".into(),
            data: RecordData::Cname {
                target: "web".into(),
            },
        }];
        z.set_plan(&plan);
        assert!(node(&z, "web1.guest.lan.").cname().is_some());
        assert!(!z.lease_by_ip.contains_key(&ip("10.77.0.50")));
    }
}
