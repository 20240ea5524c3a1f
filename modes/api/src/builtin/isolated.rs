//! `isolated`: guests sit on a private subnet behind a bridge and talk to
//! each other and to the host only (its DHCP, DNS, ping and the ports the
//! definition's `[host] allow` opens); nothing is forwarded in or out. DHCP
//! offers no default route. guestnet's DNS still forwards upstream, so an
//! outside name resolves while a ping to it fails. Takes no `[isolated]`
//! settings.

use crate::{
    own_subnet, Definition, Endpoint, FirewallPolicy, FirewallRule, HostFacts, ModeError, Plan,
    TableDescription,
};

/// [`own_subnet::plan`] without a default gateway, and `deny guests →
/// anywhere`, `deny anywhere → guests`.
pub fn plan(definition: &Definition, facts: &HostFacts) -> Result<Plan, ModeError> {
    own_subnet::refuse_forwards(definition, "isolated")?;
    let mut plan = own_subnet::plan(definition, facts, own_subnet::Gateway::Withheld)?;
    plan.firewall = FirewallPolicy::Rules {
        guests: vec![],
        rules: vec![
            FirewallRule::deny(Endpoint::Guests, Endpoint::Anywhere),
            FirewallRule::deny(Endpoint::Anywhere, Endpoint::Guests),
        ],
    };
    Ok(plan)
}

/// What `[isolated]` takes: nothing; the description says what the mode is.
pub fn table() -> TableDescription {
    TableDescription {
        help: "Guests on a private subnet that reach each other and the host only, with \
               guestnet's DHCP and DNS. Takes no settings."
            .into(),
        keys: vec![],
    }
}
