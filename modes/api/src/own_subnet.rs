//! The part of a plan that every mode giving guests a subnet of their own
//! shares (nat, routed, isolated and most third-party modes): a new bridge,
//! the host's address on it, and DHCP and DNS on that address (with the
//! definition's `[dns]` records, upstream and per-domain servers). The mode then
//! adds its firewall policy and sysctls.

use crate::{
    BridgePlan, Definition, DhcpPlan, DnsPlan, DnsRecord, FirewallPolicy, HostFacts, ModeError,
    Plan,
};

/// Whether DHCP offers the host as the guests' default gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gateway {
    Offered,
    /// Isolated networks: no default route, as libvirt does.
    Withheld,
}

/// A plan with a new bridge on the definition's subnet (or the free one the
/// service found), DHCP and DNS, no firewall rules and no sysctls.
pub fn plan(
    definition: &Definition,
    facts: &HostFacts,
    gateway: Gateway,
) -> Result<Plan, ModeError> {
    let bridge = definition
        .bridge
        .clone()
        .or_else(|| facts.free_bridge_name.clone())
        .ok_or_else(|| ModeError::conflict("no free bridge name on this host"))?;
    let chosen = match (definition.ipv4.address, facts.free_subnet) {
        (Some(a), _) => a,
        (None, Some(free)) => free,
        (None, None) => return Err(ModeError::conflict("no free private /24 on this host")),
    };
    let ipv4 = definition.resolve_ipv4(chosen);
    let host = ipv4.address.addr();
    let subnet = ipv4.address.trunc();
    // The definition's further options (NTP, routes, search, PXE, raw),
    // served as they are.
    let options = definition
        .ipv4
        .dhcp
        .as_ref()
        .map(|d| d.options.clone())
        .unwrap_or_default();
    let dhcp = ipv4.dhcp.as_ref().map(|d| DhcpPlan {
        server: host,
        subnet,
        range_start: d.start,
        range_end: d.end,
        lease_time_secs: d.lease_time_secs,
        router: (gateway == Gateway::Offered).then_some(host),
        dns_server: Some(host),
        domain: definition.dns.domain.clone(),
        mtu: definition.mtu,
        hosts: ipv4.hosts.clone(),
        max_leases_per_port: d.max_leases_per_port,
        options,
    });
    let records = ipv4
        .hosts
        .iter()
        .filter_map(|h| {
            h.name.as_ref().map(|n| DnsRecord {
                name: n.clone(),
                ip: h.ip,
            })
        })
        .collect();
    Ok(Plan {
        bridge: BridgePlan::Create {
            name: bridge,
            mtu: definition.mtu,
        },
        addresses: vec![ipv4.address],
        routes: vec![],
        sysctls: vec![],
        firewall: FirewallPolicy::None,
        host_allow: definition.host.allow.clone(),
        dhcp,
        dns: Some(DnsPlan {
            listen: host,
            domain: definition.dns.domain.clone(),
            forwarders: definition.dns.forwarders.clone(),
            records,
            upstream: definition.dns.upstream,
            domain_servers: definition.dns.domain_servers.clone(),
            typed_records: definition.dns.records.clone(),
        }),
        warnings: vec![],
    })
}

/// Adds the definition's port forwards to a plan of the guests' own subnet
/// (nat, routed): a rule for each forward whose guest has an address, a
/// warning for each that has none yet. See [`crate::forwards`].
pub fn add_forwards(plan: &mut Plan, definition: &Definition, facts: &HostFacts) {
    if definition.forwards.is_empty() {
        return;
    }
    let Some(subnet) = plan.addresses.first().map(|a| a.trunc()) else {
        return;
    };
    let (rules, warnings) =
        crate::forwards::rules(&definition.forwards, &definition.ipv4.hosts, facts, subnet);
    if let FirewallPolicy::Rules { rules: r, .. } = &mut plan.firewall {
        r.extend(rules);
    }
    plan.warnings.extend(warnings);
}

/// Refuses a definition with forwards, for a mode that has no use for them.
pub fn refuse_forwards(definition: &Definition, mode: &str) -> Result<(), ModeError> {
    if definition.forwards.is_empty() {
        Ok(())
    } else {
        Err(ModeError::invalid(
            "forwards",
            format!("a {mode} network forwards no ports: use nat or routed"),
        ))
    }
}
