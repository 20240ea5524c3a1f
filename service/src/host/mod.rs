//! The host's kernel as guestnetd sees and changes it: links, addresses and
//! routes over rtnetlink, taps, sysctls, socket buffers, and the facts a
//! mode plans with.

pub mod facts;
pub mod kernel;
pub mod links;
pub mod netns;
pub mod resolved;
pub mod socket_buffers;
pub mod sysctl;
pub mod tap;
