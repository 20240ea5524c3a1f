//! The D-Bus edge: the objects guestnetd exports and the polkit checks
//! that guard their state-changing methods.

pub mod api;
pub mod authority;
pub mod waiters;
