//! Test fixture, not an example to follow: mode `slow` plans like the
//! minimal `open` mode, but takes three seconds to do it. guestnet's tests
//! load it to hold a network's Start in progress while they check that
//! nothing else waits for it.

use guestnet_mode_api::{own_subnet, Definition, HostFacts, Mode, ModeError, Plan};

pub struct Slow;

impl Mode for Slow {
    fn name(&self) -> &str {
        "slow"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn plan(&self, definition: &Definition, facts: &HostFacts) -> Result<Plan, ModeError> {
        std::thread::sleep(std::time::Duration::from_secs(3));
        own_subnet::plan(definition, facts, own_subnet::Gateway::Offered)
    }
}

guestnet_mode_api::export_mode!(Slow, Slow);
