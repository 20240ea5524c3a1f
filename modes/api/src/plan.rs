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
    /// Guests talk to each other and to the host; nothing is forwarded.
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
