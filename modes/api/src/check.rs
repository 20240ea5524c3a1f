//! What guestnetd checks in every plan before it touches the host, as a
//! pure function a mode's own tests can call ([`Plan::check`]). A plan is
//! treated as hostile input: every list is bounded, every rule must make
//! sense; a refusal names the part of the plan (`firewall.rules[2]`). The
//! checks against the host and the other networks (overlapping subnets and
//! routes, bridges that are not guestnet's) come after these, in
//! guestnetd, and are described on [`Plan`]'s fields.

use crate::plan::{
    DhcpOptions, DnsPlan, Endpoint, FirewallPolicy, FirewallRule, Plan, RawDhcpOption, RecordData,
    MAX_FIREWALL_RULES, MAX_HOST_ALLOW, MAX_WARNINGS,
};
use crate::{names::check_label, ModeError};

/// Most routes, NTP servers or search domains a DHCP plan may hand out.
pub const MAX_DHCP_LIST: usize = 32;
/// Most raw DHCP options a plan may carry.
pub const MAX_RAW_DHCP_OPTIONS: usize = 32;
/// Most typed DNS records a plan may carry.
pub const MAX_DNS_RECORDS: usize = 4096;
/// Most per-domain upstreams, and servers for one domain.
pub const MAX_DOMAIN_SERVERS: usize = 16;
/// Most ports one forward may map onto a range of another start.
pub const MAX_SHIFTED_FORWARD_PORTS: u16 = 64;

/// The DHCP options guestnet sets itself, which a raw option may not name:
/// pad, mask, router, DNS, host name, domain, MTU, requested address,
/// lease time, overload, message type, server id, parameter list, message,
/// max size, renewal and rebinding times, client id, the PXE pair, search,
/// classless routes (121 and 249), relay agent information and end.
pub const DHCP_OPTIONS_OF_GUESTNET: &[u8] = &[
    0, 1, 3, 6, 12, 15, 26, 42, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 61, 66, 67, 82, 119, 121,
    249, 255,
];

fn refuse(field: impl Into<String>, reason: impl Into<String>) -> ModeError {
    ModeError::invalid(field, reason)
}

impl Plan {
    /// Refuses a plan guestnetd would refuse on its own, before looking at
    /// the host: too long a list, a rule that makes no sense, a value a
    /// sysctl does not take. `Err` names the part of the plan.
    pub fn check(&self) -> Result<(), ModeError> {
        if self.host_allow.len() > MAX_HOST_ALLOW {
            return Err(refuse(
                "host_allow",
                format!(
                    "{} host ports; the limit is {MAX_HOST_ALLOW}",
                    self.host_allow.len()
                ),
            ));
        }
        if self.warnings.len() > MAX_WARNINGS {
            return Err(refuse(
                "warnings",
                format!(
                    "{} warnings; the limit is {MAX_WARNINGS}",
                    self.warnings.len()
                ),
            ));
        }
        for (i, s) in self.sysctls.iter().enumerate() {
            if !s.key.values().contains(&s.value.as_str()) {
                return Err(refuse(
                    format!("sysctls[{i}]"),
                    format!(
                        "{} takes {}, not {:?}",
                        s.key.name(),
                        s.key.values().join(", "),
                        s.value
                    ),
                ));
            }
        }
        self.check_firewall()?;
        if let Some(dhcp) = &self.dhcp {
            check_dhcp_options(&dhcp.options)?;
            for (i, h) in dhcp.hosts.iter().enumerate() {
                let field = format!("dhcp.hosts[{i}]");
                if let Some(f) = &h.filename {
                    check_filename(&format!("{field}.filename"), f)?;
                }
                check_raw_options(&format!("{field}.options"), &h.options)?;
            }
        }
        if let Some(dns) = &self.dns {
            check_dns(dns)?;
        }
        Ok(())
    }

    fn check_firewall(&self) -> Result<(), ModeError> {
        let FirewallPolicy::Rules { guests, rules } = &self.firewall else {
            return Ok(());
        };
        if rules.len() > MAX_FIREWALL_RULES {
            return Err(refuse(
                "firewall.rules",
                format!("{} rules; the limit is {MAX_FIREWALL_RULES}", rules.len()),
            ));
        }
        if guests.len() > MAX_FIREWALL_RULES {
            return Err(refuse("firewall.guests", "too many subnets"));
        }
        let (subnets, _) = self
            .firewall
            .to_rules(&self.addresses)
            .expect("a rules policy has rules");
        // The guests are the network's own: its subnets, or subnets it
        // routes through its bridge. Anything wider would make its NAT
        // exceptions and allows speak for other networks' guests.
        for (i, g) in guests.iter().enumerate() {
            let own = self.addresses.iter().any(|a| a.trunc().contains(g))
                || self
                    .routes
                    .iter()
                    .any(|r| r.destination.trunc().contains(g));
            if !own {
                return Err(refuse(
                    format!("firewall.guests[{i}]"),
                    format!(
                        "{g} is neither in the network's subnets nor routed through its bridge"
                    ),
                ));
            }
        }
        if subnets.is_empty() && !rules.is_empty() {
            return Err(refuse(
                "firewall.guests",
                "the rules need the guests' subnets: give them, or addresses to the plan",
            ));
        }
        for (i, rule) in rules.iter().enumerate() {
            let field = || format!("firewall.rules[{i}]");
            match rule {
                FirewallRule::Allow { from, to } | FirewallRule::Deny { from, to } => {
                    let guests_from = *from == Endpoint::Guests;
                    let guests_to = *to == Endpoint::Guests;
                    if guests_from == guests_to {
                        return Err(refuse(
                            field(),
                            "exactly one side of a rule must be the guests",
                        ));
                    }
                    if *from == Endpoint::Host {
                        return Err(refuse(
                            field(),
                            "the host is a destination only: what the host sends is not filtered",
                        ));
                    }
                }
                FirewallRule::Masquerade { except, .. } => {
                    if except.len() > MAX_FIREWALL_RULES {
                        return Err(refuse(format!("{}.except", field()), "too many subnets"));
                    }
                }
                FirewallRule::Forward {
                    port, to, to_port, ..
                } => {
                    if !subnets.iter().any(|s| s.contains(to)) {
                        return Err(refuse(
                            format!("{}.to", field()),
                            format!("{to} is not in the guests' subnets"),
                        ));
                    }
                    // guestnet answers DNS and DHCP on the host: a forward
                    // of those ports on every address would take them from
                    // every network's guests.
                    let reserved = |p: u16| match port.protocol {
                        crate::Protocol::Udp => p == 53 || p == 67,
                        crate::Protocol::Tcp => p == 53,
                    };
                    let address = match rule {
                        FirewallRule::Forward { address, .. } => *address,
                        _ => None,
                    };
                    if address.is_none() && (port.first..=port.last).any(reserved) {
                        return Err(refuse(
                            format!("{}.port", field()),
                            format!(
                                "{port} holds a port guestnet serves DNS or DHCP on; give the forward an address"
                            ),
                        ));
                    }
                    let span = port.last - port.first;
                    if *to_port == 0 || u32::from(*to_port) + u32::from(span) > 65535 {
                        return Err(refuse(
                            format!("{}.to_port", field()),
                            format!("{to_port} plus the range's {span} more ports is not a port"),
                        ));
                    }
                    if *to_port != port.first && span >= MAX_SHIFTED_FORWARD_PORTS {
                        return Err(refuse(
                            format!("{}.to_port", field()),
                            format!(
                                "a range onto ports that start elsewhere may span at most {MAX_SHIFTED_FORWARD_PORTS} ports"
                            ),
                        ));
                    }
                }
                FirewallRule::IsolateGuests => {}
            }
        }
        Ok(())
    }
}

fn check_dhcp_options(o: &DhcpOptions) -> Result<(), ModeError> {
    for (field, len) in [
        ("ntp", o.ntp.len()),
        ("routes", o.routes.len()),
        ("search", o.search.len()),
    ] {
        if len > MAX_DHCP_LIST {
            return Err(refuse(
                format!("dhcp.options.{field}"),
                format!("{len} entries; the limit is {MAX_DHCP_LIST}"),
            ));
        }
    }
    if let Some(f) = &o.filename {
        check_filename("dhcp.options.filename", f)?;
    }
    check_raw_options("dhcp.options.raw", &o.raw)
}

fn check_filename(field: &str, f: &str) -> Result<(), ModeError> {
    // The header's `file` field holds 128 bytes with its terminator.
    if f.len() > 127 || f.bytes().any(|b| b == 0) {
        return Err(refuse(field, "at most 127 bytes, without NUL"));
    }
    Ok(())
}

fn check_raw_options(field: &str, raw: &[RawDhcpOption]) -> Result<(), ModeError> {
    if raw.len() > MAX_RAW_DHCP_OPTIONS {
        return Err(refuse(
            field,
            format!("{} options; the limit is {MAX_RAW_DHCP_OPTIONS}", raw.len()),
        ));
    }
    for (i, r) in raw.iter().enumerate() {
        if DHCP_OPTIONS_OF_GUESTNET.contains(&r.code) {
            return Err(refuse(
                format!("{field}[{i}].code"),
                format!("option {} is one guestnet sets itself", r.code),
            ));
        }
        if r.value.len() > 255 {
            return Err(refuse(
                format!("{field}[{i}].value"),
                "an option holds at most 255 bytes",
            ));
        }
        if raw[..i].iter().any(|p| p.code == r.code) {
            return Err(refuse(
                format!("{field}[{i}].code"),
                format!("option {} is given twice", r.code),
            ));
        }
    }
    Ok(())
}

fn check_dns(dns: &DnsPlan) -> Result<(), ModeError> {
    if dns.typed_records.len() > MAX_DNS_RECORDS {
        return Err(refuse(
            "dns.typed_records",
            format!(
                "{} records; the limit is {MAX_DNS_RECORDS}",
                dns.typed_records.len()
            ),
        ));
    }
    if dns.domain_servers.len() > MAX_DOMAIN_SERVERS {
        return Err(refuse(
            "dns.domain_servers",
            format!("the limit is {MAX_DOMAIN_SERVERS} domains"),
        ));
    }
    for (i, d) in dns.domain_servers.iter().enumerate() {
        if d.servers.is_empty() || d.servers.len() > MAX_DOMAIN_SERVERS {
            return Err(refuse(
                format!("dns.domain_servers[{i}].servers"),
                format!("from 1 to {MAX_DOMAIN_SERVERS} servers"),
            ));
        }
    }
    for (i, r) in dns.typed_records.iter().enumerate() {
        let field = |f: &str| format!("dns.typed_records[{i}].{f}");
        check_relative_name(&r.name, true).map_err(|e| refuse(field("name"), e))?;
        match &r.data {
            RecordData::A { .. } => {}
            RecordData::Cname { target } => {
                check_relative_name(target, false).map_err(|e| refuse(field("target"), e))?
            }
            RecordData::Mx { exchange, .. } => {
                check_relative_name(exchange, false).map_err(|e| refuse(field("exchange"), e))?
            }
            RecordData::Srv { target, .. } => {
                check_relative_name(target, false).map_err(|e| refuse(field("target"), e))?
            }
            RecordData::Txt { text } => {
                let total: usize = text.iter().map(|t| t.len() + 1).sum();
                if text.is_empty() || text.iter().any(|t| t.len() > 255) || total > 4000 {
                    return Err(refuse(
                        field("text"),
                        "one or more strings of at most 255 bytes, 4000 in all",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A record's name (relative to the network's domain, `_` allowed for
/// services) or a name it points to (may end with a dot: absolute).
pub(crate) fn check_relative_name(name: &str, owner: bool) -> Result<(), String> {
    let bare = if owner {
        name
    } else {
        name.strip_suffix('.').unwrap_or(name)
    };
    if bare.is_empty() || bare.len() > 253 {
        return Err(format!("{name:?} is not a DNS name"));
    }
    for label in bare.split('.') {
        let plain = label.strip_prefix('_').unwrap_or(label);
        check_label(plain).map_err(|e| format!("{name:?}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{builtin::nat, Definition, FirewallPolicy, HostFacts, IfName};

    fn plan() -> crate::Plan {
        let facts = HostFacts {
            free_bridge_name: Some(IfName::new("gn0").unwrap()),
            free_subnet: Some("10.20.30.1/24".parse().unwrap()),
            ..Default::default()
        };
        nat::plan(&Definition::parse("name = \"n\"").unwrap(), &facts).unwrap()
    }

    /// Caught in review: a plan naming 0.0.0.0/0 as its guests made its
    /// NAT exceptions speak for every network's guests.
    #[test]
    fn guests_are_the_networks_own_subnets_or_routes() {
        let mut p = plan();
        p.check().unwrap();
        if let FirewallPolicy::Rules { guests, .. } = &mut p.firewall {
            *guests = vec!["0.0.0.0/0".parse().unwrap()];
        }
        let e = p.check().unwrap_err();
        assert!(e.to_string().contains("firewall.guests[0]"), "{e}");
        p.routes.push(crate::RoutePlan {
            destination: "0.0.0.0/0".parse().unwrap(),
            gateway: Some("10.20.30.5".parse().unwrap()),
            metric: None,
        });
        p.check().unwrap();
    }
}
