//! What guestnetd learns about the host before it starts a network: the
//! facts it hands the mode, a free bridge name and a free subnet, and the
//! conflicts that refuse a plan.

use crate::host::kernel::{Link, Snapshot};
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
        leases: vec![],
    }
}

/// The facts for re-planning a network that runs on `current`: its own
/// bridge name and subnet count as free, so a definition that names
/// neither keeps them (an Update never moves a network by accident).
pub fn facts_for_update(snapshot: &Snapshot, current: &Plan) -> HostFacts {
    let mut facts = facts(snapshot);
    if let BridgePlan::Create { name, .. } | BridgePlan::EnslaveUplink { name, .. } =
        &current.bridge
    {
        facts.free_bridge_name = Some(name.clone());
    }
    if let Some(address) = current.addresses.first() {
        facts.free_subnet = Some(*address);
    }
    facts
}

/// The host as it would be without what a network's plan `current` put
/// there, `bridge` being that network's bridge as the host has it: a bridge
/// of its own goes (with its routes, and a NIC it enslaved is free again);
/// on an existing bridge only the plan's addresses and routes go. What an
/// Update plans is checked against this, so a network never clashes with
/// itself.
pub fn without_own(snapshot: &Snapshot, current: &Plan, bridge: Option<&Link>) -> Snapshot {
    let mut host = snapshot.clone();
    let Some(bridge) = bridge else {
        return host;
    };
    let own = bridge.index;
    match &current.bridge {
        BridgePlan::Existing { .. } => {
            if let Some(l) = host.links.iter_mut().find(|l| l.index == own) {
                l.addresses.retain(|a| !current.addresses.contains(a));
            }
            host.routes.retain(|r| {
                r.oif != Some(own)
                    || !current
                        .routes
                        .iter()
                        .any(|p| p.destination.trunc() == r.destination)
                        && !current.addresses.iter().any(|a| a.trunc() == r.destination)
            });
        }
        BridgePlan::Create { .. } | BridgePlan::EnslaveUplink { .. } => {
            host.links.retain(|l| l.index != own);
            for l in host.links.iter_mut().filter(|l| l.master == Some(own)) {
                l.master = None;
            }
            host.routes.retain(|r| r.oif != Some(own));
        }
    }
    host
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
/// name in use; an address overlapping the host's addresses and routes or
/// another active network's; a route overlapping a subnet or route the host
/// has (its default route included) or one that an active network in
/// `others` (name and plan, the network itself left out) holds.
///
/// A network's own leftovers do not count: the bridge `network` left behind
/// (marked with its alias) with its addresses, the subnet routes the kernel
/// added for them and the plan's routes. A planned route is not held against
/// the plan's own addresses either: the subnet routes the kernel will add for
/// them are the network's own (a route that duplicates one is refused by the
/// kernel when applied, see `links::apply`).
pub fn conflicts(
    plan: &Plan,
    snapshot: &Snapshot,
    network: &str,
    others: &[(&str, &Plan)],
) -> Result<(), String> {
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
        if let Some(why) = held_by_others(*addr, others) {
            return Err(format!("{} overlaps {why}", addr.trunc()));
        }
        if let Some(why) = clash(snapshot, *addr, ours) {
            return Err(why);
        }
    }
    for route in &plan.routes {
        let dest = route.destination.trunc();
        let why = held_by_others(dest, others).or_else(|| route_clash(snapshot, dest, ours));
        if let Some(why) = why {
            return Err(format!(
                "route {dest} planned by network {network:?} overlaps {why}"
            ));
        }
    }
    Ok(())
}

/// Two destinations clash when they overlap, except that a default route
/// clashes only with another default route: every more specific route
/// overlaps it, and wins over it, by design.
fn routes_clash(a: Ipv4Net, b: Ipv4Net) -> bool {
    match (a.prefix_len(), b.prefix_len()) {
        (0, 0) => true,
        (0, _) | (_, 0) => false,
        _ => overlaps(a, b),
    }
}

/// Which active network in `others` holds a subnet or route that `net`
/// would clash with, and what it holds.
fn held_by_others(net: Ipv4Net, others: &[(&str, &Plan)]) -> Option<String> {
    for (name, other) in others {
        if let Some(a) = other
            .addresses
            .iter()
            .find(|a| routes_clash(a.trunc(), net))
        {
            return Some(format!("{} of active network {name:?}", a.trunc()));
        }
        if let Some(r) = other
            .routes
            .iter()
            .find(|r| routes_clash(r.destination, net))
        {
            return Some(format!(
                "the route to {} of active network {name:?}",
                r.destination.trunc()
            ));
        }
    }
    None
}

/// What on the host a planned route to `dest` would clash with: an address
/// of an interface (the subnet behind it), a route, or for a default route
/// the host's default route.
fn route_clash(snapshot: &Snapshot, dest: Ipv4Net, ours: Option<u32>) -> Option<String> {
    let dev = |oif: Option<u32>| {
        oif.and_then(|i| snapshot.link_by_index(i))
            .map(|l| format!(" via {}", l.name))
            .unwrap_or_default()
    };
    if dest.prefix_len() == 0 {
        let default = snapshot
            .routes
            .iter()
            .filter(|r| r.destination.prefix_len() == 0 && (r.oif.is_none() || r.oif != ours))
            .min_by_key(|r| r.metric.unwrap_or(0))?;
        let metric = default
            .metric
            .map(|m| format!(" (metric {m})"))
            .unwrap_or_default();
        return Some(format!(
            "the host's default route{}{metric}",
            dev(default.oif)
        ));
    }
    for link in &snapshot.links {
        if Some(link.index) == ours {
            continue;
        }
        if let Some(a) = link.addresses.iter().find(|a| overlaps(**a, dest)) {
            return Some(format!("{a} on interface {}", link.name));
        }
    }
    for route in &snapshot.routes {
        if route.oif.is_some() && route.oif == ours {
            continue;
        }
        if routes_clash(route.destination, dest) {
            return Some(format!(
                "the host's route to {}{}",
                route.destination,
                dev(route.oif)
            ));
        }
    }
    None
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
            host_allow: vec![],
            dhcp: None,
            dns: None,
            warnings: vec![],
        };
        let e = conflicts(&plan("gnbr1", "10.0.3.1/24"), &snap, "n", &[]).unwrap_err();
        assert!(e.contains("10.0.0.5/16 on interface eth0"), "{e}");
        let e = conflicts(&plan("gnbr0", "10.9.3.1/24"), &snap, "n", &[]).unwrap_err();
        assert!(e.contains("gnbr0 already exists"), "{e}");
        assert!(conflicts(&plan("gnbr1", "10.9.3.1/24"), &snap, "n", &[]).is_ok());
    }

    /// A plan on bridge gnbr1 with the host at 10.60.0.1/24 and `routes`.
    fn routed_plan(routes: &[(&str, Option<&str>)]) -> Plan {
        Plan {
            bridge: BridgePlan::Create {
                name: IfName::new("gnbr1").unwrap(),
                mtu: None,
            },
            addresses: vec!["10.60.0.1/24".parse().unwrap()],
            routes: routes
                .iter()
                .map(|(d, gw)| guestnet_mode_api::RoutePlan {
                    destination: d.parse().unwrap(),
                    gateway: gw.map(|g| g.parse().unwrap()),
                    metric: None,
                })
                .collect(),
            sysctls: vec![],
            firewall: guestnet_mode_api::FirewallPolicy::None,
            host_allow: vec![],
            dhcp: None,
            dns: None,
            warnings: vec![],
        }
    }

    /// A host with a LAN on eth0 (10.0.0.5/16, its subnet route) and a
    /// default route via eth0 at `default_metric`.
    fn lan_host(default_metric: Option<u32>) -> Snapshot {
        let mut kernel_route = route("10.0.0.0/16", 2);
        kernel_route.protocol = 2;
        kernel_route.scope = 253;
        let mut default = route("0.0.0.0/0", 2);
        default.gateway = Some("10.0.0.1".parse().unwrap());
        default.metric = default_metric;
        Snapshot {
            links: vec![link(2, "eth0", &["10.0.0.5/16"])],
            routes: vec![kernel_route, default],
        }
    }

    #[test]
    fn a_route_into_the_hosts_lan_is_refused_naming_both() {
        let snap = lan_host(None);
        for inside in ["10.0.0.0/24", "10.0.7.0/25", "10.0.0.5/32", "10.0.0.0/16"] {
            let e = conflicts(&routed_plan(&[(inside, None)]), &snap, "x", &[]).unwrap_err();
            assert_eq!(
                e,
                format!("route {inside} planned by network \"x\" overlaps 10.0.0.5/16 on interface eth0")
            );
        }
        // A wider route than the LAN takes part of it too.
        let e = conflicts(&routed_plan(&[("10.0.0.0/8", None)]), &snap, "x", &[]).unwrap_err();
        assert!(e.contains("10.0.0.5/16 on interface eth0"), "{e}");
    }

    #[test]
    fn a_route_over_a_host_route_is_refused() {
        let mut snap = lan_host(None);
        let mut r = route("172.16.0.0/12", 2);
        r.gateway = Some("10.0.0.1".parse().unwrap());
        snap.routes.push(r);
        let e = conflicts(
            &routed_plan(&[("172.16.9.0/24", Some("10.60.0.9"))]),
            &snap,
            "x",
            &[],
        )
        .unwrap_err();
        assert_eq!(
            e,
            "route 172.16.9.0/24 planned by network \"x\" overlaps the host's route to 172.16.0.0/12 via eth0"
        );
    }

    #[test]
    fn a_default_route_is_refused_over_the_hosts_default() {
        let plan = routed_plan(&[("0.0.0.0/0", Some("10.60.0.254"))]);
        let e = conflicts(&plan, &lan_host(Some(100)), "x", &[]).unwrap_err();
        assert_eq!(
            e,
            "route 0.0.0.0/0 planned by network \"x\" overlaps the host's default route via eth0 (metric 100)"
        );
        let e = conflicts(&plan, &lan_host(None), "x", &[]).unwrap_err();
        assert!(e.ends_with("the host's default route via eth0"), "{e}");
        // Without a default route of its own, the host may take the plan's.
        let mut snap = lan_host(None);
        snap.routes.retain(|r| r.destination.prefix_len() > 0);
        assert_eq!(conflicts(&plan, &snap, "x", &[]), Ok(()));
    }

    #[test]
    fn a_route_clear_of_the_host_is_kept() {
        let plan = routed_plan(&[("10.61.0.0/24", Some("10.60.0.9")), ("10.62.0.0/16", None)]);
        assert_eq!(conflicts(&plan, &lan_host(Some(100)), "x", &[]), Ok(()));
    }

    #[test]
    fn a_route_onto_another_active_network_is_refused_naming_it() {
        let snap = lan_host(None);
        let mut y = routed_plan(&[("10.70.0.0/24", Some("10.9.0.7"))]);
        y.addresses = vec!["10.9.0.1/24".parse().unwrap()];
        let others = [("y", &y)];
        let e = conflicts(&routed_plan(&[("10.9.0.0/25", None)]), &snap, "x", &others).unwrap_err();
        assert_eq!(
            e,
            "route 10.9.0.0/25 planned by network \"x\" overlaps 10.9.0.0/24 of active network \"y\""
        );
        let e =
            conflicts(&routed_plan(&[("10.70.0.0/16", None)]), &snap, "x", &others).unwrap_err();
        assert_eq!(
            e,
            "route 10.70.0.0/16 planned by network \"x\" overlaps the route to 10.70.0.0/24 of active network \"y\""
        );
        // An address on another network's subnet names that network too.
        let mut z = routed_plan(&[]);
        z.addresses = vec!["10.9.0.129/25".parse().unwrap()];
        let e = conflicts(&z, &snap, "z", &others).unwrap_err();
        assert_eq!(
            e,
            "10.9.0.128/25 overlaps 10.9.0.0/24 of active network \"y\""
        );
        // Another network's default route leaves more specific routes be,
        // and is the only one a default route clashes with.
        let mut d = routed_plan(&[("0.0.0.0/0", Some("10.9.0.7"))]);
        d.addresses = vec!["10.9.0.1/24".parse().unwrap()];
        let mut no_default = lan_host(None);
        no_default.routes.retain(|r| r.destination.prefix_len() > 0);
        let others = [("d", &d)];
        assert_eq!(
            conflicts(
                &routed_plan(&[("10.71.0.0/24", None)]),
                &no_default,
                "x",
                &others
            ),
            Ok(())
        );
        let e = conflicts(
            &routed_plan(&[("0.0.0.0/0", None)]),
            &no_default,
            "x",
            &others,
        )
        .unwrap_err();
        assert!(
            e.ends_with("overlaps the route to 0.0.0.0/0 of active network \"d\""),
            "{e}"
        );
    }

    #[test]
    fn a_networks_own_leftovers_and_subnet_are_not_held_against_it() {
        // gnbr1 left by network x after a crash: its address, the subnet
        // route the kernel added for it, and the plan's route through it.
        let mut snap = lan_host(Some(100));
        let mut bridge = link(7, "gnbr1", &["10.60.0.1/24"]);
        bridge.alias = Some(bridge_alias("x"));
        snap.links.push(bridge);
        let mut subnet = route("10.60.0.0/24", 7);
        subnet.protocol = 2;
        snap.routes.push(subnet);
        let mut planned = route("10.61.0.0/24", 7);
        planned.gateway = Some("10.60.0.9".parse().unwrap());
        snap.routes.push(planned);
        let plan = routed_plan(&[
            ("10.61.0.0/24", Some("10.60.0.9")),
            ("10.60.0.128/25", None),
        ]);
        assert_eq!(conflicts(&plan, &snap, "x", &[]), Ok(()));
        // The same bridge is someone else's to network w.
        let e = conflicts(&plan, &snap, "w", &[]).unwrap_err();
        assert!(e.contains("gnbr1 already exists"), "{e}");
    }
}
