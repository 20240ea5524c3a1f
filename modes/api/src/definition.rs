//! A network definition: the TOML a user writes, parsed, bounded and checked
//! as a whole. A definition that comes out of [`Definition::parse`] is
//! consistent in itself; whether it fits the host (free subnet, free bridge
//! name) is decided when it starts.

use crate::check::{
    check_relative_name, DHCP_OPTIONS_OF_GUESTNET, MAX_DHCP_LIST, MAX_DNS_RECORDS,
    MAX_DOMAIN_SERVERS, MAX_RAW_DHCP_OPTIONS,
};
use crate::names::{check_label, DnsName, IfName, NetworkName};
use crate::plan::{
    is_true, yes, DhcpOptions, DhcpRoute, DomainServers, HostPort, RawDhcpOption, RecordData,
    ResourceRecord, MAX_HOST_ALLOW,
};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// Largest definition accepted, in bytes.
pub const DEFINITION_MAX_BYTES: usize = 64 * 1024;
/// Most static hosts one network may list.
pub const MAX_STATIC_HOSTS: usize = 4096;
/// Deepest nesting of tables and arrays a definition may have; a real one
/// needs four. Checked before the text is turned into values, which
/// recurses and would overflow the stack on a hostile depth.
pub const MAX_NESTING: usize = 16;
/// Most upstream DNS servers one network may list.
pub const MAX_FORWARDERS: usize = 8;
/// Shortest and longest lease a network may hand out.
pub const LEASE_TIME_MIN_SECS: u32 = 30;
pub const LEASE_TIME_MAX_SECS: u32 = 366 * 24 * 3600;
/// The default lease time, as libvirt's.
pub const LEASE_TIME_DEFAULT_SECS: u32 = 3600;
/// How many addresses the clients behind one bridge port may hold at once
/// (leases, offers and declined addresses together), unless the
/// definition says otherwise: one guest spoofing MACs cannot take the
/// pool. A VM with a few interfaces, or a few containers behind one veth,
/// stays under it.
pub const LEASES_PER_PORT_DEFAULT: u32 = 4;
/// The most a definition may allow per port (the pool's own cap).
pub const LEASES_PER_PORT_MAX: u32 = 65_536;

/// A definition refused: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct DefinitionError {
    pub field: String,
    pub reason: String,
}

impl DefinitionError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A parsed, checked network definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Definition {
    pub name: NetworkName,
    pub mode: String,
    /// Stable identity; generated when the definition does not give one.
    pub uuid: uuid::Uuid,
    pub autostart: bool,
    /// The bridge to create or adopt; chosen by the service when absent.
    pub bridge: Option<IfName>,
    pub mtu: Option<u32>,
    pub ipv4: Ipv4Config,
    pub dns: DnsConfig,
    /// What guests may reach on the host (`[host]`); absent in the JSON of
    /// an older guestnetd: nothing beyond DHCP, DNS and ICMP echo.
    #[serde(default)]
    pub host: HostConfig,
    /// Port forwards to guests (`[[forwards]]`); see [`crate::forwards`].
    /// Since API 1.1; absent: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwards: Vec<crate::forwards::ForwardConfig>,
    /// The table named after the mode (`[nat]`, `[bridged]`, ...), as JSON,
    /// for the mode to validate and interpret.
    pub mode_section: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ipv4Config {
    /// The host's address on the network with its prefix (`192.168.122.1/24`);
    /// a free /24 is chosen at start when absent.
    pub address: Option<Ipv4Net>,
    /// `None` when the definition turns DHCP off with `dhcp = false`.
    pub dhcp: Option<DhcpConfig>,
    pub hosts: Vec<StaticHost>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DhcpConfig {
    /// The pool; when absent it is the subnet from the 10th address (or the
    /// first after the host's, on small subnets) to the last usable one.
    pub start: Option<Ipv4Addr>,
    pub end: Option<Ipv4Addr>,
    pub lease_time_secs: u32,
    /// `max_leases_per_port`: see [`LEASES_PER_PORT_DEFAULT`].
    #[serde(default = "leases_per_port_default")]
    pub max_leases_per_port: u32,
    /// NTP servers, routes, search domains, PXE boot and raw options
    /// (`ntp`, `routes`, `search`, `next_server`, `filename`, `options`),
    /// served to clients that ask for them. Since API 1.1; absent: none.
    #[serde(default, skip_serializing_if = "DhcpOptions::is_empty")]
    pub options: DhcpOptions,
}

pub(crate) fn leases_per_port_default() -> u32 {
    LEASES_PER_PORT_DEFAULT
}

impl Default for DhcpConfig {
    fn default() -> Self {
        Self {
            start: None,
            end: None,
            lease_time_secs: LEASE_TIME_DEFAULT_SECS,
            max_leases_per_port: LEASES_PER_PORT_DEFAULT,
            options: DhcpOptions::default(),
        }
    }
}

/// The `[host]` table: what the network's guests may reach on the host.
///
/// ```toml
/// [host]
/// allow = ["tcp/22", "udp/69"]
/// ```
///
/// Guests always reach the host's DHCP and DNS for their network, and may
/// ping it; `allow` opens further ports on the host's address on the
/// network. Everything else a guest sends to the host is refused. Modes
/// whose host is a plain switch (bridged) refuse the table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostConfig {
    /// At most [`MAX_HOST_ALLOW`], no two alike.
    #[serde(default)]
    pub allow: Vec<HostPort>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticHost {
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    pub name: Option<String>,
    /// This host's boot file, in place of the network's (`filename`).
    /// Since API 1.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Raw options for this host alone (`options`), each in place of the
    /// network's option of the same code. Since API 1.1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<RawDhcpOption>,
}

/// The `[dns]` table.
///
/// ```toml
/// [dns]
/// domain = "guest.lan"
/// forwarders = ["10.0.0.2"]
/// records = [{ name = "www", type = "CNAME", value = "web1" },
///            { name = "_http._tcp", type = "SRV", value = "0 5 80 web1" }]
/// upstream = false
/// servers = [{ domain = "corp.example", address = "10.0.0.53" }]
/// ```
///
/// The fields added after API 1.0 are optional and left out of the JSON
/// when they say nothing, so a mode built against 1.0 reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    pub domain: Option<DnsName>,
    /// Upstream servers; empty means the host's resolv.conf.
    pub forwarders: Vec<IpAddr>,
    /// `records`: records of the network's domain (names relative to it;
    /// names they point to too, unless they end with a dot). At most
    /// [`MAX_DNS_RECORDS`]; a CNAME is the only record of its name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<ResourceRecord>,
    /// `upstream = false`: names outside the network's domain and the
    /// `servers` domains are refused, nothing is forwarded. Default true.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub upstream: bool,
    /// `servers`: split DNS, the servers of each domain (at most
    /// [`MAX_DOMAIN_SERVERS`] domains of as many servers each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domain_servers: Vec<DomainServers>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            domain: None,
            forwarders: Vec::new(),
            records: Vec::new(),
            upstream: true,
            domain_servers: Vec::new(),
        }
    }
}

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = [0u8; 6];
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(format!("{s:?} is not a MAC address like 52:54:00:aa:bb:cc"));
        }
        for (byte, part) in out.iter_mut().zip(parts) {
            if part.len() != 2 {
                return Err(format!("{s:?} is not a MAC address like 52:54:00:aa:bb:cc"));
            }
            *byte = u8::from_str_radix(part, 16)
                .map_err(|_| format!("{s:?} is not a MAC address like 52:54:00:aa:bb:cc"))?;
        }
        if out[0] & 1 == 1 {
            return Err(format!("{s:?} is a multicast address"));
        }
        Ok(Self(out))
    }
}

impl TryFrom<String> for MacAddr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<MacAddr> for String {
    fn from(m: MacAddr) -> String {
        m.to_string()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

// ---- the TOML as written -------------------------------------------------

#[derive(Deserialize)]
struct RawDefinition {
    name: String,
    mode: Option<String>,
    uuid: Option<String>,
    autostart: Option<bool>,
    bridge: Option<String>,
    mtu: Option<i64>,
    ipv4: Option<RawIpv4>,
    dns: Option<RawDns>,
    /// Read by hand, so that a mistake names its key (`host.allow[1]`).
    host: Option<toml::Value>,
    /// Read by hand, like `host`.
    forwards: Option<toml::Value>,
    /// Everything else: the mode's own table, or a mistake.
    #[serde(flatten)]
    rest: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIpv4 {
    address: Option<String>,
    /// `true`, `false` or a table: read by hand, so that a mistake inside
    /// the table is reported with its key (an untagged enum would lose it).
    dhcp: Option<toml::Value>,
    #[serde(default)]
    hosts: Vec<RawHost>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    start: Option<String>,
    end: Option<String>,
    lease_time: Option<toml::Value>,
    max_leases_per_port: Option<i64>,
    // The options are read by hand, so that a mistake names its key
    // (`ipv4.dhcp.routes[1].via`).
    ntp: Option<toml::Value>,
    routes: Option<toml::Value>,
    search: Option<toml::Value>,
    next_server: Option<toml::Value>,
    filename: Option<toml::Value>,
    options: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    mac: String,
    ip: String,
    name: Option<String>,
    filename: Option<toml::Value>,
    options: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    domain: Option<String>,
    #[serde(default)]
    forwarders: Vec<String>,
    /// Read by hand, so that a mistake names its key (`dns.records[2].value`).
    records: Option<toml::Value>,
    upstream: Option<bool>,
    /// Read by hand, like `records`.
    servers: Option<toml::Value>,
}

/// Keys that can never be a mode's name because the definition uses them.
const RESERVED_KEYS: &[&str] = &[
    "name",
    "mode",
    "uuid",
    "autostart",
    "bridge",
    "mtu",
    "ipv4",
    "dns",
    "host",
    "forwards",
];

impl Definition {
    /// Parses and checks a definition. The mode-specific table is kept as
    /// data for the mode to check; everything else is checked here.
    pub fn parse(text: &str) -> Result<Self, DefinitionError> {
        if text.len() > DEFINITION_MAX_BYTES {
            return Err(DefinitionError::new(
                "definition",
                format!(
                    "is {} bytes; the limit is {DEFINITION_MAX_BYTES}",
                    text.len()
                ),
            ));
        }
        check_nesting(text)?;
        let raw: RawDefinition = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        Self::from_raw(raw)
    }

    fn from_raw(mut raw: RawDefinition) -> Result<Self, DefinitionError> {
        let name =
            NetworkName::new(&raw.name).map_err(|e| DefinitionError::new("name", e.to_string()))?;
        let mode = raw.mode.take().unwrap_or_else(|| "nat".to_owned());
        check_mode_name(&mode)?;
        let mode_section = match raw.rest.remove(&mode) {
            None => None,
            Some(toml::Value::Table(t)) => Some(
                serde_json::to_value(t)
                    .map_err(|e| DefinitionError::new(mode.clone(), e.to_string()))?,
            ),
            Some(_) => {
                return Err(DefinitionError::new(
                    mode.clone(),
                    "must be a table like [".to_owned() + &mode + "]",
                ))
            }
        };
        if let Some(key) = raw.rest.keys().next() {
            return Err(DefinitionError::new(
                key.clone(),
                format!("unknown key for a network of mode {mode:?}"),
            ));
        }
        let uuid = match &raw.uuid {
            Some(u) => {
                uuid::Uuid::parse_str(u).map_err(|e| DefinitionError::new("uuid", e.to_string()))?
            }
            None => uuid::Uuid::new_v4(),
        };
        let bridge = raw
            .bridge
            .as_deref()
            .map(IfName::new)
            .transpose()
            .map_err(|e| DefinitionError::new("bridge", e.to_string()))?;
        let mtu = raw.mtu.map(check_mtu).transpose()?;
        let ipv4 = match raw.ipv4 {
            Some(raw) => parse_ipv4(raw)?,
            None => Ipv4Config {
                dhcp: Some(DhcpConfig::default()),
                ..Default::default()
            },
        };
        let dns = parse_dns(raw.dns, &ipv4.hosts)?;
        let host = parse_host_section(raw.host)?;
        let forwards = crate::forwards::parse(raw.forwards, ipv4.address.map(|a| a.trunc()))?;
        Ok(Self {
            name,
            mode,
            uuid,
            autostart: raw.autostart.unwrap_or(false),
            bridge,
            mtu,
            ipv4,
            dns,
            host,
            forwards,
            mode_section,
        })
    }

    /// The definition as TOML, in the form `parse` reads back.
    pub fn to_toml(&self) -> String {
        let mut t = toml::Table::new();
        t.insert("name".into(), self.name.as_str().into());
        t.insert("mode".into(), self.mode.clone().into());
        t.insert("uuid".into(), self.uuid.to_string().into());
        t.insert("autostart".into(), self.autostart.into());
        if let Some(b) = &self.bridge {
            t.insert("bridge".into(), b.as_str().into());
        }
        if let Some(m) = self.mtu {
            t.insert("mtu".into(), i64::from(m).into());
        }
        t.insert("ipv4".into(), toml::Value::Table(self.ipv4_table()));
        let mut dns = toml::Table::new();
        if let Some(d) = &self.dns.domain {
            dns.insert("domain".into(), d.as_str().into());
        }
        if !self.dns.forwarders.is_empty() {
            let f = self.dns.forwarders.iter().map(|a| a.to_string().into());
            dns.insert("forwarders".into(), toml::Value::Array(f.collect()));
        }
        if !self.dns.records.is_empty() {
            let r = self.dns.records.iter().map(record_table);
            dns.insert("records".into(), toml::Value::Array(r.collect()));
        }
        if !self.dns.upstream {
            dns.insert("upstream".into(), false.into());
        }
        if !self.dns.domain_servers.is_empty() {
            let servers = self.dns.domain_servers.iter().flat_map(|d| {
                d.servers.iter().map(|a| {
                    let mut e = toml::Table::new();
                    e.insert("domain".into(), d.domain.as_str().into());
                    e.insert("address".into(), a.to_string().into());
                    toml::Value::Table(e)
                })
            });
            dns.insert("servers".into(), toml::Value::Array(servers.collect()));
        }
        if !dns.is_empty() {
            t.insert("dns".into(), toml::Value::Table(dns));
        }
        if !self.host.allow.is_empty() {
            let allow = self.host.allow.iter().map(|p| p.to_string().into());
            let mut host = toml::Table::new();
            host.insert("allow".into(), toml::Value::Array(allow.collect()));
            t.insert("host".into(), toml::Value::Table(host));
        }
        if !self.forwards.is_empty() {
            let f = self.forwards.iter().map(|f| f.to_toml());
            t.insert("forwards".into(), toml::Value::Array(f.collect()));
        }
        if let Some(section) = &self.mode_section {
            if let Ok(v) = toml::Value::try_from(section) {
                t.insert(self.mode.clone(), v);
            }
        }
        toml::to_string(&t).expect("a table of plain values always serializes")
    }

    fn ipv4_table(&self) -> toml::Table {
        let mut v4 = toml::Table::new();
        if let Some(a) = self.ipv4.address {
            v4.insert("address".into(), a.to_string().into());
        }
        match &self.ipv4.dhcp {
            None => {
                v4.insert("dhcp".into(), false.into());
            }
            Some(d) => {
                let mut r = toml::Table::new();
                if let Some(s) = d.start {
                    r.insert("start".into(), s.to_string().into());
                }
                if let Some(e) = d.end {
                    r.insert("end".into(), e.to_string().into());
                }
                r.insert(
                    "lease_time".into(),
                    format_duration(d.lease_time_secs).into(),
                );
                if d.max_leases_per_port != LEASES_PER_PORT_DEFAULT {
                    r.insert(
                        "max_leases_per_port".into(),
                        i64::from(d.max_leases_per_port).into(),
                    );
                }
                dhcp_options_toml(&d.options, &mut r);
                v4.insert("dhcp".into(), toml::Value::Table(r));
            }
        }
        if !self.ipv4.hosts.is_empty() {
            let hosts = self.ipv4.hosts.iter().map(|h| {
                let mut e = toml::Table::new();
                e.insert("mac".into(), h.mac.to_string().into());
                e.insert("ip".into(), h.ip.to_string().into());
                if let Some(n) = &h.name {
                    e.insert("name".into(), n.clone().into());
                }
                if let Some(f) = &h.filename {
                    e.insert("filename".into(), f.clone().into());
                }
                if !h.options.is_empty() {
                    let o = h.options.iter().map(raw_option_toml);
                    e.insert("options".into(), toml::Value::Array(o.collect()));
                }
                toml::Value::Table(e)
            });
            v4.insert("hosts".into(), toml::Value::Array(hosts.collect()));
        }
        v4
    }

    /// The IPv4 settings with the host address fixed: the definition's own,
    /// or `chosen` when it gives none.
    pub fn resolve_ipv4(&self, chosen: Ipv4Net) -> ResolvedIpv4 {
        let address = self.ipv4.address.unwrap_or(chosen);
        let dhcp = self.ipv4.dhcp.as_ref().map(|d| {
            let (start, end) = default_pool(address);
            ResolvedDhcp {
                start: d.start.unwrap_or(start),
                end: d.end.unwrap_or(end),
                lease_time_secs: d.lease_time_secs,
                max_leases_per_port: d.max_leases_per_port,
            }
        });
        ResolvedIpv4 {
            address,
            dhcp,
            hosts: self.ipv4.hosts.clone(),
        }
    }
}

/// Writes `o` into the `[ipv4.dhcp]` table as `parse` reads it.
fn dhcp_options_toml(o: &DhcpOptions, r: &mut toml::Table) {
    let strings =
        |items: Vec<String>| toml::Value::Array(items.into_iter().map(Into::into).collect());
    if !o.ntp.is_empty() {
        r.insert(
            "ntp".into(),
            strings(o.ntp.iter().map(|a| a.to_string()).collect()),
        );
    }
    if !o.routes.is_empty() {
        let routes = o.routes.iter().map(|route| {
            let mut t = toml::Table::new();
            t.insert("to".into(), route.to.to_string().into());
            t.insert("via".into(), route.via.to_string().into());
            toml::Value::Table(t)
        });
        r.insert("routes".into(), toml::Value::Array(routes.collect()));
    }
    if !o.search.is_empty() {
        r.insert(
            "search".into(),
            strings(o.search.iter().map(|n| n.to_string()).collect()),
        );
    }
    if let Some(n) = o.next_server {
        r.insert("next_server".into(), n.to_string().into());
    }
    if let Some(f) = &o.filename {
        r.insert("filename".into(), f.clone().into());
    }
    if !o.raw.is_empty() {
        let raw = o.raw.iter().map(raw_option_toml);
        r.insert("options".into(), toml::Value::Array(raw.collect()));
    }
}

/// IPv4 settings with every default filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedIpv4 {
    pub address: Ipv4Net,
    pub dhcp: Option<ResolvedDhcp>,
    pub hosts: Vec<StaticHost>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedDhcp {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
    pub lease_time_secs: u32,
    #[serde(default = "leases_per_port_default")]
    pub max_leases_per_port: u32,
}

/// The default pool of a subnet: from the 10th host (or the one after the
/// host's own address on small subnets) to the last usable address.
pub fn default_pool(address: Ipv4Net) -> (Ipv4Addr, Ipv4Addr) {
    let net = u32::from(address.network());
    let last = u32::from(address.broadcast()).saturating_sub(1);
    let host = u32::from(address.addr());
    let start = if address.prefix_len() <= 24 {
        (net + 10).max(host + 1)
    } else {
        host + 1
    };
    (Ipv4Addr::from(start.min(last)), Ipv4Addr::from(last))
}

/// Refuses a document nested deeper than [`MAX_NESTING`] before any parser
/// sees it (the TOML parser and the conversion to values recurse, and a
/// hostile depth overflows the stack). A lexical scan with an explicit
/// stack: depth grows with each `{` or `[` in a value, each `.` in a key and
/// each segment of a `[table.header]`; strings and comments are skipped.
fn check_nesting(text: &str) -> Result<(), DefinitionError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Frame {
        Inline,
        Array,
    }
    let mut section = String::from("definition");
    let too_deep = |section: &str| {
        DefinitionError::new(
            section,
            format!("nested more than {MAX_NESTING} levels deep"),
        )
    };
    let b = text.as_bytes();
    let mut stack: Vec<(Frame, usize)> = Vec::new();
    let mut base = 0usize; // depth of the current [table]
    let mut in_key = true; // at a key (line start, or after `{` or `,` in an inline table)
    let mut key_dots = 0usize;
    let mut at_line_start = true;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' => {
                let triple = b.get(i..i + 3) == Some(&[c, c, c][..]);
                let close: &[u8] = if triple { &b[i..i + 3] } else { &b[i..i + 1] };
                i += close.len();
                while i < b.len() && !b[i..].starts_with(close) {
                    i += if c == b'"' && b[i] == b'\\' { 2 } else { 1 };
                }
                i += close.len();
                at_line_start = false;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'\n' => {
                if stack.is_empty() {
                    in_key = true;
                    key_dots = 0;
                }
                at_line_start = true;
                i += 1;
                continue;
            }
            b'[' if at_line_start && stack.is_empty() => {
                // A table header: its depth is its number of segments.
                let end = text[i..].find('\n').map_or(b.len(), |n| i + n);
                section = text[i..end]
                    .trim_start_matches('[')
                    .split(['.', ']'])
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                base = text[i..end]
                    .split('#')
                    .next()
                    .unwrap_or("")
                    .matches('.')
                    .count()
                    + 1;
                if base > MAX_NESTING {
                    return Err(too_deep(&section));
                }
                i = end;
                continue;
            }
            b'.' if in_key => key_dots += 1,
            b'=' if in_key => in_key = false,
            b'{' | b'[' if !in_key => {
                let depth = stack.last().map_or(base, |f| f.1) + key_dots + 1;
                if depth > MAX_NESTING {
                    return Err(too_deep(&section));
                }
                let frame = if c == b'{' {
                    Frame::Inline
                } else {
                    Frame::Array
                };
                stack.push((frame, depth));
                key_dots = 0;
                in_key = frame == Frame::Inline;
            }
            b'}' | b']' if !stack.is_empty() => {
                stack.pop();
                in_key = false;
            }
            b',' => {
                if let Some((Frame::Inline, _)) = stack.last() {
                    in_key = true;
                    key_dots = 0;
                }
            }
            _ => {}
        }
        if !c.is_ascii_whitespace() {
            at_line_start = false;
        }
        if key_dots + stack.last().map_or(base, |f| f.1) > MAX_NESTING {
            return Err(too_deep(&section));
        }
        i += 1;
    }
    Ok(())
}

/// A TOML error with the key it is about: the nearest `key =` before the
/// error's position, since type errors from serde name no key.
fn toml_error(text: &str, e: &toml::de::Error) -> DefinitionError {
    let message = e.message();
    // serde's complaints about values read as such; anything else is the
    // TOML syntax itself.
    const VALUE_ERRORS: &[&str] = &[
        "invalid type",
        "invalid value",
        "invalid length",
        "unknown field",
        "missing field",
        "unknown variant",
        "duplicate",
        "number too large",
    ];
    let reason = if VALUE_ERRORS.iter().any(|p| message.starts_with(p)) {
        message.to_owned()
    } else {
        format!("not valid TOML: {message}")
    };
    let field = e
        .span()
        .and_then(|span| {
            let before = text.get(..span.start)?;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            let line = &before[line_start..];
            let key_part = line.rsplit_once('=').map(|(k, _)| k)?;
            let key = key_part
                .rsplit(|c: char| c == '{' || c == ',' || c.is_whitespace())
                .find(|k| !k.is_empty())?;
            let key = key.trim_matches(|c: char| c == '"' || c == '\'');
            (!key.is_empty() && key.len() <= 64).then(|| key.to_owned())
        })
        .or_else(|| {
            // serde names an unknown key in its message, not in a span.
            let rest = reason.strip_prefix("unknown field `")?;
            rest.split('`').next().map(str::to_owned)
        })
        .unwrap_or_else(|| "definition".to_owned());
    DefinitionError::new(field, reason)
}

fn check_mode_name(mode: &str) -> Result<(), DefinitionError> {
    let ok = !mode.is_empty()
        && mode.len() <= 32
        && mode
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && !RESERVED_KEYS.contains(&mode);
    if ok {
        Ok(())
    } else {
        Err(DefinitionError::new(
            "mode",
            format!("{mode:?} is not a mode name (lower-case letters, digits, '_' and '-')"),
        ))
    }
}

fn check_mtu(mtu: i64) -> Result<u32, DefinitionError> {
    if (68..=65535).contains(&mtu) {
        Ok(mtu as u32)
    } else {
        Err(DefinitionError::new(
            "mtu",
            format!("{mtu} is outside 68..=65535"),
        ))
    }
}

fn parse_ipv4(raw: RawIpv4) -> Result<Ipv4Config, DefinitionError> {
    let address = raw.address.as_deref().map(parse_host_address).transpose()?;
    let dhcp = match raw.dhcp {
        None | Some(toml::Value::Boolean(true)) => Some(DhcpConfig::default()),
        Some(toml::Value::Boolean(false)) => None,
        Some(v @ toml::Value::Table(_)) => {
            let range: RawRange = v.try_into().map_err(|e: toml::de::Error| {
                let reason = e.message().to_owned();
                let key = reason
                    .strip_prefix("unknown field `")
                    .and_then(|r| r.split('`').next())
                    .map(|k| format!("ipv4.dhcp.{k}"))
                    .unwrap_or_else(|| "ipv4.dhcp".to_owned());
                DefinitionError::new(key, reason)
            })?;
            Some(parse_range(range, address)?)
        }
        Some(other) => {
            return Err(DefinitionError::new(
                "ipv4.dhcp",
                format!("{other} is not true, false or a table of start, end, lease_time, max_leases_per_port and options (ntp, routes, search, next_server, filename, options)"),
            ))
        }
    };
    if raw.hosts.len() > MAX_STATIC_HOSTS {
        return Err(DefinitionError::new(
            "ipv4.hosts",
            format!("{} hosts; the limit is {MAX_STATIC_HOSTS}", raw.hosts.len()),
        ));
    }
    let hosts = raw
        .hosts
        .into_iter()
        .enumerate()
        .map(|(i, h)| parse_host(i, h, address))
        .collect::<Result<Vec<_>, _>>()?;
    check_hosts_unique(&hosts)?;
    Ok(Ipv4Config {
        address,
        dhcp,
        hosts,
    })
}

fn parse_host_address(s: &str) -> Result<Ipv4Net, DefinitionError> {
    let field = "ipv4.address";
    let net: Ipv4Net = s.parse().map_err(|_| {
        DefinitionError::new(
            field,
            format!("{s:?} is not an address with a prefix like 192.168.122.1/24"),
        )
    })?;
    if !(8..=30).contains(&net.prefix_len()) {
        return Err(DefinitionError::new(
            field,
            format!("prefix /{} is outside /8 to /30", net.prefix_len()),
        ));
    }
    let a = net.addr();
    if a.is_loopback()
        || a.is_multicast()
        || a.is_broadcast()
        || a.is_unspecified()
        || a.is_link_local()
    {
        return Err(DefinitionError::new(
            field,
            format!("{a} cannot be a network's address"),
        ));
    }
    if a == net.network() || a == net.broadcast() {
        return Err(DefinitionError::new(
            field,
            format!("{a} is the network or broadcast address of {}; give the host's own address, like {}", net.trunc(), Ipv4Addr::from(u32::from(net.network()) + 1)),
        ));
    }
    Ok(net)
}

fn parse_range(r: RawRange, address: Option<Ipv4Net>) -> Result<DhcpConfig, DefinitionError> {
    let start = parse_pool_end("ipv4.dhcp.start", r.start.as_deref(), address)?;
    let end = parse_pool_end("ipv4.dhcp.end", r.end.as_deref(), address)?;
    if let (Some(s), Some(e)) = (start, end) {
        if u32::from(s) > u32::from(e) {
            return Err(DefinitionError::new(
                "ipv4.dhcp",
                format!("start {s} comes after end {e}"),
            ));
        }
    }
    let lease_time_secs = match &r.lease_time {
        None => LEASE_TIME_DEFAULT_SECS,
        Some(v) => parse_lease_time(v)?,
    };
    let max_leases_per_port = match r.max_leases_per_port {
        None => LEASES_PER_PORT_DEFAULT,
        Some(n) if (1..=i64::from(LEASES_PER_PORT_MAX)).contains(&n) => n as u32,
        Some(n) => {
            return Err(DefinitionError::new(
                "ipv4.dhcp.max_leases_per_port",
                format!("{n} is outside 1..={LEASES_PER_PORT_MAX}"),
            ))
        }
    };
    let options = parse_dhcp_options(&r, address)?;
    Ok(DhcpConfig {
        start,
        end,
        lease_time_secs,
        max_leases_per_port,
        options,
    })
}

/// The options of `[ipv4.dhcp]`, with the bounds of [`crate::check`]; each
/// mistake names its key.
fn parse_dhcp_options(
    r: &RawRange,
    address: Option<Ipv4Net>,
) -> Result<DhcpOptions, DefinitionError> {
    let mut o = DhcpOptions::default();
    if let Some(v) = &r.ntp {
        for (i, item) in bounded_list("ipv4.dhcp.ntp", v, MAX_DHCP_LIST)?
            .iter()
            .enumerate()
        {
            o.ntp
                .push(ipv4_value(&format!("ipv4.dhcp.ntp[{i}]"), item)?);
        }
    }
    if let Some(v) = &r.routes {
        for (i, item) in bounded_list("ipv4.dhcp.routes", v, MAX_DHCP_LIST)?
            .iter()
            .enumerate()
        {
            o.routes.push(parse_route(
                &format!("ipv4.dhcp.routes[{i}]"),
                item,
                address,
            )?);
        }
    }
    if let Some(v) = &r.search {
        for (i, item) in bounded_list("ipv4.dhcp.search", v, MAX_DHCP_LIST)?
            .iter()
            .enumerate()
        {
            let field = format!("ipv4.dhcp.search[{i}]");
            let name = DnsName::new(string_value(
                &field,
                item,
                "a domain like \"corp.example\"",
            )?)
            .map_err(|e| DefinitionError::new(&field, e.to_string()))?;
            if o.search.contains(&name) {
                return Err(DefinitionError::new(
                    field,
                    format!("{name} is listed twice"),
                ));
            }
            o.search.push(name);
        }
    }
    if let Some(v) = &r.next_server {
        o.next_server = Some(ipv4_value("ipv4.dhcp.next_server", v)?);
    }
    if let Some(v) = &r.filename {
        o.filename = Some(parse_filename("ipv4.dhcp.filename", v)?);
    }
    if let Some(v) = &r.options {
        o.raw = parse_raw_options("ipv4.dhcp.options", v)?;
    }
    Ok(o)
}

fn bounded_list<'a>(
    field: &str,
    v: &'a toml::Value,
    max: usize,
) -> Result<&'a [toml::Value], DefinitionError> {
    let toml::Value::Array(items) = v else {
        return Err(DefinitionError::new(field, format!("{v} is not a list")));
    };
    if items.len() > max {
        return Err(DefinitionError::new(
            field,
            format!("{} entries; the limit is {max}", items.len()),
        ));
    }
    Ok(items)
}

fn string_value<'a>(
    field: &str,
    v: &'a toml::Value,
    what: &str,
) -> Result<&'a str, DefinitionError> {
    v.as_str()
        .ok_or_else(|| DefinitionError::new(field, format!("{v} is not {what}")))
}

fn ipv4_value(field: &str, v: &toml::Value) -> Result<Ipv4Addr, DefinitionError> {
    let s = string_value(field, v, "an IPv4 address like \"192.168.122.2\"")?;
    let ip: Ipv4Addr = s
        .parse()
        .map_err(|_| DefinitionError::new(field, format!("{s:?} is not an IPv4 address")))?;
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        return Err(DefinitionError::new(
            field,
            format!("{ip} is not a host's address"),
        ));
    }
    Ok(ip)
}

/// A table with exactly the keys `keys`; an unknown key is named.
fn table_of<'a>(
    field: &str,
    v: &'a toml::Value,
    keys: &[&str],
    example: &str,
) -> Result<&'a toml::Table, DefinitionError> {
    let toml::Value::Table(t) = v else {
        return Err(DefinitionError::new(
            field,
            format!("{v} is not a table like {example}"),
        ));
    };
    if let Some(k) = t.keys().find(|k| !keys.contains(&k.as_str())) {
        return Err(DefinitionError::new(
            format!("{field}.{k}"),
            format!("unknown key; takes {}", keys.join(", ")),
        ));
    }
    Ok(t)
}

fn parse_route(
    field: &str,
    v: &toml::Value,
    address: Option<Ipv4Net>,
) -> Result<DhcpRoute, DefinitionError> {
    const EXAMPLE: &str = "{ to = \"10.20.0.0/16\", via = \"192.168.122.2\" }";
    let t = table_of(field, v, &["to", "via"], EXAMPLE)?;
    let (Some(to), Some(via)) = (t.get("to"), t.get("via")) else {
        return Err(DefinitionError::new(
            field,
            format!("a route needs to and via, like {EXAMPLE}"),
        ));
    };
    let to_field = format!("{field}.to");
    let s = string_value(&to_field, to, "a subnet like \"10.20.0.0/16\"")?;
    let to: Ipv4Net = s.parse().map_err(|_| {
        DefinitionError::new(
            &to_field,
            format!("{s:?} is not a subnet like 10.20.0.0/16"),
        )
    })?;
    if to != to.trunc() {
        return Err(DefinitionError::new(
            to_field,
            format!("{to} has host bits set; the subnet is {}", to.trunc()),
        ));
    }
    let via_field = format!("{field}.via");
    let via = ipv4_value(&via_field, via)?;
    // A router the guests cannot reach on the network is no router.
    if let Some(net) = address {
        check_usable_in(&via_field, via, net).or_else(|e| {
            // The host itself is a fine router.
            if via == net.addr() {
                Ok(())
            } else {
                Err(e)
            }
        })?;
    }
    Ok(DhcpRoute { to, via })
}

fn parse_filename(field: &str, v: &toml::Value) -> Result<String, DefinitionError> {
    let s = string_value(field, v, "a file name like \"pxelinux.0\"")?;
    // The header's `file` field holds 128 bytes with its terminator.
    if s.is_empty() || s.len() > 127 || s.contains('\0') {
        return Err(DefinitionError::new(
            field,
            "must be 1 to 127 bytes, without NUL",
        ));
    }
    Ok(s.to_owned())
}

/// `options = [{ code = N, text = "..." } | { code = N, hex = "01:02" } |
/// { code = N, ip = ["IP", ...] }]`.
fn parse_raw_options(field: &str, v: &toml::Value) -> Result<Vec<RawDhcpOption>, DefinitionError> {
    const EXAMPLE: &str = "{ code = 224, text = \"hello\" }";
    let mut out: Vec<RawDhcpOption> = Vec::new();
    for (i, item) in bounded_list(field, v, MAX_RAW_DHCP_OPTIONS)?
        .iter()
        .enumerate()
    {
        let field = format!("{field}[{i}]");
        let t = table_of(&field, item, &["code", "text", "hex", "ip"], EXAMPLE)?;
        let code_field = format!("{field}.code");
        let code = match t.get("code") {
            Some(toml::Value::Integer(n)) => u8::try_from(*n).map_err(|_| {
                DefinitionError::new(&code_field, format!("{n} is outside 1..=254"))
            })?,
            Some(other) => {
                return Err(DefinitionError::new(
                    code_field,
                    format!("{other} is not an option code like 224"),
                ))
            }
            None => {
                return Err(DefinitionError::new(
                    field,
                    format!("an option needs its code, like {EXAMPLE}"),
                ))
            }
        };
        if DHCP_OPTIONS_OF_GUESTNET.contains(&code) {
            return Err(DefinitionError::new(
                code_field,
                format!("option {code} is one guestnet sets itself"),
            ));
        }
        if out.iter().any(|o| o.code == code) {
            return Err(DefinitionError::new(
                code_field,
                format!("option {code} is given twice"),
            ));
        }
        let given: Vec<&str> = ["text", "hex", "ip"]
            .into_iter()
            .filter(|k| t.contains_key(*k))
            .collect();
        let [kind] = given[..] else {
            return Err(DefinitionError::new(
                field,
                "give exactly one of text, hex and ip",
            ));
        };
        let value_field = format!("{field}.{kind}");
        let v = &t[kind];
        let value = match kind {
            "text" => string_value(&value_field, v, "a string")?
                .as_bytes()
                .to_vec(),
            "hex" => {
                let s = string_value(&value_field, v, "bytes like \"01:02:ab\"")?;
                parse_hex(s).ok_or_else(|| {
                    DefinitionError::new(
                        &value_field,
                        format!("{s:?} is not bytes in hex like \"01:02:ab\""),
                    )
                })?
            }
            _ => {
                let ips = bounded_list(&value_field, v, 255 / 4)?;
                let mut bytes = Vec::new();
                for (j, ip) in ips.iter().enumerate() {
                    bytes.extend(ipv4_value(&format!("{value_field}[{j}]"), ip)?.octets());
                }
                bytes
            }
        };
        if value.len() > 255 {
            return Err(DefinitionError::new(
                value_field,
                format!("{} bytes; an option holds at most 255", value.len()),
            ));
        }
        out.push(RawDhcpOption { code, value });
    }
    Ok(out)
}

/// `"01:02:ab"` or `"0102ab"`; `None` for anything else.
fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let pairs: Vec<&str> = if s.contains(':') {
        s.split(':').collect()
    } else {
        if s.len() % 2 != 0 || !s.is_ascii() {
            return None;
        }
        (0..s.len()).step_by(2).map(|i| &s[i..i + 2]).collect()
    };
    pairs
        .into_iter()
        .map(|p| {
            (p.len() == 2)
                .then(|| u8::from_str_radix(p, 16).ok())
                .flatten()
        })
        .collect()
}

/// A raw option as the definition writes it: text when every byte is
/// printable ASCII, hex otherwise (both read back to the same bytes).
fn raw_option_toml(o: &RawDhcpOption) -> toml::Value {
    let mut t = toml::Table::new();
    t.insert("code".into(), i64::from(o.code).into());
    let printable = !o.value.is_empty() && o.value.iter().all(|b| (0x20..0x7f).contains(b));
    if printable {
        let text = String::from_utf8_lossy(&o.value).into_owned();
        t.insert("text".into(), text.into());
    } else {
        let hex: Vec<String> = o.value.iter().map(|b| format!("{b:02x}")).collect();
        t.insert("hex".into(), hex.join(":").into());
    }
    toml::Value::Table(t)
}

fn parse_pool_end(
    field: &str,
    value: Option<&str>,
    address: Option<Ipv4Net>,
) -> Result<Option<Ipv4Addr>, DefinitionError> {
    let Some(s) = value else { return Ok(None) };
    let ip: Ipv4Addr = s
        .parse()
        .map_err(|_| DefinitionError::new(field, format!("{s:?} is not an IPv4 address")))?;
    let Some(net) = address else {
        return Err(DefinitionError::new(
            field,
            "a pool needs ipv4.address to say which subnet it belongs to",
        ));
    };
    check_usable_in(field, ip, net)?;
    Ok(Some(ip))
}

/// An address a guest may hold: inside the subnet, neither its network nor
/// its broadcast address, nor the host's own.
fn check_usable_in(field: &str, ip: Ipv4Addr, net: Ipv4Net) -> Result<(), DefinitionError> {
    if !net.contains(&ip) {
        return Err(DefinitionError::new(
            field,
            format!("{ip} is outside the network's subnet {}", net.trunc()),
        ));
    }
    if ip == net.network() || ip == net.broadcast() {
        return Err(DefinitionError::new(
            field,
            format!(
                "{ip} is the network or broadcast address of {}",
                net.trunc()
            ),
        ));
    }
    if ip == net.addr() {
        return Err(DefinitionError::new(
            field,
            format!("{ip} is the host's own address on this network"),
        ));
    }
    Ok(())
}

fn parse_lease_time(v: &toml::Value) -> Result<u32, DefinitionError> {
    let field = "ipv4.dhcp.lease_time";
    let secs: u64 = match v {
        toml::Value::Integer(n) if *n >= 0 => *n as u64,
        toml::Value::String(s) => parse_duration(s).ok_or_else(|| {
            DefinitionError::new(
                field,
                format!("{s:?} is not a duration like \"90s\", \"30m\", \"1h\" or \"2d\""),
            )
        })?,
        other => {
            return Err(DefinitionError::new(
                field,
                format!("{other} is not a duration like \"1h\" or a number of seconds"),
            ))
        }
    };
    if !(u64::from(LEASE_TIME_MIN_SECS)..=u64::from(LEASE_TIME_MAX_SECS)).contains(&secs) {
        return Err(DefinitionError::new(
            field,
            format!("{secs} seconds is outside {LEASE_TIME_MIN_SECS} seconds to 366 days"),
        ));
    }
    Ok(secs as u32)
}

fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() || num.len() > 12 {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn format_duration(secs: u32) -> String {
    match secs {
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn parse_host(
    i: usize,
    h: RawHost,
    address: Option<Ipv4Net>,
) -> Result<StaticHost, DefinitionError> {
    let field = |f: &str| format!("ipv4.hosts[{i}].{f}");
    let mac: MacAddr = h
        .mac
        .parse()
        .map_err(|e| DefinitionError::new(field("mac"), e))?;
    let ip: Ipv4Addr = h.ip.parse().map_err(|_| {
        DefinitionError::new(field("ip"), format!("{:?} is not an IPv4 address", h.ip))
    })?;
    let Some(net) = address else {
        return Err(DefinitionError::new(
            field("ip"),
            "static hosts need ipv4.address to say which subnet they belong to",
        ));
    };
    check_usable_in(&field("ip"), ip, net)?;
    if let Some(n) = &h.name {
        check_label(n).map_err(|e| DefinitionError::new(field("name"), e.to_string()))?;
    }
    let filename = h
        .filename
        .as_ref()
        .map(|v| parse_filename(&field("filename"), v))
        .transpose()?;
    let options = match &h.options {
        Some(v) => parse_raw_options(&field("options"), v)?,
        None => Vec::new(),
    };
    Ok(StaticHost {
        mac,
        ip,
        name: h.name.map(|n| n.to_ascii_lowercase()),
        filename,
        options,
    })
}

fn check_hosts_unique(hosts: &[StaticHost]) -> Result<(), DefinitionError> {
    let (mut macs, mut ips, mut names) = (HashSet::new(), HashSet::new(), HashSet::new());
    for (i, h) in hosts.iter().enumerate() {
        if !macs.insert(h.mac) {
            return Err(DefinitionError::new(
                format!("ipv4.hosts[{i}].mac"),
                format!("{} is listed twice", h.mac),
            ));
        }
        if !ips.insert(h.ip) {
            return Err(DefinitionError::new(
                format!("ipv4.hosts[{i}].ip"),
                format!("{} is given to two hosts", h.ip),
            ));
        }
        if let Some(n) = &h.name {
            if !names.insert(n.clone()) {
                return Err(DefinitionError::new(
                    format!("ipv4.hosts[{i}].name"),
                    format!("{n:?} is given to two hosts"),
                ));
            }
        }
    }
    Ok(())
}

/// The `[host]` table; each mistake names its key.
fn parse_host_section(raw: Option<toml::Value>) -> Result<HostConfig, DefinitionError> {
    let table = match raw {
        None => return Ok(HostConfig::default()),
        Some(toml::Value::Table(t)) => t,
        Some(_) => {
            return Err(DefinitionError::new(
                "host",
                "must be a table like [host] allow = [\"tcp/22\"]",
            ))
        }
    };
    let mut allow = Vec::new();
    for (key, value) in table {
        if key != "allow" {
            return Err(DefinitionError::new(
                format!("host.{key}"),
                "unknown key; [host] takes only allow",
            ));
        }
        let toml::Value::Array(items) = value else {
            return Err(DefinitionError::new(
                "host.allow",
                "must be a list like [\"tcp/22\", \"udp/69\"]",
            ));
        };
        if items.len() > MAX_HOST_ALLOW {
            return Err(DefinitionError::new(
                "host.allow",
                format!("{} ports; the limit is {MAX_HOST_ALLOW}", items.len()),
            ));
        }
        for (i, item) in items.into_iter().enumerate() {
            let field = format!("host.allow[{i}]");
            let toml::Value::String(s) = item else {
                return Err(DefinitionError::new(
                    field,
                    format!("{item} is not a string like \"tcp/22\""),
                ));
            };
            let port: HostPort = s.parse().map_err(|e| DefinitionError::new(&field, e))?;
            if allow.contains(&port) {
                return Err(DefinitionError::new(
                    field,
                    format!("{port} is listed twice"),
                ));
            }
            allow.push(port);
        }
    }
    Ok(HostConfig { allow })
}

fn parse_dns(raw: Option<RawDns>, hosts: &[StaticHost]) -> Result<DnsConfig, DefinitionError> {
    let Some(raw) = raw else {
        return Ok(DnsConfig::default());
    };
    let domain = raw
        .domain
        .as_deref()
        .map(DnsName::new)
        .transpose()
        .map_err(|e| DefinitionError::new("dns.domain", e.to_string()))?;
    if raw.forwarders.len() > MAX_FORWARDERS {
        return Err(DefinitionError::new(
            "dns.forwarders",
            format!(
                "{} servers; the limit is {MAX_FORWARDERS}",
                raw.forwarders.len()
            ),
        ));
    }
    let forwarders = raw
        .forwarders
        .iter()
        .enumerate()
        .map(|(i, f)| {
            f.parse::<IpAddr>().map_err(|_| {
                DefinitionError::new(
                    format!("dns.forwarders[{i}]"),
                    format!("{f:?} is not an IP address"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let upstream = raw.upstream.unwrap_or(true);
    if !upstream && !forwarders.is_empty() {
        return Err(DefinitionError::new(
            "dns.forwarders",
            "upstream = false forwards nothing: give forwarders or upstream = false, not both",
        ));
    }
    let records = match raw.records {
        None => Vec::new(),
        Some(v) => parse_records(v, hosts)?,
    };
    let domain_servers = match raw.servers {
        None => Vec::new(),
        Some(v) => parse_servers(v, domain.as_ref())?,
    };
    Ok(DnsConfig {
        domain,
        forwarders,
        records,
        upstream,
        domain_servers,
    })
}

/// `[dns] records = [{ name, type, value }, ...]`; each mistake names its
/// key (`dns.records[2].value`).
fn parse_records(
    value: toml::Value,
    hosts: &[StaticHost],
) -> Result<Vec<ResourceRecord>, DefinitionError> {
    let toml::Value::Array(items) = value else {
        return Err(DefinitionError::new(
            "dns.records",
            "must be a list like [{ name = \"www\", type = \"CNAME\", value = \"web1\" }]",
        ));
    };
    if items.len() > MAX_DNS_RECORDS {
        return Err(DefinitionError::new(
            "dns.records",
            format!("{} records; the limit is {MAX_DNS_RECORDS}", items.len()),
        ));
    }
    let mut records: Vec<ResourceRecord> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let record = parse_record(i, item)?;
        let name_field = format!("dns.records[{i}].name");
        let same_name = |n: &str| n.eq_ignore_ascii_case(&record.name);
        let is_cname = matches!(record.data, RecordData::Cname { .. });
        let others = records.iter().filter(|r| same_name(&r.name));
        let host = hosts
            .iter()
            .any(|h| h.name.as_deref().is_some_and(same_name));
        if records.contains(&record) {
            return Err(DefinitionError::new(
                name_field,
                "the same record is listed twice",
            ));
        }
        if is_cname && (host || others.clone().next().is_some()) {
            return Err(DefinitionError::new(
                name_field,
                format!(
                    "{:?} has other records: a CNAME must be the only record of its name",
                    record.name
                ),
            ));
        }
        if others
            .clone()
            .any(|r| matches!(r.data, RecordData::Cname { .. }))
        {
            return Err(DefinitionError::new(
                name_field,
                format!(
                    "{:?} is an alias (CNAME), which holds no other record",
                    record.name
                ),
            ));
        }
        records.push(record);
    }
    Ok(records)
}

fn parse_record(i: usize, item: toml::Value) -> Result<ResourceRecord, DefinitionError> {
    let field = |f: &str| format!("dns.records[{i}].{f}");
    let toml::Value::Table(table) = item else {
        return Err(DefinitionError::new(
            format!("dns.records[{i}]"),
            "must be a table like { name = \"www\", type = \"CNAME\", value = \"web1\" }",
        ));
    };
    if let Some(key) = table
        .keys()
        .find(|k| !["name", "type", "value"].contains(&k.as_str()))
    {
        return Err(DefinitionError::new(
            field(key),
            "unknown key; a record takes name, type and value",
        ));
    }
    let string = |key: &str| match table.get(key) {
        Some(toml::Value::String(s)) => Ok(s.as_str()),
        Some(other) => Err(DefinitionError::new(
            field(key),
            format!("{other} is not a string"),
        )),
        None => Err(DefinitionError::new(field(key), "missing")),
    };
    let name = string("name")?;
    check_relative_name(name, true).map_err(|e| {
        DefinitionError::new(
            field("name"),
            format!(
                "{e} (names are relative to the network's domain, like \"www\" or \"_http._tcp\")"
            ),
        )
    })?;
    let rtype = string("type")?.to_ascii_uppercase();
    let target = |s: &str| -> Result<String, DefinitionError> {
        check_relative_name(s, false).map_err(|e| DefinitionError::new(field("value"), e))?;
        Ok(s.to_ascii_lowercase())
    };
    let u16_of = |s: &str, what: &str| {
        s.parse::<u16>().map_err(|_| {
            DefinitionError::new(
                field("value"),
                format!("{s:?} is not a {what} (0 to 65535)"),
            )
        })
    };
    let data = match rtype.as_str() {
        "A" => {
            let v = string("value")?;
            let ip = v.parse().map_err(|_| {
                DefinitionError::new(field("value"), format!("{v:?} is not an IPv4 address"))
            })?;
            RecordData::A { ip }
        }
        "CNAME" => {
            let v = string("value")?;
            let target = target(v)?;
            if target.eq_ignore_ascii_case(name) {
                return Err(DefinitionError::new(field("value"), "an alias of itself"));
            }
            RecordData::Cname { target }
        }
        "TXT" => RecordData::Txt {
            text: parse_txt(table.get("value"), &field("value"))?,
        },
        "SRV" => {
            let v = string("value")?;
            let parts: Vec<&str> = v.split_whitespace().collect();
            let [priority, weight, port, host] = parts[..] else {
                return Err(DefinitionError::new(
                    field("value"),
                    format!("{v:?} is not \"PRIORITY WEIGHT PORT TARGET\", like \"0 5 80 web1\""),
                ));
            };
            RecordData::Srv {
                priority: u16_of(priority, "priority")?,
                weight: u16_of(weight, "weight")?,
                port: u16_of(port, "port")?,
                target: target(host)?,
            }
        }
        "MX" => {
            let v = string("value")?;
            let parts: Vec<&str> = v.split_whitespace().collect();
            let [preference, exchange] = parts[..] else {
                return Err(DefinitionError::new(
                    field("value"),
                    format!("{v:?} is not \"PREFERENCE EXCHANGE\", like \"10 mail\""),
                ));
            };
            RecordData::Mx {
                preference: u16_of(preference, "preference")?,
                exchange: target(exchange)?,
            }
        }
        other => {
            return Err(DefinitionError::new(
                field("type"),
                format!("{other:?} is not one of A, CNAME, TXT, SRV and MX"),
            ))
        }
    };
    Ok(ResourceRecord {
        name: name.to_ascii_lowercase(),
        data,
    })
}

/// Most bytes of TXT data in one record (as the plan check allows).
const MAX_TXT_BYTES: usize = 4000;

/// A TXT value: a string (cut into strings of 255 bytes, as DNS carries
/// them) or a list of strings of at most 255 bytes each.
fn parse_txt(value: Option<&toml::Value>, field: &str) -> Result<Vec<String>, DefinitionError> {
    let too_long =
        || DefinitionError::new(field, format!("more than {MAX_TXT_BYTES} bytes of text"));
    let text = match value {
        Some(toml::Value::String(s)) => {
            if s.len() > MAX_TXT_BYTES {
                return Err(too_long());
            }
            split_txt(s)
        }
        Some(toml::Value::Array(items)) => {
            let mut text = Vec::with_capacity(items.len());
            for (j, item) in items.iter().enumerate() {
                match item {
                    toml::Value::String(s) if s.len() <= 255 => text.push(s.clone()),
                    toml::Value::String(_) => {
                        return Err(DefinitionError::new(
                            format!("{field}[{j}]"),
                            "longer than 255 bytes; give a longer text as one string",
                        ))
                    }
                    other => {
                        return Err(DefinitionError::new(
                            format!("{field}[{j}]"),
                            format!("{other} is not a string"),
                        ))
                    }
                }
            }
            text
        }
        Some(other) => {
            return Err(DefinitionError::new(
                field,
                format!("{other} is not a string or a list of strings"),
            ))
        }
        None => return Err(DefinitionError::new(field, "missing")),
    };
    if text.is_empty() {
        return Err(DefinitionError::new(field, "an empty list"));
    }
    if text.iter().map(|t| t.len() + 1).sum::<usize>() > MAX_TXT_BYTES {
        return Err(too_long());
    }
    Ok(text)
}

/// `s` in pieces of at most 255 bytes, cut between characters.
fn split_txt(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        let mut cut = rest.len().min(255);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(rest[..cut].to_owned());
        rest = &rest[cut..];
        if rest.is_empty() {
            return out;
        }
    }
}

/// `[dns] servers = [{ domain, address }, ...]`, grouped by domain in the
/// order they first come.
fn parse_servers(
    value: toml::Value,
    own_domain: Option<&DnsName>,
) -> Result<Vec<DomainServers>, DefinitionError> {
    let toml::Value::Array(items) = value else {
        return Err(DefinitionError::new(
            "dns.servers",
            "must be a list like [{ domain = \"corp.example\", address = \"10.0.0.53\" }]",
        ));
    };
    let limit = MAX_DOMAIN_SERVERS * MAX_DOMAIN_SERVERS;
    if items.len() > limit {
        return Err(DefinitionError::new(
            "dns.servers",
            format!("{} servers; the limit is {limit}", items.len()),
        ));
    }
    let mut out: Vec<DomainServers> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let field = |f: &str| format!("dns.servers[{i}].{f}");
        let toml::Value::Table(table) = item else {
            return Err(DefinitionError::new(
                format!("dns.servers[{i}]"),
                "must be a table like { domain = \"corp.example\", address = \"10.0.0.53\" }",
            ));
        };
        if let Some(key) = table
            .keys()
            .find(|k| !["domain", "address"].contains(&k.as_str()))
        {
            return Err(DefinitionError::new(
                field(key),
                "unknown key; a server takes domain and address",
            ));
        }
        let string = |key: &str| match table.get(key) {
            Some(toml::Value::String(s)) => Ok(s.as_str()),
            Some(other) => Err(DefinitionError::new(
                field(key),
                format!("{other} is not a string"),
            )),
            None => Err(DefinitionError::new(field(key), "missing")),
        };
        let domain = DnsName::new(string("domain")?)
            .map_err(|e| DefinitionError::new(field("domain"), e.to_string()))?;
        if own_domain == Some(&domain) {
            return Err(DefinitionError::new(
                field("domain"),
                "the network's own domain is answered by the network's DNS",
            ));
        }
        let a = string("address")?;
        let address: IpAddr = a.parse().map_err(|_| {
            DefinitionError::new(field("address"), format!("{a:?} is not an IP address"))
        })?;
        let domains = out.len();
        match out.iter_mut().find(|d| d.domain == domain) {
            Some(d) if d.servers.contains(&address) => {
                return Err(DefinitionError::new(
                    field("address"),
                    format!("{address} is listed twice for {domain}"),
                ))
            }
            Some(d) if d.servers.len() >= MAX_DOMAIN_SERVERS => {
                return Err(DefinitionError::new(
                    field("address"),
                    format!("more than {MAX_DOMAIN_SERVERS} servers for {domain}"),
                ))
            }
            Some(d) => d.servers.push(address),
            None if domains >= MAX_DOMAIN_SERVERS => {
                return Err(DefinitionError::new(
                    field("domain"),
                    format!("more than {MAX_DOMAIN_SERVERS} domains"),
                ))
            }
            None => out.push(DomainServers {
                domain,
                servers: vec![address],
            }),
        }
    }
    Ok(out)
}

/// A record as `parse_record` reads it back.
fn record_table(r: &ResourceRecord) -> toml::Value {
    let (rtype, value): (&str, toml::Value) = match &r.data {
        RecordData::A { ip } => ("A", ip.to_string().into()),
        RecordData::Cname { target } => ("CNAME", target.clone().into()),
        RecordData::Txt { text } if text.len() == 1 => ("TXT", text[0].clone().into()),
        RecordData::Txt { text } => (
            "TXT",
            toml::Value::Array(text.iter().map(|t| t.clone().into()).collect()),
        ),
        RecordData::Srv {
            priority,
            weight,
            port,
            target,
        } => ("SRV", format!("{priority} {weight} {port} {target}").into()),
        RecordData::Mx {
            preference,
            exchange,
        } => ("MX", format!("{preference} {exchange}").into()),
    };
    let mut t = toml::Table::new();
    t.insert("name".into(), r.name.clone().into());
    t.insert("type".into(), rtype.into());
    t.insert("value".into(), value);
    toml::Value::Table(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HostFacts;

    const EXAMPLE: &str = r#"
name = "default"
mode = "nat"
autostart = true
[ipv4]
address = "192.168.122.1/24"
dhcp = { start = "192.168.122.10", end = "192.168.122.254", lease_time = "1h" }
hosts = [{ mac = "52:54:00:aa:bb:cc", ip = "192.168.122.5", name = "web" }]
[dns]
domain = "guest.lan"
[host]
allow = ["tcp/22", "udp/69", "tcp/8000-8080"]
[nat]
uplink = "eth0"
"#;

    #[test]
    fn design_example_parses() {
        let d = Definition::parse(EXAMPLE).unwrap();
        assert_eq!(d.name.as_str(), "default");
        assert_eq!(d.mode, "nat");
        assert!(d.autostart);
        let dhcp = d.ipv4.dhcp.as_ref().unwrap();
        assert_eq!(dhcp.lease_time_secs, 3600);
        assert_eq!(d.ipv4.hosts[0].name.as_deref(), Some("web"));
        assert_eq!(d.mode_section.as_ref().unwrap()["uplink"], "eth0");
        let allow: Vec<String> = d.host.allow.iter().map(|p| p.to_string()).collect();
        assert_eq!(allow, ["tcp/22", "udp/69", "tcp/8000-8080"]);
    }

    #[test]
    fn round_trips_through_toml() {
        let d = Definition::parse(EXAMPLE).unwrap();
        let again = Definition::parse(&d.to_toml()).unwrap();
        assert_eq!(d, again);
    }

    #[test]
    fn minimal_definition_gets_defaults() {
        let d = Definition::parse("name = \"x\"").unwrap();
        assert_eq!(d.mode, "nat");
        assert!(!d.autostart);
        assert!(d.ipv4.address.is_none());
        assert!(d.ipv4.dhcp.is_some());
        let r = d.resolve_ipv4("10.9.8.1/24".parse().unwrap());
        let pool = r.dhcp.unwrap();
        assert_eq!(pool.start, Ipv4Addr::new(10, 9, 8, 10));
        assert_eq!(pool.end, Ipv4Addr::new(10, 9, 8, 254));
    }

    #[test]
    fn the_per_port_lease_limit_defaults_small_and_round_trips() {
        let d = Definition::parse("name = \"x\"").unwrap();
        assert_eq!(
            d.ipv4.dhcp.as_ref().unwrap().max_leases_per_port,
            LEASES_PER_PORT_DEFAULT
        );
        assert!(!d.to_toml().contains("max_leases_per_port"));
        let text =
            "name = \"x\"\n[ipv4]\naddress = \"10.1.1.1/24\"\ndhcp = { max_leases_per_port = 40 }";
        let d = Definition::parse(text).unwrap();
        assert_eq!(d.ipv4.dhcp.as_ref().unwrap().max_leases_per_port, 40);
        assert_eq!(Definition::parse(&d.to_toml()).unwrap(), d);
        let r = d.resolve_ipv4("10.1.1.1/24".parse().unwrap());
        assert_eq!(r.dhcp.unwrap().max_leases_per_port, 40);
        for bad in ["0", "-1", "65537", "\"4\""] {
            let text = format!("name = \"x\"\n[ipv4]\ndhcp = {{ max_leases_per_port = {bad} }}");
            let e = refused(&text);
            assert!(e.field.starts_with("ipv4.dhcp"), "{e}");
        }
    }

    fn refused(text: &str) -> DefinitionError {
        Definition::parse(text).expect_err(text)
    }

    #[test]
    fn bad_definitions_name_the_field() {
        let cases: &[(&str, &str)] = &[
            ("name = \"../etc\"", "name"),
            ("name = \"a\"\nbridge = \"abcdefghijklmnop\"", "bridge"),
            ("name = \"a\"\nmtu = 10", "mtu"),
            ("name = \"a\"\nmode = \"ipv4\"", "mode"),
            ("name = \"a\"\nfrobnicate = 1", "frobnicate"),
            ("name = \"a\"\nmode = \"nat\"\n[bridged]\ninterface = \"eth0\"", "bridged"),
            ("name = \"a\"\n[ipv4]\naddress = \"192.168.1.0/24\"", "ipv4.address"),
            ("name = \"a\"\n[ipv4]\naddress = \"192.168.1.1/31\"", "ipv4.address"),
            ("name = \"a\"\n[ipv4]\naddress = \"192.168.1.1/24\"\ndhcp = { start = \"192.168.2.10\" }", "ipv4.dhcp.start"),
            ("name = \"a\"\n[ipv4]\naddress = \"192.168.1.1/24\"\ndhcp = { start = \"192.168.1.50\", end = \"192.168.1.20\" }", "ipv4.dhcp"),
            ("name = \"a\"\n[ipv4]\naddress = \"192.168.1.1/24\"\ndhcp = { lease_time = 0 }", "ipv4.dhcp.lease_time"),
            ("name = \"a\"\n[ipv4]\naddress = \"192.168.1.1/24\"\ndhcp = { lease_time = \"9999d\" }", "ipv4.dhcp.lease_time"),
            ("name = \"a\"\n[ipv4]\naddress = \"192.168.1.1/24\"\nhosts = [{mac=\"52:54:00:00:00:01\", ip=\"192.168.1.5\"},{mac=\"52:54:00:00:00:01\", ip=\"192.168.1.6\"}]", "ipv4.hosts[1].mac"),
            ("name = \"a\"\n[ipv4]\naddress = \"192.168.1.1/24\"\nhosts = [{mac=\"52:54:00:00:00:01\", ip=\"192.168.1.1\"}]", "ipv4.hosts[0].ip"),
            ("name = \"a\"\n[ipv4]\naddress = \"192.168.1.1/24\"\nunknown = 1", "unknown"),
            ("name = \"a\"\n[dns]\ndomain = \"bad..name\"", "dns.domain"),
            ("name = 5", "name"),
            ("name = \"a\"\nautostart = \"yes\"", "autostart"),
            ("name = \"a\"\nhost = 1", "host"),
            ("name = \"a\"\n[host]\nallow = \"tcp/22\"", "host.allow"),
            ("name = \"a\"\n[host]\nalow = [\"tcp/22\"]", "host.alow"),
            ("name = \"a\"\n[host]\nallow = [\"tcp/22\", 23]", "host.allow[1]"),
            ("name = \"a\"\n[host]\nallow = [\"tcp/22\", \"tcp/0\"]", "host.allow[1]"),
            ("name = \"a\"\n[host]\nallow = [\"icmp/8\"]", "host.allow[0]"),
            ("name = \"a\"\n[host]\nallow = [\"tcp/22\", \"tcp/22\"]", "host.allow[1]"),
            ("name = \"a\"\nmode = \"host\"", "mode"),
        ];
        for (text, field) in cases {
            let e = refused(text);
            assert_eq!(&e.field, field, "for {text:?}: {e}");
        }
    }

    const WITH_OPTIONS: &str = r#"
name = "pxe"
[ipv4]
address = "192.168.50.1/24"
hosts = [
  { mac = "52:54:00:00:00:01", ip = "192.168.50.5", filename = "ipxe.efi", options = [{ code = 224, hex = "00:ff" }] },
]
[ipv4.dhcp]
start = "192.168.50.10"
ntp = ["192.168.50.1", "192.0.2.123"]
routes = [{ to = "10.20.0.0/16", via = "192.168.50.2" }]
search = ["Corp.Example", "lab.example"]
next_server = "192.168.50.3"
filename = "pxelinux.0"
options = [
  { code = 224, text = "hello" },
  { code = 225, hex = "01:02:ab" },
  { code = 150, ip = ["192.168.50.3", "192.168.50.4"] },
]
"#;

    #[test]
    fn dhcp_options_parse_round_trip_and_reach_the_plan() {
        let d = Definition::parse(WITH_OPTIONS).unwrap();
        let dhcp = d.ipv4.dhcp.as_ref().unwrap();
        assert_eq!(dhcp.start, Some(Ipv4Addr::new(192, 168, 50, 10)));
        let o = &dhcp.options;
        assert_eq!(
            o.ntp,
            [
                Ipv4Addr::new(192, 168, 50, 1),
                Ipv4Addr::new(192, 0, 2, 123)
            ]
        );
        assert_eq!(o.routes[0].to, "10.20.0.0/16".parse::<Ipv4Net>().unwrap());
        assert_eq!(o.routes[0].via, Ipv4Addr::new(192, 168, 50, 2));
        let search: Vec<&str> = o.search.iter().map(|n| n.as_str()).collect();
        assert_eq!(search, ["corp.example", "lab.example"]);
        assert_eq!(o.next_server, Some(Ipv4Addr::new(192, 168, 50, 3)));
        assert_eq!(o.filename.as_deref(), Some("pxelinux.0"));
        let raw: Vec<(u8, &[u8])> = o.raw.iter().map(|r| (r.code, &r.value[..])).collect();
        assert_eq!(
            raw,
            [
                (224, &b"hello"[..]),
                (225, &[1, 2, 0xab][..]),
                (150, &[192, 168, 50, 3, 192, 168, 50, 4][..])
            ]
        );
        let host = &d.ipv4.hosts[0];
        assert_eq!(host.filename.as_deref(), Some("ipxe.efi"));
        assert_eq!(host.options[0].value, [0, 0xff]);
        // GetConfig's TOML reads back the same, and shows the keys as written.
        let text = d.to_toml();
        for key in [
            "ntp",
            "routes",
            "search",
            "next_server",
            "filename",
            "options",
            "hex",
            "text",
        ] {
            assert!(text.contains(key), "{key} missing from\n{text}");
        }
        assert_eq!(Definition::parse(&text).unwrap(), d, "{text}");
        // The JSON a mode library gets carries them; one without them
        // (an older guestnetd's) still reads.
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["ipv4"]["dhcp"]["options"]["ntp"][1], "192.0.2.123");
        let plain = Definition::parse("name = \"x\"").unwrap();
        let json = serde_json::to_string(&plain).unwrap();
        assert!(
            !json.contains("options") && !json.contains("filename"),
            "{json}"
        );
        // nat, routed and isolated serve them.
        let facts = crate::HostFacts {
            free_bridge_name: Some(IfName::new("gn0").unwrap()),
            ..Default::default()
        };
        let plan =
            crate::own_subnet::plan(&d, &facts, crate::own_subnet::Gateway::Offered).unwrap();
        let plan_dhcp = plan.dhcp.as_ref().unwrap();
        assert_eq!(&plan_dhcp.options, o);
        assert_eq!(plan_dhcp.hosts[0].filename.as_deref(), Some("ipxe.efi"));
        plan.check().unwrap();
        // The inline form and plain switches stay valid.
        let inline = "name = \"x\"\n[ipv4]\naddress = \"10.1.1.1/24\"\ndhcp = { start = \"10.1.1.20\", ntp = [\"10.1.1.1\"] }";
        let d = Definition::parse(inline).unwrap();
        assert_eq!(d.ipv4.dhcp.unwrap().options.ntp.len(), 1);
        assert!(Definition::parse("name = \"x\"\n[ipv4]\ndhcp = true").is_ok());
        assert!(Definition::parse("name = \"x\"\n[ipv4]\ndhcp = false").is_ok());
    }

    #[test]
    fn bad_dhcp_options_name_their_key() {
        let head = "name = \"a\"\n[ipv4]\naddress = \"192.168.1.1/24\"\n";
        let cases: &[(&str, &str)] = &[
            ("[ipv4.dhcp]\nntp = \"192.168.1.1\"", "ipv4.dhcp.ntp"),
            ("[ipv4.dhcp]\nntp = [\"192.168.1.1\", \"ntp.example\"]", "ipv4.dhcp.ntp[1]"),
            ("[ipv4.dhcp]\nntp = [\"224.0.0.1\"]", "ipv4.dhcp.ntp[0]"),
            ("[ipv4.dhcp]\nroutes = [{ to = \"10.0.0.0/8\" }]", "ipv4.dhcp.routes[0]"),
            ("[ipv4.dhcp]\nroutes = [{ to = \"10.0.0.0/8\", via = \"192.168.1.2\", metric = 1 }]", "ipv4.dhcp.routes[0].metric"),
            ("[ipv4.dhcp]\nroutes = [{ to = \"10.0.0.1/8\", via = \"192.168.1.2\" }]", "ipv4.dhcp.routes[0].to"),
            ("[ipv4.dhcp]\nroutes = [{ to = \"10.0.0.0/8\", via = \"192.168.1.2\" }, { to = \"10.0.0.0/8\", via = \"172.16.0.1\" }]", "ipv4.dhcp.routes[1].via"),
            ("[ipv4.dhcp]\nsearch = [\"ok.example\", \"bad..example\"]", "ipv4.dhcp.search[1]"),
            ("[ipv4.dhcp]\nsearch = [\"a.example\", \"A.example\"]", "ipv4.dhcp.search[1]"),
            ("[ipv4.dhcp]\nnext_server = \"tftp\"", "ipv4.dhcp.next_server"),
            ("[ipv4.dhcp]\nfilename = \"\"", "ipv4.dhcp.filename"),
            ("[ipv4.dhcp]\nfilename = 5", "ipv4.dhcp.filename"),
            ("[ipv4.dhcp]\noptions = [{ code = 224, text = \"x\" }, { code = 3, ip = [\"192.168.1.1\"] }]", "ipv4.dhcp.options[1].code"),
            ("[ipv4.dhcp]\noptions = [{ code = 121, hex = \"00\" }]", "ipv4.dhcp.options[0].code"),
            ("[ipv4.dhcp]\noptions = [{ code = 300, text = \"x\" }]", "ipv4.dhcp.options[0].code"),
            ("[ipv4.dhcp]\noptions = [{ code = 224, text = \"x\" }, { code = 224, text = \"y\" }]", "ipv4.dhcp.options[1].code"),
            ("[ipv4.dhcp]\noptions = [{ code = 224 }]", "ipv4.dhcp.options[0]"),
            ("[ipv4.dhcp]\noptions = [{ code = 224, text = \"x\", hex = \"01\" }]", "ipv4.dhcp.options[0]"),
            ("[ipv4.dhcp]\noptions = [{ code = 224, hex = \"0g\" }]", "ipv4.dhcp.options[0].hex"),
            ("[ipv4.dhcp]\noptions = [{ code = 224, hex = \"1:2\" }]", "ipv4.dhcp.options[0].hex"),
            ("[ipv4.dhcp]\noptions = [{ code = 224, ip = [\"x\"] }]", "ipv4.dhcp.options[0].ip[0]"),
            ("[ipv4.dhcp]\noptions = [{ code = 224, txt = \"x\" }]", "ipv4.dhcp.options[0].txt"),
            ("[ipv4.dhcp]\nfrobnicate = 1", "ipv4.dhcp.frobnicate"),
            ("hosts = [{ mac = \"52:54:00:00:00:01\", ip = \"192.168.1.5\", options = [{ code = 51, hex = \"00\" }] }]", "ipv4.hosts[0].options[0].code"),
            ("hosts = [{ mac = \"52:54:00:00:00:01\", ip = \"192.168.1.5\", filename = 1 }]", "ipv4.hosts[0].filename"),
        ];
        for (tail, field) in cases {
            let text = format!("{head}{tail}");
            let e = refused(&text);
            assert_eq!(&e.field, field, "for {text:?}: {e}");
        }
        // The bounds are check.rs's.
        let many: Vec<String> = (0..=MAX_DHCP_LIST)
            .map(|i| format!("\"10.0.{i}.1\""))
            .collect();
        let e = refused(&format!("{head}[ipv4.dhcp]\nntp = [{}]", many.join(",")));
        assert_eq!(e.field, "ipv4.dhcp.ntp");
        let e = refused(&format!(
            "{head}[ipv4.dhcp]\nfilename = \"{}\"",
            "f".repeat(128)
        ));
        assert_eq!(e.field, "ipv4.dhcp.filename");
        let e = refused(&format!(
            "{head}[ipv4.dhcp]\noptions = [{{ code = 224, text = \"{}\" }}]",
            "t".repeat(256)
        ));
        assert_eq!(e.field, "ipv4.dhcp.options[0].text");
        let raw: Vec<String> = (0..=MAX_RAW_DHCP_OPTIONS)
            .map(|i| format!("{{ code = {}, text = \"x\" }}", 160 + i))
            .collect();
        let e = refused(&format!("{head}[ipv4.dhcp]\noptions = [{}]", raw.join(",")));
        assert_eq!(e.field, "ipv4.dhcp.options");
    }

    #[test]
    fn too_many_host_ports_are_refused() {
        let ports: Vec<String> = (1..=MAX_HOST_ALLOW + 1)
            .map(|p| format!("\"tcp/{p}\""))
            .collect();
        let e = refused(&format!(
            "name = \"a\"\n[host]\nallow = [{}]",
            ports.join(",")
        ));
        assert_eq!(e.field, "host.allow", "{e}");
    }

    #[test]
    fn oversized_definition_is_refused() {
        let text = format!("name = \"a\"\n#{}", "x".repeat(DEFINITION_MAX_BYTES));
        assert_eq!(refused(&text).field, "definition");
    }

    #[test]
    fn hostile_nesting_is_refused_without_recursion() {
        let deep = format!(
            "name = \"a\"\nx = {}1{}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert_eq!(refused(&deep).field, "definition");
        let keys = vec!["k"; 60].join(".");
        let dotted = format!("name = \"a\"\ndeep.{keys} = {{ {keys} = {{ {keys} = 1 }} }}");
        let e = refused(&dotted);
        assert!(e.reason.contains("nested more than"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("2d"), Some(172800));
        assert_eq!(parse_duration("1y"), None);
        assert_eq!(parse_duration("99999999999999999999h"), None);
        assert_eq!(format_duration(7200), "2h");
    }

    #[test]
    fn mac_addresses() {
        assert!("52:54:00:AA:bb:cc".parse::<MacAddr>().is_ok());
        assert!("01:00:5e:00:00:01".parse::<MacAddr>().is_err());
        assert!("52:54:00:aa:bb".parse::<MacAddr>().is_err());
    }

    const DNS_EXAMPLE: &str = r#"
name = "recs"
bridge = "gnbr9"
[ipv4]
address = "10.77.0.1/24"
hosts = [{ mac = "52:54:00:00:00:01", ip = "10.77.0.5", name = "web" }]
[dns]
domain = "guest.lan"
records = [
  { name = "www", type = "CNAME", value = "web1" },
  { name = "_http._tcp", type = "SRV", value = "0 5 80 web1" },
  { name = "info", type = "TXT", value = "hello" },
  { name = "mail", type = "MX", value = "10 web1" },
  { name = "db", type = "A", value = "10.77.0.9" },
  { name = "Ext", type = "cname", value = "www.Example.com." },
  { name = "multi", type = "TXT", value = ["v=spf1", "-all"] },
]
upstream = false
servers = [
  { domain = "corp.example", address = "10.0.0.53" },
  { domain = "eu.corp.example", address = "10.0.0.54" },
  { domain = "Corp.Example", address = "10.0.0.55" },
]
"#;

    #[test]
    fn dns_records_upstream_and_servers_parse() {
        let d = Definition::parse(DNS_EXAMPLE).unwrap();
        let r = &d.dns.records;
        assert_eq!(r.len(), 7);
        assert_eq!(
            r[0],
            ResourceRecord {
                name: "www".into(),
                data: RecordData::Cname {
                    target: "web1".into()
                }
            }
        );
        assert_eq!(
            r[1].data,
            RecordData::Srv {
                priority: 0,
                weight: 5,
                port: 80,
                target: "web1".into()
            }
        );
        assert_eq!(
            r[2].data,
            RecordData::Txt {
                text: vec!["hello".into()]
            }
        );
        assert_eq!(
            r[3].data,
            RecordData::Mx {
                preference: 10,
                exchange: "web1".into()
            }
        );
        assert_eq!(
            r[4].data,
            RecordData::A {
                ip: Ipv4Addr::new(10, 77, 0, 9)
            }
        );
        assert_eq!(r[5].name, "ext");
        assert_eq!(
            r[5].data,
            RecordData::Cname {
                target: "www.example.com.".into()
            }
        );
        assert!(!d.dns.upstream);
        let servers: Vec<(String, Vec<String>)> = d
            .dns
            .domain_servers
            .iter()
            .map(|s| {
                (
                    s.domain.to_string(),
                    s.servers.iter().map(|a| a.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(
            servers,
            [
                (
                    "corp.example".into(),
                    vec!["10.0.0.53".into(), "10.0.0.55".into()]
                ),
                ("eu.corp.example".into(), vec!["10.0.0.54".into()]),
            ]
        );
        // Written back (GetConfig, the file) and read again: the same.
        let text = d.to_toml();
        assert_eq!(Definition::parse(&text).unwrap(), d, "{text}");
        assert!(text.contains("upstream = false"), "{text}");
        // Absent: nothing new in the TOML or the JSON older modes read.
        let plain = Definition::parse("name = \"x\"\n[dns]\ndomain = \"a.lan\"").unwrap();
        assert!(plain.dns.upstream && plain.dns.records.is_empty());
        let json = serde_json::to_value(&plain).unwrap();
        assert_eq!(
            json["dns"],
            serde_json::json!({"domain": "a.lan", "forwarders": []})
        );
        assert!(!plain.to_toml().contains("upstream"));
        // And JSON without them (an older guestnetd's) reads as before.
        let old: Definition = serde_json::from_value(json).unwrap();
        assert_eq!(old, plain);
        // The new fields travel in the JSON.
        let back: Definition = serde_json::from_value(serde_json::to_value(&d).unwrap()).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn a_long_txt_value_is_cut_into_dns_strings() {
        let long = "é".repeat(200); // 400 bytes
        let text = format!(
            "name = \"x\"\n[dns]\nrecords = [{{ name = \"t\", type = \"TXT\", value = \"{long}\" }}]"
        );
        let d = Definition::parse(&text).unwrap();
        let RecordData::Txt { text: parts } = &d.dns.records[0].data else {
            panic!("not TXT");
        };
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.len() <= 255));
        assert_eq!(parts.concat(), long);
        assert_eq!(Definition::parse(&d.to_toml()).unwrap(), d);
    }

    #[test]
    fn own_subnet_plans_carry_the_dns_settings() {
        let d = Definition::parse(DNS_EXAMPLE).unwrap();
        let plan = crate::own_subnet::plan(
            &d,
            &HostFacts::default(),
            crate::own_subnet::Gateway::Offered,
        )
        .unwrap();
        let dns = plan.dns.as_ref().unwrap();
        assert_eq!(dns.typed_records, d.dns.records);
        assert_eq!(dns.domain_servers, d.dns.domain_servers);
        assert!(!dns.upstream);
        plan.check().unwrap();
    }

    #[test]
    fn bad_dns_settings_name_their_key() {
        let dns = |body: &str| {
            format!("name = \"a\"\n[ipv4]\naddress = \"10.1.1.1/24\"\nhosts = [{{ mac = \"52:54:00:00:00:01\", ip = \"10.1.1.5\", name = \"web\" }}]\n[dns]\ndomain = \"guest.lan\"\n{body}")
        };
        let rec = |items: &str| dns(&format!("records = [{items}]"));
        let ok = r#"{ name = "info", type = "TXT", value = "hi" }"#;
        let cases: Vec<(String, &str, &str)> = vec![
            (dns("records = 1"), "dns.records", "list"),
            (rec("1"), "dns.records[0]", "table"),
            (rec(&format!(r#"{ok}, {ok}, {{ name = "www", type = "CNAME", value = "a b" }}"#)), "dns.records[1].name", "twice"),
            (rec(&format!(r#"{ok}, {ok}"#)), "dns.records[1].name", "twice"),
            (rec(&format!(r#"{ok}, {{ name = "www", type = "CNAME", value = "a..b" }}"#)), "dns.records[1].value", "label"),
            (rec(r#"{ name = "a", type = "SRV", value = "0 5 web1" }"#), "dns.records[0].value", "PRIORITY"),
            (rec(r#"{ name = "a", type = "SRV", value = "0 5 99999 web1" }"#), "dns.records[0].value", "port"),
            (rec(r#"{ name = "a", type = "MX", value = "web1" }"#), "dns.records[0].value", "PREFERENCE"),
            (rec(r#"{ name = "a", type = "A", value = "web1" }"#), "dns.records[0].value", "IPv4"),
            (rec(r#"{ name = "a", type = "AAAA", value = "::1" }"#), "dns.records[0].type", "not one of"),
            (rec(r#"{ name = "a b", type = "A", value = "10.1.1.9" }"#), "dns.records[0].name", "relative"),
            (rec(r#"{ name = "a.", type = "A", value = "10.1.1.9" }"#), "dns.records[0].name", "relative"),
            (rec(r#"{ name = "a", type = "A" }"#), "dns.records[0].value", "missing"),
            (rec(r#"{ name = "a", type = "A", value = "10.1.1.9", ttl = 5 }"#), "dns.records[0].ttl", "unknown key"),
            (rec(r#"{ name = "a", type = "TXT", value = 5 }"#), "dns.records[0].value", "not a string"),
            (rec(r#"{ name = "a", type = "TXT", value = [] }"#), "dns.records[0].value", "empty"),
            (rec(&format!(r#"{{ name = "a", type = "TXT", value = ["{}"] }}"#, "x".repeat(256))), "dns.records[0].value[0]", "255"),
            (rec(&format!(r#"{{ name = "a", type = "TXT", value = "{}" }}"#, "x".repeat(4001))), "dns.records[0].value", "bytes"),
            (rec(r#"{ name = "web", type = "CNAME", value = "db" }"#), "dns.records[0].name", "only record"),
            (rec(r#"{ name = "a", type = "CNAME", value = "b" }, { name = "A", type = "TXT", value = "x" }"#), "dns.records[1].name", "alias"),
            (rec(r#"{ name = "a", type = "TXT", value = "x" }, { name = "a", type = "CNAME", value = "b" }"#), "dns.records[1].name", "only record"),
            (rec(r#"{ name = "a", type = "CNAME", value = "A" }"#), "dns.records[0].value", "itself"),
            (dns("upstream = \"no\""), "upstream", "invalid type"),
            (dns("upstream = false\nforwarders = [\"10.0.0.2\"]"), "dns.forwarders", "upstream = false"),
            (dns("servers = { domain = \"x\" }"), "dns.servers", "list"),
            (dns("servers = [{ domain = \"corp..example\", address = \"10.0.0.53\" }]"), "dns.servers[0].domain", "DNS name"),
            (dns("servers = [{ domain = \"corp.example\", address = \"ten\" }]"), "dns.servers[0].address", "IP address"),
            (dns("servers = [{ domain = \"corp.example\" }]"), "dns.servers[0].address", "missing"),
            (dns("servers = [{ domain = \"corp.example\", address = \"10.0.0.53\", port = 5353 }]"), "dns.servers[0].port", "unknown key"),
            (dns("servers = [{ domain = \"Guest.Lan\", address = \"10.0.0.53\" }]"), "dns.servers[0].domain", "own domain"),
            (dns("servers = [{ domain = \"c.example\", address = \"10.0.0.53\" }, { domain = \"c.example\", address = \"10.0.0.53\" }]"), "dns.servers[1].address", "twice"),
        ];
        for (text, field, reason) in &cases {
            let e = refused(text);
            assert_eq!(&e.field, field, "for {text:?}: {e}");
            assert!(e.reason.contains(reason), "for {text:?}: {e}");
        }
        let many: Vec<String> = (0..=MAX_DOMAIN_SERVERS)
            .map(|i| format!("{{ domain = \"d{i}.example\", address = \"10.0.0.53\" }}"))
            .collect();
        let e = refused(&dns(&format!("servers = [{}]", many.join(", "))));
        assert_eq!(
            e.field,
            format!("dns.servers[{MAX_DOMAIN_SERVERS}].domain"),
            "{e}"
        );
        let many: Vec<String> = (0..=MAX_DOMAIN_SERVERS)
            .map(|i| format!("{{ domain = \"d.example\", address = \"10.0.0.{i}\" }}"))
            .collect();
        let e = refused(&dns(&format!("servers = [{}]", many.join(", "))));
        assert_eq!(
            e.field,
            format!("dns.servers[{MAX_DOMAIN_SERVERS}].address"),
            "{e}"
        );
    }
}
