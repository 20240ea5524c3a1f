//! guestnetd, the guestnet service, as a library: the binary in `main.rs`
//! wires these parts together; the fuzz targets and benchmarks reach the
//! packet handling through here.
//!
//! One folder per concern: `bus` (D-Bus objects, polkit), `host` (kernel,
//! links, taps, sysctls), `firewall` (nftables, firewalld), `dhcp`, `dns`,
//! `guests` (ports and their watcher), `networks` (life cycle).

pub mod bus;
pub mod dhcp;
pub mod dns;
pub mod error;
pub mod files;
pub mod firewall;
pub mod guests;
pub mod host;
pub mod mode_registry;
pub mod networks;
pub mod signals;
