//! guestnet's built-in `isolated` mode: the planner
//! [`guestnet_mode_api::builtin::isolated`] behind the [`Mode`] trait, built
//! as a mode library. See that module for what the mode does.

use guestnet_mode_api::builtin::isolated;
use guestnet_mode_api::{Definition, HostFacts, Mode, ModeError, Plan, TableDescription};

pub struct Isolated;

impl Mode for Isolated {
    fn name(&self) -> &str {
        "isolated"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn plan(&self, definition: &Definition, facts: &HostFacts) -> Result<Plan, ModeError> {
        isolated::plan(definition, facts)
    }

    fn table(&self) -> TableDescription {
        isolated::table()
    }
}

guestnet_mode_api::export_mode!(Isolated, Isolated);

#[cfg(test)]
mod tests {
    use super::*;
    use guestnet_mode_api::{Endpoint, FirewallPolicy, FirewallRule, IfName};

    fn isolated() -> FirewallPolicy {
        FirewallPolicy::Rules {
            guests: vec![],
            rules: vec![
                FirewallRule::deny(Endpoint::Guests, Endpoint::Anywhere),
                FirewallRule::deny(Endpoint::Anywhere, Endpoint::Guests),
            ],
        }
    }

    fn def(toml: &str) -> Definition {
        Definition::parse(&format!("name = \"i\"\nmode = \"isolated\"\n{toml}")).unwrap()
    }

    fn host() -> HostFacts {
        HostFacts {
            free_bridge_name: Some(IfName::new("guestnet2").unwrap()),
            free_subnet: Some("10.20.32.1/24".parse().unwrap()),
            default_route_interface: Some(IfName::new("eth0").unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn no_router_and_no_forwarding() {
        let d = def("[ipv4]\naddress = \"192.168.50.1/24\"\n[dns]\nforwarders = [\"9.9.9.9\"]");
        let plan = Isolated.plan(&d, &host()).unwrap();
        assert_eq!(plan.firewall, isolated());
        let (guests, _) = plan.firewall.to_rules(&plan.addresses).unwrap();
        assert_eq!(guests, vec!["192.168.50.0/24".parse().unwrap()]);
        assert!(plan.sysctls.is_empty());
        assert!(plan.routes.is_empty());
        let dhcp = plan.dhcp.unwrap();
        assert_eq!(dhcp.router, None);
        assert_eq!(dhcp.dns_server, Some("192.168.50.1".parse().unwrap()));
        // Names outside still resolve.
        assert_eq!(
            plan.dns.unwrap().forwarders,
            vec!["9.9.9.9".parse::<std::net::IpAddr>().unwrap()]
        );
    }

    #[test]
    fn without_address_uses_the_free_subnet() {
        let plan = Isolated.plan(&def(""), &host()).unwrap();
        assert_eq!(plan.bridge.name().as_str(), "guestnet2");
        let (guests, _) = plan.firewall.to_rules(&plan.addresses).unwrap();
        assert_eq!(guests, vec!["10.20.32.0/24".parse().unwrap()]);
    }

    #[test]
    fn no_free_bridge_name_is_a_conflict() {
        let facts = HostFacts {
            free_bridge_name: None,
            ..host()
        };
        assert!(matches!(
            Isolated.plan(&def(""), &facts),
            Err(ModeError::Conflict { .. })
        ));
    }

    #[test]
    fn takes_no_settings() {
        Isolated.validate(&def("")).unwrap();
        assert!(Isolated.validate(&def("[isolated]\nx = 1")).is_err());
    }

    #[test]
    fn the_host_allow_list_reaches_the_plan() {
        let plan = Isolated
            .plan(&def("[host]\nallow = [\"tcp/22\"]"), &host())
            .unwrap();
        assert_eq!(plan.host_allow, vec!["tcp/22".parse().unwrap()]);
        assert!(
            (Isolated
                .plan(&def(""), &host())
                .unwrap()
                .host_allow
                .is_empty())
        );
    }
}
