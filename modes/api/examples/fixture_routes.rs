//! Test fixture, not an example to follow: mode `routes` puts guests on
//! their own subnet like `examples/minimal_mode.rs` and plans whatever
//! routes its table lists, unchecked, so that guestnet's tests can hand the
//! service any route a mode could plan:
//!
//! ```toml
//! [routes]
//! to = [{ destination = "10.90.0.0/24", gateway = "10.60.0.9" }, { destination = "0.0.0.0/0" }]
//! existing = true   # use the definition's `bridge`, which the host has, instead of a new one
//! sysctls = [{ key = "bridge_rp_filter", value = "2" }]   # planned as given
//! ```

use guestnet_mode_api::{
    mode_section, own_subnet, BridgePlan, Definition, HostFacts, Mode, ModeError, Plan, RoutePlan,
    Sysctl,
};
use serde::Deserialize;

pub struct Routes;

/// The `[routes]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    #[serde(default)]
    to: Vec<RoutePlan>,
    #[serde(default)]
    existing: bool,
    #[serde(default)]
    sysctls: Vec<Sysctl>,
}

impl Mode for Routes {
    fn name(&self) -> &str {
        "routes"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn validate(&self, definition: &Definition) -> Result<(), ModeError> {
        mode_section::<Section>(definition).map(|_| ())
    }

    fn plan(&self, definition: &Definition, facts: &HostFacts) -> Result<Plan, ModeError> {
        let section: Section = mode_section(definition)?;
        let mut plan = own_subnet::plan(definition, facts, own_subnet::Gateway::Offered)?;
        plan.routes = section.to;
        plan.sysctls = section.sysctls;
        if section.existing {
            let name = definition
                .bridge
                .clone()
                .ok_or_else(|| ModeError::invalid("bridge", "existing = true needs a bridge"))?;
            plan.bridge = BridgePlan::Existing { name };
        }
        Ok(plan)
    }
}

guestnet_mode_api::export_mode!(Routes, Routes);
