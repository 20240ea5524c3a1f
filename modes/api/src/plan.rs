//! What a mode hands back: the desired state of one network, as data. The
//! service applies it, tears it down and re-adopts it; a mode never touches
//! the kernel itself.

use crate::definition::StaticHost;
use crate::names::{DnsName, IfName};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};

/// The desired state of one active network.
///
/// What guestnetd does with a plan, when a network starts:
/// 1. It checks the whole plan against the host and the other active
///    networks, and refuses it with `org.guestnet1.Error.Conflict`, naming
///    both sides, when it would take what is someone else's (see each
///    field). Nothing has been changed then.
/// 2. It records the plan in its runtime directory, so that a guestnetd
///    started later (after a crash, say) takes the network back or cleans
///    up after it.
/// 3. It applies [`bridge`](Plan::bridge), [`addresses`](Plan::addresses)
///    and [`routes`](Plan::routes) over rtnetlink, then the firewall and
///    sysctls of all active networks, then starts DHCP and DNS. When any
///    step fails, every step taken is undone and the start is refused.
///
/// When the network stops, it undoes the plan part by part, carrying on
/// past a failed step: DHCP and DNS stop, guests' ports go, the bridge part
/// is taken down, the firewall and sysctls are reconciled without the
/// network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The bridge guests plug into; see [`BridgePlan`] for what is created,
    /// taken over or left alone. A bridge name that exists on the host and is
    /// not guestnet's (marked with the alias `guestnet:NETWORK`) is refused
    /// for [`BridgePlan::Create`] and [`BridgePlan::EnslaveUplink`]; a bridge
    /// the same network left behind is replaced.
    pub bridge: BridgePlan,
    /// Addresses the host holds on the bridge, with their prefix
    /// (`192.168.122.1/24`); the kernel adds the subnet route for each.
    ///
    /// Checked before anything is applied: an address whose subnet overlaps
    /// an address of a host interface, a route of the host (but for its
    /// default route), or a subnet or route of another active network is
    /// refused as a conflict. Added to the bridge; removed on stop (with the
    /// bridge when guestnet deletes it, one by one from an existing bridge;
    /// an uplink taken over gets back its own addresses, not these).
    pub addresses: Vec<Ipv4Net>,
    /// Further routes through the bridge, in the main table.
    ///
    /// Checked before anything is applied, against the host and the other
    /// active networks; refused as a conflict, naming the route and what it
    /// clashes with, when its destination overlaps:
    /// - the subnet of an address on a host interface (a route into the
    ///   host's LAN would cut the host off it and off its gateway);
    /// - a route the host has; a default route (`0.0.0.0/0`) is held only
    ///   against the host's default route, at whatever metric that has (more
    ///   specific routes win over a default, and take nothing from it);
    /// - an address's subnet or a route of another active network.
    ///
    /// The network's own addresses do not count: a route inside the plan's
    /// own subnet is the network's business, and the leftovers of the same
    /// network (its bridge after a crash) are replaced.
    ///
    /// Installed on the bridge (`dev BRIDGE`, `via gateway` when given, else
    /// scope link) with `proto static` and no metric of its own, that is
    /// metric 0. A route the kernel still refuses (the same destination at
    /// metric 0 already there, a gateway the bridge cannot reach) fails the
    /// start with a Conflict naming the route. Removed on stop: with the
    /// bridge when guestnet deletes it, one by one from a bridge that stays
    /// ([`BridgePlan::Existing`]); an uplink taken over by
    /// [`BridgePlan::EnslaveUplink`] gets back its own routes, not these.
    pub routes: Vec<RoutePlan>,
    /// Network-namespace sysctls the network needs, such as IPv4 forwarding.
    ///
    /// Not checked against other networks: written when the network starts
    /// (the value from before guestnet is kept in the runtime directory),
    /// and put back when no active network asks for the key any more. When
    /// two active networks ask for different values of one key, the network
    /// whose name sorts last wins.
    pub sysctls: Vec<Sysctl>,
    /// What crosses the host's firewall to and from the network.
    ///
    /// Rendered with the policies of every other active network into
    /// guestnet's own nftables table `inet guestnet`, replaced as one atomic
    /// batch at each start and stop (no other table is touched, beyond
    /// rules in Docker's `DOCKER-USER` chain when Docker is there). Where
    /// firewalld runs, the bridge of a policy other than
    /// [`FirewallPolicy::None`] is also bound, at runtime only, to a
    /// firewalld zone (`trusted`, or `guestnet-routed` for
    /// [`FirewallPolicy::Routed`]) so that firewalld's rejects do not
    /// override guestnet's accepts. On stop the table is rendered without
    /// the network and the binding goes.
    pub firewall: FirewallPolicy,
    /// Further host ports the network's guests may open, on the host's
    /// own addresses on the bridge ([`addresses`](Plan::addresses)).
    ///
    /// A network whose [`firewall`](Plan::firewall) is not
    /// [`FirewallPolicy::None`] has a host-input policy in `inet guestnet`:
    /// what arrives at the host from its bridge is accepted when it is a
    /// reply (`established,related`), DHCP (udp 67, when the plan has
    /// [`dhcp`](Plan::dhcp)), DNS (udp and tcp 53 to
    /// [`DnsPlan::listen`], when the plan has [`dns`](Plan::dns)), an ICMP
    /// echo request, or one of these ports; everything else is refused
    /// (tcp reset, else ICMP admin-prohibited). The rules name the
    /// network's own bridge only, so no network's verdict depends on
    /// another's. Ignored with [`FirewallPolicy::None`], whose host is a
    /// plain switch. At most [`MAX_HOST_ALLOW`] entries (more is refused).
    ///
    /// Missing from the JSON of modes built before it existed: empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_allow: Vec<HostPort>,
    /// The DHCPv4 server to run on the bridge, if any: guestnetd answers
    /// DHCP itself, keeps its leases in a durable journal in its state
    /// directory (a restart loses none) and announces them as D-Bus
    /// signals. It stops with the network; the journal of a transient
    /// network goes when the network does.
    pub dhcp: Option<DhcpPlan>,
    /// The DNS server to run on the bridge address, if any: guestnetd
    /// answers for the network's domain (the plan's records and the
    /// hostnames of DHCP leases) and forwards other names upstream. It stops
    /// with the network.
    pub dns: Option<DnsPlan>,
}

/// How the network's bridge comes to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BridgePlan {
    /// A new bridge the service creates and later deletes.
    Create { name: IfName, mtu: Option<u32> },
    /// A new bridge that enslaves a host NIC and takes over its IPv4
    /// addresses and routes; stopping gives them back to the NIC.
    EnslaveUplink {
        name: IfName,
        uplink: IfName,
        mtu: Option<u32>,
    },
    /// A bridge that already exists and is not ours: used, never changed.
    Existing { name: IfName },
}

impl BridgePlan {
    pub fn name(&self) -> &IfName {
        match self {
            BridgePlan::Create { name, .. }
            | BridgePlan::EnslaveUplink { name, .. }
            | BridgePlan::Existing { name } => name,
        }
    }
}

/// One route through the network's bridge; see [`Plan::routes`] for how it
/// is checked, installed and removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutePlan {
    /// Where the route leads (host bits are ignored: `10.9.0.7/24` is
    /// `10.9.0.0/24`).
    pub destination: Ipv4Net,
    /// The next hop, which must be on a subnet of the bridge; `None` for a
    /// destination reached directly on the bridge (scope link).
    pub gateway: Option<Ipv4Addr>,
}

/// A sysctl under `/proc/sys/net/`, set while the network is active and
/// restored when no active network needs it any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sysctl {
    pub key: SysctlKey,
    pub value: String,
}

/// The sysctls a mode may ask for; a closed list, so a plugin can never name
/// an arbitrary path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SysctlKey {
    Ipv4Forward,
}

impl SysctlKey {
    pub fn path(self) -> &'static str {
        match self {
            SysctlKey::Ipv4Forward => "/proc/sys/net/ipv4/ip_forward",
        }
    }
}

/// What crosses the host's firewall to and from the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FirewallPolicy {
    /// No rules: the host is a plain switch for this bridge.
    None,
    /// Guests talk to each other and to the host (within
    /// [`Plan::host_allow`]); nothing is forwarded.
    Isolated { subnet: Ipv4Net },
    /// Forwarded both ways without translation.
    Routed { subnet: Ipv4Net },
    /// Guests reach out, masqueraded behind the host (through `uplink` only
    /// when given); nothing from outside opens a connection to a guest.
    Nat {
        subnet: Ipv4Net,
        uplink: Option<IfName>,
    },
}

/// The DHCPv4 service the network wants on its bridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DhcpPlan {
    pub server: Ipv4Addr,
    pub subnet: Ipv4Net,
    pub range_start: Ipv4Addr,
    pub range_end: Ipv4Addr,
    pub lease_time_secs: u32,
    /// The default gateway offered; `None` on isolated networks.
    pub router: Option<Ipv4Addr>,
    pub dns_server: Option<Ipv4Addr>,
    pub domain: Option<DnsName>,
    pub mtu: Option<u32>,
    pub hosts: Vec<StaticHost>,
    /// How many addresses the clients behind one bridge port may hold at
    /// once; absent from the plans of older modes, which get the default.
    #[serde(default = "crate::definition::leases_per_port_default")]
    pub max_leases_per_port: u32,
}

/// The DNS service the network wants on its bridge address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsPlan {
    pub listen: Ipv4Addr,
    pub domain: Option<DnsName>,
    /// Upstream servers; empty means the host's resolv.conf.
    pub forwarders: Vec<IpAddr>,
    pub records: Vec<DnsRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    pub name: String,
    pub ip: Ipv4Addr,
}

/// Most entries a network's host allow-list ([`Plan::host_allow`], `[host]
/// allow` in a definition) may have.
pub const MAX_HOST_ALLOW: usize = 64;

/// A transport protocol a host port is opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A host port, or a range of them, guests may open: `tcp/22`, `udp/69`,
/// `tcp/8000-8080` (both ends included). Written and sent as that string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPort {
    pub protocol: Protocol,
    /// The first port, 1 or more.
    pub first: u16,
    /// The last port, `first` or more.
    pub last: u16,
}

impl HostPort {
    /// The ports as nft and firewalld write them: `22` or `8000-8080`.
    pub fn ports(&self) -> String {
        if self.first == self.last {
            self.first.to_string()
        } else {
            format!("{}-{}", self.first, self.last)
        }
    }
}

impl std::str::FromStr for HostPort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?} is not a port like \"tcp/22\", \"udp/69\" or \"tcp/8000-8080\"");
        let (proto, ports) = s.split_once('/').ok_or_else(bad)?;
        let protocol = match proto {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return Err(format!("{s:?}: the protocol must be tcp or udp")),
        };
        let port = |p: &str| -> Result<u16, String> {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            match p.parse::<u32>() {
                Ok(n @ 1..=65535) => Ok(n as u16),
                _ => Err(format!("{s:?}: a port is from 1 to 65535")),
            }
        };
        let (first, last) = match ports.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(ports)?, port(ports)?),
        };
        if first > last {
            return Err(format!("{s:?}: the range ends before it starts"));
        }
        Ok(HostPort {
            protocol,
            first,
            last,
        })
    }
}

impl TryFrom<String> for HostPort {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<HostPort> for String {
    fn from(p: HostPort) -> String {
        p.to_string()
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.protocol.as_str(), self.ports())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports_read_and_write_as_written() {
        for s in ["tcp/22", "udp/69", "tcp/8000-8080", "udp/1-65535"] {
            let p: HostPort = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
        }
        for s in [
            "22",
            "tcp/",
            "tcp/0",
            "tcp/65536",
            "icmp/1",
            "tcp/9-8",
            "tcp/+22",
            "tcp/2 2",
            "TCP/22",
            "tcp/1-",
            "tcp/99999999999",
        ] {
            assert!(s.parse::<HostPort>().is_err(), "{s}");
        }
    }

    #[test]
    fn plans_of_older_modes_parse_with_no_host_ports() {
        let json = r#"{"bridge":{"kind":"create","name":"br0","mtu":null},"addresses":["10.0.0.1/24"],
            "routes":[],"sysctls":[],"firewall":{"kind":"isolated","subnet":"10.0.0.0/24"},
            "dhcp":null,"dns":null}"#;
        let plan: Plan = serde_json::from_str(json).unwrap();
        assert!(plan.host_allow.is_empty());
        assert!(!serde_json::to_string(&plan).unwrap().contains("host_allow"));
        let mut plan = plan;
        plan.host_allow = vec!["tcp/22".parse().unwrap()];
        let again: Plan = serde_json::from_str(&serde_json::to_string(&plan).unwrap()).unwrap();
        assert_eq!(again, plan);
        let bad = json.replace("\"dhcp\":null", "\"host_allow\":[\"tcp/0\"],\"dhcp\":null");
        assert!(serde_json::from_str::<Plan>(&bad).is_err());
    }
}
