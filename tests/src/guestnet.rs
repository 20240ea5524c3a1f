//! guestnet's D-Bus API, called through the real clients of [`crate::busctl`].
//!
//! Plain methods panic on failure with the error and the tail of guestnetd's
//! log; `try_*` methods go through dbus-send and return the D-Bus error with
//! its name, for tests about errors.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::busctl::{BusError, Busctl};
use crate::cmd;

pub const BUS_NAME: &str = "org.guestnet1";
pub const MANAGER_PATH: &str = "/org/guestnet1";
pub const MANAGER_IFACE: &str = "org.guestnet1.Manager";
pub const NETWORK_IFACE: &str = "org.guestnet1.Network";
/// Every property of org.guestnet1.Network.
pub const NETWORK_PROPERTIES: [&str; 11] = [
    "Active",
    "Addresses",
    "Autostart",
    "Bridge",
    "Domain",
    "Forwards",
    "Mode",
    "Name",
    "Persistent",
    "Uuid",
    "Warnings",
];

/// The full D-Bus name of a guestnet error, e.g. `error("Conflict")`.
pub fn error(short: &str) -> String {
    format!("org.guestnet1.Error.{short}")
}

/// Panics unless `result` is the guestnet error `short` (e.g. "Conflict").
/// Returns its message.
#[track_caller]
pub fn expect_error<T: std::fmt::Debug>(result: Result<T, BusError>, short: &str) -> String {
    let want = error(short);
    match result {
        Err(e) if e.name == want => e.message,
        Err(e) => panic!("expected {want}, got {e}"),
        Ok(v) => panic!("expected {want}, but the call succeeded: {v:?}"),
    }
}

/// A client of guestnetd.
#[derive(Clone, Debug)]
pub struct Guestnet {
    busctl: Busctl,
    log: Option<PathBuf>,
}

impl Guestnet {
    /// A client through `busctl` (whose destination should be org.guestnet1).
    /// `log`: guestnetd's log, whose tail goes into panic messages.
    pub fn new(busctl: Busctl, log: Option<PathBuf>) -> Guestnet {
        Guestnet { busctl, log }
    }

    pub fn busctl(&self) -> &Busctl {
        &self.busctl
    }

    /// The same client, run as `uid`.
    pub fn as_uid(&self, uid: u32) -> Guestnet {
        Guestnet {
            busctl: self.busctl.as_uid(uid),
            log: self.log.clone(),
        }
    }

    /// The same client, run as `uid` with primary group `gid`.
    pub fn as_user(&self, uid: u32, gid: u32) -> Guestnet {
        Guestnet {
            busctl: self.busctl.as_user(uid, gid),
            log: self.log.clone(),
        }
    }

    #[track_caller]
    fn fail(&self, what: &str, err: &dyn std::fmt::Display) -> ! {
        let tail = match &self.log {
            Some(log) => cmd::tail(log, 40),
            None => "(no log)\n".to_owned(),
        };
        panic!("{what} failed: {err}\n--- guestnetd log (tail) ---\n{tail}")
    }

    /// A raw call through busctl; panics on failure.
    #[track_caller]
    pub fn call(
        &self,
        path: &str,
        iface: &str,
        method: &str,
        sig: &str,
        args: &[&str],
    ) -> serde_json::Value {
        self.busctl
            .call(path, iface, method, sig, args)
            .unwrap_or_else(|e| self.fail(&format!("{iface}.{method} on {path}"), &e))
    }

    /// A raw call through dbus-send, keeping the error's name.
    pub fn try_call(
        &self,
        path: &str,
        iface: &str,
        method: &str,
        sig: &str,
        args: &[&str],
    ) -> Result<String, BusError> {
        self.busctl.try_call(path, iface, method, sig, args)
    }

    #[track_caller]
    fn path_of(&self, what: &str, v: serde_json::Value) -> String {
        match v.as_str() {
            Some(p) if p.starts_with('/') => p.to_owned(),
            _ => self.fail(what, &format!("replied {v}, not an object path")),
        }
    }

    // ---- org.guestnet1.Manager ----

    /// ListNetworks → the object paths.
    #[track_caller]
    pub fn list_networks(&self) -> Vec<String> {
        let v = self.call(MANAGER_PATH, MANAGER_IFACE, "ListNetworks", "", &[]);
        strings(&v).unwrap_or_else(|| self.fail("ListNetworks", &format!("replied {v}")))
    }

    /// GetNetwork(name) → object path.
    #[track_caller]
    pub fn get_network(&self, name: &str) -> String {
        let v = self.call(MANAGER_PATH, MANAGER_IFACE, "GetNetwork", "s", &[name]);
        self.path_of("GetNetwork", v)
    }

    pub fn try_get_network(&self, name: &str) -> Result<String, BusError> {
        self.try_call(MANAGER_PATH, MANAGER_IFACE, "GetNetwork", "s", &[name])
    }

    /// DefineNetwork(toml) → object path of the (persistent, inactive) network.
    #[track_caller]
    pub fn define(&self, toml: &str) -> String {
        let v = self.call(MANAGER_PATH, MANAGER_IFACE, "DefineNetwork", "s", &[toml]);
        self.path_of("DefineNetwork", v)
    }

    pub fn try_define(&self, toml: &str) -> Result<String, BusError> {
        self.try_call(MANAGER_PATH, MANAGER_IFACE, "DefineNetwork", "s", &[toml])
    }

    /// CreateNetwork(toml) → object path of the transient, started network.
    #[track_caller]
    pub fn create(&self, toml: &str) -> String {
        let v = self.call(MANAGER_PATH, MANAGER_IFACE, "CreateNetwork", "s", &[toml]);
        self.path_of("CreateNetwork", v)
    }

    pub fn try_create(&self, toml: &str) -> Result<String, BusError> {
        self.try_call(MANAGER_PATH, MANAGER_IFACE, "CreateNetwork", "s", &[toml])
    }

    /// A property of the manager.
    #[track_caller]
    pub fn manager_prop(&self, prop: &str) -> serde_json::Value {
        self.busctl
            .get_property(MANAGER_PATH, MANAGER_IFACE, prop)
            .unwrap_or_else(|e| self.fail(&format!("get Manager.{prop}"), &e))
    }

    // ---- org.guestnet1.Network ----

    #[track_caller]
    fn network_call(
        &self,
        path: &str,
        method: &str,
        sig: &str,
        args: &[&str],
    ) -> serde_json::Value {
        self.call(path, NETWORK_IFACE, method, sig, args)
    }

    #[track_caller]
    pub fn start(&self, path: &str) {
        self.network_call(path, "Start", "", &[]);
    }

    pub fn try_start(&self, path: &str) -> Result<String, BusError> {
        self.try_call(path, NETWORK_IFACE, "Start", "", &[])
    }

    #[track_caller]
    pub fn stop(&self, path: &str) {
        self.network_call(path, "Stop", "", &[]);
    }

    pub fn try_stop(&self, path: &str) -> Result<String, BusError> {
        self.try_call(path, NETWORK_IFACE, "Stop", "", &[])
    }

    #[track_caller]
    pub fn undefine(&self, path: &str) {
        self.network_call(path, "Undefine", "", &[]);
    }

    pub fn try_undefine(&self, path: &str) -> Result<String, BusError> {
        self.try_call(path, NETWORK_IFACE, "Undefine", "", &[])
    }

    #[track_caller]
    pub fn update(&self, path: &str, toml: &str) {
        self.network_call(path, "Update", "s", &[toml]);
    }

    pub fn try_update(&self, path: &str, toml: &str) -> Result<String, BusError> {
        self.try_call(path, NETWORK_IFACE, "Update", "s", &[toml])
    }

    /// GetConfig() → the definition as TOML.
    #[track_caller]
    pub fn get_config(&self, path: &str) -> String {
        let v = self.network_call(path, "GetConfig", "", &[]);
        v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| self.fail("GetConfig", &format!("replied {v}, not a string")))
    }

    /// A property of a network, as JSON.
    #[track_caller]
    pub fn prop(&self, path: &str, prop: &str) -> serde_json::Value {
        self.busctl
            .get_property(path, NETWORK_IFACE, prop)
            .unwrap_or_else(|e| self.fail(&format!("get Network.{prop} of {path}"), &e))
    }

    #[track_caller]
    pub fn prop_str(&self, path: &str, prop: &str) -> String {
        let v = self.prop(path, prop);
        v.as_str().map(str::to_owned).unwrap_or_else(|| {
            self.fail(&format!("Network.{prop}"), &format!("is {v}, not a string"))
        })
    }

    #[track_caller]
    pub fn prop_bool(&self, path: &str, prop: &str) -> bool {
        let v = self.prop(path, prop);
        v.as_bool().unwrap_or_else(|| {
            self.fail(
                &format!("Network.{prop}"),
                &format!("is {v}, not a boolean"),
            )
        })
    }

    #[track_caller]
    pub fn prop_strings(&self, path: &str, prop: &str) -> Vec<String> {
        let v = self.prop(path, prop);
        strings(&v).unwrap_or_else(|| {
            self.fail(
                &format!("Network.{prop}"),
                &format!("is {v}, not a string array"),
            )
        })
    }

    #[track_caller]
    pub fn active(&self, path: &str) -> bool {
        self.prop_bool(path, "Active")
    }

    /// The network's Addresses property (CIDR strings).
    #[track_caller]
    pub fn addresses(&self, path: &str) -> Vec<String> {
        self.prop_strings(path, "Addresses")
    }

    /// The network's Bridge property.
    #[track_caller]
    pub fn bridge(&self, path: &str) -> String {
        self.prop_str(path, "Bridge")
    }
}

/// One lease as ListLeases, WaitForLease and the Lease* signals give it,
/// `(sssst)`: guestnet-dbus's own type.
pub use guestnet_dbus::Lease;

/// A lease from busctl's JSON for `(sssst)`: an array of the five values.
pub fn lease_from_json(v: &serde_json::Value) -> Option<Lease> {
    let a = v.as_array()?;
    if a.len() != 5 {
        return None;
    }
    Some(Lease {
        mac: a[0].as_str()?.to_owned(),
        ip: a[1].as_str()?.to_owned(),
        hostname: a[2].as_str()?.to_owned(),
        client_id: a[3].as_str()?.to_owned(),
        expiry: a[4].as_u64()?,
    })
}

/// Seconds from now until `lease` expires (negative when past).
pub fn expires_in(lease: &Lease) -> i64 {
    lease.expiry as i64 - unix_now() as i64
}

/// The leases without their expiry (which moves on every renewal), as a
/// set, for comparing the leases of two moments.
pub fn lease_keys(leases: &[Lease]) -> BTreeSet<(String, String, String, String)> {
    leases
        .iter()
        .map(|l| {
            (
                l.mac.clone(),
                l.ip.clone(),
                l.hostname.clone(),
                l.client_id.clone(),
            )
        })
        .collect()
}

/// Now, unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

impl Guestnet {
    /// ListLeases() → the leases of a network.
    #[track_caller]
    pub fn list_leases(&self, path: &str) -> Vec<Lease> {
        let v = self.network_call(path, "ListLeases", "", &[]);
        let items = match &v {
            serde_json::Value::Null => Vec::new(),
            serde_json::Value::Array(items) => items.clone(),
            _ => self.fail("ListLeases", &format!("replied {v}, not a(sssst)")),
        };
        items
            .iter()
            .map(|i| {
                lease_from_json(i).unwrap_or_else(|| {
                    self.fail("ListLeases", &format!("an entry {i} is not (sssst)"))
                })
            })
            .collect()
    }

    /// The lease of `mac` in ListLeases, if any.
    #[track_caller]
    pub fn lease_of(&self, path: &str, mac: &str) -> Option<Lease> {
        self.list_leases(path)
            .into_iter()
            .find(|l| l.mac.eq_ignore_ascii_case(mac))
    }

    /// WaitForLease(mac, timeout_ms) through busctl; panics on any error.
    /// The reply may be one `(sssst)` struct or the five values.
    #[track_caller]
    pub fn wait_for_lease(&self, path: &str, mac: &str, timeout_ms: u32) -> Lease {
        let ms = timeout_ms.to_string();
        let v = self.network_call(path, "WaitForLease", "su", &[mac, &ms]);
        lease_from_json(&v)
            .unwrap_or_else(|| self.fail("WaitForLease", &format!("replied {v}, not (sssst)")))
    }

    /// WaitForLease through dbus-send, keeping the error's name (for the
    /// Timeout error). Ok: dbus-send's literal print of the reply.
    pub fn try_wait_for_lease(
        &self,
        path: &str,
        mac: &str,
        timeout_ms: u32,
    ) -> Result<String, BusError> {
        let ms = timeout_ms.to_string();
        self.try_call(path, NETWORK_IFACE, "WaitForLease", "su", &[mac, &ms])
    }
}

/// A JSON array of strings, as a Vec.
pub fn strings(v: &serde_json::Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|s| s.as_str().map(str::to_owned))
        .collect()
}
