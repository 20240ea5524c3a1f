//! `routed`: guests sit on their own subnet behind a bridge, with DHCP and
//! DNS from guestnet. The host routes the subnet at L3 without NAT, both
//! ways: an outside host with a route to the subnet via this host reaches
//! guests by their own addresses. Takes no `[routed]` settings.

use guestnet_mode_api::{
    own_subnet, Definition, FirewallPolicy, HostFacts, Mode, ModeError, Plan, Sysctl, SysctlKey,
};

pub struct Routed;

impl Mode for Routed {
    fn name(&self) -> &str {
        "routed"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn plan(&self, definition: &Definition, facts: &HostFacts) -> Result<Plan, ModeError> {
        let mut plan = own_subnet::plan(definition, facts, own_subnet::Gateway::Offered)?;
        plan.sysctls.push(Sysctl {
            key: SysctlKey::Ipv4Forward,
            value: "1".into(),
        });
        plan.firewall = FirewallPolicy::Routed {
            subnet: plan.addresses[0].trunc(),
        };
        Ok(plan)
    }
}

guestnet_mode_api::export_mode!(Routed, Routed);

#[cfg(test)]
mod tests {
    use super::*;
    use guestnet_mode_api::IfName;

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
        assert_eq!(
            plan.firewall,
            FirewallPolicy::Routed {
                subnet: "172.16.0.0/16".parse().unwrap()
            }
        );
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
        assert!(matches!(plan.firewall, FirewallPolicy::Routed { .. }));
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
