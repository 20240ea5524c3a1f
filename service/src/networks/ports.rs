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

/// The polkit action that lets a caller take other people's ports.
const MANAGE_NETWORKS: &str = "org.guestnet1.manage-networks";

/// Who asks to detach a port, as the bus edge found out.
#[derive(Debug, Clone, Copy)]
pub struct Detacher {
    pub uid: u32,
    /// Allowed `org.guestnet1.manage-networks` (root always is).
    pub manages: bool,
}

/// Whose a port is, for deciding who may detach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortClaim {
    /// A tap guestnet made for `owner`.
    Tap { owner: u32 },
    /// A veth guestnet made, attached by uid `by`.
    Veth { by: u32 },
    /// A port someone else plugged into the bridge.
    Foreign,
}

impl PortClaim {
    /// Whether `uid` needs to manage networks to detach this port.
    pub fn needs_manage(self, uid: u32) -> bool {
        match self {
            PortClaim::Tap { owner } => owner != uid,
            PortClaim::Veth { by } => by != uid,
            PortClaim::Foreign => true,
        }
    }
}

/// Whether a bridge port can be a guest at all: a veth or a tap. A NIC (an
/// existing bridge's uplink, a bond, a VLAN) never is.
fn is_guest_kind(link: &Link) -> bool {
    matches!(link.kind.as_deref(), Some("veth") | Some("tun"))
}

/// A port that could not be made, and the link made before the step that
/// failed (to be deleted by its ifindex, never by its name).
struct Unmade {
    made: Option<u32>,
    error: ServiceError,
}

/// Opens a caller's netns path on a blocking thread, with a deadline: the
/// path may cross a hung mount (NFS, FUSE), and a stuck open must cost the
/// caller its call, not the service a worker thread.
async fn open_netns(path: std::path::PathBuf) -> Result<File, ServiceError> {
    const DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);
    let shown = path.display().to_string();
    let opening = tokio::task::spawn_blocking(move || crate::host::netns::open(&path));
    match tokio::time::timeout(DEADLINE, opening).await {
        Ok(Ok(Ok(file))) => Ok(file),
        Ok(Ok(Err(e))) => Err(ServiceError::InvalidArgs(format!("netns: {e}"))),
        Ok(Err(e)) => Err(ServiceError::Failed(format!("netns: {e}"))),
        Err(_) => Err(ServiceError::InvalidArgs(format!(
            "netns: {shown} did not open within {DEADLINE:?}"
        ))),
    }
}

/// The uplink NIC a bridged network enslaved: a port, never a guest.
fn uplink_of(plan: &Plan) -> Option<&str> {
    match &plan.bridge {
        BridgePlan::EnslaveUplink { uplink, .. } => Some(uplink.as_str()),
        _ => None,
    }
}

/// Whether the plan's rules keep the guests of the bridge from each other.
pub(super) fn isolates_guests(plan: &Plan) -> bool {
    matches!(&plan.firewall, guestnet_mode_api::FirewallPolicy::Rules { rules, .. }
        if rules.contains(&guestnet_mode_api::FirewallRule::IsolateGuests))
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
            self.guest_events.sender(),
            self.guest_store.clone(),
            self.kernel.clone(),
        ));
        Ok(())
    }

    /// Tells the watcher about an active network's bridge and loads the
    /// records of the ports made for it: those whose link is gone (or is
    /// now someone else's) are forgotten; one an AttachGuest killed before
    /// it was complete (no ifindex recorded) is deleted; a complete one
    /// found off the bridge (a move cut short by a crash) is plugged back.
    pub(super) async fn watch_bridge(&self, name: &NetworkName, plan: &Plan) {
        let Ok(Some(bridge)) = self.kernel.link_by_name(plan.bridge.name().as_str()).await else {
            return;
        };
        let mut records = self.guest_store.load(name);
        let before = records.clone();
        // A network that starts has no records: the host is read only when
        // there is something to check.
        let snapshot = match records.is_empty() {
            true => None,
            false => self.kernel.snapshot().await.ok(),
        };
        if let Some(snapshot) = snapshot {
            let (mut half_made, mut off_bridge) = (Vec::new(), Vec::new());
            records.retain(|ifname, record| match snapshot.link(ifname) {
                None => false,
                Some(l) if !is_ours(record, l, name, Some(bridge.index)) => false,
                Some(l) if l.master != Some(bridge.index) && record.ifindex.is_none() => {
                    half_made.push((l.index, l.name.clone()));
                    false
                }
                Some(l) => {
                    if l.master != Some(bridge.index) {
                        off_bridge.push((l.index, l.name.clone()));
                    }
                    record.ifindex = Some(l.index);
                    true
                }
            });
            for (index, ifname) in half_made {
                tracing::warn!("removing {ifname}, a guest port left half-made by a crash");
                let _ = self.kernel.delete_link(index, &ifname).await;
            }
            for (index, ifname) in off_bridge {
                tracing::warn!("plugging {ifname} back into {}", bridge.name);
                if let Err(e) = self
                    .kernel
                    .set_master(index, &ifname, Some(bridge.index))
                    .await
                {
                    tracing::warn!("plugging {ifname} back: {e}");
                }
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
        // Ports already on the bridge (a restart, a move, an Update) get
        // the isolation the plan asks for, on or off; ports that join
        // later get it from the watcher.
        let isolate_guests = isolates_guests(plan);
        let uplink = uplink_of(plan).map(str::to_owned);
        let was_isolating = {
            let reg = self.registry.read().expect("registry lock");
            reg.bridges
                .get(&bridge.index)
                .is_some_and(|b| b.isolate_guests)
        };
        let ports = match isolate_guests || was_isolating {
            true => self
                .kernel
                .snapshot()
                .await
                .map(|s| s.links)
                .unwrap_or_default(),
            false => Vec::new(),
        };
        for port in ports.iter().filter(|l| l.master == Some(bridge.index)) {
            if uplink.as_deref() == Some(port.name.as_str()) {
                continue;
            }
            let set = self
                .kernel
                .set_port_isolated(port.index, &port.name, isolate_guests)
                .await;
            if let Err(e) = set {
                tracing::warn!("setting the isolation of guest port {}: {e}", port.name);
            }
        }
        let mut reg = self.registry.write().expect("registry lock");
        reg.bridges.insert(
            bridge.index,
            WatchedBridge {
                network: name.to_string(),
                uplink,
                isolate_guests,
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
            self.guest_events.send(GuestEvent {
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

    /// Makes a port for a guest on an active network, asked by uid `by`,
    /// and returns its name. Nothing is left behind when a step fails.
    pub async fn attach_guest(
        &self,
        name: &str,
        guest: &str,
        request: AttachRequest,
        by: u32,
    ) -> Result<String, ServiceError> {
        guests::check_guest_name(guest)?;
        // A path (from a caller allowed to manage networks) is opened
        // before any lock is taken, and only if it is a network namespace
        // (never a FIFO or a device); a caller's descriptor was checked at
        // the bus edge (AttachOptions::check).
        let opened;
        let netns = match &request.kind {
            AttachKind::Veth {
                netns: NetnsSource::Path(path),
                ..
            } => {
                opened = open_netns(path.clone()).await?;
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
        let mac = match request.mac {
            Some(m) => m,
            None => self.free_stable_mac(&net.definition.uuid, guest, &network),
        };
        let record = |ifname: &str| GuestRecord {
            ifname: ifname.to_owned(),
            mac,
            guest: guest.to_owned(),
            port: match request.kind {
                AttachKind::Tap { owner } => PortKind::Tap { owner },
                AttachKind::Veth { .. } => PortKind::Veth { by },
            },
            ifindex: None,
        };
        // Reserved in the registry: known before the port joins the bridge,
        // so its event carries the name, and taken by no other AttachGuest.
        let ifname = self
            .reserve_port_name(&request.kind, &network, &record)
            .await?;
        let mut record = record(&ifname);
        // Recorded before it exists: a crash from here on leaves a record
        // naming the port, so the port is never an orphan.
        let saved = self.guest_store.update(&network, |records| {
            records.insert(ifname.clone(), record.clone());
        });
        if let Err(e) = saved {
            self.release_name(&ifname, &record);
            return Err(ServiceError::failed("recording the guest", e));
        }
        let made = self
            .make_port(&ifname, &request, netns, mac, &bridge, &network)
            .await;
        match made {
            Ok(index) => {
                let unindexed = record.clone();
                record.ifindex = Some(index);
                {
                    let mut reg = self.registry.write().expect("registry lock");
                    if let Some(p) = reg.records.get_mut(&ifname) {
                        if p.record == unindexed {
                            p.record.ifindex = Some(index);
                        }
                    }
                }
                let saved = self.guest_store.update(&network, |records| {
                    records.insert(ifname.clone(), record);
                });
                if let Err(e) = saved {
                    tracing::warn!("recording the ifindex of {ifname}: {e}");
                }
                Ok(ifname)
            }
            Err(Unmade { made, error }) => {
                // Only the link this call made goes, by its ifindex.
                if let Some(index) = made {
                    let _ = self.kernel.delete_link(index, &ifname).await;
                }
                self.release_name(&ifname, &record);
                if let Err(e) = self.guest_store.update(&network, |r| {
                    if r.get(&ifname) == Some(&record) {
                        r.remove(&ifname);
                    }
                }) {
                    tracing::warn!("forgetting the failed guest port {ifname}: {e}");
                }
                Err(error)
            }
        }
    }

    /// The first `gntapN` or `gnvethN` that is neither one of our ports
    /// (or a name another AttachGuest holds) nor any other link of the
    /// host, reserved for this call under the registry's lock.
    async fn reserve_port_name(
        &self,
        kind: &AttachKind,
        network: &NetworkName,
        record: &(dyn Fn(&str) -> GuestRecord + Sync),
    ) -> Result<String, ServiceError> {
        let prefix = match kind {
            AttachKind::Tap { .. } => "gntap",
            AttachKind::Veth { .. } => "gnveth",
        };
        for i in 0..10_000 {
            let candidate = format!("{prefix}{i}");
            {
                let mut reg = self.registry.write().expect("registry lock");
                if reg.records.contains_key(&candidate) {
                    continue;
                }
                reg.records.insert(
                    candidate.clone(),
                    Port {
                        network: network.clone(),
                        record: record(&candidate),
                    },
                );
            }
            match self.kernel.link_by_name(&candidate).await {
                Ok(None) => return Ok(candidate),
                Ok(Some(_)) => self.release_name(&candidate, &record(&candidate)),
                Err(e) => {
                    self.release_name(&candidate, &record(&candidate));
                    return Err(ServiceError::failed("looking for a free interface name", e));
                }
            }
        }
        Err(ServiceError::Failed("no free interface name".into()))
    }

    /// Gives back a name this call reserved (and only if it still holds it).
    fn release_name(&self, ifname: &str, record: &GuestRecord) {
        let mut reg = self.registry.write().expect("registry lock");
        if reg.records.get(ifname).is_some_and(|p| &p.record == record) {
            reg.records.remove(ifname);
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
    /// bridge; returns its ifindex. On failure, says which link it made.
    async fn make_port(
        &self,
        ifname: &str,
        request: &AttachRequest,
        netns: Option<&File>,
        mac: MacAddr,
        bridge: &Link,
        network: &NetworkName,
    ) -> Result<u32, Unmade> {
        let failed = |made: Option<u32>, e: &dyn std::fmt::Display| Unmade {
            made,
            error: ServiceError::Failed(format!("attaching {ifname}: {e}")),
        };
        let index = match (&request.kind, netns) {
            (AttachKind::Tap { owner }, _) => {
                crate::host::tap::create(ifname, *owner).map_err(|e| failed(None, &e))?;
                let link = self
                    .kernel
                    .link_by_name(ifname)
                    .await
                    .map_err(|e| failed(None, &e))?
                    .ok_or_else(|| failed(None, &"the tap vanished"))?;
                self.kernel
                    .set_mtu(link.index, ifname, bridge.mtu)
                    .await
                    .map_err(|e| failed(Some(link.index), &e))?;
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
                    .map_err(|e| failed(None, &e))?
            }
            (AttachKind::Veth { .. }, None) => {
                return Err(failed(None, &"no network namespace was opened"))
            }
        };
        let failed = |e: &dyn std::fmt::Display| failed(Some(index), e);
        self.kernel
            .set_alias(index, ifname, &port_alias(network.as_str()))
            .await
            .map_err(|e| failed(&e))?;
        crate::host::sysctl::disable_ipv6_on_port(ifname);
        self.kernel
            .set_master(index, ifname, Some(bridge.index))
            .await
            .map_err(|e| failed(&e))?;
        // Isolated before it is up, so no frame of the new guest reaches
        // another guest first (the watcher isolates ports others plug in).
        let isolate = {
            let reg = self.registry.read().expect("registry lock");
            reg.bridges
                .get(&bridge.index)
                .is_some_and(|b| b.isolate_guests)
        };
        if isolate {
            self.kernel
                .set_port_isolated(index, ifname, true)
                .await
                .map_err(|e| failed(&e))?;
        }
        self.kernel
            .set_up(index, ifname)
            .await
            .map_err(|e| failed(&e))?;
        Ok(index)
    }

    /// Whose port `ifname` of network `name` is, as far as the records
    /// say (the bus edge asks before it knows whether to ask polkit for
    /// more; [`Networks::detach_guest`] checks again under the lock).
    pub fn port_claim(&self, name: &str, ifname: &str) -> PortClaim {
        let Ok(network) = NetworkName::new(name) else {
            return PortClaim::Foreign;
        };
        match self.guest_store.load(&network).get(ifname).map(|r| &r.port) {
            Some(PortKind::Tap { owner }) => PortClaim::Tap { owner: *owner },
            Some(PortKind::Veth { by }) => PortClaim::Veth { by: *by },
            None => PortClaim::Foreign,
        }
    }

    /// Removes a port guestnetd made for this network, or releases a guest
    /// someone else put on the bridge (leaving it otherwise alone). Only
    /// guests: a bridged network's uplink or any NIC is refused, and on an
    /// existing bridge (the admin's) only guestnet's own ports. Another
    /// uid's tap, or a port guestnet did not make, only for a caller who
    /// manages networks.
    pub async fn detach_guest(
        &self,
        name: &str,
        ifname: &str,
        who: &Detacher,
    ) -> Result<(), ServiceError> {
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
        if !is_guest_kind(&port) {
            return Err(ServiceError::InvalidArgs(format!(
                "{ifname:?} is a {} on the bridge of {name:?}, not a guest",
                port.kind.as_deref().unwrap_or("network interface")
            )));
        }
        let record = self
            .guest_store
            .load(&network)
            .remove(ifname)
            .filter(|r| is_ours(r, &port, &network, Some(bridge.index)));
        if record.is_none() && matches!(plan.bridge, BridgePlan::Existing { .. }) {
            return Err(ServiceError::InvalidArgs(format!(
                "{ifname:?} was not attached through guestnet, and {} is not guestnet's \
                 bridge: guestnet releases only its own ports there",
                bridge.name
            )));
        }
        let claim = match &record {
            Some(r) => match r.port {
                PortKind::Tap { owner } => PortClaim::Tap { owner },
                PortKind::Veth { by } => PortClaim::Veth { by },
            },
            None => PortClaim::Foreign,
        };
        if claim.needs_manage(who.uid) && !who.manages {
            return Err(ServiceError::AccessDenied(match claim {
                PortClaim::Tap { owner } => format!(
                    "{ifname} is the tap of uid {owner}: uid {} may detach only its own \
                     guests without {MANAGE_NETWORKS}",
                    who.uid
                ),
                PortClaim::Veth { by } => format!(
                    "{ifname} is a veth attached by uid {by}: uid {} may detach only its \
                     own guests without {MANAGE_NETWORKS}",
                    who.uid
                ),
                PortClaim::Foreign => format!(
                    "{ifname} was not attached through guestnet: releasing it needs \
                     {MANAGE_NETWORKS}"
                ),
            }));
        }
        let result = match record {
            Some(_) => {
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
            None => self.kernel.set_master(port.index, ifname, None).await,
        };
        result.map_err(|e| ServiceError::failed(&format!("detaching {ifname}"), e))
    }

    /// Moves a network's guest ports from one bridge to another (an Update
    /// that must make the bridge anew): released from `from` before it
    /// goes, plugged into `to` once it is there. Returns the ports moved.
    /// On a bridge of guestnet's own, every guest port moves (guestnet's
    /// and anyone's); on an existing bridge, which stays, only guestnet's:
    /// the host's NIC and other tools' ports stay where their owner put them.
    pub(super) async fn release_ports(&self, name: &NetworkName, plan: &Plan) -> Vec<Link> {
        let Ok(snapshot) = self.kernel.snapshot().await else {
            return Vec::new();
        };
        let Some(bridge) = snapshot.link(plan.bridge.name().as_str()) else {
            return Vec::new();
        };
        let existing = matches!(plan.bridge, BridgePlan::Existing { .. });
        let ours = port_alias(name.as_str());
        let ports: Vec<Link> = snapshot
            .links
            .iter()
            .filter(|l| l.master == Some(bridge.index) && is_guest_kind(l))
            .filter(|l| !existing || l.alias.as_deref() == Some(&ours))
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
