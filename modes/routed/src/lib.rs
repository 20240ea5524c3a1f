//! guestnet's built-in `routed` mode: the planner
//! [`guestnet_mode_api::builtin::routed`] behind the [`Mode`] trait, built
//! as a mode library. See that module for what the mode does.

use guestnet_mode_api::builtin::routed;
use guestnet_mode_api::{Definition, HostFacts, Mode, ModeError, Plan, TableDescription};

pub struct Routed;

impl Mode for Routed {
    fn name(&self) -> &str {
        "routed"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn plan(&self, definition: &Definition, facts: &HostFacts) -> Result<Plan, ModeError> {
        routed::plan(definition, facts)
    }

    fn table(&self) -> TableDescription {
        routed::table()
    }
}

guestnet_mode_api::export_mode!(Routed, Routed);

#[cfg(test)]
mod tests {
    use super::*;
    use guestnet_mode_api::{Endpoint, FirewallPolicy, FirewallRule, IfName, Sysctl, SysctlKey};

    fn routed() -> FirewallPolicy {
        FirewallPolicy::Rules {
            guests: vec![],
            rules: vec![
                FirewallRule::allow(Endpoint::Guests, Endpoint::Anywhere),
                FirewallRule::allow(Endpoint::Anywhere, Endpoint::Guests),
            ],
        }
    }

    fn def(toml: &str) -> Definition {
        Definition::parse(&format!("name = \"r\"\nmode = \"routed\"\n{toml}")).unwrap()
    }

    fn host() -> HostFacts {
        HostFacts {
            free_bridge_name: Some(IfName::new("guestnet1").unwrap()),
            free_subnet: Some("10.20.31.1/24".parse().unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn routes_the_subnet_with_forwarding_on() {
        let d = def("[ipv4]\naddress = \"172.16.5.1/16\"");
        let plan = Routed.plan(&d, &host()).unwrap();
        assert_eq!(plan.bridge.name().as_str(), "guestnet1");
        assert_eq!(plan.firewall, routed());
        let (guests, _) = plan.firewall.to_rules(&plan.addresses).unwrap();
        assert_eq!(guests, vec!["172.16.0.0/16".parse().unwrap()]);
        assert_eq!(
            plan.sysctls,
            vec![Sysctl {
                key: SysctlKey::Ipv4Forward,
                value: "1".into()
            }]
        );
        assert_eq!(
            plan.dhcp.unwrap().router,
            Some("172.16.5.1".parse().unwrap())
        );
        assert!(plan.dns.is_some());
    }

    #[test]
    fn without_address_uses_the_free_subnet() {
        let plan = Routed.plan(&def(""), &host()).unwrap();
        assert_eq!(plan.addresses, vec!["10.20.31.1/24".parse().unwrap()]);
    }

    #[test]
    fn dhcp_off_still_routes() {
        let d = def("[ipv4]\naddress = \"172.16.5.1/24\"\ndhcp = false");
        let plan = Routed.plan(&d, &host()).unwrap();
        assert!(plan.dhcp.is_none());
        assert_eq!(plan.firewall, routed());
    }

    #[test]
    fn takes_no_settings() {
        Routed.validate(&def("")).unwrap();
        assert!(matches!(
            Routed.validate(&def("[routed]\nuplink = \"eth0\"")),
            Err(ModeError::Invalid { field, .. }) if field == "routed"
        ));
    }

    #[test]
    fn the_host_allow_list_reaches_the_plan() {
        let plan = Routed
            .plan(&def("[host]\nallow = [\"tcp/22\"]"), &host())
            .unwrap();
        assert_eq!(plan.host_allow, vec!["tcp/22".parse().unwrap()]);
        assert!(
            (Routed
                .plan(&def(""), &host())
                .unwrap()
                .host_allow
                .is_empty())
        );
    }
}
