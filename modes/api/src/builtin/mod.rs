//! The planners of guestnet's built-in modes, as library functions, so
//! that a mode can start from a built-in mode's plan and change it rather
//! than re-implement it:
//!
//! ```ignore
//! let mut plan = guestnet_mode_api::builtin::nat::plan(definition, facts)?;
//! plan.routes.push(/* a subnet behind a guest router */);
//! ```
//!
//! The built-in mode libraries (`nat`, `routed`, `isolated`) are these
//! functions behind [`Mode`](crate::Mode); `modes/api/examples/nat_routes.rs`
//! extends `nat` this way.

pub mod isolated;
pub mod nat;
pub mod routed;
