//! Guests' names on the host: each active network's DNS server and domain
//! are registered with systemd-resolved for the network's bridge
//! (`SetLinkDNS`, `SetLinkDomains` with the domain as routing-only,
//! `~guest.lan`), so `ping web1.guest.lan` on the host asks guestnet's
//! DNS; a network that stops has its link reverted (`RevertLink`).
//!
//! A value made once by main and handed to the networks, like the
//! firewall: it remembers what each network wants (networks taken back
//! after a restart register before the bus is connected) and says so once
//! in the log when resolved is not on the bus. A network's change never
//! waits for resolved: the calls go to a task of their own, in order, each
//! bounded in time, so a resolved that hangs delays nothing but itself.

use guestnet_mode_api::DnsName;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use zbus::Connection;

const DESTINATION: &str = "org.freedesktop.resolve1";
const PATH: &str = "/org/freedesktop/resolve1";
const MANAGER: &str = "org.freedesktop.resolve1.Manager";
const AF_INET: i32 = 2;

/// What one network asks of resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkDns {
    /// The bridge's ifindex.
    pub ifindex: i32,
    /// Where guestnet's DNS for the network listens.
    pub server: Ipv4Addr,
    /// Names routed there; none: the server is registered for nothing.
    pub domain: Option<DnsName>,
}

/// One thing to tell resolved.
#[derive(Debug)]
enum Op {
    Register(LinkDns),
    Revert(i32),
}

/// The most changes waiting for resolved; past it, the oldest wait and
/// new ones are dropped (and logged): resolved is then not answering.
const QUEUE: usize = 1024;

#[derive(Debug, Default)]
struct Inner {
    queue: Option<tokio::sync::mpsc::Sender<Op>>,
    links: BTreeMap<String, LinkDns>,
}

#[derive(Debug, Default)]
pub struct Resolved {
    inner: Mutex<Inner>,
}

/// How long one call to resolved may take.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Resolved {
    pub fn new() -> Self {
        Self::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers network `network`'s DNS with resolved (`Some`), or reverts
    /// its link (`None`). Returns at once.
    pub async fn set(&self, network: &str, link: Option<LinkDns>) {
        let mut inner = self.inner();
        let gone = match &link {
            Some(l) => inner
                .links
                .insert(network.to_owned(), l.clone())
                .filter(|old| old.ifindex != l.ifindex),
            None => inner.links.remove(network),
        };
        let Some(queue) = inner.queue.clone() else {
            return;
        };
        drop(inner);
        let ops = gone
            .map(|old| Op::Revert(old.ifindex))
            .into_iter()
            .chain(link.map(Op::Register));
        for op in ops {
            if queue.try_send(op).is_err() {
                tracing::warn!(
                    "systemd-resolved is not keeping up; a change for {network} is dropped"
                );
            }
        }
    }

    /// Starts talking to resolved on `conn`, from a task of its own,
    /// registering every network remembered so far.
    pub async fn connect(&self, conn: &Connection) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Op>(QUEUE);
        let links: Vec<LinkDns> = {
            let mut inner = self.inner();
            inner.queue = Some(tx.clone());
            inner.links.values().cloned().collect()
        };
        for l in links {
            let _ = tx.try_send(Op::Register(l));
        }
        let conn = conn.clone();
        tokio::spawn(async move {
            let mut told_absent = false;
            while let Some(op) = rx.recv().await {
                match op {
                    Op::Register(l) => register(&conn, &l, &mut told_absent).await,
                    Op::Revert(i) => {
                        call(&conn, "RevertLink", &(i,), &mut told_absent).await;
                    }
                }
            }
        });
    }
}

async fn register(conn: &Connection, l: &LinkDns, told_absent: &mut bool) {
    // Without a domain there is nothing to route to the network's DNS; and
    // the link must never become a default route for the host's queries.
    let Some(domain) = &l.domain else { return };
    if !call(
        conn,
        "SetLinkDefaultRoute",
        &(l.ifindex, false),
        told_absent,
    )
    .await
    {
        return;
    }
    let servers = vec![(AF_INET, l.server.octets().to_vec())];
    if !call(conn, "SetLinkDNS", &(l.ifindex, servers), told_absent).await {
        return;
    }
    let domains = vec![(domain.as_str().to_owned(), true)];
    call(conn, "SetLinkDomains", &(l.ifindex, domains), told_absent).await;
}

/// One call to resolved's manager; false when it failed (logged: once
/// when resolved is not there at all).
async fn call<B>(conn: &Connection, method: &str, body: &B, told_absent: &mut bool) -> bool
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    let reply = tokio::time::timeout(
        CALL_TIMEOUT,
        conn.call_method(Some(DESTINATION), PATH, Some(MANAGER), method, body),
    )
    .await;
    match reply {
        Err(_) => {
            tracing::warn!("systemd-resolved did not answer {method} within {CALL_TIMEOUT:?}");
            false
        }
        Ok(reply) => match reply {
            Ok(_) => true,
            Err(zbus::Error::MethodError(name, _, _))
                if name.as_str() == "org.freedesktop.DBus.Error.ServiceUnknown"
                    || name.as_str() == "org.freedesktop.DBus.Error.NameHasNoOwner" =>
            {
                let first = !std::mem::replace(told_absent, true);
                if first {
                    tracing::info!(
                        "systemd-resolved is not on the bus: the host does not resolve guests' \
                         names; point a resolver at each network's DNS address for its domain \
                         (see README, \"Guest names on the host\")"
                    );
                }
                false
            }
            Err(e) => {
                tracing::warn!("systemd-resolved refused {method}: {e}");
                false
            }
        },
    }
}
