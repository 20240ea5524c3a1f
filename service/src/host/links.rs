//! Applies the link part of a plan (bridge, ports, addresses, routes) and
//! tears it down. Applying either completes or undoes every step it took;
//! tearing down collects errors and carries on, so one failure never leaves
//! the rest behind.

use crate::host::facts::bridge_alias;
use crate::host::kernel::{Kernel, KernelError, Route};
use guestnet_mode_api::{BridgePlan, Plan};
use ipnet::Ipv4Net;

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
                Undo::Release { index, name } => kernel.set_master(*index, name, None).await,
            };
            if let Err(e) = result {
                tracing::warn!("rolling back: {e}");
            }
        }
    }
}

/// Applies the plan's links, addresses and routes for `network`.
pub async fn apply(kernel: &Kernel, plan: &Plan, network: &str) -> Result<(), KernelError> {
    let mut journal = Journal::default();
    match apply_steps(kernel, plan, network, &mut journal).await {
        Ok(()) => Ok(()),
        Err(e) => {
            journal.roll_back(kernel).await;
            Err(e)
        }
    }
}

async fn apply_steps(
    kernel: &Kernel,
    plan: &Plan,
    network: &str,
    journal: &mut Journal,
) -> Result<(), KernelError> {
    let alias = bridge_alias(network);
    let snapshot = kernel.snapshot().await?;
    let bridge_name = plan.bridge.name().as_str();
    // A bridge of ours left by a crash is replaced, never doubled.
    if let Some(old) = snapshot.link(bridge_name) {
        if old.alias.as_deref() == Some(&alias)
            && !matches!(plan.bridge, BridgePlan::Existing { .. })
        {
            kernel.delete_link(old.index, &old.name).await?;
        }
    }
    let bridge = match &plan.bridge {
        BridgePlan::Create { name, mtu } => {
            let index = kernel
                .create_bridge(name.as_str(), *mtu, None, &alias)
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
        kernel.add_route(&planned_route(r, bridge), bridge).await?;
    }
    Ok(())
}

/// The kernel route of a planned one, out of the network's bridge.
fn planned_route(r: &guestnet_mode_api::RoutePlan, bridge: u32) -> Route {
    Route {
        destination: r.destination,
        gateway: r.gateway,
        oif: Some(bridge),
        metric: None,
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
) -> Result<(), KernelError> {
    let snapshot = kernel.snapshot().await?;
    let bridge_name = new.bridge.name().as_str();
    let bridge = snapshot
        .link(bridge_name)
        .ok_or_else(|| KernelError::NoSuchLink(bridge_name.to_owned()))?
        .clone();
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
            .any(|p| p.destination == r.destination && p.gateway == r.gateway)
    };
    for gone in old.routes.iter().map(|r| planned_route(r, bridge.index)) {
        let present = snapshot
            .routes_via(bridge.index)
            .any(|r| r.destination == gone.destination && r.gateway == gone.gateway);
        if present && !wanted(&gone) {
            kernel.delete_route(&gone).await?;
        }
    }
    for net in &old.addresses {
        if !new.addresses.contains(net) && bridge.addresses.contains(net) {
            kernel
                .delete_address(bridge.index, bridge_name, *net)
                .await?;
        }
    }
    // After the addresses: a route via a gateway needs its subnet there.
    let snapshot = kernel.snapshot().await?;
    for route in new.routes.iter().map(|r| planned_route(r, bridge.index)) {
        let present = snapshot
            .routes_via(bridge.index)
            .any(|r| r.destination == route.destination && r.gateway == route.gateway);
        if !present {
            kernel.add_route(&route, bridge.index).await?;
        }
    }
    tracing::debug!("updated the links of {network} in place");
    Ok(())
}

/// Makes a re-adopted network's bridge hold what its record says (a
/// guestnetd killed in the middle of an Update left some of it undone).
pub async fn reconcile(kernel: &Kernel, plan: &Plan, network: &str) -> Result<(), KernelError> {
    update(kernel, plan, plan, network).await
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

/// Creates the bridge with the NIC's MAC (so the LAN sees the same host),
/// moves the NIC's addresses and routes onto it and enslaves the NIC.
async fn enslave_uplink(
    kernel: &Kernel,
    name: &str,
    uplink: &str,
    mtu: Option<u32>,
    alias: &str,
    journal: &mut Journal,
) -> Result<u32, KernelError> {
    let snapshot = kernel.snapshot().await?;
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
        .create_bridge(name, mtu.or(Some(nic.mtu)), nic.mac, alias)
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

/// Removes what `apply` made for `network`. Returns every error met; the
/// steps after a failed one still run.
pub async fn teardown(kernel: &Kernel, plan: &Plan, network: &str) -> Vec<KernelError> {
    let mut errors = Vec::new();
    let snapshot = match kernel.snapshot().await {
        Ok(s) => s,
        Err(e) => return vec![e],
    };
    let bridge_name = plan.bridge.name().as_str();
    let Some(bridge) = snapshot.link(bridge_name).cloned() else {
        return errors; // already gone
    };
    let ours = bridge.alias.as_deref() == Some(&bridge_alias(network));
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
                give_back_uplink(kernel, &snapshot, &bridge, uplink.as_str(), &mut errors).await;
            }
        }
        BridgePlan::Existing { .. } => {
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

/// Moves the bridge's addresses and routes back to the NIC, releases it and
/// deletes the bridge.
async fn give_back_uplink(
    kernel: &Kernel,
    snapshot: &crate::host::kernel::Snapshot,
    bridge: &crate::host::kernel::Link,
    uplink: &str,
    errors: &mut Vec<KernelError>,
) {
    let routes: Vec<Route> = snapshot
        .routes_via(bridge.index)
        .filter(|r| !r.is_kernel())
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
    for net in &bridge.addresses {
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
