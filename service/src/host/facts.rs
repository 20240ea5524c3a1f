//! What guestnetd learns about the host before it starts a network: the
//! facts it hands the mode, a free bridge name and a free subnet, and the
//! conflicts that refuse a plan.

use crate::host::kernel::Snapshot;
use guestnet_mode_api::{BridgePlan, HostFacts, IfName, LinkFact, Plan, RouteFact};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// The alias guestnetd gives the bridges it creates, so that a bridge is
/// known as ours (and whose) after a restart.
pub fn bridge_alias(network: &str) -> String {
    format!("guestnet:{network}")
}

/// The facts a mode plans with.
pub fn facts(snapshot: &Snapshot) -> HostFacts {
    let name_of = |index: u32| {
        snapshot
            .link_by_index(index)
            .and_then(|l| IfName::new(&l.name).ok())
    };
    let links = snapshot
        .links
        .iter()
        .filter_map(|l| {
            Some(LinkFact {
                name: IfName::new(&l.name).ok()?,
                kind: l.kind.clone(),
                master: l.master.and_then(name_of),
                addresses: l.addresses.clone(),
                mtu: l.mtu,
            })
        })
        .collect();
    let routes = snapshot
        .routes
        .iter()
        .map(|r| RouteFact {
            destination: r.destination,
            gateway: r.gateway,
            interface: r.oif.and_then(name_of),
        })
        .collect();
    let default_route_interface = snapshot
        .routes
        .iter()
        .filter(|r| r.destination.prefix_len() == 0)
        .min_by_key(|r| r.metric.unwrap_or(0))
        .and_then(|r| r.oif.and_then(name_of));
    HostFacts {
        links,
        routes,
        default_route_interface,
        free_bridge_name: free_bridge_name(snapshot),
        free_subnet: free_subnet(snapshot),
    }
}

/// The facts for re-planning a network that runs on `current`: its own
/// bridge name and subnet count as free, so a definition that names
/// neither keeps them (an Update never moves a network by accident).
pub fn facts_for_update(snapshot: &Snapshot, current: &Plan) -> HostFacts {
    let mut facts = facts(snapshot);
    if let BridgePlan::Create { name, .. } = &current.bridge {
        facts.free_bridge_name = Some(name.clone());
    }
    if let Some(address) = current.addresses.first() {
        facts.free_subnet = Some(*address);
    }
    facts
}

fn free_bridge_name(snapshot: &Snapshot) -> Option<IfName> {
    (0..1000)
        .map(|i| format!("gnbr{i}"))
        .find(|n| snapshot.link(n).is_none())
        .and_then(|n| IfName::new(&n).ok())
}

/// Candidate /24s in the order they are tried: libvirt's 192.168.122.0/24
/// and up, then 192.168.100-121, then 10.100-254.0.
fn candidate_subnets() -> impl Iterator<Item = Ipv4Net> {
    let c = (122..=254u8)
        .chain(100..122)
        .map(|x| Ipv4Addr::new(192, 168, x, 1));
    let ten = (100..=254u8).map(|x| Ipv4Addr::new(10, x, 0, 1));
    c.chain(ten)
        .map(|a| Ipv4Net::new(a, 24).expect("24 is a valid prefix"))
}

/// The first candidate /24 that overlaps no address and no route (other than
/// a default route) on the host.
pub fn free_subnet(snapshot: &Snapshot) -> Option<Ipv4Net> {
    candidate_subnets().find(|c| clash(snapshot, *c, None).is_none())
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// What `net` would clash with on the host, ignoring the link `ours` (a
/// leftover bridge of the same network, about to be replaced).
fn clash(snapshot: &Snapshot, net: Ipv4Net, ours: Option<u32>) -> Option<String> {
    for link in &snapshot.links {
        if Some(link.index) == ours {
            continue;
        }
        if let Some(a) = link.addresses.iter().find(|a| overlaps(**a, net)) {
            return Some(format!(
                "{} overlaps {a} on interface {}",
                net.trunc(),
                link.name
            ));
        }
    }
    for route in &snapshot.routes {
        if route.destination.prefix_len() == 0 || route.oif.is_some() && route.oif == ours {
            continue;
        }
        if overlaps(route.destination, net) {
            let dev = route
                .oif
                .and_then(|i| snapshot.link_by_index(i))
                .map(|l| format!(" via {}", l.name))
                .unwrap_or_default();
            return Some(format!(
                "{} overlaps the route to {}{dev}",
                net.trunc(),
                route.destination
            ));
        }
    }
    None
}

/// Refuses a plan that would take what belongs to someone else: a bridge
/// name in use, or an address overlapping the host's addresses and routes.
pub fn conflicts(plan: &Plan, snapshot: &Snapshot, network: &str) -> Result<(), String> {
    let ours = match &plan.bridge {
        BridgePlan::Create { name, .. } | BridgePlan::EnslaveUplink { name, .. } => {
            match snapshot.link(name.as_str()) {
                None => None,
                Some(l) if l.alias.as_deref() == Some(&bridge_alias(network)) => Some(l.index),
                Some(l) => {
                    return Err(format!(
                        "interface {} already exists and is not guestnet's (kind {})",
                        l.name,
                        l.kind.as_deref().unwrap_or("device")
                    ))
                }
            }
        }
        BridgePlan::Existing { .. } => None,
    };
    for addr in &plan.addresses {
        if let Some(why) = clash(snapshot, *addr, ours) {
            return Err(why);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::kernel::{Link, Route};

    fn link(index: u32, name: &str, addrs: &[&str]) -> Link {
        Link {
            index,
            name: name.into(),
            kind: None,
            master: None,
            alias: None,
            mac: None,
            mtu: 1500,
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    fn route(dest: &str, oif: u32) -> Route {
        Route {
            destination: dest.parse().unwrap(),
            gateway: None,
            oif: Some(oif),
            metric: None,
            protocol: 4,
            scope: 0,
            pref_source: None,
        }
    }

    #[test]
    fn free_subnet_skips_used_addresses_and_routes() {
        let snap = Snapshot {
            links: vec![link(2, "eth0", &["192.168.122.7/24"]), link(3, "eth1", &[])],
            routes: vec![route("192.168.123.0/24", 3), route("0.0.0.0/0", 2)],
        };
        assert_eq!(
            free_subnet(&snap),
            Some("192.168.124.1/24".parse().unwrap())
        );
    }

    #[test]
    fn a_wide_host_subnet_pushes_the_choice_to_ten() {
        let snap = Snapshot {
            links: vec![link(2, "eth0", &["192.168.0.1/16"])],
            routes: vec![],
        };
        assert_eq!(free_subnet(&snap), Some("10.100.0.1/24".parse().unwrap()));
    }

    #[test]
    fn conflicts_name_the_clash() {
        let snap = Snapshot {
            links: vec![link(2, "eth0", &["10.0.0.5/16"]), link(3, "gnbr0", &[])],
            routes: vec![],
        };
        let plan = |bridge: &str, addr: &str| Plan {
            bridge: BridgePlan::Create {
                name: IfName::new(bridge).unwrap(),
                mtu: None,
            },
            addresses: vec![addr.parse().unwrap()],
            routes: vec![],
            sysctls: vec![],
            firewall: guestnet_mode_api::FirewallPolicy::None,
            dhcp: None,
            dns: None,
        };
        let e = conflicts(&plan("gnbr1", "10.0.3.1/24"), &snap, "n").unwrap_err();
        assert!(e.contains("10.0.0.5/16 on interface eth0"), "{e}");
        let e = conflicts(&plan("gnbr0", "10.9.3.1/24"), &snap, "n").unwrap_err();
        assert!(e.contains("gnbr0 already exists"), "{e}");
        assert!(conflicts(&plan("gnbr1", "10.9.3.1/24"), &snap, "n").is_ok());
    }
}
