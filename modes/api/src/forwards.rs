//! Port forwards as a definition writes them (`[[forwards]]`), and how a
//! planner turns them into [`FirewallRule::Forward`]s: a forward names its
//! guest by address, MAC or name, and the name or MAC is looked up in the
//! static hosts and the network's current leases ([`HostFacts::leases`]),
//! so that a re-plan after a lease changes makes the rule follow the guest.
//!
//! ```toml
//! [[forwards]]
//! proto = "tcp"            # tcp | udp
//! port = 8080              # host port, or a range "8000-8010"
//! to = "web1"              # a static host's or DHCP guest's name, a MAC, or an IPv4 address in the subnet
//! to_port = 80             # default: port (a range maps onto a range of the same size)
//! address = "10.0.0.2"     # optional: only on this host address
//! ```

use crate::check::MAX_SHIFTED_FORWARD_PORTS;
use crate::definition::{DefinitionError, MacAddr, StaticHost};
use crate::facts::HostFacts;
use crate::names::check_label;
use crate::plan::{FirewallRule, HostPort, Protocol};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Most forwards one network may have.
pub const MAX_FORWARDS: usize = 64;

/// One forward of a definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardConfig {
    /// The protocol and the host's port or ports (`tcp/8080`, `udp/5000-5010`).
    pub port: HostPort,
    pub to: ForwardTarget,
    /// The guest's first port.
    pub to_port: u16,
    /// Only on this host address; `None`: on every address of the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
}

/// Which guest a forward goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum ForwardTarget {
    Ip(Ipv4Addr),
    Mac(MacAddr),
    /// A static host's name or the host name a DHCP guest gave.
    Name(String),
}

impl std::fmt::Display for ForwardTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardTarget::Ip(ip) => write!(f, "{ip}"),
            ForwardTarget::Mac(m) => write!(f, "{m}"),
            ForwardTarget::Name(n) => f.write_str(n),
        }
    }
}

impl std::str::FromStr for ForwardTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(ip) = s.parse::<Ipv4Addr>() {
            return Ok(ForwardTarget::Ip(ip));
        }
        if s.contains(':') {
            return s.parse::<MacAddr>().map(ForwardTarget::Mac);
        }
        check_label(s).map_err(|e| format!("{s:?} is not an address, a MAC or a name: {e}"))?;
        Ok(ForwardTarget::Name(s.to_ascii_lowercase()))
    }
}

impl ForwardConfig {
    /// The last of the guest's ports.
    pub fn to_last(&self) -> u16 {
        self.to_port + (self.port.last - self.port.first)
    }

    /// Whether two forwards take a common host port of one protocol on a
    /// common address.
    pub fn overlaps(&self, other: &ForwardConfig) -> bool {
        self.port.protocol == other.port.protocol
            && self.port.first <= other.port.last
            && other.port.first <= self.port.last
            && match (self.address, other.address) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// As a definition writes it.
    pub fn to_toml(&self) -> toml::Value {
        let mut t = toml::Table::new();
        t.insert("proto".into(), self.port.protocol.as_str().into());
        t.insert("port".into(), port_value(self.port.first, self.port.last));
        t.insert("to".into(), self.to.to_string().into());
        t.insert("to_port".into(), port_value(self.to_port, self.to_last()));
        if let Some(a) = self.address {
            t.insert("address".into(), a.to_string().into());
        }
        toml::Value::Table(t)
    }
}

fn port_value(first: u16, last: u16) -> toml::Value {
    if first == last {
        i64::from(first).into()
    } else {
        format!("{first}-{last}").into()
    }
}

/// Reads `[[forwards]]`; each mistake names its key (`forwards[1].to_port`).
/// `subnet`: the network's, when the definition gives it, to check a target
/// address against.
pub fn parse(
    raw: Option<toml::Value>,
    subnet: Option<Ipv4Net>,
) -> Result<Vec<ForwardConfig>, DefinitionError> {
    let items = match raw {
        None => return Ok(vec![]),
        Some(toml::Value::Array(items)) => items,
        Some(_) => {
            return Err(DefinitionError::new(
                "forwards",
                "must be an array of tables like [[forwards]]",
            ))
        }
    };
    if items.len() > MAX_FORWARDS {
        return Err(DefinitionError::new(
            "forwards",
            format!("{} forwards; the limit is {MAX_FORWARDS}", items.len()),
        ));
    }
    let mut out: Vec<ForwardConfig> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let f = parse_one(&format!("forwards[{i}]"), item, subnet)?;
        if let Some(other) = out.iter().find(|o| o.overlaps(&f)) {
            return Err(DefinitionError::new(
                format!("forwards[{i}].port"),
                format!("{} is already forwarded (to {})", f.port, other.to),
            ));
        }
        out.push(f);
    }
    Ok(out)
}

/// Reads one forward, as a table with the keys of `[[forwards]]`; `field`
/// prefixes the keys in refusals.
pub fn parse_one(
    field: &str,
    item: toml::Value,
    subnet: Option<Ipv4Net>,
) -> Result<ForwardConfig, DefinitionError> {
    let key = |k: &str| format!("{field}.{k}");
    let toml::Value::Table(mut t) = item else {
        return Err(DefinitionError::new(field, "must be a table"));
    };
    let text = |t: &mut toml::Table, k: &str| -> Result<Option<String>, DefinitionError> {
        match t.remove(k) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(DefinitionError::new(key(k), format!("{v} is not a string"))),
        }
    };
    let proto = match text(&mut t, "proto")?.as_deref() {
        Some("tcp") => Protocol::Tcp,
        Some("udp") => Protocol::Udp,
        Some(other) => {
            return Err(DefinitionError::new(
                key("proto"),
                format!("{other:?}: tcp or udp"),
            ))
        }
        None => return Err(DefinitionError::new(key("proto"), "missing: tcp or udp")),
    };
    let (first, last) = match t.remove("port") {
        Some(v) => ports(&key("port"), &v)?,
        None => return Err(DefinitionError::new(key("port"), "missing")),
    };
    let to: ForwardTarget = match text(&mut t, "to")? {
        Some(s) => s.parse().map_err(|e| DefinitionError::new(key("to"), e))?,
        None => return Err(DefinitionError::new(key("to"), "missing")),
    };
    if let (ForwardTarget::Ip(ip), Some(net)) = (&to, subnet) {
        if !net.contains(ip) || *ip == net.network() || *ip == net.broadcast() {
            return Err(DefinitionError::new(
                key("to"),
                format!("{ip} is not a guest address of {}", net.trunc()),
            ));
        }
    }
    let to_port = match t.remove("to_port") {
        None => first,
        Some(v) => {
            let (a, b) = ports(&key("to_port"), &v)?;
            if b - a != last - first && a != b {
                return Err(DefinitionError::new(
                    key("to_port"),
                    format!(
                        "{a}-{b} has {} ports, port has {}",
                        b - a + 1,
                        last - first + 1
                    ),
                ));
            }
            a
        }
    };
    let span = last - first;
    if u32::from(to_port) + u32::from(span) > 65535 {
        return Err(DefinitionError::new(
            key("to_port"),
            "the range would end past port 65535",
        ));
    }
    if to_port != first && span >= MAX_SHIFTED_FORWARD_PORTS {
        return Err(DefinitionError::new(
            key("to_port"),
            format!(
                "a range onto ports that start elsewhere may span at most {MAX_SHIFTED_FORWARD_PORTS} ports"
            ),
        ));
    }
    let address = text(&mut t, "address")?
        .map(|s| {
            s.parse::<Ipv4Addr>().map_err(|_| {
                DefinitionError::new(key("address"), format!("{s:?} is not an IPv4 address"))
            })
        })
        .transpose()?;
    if let Some(k) = t.keys().next() {
        return Err(DefinitionError::new(
            key(k),
            "unknown key; a forward takes proto, port, to, to_port and address",
        ));
    }
    Ok(ForwardConfig {
        port: HostPort {
            protocol: proto,
            first,
            last,
        },
        to,
        to_port,
        address,
    })
}

/// A port (`8080`) or a range (`"8000-8010"`).
fn ports(field: &str, v: &toml::Value) -> Result<(u16, u16), DefinitionError> {
    let bad = || {
        DefinitionError::new(
            field,
            format!("{v} is not a port (1-65535) or a range \"8000-8010\""),
        )
    };
    match v {
        toml::Value::Integer(n) => {
            let p = u16::try_from(*n).ok().filter(|p| *p > 0).ok_or_else(bad)?;
            Ok((p, p))
        }
        toml::Value::String(s) => {
            let p: HostPort = format!("tcp/{s}").parse().map_err(|_| bad())?;
            Ok((p.first, p.last))
        }
        _ => Err(bad()),
    }
}

/// The firewall rules of `forwards` on the network with subnet `subnet`:
/// a target named by MAC or name is looked up in `hosts` (static) and then
/// in `facts.leases`; one found nowhere has no rule while it has no
/// address (its port refuses) and a warning saying so.
pub fn rules(
    forwards: &[ForwardConfig],
    hosts: &[StaticHost],
    facts: &HostFacts,
    subnet: Ipv4Net,
) -> (Vec<FirewallRule>, Vec<String>) {
    let (mut rules, mut warnings) = (Vec::new(), Vec::new());
    for f in forwards {
        let ip = match &f.to {
            ForwardTarget::Ip(ip) => Some(*ip),
            ForwardTarget::Mac(mac) => hosts
                .iter()
                .find(|h| h.mac == *mac)
                .map(|h| h.ip)
                .or_else(|| facts.leases.iter().find(|l| l.mac == *mac).map(|l| l.ip)),
            ForwardTarget::Name(name) => hosts
                .iter()
                .find(|h| {
                    h.name
                        .as_deref()
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                })
                .map(|h| h.ip)
                .or_else(|| {
                    facts
                        .leases
                        .iter()
                        .find(|l| {
                            l.name
                                .as_deref()
                                .is_some_and(|n| n.eq_ignore_ascii_case(name))
                        })
                        .map(|l| l.ip)
                }),
        };
        match ip.filter(|ip| subnet.contains(ip)) {
            Some(to) => rules.push(FirewallRule::Forward {
                port: f.port,
                address: f.address,
                to,
                to_port: f.to_port,
            }),
            None => warnings.push(format!(
                "forward {} to {}: no such guest has an address now; the port is closed until one has",
                f.port, f.to
            )),
        }
    }
    (rules, warnings)
}

#[cfg(test)]
mod tests {
    use crate::Definition;

    fn def(forwards: &str) -> Result<Definition, crate::DefinitionError> {
        Definition::parse(&format!(
            "name = \"n\"\n[ipv4]\naddress = \"10.0.0.1/24\"\n{forwards}"
        ))
    }

    #[test]
    fn forwards_read_and_write_back() {
        let d = def(
            "[[forwards]]\nproto = \"tcp\"\nport = 8080\nto = \"Web1\"\nto_port = 80\n\
             [[forwards]]\nproto = \"udp\"\nport = \"5000-5009\"\nto = \"52:54:00:00:00:01\"\naddress = \"192.0.2.1\"\n",
        )
        .unwrap();
        assert_eq!(d.forwards.len(), 2);
        assert_eq!(d.forwards[0].to.to_string(), "web1");
        assert_eq!(d.forwards[1].to_last(), 5009);
        let again = Definition::parse(&d.to_toml()).unwrap();
        assert_eq!(again.forwards, d.forwards);
    }

    #[test]
    fn bad_forwards_are_refused_by_key() {
        for (text, field) in [
            (
                "proto = \"icmp\"\nport = 1\nto = \"a\"",
                "forwards[0].proto",
            ),
            ("proto = \"tcp\"\nport = 0\nto = \"a\"", "forwards[0].port"),
            (
                "proto = \"tcp\"\nport = 80\nto = \"10.9.0.5\"",
                "forwards[0].to",
            ),
            (
                "proto = \"tcp\"\nport = 80\nto = \"no such\"",
                "forwards[0].to",
            ),
            (
                "proto = \"tcp\"\nport = \"80-82\"\nto = \"a\"\nto_port = \"90-91\"",
                "forwards[0].to_port",
            ),
            (
                "proto = \"tcp\"\nport = 80\nto = \"a\"\nfrom = \"x\"",
                "forwards[0].from",
            ),
        ] {
            let e = def(&format!("[[forwards]]\n{text}\n")).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
        }
        let twice = "[[forwards]]\nproto = \"tcp\"\nport = \"80-90\"\nto = \"a\"\n\
                     [[forwards]]\nproto = \"tcp\"\nport = 85\nto = \"b\"\n";
        assert_eq!(def(twice).unwrap_err().field, "forwards[1].port");
    }
}
