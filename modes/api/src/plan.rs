//! What a mode hands back: the desired state of one network, as data. The
//! service applies it, tears it down and re-adopts it; a mode never touches
//! the kernel itself.

use crate::definition::StaticHost;
use crate::names::{DnsName, IfName};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};

/// The desired state of one active network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub bridge: BridgePlan,
    /// Addresses the host holds on the bridge, with their prefix
    /// (`192.168.122.1/24`); the kernel adds the subnet route for each.
    pub addresses: Vec<Ipv4Net>,
    /// Further routes through the bridge.
    pub routes: Vec<RoutePlan>,
    /// Network-namespace sysctls the network needs, such as IPv4 forwarding.
    pub sysctls: Vec<Sysctl>,
    pub firewall: FirewallPolicy,
    pub dhcp: Option<DhcpPlan>,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutePlan {
    pub destination: Ipv4Net,
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
