//! `nat` (the default mode): guests sit on a private subnet behind a bridge,
//! get their address from guestnet's DHCP and resolve names through its DNS.
//! The host masquerades their traffic out of its own address, through the
//! `[nat] uplink` NIC when one is given (else the default route's); outside
//! hosts cannot open connections to guests.
//!
//! ```toml
//! [nat]
//! uplink = "eth0"          # optional
//! isolate_guests = true    # optional: guests do not reach each other
//! ```

use crate::{
    mode_section, own_subnet, Definition, Endpoint, FirewallPolicy, FirewallRule, HostFacts,
    IfName, KeyDescription, KeyKind, ModeError, Plan, Sysctl, SysctlKey, TableDescription,
};
use serde::Deserialize;

/// The `[nat]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// The only NIC guests' traffic is masqueraded through.
    pub uplink: Option<IfName>,
    /// Guests on the bridge do not reach each other, only the host and
    /// the outside ([`FirewallRule::IsolateGuests`]).
    #[serde(default)]
    pub isolate_guests: bool,
}

/// Checks the `[nat]` table.
pub fn validate(definition: &Definition) -> Result<(), ModeError> {
    mode_section::<Section>(definition).map(drop)
}

/// What `[nat]` takes.
pub fn table() -> TableDescription {
    TableDescription {
        help: "Guests on a private subnet, masqueraded out of the host's address.".into(),
        keys: vec![
            KeyDescription::new(
                "uplink",
                KeyKind::Interface,
                "The only NIC guests' traffic leaves through, masqueraded.",
            )
            .default_is("the NIC of the host's default route"),
            KeyDescription::new(
                "isolate_guests",
                KeyKind::Boolean,
                "Guests do not reach each other, only the host and the outside.",
            )
            .default_is("false"),
        ],
    }
}

/// The plan of a nat network: [`own_subnet::plan`], IPv4 forwarding, and
/// the rules `allow guests → uplink` (or anywhere, when the host has no
/// default route and the definition names no uplink) and `masquerade`
/// through the same uplink. Reads the definition's `[nat]` table with
/// [`mode_section`], so a mode extending nat should give its own table the
/// same `uplink` key or none.
pub fn plan(definition: &Definition, facts: &HostFacts) -> Result<Plan, ModeError> {
    let section: Section = mode_section(definition)?;
    let mut plan = plan_with(definition, facts, section.uplink)?;
    if section.isolate_guests {
        if let FirewallPolicy::Rules { rules, .. } = &mut plan.firewall {
            rules.push(FirewallRule::IsolateGuests);
        }
    }
    Ok(plan)
}

/// [`plan`] with the uplink chosen by the caller (`None`: the default
/// route's NIC, else any), for modes whose table is not `[nat]`'s.
pub fn plan_with(
    definition: &Definition,
    facts: &HostFacts,
    uplink: Option<IfName>,
) -> Result<Plan, ModeError> {
    if let Some(uplink) = &uplink {
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
    let uplink = uplink.or_else(|| facts.default_route_interface.clone());
    let out = match &uplink {
        Some(name) => Endpoint::Uplink { name: name.clone() },
        None => Endpoint::Anywhere,
    };
    plan.firewall = FirewallPolicy::Rules {
        guests: vec![],
        rules: vec![
            FirewallRule::allow(Endpoint::Guests, out),
            FirewallRule::Masquerade {
                uplink,
                except: vec![],
            },
        ],
    };
    own_subnet::add_forwards(&mut plan, definition, facts);
    Ok(plan)
}

/// The uplink a nat plan masquerades through, if it names one.
pub fn uplink_of(plan: &Plan) -> Option<&IfName> {
    match &plan.firewall {
        FirewallPolicy::Rules { rules, .. } => rules.iter().find_map(|r| match r {
            FirewallRule::Masquerade { uplink, .. } => uplink.as_ref(),
            _ => None,
        }),
        FirewallPolicy::Nat { uplink, .. } => uplink.as_ref(),
        _ => None,
    }
}
