//! Living with firewalld. When `org.fedoraproject.FirewallD1` answers on the
//! bus, firewalld's own table (`inet firewalld`) rejects forwarded traffic
//! of interfaces in its default zone, and an accept in guestnet's table
//! cannot override a reject in another table. So guestnet puts the bridge
//! of every active network that has firewall rules (nat, routed, isolated)
//! into a firewalld zone at runtime, takes it out when the network stops,
//! and puts them all back whenever firewalld reloads (its `Reloaded`
//! signal: a reload forgets runtime interface bindings) or a firewalld
//! (re)appears on the bus (`NameOwnerChanged`).
//!
//! Which zone: two zones guestnet ships as files (`dbus/data/firewalld/`,
//! installed under /usr/lib/firewalld by scripts/install.sh), made as
//! libvirt makes its `libvirt` zone: target ACCEPT, so what guests
//! forward is accepted (firewalld applies a zone's target to forwarded
//! traffic and its services and rich rules to traffic for the host), with
//! services dhcp and dns, protocols icmp and ipv6-icmp, and a last rich
//! rule (priority 32767) that rejects any other traffic for the host.
//! - nat and isolated bridges go into [`GUESTNET_ZONE`] (`guestnet`);
//!   nothing from outside needs to open a connection into these networks.
//! - routed bridges go into [`ROUTED_ZONE`] (`guestnet-routed`), the same
//!   zone under another name, with the policy [`ROUTED_POLICY`]
//!   (`guestnet-routed-in`: ingress ANY, egress `guestnet-routed`, target
//!   ACCEPT), which lets a LAN host (whose interface is in firewalld's
//!   default zone) open connections to routed guests by their own address,
//!   which firewalld otherwise rejects. libvirt does the same with
//!   `libvirt-routed` and `libvirt-routed-in`.
//!
//! The ports a definition opens on the host (`[host] allow`) are added to
//! the bridge's zone at runtime (`addPort`), and removed when no network
//! in that zone wants them; a port firewalld already had open
//! (`ALREADY_ENABLED`: an administrator's) is used but never removed by
//! guestnet. A reload forgets them with the bindings, and
//! they come back with them. A zone is shared by every bridge in it, so
//! firewalld lets through the union of those networks' ports; what each
//! network's guests reach is decided by guestnet's own table, whose
//! input rules name each network's own bridge and whose rejects no accept
//! in firewalld's table overrides. firewalld's zone is the outer wall (it
//! still holds if guestnet's table is deleted), guestnet's the exact one.
//!
//! Why files and not D-Bus calls for the zones: firewalld 1.3 creates
//! zones and policies only in its permanent configuration (then a reload),
//! never at runtime, and guestnet changes no one's persistent
//! configuration; a package shipping files under /usr/lib/firewalld is how
//! that is meant to be done. When the current firewalld does not know one
//! of guestnet's zones (the files are not installed), its bridges fall back
//! to `trusted`, with one warning: guests still reach out, guestnet's own
//! table still limits what they reach on the host, but the LAN cannot
//! reach routed guests.
//!
//! Nothing is persisted in firewalld; only runtime bindings and ports are
//! made. guestnet never calls firewalld unless the name has an owner (no
//! bus activation of a firewalld that is not running). Failures are logged
//! and never fail a network.

use futures::StreamExt;
use guestnet_mode_api::HostPort;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use zbus::{Connection, MatchRule, MessageStream};

/// firewalld's bus name (and its main interface).
pub const NAME: &str = "org.fedoraproject.FirewallD1";
const PATH: &str = "/org/fedoraproject/FirewallD1";
const ZONE_IFACE: &str = "org.fedoraproject.FirewallD1.zone";
const POLICY_IFACE: &str = "org.fedoraproject.FirewallD1.policy";
/// Where bridges go when guestnet's zone for them is not installed.
pub const TRUSTED: &str = "trusted";
/// The zone guestnet ships for nat and isolated bridges.
pub const GUESTNET_ZONE: &str = "guestnet";
/// The zone guestnet ships for routed bridges.
pub const ROUTED_ZONE: &str = "guestnet-routed";
/// The policy guestnet ships that lets other zones into [`ROUTED_ZONE`].
pub const ROUTED_POLICY: &str = "guestnet-routed-in";

/// What a bridge needs from firewalld, by the mode of its network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A routed network: the LAN opens connections to its guests.
    Routed,
    /// A nat or isolated network: nothing from outside comes in.
    Closed,
}

/// A bridge firewalld should know: what its network needs, and the host
/// ports its definition opens to its guests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    pub kind: Kind,
    pub ports: Vec<HostPort>,
}

/// Which of guestnet's zones the current firewalld has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Known {
    guestnet: bool,
    routed: bool,
}

#[derive(Debug, Default)]
struct Inner {
    conn: Option<Connection>,
    /// Bridges that should be in a zone, and what they need.
    wanted: BTreeMap<String, Bridge>,
    /// Bridges guestnet has put into a zone of the current firewalld, and
    /// that zone.
    placed: BTreeMap<String, Zone>,
    /// Ports guestnet has opened at runtime in its zones of the current
    /// firewalld.
    opened: BTreeSet<(Zone, HostPort)>,
    /// Wanted ports firewalld already had open when guestnet came to open
    /// them (`ALREADY_ENABLED`: an administrator's, at runtime or in the
    /// zone's file): counted as open, but never closed by guestnet.
    kept: BTreeSet<(Zone, HostPort)>,
    /// Which of guestnet's zones the current firewalld knows; None until
    /// asked, and again after a reload or a new firewalld (either may come
    /// with the files installed or removed).
    zones: Option<Known>,
    /// The fallback warning for each zone has been logged since the zone
    /// was last seen, so it is not repeated on every reload.
    warned: Known,
}

impl Inner {
    /// Forgets what guestnet knew of a firewalld that is gone (or
    /// reloaded): its bindings and runtime ports went with it, and the
    /// next one may have other zones.
    fn forget_firewalld(&mut self) {
        self.placed.clear();
        self.opened.clear();
        self.kept.clear();
        self.zones = None;
    }

    /// What a reconciliation must do now, with `fresh` as after a reload
    /// or a new firewalld: nothing (None: no connection yet, or every
    /// bridge already where it belongs), or talk to firewalld.
    fn next_step(&mut self, fresh: bool) -> Option<Step> {
        if fresh {
            self.forget_firewalld();
        }
        let conn = self.conn.clone()?;
        let must_ask = self.work(fresh)?;
        Some(Step {
            conn,
            wanted: self.wanted.clone(),
            placed: self.placed.clone(),
            opened: self.opened.clone(),
            kept: self.kept.clone(),
            zones: self.zones,
            must_ask,
        })
    }

    /// Whether firewalld must be called: None when every wanted bridge is
    /// where it belongs with its ports open and nothing need be asked (and
    /// not `fresh`), else whether it must first be asked which of
    /// guestnet's zones it knows.
    fn work(&self, fresh: bool) -> Option<bool> {
        let must_ask = self.zones.is_none() && !self.wanted.is_empty();
        let known = self.zones.unwrap_or_default();
        let in_place = desired(&self.wanted, known) == self.placed
            && desired_ports(&self.wanted, known)
                == self.opened.union(&self.kept).copied().collect();
        (fresh || must_ask || !in_place).then_some(must_ask)
    }
}

/// A copy of what a reconciliation needs, taken under the lock and used
/// after it is released.
struct Step {
    conn: Connection,
    wanted: BTreeMap<String, Bridge>,
    placed: BTreeMap<String, Zone>,
    opened: BTreeSet<(Zone, HostPort)>,
    kept: BTreeSet<(Zone, HostPort)>,
    zones: Option<Known>,
    must_ask: bool,
}

/// What firewalld did with a port guestnet asked it to open or close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    /// It opened (closed) the port.
    Changed,
    /// The port was open (closed) already: `ALREADY_ENABLED`
    /// (`NOT_ENABLED`).
    AlreadySo,
}

impl Inner {
    /// Records what became of `port` in `zone`. A port guestnet opened is
    /// its own to close later; one that was open already is someone
    /// else's and is only kept, so guestnet never closes a port an
    /// administrator opened. A port closed (or found closed) is no longer
    /// guestnet's.
    fn record_port(&mut self, zone: Zone, port: HostPort, adding: bool, applied: Applied) {
        let key = (zone, port);
        match (adding, applied) {
            (true, Applied::Changed) => {
                self.opened.insert(key);
            }
            (true, Applied::AlreadySo) => {
                self.kept.insert(key);
            }
            (false, _) => {
                self.opened.remove(&key);
            }
        }
    }
}

/// The ports a reconciliation must ask firewalld about: with `adding`, the
/// `wanted` ones neither opened nor kept; else the ones guestnet opened
/// that are no longer wanted (kept ones are only forgotten, never closed).
fn ports_todo(
    wanted: &BTreeSet<(Zone, HostPort)>,
    opened: &BTreeSet<(Zone, HostPort)>,
    kept: &BTreeSet<(Zone, HostPort)>,
    adding: bool,
) -> Vec<(Zone, HostPort)> {
    if adding {
        wanted
            .iter()
            .filter(|p| !opened.contains(p) && !kept.contains(p))
            .copied()
            .collect()
    } else {
        opened.difference(wanted).copied().collect()
    }
}

/// guestnet's dealings with firewalld: its connection, the bridges that
/// should be in a zone and those that are. Made once (in main), handed to
/// the networks (which declare the bridges) and watched on the bus
/// ([`Firewalld::watch`]). The record is behind a std mutex never held
/// across an `.await`; the calls to firewalld are ordered by `gate`.
#[derive(Debug, Default)]
pub struct Firewalld {
    inner: Mutex<Inner>,
    /// Serializes reconciliations, whose calls to firewalld are awaited.
    /// It guards no data (that is `inner`'s), and what it is held across
    /// are firewalld's own D-Bus calls, never a caller's input.
    gate: tokio::sync::Mutex<()>,
}

impl Firewalld {
    /// No connection yet: bridges are only remembered until [`watch`].
    ///
    /// [`watch`]: Firewalld::watch
    pub fn new() -> Self {
        Self::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Declares the bridges that should be in a firewalld zone (those of
    /// the active networks with firewall rules, with what each needs) and,
    /// when firewalld is on the bus, makes it so. Before [`watch`] has a
    /// connection, only remembers.
    ///
    /// [`watch`]: Firewalld::watch
    pub async fn set_bridges(&self, bridges: impl IntoIterator<Item = (String, Bridge)>) {
        self.inner().wanted = bridges.into_iter().collect();
        self.reconcile(false).await;
    }

    /// Watches firewalld on `conn` for as long as the connection lives:
    /// applies the current bridges now, again after each firewalld
    /// `Reloaded`, and when a firewalld takes the name.
    pub async fn watch(self: &Arc<Self>, conn: &Connection) -> zbus::Result<()> {
        let reloaded = MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender(NAME)?
            .interface(NAME)?
            .member("Reloaded")?
            .build();
        let owner = MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender("org.freedesktop.DBus")?
            .interface("org.freedesktop.DBus")?
            .member("NameOwnerChanged")?
            .arg(0, NAME)?
            .build();
        let reloaded = MessageStream::for_match_rule(reloaded, conn, None).await?;
        let owner = MessageStream::for_match_rule(owner, conn, None).await?;
        self.inner().conn = Some(conn.clone());
        self.reconcile(true).await;
        let mut events =
            futures::stream::select(reloaded.map(|m| (true, m)), owner.map(|m| (false, m)));
        let me = Arc::clone(self);
        tokio::spawn(async move {
            while let Some((is_reload, msg)) = events.next().await {
                let Ok(msg) = msg else { continue };
                if is_reload {
                    tracing::info!(
                        "firewalld reloaded; putting guestnet's bridges back into their zones"
                    );
                    me.reconcile(true).await;
                    continue;
                }
                let Ok((_, _, new_owner)) = msg.body().deserialize::<(String, String, String)>()
                else {
                    continue;
                };
                if new_owner.is_empty() {
                    tracing::info!("firewalld left the bus");
                    me.inner().forget_firewalld();
                } else {
                    tracing::info!(
                        "firewalld is on the bus; putting guestnet's bridges into their zones"
                    );
                    me.reconcile(true).await;
                }
            }
        });
        Ok(())
    }

    /// Makes firewalld's zones hold the wanted bridges; with `fresh`, as
    /// if none had been placed and no zone were known (after a reload or a
    /// new firewalld).
    async fn reconcile(&self, fresh: bool) {
        let _gate = self.gate.lock().await;
        let Some(step) = self.inner().next_step(fresh) else {
            return;
        };
        if !has_owner(&step.conn).await {
            self.inner().forget_firewalld();
            return;
        }
        let known = match step.zones {
            Some(known) => known,
            None if step.must_ask => self.learn_zones(&step.conn).await,
            None => Known::default(),
        };
        let ports = desired_ports(&step.wanted, known);
        // Ports open before a bridge arrives, and close after it left.
        self.open_ports(&step.conn, &ports, &step, true).await;
        self.place(&step.conn, &desired(&step.wanted, known), &step.placed)
            .await;
        self.open_ports(&step.conn, &ports, &step, false).await;
    }

    /// Asks the current firewalld which of guestnet's zones it knows,
    /// remembers the answer until the next reload, and says what follows:
    /// a warning (once) for each zone that is missing, and for the routed
    /// policy. When firewalld cannot answer, says none (bridges go to
    /// `trusted`, which at least keeps guests reaching out) and asks again
    /// next time.
    async fn learn_zones(&self, conn: &Connection) -> Known {
        let zones = match list(conn, ZONE_IFACE, "getZones").await {
            Ok(zones) => zones,
            Err(e) => {
                tracing::warn!(
                    "firewalld: cannot list its zones ({e}); guestnet's bridges go into zone {TRUSTED} for now"
                );
                return Known::default();
            }
        };
        let known = Known {
            guestnet: zones.iter().any(|z| z == GUESTNET_ZONE),
            routed: zones.iter().any(|z| z == ROUTED_ZONE),
        };
        let warn = {
            let mut i = self.inner();
            i.zones = Some(known);
            let warn = Known {
                guestnet: !known.guestnet && !i.warned.guestnet,
                routed: !known.routed && !i.warned.routed,
            };
            i.warned = Known {
                guestnet: !known.guestnet,
                routed: !known.routed,
            };
            warn
        };
        if warn.guestnet {
            tracing::warn!(
                "firewalld has no zone {GUESTNET_ZONE}: its file (guestnet.xml) is not installed \
                 under /usr/lib/firewalld/zones (scripts/install.sh does that; then firewall-cmd --reload). \
                 nat and isolated networks' bridges go into zone {TRUSTED} instead, which lets their \
                 guests reach every host service as far as firewalld is concerned; guestnet's own \
                 table still limits them to DHCP, DNS, ping and the ports their definitions allow"
            );
        }
        if warn.routed {
            tracing::warn!(
                "firewalld has no zone {ROUTED_ZONE}: its file (guestnet-routed.xml) is not installed \
                 under /usr/lib/firewalld/zones (scripts/install.sh does that; then firewall-cmd --reload). \
                 Routed networks' bridges go into zone {TRUSTED} instead: their guests reach out, \
                 but firewalld refuses connections from the LAN into routed networks"
            );
        }
        if known.routed {
            warn_if_no_policy(conn).await;
        }
        known
    }

    /// With `adding`, opens the `wanted` ports not yet open; else closes
    /// the ones guestnet opened that are no longer wanted, and forgets the
    /// kept ones no longer wanted without closing them. Records what
    /// worked ([`Inner::record_port`]).
    async fn open_ports(
        &self,
        conn: &Connection,
        wanted: &BTreeSet<(Zone, HostPort)>,
        step: &Step,
        adding: bool,
    ) {
        if !adding {
            self.inner().kept.retain(|p| wanted.contains(p));
        }
        for (zone, port) in ports_todo(wanted, &step.opened, &step.kept, adding) {
            let (ports, proto) = (port.ports(), port.protocol.as_str());
            let (zone_s, ports_s) = (zone.name(), ports.as_str());
            let called = if adding {
                let args = (zone_s, ports_s, proto, 0i32);
                call_zone(conn, "addPort", &args, "ALREADY_ENABLED").await
            } else {
                let args = (zone_s, ports_s, proto);
                call_zone(conn, "removePort", &args, "NOT_ENABLED").await
            };
            match called {
                Ok(applied) => {
                    if adding && applied == Applied::AlreadySo {
                        tracing::info!(
                            "firewalld: {port} was open already in zone {zone}; \
                             guestnet leaves it to whoever opened it"
                        );
                    } else {
                        tracing::info!(
                            "firewalld: {port} {} in zone {zone}",
                            if adding { "opened" } else { "closed" }
                        );
                    }
                    self.inner().record_port(zone, port, adding, applied);
                }
                Err(e) => tracing::warn!(
                    "firewalld: cannot {} {port} in zone {zone}: {e}",
                    if adding { "open" } else { "close" }
                ),
            }
        }
    }

    /// Moves each bridge into its zone (one call also takes it out of the
    /// zone it was in) and takes the unwanted ones out, recording what
    /// worked.
    async fn place(
        &self,
        conn: &Connection,
        desired: &BTreeMap<String, Zone>,
        placed: &BTreeMap<String, Zone>,
    ) {
        for (br, zone) in desired {
            if placed.get(br) == Some(zone) {
                continue;
            }
            match zone_call(conn, "changeZoneOfInterface", &(zone.name(), br)).await {
                Ok(_) => {
                    tracing::info!("firewalld: {br} is in zone {zone}");
                    self.inner().placed.insert(br.clone(), *zone);
                }
                Err(e) => tracing::warn!("firewalld: cannot put {br} into zone {zone}: {e}"),
            }
        }
        for (br, zone) in placed {
            if desired.contains_key(br) {
                continue;
            }
            match zone_call(conn, "removeInterface", &(zone.name(), br)).await {
                Ok(_) => tracing::info!("firewalld: {br} left zone {zone}"),
                Err(e) => tracing::warn!("firewalld: cannot take {br} out of zone {zone}: {e}"),
            }
            self.inner().placed.remove(br);
        }
    }
}

async fn has_owner(conn: &Connection) -> bool {
    let Ok(dbus) = zbus::fdo::DBusProxy::new(conn).await else {
        return false;
    };
    let Ok(name) = zbus::names::BusName::try_from(NAME) else {
        return false;
    };
    dbus.name_has_owner(name).await.unwrap_or(false)
}

async fn zone_call(conn: &Connection, method: &str, args: &(&str, &str)) -> zbus::Result<String> {
    conn.call_method(Some(NAME), PATH, Some(ZONE_IFACE), method, args)
        .await?
        .body()
        .deserialize::<String>()
}

/// Calls a zone method whose error naming `done` (firewalld's
/// `ALREADY_ENABLED`, `NOT_ENABLED`) means the change was already made.
async fn call_zone<A>(
    conn: &Connection,
    method: &str,
    args: &A,
    done: &str,
) -> zbus::Result<Applied>
where
    A: serde::Serialize + zbus::zvariant::DynamicType,
{
    match conn
        .call_method(Some(NAME), PATH, Some(ZONE_IFACE), method, args)
        .await
    {
        Ok(_) => Ok(Applied::Changed),
        Err(zbus::Error::MethodError(_, Some(text), _)) if text.contains(done) => {
            Ok(Applied::AlreadySo)
        }
        Err(e) => Err(e),
    }
}

/// The names firewalld lists with `method` (no arguments, returns `as`) on
/// `iface`: its runtime zones or policies.
async fn list(conn: &Connection, iface: &str, method: &str) -> zbus::Result<Vec<String>> {
    conn.call_method(Some(NAME), PATH, Some(iface), method, &())
        .await?
        .body()
        .deserialize::<Vec<String>>()
}

/// The zone without its policy still works as `trusted` does, but the LAN
/// cannot get in; say so rather than leave the user guessing.
async fn warn_if_no_policy(conn: &Connection) {
    match list(conn, POLICY_IFACE, "getPolicies").await {
        Ok(p) if p.iter().any(|p| p == ROUTED_POLICY) => {
            tracing::info!("firewalld: routed networks' bridges go into zone {ROUTED_ZONE}");
        }
        Ok(_) => tracing::warn!(
            "firewalld knows zone {ROUTED_ZONE} but not policy {ROUTED_POLICY} \
             (guestnet-routed-in.xml under /usr/lib/firewalld/policies): \
             firewalld refuses connections from the LAN into routed networks"
        ),
        Err(e) => tracing::warn!("firewalld: cannot list its policies: {e}"),
    }
}

/// A zone guestnet puts bridges into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Zone {
    /// [`TRUSTED`].
    Trusted,
    /// [`GUESTNET_ZONE`].
    Guestnet,
    /// [`ROUTED_ZONE`].
    Routed,
}

impl Zone {
    fn name(&self) -> &str {
        match self {
            Zone::Trusted => TRUSTED,
            Zone::Guestnet => GUESTNET_ZONE,
            Zone::Routed => ROUTED_ZONE,
        }
    }
}

impl std::fmt::Display for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The zone a bridge of `kind` goes into, `known` saying which of
/// guestnet's zones firewalld knows.
fn zone_for(kind: Kind, known: Known) -> Zone {
    match kind {
        Kind::Routed if known.routed => Zone::Routed,
        Kind::Closed if known.guestnet => Zone::Guestnet,
        Kind::Routed | Kind::Closed => Zone::Trusted,
    }
}

/// Where each wanted bridge belongs.
fn desired(wanted: &BTreeMap<String, Bridge>, known: Known) -> BTreeMap<String, Zone> {
    wanted
        .iter()
        .map(|(br, b)| (br.clone(), zone_for(b.kind, known)))
        .collect()
}

/// The ports guestnet's zones must have open: in each, those of the
/// bridges it holds. `trusted` accepts everything already and is never
/// changed.
fn desired_ports(wanted: &BTreeMap<String, Bridge>, known: Known) -> BTreeSet<(Zone, HostPort)> {
    wanted
        .values()
        .map(|b| (zone_for(b.kind, known), b))
        .filter(|(zone, _)| *zone != Zone::Trusted)
        .flat_map(|(zone, b)| b.ports.iter().map(move |p| (zone, *p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge(kind: Kind, ports: &[&str]) -> Bridge {
        Bridge {
            kind,
            ports: ports.iter().map(|p| p.parse().unwrap()).collect(),
        }
    }

    fn wanted(bridges: &[(&str, Kind)]) -> BTreeMap<String, Bridge> {
        bridges
            .iter()
            .map(|(b, k)| (b.to_string(), bridge(*k, &[])))
            .collect()
    }

    const ALL: Known = Known {
        guestnet: true,
        routed: true,
    };

    #[test]
    fn bridges_go_to_guestnets_zones_only_when_firewalld_knows_them() {
        let w = wanted(&[("gnbrn", Kind::Closed), ("gnbrr", Kind::Routed)]);
        let with = desired(&w, ALL);
        assert_eq!(with["gnbrn"], Zone::Guestnet);
        assert_eq!(with["gnbrn"].to_string(), GUESTNET_ZONE);
        assert_eq!(with["gnbrr"], Zone::Routed);
        assert_eq!(with["gnbrr"].to_string(), ROUTED_ZONE);
        let without = desired(&w, Known::default());
        assert_eq!(without["gnbrn"], Zone::Trusted);
        assert_eq!(without["gnbrr"], Zone::Trusted);
        assert_eq!(without["gnbrr"].name(), TRUSTED);
    }

    #[test]
    fn a_zone_opens_the_union_of_its_bridges_ports_and_trusted_none() {
        let mut w = BTreeMap::new();
        w.insert("a".to_owned(), bridge(Kind::Closed, &["tcp/22"]));
        w.insert("b".to_owned(), bridge(Kind::Closed, &["tcp/22", "udp/69"]));
        w.insert("c".to_owned(), bridge(Kind::Routed, &["tcp/80"]));
        let p = |z: Zone, s: &str| (z, s.parse::<HostPort>().unwrap());
        assert_eq!(
            desired_ports(&w, ALL),
            BTreeSet::from([
                p(Zone::Guestnet, "tcp/22"),
                p(Zone::Guestnet, "udp/69"),
                p(Zone::Routed, "tcp/80"),
            ])
        );
        assert!(desired_ports(&w, Known::default()).is_empty());
    }

    #[test]
    fn firewalld_is_called_only_when_something_is_out_of_place() {
        let mut i = Inner {
            wanted: wanted(&[("gnbrn", Kind::Closed)]),
            ..Inner::default()
        };
        // First ask which zones firewalld knows.
        assert_eq!(i.work(false), Some(true));
        i.zones = Some(ALL);
        assert_eq!(i.work(false), Some(false), "not placed yet");
        i.placed.insert("gnbrn".into(), Zone::Guestnet);
        assert_eq!(i.work(false), None, "all in place");
        assert_eq!(i.work(true), Some(false), "a reload places again");
        // A port to open.
        i.wanted.get_mut("gnbrn").unwrap().ports = vec!["tcp/22".parse().unwrap()];
        assert_eq!(i.work(false), Some(false));
        i.opened.insert((Zone::Guestnet, "tcp/22".parse().unwrap()));
        assert_eq!(i.work(false), None);
        // A routed bridge.
        i.wanted.insert("gnbrr".into(), bridge(Kind::Routed, &[]));
        assert_eq!(i.work(false), Some(false));
        i.placed.insert("gnbrr".into(), Zone::Routed);
        assert_eq!(i.work(false), None);
        // A bridge no longer wanted: take it out, and close its port.
        i.wanted.remove("gnbrn");
        assert_eq!(i.work(false), Some(false));
        // Without a connection there is nothing to do yet, and a fresh
        // start forgets the old firewalld's bindings, ports and zones.
        assert!(i.next_step(true).is_none());
        assert!(i.placed.is_empty() && i.opened.is_empty() && i.zones.is_none());
    }

    #[test]
    fn a_port_open_before_guestnet_asked_is_never_closed_by_it() {
        let ssh: HostPort = "tcp/22".parse().unwrap();
        let web: HostPort = "tcp/80".parse().unwrap();
        let mut i = Inner {
            wanted: wanted(&[("gnbrn", Kind::Closed)]),
            zones: Some(ALL),
            ..Inner::default()
        };
        i.placed.insert("gnbrn".into(), Zone::Guestnet);
        i.wanted.get_mut("gnbrn").unwrap().ports = vec![ssh, web];
        let want = desired_ports(&i.wanted, ALL);
        let todo = ports_todo(&want, &i.opened, &i.kept, true);
        assert_eq!(todo, [(Zone::Guestnet, ssh), (Zone::Guestnet, web)]);
        // firewalld opens tcp/80; an administrator had opened tcp/22.
        i.record_port(Zone::Guestnet, web, true, Applied::Changed);
        i.record_port(Zone::Guestnet, ssh, true, Applied::AlreadySo);
        assert_eq!(i.work(false), None, "both count as open");
        assert!(ports_todo(&want, &i.opened, &i.kept, true).is_empty());
        // The network leaves: only guestnet's own port is closed.
        i.wanted.get_mut("gnbrn").unwrap().ports.clear();
        let want = desired_ports(&i.wanted, ALL);
        assert_eq!(
            ports_todo(&want, &i.opened, &i.kept, false),
            [(Zone::Guestnet, web)]
        );
        i.record_port(Zone::Guestnet, web, false, Applied::Changed);
        assert!(i.opened.is_empty());
        // A port found closed already is no longer guestnet's either.
        i.record_port(Zone::Guestnet, web, true, Applied::Changed);
        i.record_port(Zone::Guestnet, web, false, Applied::AlreadySo);
        assert!(i.opened.is_empty());
        // A reload forgets both.
        i.forget_firewalld();
        assert!(i.kept.is_empty());
    }

    #[test]
    fn two_firewalld_values_share_nothing() {
        let (a, b) = (Firewalld::new(), Firewalld::new());
        a.inner().wanted = wanted(&[("gnbrn", Kind::Closed)]);
        assert!(b.inner().wanted.is_empty());
    }
}
