//! guestnet's built-in `nat` mode: the planner
//! [`guestnet_mode_api::builtin::nat`] behind the [`Mode`] trait, built as
//! a mode library. See that module for what the mode does.

use guestnet_mode_api::builtin::nat;
use guestnet_mode_api::{Definition, HostFacts, Mode, ModeError, Plan, TableDescription};

pub struct Nat;

impl Mode for Nat {
    fn name(&self) -> &str {
        "nat"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn validate(&self, definition: &Definition) -> Result<(), ModeError> {
        nat::validate(definition)
    }

    fn plan(&self, definition: &Definition, facts: &HostFacts) -> Result<Plan, ModeError> {
        nat::plan(definition, facts)
    }

    fn table(&self) -> TableDescription {
        nat::table()
    }
}

guestnet_mode_api::export_mode!(Nat, Nat);

#[cfg(test)]
mod tests {
    use super::*;
    use guestnet_mode_api::{
        Endpoint, FirewallPolicy, FirewallRule, IfName, LinkFact, Sysctl, SysctlKey,
    };

    fn def(toml: &str) -> Definition {
        Definition::parse(&format!("name = \"n\"\n{toml}")).unwrap()
    }

    fn nic(name: &str) -> LinkFact {
        LinkFact {
            name: IfName::new(name).unwrap(),
            kind: None,
            master: None,
            addresses: vec![],
            mtu: 1500,
        }
    }

    /// A host with eth0 (the default route) and wlan0.
    fn host() -> HostFacts {
        HostFacts {
            links: vec![nic("eth0"), nic("wlan0")],
            default_route_interface: Some(IfName::new("eth0").unwrap()),
            free_bridge_name: Some(IfName::new("guestnet0").unwrap()),
            free_subnet: Some("10.20.30.1/24".parse().unwrap()),
            ..Default::default()
        }
    }

    fn uplink(plan: &Plan) -> Option<&str> {
        nat::uplink_of(plan).map(IfName::as_str)
    }

    #[test]
    fn given_address_is_natted_out_of_the_default_route() {
        let d = def("bridge = \"virbr0\"\n[ipv4]\naddress = \"192.168.122.1/24\"");
        let plan = Nat.plan(&d, &host()).unwrap();
        assert_eq!(plan.bridge.name().as_str(), "virbr0");
        assert_eq!(plan.addresses, vec!["192.168.122.1/24".parse().unwrap()]);
        let eth0 = IfName::new("eth0").unwrap();
        assert_eq!(
            plan.firewall,
            FirewallPolicy::Rules {
                guests: vec![],
                rules: vec![
                    FirewallRule::allow(Endpoint::Guests, Endpoint::Uplink { name: eth0.clone() }),
                    FirewallRule::Masquerade {
                        uplink: Some(eth0),
                        except: vec![]
                    }
                ]
            }
        );
        let (guests, _) = plan.firewall.to_rules(&plan.addresses).unwrap();
        assert_eq!(guests, vec!["192.168.122.0/24".parse().unwrap()]);
        assert_eq!(
            plan.sysctls,
            vec![Sysctl {
                key: SysctlKey::Ipv4Forward,
                value: "1".into()
            }]
        );
        let dhcp = plan.dhcp.unwrap();
        assert_eq!(dhcp.router, Some("192.168.122.1".parse().unwrap()));
        assert_eq!(plan.dns.unwrap().listen, dhcp.server);
    }

    #[test]
    fn without_address_uses_the_free_subnet_and_bridge_name() {
        let plan = Nat.plan(&def(""), &host()).unwrap();
        assert_eq!(plan.bridge.name().as_str(), "guestnet0");
        assert_eq!(plan.addresses, vec!["10.20.30.1/24".parse().unwrap()]);
        let (guests, _) = plan.firewall.to_rules(&plan.addresses).unwrap();
        assert_eq!(guests, vec!["10.20.30.0/24".parse().unwrap()]);
    }

    #[test]
    fn no_free_subnet_is_a_conflict() {
        let facts = HostFacts {
            free_subnet: None,
            ..host()
        };
        assert!(matches!(
            Nat.plan(&def(""), &facts),
            Err(ModeError::Conflict { .. })
        ));
    }

    #[test]
    fn explicit_uplink_wins_over_the_default_route() {
        let d = def("[nat]\nuplink = \"wlan0\"");
        Nat.validate(&d).unwrap();
        assert_eq!(uplink(&Nat.plan(&d, &host()).unwrap()), Some("wlan0"));
    }

    #[test]
    fn no_default_route_masquerades_out_of_any_interface() {
        let facts = HostFacts {
            default_route_interface: None,
            ..host()
        };
        assert_eq!(uplink(&Nat.plan(&def(""), &facts).unwrap()), None);
    }

    #[test]
    fn unknown_uplink_is_a_conflict_naming_it() {
        let d = def("[nat]\nuplink = \"eth9\"");
        match Nat.plan(&d, &host()) {
            Err(ModeError::Conflict { reason }) => assert!(reason.contains("eth9"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_section_is_refused() {
        for (section, key) in [
            ("[nat]\nuplnk = \"eth0\"", "nat.uplnk"),
            ("[nat]\nuplink = \"not/a/nic\"", "nat.uplink"),
        ] {
            let d = def(section);
            assert!(
                matches!(Nat.validate(&d), Err(ModeError::Invalid { ref field, .. }) if field == key),
                "{section}"
            );
            assert!(Nat.plan(&d, &host()).is_err());
        }
    }

    #[test]
    fn the_host_allow_list_reaches_the_plan() {
        let plan = Nat
            .plan(&def("[host]\nallow = [\"tcp/22\"]"), &host())
            .unwrap();
        assert_eq!(plan.host_allow, vec!["tcp/22".parse().unwrap()]);
        assert!((Nat.plan(&def(""), &host()).unwrap().host_allow.is_empty()));
    }
}
