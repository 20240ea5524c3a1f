//! zbus proxies of guestnet's API, for clients (guestnetctl, tests, other
//! programs), and helpers to connect and to get them.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use zbus::proxy::CacheProperties;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, Type, Value};
use zbus::{proxy, Connection};

use crate::{BUS_NAME, MANAGER_PATH};

/// One lease, as `ListLeases` and `WaitForLease` return it: `(sssst)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Type)]
pub struct Lease {
    /// Lower case, colon-separated: `52:54:00:aa:bb:cc`.
    pub mac: String,
    pub ip: String,
    /// "" when the client gave none.
    pub hostname: String,
    /// The client identifier as colon-separated hex bytes, "" when none.
    pub client_id: String,
    /// When it expires, unix seconds.
    pub expiry: u64,
}

/// One guest port, as `ListGuests` returns it: `(sss)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Type)]
pub struct Guest {
    /// The host-side interface (tap or veth) enslaved to the bridge.
    pub ifname: String,
    pub mac: String,
    /// The guest's name, "" for a port some other tool added.
    pub guest: String,
}

/// `org.guestnet1.Manager` at `/org/guestnet1`.
#[proxy(
    interface = "org.guestnet1.Manager",
    default_service = "org.guestnet1",
    default_path = "/org/guestnet1",
    gen_blocking = false
)]
pub trait Manager {
    /// Every network, persistent or transient, active or not.
    fn list_networks(&self) -> zbus::Result<Vec<OwnedObjectPath>>;

    /// The object of the network `name`; `NoSuchNetwork` when there is none.
    fn get_network(&self, name: &str) -> zbus::Result<OwnedObjectPath>;

    /// Stores a persistent definition (TOML); the network is not started.
    fn define_network(&self, toml: &str) -> zbus::Result<OwnedObjectPath>;

    /// Starts a transient network, gone when it stops.
    fn create_network(&self, toml: &str) -> zbus::Result<OwnedObjectPath>;

    /// The definition table of a loaded mode, as JSON: `{"mode", "version",
    /// "api", "table"}` (`table` null for a library of mode API 1.0);
    /// `UnknownMode` when no loaded mode has that name.
    fn describe_mode(&self, mode: &str) -> zbus::Result<String>;

    /// The service's version.
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;

    /// The modes loaded.
    #[zbus(property)]
    fn modes(&self) -> zbus::Result<Vec<String>>;
}

/// `org.guestnet1.Network` at `/org/guestnet1/network/NAME`.
#[proxy(
    interface = "org.guestnet1.Network",
    default_service = "org.guestnet1",
    gen_blocking = false
)]
pub trait Network {
    fn start(&self) -> zbus::Result<()>;

    /// Stops it; a transient network is then gone.
    fn stop(&self) -> zbus::Result<()>;

    /// Removes the definition; an active network runs on as a transient one.
    fn undefine(&self) -> zbus::Result<()>;

    /// Replaces the definition (TOML); an active network restarts on it.
    fn update(&self, toml: &str) -> zbus::Result<()>;

    /// The definition as TOML.
    fn get_config(&self) -> zbus::Result<String>;

    /// Adds a port forward (`proto`, `port`, `to`, `to_port`, `address`).
    fn add_forward(
        &self,
        forward: std::collections::HashMap<&str, zbus::zvariant::Value<'_>>,
    ) -> zbus::Result<()>;

    /// Removes the forward of `proto` host port(s) `port`.
    fn remove_forward(&self, proto: &str, port: &str) -> zbus::Result<()>;

    /// The port forwards.
    #[zbus(property)]
    fn forwards(
        &self,
    ) -> zbus::Result<Vec<std::collections::HashMap<String, zbus::zvariant::OwnedValue>>>;

    fn list_leases(&self) -> zbus::Result<Vec<Lease>>;

    /// The lease of `mac`: at once if it exists, else as soon as it is
    /// granted; `Timeout` after `timeout_ms`.
    fn wait_for_lease(&self, mac: &str, timeout_ms: u32) -> zbus::Result<Lease>;

    fn list_guests(&self) -> zbus::Result<Vec<Guest>>;

    /// Makes a port for `guest` and returns its interface name. Options:
    /// `kind` ("tap" or "veth"), `owner` (u, a tap's owner uid), `netns_fd`
    /// (h, a descriptor of the namespace a veth's peer goes into, opened by
    /// the caller) or `netns` (s, its path: manage-networks callers only),
    /// `ifname` (s), `mac` (s).
    fn attach_guest(&self, guest: &str, options: HashMap<&str, Value<'_>>) -> zbus::Result<String>;

    fn detach_guest(&self, ifname: &str) -> zbus::Result<()>;

    #[zbus(signal)]
    fn lease_added(
        &self,
        mac: String,
        ip: String,
        hostname: String,
        client_id: String,
        expiry: u64,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    fn lease_renewed(
        &self,
        mac: String,
        ip: String,
        hostname: String,
        client_id: String,
        expiry: u64,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    fn lease_removed(
        &self,
        mac: String,
        ip: String,
        hostname: String,
        client_id: String,
        expiry: u64,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    fn guest_attached(&self, ifname: String, mac: String, guest: String) -> zbus::Result<()>;

    #[zbus(signal)]
    fn guest_detached(&self, ifname: String, mac: String, guest: String) -> zbus::Result<()>;

    #[zbus(property)]
    fn name(&self) -> zbus::Result<String>;

    #[zbus(property)]
    fn uuid(&self) -> zbus::Result<String>;

    #[zbus(property)]
    fn mode(&self) -> zbus::Result<String>;

    #[zbus(property)]
    fn bridge(&self) -> zbus::Result<String>;

    #[zbus(property)]
    fn domain(&self) -> zbus::Result<String>;

    #[zbus(property)]
    fn active(&self) -> zbus::Result<bool>;

    #[zbus(property)]
    fn persistent(&self) -> zbus::Result<bool>;

    #[zbus(property)]
    fn autostart(&self) -> zbus::Result<bool>;

    #[zbus(property)]
    fn set_autostart(&self, on: bool) -> zbus::Result<()>;

    /// The network's addresses, CIDR.
    #[zbus(property)]
    fn addresses(&self) -> zbus::Result<Vec<String>>;

    /// What the mode warned of when it planned the running network; empty
    /// while it is inactive.
    #[zbus(property)]
    fn warnings(&self) -> zbus::Result<Vec<String>>;
}

/// A connection to the bus at `bus_address`, or (None) to the system bus:
/// `DBUS_SYSTEM_BUS_ADDRESS` when set, else the standard socket.
pub async fn connect(bus_address: Option<&str>) -> zbus::Result<Connection> {
    let builder = match bus_address {
        Some(a) => zbus::connection::Builder::address(a)?,
        None => zbus::connection::Builder::system()?,
    };
    builder.build().await
}

/// The manager, without a property cache (each property read is a call).
pub async fn manager(conn: &Connection) -> zbus::Result<ManagerProxy<'static>> {
    ManagerProxy::builder(conn)
        .destination(BUS_NAME)?
        .path(MANAGER_PATH)?
        .cache_properties(CacheProperties::No)
        .build()
        .await
}

/// The network object at `path`, without a property cache.
pub async fn network_at(
    conn: &Connection,
    path: impl TryInto<ObjectPath<'static>, Error: Into<zbus::Error>>,
) -> zbus::Result<NetworkProxy<'static>> {
    NetworkProxy::builder(conn)
        .destination(BUS_NAME)?
        .path(path)?
        .cache_properties(CacheProperties::No)
        .build()
        .await
}

/// The network `name`, found with `GetNetwork` (so a name that is not there
/// is the service's `NoSuchNetwork` error), without a property cache.
pub async fn network(conn: &Connection, name: &str) -> zbus::Result<NetworkProxy<'static>> {
    let path = manager(conn).await?.get_network(name).await?;
    network_at(conn, path).await
}
