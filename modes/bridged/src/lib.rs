//! `bridged`: guests sit on the host's own L2 segment, and other machines on
//! the LAN see them directly; the host is a switch. Guests use the LAN's own
//! DHCP and DNS, so guestnet serves neither. Two shapes:
//!
//! ```toml
//! # a new bridge that enslaves a NIC; the NIC's addresses and routes move
//! # to the bridge while the network runs, and move back on stop
//! [bridged]
//! interface = "eth0"
//! ```
//!
//! ```toml
//! # a bridge that already exists, used as it is
//! bridge = "br0"
//! ```

use guestnet_mode_api::{
    mode_section, BridgePlan, Definition, FirewallPolicy, HostFacts, IfName, KeyDescription,
    KeyKind, Mode, ModeError, Plan, TableDescription,
};
use serde::Deserialize;

pub struct Bridged;

/// The `[bridged]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    /// The host NIC the new bridge enslaves.
    interface: Option<IfName>,
}

impl Mode for Bridged {
    fn name(&self) -> &str {
        "bridged"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn validate(&self, definition: &Definition) -> Result<(), ModeError> {
        let section: Section = mode_section(definition)?;
        let lan = "guests of a bridged network get their addresses from the LAN's DHCP";
        if definition.ipv4.address.is_some() {
            return Err(ModeError::invalid("ipv4.address", lan));
        }
        if !definition.ipv4.hosts.is_empty() {
            return Err(ModeError::invalid("ipv4.hosts", lan));
        }
        if !definition.host.allow.is_empty() {
            return Err(ModeError::invalid(
                "host.allow",
                "a bridged network has no host-input policy: the host is a plain switch for its \
                 guests, which reach the host as any LAN machine does (through the host's own firewall)",
            ));
        }
        if section.interface.is_none() && definition.bridge.is_none() {
            return Err(ModeError::invalid(
                "bridged",
                "give [bridged] interface = a NIC to enslave, or bridge = an existing bridge",
            ));
        }
        Ok(())
    }

    fn table(&self) -> TableDescription {
        table()
    }

    fn plan(&self, definition: &Definition, facts: &HostFacts) -> Result<Plan, ModeError> {
        self.validate(definition)?;
        let section: Section = mode_section(definition)?;
        let bridge = match (section.interface, &definition.bridge) {
            (Some(uplink), _) => enslave(definition, facts, uplink)?,
            (None, Some(name)) => existing(facts, name)?,
            (None, None) => unreachable!("validate refuses a definition with neither"),
        };
        Ok(Plan {
            bridge,
            addresses: vec![],
            routes: vec![],
            sysctls: vec![],
            firewall: FirewallPolicy::None,
            host_allow: vec![],
            dhcp: None,
            dns: None,
            warnings: vec![],
        })
    }
}

/// What `[bridged]` takes: the one key of [`Section`].
fn table() -> TableDescription {
    TableDescription {
        help: "Guests on the host's own LAN segment, seen directly by other machines; the host \
               is a switch, and the LAN's DHCP and DNS serve the guests. Give `interface` to \
               enslave a NIC to a new bridge, or leave it out and name an existing bridge with \
               the definition's `bridge`."
            .into(),
        keys: vec![KeyDescription::new(
            "interface",
            KeyKind::Interface,
            "The host NIC a new bridge enslaves; its addresses and routes move to the bridge \
             while the network runs, and back when it stops.",
        )
        .default_is("none: the definition's `bridge` names an existing bridge, used as it is")],
    }
}

/// A new bridge with `uplink` as its port.
fn enslave(
    definition: &Definition,
    facts: &HostFacts,
    uplink: IfName,
) -> Result<BridgePlan, ModeError> {
    let name = match &definition.bridge {
        Some(b) if facts.link(b.as_str()).is_some() => {
            return Err(ModeError::conflict(format!(
                "bridge {} already exists; leave out [bridged] interface to use it as it is",
                b.as_str()
            )))
        }
        Some(b) => b.clone(),
        None => facts
            .free_bridge_name
            .clone()
            .ok_or_else(|| ModeError::conflict("no free bridge name on this host"))?,
    };
    let nic = uplink.as_str();
    let link = facts
        .link(nic)
        .ok_or_else(|| ModeError::conflict(format!("interface {nic} does not exist")))?;
    if link.kind.as_deref() == Some("bridge") {
        return Err(ModeError::conflict(format!(
            "interface {nic} is a bridge; give it as bridge = \"{nic}\" instead"
        )));
    }
    if let Some(master) = &link.master {
        return Err(ModeError::conflict(format!(
            "interface {nic} is already a port of {}",
            master.as_str()
        )));
    }
    Ok(BridgePlan::EnslaveUplink {
        name,
        uplink,
        mtu: definition.mtu,
    })
}

/// A bridge that exists on the host and is not ours.
fn existing(facts: &HostFacts, name: &IfName) -> Result<BridgePlan, ModeError> {
    let b = name.as_str();
    match facts.link(b) {
        None => Err(ModeError::conflict(format!("bridge {b} does not exist"))),
        Some(l) if l.kind.as_deref() != Some("bridge") => Err(ModeError::conflict(format!(
            "{b} is not a bridge; give it as [bridged] interface = \"{b}\" to enslave it"
        ))),
        Some(_) => Ok(BridgePlan::Existing { name: name.clone() }),
    }
}

guestnet_mode_api::export_mode!(Bridged, Bridged);

#[cfg(test)]
mod tests {
    use super::*;
    use guestnet_mode_api::LinkFact;

    fn def(toml: &str) -> Definition {
        Definition::parse(&format!("name = \"b\"\nmode = \"bridged\"\n{toml}")).unwrap()
    }

    fn link(name: &str, kind: Option<&str>, master: Option<&str>) -> LinkFact {
        LinkFact {
            name: IfName::new(name).unwrap(),
            kind: kind.map(Into::into),
            master: master.map(|m| IfName::new(m).unwrap()),
            addresses: vec!["192.168.1.20/24".parse().unwrap()],
            mtu: 1500,
        }
    }

    /// eth0, br0 (a bridge), eth1 (a port of br0) and a free name guestnet3.
    fn host() -> HostFacts {
        HostFacts {
            links: vec![
                link("eth0", None, None),
                link("br0", Some("bridge"), None),
                link("eth1", None, Some("br0")),
            ],
            free_bridge_name: Some(IfName::new("guestnet3").unwrap()),
            free_subnet: Some("10.20.33.1/24".parse().unwrap()),
            ..Default::default()
        }
    }

    fn conflict(toml: &str) -> String {
        match Bridged.plan(&def(toml), &host()) {
            Err(ModeError::Conflict { reason }) => reason,
            other => panic!("{toml}: {other:?}"),
        }
    }

    fn invalid_field(toml: &str) -> String {
        match Bridged.validate(&def(toml)) {
            Err(ModeError::Invalid { field, .. }) => field,
            other => panic!("{toml}: {other:?}"),
        }
    }

    fn assert_no_services(plan: &Plan) {
        assert!(plan.addresses.is_empty() && plan.routes.is_empty() && plan.sysctls.is_empty());
        assert_eq!(plan.firewall, FirewallPolicy::None);
        assert!(plan.dhcp.is_none() && plan.dns.is_none());
    }

    #[test]
    fn interface_is_enslaved_to_a_new_bridge() {
        let d = def("bridge = \"lan0\"\nmtu = 9000\n[bridged]\ninterface = \"eth0\"");
        Bridged.validate(&d).unwrap();
        let plan = Bridged.plan(&d, &host()).unwrap();
        assert_eq!(
            plan.bridge,
            BridgePlan::EnslaveUplink {
                name: IfName::new("lan0").unwrap(),
                uplink: IfName::new("eth0").unwrap(),
                mtu: Some(9000),
            }
        );
        assert_no_services(&plan);
    }

    #[test]
    fn without_a_bridge_name_the_free_one_is_used() {
        let plan = Bridged
            .plan(&def("[bridged]\ninterface = \"eth0\""), &host())
            .unwrap();
        assert_eq!(plan.bridge.name().as_str(), "guestnet3");
        let facts = HostFacts {
            free_bridge_name: None,
            ..host()
        };
        assert!(Bridged
            .plan(&def("[bridged]\ninterface = \"eth0\""), &facts)
            .is_err());
    }

    #[test]
    fn existing_bridge_is_used_as_it_is() {
        let d = def("bridge = \"br0\"");
        Bridged.validate(&d).unwrap();
        let plan = Bridged.plan(&d, &host()).unwrap();
        assert_eq!(
            plan.bridge,
            BridgePlan::Existing {
                name: IfName::new("br0").unwrap()
            }
        );
        assert_no_services(&plan);
    }

    #[test]
    fn host_conflicts_name_the_interface() {
        let cases = [
            ("[bridged]\ninterface = \"eth7\"", "eth7 does not exist"),
            ("[bridged]\ninterface = \"eth1\"", "already a port of br0"),
            ("[bridged]\ninterface = \"br0\"", "br0 is a bridge"),
            (
                "bridge = \"br0\"\n[bridged]\ninterface = \"eth0\"",
                "br0 already exists",
            ),
            ("bridge = \"br9\"", "br9 does not exist"),
            ("bridge = \"eth0\"", "eth0 is not a bridge"),
        ];
        for (toml, want) in cases {
            let reason = conflict(toml);
            assert!(reason.contains(want), "{toml}: {reason}");
        }
    }

    #[test]
    fn definitions_for_guestnet_dhcp_are_refused() {
        let hosts = "[ipv4]\naddress = \"192.168.1.1/24\"\n\
                     hosts = [{ mac = \"52:54:00:00:00:01\", ip = \"192.168.1.5\" }]";
        assert_eq!(
            invalid_field("bridge = \"br0\"\n[ipv4]\naddress = \"192.168.1.1/24\""),
            "ipv4.address"
        );
        // The address is checked first; hosts cannot be given without one.
        assert_eq!(
            invalid_field(&format!("bridge = \"br0\"\n{hosts}")),
            "ipv4.address"
        );
        assert!(Bridged
            .plan(
                &def("bridge = \"br0\"\n[ipv4]\naddress = \"192.168.1.1/24\""),
                &host()
            )
            .is_err());
    }

    #[test]
    fn a_host_allow_list_is_refused_since_the_host_is_a_switch() {
        assert_eq!(
            invalid_field("bridge = \"br0\"\n[host]\nallow = [\"tcp/22\"]"),
            "host.allow"
        );
    }

    #[test]
    fn neither_interface_nor_bridge_is_refused() {
        assert_eq!(invalid_field(""), "bridged");
        assert_eq!(invalid_field("[bridged]"), "bridged");
    }

    #[test]
    fn bad_section_is_refused() {
        assert_eq!(invalid_field("[bridged]\nnic = \"eth0\""), "bridged.nic");
        assert_eq!(
            invalid_field("[bridged]\ninterface = \"a b\""),
            "bridged.interface"
        );
    }

    #[test]
    fn the_table_describes_the_keys_validate_takes() {
        let table = Bridged.table();
        assert!(!table.help.is_empty());
        let names: Vec<&str> = table.keys.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["interface"]);
        assert_eq!(table.keys[0].kind, KeyKind::Interface);
        assert!(!table.keys[0].required, "bridge = may stand in for it");
        for key in &table.keys {
            assert!(!key.help.is_empty(), "{}", key.name);
            Bridged
                .validate(&def(&format!("[bridged]\n{} = \"eth0\"", key.name)))
                .unwrap();
        }
    }
}
