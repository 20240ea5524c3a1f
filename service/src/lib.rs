//! guestnetd, the guestnet service, as a library: the binary in `main.rs`
//! wires these parts together; the fuzz targets and benchmarks reach the
//! packet handling through here.

pub mod authority;
pub mod dbus_api;
pub mod dhcp;
pub mod dns;
pub mod error;
pub mod files;
pub mod firewall;
pub mod firewalld;
pub mod guest_watch;
pub mod guests;
pub mod host_facts;
pub mod kernel;
pub mod links;
pub mod mode_registry;
pub mod networks;
pub mod socket_buffers;
pub mod sysctl;
pub mod tap;
