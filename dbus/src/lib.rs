//! guestnet's D-Bus contract: the bus name, object paths, interface and
//! error names that the service and its clients share, and zbus proxies for
//! clients ([`ManagerProxy`], [`NetworkProxy`]). The files a distribution
//! installs (bus policy, ...) are in `data/`.
//!
//! ```no_run
//! # async fn demo() -> zbus::Result<()> {
//! let conn = guestnet_dbus::connect(None).await?; // the system bus
//! let manager = guestnet_dbus::manager(&conn).await?;
//! for path in manager.list_networks().await? {
//!     let net = guestnet_dbus::network_at(&conn, path).await?;
//!     println!("{} active={}", net.name().await?, net.active().await?);
//! }
//! # Ok(())
//! # }
//! ```

mod proxy;

/// The proxies, their signal types (`LeaseAdded`, `LeaseAddedArgs`,
/// `LeaseAddedStream`, ...) and the helpers to get them.
pub use proxy::*;

pub mod error;

/// The well-known name guestnetd owns on the system bus.
pub const BUS_NAME: &str = "org.guestnet1";
/// The manager object.
pub const MANAGER_PATH: &str = "/org/guestnet1";
pub const MANAGER_INTERFACE: &str = "org.guestnet1.Manager";
pub const NETWORK_INTERFACE: &str = "org.guestnet1.Network";
/// Networks live under this path, one child per network.
pub const NETWORK_PATH_PREFIX: &str = "/org/guestnet1/network/";

/// The object path of a network. Object path elements allow only
/// `[A-Za-z0-9_]`, so every other byte (and `_` itself) is written as `_xx`
/// in hex, which keeps the mapping reversible: `my-net.1` becomes
/// `my_2dnet_2e1`.
pub fn network_path(name: &str) -> String {
    let mut path = String::from(NETWORK_PATH_PREFIX);
    if name.is_empty() {
        path.push('_');
        return path;
    }
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() {
            path.push(b as char);
        } else {
            path.push_str(&format!("_{b:02x}"));
        }
    }
    path
}

/// The network name an object path stands for, if it is a network's path.
pub fn network_name(path: &str) -> Option<String> {
    let escaped = path.strip_prefix(NETWORK_PATH_PREFIX)?;
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let hex = escaped.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_escape_and_round_trip() {
        assert_eq!(network_path("default"), "/org/guestnet1/network/default");
        assert_eq!(
            network_path("my-net.1"),
            "/org/guestnet1/network/my_2dnet_2e1"
        );
        assert_eq!(network_path("a_b"), "/org/guestnet1/network/a_5fb");
        for n in ["default", "my-net.1", "a_b", "9x"] {
            assert_eq!(network_name(&network_path(n)).as_deref(), Some(n));
        }
        assert_eq!(network_name("/org/guestnet1/other"), None);
    }
}
