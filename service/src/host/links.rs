//! Applies the link part of a plan (bridge, ports, addresses, routes) and
//! tears it down. Applying either completes or undoes every step it took;
//! tearing down collects errors and carries on, so one failure never leaves
//! the rest behind.

use crate::host::facts::bridge_alias;
use crate::host::kernel::{Kernel, KernelError, Route, Snapshot};
use guestnet_mode_api::{BridgePlan, Plan, RoutePlan};
use ipnet::Ipv4Net;

/// Why a plan could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The kernel refused a route of the plan because of what the host
    /// already has (a route to the same place at the same metric, a gateway
    /// it cannot reach): the plan clashes with the host.
    #[error("{0}")]
    RouteRefused(String),
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

/// A step taken, and how to take it back.
enum Undo {
    DeleteLink {
        index: u32,
        name: String,
    },
    RemoveAddress {
        index: u32,
        name: String,
        net: Ipv4Net,
    },
    AddAddress {
        index: u32,
        name: String,
        net: Ipv4Net,
    },
    AddRoute {
        route: Route,
        oif: u32,
    },
    DeleteRoute {
        route: Route,
    },
    Release {
        index: u32,
        name: String,
    },
}

#[derive(Default)]
struct Journal(Vec<Undo>);

impl Journal {
    async fn roll_back(self, kernel: &Kernel) {
        for step in self.0.into_iter().rev() {
            let result = match &step {
                Undo::DeleteLink { index, name } => kernel.delete_link(*index, name).await,
                Undo::RemoveAddress { index, name, net } => {
                    kernel.delete_address(*index, name, *net).await
                }
                Undo::AddAddress { index, name, net } => {
                    kernel.add_address(*index, name, *net).await
                }
                Undo::AddRoute { route, oif } => kernel.add_route(route, *oif).await,
                Undo::DeleteRoute { route } => kernel.delete_route(route).await,
                Undo::Release { index, name } => kernel.set_master(*index, name, None).await,
            };
            if let Err(e) = result {
                tracing::warn!("rolling back: {e}");
            }
        }
    }
}

/// Applies the plan's links, addresses and routes for `network`, on the
/// host as `snapshot` (taken when the plan was made) shows it. A bridge the
/// plan creates gets ifindex `bridge_index` when given (see
/// [`unused_ifindex`]).
pub async fn apply(
    kernel: &Kernel,
    plan: &Plan,
    network: &str,
    snapshot: &Snapshot,
    bridge_index: Option<u32>,
) -> Result<(), ApplyError> {
    let mut journal = Journal::default();
    match apply_steps(kernel, plan, network, snapshot, bridge_index, &mut journal).await {
        Ok(()) => Ok(()),
        Err(e) => {
            journal.roll_back(kernel).await;
            Err(e)
        }
    }
}

/// An ifindex no link of `snapshot` has, drawn at random from
/// 2^28..2^31 - 1, far above those the kernel hands out in turn: recorded
/// before a bridge is made under it, it proves after a kill that a bridge
/// of that name and index is the one guestnetd made, even before it
/// carries its alias; nobody else's bridge has it by chance.
pub fn unused_ifindex(snapshot: &Snapshot) -> u32 {
    const LOW: u32 = 1 << 28;
    loop {
        let r = uuid::Uuid::new_v4().as_u128() as u32;
        let index = LOW + r % (i32::MAX as u32 - LOW);
        if snapshot.links.iter().all(|l| l.index != index) {
            return index;
        }
    }
}

async fn apply_steps(
    kernel: &Kernel,
    plan: &Plan,
    network: &str,
    snapshot: &Snapshot,
    bridge_index: Option<u32>,
    journal: &mut Journal,
) -> Result<(), ApplyError> {
    let alias = bridge_alias(network);
    let bridge_name = plan.bridge.name().as_str();
    // A bridge of ours left by a crash is replaced, never doubled; the host
    // is read again after that, as it changed.
    let after_leftover;
    let mut snapshot = snapshot;
    if let Some(old) = snapshot.link(bridge_name) {
        if old.alias.as_deref() == Some(&alias)
            && !matches!(plan.bridge, BridgePlan::Existing { .. })
        {
            kernel.delete_link(old.index, &old.name).await?;
            after_leftover = kernel.snapshot().await?;
            snapshot = &after_leftover;
        }
    }
    let bridge = match &plan.bridge {
        BridgePlan::Create { name, mtu } => {
            let index = kernel
                .create_bridge(
                    name.as_str(),
                    bridge_index,
                    *mtu,
                    Some(bridge_mac(network)),
                    &alias,
                )
                .await?;
            journal.0.push(Undo::DeleteLink {
                index,
                name: name.to_string(),
            });
            kernel.set_up(index, name.as_str()).await?;
            index
        }
        BridgePlan::EnslaveUplink { name, uplink, mtu } => {
            enslave_uplink(
                kernel,
                snapshot,
                name.as_str(),
                uplink.as_str(),
                *mtu,
                &alias,
                journal,
            )
            .await?
        }
        BridgePlan::Existing { name } => {
            snapshot
                .link(name.as_str())
                .ok_or_else(|| KernelError::NoSuchLink(name.to_string()))?
                .index
        }
    };
    for net in &plan.addresses {
        kernel.add_address(bridge, bridge_name, *net).await?;
        journal.0.push(Undo::RemoveAddress {
            index: bridge,
            name: bridge_name.to_owned(),
            net: *net,
        });
    }
    for r in &plan.routes {
        let route = planned_route(r, bridge);
        if let Err(e) = kernel.add_route(&route, bridge).await {
            return Err(match refusal(&e, r, bridge_name) {
                Some(why) => ApplyError::RouteRefused(format!(
                    "route {} planned by network {network:?} was refused by the kernel: {why}",
                    r.destination.trunc()
                )),
                None => e.into(),
            });
        }
        journal.0.push(Undo::DeleteRoute { route });
    }
    Ok(())
}

/// A planned route as guestnet installs it: through the bridge, at the
/// plan's metric (none: 0, the kernel's default), marked static.
fn planned_route(r: &RoutePlan, bridge: u32) -> Route {
    Route {
        destination: r.destination.trunc(),
        gateway: r.gateway,
        oif: Some(bridge),
        metric: r.metric.filter(|m| *m != 0),
        protocol: 4, // static
        scope: if r.gateway.is_some() { 0 } else { 253 },
        pref_source: None,
    }
}

/// Brings an active network's bridge from `old` to `new` in place, when
/// both plans keep the same bridge: its MTU (and its ports'), addresses and
/// routes. The bridge and its ports stay, so guests keep their links; an
/// address that stays is never removed, so nothing in flight is lost.
/// Each step looks at what the host has, so running it again, or after a
/// crash half-way, finishes the job rather than failing on what is done.
pub async fn update(
    kernel: &Kernel,
    old: &Plan,
    new: &Plan,
    network: &str,
    snapshot: &Snapshot,
) -> Result<(), ApplyError> {
    let bridge_name = new.bridge.name().as_str();
    let bridge = snapshot
        .link(bridge_name)
        .ok_or_else(|| KernelError::NoSuchLink(bridge_name.to_owned()))?
        .clone();
    // Up, whatever it was: a bridge made just before a crash may not be.
    kernel.set_up(bridge.index, bridge_name).await?;
    if let Some(mtu) = bridge_mtu(&new.bridge).filter(|m| *m != bridge.mtu) {
        // Ports first: a bridge cannot be larger than its smallest port.
        for port in snapshot
            .links
            .iter()
            .filter(|l| l.master == Some(bridge.index))
        {
            if port.mtu != mtu && !is_uplink(new, &port.name) {
                kernel.set_mtu(port.index, &port.name, mtu).await?;
            }
        }
        kernel.set_mtu(bridge.index, bridge_name, mtu).await?;
    }
    for net in &new.addresses {
        if !bridge.addresses.contains(net) {
            kernel.add_address(bridge.index, bridge_name, *net).await?;
        }
    }
    let wanted = |r: &Route| {
        new.routes
            .iter()
            .any(|p| p.destination.trunc() == r.destination && p.gateway == r.gateway)
    };
    for gone in old.routes.iter().map(|r| planned_route(r, bridge.index)) {
        let present = snapshot
            .routes_via(bridge.index)
            .any(|r| r.destination == gone.destination && r.gateway == gone.gateway);
        if present && !wanted(&gone) {
            kernel.delete_route(&gone).await?;
        }
    }
    if old.addresses.iter().any(|a| !new.addresses.contains(a)) {
        crate::host::sysctl::promote_secondaries(bridge_name);
    }
    for net in &old.addresses {
        if !new.addresses.contains(net) && bridge.addresses.contains(net) {
            kernel
                .delete_address(bridge.index, bridge_name, *net)
                .await?;
        }
    }
    // After the addresses: a route via a gateway needs its subnet there,
    // and the routes of a removed subnet went with it.
    let after_addresses;
    let snapshot = if old.addresses.iter().any(|a| !new.addresses.contains(a)) {
        after_addresses = kernel.snapshot().await?;
        &after_addresses
    } else {
        snapshot
    };
    for r in &new.routes {
        let route = planned_route(r, bridge.index);
        let present = snapshot
            .routes_via(bridge.index)
            .any(|p| p.destination == route.destination && p.gateway == route.gateway);
        if present {
            continue;
        }
        if let Err(e) = kernel.add_route(&route, bridge.index).await {
            return Err(match refusal(&e, r, bridge_name) {
                Some(why) => ApplyError::RouteRefused(format!(
                    "route {} planned by network {network:?} was refused by the kernel: {why}",
                    r.destination.trunc()
                )),
                None => e.into(),
            });
        }
    }
    tracing::debug!("updated the links of {network} in place");
    Ok(())
}

/// The MAC of a bridge guestnet makes for `network`: fixed, as libvirt's
/// are, so a port that joins later never changes the bridge's address (the
/// kernel would otherwise take the lowest port MAC) and guests' ARP entries
/// for their gateway stay true. Locally administered, from the network's
/// name (FNV-1a).
pub fn bridge_mac(network: &str) -> [u8; 6] {
    let hash = network.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let [a, b, c, d] = hash.to_be_bytes();
    [0x02, 0x67, a, b, c, d]
}

/// The MTU a plan sets on its bridge, if it sets one.
fn bridge_mtu(plan: &BridgePlan) -> Option<u32> {
    match plan {
        BridgePlan::Create { mtu, .. } | BridgePlan::EnslaveUplink { mtu, .. } => *mtu,
        BridgePlan::Existing { .. } => None,
    }
}

/// Whether an Update from `old` to `new` can keep the bridge as it is:
/// the same name, made the same way (the same NIC enslaved).
pub fn same_bridge(old: &BridgePlan, new: &BridgePlan) -> bool {
    match (old, new) {
        (BridgePlan::Create { name: a, .. }, BridgePlan::Create { name: b, .. }) => a == b,
        (
            BridgePlan::EnslaveUplink {
                name: a, uplink: u, ..
            },
            BridgePlan::EnslaveUplink {
                name: b, uplink: v, ..
            },
        ) => a == b && u == v,
        (BridgePlan::Existing { name: a }, BridgePlan::Existing { name: b }) => a == b,
        _ => false,
    }
}

fn is_uplink(plan: &Plan, ifname: &str) -> bool {
    matches!(&plan.bridge, BridgePlan::EnslaveUplink { uplink, .. } if uplink.as_str() == ifname)
}

/// Why the kernel refused a planned route, in words, when the refusal is
/// about the plan and the host (not a failure of the host itself).
fn refusal(e: &KernelError, r: &RoutePlan, bridge: &str) -> Option<String> {
    let dest = r.destination.trunc();
    let via = match r.gateway {
        Some(gw) => format!("gateway {gw}"),
        None => "the route".to_owned(),
    };
    match e.errno()? {
        libc::EEXIST => Some(format!(
            "the host already has a route to {dest} at metric 0, the metric guestnet installs planned routes at"
        )),
        libc::ENETUNREACH | libc::EHOSTUNREACH => Some(format!(
            "{via} is not reachable through bridge {bridge} (no subnet of the bridge holds it)"
        )),
        libc::EINVAL => Some(format!(
            "the kernel finds {via} through bridge {bridge} invalid"
        )),
        _ => None,
    }
}

/// Creates the bridge with the NIC's MAC (so the LAN sees the same host),
/// moves the NIC's addresses and routes onto it and enslaves the NIC.
async fn enslave_uplink(
    kernel: &Kernel,
    snapshot: &Snapshot,
    name: &str,
    uplink: &str,
    mtu: Option<u32>,
    alias: &str,
    journal: &mut Journal,
) -> Result<u32, KernelError> {
    let nic = snapshot
        .link(uplink)
        .ok_or_else(|| KernelError::NoSuchLink(uplink.to_owned()))?
        .clone();
    let moved_routes: Vec<Route> = snapshot
        .routes_via(nic.index)
        .filter(|r| !r.is_kernel())
        .cloned()
        .collect();
    let bridge = kernel
        .create_bridge(name, None, mtu.or(Some(nic.mtu)), nic.mac, alias)
        .await?;
    journal.0.push(Undo::DeleteLink {
        index: bridge,
        name: name.to_owned(),
    });
    kernel.set_up(bridge, name).await?;
    for net in &nic.addresses {
        kernel.add_address(bridge, name, *net).await?;
    }
    for r in &moved_routes {
        kernel.delete_route(r).await?;
        journal.0.push(Undo::AddRoute {
            route: r.clone(),
            oif: nic.index,
        });
    }
    for net in &nic.addresses {
        kernel.delete_address(nic.index, &nic.name, *net).await?;
        journal.0.push(Undo::AddAddress {
            index: nic.index,
            name: nic.name.clone(),
            net: *net,
        });
    }
    kernel
        .set_master(nic.index, &nic.name, Some(bridge))
        .await?;
    journal.0.push(Undo::Release {
        index: nic.index,
        name: nic.name.clone(),
    });
    for r in &moved_routes {
        kernel.add_route(r, bridge).await?;
    }
    Ok(bridge)
}

/// Removes what `apply` made for `network`, on the host as `snapshot`
/// shows it. Returns every error met; the steps after a failed one still
/// run.
pub async fn teardown(
    kernel: &Kernel,
    plan: &Plan,
    network: &str,
    snapshot: &Snapshot,
) -> Vec<KernelError> {
    let mut errors = Vec::new();
    let bridge_name = plan.bridge.name().as_str();
    let Some(bridge) = snapshot.link(bridge_name).cloned() else {
        return errors; // already gone
    };
    let ours = bridge.alias.as_deref() == Some(&bridge_alias(network));
    // The plan's routes through the bridge: they go with a bridge that is
    // deleted, and are removed by hand from one that stays.
    let planned: Vec<Route> = snapshot
        .routes_via(bridge.index)
        .filter(|r| is_planned(plan, r))
        .cloned()
        .collect();
    match &plan.bridge {
        BridgePlan::Create { .. } => {
            if ours {
                collect(
                    &mut errors,
                    kernel.delete_link(bridge.index, bridge_name).await,
                );
            }
        }
        BridgePlan::EnslaveUplink { uplink, .. } => {
            if ours {
                give_back_uplink(
                    kernel,
                    plan,
                    snapshot,
                    &bridge,
                    uplink.as_str(),
                    &planned,
                    &mut errors,
                )
                .await;
            }
        }
        BridgePlan::Existing { .. } => {
            for r in &planned {
                collect(&mut errors, kernel.delete_route(r).await);
            }
            for net in &plan.addresses {
                collect(
                    &mut errors,
                    kernel.delete_address(bridge.index, bridge_name, *net).await,
                );
            }
        }
    }
    errors
}

/// Whether `route` is one of the plan's routes as `apply` installed it.
fn is_planned(plan: &Plan, route: &Route) -> bool {
    !route.is_kernel()
        && plan.routes.iter().any(|p| {
            p.destination.trunc() == route.destination
                && p.gateway == route.gateway
                && route.metric.unwrap_or(0) == 0
        })
}

/// Moves the bridge's addresses and routes (but for the plan's own: its
/// addresses, and its routes in `planned`) back to the NIC, releases it and
/// deletes the bridge.
async fn give_back_uplink(
    kernel: &Kernel,
    plan: &Plan,
    snapshot: &crate::host::kernel::Snapshot,
    bridge: &crate::host::kernel::Link,
    uplink: &str,
    planned: &[Route],
    errors: &mut Vec<KernelError>,
) {
    let routes: Vec<Route> = snapshot
        .routes_via(bridge.index)
        .filter(|r| !r.is_kernel() && !planned.contains(r))
        .cloned()
        .collect();
    let nic = snapshot.link(uplink).cloned();
    if let Some(nic) = &nic {
        collect(errors, kernel.set_master(nic.index, &nic.name, None).await);
    }
    collect(errors, kernel.delete_link(bridge.index, &bridge.name).await);
    let Some(nic) = nic else {
        errors.push(KernelError::NoSuchLink(uplink.to_owned()));
        return;
    };
    collect(errors, kernel.set_up(nic.index, &nic.name).await);
    for net in bridge
        .addresses
        .iter()
        .filter(|a| !plan.addresses.contains(a))
    {
        collect(errors, kernel.add_address(nic.index, &nic.name, *net).await);
    }
    for r in &routes {
        collect(errors, kernel.add_route(r, nic.index).await);
    }
}

fn collect(errors: &mut Vec<KernelError>, r: Result<(), KernelError>) {
    if let Err(e) = r {
        errors.push(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(errno: i32, gateway: Option<&str>) -> Option<String> {
        let e = KernelError::Io {
            what: "adding route to 10.61.0.0/24".into(),
            source: std::io::Error::from_raw_os_error(errno),
        };
        let r = RoutePlan {
            destination: "10.61.0.0/24".parse().unwrap(),
            gateway: gateway.map(|g| g.parse().unwrap()),
            metric: None,
        };
        refusal(&e, &r, "gnbr1")
    }

    #[test]
    fn a_refused_route_is_told_in_words() {
        let why = refused(libc::EEXIST, None).unwrap();
        assert!(
            why.contains("already has a route to 10.61.0.0/24 at metric 0"),
            "{why}"
        );
        assert!(!why.contains("os error"), "{why}");
        let why = refused(libc::ENETUNREACH, Some("10.9.9.9")).unwrap();
        assert_eq!(
            why,
            "gateway 10.9.9.9 is not reachable through bridge gnbr1 (no subnet of the bridge holds it)"
        );
        // A failure of the host itself stays a failure.
        assert_eq!(refused(libc::ENOMEM, None), None);
    }

    #[test]
    fn only_the_plans_own_routes_count_as_planned() {
        let plan = Plan {
            bridge: BridgePlan::Existing {
                name: guestnet_mode_api::IfName::new("br0").unwrap(),
            },
            addresses: vec![],
            routes: vec![RoutePlan {
                destination: "10.61.0.7/24".parse().unwrap(),
                gateway: Some("10.60.0.9".parse().unwrap()),
                metric: None,
            }],
            sysctls: vec![],
            firewall: guestnet_mode_api::FirewallPolicy::None,
            host_allow: vec![],
            dhcp: None,
            dns: None,
            warnings: vec![],
        };
        let mut r = planned_route(&plan.routes[0], 3);
        assert_eq!(r.destination, "10.61.0.0/24".parse::<Ipv4Net>().unwrap());
        assert!(is_planned(&plan, &r));
        r.gateway = Some("10.60.0.8".parse().unwrap());
        assert!(
            !is_planned(&plan, &r),
            "the uplink's own route to the same place"
        );
        let mut subnet = planned_route(&plan.routes[0], 3);
        subnet.protocol = 2; // kernel
        assert!(!is_planned(&plan, &subnet));
    }
}
