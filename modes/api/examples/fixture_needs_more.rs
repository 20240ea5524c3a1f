//! Test fixture, not an example to follow: a mode that says it cannot do
//! without a feature of a later API (`teleport`), which no guestnetd of
//! this API has: guestnetd must refuse to load it, naming the feature.

use guestnet_mode_api::{own_subnet, Definition, HostFacts, Mode, ModeError, Plan};

pub struct NeedsMore;

impl Mode for NeedsMore {
    fn name(&self) -> &str {
        "needs-more"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn requires(&self) -> &[&'static str] {
        &["firewall-rules", "teleport"]
    }

    fn plan(&self, definition: &Definition, facts: &HostFacts) -> Result<Plan, ModeError> {
        own_subnet::plan(definition, facts, own_subnet::Gateway::Offered)
    }
}

guestnet_mode_api::export_mode!(NeedsMore, NeedsMore);
