//! `nat` (the default mode): guests sit on a private subnet behind a bridge,
//! get their address from guestnet's DHCP and resolve names through its DNS.
//! The host masquerades their traffic out of its own address, through the
//! `[nat] uplink` NIC when one is given (else the default route's); outside
//! hosts cannot open connections to guests.
//!
//! ```toml
//! [nat]
//! uplink = "eth0"   # optional
//! ```

use guestnet_mode_api::{
    mode_section, own_subnet, Definition, FirewallPolicy, HostFacts, IfName, Mode, ModeError, Plan,
    Sysctl, SysctlKey,
};
use serde::Deserialize;

pub struct Nat;

/// The `[nat]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    /// The only NIC guests' traffic is masqueraded through.
    uplink: Option<IfName>,
}

impl Mode for Nat {
    fn name(&self) -> &str {
        "nat"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn validate(&self, definition: &Definition) -> Result<(), ModeError> {
        mode_section::<Section>(definition).map(drop)
    }

    fn plan(&self, definition: &Definition, facts: &HostFacts) -> Result<Plan, ModeError> {
        let section: Section = mode_section(definition)?;
        if let Some(uplink) = &section.uplink {
            if facts.link(uplink.as_str()).is_none() {
                return Err(ModeError::conflict(format!(
                    "uplink {} does not exist on this host",
                    uplink.as_str()
                )));
            }
        }
        let mut plan = own_subnet::plan(definition, facts, own_subnet::Gateway::Offered)?;
        plan.sysctls.push(Sysctl {
            key: SysctlKey::Ipv4Forward,
            value: "1".into(),
        });
        plan.firewall = FirewallPolicy::Nat {
            subnet: plan.addresses[0].trunc(),
            uplink: section
                .uplink
                .or_else(|| facts.default_route_interface.clone()),
        };
        Ok(plan)
    }
}

guestnet_mode_api::export_mode!(Nat, Nat);

#[cfg(test)]
mod tests {
    use super::*;
    use guestnet_mode_api::LinkFact;

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
        match &plan.firewall {
            FirewallPolicy::Nat { uplink, .. } => uplink.as_ref().map(IfName::as_str),
            other => panic!("not a nat policy: {other:?}"),
        }
    }

    #[test]
    fn given_address_is_natted_out_of_the_default_route() {
        let d = def("bridge = \"virbr0\"\n[ipv4]\naddress = \"192.168.122.1/24\"");
        let plan = Nat.plan(&d, &host()).unwrap();
        assert_eq!(plan.bridge.name().as_str(), "virbr0");
        assert_eq!(plan.addresses, vec!["192.168.122.1/24".parse().unwrap()]);
        assert_eq!(
            plan.firewall,
            FirewallPolicy::Nat {
                subnet: "192.168.122.0/24".parse().unwrap(),
                uplink: Some(IfName::new("eth0").unwrap()),
            }
        );
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
        assert!(matches!(
            plan.firewall,
            FirewallPolicy::Nat { subnet, .. } if subnet == "10.20.30.0/24".parse().unwrap()
        ));
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
