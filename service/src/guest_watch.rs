//! Watches the kernel's link announcements and turns every port that
//! joins or leaves a guestnet bridge into a guest event, whoever plugged it
//! in: guestnetd itself, libvirt, or `ip link set X master BR` by hand.

use crate::guests::{GuestEvent, GuestRecord};
use crate::kernel::{Link, LinkEvent, Snapshot};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tokio::sync::{broadcast, mpsc};

/// A bridge of an active network, as the watcher needs it.
#[derive(Debug, Clone)]
pub struct WatchedBridge {
    pub network: String,
    /// The NIC a bridged network enslaved: a port, but not a guest.
    pub uplink: Option<String>,
}

/// What the watcher and the life-cycle code share: the active bridges by
/// ifindex and the records of the ports guestnetd made, by ifname.
#[derive(Debug, Default)]
pub struct Registry {
    pub bridges: HashMap<u32, WatchedBridge>,
    pub records: HashMap<String, GuestRecord>,
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
        let record = self.records.get(&link.name);
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
    events: broadcast::Sender<GuestEvent>,
) {
    let mut masters: HashMap<u32, Option<u32>> =
        initial.links.iter().map(|l| (l.index, l.master)).collect();
    while let Some(change) = links.recv().await {
        let (link, before, after, removed) = match change {
            LinkEvent::Changed(link) => {
                let before = masters.insert(link.index, link.master).flatten();
                let after = link.master;
                (link, before, after, false)
            }
            LinkEvent::Removed(link) => {
                let before = masters.remove(&link.index).flatten();
                (link, before, None, true)
            }
        };
        if before == after {
            continue;
        }
        let mut registry = registry.write().expect("registry lock");
        let left = before.and_then(|b| registry.event(b, &link, false));
        let joined = after.and_then(|b| registry.event(b, &link, true));
        if removed {
            // A port that is gone (a container that exited) needs no name.
            registry.records.remove(&link.name);
        }
        drop(registry);
        for e in left.into_iter().chain(joined) {
            let _ = events.send(e);
        }
    }
}
