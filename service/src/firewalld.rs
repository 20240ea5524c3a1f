//! Living with firewalld. When `org.fedoraproject.FirewallD1` answers on the
//! bus, firewalld's own table (`inet firewalld`) rejects forwarded traffic
//! of interfaces in its default zone, and an accept in guestnet's table
//! cannot override a reject in another table. So guestnet puts the bridge
//! of every active network that has firewall rules (nat, routed, isolated)
//! into firewalld's `trusted` zone at runtime, takes it out when the
//! network stops, and puts them all back whenever firewalld reloads (its
//! `Reloaded` signal: a reload forgets runtime interface bindings) or a
//! firewalld (re)appears on the bus (`NameOwnerChanged`).
//!
//! Why `trusted` and not a zone or policy of guestnet's own (as libvirt's
//! `libvirt` zone): firewalld creates zones and policies only in its
//! permanent configuration (files under /etc/firewalld, then a reload),
//! never at runtime; guestnet changes no one's persistent configuration.
//! `trusted` (target ACCEPT, forward yes) ships with every firewalld and
//! only lifts firewalld's own rejects for the bridge: what guests may do is
//! still decided by guestnet's own table, whose drops still apply.
//! Nothing is persisted in firewalld; only runtime bindings are made.
//!
//! guestnet never calls firewalld unless the name has an owner (no bus
//! activation of a firewalld that is not running). Failures are logged and
//! never fail a network.

use futures::StreamExt;
use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};
use zbus::{Connection, MatchRule, MessageStream};

/// firewalld's bus name (and its main interface).
pub const NAME: &str = "org.fedoraproject.FirewallD1";
const PATH: &str = "/org/fedoraproject/FirewallD1";
const ZONE_IFACE: &str = "org.fedoraproject.FirewallD1.zone";
/// The zone guestnet's bridges go into.
pub const ZONE: &str = "trusted";

#[derive(Default)]
struct Inner {
    conn: Option<Connection>,
    /// Bridges that should be in [`ZONE`].
    wanted: BTreeSet<String>,
    /// Bridges guestnet has put into [`ZONE`] in the current firewalld.
    placed: BTreeSet<String>,
}

fn inner() -> &'static Mutex<Inner> {
    static INNER: OnceLock<Mutex<Inner>> = OnceLock::new();
    INNER.get_or_init(Mutex::default)
}

/// Serializes reconciliations (the calls to firewalld are awaited).
fn gate() -> &'static tokio::sync::Mutex<()> {
    static GATE: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    GATE.get_or_init(tokio::sync::Mutex::default)
}

/// Declares the bridges that should be in firewalld's [`ZONE`] (those of
/// the active networks with firewall rules) and, when firewalld is on the
/// bus, makes it so. Before [`watch`] has a connection, only remembers.
pub async fn set_bridges(bridges: impl IntoIterator<Item = String>) {
    {
        let mut i = inner().lock().expect("firewalld state");
        i.wanted = bridges.into_iter().collect();
    }
    reconcile(false).await;
}

/// Watches firewalld on `conn` for as long as the connection lives: applies
/// the current bridges now, again after each firewalld `Reloaded`, and when
/// a firewalld takes the name.
pub async fn watch(conn: &Connection) -> zbus::Result<()> {
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
    inner().lock().expect("firewalld state").conn = Some(conn.clone());
    reconcile(true).await;
    let mut events =
        futures::stream::select(reloaded.map(|m| (true, m)), owner.map(|m| (false, m)));
    tokio::spawn(async move {
        while let Some((is_reload, msg)) = events.next().await {
            let Ok(msg) = msg else { continue };
            if is_reload {
                tracing::info!(
                    "firewalld reloaded; putting guestnet's bridges back into zone {ZONE}"
                );
                reconcile(true).await;
                continue;
            }
            let Ok((_, _, new_owner)) = msg.body().deserialize::<(String, String, String)>() else {
                continue;
            };
            if new_owner.is_empty() {
                tracing::info!("firewalld left the bus");
                inner().lock().expect("firewalld state").placed.clear();
            } else {
                tracing::info!(
                    "firewalld is on the bus; putting guestnet's bridges into zone {ZONE}"
                );
                reconcile(true).await;
            }
        }
    });
    Ok(())
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

/// Makes firewalld's [`ZONE`] hold the wanted bridges; with `fresh`, as if
/// none had been placed (after a reload or a new firewalld).
async fn reconcile(fresh: bool) {
    let _gate = gate().lock().await;
    let (conn, wanted, placed) = {
        let mut i = inner().lock().expect("firewalld state");
        if fresh {
            i.placed.clear();
        }
        let Some(conn) = i.conn.clone() else { return };
        (conn, i.wanted.clone(), i.placed.clone())
    };
    if (fresh || wanted != placed) && !has_owner(&conn).await {
        inner().lock().expect("firewalld state").placed.clear();
        return;
    }
    for br in wanted.difference(&placed) {
        match zone_call(&conn, "changeZoneOfInterface", &(ZONE, br)).await {
            Ok(_) => {
                tracing::info!("firewalld: {br} is in zone {ZONE}");
                inner()
                    .lock()
                    .expect("firewalld state")
                    .placed
                    .insert(br.clone());
            }
            Err(e) => tracing::warn!("firewalld: cannot put {br} into zone {ZONE}: {e}"),
        }
    }
    for br in placed.difference(&wanted) {
        if let Err(e) = zone_call(&conn, "removeInterface", &(ZONE, br)).await {
            tracing::warn!("firewalld: cannot take {br} out of zone {ZONE}: {e}");
        } else {
            tracing::info!("firewalld: {br} left zone {ZONE}");
        }
        inner().lock().expect("firewalld state").placed.remove(br);
    }
}
