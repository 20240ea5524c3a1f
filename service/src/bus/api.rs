//! guestnetd's objects on the bus: the manager at `/org/guestnet1` (with
//! `org.freedesktop.DBus.ObjectManager`) and one object per network.
//! Methods check the caller, call into [`Networks`] and announce what
//! changed; they hold no state of their own.

use crate::bus::authority::{self, Action};
use crate::bus::waiters::Waiters;
use crate::dhcp::{Lease, LeaseChange};
use crate::error::{BusError, ServiceError};
use crate::guests::{AttachOptions, AttachRequest, BeyondAttaching};
use crate::networks::{Detacher, Fate, Networks};
use guestnet_dbus::{network_path, MANAGER_PATH, NETWORK_INTERFACE};
use guestnet_mode_api::MacAddr;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use zbus::message::Header;
use zbus::object_server::{ObjectServer, SignalEmitter};
use zbus::zvariant::OwnedObjectPath;
use zbus::zvariant::{OwnedValue, Value};
use zbus::{interface, Connection};

fn object_path(name: &str) -> OwnedObjectPath {
    OwnedObjectPath::try_from(network_path(name)).expect("network paths are valid object paths")
}

pub struct Manager {
    networks: Arc<Networks>,
    waiters: Arc<Waiters>,
}

#[interface(name = "org.guestnet1.Manager")]
impl Manager {
    async fn list_networks(&self) -> Vec<OwnedObjectPath> {
        self.networks
            .names()
            .await
            .iter()
            .map(|n| object_path(n.as_str()))
            .collect()
    }

    async fn get_network(&self, name: String) -> Result<OwnedObjectPath, BusError> {
        match self.networks.get(&name).await {
            Some(_) => Ok(object_path(&name)),
            None => Err(ServiceError::NoSuchNetwork(name).into()),
        }
    }

    /// Stores a persistent definition.
    async fn define_network(
        &self,
        toml: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<OwnedObjectPath, BusError> {
        authority::check(conn, &header, Action::ManageNetworks).await?;
        let name = self.networks.define(&toml).await?;
        export_network(conn, &self.networks, &self.waiters, name.as_str()).await?;
        Ok(object_path(name.as_str()))
    }

    /// Starts a transient network, gone when it stops.
    async fn create_network(
        &self,
        toml: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<OwnedObjectPath, BusError> {
        authority::check(conn, &header, Action::ManageNetworks).await?;
        let name = self.networks.create(&toml).await?;
        export_network(conn, &self.networks, &self.waiters, name.as_str()).await?;
        Ok(object_path(name.as_str()))
    }

    /// The definition table of the loaded mode `mode`, for a frontend to
    /// render a form for a mode it does not know: a JSON object with
    /// `mode`, `version`, `api` (the mode API the library was built
    /// against, "1.MINOR") and `table` (`help` and `keys`, each with
    /// `name`, `kind`, `required`, `help` and maybe `default`; null from a
    /// library of API 1.0, which cannot describe its table). At most 64 KiB.
    /// UnknownMode when no loaded mode has that name.
    async fn describe_mode(&self, mode: String) -> Result<String, BusError> {
        Ok(self.networks.describe_mode(&mode).await?)
    }

    #[zbus(property)]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    #[zbus(property)]
    fn modes(&self) -> Vec<String> {
        self.networks.mode_names()
    }
}

pub struct NetworkObject {
    name: String,
    networks: Arc<Networks>,
    /// WaitForLease calls in progress, on every network.
    waiters: Arc<Waiters>,
}

impl NetworkObject {
    async fn network(&self) -> zbus::fdo::Result<crate::networks::Network> {
        self.networks.get(&self.name).await.ok_or_else(|| {
            zbus::fdo::Error::UnknownObject(format!("no network named {:?}", self.name))
        })
    }

    /// Every property as its getter reads it now: the same values
    /// `Get`, `GetAll` and `GetManagedObjects` answer with, so what
    /// [`Self::announce`] sends cannot drift from what callers read. Empty
    /// if the network is gone.
    async fn properties(
        &self,
        server: &ObjectServer,
        conn: &Connection,
        emitter: &SignalEmitter<'_>,
    ) -> HashMap<String, OwnedValue> {
        <Self as zbus::object_server::Interface>::get_all(self, server, conn, None, emitter)
            .await
            .unwrap_or_default()
    }

    /// Emits one PropertiesChanged with the properties that differ from
    /// `before` (taken with [`Self::properties`]), if any.
    async fn announce(
        &self,
        server: &ObjectServer,
        conn: &Connection,
        emitter: &SignalEmitter<'_>,
        before: HashMap<String, OwnedValue>,
    ) {
        let after = self.properties(server, conn, emitter).await;
        let changed: HashMap<&str, Value<'_>> = after
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(*v))
            .map(|(k, v)| (k.as_str(), Value::from(v.clone())))
            .collect();
        if changed.is_empty() {
            return;
        }
        let iface = zbus::names::InterfaceName::from_static_str_unchecked(NETWORK_INTERFACE);
        let sent =
            zbus::fdo::Properties::properties_changed(emitter, iface, changed, Cow::Borrowed(&[]))
                .await;
        if let Err(e) = sent {
            tracing::warn!("announcing changes of {}: {e}", self.name);
        }
    }
}

#[interface(name = "org.guestnet1.Network")]
impl NetworkObject {
    async fn start(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BusError> {
        authority::check(conn, &header, Action::ManageNetworks).await?;
        let before = self.properties(server, conn, &emitter).await;
        self.networks.start(&self.name).await?;
        self.announce(server, conn, &emitter, before).await;
        Ok(())
    }

    async fn stop(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BusError> {
        authority::check(conn, &header, Action::ManageNetworks).await?;
        let before = self.properties(server, conn, &emitter).await;
        let result = self.networks.stop(&self.name).await;
        // A transient network is gone even when its teardown met errors.
        if self.networks.get(&self.name).await.is_none() {
            unexport_network(conn, &self.name).await;
        } else {
            self.announce(server, conn, &emitter, before).await;
        }
        result?;
        Ok(())
    }

    async fn undefine(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BusError> {
        authority::check(conn, &header, Action::ManageNetworks).await?;
        let before = self.properties(server, conn, &emitter).await;
        match self.networks.undefine(&self.name).await? {
            Fate::Removed => unexport_network(conn, &self.name).await,
            Fate::Kept => self.announce(server, conn, &emitter, before).await,
        }
        Ok(())
    }

    async fn update(
        &self,
        toml: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BusError> {
        authority::check(conn, &header, Action::ManageNetworks).await?;
        let before = self.properties(server, conn, &emitter).await;
        let result = self.networks.update(&self.name, &toml).await;
        self.announce(server, conn, &emitter, before).await;
        Ok(result?)
    }

    /// Adds a port forward (keys as in `[[forwards]]`: `proto` s, `port` q
    /// or s for a range, `to` s, `to_port` q or s, `address` s), kept in
    /// the definition; live on an active network.
    async fn add_forward(
        &self,
        forward: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BusError> {
        authority::check(conn, &header, Action::ManageNetworks).await?;
        let table = forward_table(forward)?;
        let before = self.properties(server, conn, &emitter).await;
        let result = self.networks.add_forward(&self.name, table).await;
        self.announce(server, conn, &emitter, before).await;
        Ok(result?)
    }

    /// Removes the forward of host port `port` (`8080` or `8000-8010`) of
    /// protocol `proto`.
    async fn remove_forward(
        &self,
        proto: String,
        port: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BusError> {
        authority::check(conn, &header, Action::ManageNetworks).await?;
        let before = self.properties(server, conn, &emitter).await;
        let result = self
            .networks
            .remove_forward(&self.name, &proto, &port)
            .await;
        self.announce(server, conn, &emitter, before).await;
        Ok(result?)
    }

    /// (mac, ip, hostname, client id, expiry in unix seconds) of every lease.
    async fn list_leases(&self) -> Result<Vec<LeaseTuple>, BusError> {
        let leases = self.networks.leases(&self.name).await?;
        Ok(leases.iter().map(lease_tuple).collect())
    }

    /// The lease of `mac`: at once if it exists, else when it is granted,
    /// or org.guestnet1.Error.Timeout after `timeout_ms` (at most 600000,
    /// 10 minutes). A user (uid) may have 16 waits at once over all its
    /// connections; a connection's waits end when it leaves the bus.
    async fn wait_for_lease(
        &self,
        mac: String,
        timeout_ms: u32,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<LeaseTuple, BusError> {
        let mac: MacAddr = mac
            .parse()
            .map_err(|e: String| ServiceError::InvalidArgs(format!("mac: {e}")))?;
        let (caller, uid) = authority::caller(conn, &header).await?;
        let mut waiting = self.waiters.begin(&caller, uid, timeout_ms)?;
        // Had the caller left between the question above and the count,
        // the watcher could have missed it: ask once more, now counted.
        if !on_bus(conn, &caller).await {
            return Err(ServiceError::Failed(format!("{caller} has left the bus")).into());
        }
        // Subscribe before looking, so a lease granted in between is seen.
        let mut events = self.networks.subscribe_leases();
        if let Some(lease) = self.networks.lease_of(&self.name, &mac).await? {
            return Ok(lease_tuple(&lease));
        }
        let wait = async {
            loop {
                match events.recv().await {
                    Ok(e)
                        if e.network == self.name
                            && e.event.lease.mac == mac
                            && e.event.change != LeaseChange::Removed =>
                    {
                        return Some(e.event.lease);
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if let Ok(Some(l)) = self.networks.lease_of(&self.name, &mac).await {
                            return Some(l);
                        }
                    }
                    Err(_) => return None,
                }
            }
        };
        let wait = async {
            tokio::select! {
                lease = wait => lease,
                () = waiting.caller_gone() => None,
            }
        };
        match tokio::time::timeout(
            std::time::Duration::from_millis(u64::from(timeout_ms)),
            wait,
        )
        .await
        {
            Ok(Some(lease)) => Ok(lease_tuple(&lease)),
            _ => Err(ServiceError::Timeout(format!(
                "no lease for {mac} on network {:?} within {timeout_ms} ms",
                self.name
            ))
            .into()),
        }
    }

    /// (interface, mac, guest name) of every port on the network's bridge.
    async fn list_guests(&self) -> Result<Vec<(String, String, String)>, BusError> {
        let guests = self.networks.list_guests(&self.name).await?;
        Ok(guests
            .into_iter()
            .map(|g| (g.ifname, g.mac, g.guest))
            .collect())
    }

    /// Makes a port for `guest`: options `kind` "tap" (with `owner`, a
    /// uid, the caller's by default; another's only for a caller who may
    /// manage networks) or "veth" (with `netns_fd`, a descriptor of a
    /// namespace the caller made in a user namespace of its own (any
    /// other only for a caller who may manage networks), or `netns`, its
    /// path, and `ifname`), and `mac`. Returns the port's interface name.
    async fn attach_guest(
        &self,
        guest: String,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String, BusError> {
        // Read first, so that polkit is told what is asked for; the
        // caller's uid is a tap's owner unless another is named. Nothing
        // is asked of the system about the options before polkit agrees.
        crate::guests::check_guest_name(&guest)?;
        let who = authority::caller(conn, &header).await?;
        let options = AttachOptions::from_options(&options, who.1)?;
        let mut details = vec![
            ("network", self.name.as_str()),
            ("guest", guest.as_str()),
            ("kind", options.kind_name()),
        ];
        if let Some(interface) = options.interface() {
            details.push(("interface", interface));
        }
        let caller =
            authority::check_caller(conn, &header, &who, Action::AttachGuests, &details).await?;
        let details: Vec<(&str, String)> =
            details.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let details: Vec<(&str, &str)> = details.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (request, beyond) = check_attach_options(options, caller).await?;
        // A path is opened by guestnetd as root, the host's namespace holds
        // the bridges, a namespace the caller did not make may be anyone's
        // (every /run/netns name is open to all), a tap for another uid is
        // a port that user may open: each takes the right to manage networks.
        if let Some(beyond) = beyond {
            if caller != 0 {
                authority::check_caller(conn, &header, &who, Action::ManageNetworks, &details)
                    .await
                    .map_err(|_| ServiceError::AccessDenied(beyond_message(beyond, caller)))?;
            }
        }
        Ok(self
            .networks
            .attach_guest(&self.name, &guest, request, caller)
            .await?)
    }

    /// Removes a port guestnetd made, or releases one someone else put on
    /// the bridge. A tap made for another user is that user's: taking it
    /// away needs the right to manage networks, not only to attach guests.
    async fn detach_guest(
        &self,
        ifname: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        let details = [
            ("network", self.name.as_str()),
            ("interface", ifname.as_str()),
        ];
        let who = authority::caller(conn, &header).await?;
        let uid =
            authority::check_caller(conn, &header, &who, Action::AttachGuests, &details).await?;
        // polkit is asked for more only when the port is someone else's;
        // detach_guest checks whose it is again, under the network's lock.
        let manages = uid == 0
            || (self
                .networks
                .port_claim(&self.name, &ifname)
                .needs_manage(uid)
                && authority::check_caller(conn, &header, &who, Action::ManageNetworks, &details)
                    .await
                    .is_ok());
        let who = Detacher { uid, manages };
        Ok(self
            .networks
            .detach_guest(&self.name, &ifname, &who)
            .await?)
    }

    #[zbus(signal)]
    async fn guest_attached(
        emitter: &SignalEmitter<'_>,
        ifname: &str,
        mac: &str,
        guest: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn guest_detached(
        emitter: &SignalEmitter<'_>,
        ifname: &str,
        mac: &str,
        guest: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn lease_added(
        emitter: &SignalEmitter<'_>,
        mac: &str,
        ip: &str,
        hostname: &str,
        client_id: &str,
        expiry: u64,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn lease_renewed(
        emitter: &SignalEmitter<'_>,
        mac: &str,
        ip: &str,
        hostname: &str,
        client_id: &str,
        expiry: u64,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn lease_removed(
        emitter: &SignalEmitter<'_>,
        mac: &str,
        ip: &str,
        hostname: &str,
        client_id: &str,
        expiry: u64,
    ) -> zbus::Result<()>;

    async fn get_config(&self) -> Result<String, BusError> {
        let net = self
            .networks
            .get(&self.name)
            .await
            .ok_or_else(|| ServiceError::NoSuchNetwork(self.name.clone()))?;
        Ok(net.definition.to_toml())
    }

    #[zbus(property)]
    async fn name(&self) -> String {
        self.name.clone()
    }

    #[zbus(property)]
    async fn uuid(&self) -> zbus::fdo::Result<String> {
        Ok(self.network().await?.definition.uuid.to_string())
    }

    #[zbus(property)]
    async fn mode(&self) -> zbus::fdo::Result<String> {
        Ok(self.network().await?.definition.mode)
    }

    #[zbus(property)]
    async fn bridge(&self) -> zbus::fdo::Result<String> {
        Ok(self.network().await?.bridge())
    }

    #[zbus(property)]
    async fn domain(&self) -> zbus::fdo::Result<String> {
        let net = self.network().await?;
        Ok(net
            .definition
            .dns
            .domain
            .map(|d| d.to_string())
            .unwrap_or_default())
    }

    #[zbus(property)]
    async fn active(&self) -> zbus::fdo::Result<bool> {
        Ok(self.network().await?.is_active())
    }

    #[zbus(property)]
    async fn persistent(&self) -> zbus::fdo::Result<bool> {
        Ok(self.network().await?.persistent)
    }

    #[zbus(property)]
    async fn autostart(&self) -> zbus::fdo::Result<bool> {
        Ok(self.network().await?.definition.autostart)
    }

    #[zbus(property)]
    async fn set_autostart(
        &self,
        on: bool,
        #[zbus(header)] header: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<()> {
        let header = header.ok_or_else(|| zbus::fdo::Error::AccessDenied("no caller".into()))?;
        authority::check(conn, &header, Action::ManageNetworks)
            .await
            .map_err(|e| zbus::fdo::Error::AccessDenied(e.to_string()))?;
        self.networks
            .set_autostart(&self.name, on)
            .await
            .map_err(|e| zbus::fdo::Error::Failed(e.to_string()))
    }

    #[zbus(property)]
    async fn addresses(&self) -> zbus::fdo::Result<Vec<String>> {
        Ok(self.network().await?.addresses())
    }

    /// The network's port forwards, as `AddForward` takes them.
    #[zbus(property)]
    async fn forwards(&self) -> zbus::fdo::Result<Vec<HashMap<String, OwnedValue>>> {
        Ok(self
            .network()
            .await?
            .definition
            .forwards
            .iter()
            .map(forward_dict)
            .collect())
    }

    /// What the mode warned of when it planned the running network
    /// (control characters dropped, each cut to 512 bytes); empty while
    /// the network is inactive.
    #[zbus(property)]
    async fn warnings(&self) -> zbus::fdo::Result<Vec<String>> {
        Ok(self.network().await?.warnings())
    }
}

/// A forward as D-Bus carries it; see `AddForward`.
fn forward_dict(f: &guestnet_mode_api::ForwardConfig) -> HashMap<String, OwnedValue> {
    let mut d = HashMap::new();
    let mut put = |k: &str, v: Value<'_>| {
        if let Ok(v) = OwnedValue::try_from(v) {
            d.insert(k.to_owned(), v);
        }
    };
    put("proto", Value::from(f.port.protocol.as_str()));
    if f.port.first == f.port.last {
        put("port", Value::from(f.port.first));
        put("to_port", Value::from(f.to_port));
    } else {
        put("port", Value::from(f.port.ports()));
        put(
            "to_port",
            Value::from(format!("{}-{}", f.to_port, f.to_last())),
        );
    }
    put("to", Value::from(f.to.to_string()));
    if let Some(a) = f.address {
        put("address", Value::from(a.to_string()));
    }
    d
}

/// The a{sv} of `AddForward` as the `[[forwards]]` table it stands for;
/// the definition's parser checks the rest.
fn forward_table(forward: HashMap<String, OwnedValue>) -> Result<toml::Value, BusError> {
    const MAX_KEYS: usize = 8;
    if forward.len() > MAX_KEYS {
        return Err(ServiceError::InvalidConfig("forward: too many keys".into()).into());
    }
    let mut t = toml::Table::new();
    for (k, v) in forward {
        let value: toml::Value = match &*v {
            Value::Str(s) => s.as_str().into(),
            Value::U16(n) => i64::from(*n).into(),
            Value::U32(n) => i64::from(*n).into(),
            Value::I32(n) => i64::from(*n).into(),
            Value::I64(n) => (*n).into(),
            Value::U64(n) => i64::try_from(*n).unwrap_or(i64::MAX).into(),
            other => {
                return Err(ServiceError::InvalidConfig(format!(
                    "forward.{k}: a {} is not a string or a number",
                    other.value_signature()
                ))
                .into())
            }
        };
        t.insert(k, value);
    }
    Ok(toml::Value::Table(t))
}

type LeaseTuple = (String, String, String, String, u64);

fn lease_tuple(l: &Lease) -> LeaseTuple {
    (
        l.mac.to_string(),
        l.ip.to_string(),
        l.hostname.clone().unwrap_or_default(),
        l.client_id_hex(),
        l.expires,
    )
}

/// Announces every lease change as a signal on its network.
async fn announce_leases(conn: Connection, networks: Arc<Networks>) {
    let Some(events) = networks.lease_signals() else {
        return;
    };
    announce(
        conn,
        events,
        "lease",
        |e| &e.network,
        async |emitter, e| {
            let (mac, ip, host, id, exp) = lease_tuple(&e.event.lease);
            match e.event.change {
                LeaseChange::Added => {
                    NetworkObject::lease_added(emitter, &mac, &ip, &host, &id, exp).await
                }
                LeaseChange::Renewed => {
                    NetworkObject::lease_renewed(emitter, &mac, &ip, &host, &id, exp).await
                }
                LeaseChange::Removed => {
                    NetworkObject::lease_removed(emitter, &mac, &ip, &host, &id, exp).await
                }
            }
        },
    )
    .await
}

/// Announces every guest arriving or leaving as a signal on its network.
async fn announce_guests(conn: Connection, networks: Arc<Networks>) {
    let Some(events) = networks.guest_signals() else {
        return;
    };
    announce(
        conn,
        events,
        "guest",
        |e| &e.network,
        async |emitter, e| {
            if e.attached {
                NetworkObject::guest_attached(emitter, &e.ifname, &e.mac, &e.guest).await
            } else {
                NetworkObject::guest_detached(emitter, &e.ifname, &e.mac, &e.guest).await
            }
        },
    )
    .await
}

/// Emits each event of `events` with `emit` on the object of its network
/// (named by `network`), until the channel closes. Events the bus could not
/// keep up with are counted in a warning, not fatal.
async fn announce<E: Clone>(
    conn: Connection,
    mut events: crate::signals::SignalReceiver<E>,
    what: &str,
    network: impl Fn(&E) -> &str,
    emit: impl AsyncFn(&SignalEmitter<'_>, &E) -> zbus::Result<()>,
) {
    while let Some(e) = events.recv().await {
        let n = events.take_dropped();
        if n > 0 {
            tracing::warn!("{n} {what} signals were dropped: the bus could not keep up");
        }
        let Ok(emitter) = SignalEmitter::new(&conn, network_path(network(&e))) else {
            continue;
        };
        if let Err(err) = emit(&emitter, &e).await {
            tracing::warn!("signalling a {what} of {}: {err}", network(&e));
        }
    }
}

/// Puts the manager and every known network on the bus.
pub async fn export_all(conn: &Connection, networks: Arc<Networks>) -> zbus::Result<()> {
    let server = conn.object_server();
    server.at(MANAGER_PATH, zbus::fdo::ObjectManager).await?;
    let waiters = Arc::new(Waiters::default());
    server
        .at(
            MANAGER_PATH,
            Manager {
                networks: networks.clone(),
                waiters: waiters.clone(),
            },
        )
        .await?;
    for name in networks.names().await {
        export_network(conn, &networks, &waiters, name.as_str()).await?;
    }
    // Subscribed before the first call is served, so no departure is missed.
    let dbus = zbus::fdo::DBusProxy::new(conn).await?;
    let departures = dbus
        .receive_name_owner_changed_with_args(&[(2, "")])
        .await?;
    tokio::spawn(end_waits_of_departed(departures, waiters));
    tokio::spawn(announce_leases(conn.clone(), networks.clone()));
    tokio::spawn(announce_guests(conn.clone(), networks));
    Ok(())
}

/// Ends the waits of every connection that leaves the bus.
async fn end_waits_of_departed(
    mut departures: zbus::fdo::NameOwnerChangedStream,
    waiters: Arc<Waiters>,
) {
    use futures::StreamExt;
    while let Some(signal) = departures.next().await {
        if let Ok(args) = signal.args() {
            if args.new_owner().is_none() {
                waiters.name_gone(args.name().as_str());
            }
        }
    }
    tracing::warn!("no longer told of connections leaving the bus");
}

/// Whether the unique name `name` is still on the bus.
async fn on_bus(conn: &Connection, name: &str) -> bool {
    let Ok(dbus) = zbus::fdo::DBusProxy::new(conn).await else {
        return true;
    };
    let Ok(name) = zbus::names::BusName::try_from(name) else {
        return true;
    };
    dbus.name_has_owner(name).await.unwrap_or(true)
}

async fn export_network(
    conn: &Connection,
    networks: &Arc<Networks>,
    waiters: &Arc<Waiters>,
    name: &str,
) -> zbus::Result<()> {
    let object = NetworkObject {
        name: name.to_owned(),
        networks: networks.clone(),
        waiters: waiters.clone(),
    };
    conn.object_server()
        .at(network_path(name).as_str(), object)
        .await?;
    Ok(())
}

async fn unexport_network(conn: &Connection, name: &str) {
    if let Err(e) = conn
        .object_server()
        .remove::<NetworkObject, _>(network_path(name).as_str())
        .await
    {
        tracing::warn!("removing the object of network {name}: {e}");
    }
}

/// Checks AttachGuest's options against the system (a caller's descriptor,
/// a uid in the user database) off the runtime, within a deadline: a
/// descriptor of a hung NFS or FUSE mount, or an NSS lookup that waits on
/// LDAP, holds one blocking thread, never a runtime worker or the caller.
async fn check_attach_options(
    options: AttachOptions,
    caller: u32,
) -> Result<(AttachRequest, Option<BeyondAttaching>), ServiceError> {
    const DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);
    let checking = tokio::task::spawn_blocking(move || options.check(caller));
    match tokio::time::timeout(DEADLINE, checking).await {
        Ok(Ok(checked)) => checked,
        Ok(Err(e)) => Err(ServiceError::Failed(format!("checking the options: {e}"))),
        Err(_) => Err(ServiceError::InvalidArgs(format!(
            "the netns_fd or owner given could not be checked within {DEADLINE:?}"
        ))),
    }
}

/// Why a caller allowed only to attach guests may not do what it asked.
fn beyond_message(beyond: BeyondAttaching, caller: u32) -> String {
    let manage = Action::ManageNetworks.id();
    match beyond {
        BeyondAttaching::NetnsPath => format!(
            "uid {caller} may not name a namespace by path (netns) without \
             {manage}: open the namespace yourself and pass its descriptor \
             as netns_fd (type h) instead (guestnetctl attach --netns does)"
        ),
        BeyondAttaching::HostNetns => format!(
            "the namespace of netns_fd is the host's own: uid {caller} may \
             not put a guest's interface there without {manage}"
        ),
        BeyondAttaching::NotCallersNetns(owner) if owner.initial => format!(
            "the namespace of netns_fd belongs to the host's initial user namespace \
             (like every /run/netns name and every root process's): uid {caller} may \
             attach only into a network namespace it made in a user namespace of its \
             own (e.g. unshare --user --net) without {manage}"
        ),
        BeyondAttaching::NotCallersNetns(owner) => format!(
            "the namespace of netns_fd belongs to a user namespace of uid {}: uid \
             {caller} may attach only into a network namespace it made in a user \
             namespace of its own without {manage}",
            owner.uid
        ),
        BeyondAttaching::UnknownNetnsOwner => format!(
            "the owner of the namespace of netns_fd cannot be read: uid {caller} may \
             attach only into a network namespace it made in a user namespace of its \
             own without {manage}"
        ),
        BeyondAttaching::TapFor(owner) => format!(
            "uid {caller} may make taps only for itself (owner {caller}), \
             not for uid {owner}, without {manage}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::DBusError as _;

    /// The error name and message a caller gets for `e`, from the reply
    /// guestnetd builds.
    fn on_the_wire(e: ServiceError) -> (String, String) {
        let call = zbus::message::Message::method_call("/org/guestnet1", "GetNetwork")
            .unwrap()
            .sender(":1.7")
            .unwrap()
            .destination("org.guestnet1")
            .unwrap()
            .build(&())
            .unwrap();
        let reply = BusError::from(e).create_reply(&call.header()).unwrap();
        let header = reply.header();
        let name = header.error_name().expect("an error reply").to_string();
        let body: String = reply.body().deserialize().unwrap();
        (name, body)
    }

    /// Every error's name and message as guestnetd sent them before the
    /// errors were derived: the derivation must not change a byte.
    #[test]
    fn errors_keep_their_names_and_messages_on_the_wire() {
        let io = std::io::Error::other("disk on fire");
        let cases = [
            (
                ServiceError::NoSuchNetwork("n1".into()),
                "org.guestnet1.Error.NoSuchNetwork",
                "no network named \"n1\"",
            ),
            (
                ServiceError::AlreadyExists("a network n1 exists".into()),
                "org.guestnet1.Error.AlreadyExists",
                "a network n1 exists",
            ),
            (
                ServiceError::InvalidConfig("subnet: bad".into()),
                "org.guestnet1.Error.InvalidConfig",
                "invalid definition: subnet: bad",
            ),
            (
                ServiceError::Conflict("10.0.0.0/24 is in use".into()),
                "org.guestnet1.Error.Conflict",
                "10.0.0.0/24 is in use",
            ),
            (
                ServiceError::NotActive("n1".into()),
                "org.guestnet1.Error.NotActive",
                "network \"n1\" is not active",
            ),
            (
                ServiceError::AlreadyActive("n1".into()),
                "org.guestnet1.Error.AlreadyActive",
                "network \"n1\" is already active",
            ),
            (
                ServiceError::UnknownMode {
                    mode: "warp".into(),
                    loaded: "nat, routed".into(),
                },
                "org.guestnet1.Error.UnknownMode",
                "no mode named \"warp\" is loaded (loaded: nat, routed)",
            ),
            (
                ServiceError::Timeout("no lease".into()),
                "org.guestnet1.Error.Timeout",
                "no lease",
            ),
            (
                ServiceError::Failed("no free interface name".into()),
                "org.guestnet1.Error.Failed",
                "no free interface name",
            ),
            (
                ServiceError::failed("saving the definition", io),
                "org.guestnet1.Error.Failed",
                "saving the definition: disk on fire",
            ),
            (
                ServiceError::AccessDenied("uid 1000 is not authorized".into()),
                "org.freedesktop.DBus.Error.AccessDenied",
                "uid 1000 is not authorized",
            ),
            (
                ServiceError::InvalidArgs("mac: bad".into()),
                "org.freedesktop.DBus.Error.InvalidArgs",
                "mac: bad",
            ),
            (
                ServiceError::LimitsExceeded("too many waits".into()),
                "org.freedesktop.DBus.Error.LimitsExceeded",
                "too many waits",
            ),
        ];
        for (error, name, message) in cases {
            assert_eq!(on_the_wire(error), (name.to_owned(), message.to_owned()));
        }
    }
}
