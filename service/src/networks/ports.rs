//! Guest ports: what AttachGuest makes, DetachGuest removes, ListGuests
//! lists, and what a network's start, stop and update do with them.
//!
//! A port is ours by identity, not by name: the link carries the alias
//! `guestnet-port:NETWORK` and its record the ifindex, and nothing is
//! deleted unless the link says it is that network's. Names are reused (a
//! container exits, another network's guest gets `gnveth0`), identities
//! are not.

use super::Networks;
use crate::error::ServiceError;
use crate::guests::watch::{Port, WatchedBridge};
use crate::guests::{
    self, port_alias, AttachKind, AttachRequest, GuestEvent, GuestRecord, NetnsSource, PortKind,
};
use crate::host::kernel::{Link, Snapshot};
use guestnet_mode_api::{BridgePlan, MacAddr, NetworkName, Plan};
use std::fs::File;

/// One port of a network's bridge, as ListGuests reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    pub ifname: String,
    pub mac: String,
    pub guest: String,
}

/// Whether `link` is the port `record` describes, made by guestnetd for
/// `network` (whose bridge is `bridge`).
fn is_ours(record: &GuestRecord, link: &Link, network: &NetworkName, bridge: Option<u32>) -> bool {
    match link.alias.as_deref() {
        Some(alias) => alias == port_alias(network.as_str()),
        // Without an alias: a port an AttachGuest killed half-way left
        // before marking it (on no bridge yet), or one made before ports
        // carried an alias (on ours).
        None => match record.ifindex {
            Some(index) => index == link.index,
            None => link.master.is_none() || link.master == bridge,
        },
    }
}

/// The uplink NIC a bridged network enslaved: a port, never a guest.
fn uplink_of(plan: &Plan) -> Option<&str> {
    match &plan.bridge {
        BridgePlan::EnslaveUplink { uplink, .. } => Some(uplink.as_str()),
        _ => None,
    }
}

impl Networks {
    /// Announces guests joining and leaving guestnet bridges from the
    /// kernel's link events; call once, after `recover`.
    pub async fn watch_guests(&self) -> Result<(), ServiceError> {
        let links = crate::host::kernel::watch_links()
            .map_err(|e| ServiceError::failed("subscribing to link events", e))?;
        let initial = self.snapshot().await?;
        tokio::spawn(crate::guests::watch::run(
            links,
            initial,
            self.registry.clone(),
            self.guest_events.clone(),
            self.guest_store.clone(),
        ));
        Ok(())
    }

    /// Tells the watcher about an active network's bridge and loads the
    /// records of the ports made for it: those whose link is gone (or is
    /// now someone else's) are forgotten, those an AttachGuest killed
    /// half-way left off the bridge are deleted.
    pub(super) async fn watch_bridge(&self, name: &NetworkName, plan: &Plan) {
        let Ok(Some(bridge)) = self.kernel.link_by_name(plan.bridge.name().as_str()).await else {
            return;
        };
        let mut records = self.guest_store.load(name);
        let before = records.clone();
        if let Ok(snapshot) = self.kernel.snapshot().await {
            let mut half_made = Vec::new();
            records.retain(|ifname, record| match snapshot.link(ifname) {
                None => false,
                Some(l) if !is_ours(record, l, name, Some(bridge.index)) => false,
                Some(l) if l.master != Some(bridge.index) => {
                    half_made.push((l.index, l.name.clone()));
                    false
                }
                Some(l) => {
                    record.ifindex = Some(l.index);
                    true
                }
            });
            for (index, ifname) in half_made {
                tracing::warn!("removing {ifname}, a guest port left half-made by a crash");
                let _ = self.kernel.delete_link(index, &ifname).await;
            }
            for ifname in records.keys() {
                if let Some(l) = snapshot.link(ifname) {
                    let _ = self.kernel.set_up(l.index, ifname).await;
                }
            }
        }
        if records != before {
            let kept = records.clone();
            if let Err(e) = self.guest_store.update(name, |r| *r = kept) {
                tracing::warn!("forgetting vanished guest ports of {name}: {e}");
            }
        }
        let mut reg = self.registry.write().expect("registry lock");
        reg.bridges.insert(
            bridge.index,
            WatchedBridge {
                network: name.to_string(),
                uplink: uplink_of(plan).map(str::to_owned),
            },
        );
        reg.records
            .extend(records.into_iter().map(|(ifname, record)| {
                (
                    ifname,
                    Port {
                        network: name.clone(),
                        record,
                    },
                )
            }));
    }

    /// Forgets a network's bridge (the watcher announces nothing more for
    /// it) and its ports' records in memory.
    pub(super) fn unwatch_bridge(&self, name: &NetworkName) {
        let mut reg = self.registry.write().expect("registry lock");
        reg.bridges.retain(|_, b| b.network != name.as_str());
        reg.records.retain(|_, p| &p.network != name);
    }

    /// Before a network stops: announces each guest leaving, forgets the
    /// bridge, and deletes the ports guestnetd made for it.
    pub(super) async fn unplug_guests(&self, name: &NetworkName, plan: &Plan, snapshot: &Snapshot) {
        let guests = self.ports_of(plan, snapshot);
        self.unwatch_bridge(name);
        for g in guests {
            let _ = self.guest_events.send(GuestEvent {
                network: name.to_string(),
                ifname: g.ifname,
                mac: g.mac,
                guest: g.guest,
                attached: false,
            });
        }
        self.delete_made_ports(name, plan, snapshot).await;
    }

    /// Deletes the ports guestnetd made for a network, each only if the
    /// link is still that port, and forgets them.
    pub(super) async fn delete_made_ports(
        &self,
        name: &NetworkName,
        plan: &Plan,
        snapshot: &Snapshot,
    ) {
        let bridge = snapshot.link(plan.bridge.name().as_str()).map(|b| b.index);
        for r in self.guest_store.load(name).values() {
            let Some(link) = snapshot.link(&r.ifname) else {
                continue;
            };
            if !is_ours(r, link, name, bridge) {
                tracing::info!(
                    "not removing {}: the link of that name is no longer {name}'s port",
                    r.ifname
                );
                continue;
            }
            if let Err(e) = self.kernel.delete_link(link.index, &link.name).await {
                tracing::warn!("removing guest port {}: {e}", r.ifname);
            }
        }
        if let Err(e) = self.guest_store.update(name, |r| r.clear()) {
            tracing::warn!("forgetting the guests of {name}: {e}");
        }
    }

    /// The ports of a plan's bridge, less a bridged network's uplink.
    fn ports_of(&self, plan: &Plan, snapshot: &Snapshot) -> Vec<Guest> {
        let Some(bridge) = snapshot.link(plan.bridge.name().as_str()) else {
            return Vec::new();
        };
        let reg = self.registry.read().expect("registry lock");
        snapshot
            .links
            .iter()
            .filter(|l| l.master == Some(bridge.index))
            .filter_map(|l| {
                reg.event(bridge.index, l, true).map(|e| Guest {
                    ifname: e.ifname,
                    mac: e.mac,
                    guest: e.guest,
                })
            })
            .collect()
    }

    pub async fn list_guests(&self, name: &str) -> Result<Vec<Guest>, ServiceError> {
        let plan = self.slot(name)?.network().plan;
        Ok(match plan {
            Some(plan) => self.ports_of(&plan, &self.snapshot().await?),
            None => Vec::new(),
        })
    }

    /// Makes a port for a guest on an active network and returns its name.
    /// Nothing is left behind when a step fails.
    pub async fn attach_guest(
        &self,
        name: &str,
        guest: &str,
        request: AttachRequest,
    ) -> Result<String, ServiceError> {
        guests::check_guest_name(guest)?;
        // A path (from a caller allowed to manage networks) is opened
        // before any lock is taken, and only if it is a network namespace
        // (never a FIFO or a device); a caller's descriptor was checked as
        // it arrived.
        let opened;
        let netns = match &request.kind {
            AttachKind::Veth {
                netns: NetnsSource::Path(path),
                ..
            } => {
                opened = crate::host::netns::open(path)
                    .map_err(|e| ServiceError::InvalidArgs(format!("netns: {e}")))?;
                Some(&opened)
            }
            AttachKind::Veth {
                netns: NetnsSource::Fd(ns),
                ..
            } => Some(ns),
            AttachKind::Tap { .. } => None,
        };
        let (_held, net, _plan, bridge) = self.hold_active(name).await?;
        let network = net.definition.name.clone();
        let ifname = self.free_port_name(&request.kind).await?;
        let mac = match request.mac {
            Some(m) => m,
            None => self.free_stable_mac(&net.definition.uuid, guest, &network),
        };
        let mut record = GuestRecord {
            ifname: ifname.clone(),
            mac,
            guest: guest.to_owned(),
            port: match request.kind {
                AttachKind::Tap { owner } => PortKind::Tap { owner },
                AttachKind::Veth { .. } => PortKind::Veth,
            },
            ifindex: None,
        };
        // Known before the port joins the bridge, so its event carries the name.
        self.registry
            .write()
            .expect("registry lock")
            .records
            .insert(
                ifname.clone(),
                Port {
                    network: network.clone(),
                    record: record.clone(),
                },
            );
        let forget = |this: &Self| {
            this.registry
                .write()
                .expect("registry lock")
                .records
                .remove(&ifname);
        };
        // Recorded before it exists: a crash from here on leaves a record
        // naming the port, so the port is never an orphan.
        let saved = self.guest_store.update(&network, |records| {
            records.insert(ifname.clone(), record.clone());
        });
        if let Err(e) = saved {
            forget(self);
            return Err(ServiceError::failed("recording the guest", e));
        }
        match self
            .make_port(&ifname, &request, netns, mac, &bridge, &network)
            .await
        {
            Ok(index) => {
                record.ifindex = Some(index);
                if let Some(p) = self
                    .registry
                    .write()
                    .expect("registry lock")
                    .records
                    .get_mut(&ifname)
                {
                    p.record.ifindex = Some(index);
                }
                let saved = self.guest_store.update(&network, |records| {
                    records.insert(ifname.clone(), record);
                });
                if let Err(e) = saved {
                    tracing::warn!("recording the ifindex of {ifname}: {e}");
                }
                Ok(ifname)
            }
            Err(e) => {
                forget(self);
                if let Ok(Some(l)) = self.kernel.link_by_name(&ifname).await {
                    if l.alias.as_deref() == Some(&port_alias(network.as_str()))
                        || l.master.is_none()
                    {
                        let _ = self.kernel.delete_link(l.index, &l.name).await;
                    }
                }
                if let Err(e) = self.guest_store.update(&network, |r| {
                    r.remove(&ifname);
                }) {
                    tracing::warn!("forgetting the failed guest port {ifname}: {e}");
                }
                Err(e)
            }
        }
    }

    /// An active network held for a guest call: its change lock, what it
    /// is, its plan and its bridge. The bridge is looked up by name rather
    /// than by a dump of the host, so the thousandth guest costs what the
    /// first did.
    async fn hold_active(
        &self,
        name: &str,
    ) -> Result<(super::Held, super::Network, Plan, Link), ServiceError> {
        let held = self.hold(name).await?;
        let net = held.slot.network();
        let plan = net
            .plan
            .clone()
            .ok_or_else(|| ServiceError::NotActive(name.to_owned()))?;
        let bridge = self
            .kernel
            .link_by_name(plan.bridge.name().as_str())
            .await
            .map_err(|e| ServiceError::failed("looking up the bridge", e))?
            .ok_or_else(|| ServiceError::Failed(format!("the bridge of {name:?} is gone")))?;
        Ok((held, net, plan, bridge))
    }

    /// The first `gntapN` or `gnvethN` that is neither one of our ports nor
    /// any other link of the host.
    async fn free_port_name(&self, kind: &AttachKind) -> Result<String, ServiceError> {
        let prefix = match kind {
            AttachKind::Tap { .. } => "gntap",
            AttachKind::Veth { .. } => "gnveth",
        };
        for i in 0..10_000 {
            let candidate = format!("{prefix}{i}");
            let ours = self
                .registry
                .read()
                .expect("registry lock")
                .records
                .contains_key(&candidate);
            if ours {
                continue;
            }
            let taken = self
                .kernel
                .link_by_name(&candidate)
                .await
                .map_err(|e| ServiceError::failed("looking for a free interface name", e))?;
            if taken.is_none() {
                return Ok(candidate);
            }
        }
        Err(ServiceError::Failed("no free interface name".into()))
    }

    /// The guest's stable MAC, or, when that guest already has a port on
    /// this network, the next stable one no port there uses.
    fn free_stable_mac(&self, uuid: &uuid::Uuid, guest: &str, network: &NetworkName) -> MacAddr {
        let taken: Vec<MacAddr> = self
            .guest_store
            .load(network)
            .values()
            .map(|r| r.mac)
            .collect();
        (0u32..)
            .map(|n| {
                if n == 0 {
                    guests::stable_mac(uuid, guest)
                } else {
                    guests::stable_mac(uuid, &format!("{guest}#{n}"))
                }
            })
            .find(|m| !taken.contains(m))
            .expect("an unbounded search finds a free MAC")
    }

    /// Makes the port, marks it as `network`'s, and plugs it into the
    /// bridge; returns its ifindex.
    async fn make_port(
        &self,
        ifname: &str,
        request: &AttachRequest,
        netns: Option<&File>,
        mac: MacAddr,
        bridge: &Link,
        network: &NetworkName,
    ) -> Result<u32, ServiceError> {
        let failed =
            |e: &dyn std::fmt::Display| ServiceError::Failed(format!("attaching {ifname}: {e}"));
        let index = match (&request.kind, netns) {
            (AttachKind::Tap { owner }, _) => {
                crate::host::tap::create(ifname, *owner).map_err(|e| failed(&e))?;
                let link = self
                    .kernel
                    .link_by_name(ifname)
                    .await
                    .map_err(|e| failed(&e))?
                    .ok_or_else(|| failed(&"the tap vanished"))?;
                self.kernel
                    .set_mtu(link.index, ifname, bridge.mtu)
                    .await
                    .map_err(|e| failed(&e))?;
                link.index
            }
            (AttachKind::Veth { ifname: peer, .. }, Some(ns)) => {
                use std::os::fd::AsRawFd;
                self.kernel
                    .create_veth(
                        ifname,
                        peer.as_str(),
                        ns.as_raw_fd(),
                        mac.0,
                        Some(bridge.mtu),
                    )
                    .await
                    .map_err(|e| failed(&e))?
            }
            (AttachKind::Veth { .. }, None) => {
                return Err(failed(&"no network namespace was opened"))
            }
        };
        self.kernel
            .set_alias(index, ifname, &port_alias(network.as_str()))
            .await
            .map_err(|e| failed(&e))?;
        crate::host::sysctl::disable_ipv6_on_port(ifname);
        self.kernel
            .set_master(index, ifname, Some(bridge.index))
            .await
            .map_err(|e| failed(&e))?;
        self.kernel
            .set_up(index, ifname)
            .await
            .map_err(|e| failed(&e))?;
        Ok(index)
    }

    /// The uid a tap of this network was made for, if `ifname` is one.
    pub fn port_owner(&self, name: &str, ifname: &str) -> Option<u32> {
        let network = NetworkName::new(name).ok()?;
        match self.guest_store.load(&network).get(ifname)?.port {
            PortKind::Tap { owner } => Some(owner),
            PortKind::Veth => None,
        }
    }

    /// Removes a port guestnetd made for this network, or releases a guest
    /// someone else put on the bridge (leaving it otherwise alone). A
    /// bridged network's uplink is not a guest and is refused.
    pub async fn detach_guest(&self, name: &str, ifname: &str) -> Result<(), ServiceError> {
        let (_held, net, plan, bridge) = self.hold_active(name).await?;
        let network = net.definition.name.clone();
        if uplink_of(&plan) == Some(ifname) {
            return Err(ServiceError::InvalidArgs(format!(
                "{ifname:?} is the uplink of bridged network {name:?}, not a guest: \
                 stopping the network gives it back to the host"
            )));
        }
        let port = self
            .kernel
            .link_by_name(ifname)
            .await
            .map_err(|e| ServiceError::failed("looking up the port", e))?
            .filter(|l| l.master == Some(bridge.index))
            .ok_or_else(|| {
                ServiceError::InvalidArgs(format!("{ifname:?} is not a port of network {name:?}"))
            })?;
        let record = self.guest_store.load(&network).remove(ifname);
        let result = match record {
            Some(r) if is_ours(&r, &port, &network, Some(bridge.index)) => {
                let deleted = self.kernel.delete_link(port.index, ifname).await;
                if deleted.is_ok() {
                    if let Err(e) = self.guest_store.update(&network, |r| {
                        r.remove(ifname);
                    }) {
                        tracing::warn!("forgetting guest port {ifname}: {e}");
                    }
                }
                deleted
            }
            _ => self.kernel.set_master(port.index, ifname, None).await,
        };
        result.map_err(|e| ServiceError::failed(&format!("detaching {ifname}"), e))
    }

    /// Moves a network's guest ports from one bridge to another (an Update
    /// that must make the bridge anew): released from `from` before it
    /// goes, plugged into `to` once it is there. Returns the ports moved.
    pub(super) async fn release_ports(&self, plan: &Plan) -> Vec<Link> {
        let Ok(snapshot) = self.kernel.snapshot().await else {
            return Vec::new();
        };
        let Some(bridge) = snapshot.link(plan.bridge.name().as_str()) else {
            return Vec::new();
        };
        let uplink = uplink_of(plan);
        let ports: Vec<Link> = snapshot
            .links
            .iter()
            .filter(|l| l.master == Some(bridge.index) && Some(l.name.as_str()) != uplink)
            .cloned()
            .collect();
        for p in &ports {
            if let Err(e) = self.kernel.set_master(p.index, &p.name, None).await {
                tracing::warn!("releasing {} to move it: {e}", p.name);
            }
        }
        ports
    }

    /// Plugs moved ports into the plan's bridge, at its MTU.
    pub(super) async fn plug_ports(&self, plan: &Plan, ports: &[Link]) {
        let Ok(Some(bridge)) = self.kernel.link_by_name(plan.bridge.name().as_str()).await else {
            return;
        };
        for p in ports {
            if p.mtu != bridge.mtu {
                let _ = self.kernel.set_mtu(p.index, &p.name, bridge.mtu).await;
            }
            if let Err(e) = self
                .kernel
                .set_master(p.index, &p.name, Some(bridge.index))
                .await
            {
                tracing::warn!("moving {} to {}: {e}", p.name, bridge.name);
            }
            let _ = self.kernel.set_up(p.index, &p.name).await;
        }
    }
}
