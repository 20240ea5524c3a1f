//! DHCPv4: each network's server, its pure packet logic and its lease store.

pub mod lease;
pub mod lease_store;
pub mod neighbour;
pub mod port;
pub mod protocol;
pub mod server;

pub use lease::{Lease, LeaseChange, LeaseEvent};
