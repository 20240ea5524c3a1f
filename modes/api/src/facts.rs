//! What the service tells a mode about the host when it asks for a plan.

use crate::names::IfName;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostFacts {
    pub links: Vec<LinkFact>,
    pub routes: Vec<RouteFact>,
    /// The interface of the IPv4 default route, if there is one.
    pub default_route_interface: Option<IfName>,
    /// A bridge name that is free on the host, for a definition without one.
    pub free_bridge_name: Option<IfName>,
    /// A private /24 (as the host address `x.y.z.1/24`) that overlaps no
    /// address or route on the host, for a definition without an address.
    pub free_subnet: Option<Ipv4Net>,
    /// The network's current DHCP leases (none while it is stopped), so
    /// that a plan can name a guest by MAC or host name (port forwards).
    /// Since API 1.1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<LeaseFact>,
}

/// A guest's current DHCP lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseFact {
    pub mac: crate::MacAddr,
    pub ip: Ipv4Addr,
    /// The host name the guest gave, as a DNS label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl HostFacts {
    pub fn link(&self, name: &str) -> Option<&LinkFact> {
        self.links.iter().find(|l| l.name.as_str() == name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkFact {
    pub name: IfName,
    /// The rtnetlink kind (`bridge`, `veth`, `tun`, ...); `None` for a plain NIC.
    pub kind: Option<String>,
    /// The bridge this link is a port of.
    pub master: Option<IfName>,
    pub addresses: Vec<Ipv4Net>,
    pub mtu: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteFact {
    pub destination: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub interface: Option<IfName>,
}
