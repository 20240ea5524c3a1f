//! `routed`: guests sit on their own subnet behind a bridge, with DHCP and
//! DNS from guestnet. The host routes the subnet at L3 without NAT, both
//! ways: an outside host with a route to the subnet via this host reaches
//! guests by their own addresses. Takes no `[routed]` settings.

use crate::{
    own_subnet, Definition, Endpoint, FirewallPolicy, FirewallRule, HostFacts, ModeError, Plan,
    Sysctl, SysctlKey, TableDescription,
};

/// [`own_subnet::plan`], IPv4 forwarding, and `allow guests → anywhere`,
/// `allow anywhere → guests`.
pub fn plan(definition: &Definition, facts: &HostFacts) -> Result<Plan, ModeError> {
    let mut plan = own_subnet::plan(definition, facts, own_subnet::Gateway::Offered)?;
    plan.sysctls.push(Sysctl {
        key: SysctlKey::Ipv4Forward,
        value: "1".into(),
    });
    plan.firewall = FirewallPolicy::Rules {
        guests: vec![],
        rules: vec![
            FirewallRule::allow(Endpoint::Guests, Endpoint::Anywhere),
            FirewallRule::allow(Endpoint::Anywhere, Endpoint::Guests),
        ],
    };
    own_subnet::add_forwards(&mut plan, definition, facts);
    Ok(plan)
}

/// What `[routed]` takes: nothing; the description says what the mode is.
pub fn table() -> TableDescription {
    TableDescription {
        help: "Guests on their own subnet, routed by the host without NAT both ways, with \
               guestnet's DHCP and DNS. Takes no settings."
            .into(),
        keys: vec![],
    }
}
