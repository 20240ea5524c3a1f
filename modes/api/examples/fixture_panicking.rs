//! Test fixture, not an example to follow: mode `panicky` accepts every
//! definition and panics when asked for a plan. guestnet's tests load it to
//! show that a panicking mode fails one call and guestnetd lives on.

use guestnet_mode_api::{Definition, HostFacts, Mode, ModeError, Plan};

pub struct Panicky;

impl Mode for Panicky {
    fn name(&self) -> &str {
        "panicky"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn plan(&self, _: &Definition, _: &HostFacts) -> Result<Plan, ModeError> {
        panic!("panicky mode: planning always panics")
    }
}

guestnet_mode_api::export_mode!(Panicky, Panicky);
