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
//! Which zone:
//! - nat and isolated bridges go into `trusted` (target ACCEPT, forward
//!   yes), which ships with every firewalld. It lifts firewalld's rejects
//!   for what comes *from* the bridge; nothing from outside needs to open a
//!   connection into these networks.
//! - routed bridges go into [`ROUTED_ZONE`] (`guestnet-routed`), a zone
//!   guestnet ships as a file (`dbus/data/firewalld/`, installed under
//!   /usr/lib/firewalld by scripts/install.sh) together with the policy
//!   [`ROUTED_POLICY`] (`guestnet-routed-in`: ingress ANY, egress
//!   `guestnet-routed`, target ACCEPT). The zone alone is `trusted` under
//!   another name; the policy is what lets a LAN host (whose interface is
//!   in firewalld's default zone) open connections to routed guests by
//!   their own address, which firewalld otherwise rejects. libvirt does the
//!   same with `libvirt-routed` and `libvirt-routed-in`.
//!
//! Why files and not D-Bus calls: firewalld 1.3 creates zones and policies
//! only in its permanent configuration (then a reload), never at runtime,
//! and guestnet changes no one's persistent configuration; a package
//! shipping files under /usr/lib/firewalld is how that is meant to be done.
//! When the current firewalld does not know [`ROUTED_ZONE`] (the files are
//! not installed), routed bridges fall back to `trusted`, with one warning:
//! guests still reach out, but the LAN cannot reach in.
//!
//! In every case, what guests may do is still decided by guestnet's own
//! table, whose drops still apply; the zones only lift firewalld's rejects.
//! Nothing is persisted in firewalld; only runtime bindings are made.
//!
//! guestnet never calls firewalld unless the name has an owner (no bus
//! activation of a firewalld that is not running). Failures are logged and
//! never fail a network.

use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use zbus::{Connection, MatchRule, MessageStream};

/// firewalld's bus name (and its main interface).
pub const NAME: &str = "org.fedoraproject.FirewallD1";
const PATH: &str = "/org/fedoraproject/FirewallD1";
const ZONE_IFACE: &str = "org.fedoraproject.FirewallD1.zone";
const POLICY_IFACE: &str = "org.fedoraproject.FirewallD1.policy";
/// The zone of nat and isolated bridges, and of routed ones when
/// [`ROUTED_ZONE`] is not installed.
pub const TRUSTED: &str = "trusted";
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

#[derive(Debug, Default)]
struct Inner {
    conn: Option<Connection>,
    /// Bridges that should be in a zone, and what they need.
    wanted: BTreeMap<String, Kind>,
    /// Bridges guestnet has put into a zone of the current firewalld, and
    /// that zone.
    placed: BTreeMap<String, Zone>,
    /// Whether the current firewalld knows [`ROUTED_ZONE`]; None until
    /// asked, and again after a reload or a new firewalld (either may come
    /// with the files installed or removed).
    routed_zone: Option<bool>,
    /// The fallback warning has been logged since [`ROUTED_ZONE`] was last
    /// seen, so it is not repeated on every reload.
    warned: bool,
}

impl Inner {
    /// Forgets what guestnet knew of a firewalld that is gone (or
    /// reloaded): its bindings went with it, and the next one may have
    /// other zones.
    fn forget_firewalld(&mut self) {
        self.placed.clear();
        self.routed_zone = None;
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
            routed_zone: self.routed_zone,
            must_ask,
        })
    }

    /// Whether firewalld must be called: None when every wanted bridge is
    /// where it belongs and nothing need be asked (and not `fresh`), else
    /// whether it must first be asked if it knows [`ROUTED_ZONE`].
    fn work(&self, fresh: bool) -> Option<bool> {
        let must_ask =
            self.routed_zone.is_none() && self.wanted.values().any(|k| *k == Kind::Routed);
        let in_place = desired(&self.wanted, self.routed_zone.unwrap_or(false)) == self.placed;
        (fresh || must_ask || !in_place).then_some(must_ask)
    }
}

/// A copy of what a reconciliation needs, taken under the lock and used
/// after it is released.
struct Step {
    conn: Connection,
    wanted: BTreeMap<String, Kind>,
    placed: BTreeMap<String, Zone>,
    routed_zone: Option<bool>,
    must_ask: bool,
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
    pub async fn set_bridges(&self, bridges: impl IntoIterator<Item = (String, Kind)>) {
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
        let routed_zone = match step.routed_zone {
            Some(known) => known,
            None if step.must_ask => self.learn_routed_zone(&step.conn).await,
            None => false,
        };
        self.place(
            &step.conn,
            &desired(&step.wanted, routed_zone),
            &step.placed,
        )
        .await;
    }

    /// Asks the current firewalld whether it knows [`ROUTED_ZONE`],
    /// remembers the answer until the next reload, and says what follows
    /// for routed networks: a warning (once) when the zone is missing or
    /// the policy is. When firewalld cannot answer, says no (routed bridges
    /// go to `trusted`, which at least keeps guests reaching out) and asks
    /// again next time.
    async fn learn_routed_zone(&self, conn: &Connection) -> bool {
        let zones = match list(conn, ZONE_IFACE, "getZones").await {
            Ok(zones) => zones,
            Err(e) => {
                tracing::warn!(
                    "firewalld: cannot list its zones ({e}); routed networks' bridges go into zone {TRUSTED} for now"
                );
                return false;
            }
        };
        let known = zones.iter().any(|z| z == ROUTED_ZONE);
        let warn = {
            let mut i = self.inner();
            i.routed_zone = Some(known);
            let warn = !known && !i.warned;
            i.warned = !known;
            warn
        };
        if warn {
            tracing::warn!(
                "firewalld has no zone {ROUTED_ZONE}: its file (guestnet-routed.xml) is not installed \
                 under /usr/lib/firewalld/zones (scripts/install.sh does that; then firewall-cmd --reload). \
                 Routed networks' bridges go into zone {TRUSTED} instead: their guests reach out, \
                 but firewalld refuses connections from the LAN into routed networks"
            );
        }
        if known {
            warn_if_no_policy(conn).await;
        }
        known
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Zone {
    /// [`TRUSTED`].
    Trusted,
    /// [`ROUTED_ZONE`].
    Routed,
}

impl Zone {
    fn name(&self) -> &str {
        match self {
            Zone::Trusted => TRUSTED,
            Zone::Routed => ROUTED_ZONE,
        }
    }
}

impl std::fmt::Display for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The zone a bridge of `kind` goes into, `routed_zone` saying whether
/// firewalld knows [`ROUTED_ZONE`].
fn zone_for(kind: Kind, routed_zone: bool) -> Zone {
    match kind {
        Kind::Routed if routed_zone => Zone::Routed,
        Kind::Routed | Kind::Closed => Zone::Trusted,
    }
}

/// Where each wanted bridge belongs.
fn desired(wanted: &BTreeMap<String, Kind>, routed_zone: bool) -> BTreeMap<String, Zone> {
    wanted
        .iter()
        .map(|(br, kind)| (br.clone(), zone_for(*kind, routed_zone)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(bridges: &[(&str, Kind)]) -> BTreeMap<String, Kind> {
        bridges.iter().map(|(b, k)| (b.to_string(), *k)).collect()
    }

    #[test]
    fn routed_bridges_go_to_guestnets_zone_only_when_firewalld_knows_it() {
        let w = wanted(&[("gnbrn", Kind::Closed), ("gnbrr", Kind::Routed)]);
        let with = desired(&w, true);
        assert_eq!(with["gnbrn"], Zone::Trusted);
        assert_eq!(with["gnbrr"], Zone::Routed);
        assert_eq!(with["gnbrr"].to_string(), ROUTED_ZONE);
        let without = desired(&w, false);
        assert_eq!(without["gnbrr"], Zone::Trusted);
        assert_eq!(without["gnbrr"].name(), TRUSTED);
    }

    #[test]
    fn firewalld_is_called_only_when_something_is_out_of_place() {
        let mut i = Inner {
            wanted: wanted(&[("gnbrn", Kind::Closed)]),
            ..Inner::default()
        };
        // Not placed yet: place it, without asking about zones.
        assert_eq!(i.work(false), Some(false));
        i.placed.insert("gnbrn".into(), Zone::Trusted);
        assert_eq!(i.work(false), None, "all in place");
        assert_eq!(i.work(true), Some(false), "a reload places again");
        // A routed bridge: first ask whether firewalld knows the zone.
        i.wanted.insert("gnbrr".into(), Kind::Routed);
        assert_eq!(i.work(false), Some(true));
        i.routed_zone = Some(true);
        assert_eq!(i.work(false), Some(false));
        i.placed.insert("gnbrr".into(), Zone::Routed);
        assert_eq!(i.work(false), None);
        // A bridge no longer wanted: take it out.
        i.wanted.remove("gnbrn");
        assert_eq!(i.work(false), Some(false));
        // Without a connection there is nothing to do yet, and a fresh
        // start forgets the old firewalld's bindings and zones.
        assert!(i.next_step(true).is_none());
        assert!(i.placed.is_empty() && i.routed_zone.is_none());
    }

    #[test]
    fn two_firewalld_values_share_nothing() {
        let (a, b) = (Firewalld::new(), Firewalld::new());
        a.inner().wanted = wanted(&[("gnbrn", Kind::Closed)]);
        assert!(b.inner().wanted.is_empty());
    }
}
