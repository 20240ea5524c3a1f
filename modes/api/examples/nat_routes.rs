//! A mode built on a built-in one: `nat-routes` is `nat` whose guests
//! include routers. The subnets behind them are routed through them and
//! masqueraded like the guests' own; destinations in `no_nat` keep the
//! guests' addresses (a LAN that routes back to them). Everything else is
//! nat's, from `builtin::nat`, not written again.
//!
//! ```toml
//! [nat-routes]
//! uplink = "eth0"                                        # optional, as [nat]
//! routes = [{ to = "10.90.0.0/24", via = "10.77.0.5" }]  # via: a guest
//! no_nat = ["192.168.50.0/24"]
//! ```

use guestnet_mode_api::builtin::nat;
use guestnet_mode_api::ipnet::Ipv4Net;
use guestnet_mode_api::serde::Deserialize;
use guestnet_mode_api::{
    mode_section, Definition, FirewallPolicy, FirewallRule, HostFacts, IfName, Mode, ModeError,
    Plan, RoutePlan,
};
use std::net::Ipv4Addr;

/// The `[nat-routes]` table.
#[derive(Default, Deserialize)]
#[serde(crate = "guestnet_mode_api::serde", deny_unknown_fields)]
struct Section {
    uplink: Option<IfName>,
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(default)]
    no_nat: Vec<Ipv4Net>,
}

#[derive(Deserialize)]
#[serde(crate = "guestnet_mode_api::serde", deny_unknown_fields)]
struct Route {
    to: Ipv4Net,
    via: Ipv4Addr,
}

pub struct NatRoutes;

impl Mode for NatRoutes {
    fn name(&self) -> &str {
        "nat-routes"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn validate(&self, definition: &Definition) -> Result<(), ModeError> {
        mode_section::<Section>(definition).map(drop)
    }

    fn plan(&self, definition: &Definition, facts: &HostFacts) -> Result<Plan, ModeError> {
        let section: Section = mode_section(definition)?;
        let mut plan = nat::plan_with(definition, facts, section.uplink)?;
        let subnet = plan.addresses[0].trunc();
        let mut guests = vec![subnet];
        for (i, r) in section.routes.iter().enumerate() {
            if !subnet.contains(&r.via) {
                let field = format!("nat-routes.routes[{i}].via");
                return Err(ModeError::invalid(
                    field,
                    format!("{} is not in {subnet}", r.via),
                ));
            }
            let (destination, gateway) = (r.to.trunc(), Some(r.via));
            plan.routes.push(RoutePlan {
                destination,
                gateway,
                metric: None,
            });
            guests.push(destination);
        }
        // The subnets behind the routers are the guests' too: forwarded
        // and masqueraded as theirs, but for `no_nat`.
        if let FirewallPolicy::Rules { guests: g, rules } = &mut plan.firewall {
            *g = guests;
            for rule in rules {
                if let FirewallRule::Masquerade { except, .. } = rule {
                    except.extend(section.no_nat.iter().copied());
                }
            }
        }
        if section.routes.is_empty() {
            plan.warnings
                .push("no routes: this network is plain nat".into());
        }
        Ok(plan)
    }
}

guestnet_mode_api::export_mode!(NatRoutes, NatRoutes);
