//! Watches the kernel's link announcements and turns every port that
//! joins or leaves a guestnet bridge into a guest event, whoever plugged it
//! in: guestnetd itself, libvirt, or `ip link set X master BR` by hand.

use crate::guests::{GuestEvent, GuestRecord, GuestStore};
use crate::host::kernel::{Link, LinkEvent, Snapshot};
use crate::signals::SignalSender;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tokio::sync::mpsc;

/// A bridge of an active network, as the watcher needs it.
#[derive(Debug, Clone)]
pub struct WatchedBridge {
    pub network: String,
    /// The NIC a bridged network enslaved: a port, but not a guest.
    pub uplink: Option<String>,
    /// Whether guests on the bridge must not reach each other
    /// (`FirewallRule::IsolateGuests`): each guest port is isolated as it
    /// joins.
    pub isolate_guests: bool,
}

/// A port guestnetd made, as the watcher knows it.
#[derive(Debug, Clone)]
pub struct Port {
    pub network: guestnet_mode_api::NetworkName,
    pub record: GuestRecord,
}

/// What the watcher and the life-cycle code share: the active bridges by
/// ifindex and the ports guestnetd made, by ifname.
#[derive(Debug, Default)]
pub struct Registry {
    pub bridges: HashMap<u32, WatchedBridge>,
    pub records: HashMap<String, Port>,
}

pub type SharedRegistry = Arc<RwLock<Registry>>;

impl Registry {
    /// The event for `link` joining or leaving `bridge`, if that is a
    /// guestnet bridge and `link` is a guest there.
    pub fn event(&self, bridge: u32, link: &Link, attached: bool) -> Option<GuestEvent> {
        let b = self.bridges.get(&bridge)?;
        if b.uplink.as_deref() == Some(link.name.as_str()) {
            return None;
        }
        let record = self.records.get(&link.name).map(|p| &p.record);
        let mac = record
            .map(|r| r.mac.to_string())
            .or_else(|| link.mac.map(|m| guestnet_mode_api::MacAddr(m).to_string()))
            .unwrap_or_default();
        Some(GuestEvent {
            network: b.network.clone(),
            ifname: link.name.clone(),
            mac,
            guest: record.map(|r| r.guest.clone()).unwrap_or_default(),
            attached,
        })
    }
}

/// Runs until the kernel's announcements stop. `initial` is the state the
/// announcements start from, so ports already in place raise no event.
pub async fn run(
    mut links: mpsc::UnboundedReceiver<LinkEvent>,
    initial: Snapshot,
    registry: SharedRegistry,
    events: SignalSender<GuestEvent>,
    store: Arc<GuestStore>,
    kernel: crate::host::kernel::Kernel,
) {
    // Every link as last announced: its master now, and its name and MAC
    // for when it is gone.
    let mut known: HashMap<u32, Link> = initial.links.into_iter().map(|l| (l.index, l)).collect();
    while let Some(change) = links.recv().await {
        let changes = match change {
            LinkEvent::Changed(link) => vec![(link, false)],
            LinkEvent::Removed(link) => vec![(link, true)],
            LinkEvent::Resync(now) => missed_changes(&known, now),
        };
        for (link, removed) in changes {
            let before = if removed {
                known.remove(&link.index)
            } else {
                known.insert(link.index, link.clone())
            };
            let after = if removed { None } else { link.master };
            let before_master = before.and_then(|l| l.master);
            announce(&registry, &events, &link, before_master, after);
            if removed {
                forget_port(&registry, &store, &link);
            } else if joins_isolating_bridge(&registry, &link, before_master) {
                // Before any frame of the guest is forwarded to another, as
                // far as the kernel lets us: the link is already a port.
                if let Err(e) = kernel.set_port_isolated(link.index, &link.name, true).await {
                    tracing::warn!("isolating guest port {}: {e}", link.name);
                }
            }
        }
    }
}

/// Whether `link` has just joined (it was a port of `before` or none) a
/// bridge whose guests are isolated from each other, as a guest.
fn joins_isolating_bridge(registry: &SharedRegistry, link: &Link, before: Option<u32>) -> bool {
    let Some(bridge) = link.master.filter(|m| Some(*m) != before) else {
        return false;
    };
    let registry = registry.read().expect("registry lock");
    registry
        .bridges
        .get(&bridge)
        .is_some_and(|b| b.isolate_guests && b.uplink.as_deref() != Some(link.name.as_str()))
}

/// What lost announcements would have said: links whose master is not the
/// one known (changed), and known links that are gone (removed).
fn missed_changes(known: &HashMap<u32, Link>, now: Vec<Link>) -> Vec<(Link, bool)> {
    let present: std::collections::HashSet<u32> = now.iter().map(|l| l.index).collect();
    let gone: Vec<(Link, bool)> = known
        .values()
        .filter(|l| !present.contains(&l.index))
        .map(|l| (l.clone(), true))
        .collect();
    now.into_iter()
        .filter(|l| known.get(&l.index).map(|k| k.master) != Some(l.master))
        .map(|l| (l, false))
        .chain(gone)
        .collect()
}

/// The guest events of `link` moving from bridge `before` to `after`.
fn announce(
    registry: &SharedRegistry,
    events: &SignalSender<GuestEvent>,
    link: &Link,
    before: Option<u32>,
    after: Option<u32>,
) {
    if before == after {
        return;
    }
    let registry = registry.read().expect("registry lock");
    let left = before.and_then(|b| registry.event(b, link, false));
    let joined = after.and_then(|b| registry.event(b, link, true));
    drop(registry);
    for e in left.into_iter().chain(joined) {
        events.send(e);
    }
}

/// A port of ours that is gone (a container that exited, a tap someone
/// deleted) is forgotten, in memory and on disk, so its name never points
/// at a link someone else makes later. Only the record of that very link
/// (its ifindex) goes: a newer port of the same name stays.
fn forget_port(registry: &SharedRegistry, store: &GuestStore, link: &Link) {
    let network = {
        let mut registry = registry.write().expect("registry lock");
        let Some(port) = registry.records.get(&link.name) else {
            return;
        };
        // A record without an ifindex is a port being made right now
        // (its name reserved): the link that went is not it.
        if port.record.ifindex != Some(link.index) {
            return;
        }
        let network = port.network.clone();
        registry.records.remove(&link.name);
        network
    };
    let forgotten = store.update(&network, |records| {
        if records
            .get(&link.name)
            .is_some_and(|r| r.ifindex == Some(link.index))
        {
            records.remove(&link.name);
        }
    });
    if let Err(e) = forgotten {
        tracing::warn!("forgetting the vanished guest port {}: {e}", link.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, master: Option<u32>) -> Link {
        Link {
            index,
            name: name.into(),
            kind: None,
            master,
            alias: None,
            mac: None,
            mtu: 1500,
            addresses: vec![],
        }
    }

    #[test]
    fn a_resync_finds_ports_that_joined_moved_or_vanished_unannounced() {
        let known: HashMap<u32, Link> = [
            link(1, "br0", None),
            link(2, "stays", Some(1)),
            link(3, "vanished", Some(1)),
            link(4, "unplugged", Some(1)),
        ]
        .into_iter()
        .map(|l| (l.index, l))
        .collect();
        let now = vec![
            link(1, "br0", None),
            link(2, "stays", Some(1)),
            link(4, "unplugged", None),
            link(5, "joined", Some(1)),
        ];
        let mut missed: Vec<(String, bool)> = missed_changes(&known, now)
            .into_iter()
            .map(|(l, removed)| (l.name, removed))
            .collect();
        missed.sort();
        assert_eq!(
            missed,
            [
                ("joined".into(), false),
                ("unplugged".into(), false),
                ("vanished".into(), true)
            ]
        );
    }
}
