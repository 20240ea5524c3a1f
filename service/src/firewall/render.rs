//! The text of guestnet's tables, from the active networks' firewall
//! rules: pure, so every verdict below is a unit test away.
//!
//! A network's plan says what crosses the firewall as a
//! [`FirewallPolicy`]; [`NetworkRules::of`] turns it into the typed rules
//! of the mode API ([`FirewallRule`], the fixed policies of API 1.0 being
//! shorthands for rule lists), and [`render`] writes every network's rules
//! into `inet guestnet` in passes, so that no network's verdict depends on
//! another network's name or place in the list.

use guestnet_mode_api::{Endpoint, FirewallPolicy, FirewallRule, HostPort, IfName, Plan, Protocol};
use ipnet::Ipv4Net;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::TABLE;

/// One active network's part of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRules {
    pub network: String,
    pub bridge: IfName,
    /// The network's rules; `None` for [`FirewallPolicy::None`] (the host
    /// is a plain switch: nothing of the network is in the table).
    pub policy: Option<Rules>,
    /// What its guests may reach on the host (unused without a policy).
    pub host: HostInput,
}

/// A network's typed firewall rules, with what `guests` means in them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// The guests' subnets.
    pub guests: Vec<Ipv4Net>,
    pub rules: Vec<FirewallRule>,
}

impl Rules {
    pub fn of(policy: &FirewallPolicy, addresses: &[Ipv4Net]) -> Option<Self> {
        policy
            .to_rules(addresses)
            .map(|(guests, rules)| Rules { guests, rules })
    }

    fn has(&self, rule: &FirewallRule) -> bool {
        self.rules.contains(rule)
    }

    fn allows(&self, from: &Endpoint, to: &Endpoint) -> bool {
        self.has(&FirewallRule::allow(from.clone(), to.clone()))
    }

    fn forwards(&self) -> impl Iterator<Item = Forward<'_>> {
        self.rules.iter().filter_map(|r| match r {
            FirewallRule::Forward {
                port,
                address,
                to,
                to_port,
            } => Some(Forward {
                port,
                address: address.as_ref(),
                to: *to,
                to_port: *to_port,
            }),
            _ => None,
        })
    }

    /// Whether anything from outside may open a connection to the guests
    /// (an inbound allow or a forward).
    pub fn takes_inbound(&self) -> bool {
        self.forwards().next().is_some()
            || self.rules.iter().any(|r| {
                matches!(r, FirewallRule::Allow { to: Endpoint::Guests, from } if *from != Endpoint::Guests)
            })
    }

    /// Whether guests may open connections out.
    pub fn sends_out(&self) -> bool {
        self.rules.iter().any(|r| {
            matches!(r, FirewallRule::Allow { from: Endpoint::Guests, to } if *to != Endpoint::Host)
        })
    }
}

struct Forward<'a> {
    port: &'a HostPort,
    address: Option<&'a Ipv4Addr>,
    to: Ipv4Addr,
    to_port: u16,
}

impl NetworkRules {
    /// The rules of network `network` with plan `plan`.
    pub fn of(network: &str, plan: &Plan) -> Self {
        NetworkRules {
            network: network.to_owned(),
            bridge: plan.bridge.name().clone(),
            policy: Rules::of(&plan.firewall, &plan.addresses),
            host: HostInput::of(plan),
        }
    }
}

/// What a network's guests may reach on the host: what guestnet serves
/// them, and the ports the definition opens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInput {
    /// The host's own addresses on the bridge, where `allow` is opened.
    pub addresses: Vec<Ipv4Addr>,
    /// The DHCP server's address when guestnet serves DHCP on the bridge:
    /// udp 67 is open to it and to the broadcast address, over IPv4 only.
    pub dhcp: Option<Ipv4Addr>,
    /// The address guestnet's DNS listens on for the network (udp and tcp 53).
    pub dns: Option<Ipv4Addr>,
    /// Further ports, from the definition's `[host] allow`.
    pub allow: Vec<HostPort>,
}

impl HostInput {
    pub fn of(plan: &Plan) -> Self {
        HostInput {
            addresses: plan.addresses.iter().map(|a| a.addr()).collect(),
            dhcp: plan.dhcp.as_ref().map(|d| d.server),
            dns: plan.dns.as_ref().map(|d| d.listen),
            allow: plan.host_allow.clone(),
        }
    }
}

/// The nft batch that makes `inet guestnet` hold exactly `networks`' rules
/// (or not exist, when none has any). Creating the table first makes the
/// delete valid whether or not it existed; the batch is all-or-nothing.
pub fn render(networks: &[NetworkRules]) -> String {
    let mut out = format!(
        "table inet {TABLE} {{}}\ndelete table inet {TABLE}\n\
         table bridge {TABLE} {{}}\ndelete table bridge {TABLE}\n"
    );
    let with_rules: Vec<(&NetworkRules, &Rules)> = networks
        .iter()
        .filter_map(|n| n.policy.as_ref().map(|p| (n, p)))
        .collect();
    if with_rules.is_empty() {
        return out;
    }
    let forward = forward_rules(&with_rules, networks);
    let (mut input, mut prerouting, mut output, mut postrouting) =
        (String::new(), String::new(), String::new(), String::new());
    for (n, p) in &with_rules {
        input_rules(&mut input, n, p);
        dnat_rules(&mut prerouting, &mut output, n, p);
        nat_rules(&mut postrouting, n, p);
    }
    let _ = write!(
        out,
        "table inet {TABLE} {{\n\
         \tchain forward {{\n\t\ttype filter hook forward priority filter; policy accept;\n{forward}\t}}\n\
         \tchain input {{\n\t\ttype filter hook input priority filter; policy accept;\n{input}\t}}\n"
    );
    if !prerouting.is_empty() {
        let _ = write!(
            out,
            "\tchain prerouting {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n{prerouting}\t}}\n\
             \tchain output {{\n\t\ttype nat hook output priority -100; policy accept;\n{output}\t}}\n"
        );
    }
    let _ = write!(
        out,
        "\tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n{postrouting}\t}}\n\
         }}\n"
    );
    // Before anyone else's bridge rules. The only verdict is the rate's
    // drop, taken before the bridge floods a request to its other ports.
    let _ = write!(
        out,
        "table bridge {TABLE} {{\n\
         \t{}\n\
         \tchain dhcp_police {{\n\t\ttype filter hook prerouting priority -300; policy accept;\n\
         \t\t{} comment \"{DHCP_RATE_COMMENT}\"\n\t}}\n\
         \tchain dhcp_ports {{\n\t\ttype filter hook input priority -300; policy accept;\n\
         \t\t{} comment \"{DHCP_PORTS_COMMENT}\"\n\t}}\n\
         }}\n",
        crate::dhcp::port::RATE_SET,
        crate::dhcp::port::RATE_RULE,
        crate::dhcp::port::MARK_RULE
    );
    out
}

pub(super) const DHCP_PORTS_COMMENT: &str = "guestnet: DHCP requests carry their bridge port";
pub(super) const DHCP_RATE_COMMENT: &str =
    "guestnet: DHCP requests are rate-limited per bridge port";

/// Whether a batch made by [`render`] creates tables (rather than only
/// deleting them).
pub fn has_tables(batch: &str) -> bool {
    batch.lines().any(|l| l.ends_with(" {"))
}

/// The forward chain, in four passes over the networks, so that no
/// network's verdict depends on another network's name or place in the
/// list. Every rule names its own network's bridge as the input or the
/// output interface (pass 2 and 3: output for what goes in, input for what
/// comes out), and a packet has one of each; so within a pass the rules of
/// two networks never match the same packet, and their order does not
/// matter. Only the order of the passes does:
///
/// 1. Guest to guest on one bridge: accepted (seen here when br_netfilter
///    is loaded), or refused with [`FirewallRule::IsolateGuests`].
/// 2. Every network's `deny` rules, before any other network's accept
///    can see the packet.
/// 3. Inbound, by the network the packet goes into: forwarded ports, the
///    network's inbound `allow`s, replies (`established,related`) when
///    nothing from anywhere is allowed; the rest is refused.
/// 4. Outbound, by the network the packet comes from: its outbound
///    `allow`s (and replies, when it takes inbound connections); the rest
///    is refused.
///
/// Refusals are `reject`, as libvirt does, so a sender learns at once
/// rather than timing out. Traffic touching no guestnet bridge with rules
/// (bridged networks: the host is a plain switch; the LAN; the host's own
/// traffic, which is not forwarded) is not matched at all.
///
/// What follows for the built-in modes, for a guest of the row opening a
/// connection to a guest of the column (a bridged guest is a LAN host):
///
/// | from \ to | nat     | routed  | isolated | bridged |
/// |-----------|---------|---------|----------|---------|
/// | nat       | refused | allowed | refused  | allowed |
/// | routed    | refused | allowed | refused  | allowed |
/// | isolated  | refused | refused | refused  | refused |
/// | bridged   | refused | allowed | refused  | n/a     |
///
/// (Each network's own guests always reach each other: pass 1; the table
/// is between two networks.) A nat guest reaches a routed guest as it
/// would a LAN host: the routed network's inbound allow (pass 3) comes
/// before the nat network's outbound reject (pass 4), so this holds even
/// when the nat network names an uplink, as in libvirt. An isolated guest
/// reaches nothing forwarded, even with a route: unlike libvirt, whose
/// inbound accepts come before an isolated network's rejects, its denies
/// are pass 2.
fn forward_rules(networks: &[(&NetworkRules, &Rules)], all: &[NetworkRules]) -> String {
    let mut out = String::new();
    let others = |n: &NetworkRules| -> Option<String> {
        let names: Vec<String> = all
            .iter()
            .filter(|o| o.bridge != n.bridge)
            .map(|o| format!("\"{}\"", o.bridge))
            .collect();
        (!names.is_empty()).then(|| set(names))
    };
    for (n, p) in networks {
        let (br, tag) = (n.bridge.as_str(), comment(&n.network));
        let verdict = if p.has(&FirewallRule::IsolateGuests) {
            "reject"
        } else {
            "accept"
        };
        let _ = writeln!(out, "\t\tiifname \"{br}\" oifname \"{br}\" {verdict} {tag}");
    }
    for (n, p) in networks {
        let (br, tag) = (n.bridge.as_str(), comment(&n.network));
        for rule in &p.rules {
            let FirewallRule::Deny { from, to } = rule else {
                continue;
            };
            if let Some(m) = matcher(br, from, to, &[], others(n).as_deref()) {
                let _ = writeln!(out, "\t\t{m}reject {tag}");
            }
        }
    }
    // Passes 3 and 4 skip a direction a network denies whole: pass 2
    // refused all of it already.
    for (n, p) in networks {
        if p.has(&FirewallRule::deny(Endpoint::Anywhere, Endpoint::Guests)) {
            continue;
        }
        let (br, tag) = (n.bridge.as_str(), comment(&n.network));
        let guests = addr_set(&p.guests);
        for f in p.forwards() {
            let proto = f.port.protocol.as_str();
            let ports = to_ports(&f);
            let _ = writeln!(
                out,
                "\t\toifname \"{br}\" ip daddr {} {proto} dport {ports} ct status dnat accept {tag}",
                f.to
            );
        }
        for rule in &p.rules {
            match rule {
                FirewallRule::Allow {
                    from,
                    to: Endpoint::Guests,
                } if *from != Endpoint::Guests => {
                    if let Some(m) =
                        matcher(br, from, &Endpoint::Guests, &p.guests, others(n).as_deref())
                    {
                        let _ = writeln!(out, "\t\t{m}accept {tag}");
                    }
                }
                _ => {}
            }
        }
        if !p.allows(&Endpoint::Anywhere, &Endpoint::Guests) {
            let _ = writeln!(
                out,
                "\t\toifname \"{br}\" ip daddr {guests} ct state established,related accept {tag}"
            );
        }
        let _ = writeln!(out, "\t\toifname \"{br}\" reject {tag}");
    }
    for (n, p) in networks {
        if p.has(&FirewallRule::deny(Endpoint::Guests, Endpoint::Anywhere)) {
            continue;
        }
        let (br, tag) = (n.bridge.as_str(), comment(&n.network));
        if p.takes_inbound() && !p.allows(&Endpoint::Guests, &Endpoint::Anywhere) {
            let _ = writeln!(
                out,
                "\t\tiifname \"{br}\" ct state established,related accept {tag}"
            );
        }
        for rule in &p.rules {
            match rule {
                FirewallRule::Allow {
                    from: Endpoint::Guests,
                    to,
                } if !matches!(to, Endpoint::Guests | Endpoint::Host) => {
                    if let Some(m) =
                        matcher(br, &Endpoint::Guests, to, &p.guests, others(n).as_deref())
                    {
                        let _ = writeln!(out, "\t\t{m}accept {tag}");
                    }
                }
                _ => {}
            }
        }
        let _ = writeln!(out, "\t\tiifname \"{br}\" reject {tag}");
    }
    out
}

/// The match part of a forward rule between the guests on `br` and
/// `peer`, one of them being [`Endpoint::Guests`], with a trailing space;
/// `guests` qualifies the guests' side by address (empty: any address, as
/// denies are). `None` when the rule cannot match anything (other
/// networks, when there are none) or is not a forward rule (the host).
fn matcher(
    br: &str,
    from: &Endpoint,
    to: &Endpoint,
    guests: &[Ipv4Net],
    others: Option<&str>,
) -> Option<String> {
    let outbound = *from == Endpoint::Guests;
    let peer = if outbound { to } else { from };
    let (own_if, peer_if, own_addr, peer_addr) = if outbound {
        ("iifname", "oifname", "ip saddr", "ip daddr")
    } else {
        ("oifname", "iifname", "ip daddr", "ip saddr")
    };
    let mut m = format!("{own_if} \"{br}\" ");
    match peer {
        Endpoint::Anywhere => {}
        Endpoint::Uplink { name } => {
            let _ = write!(m, "{peer_if} \"{name}\" ");
        }
        Endpoint::OtherNetworks => {
            let _ = write!(m, "{peer_if} {} ", others?);
        }
        Endpoint::Subnet { subnet } => {
            let _ = write!(m, "{peer_addr} {} ", subnet.trunc());
        }
        Endpoint::Guests | Endpoint::Host => return None,
    }
    if !guests.is_empty() {
        let _ = write!(m, "{own_addr} {} ", addr_set(guests));
    }
    Some(m)
}

/// A network's host-input policy: what its guests may open on the host.
/// Accepted, from the network's bridge: replies to the host's own
/// connections, DHCP (IPv4, to the broadcast or the server's address)
/// when guestnet serves it, DNS to the address guestnet's
/// DNS listens on, ICMP echo (and IPv6 neighbour discovery, without which
/// the host's own IPv6 to a guest stalls), and the definition's
/// `[host] allow` ports on the host's addresses on the network. The rest
/// is refused: tcp with a reset, anything else with ICMP
/// admin-prohibited, so a guest learns at once. A rule `allow guests →
/// host` accepts everything instead; `deny guests → host` leaves only
/// DHCP and DNS.
///
/// One pass is enough: every rule names the network's own bridge as the
/// input interface and a packet has one, so no two networks' rules match
/// the same packet and the order of the networks does not matter. A
/// guest's packet to the host's address on another network, or on the
/// LAN, still arrives from its own bridge and meets its own network's
/// rules.
fn input_rules(out: &mut String, n: &NetworkRules, p: &Rules) {
    let (br, tag) = (n.bridge.as_str(), comment(&n.network));
    let h = &n.host;
    let mut rule = |r: &str| {
        let _ = writeln!(out, "\t\tiifname \"{br}\" {r} {tag}");
    };
    if p.allows(&Endpoint::Guests, &Endpoint::Host) {
        rule("accept");
        return;
    }
    let closed = p.has(&FirewallRule::deny(Endpoint::Guests, Endpoint::Host));
    rule("ct state established,related accept");
    // DHCP requests go to the broadcast address or, from a relay, a
    // renewing client or INFORM, to the server's own address: nothing
    // else on the host's udp 67 (another address, or IPv6) is reachable.
    if let Some(server) = h.dhcp {
        rule(&format!(
            "meta nfproto ipv4 ip daddr {{ 255.255.255.255, {server} }} udp dport 67 accept"
        ));
    }
    if let Some(dns) = h.dns {
        rule(&format!("ip daddr {dns} udp dport 53 accept"));
        rule(&format!("ip daddr {dns} tcp dport 53 accept"));
    }
    if !closed {
        rule("icmp type echo-request accept");
        rule("icmpv6 type { echo-request, nd-neighbor-solicit, nd-neighbor-advert } accept");
        if !h.addresses.is_empty() {
            let addrs = set(h.addresses.iter().map(Ipv4Addr::to_string));
            for proto in [Protocol::Tcp, Protocol::Udp] {
                let ports: Vec<String> = h
                    .allow
                    .iter()
                    .filter(|p| p.protocol == proto)
                    .map(HostPort::ports)
                    .collect();
                if !ports.is_empty() {
                    let (proto, ports) = (proto.as_str(), set(ports));
                    rule(&format!("ip daddr {addrs} {proto} dport {ports} accept"));
                }
            }
        }
    } else {
        rule("icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept");
    }
    rule("meta l4proto tcp reject with tcp reset");
    rule("reject with icmpx admin-prohibited");
}

/// The ports a forward sends to, as nft writes them: the host's own when
/// the guest's start at the same number, else the guest's.
fn to_ports(f: &Forward<'_>) -> String {
    let last = f.to_port + (f.port.last - f.port.first);
    if f.to_port == last {
        f.to_port.to_string()
    } else {
        format!("{}-{last}", f.to_port)
    }
}

/// Forwarded ports: arriving at one of the host's own addresses from
/// anywhere, the network's own guests included (prerouting, with the
/// hairpin masquerade in postrouting), or sent by the host itself to one of
/// its own addresses but loopback (output), to the host's port, they go to
/// the guest. A range onto a
/// range of another start maps port by port.
fn dnat_rules(prerouting: &mut String, output: &mut String, n: &NetworkRules, p: &Rules) {
    let tag = comment(&n.network);
    for f in p.forwards() {
        let proto = f.port.protocol.as_str();
        // Only traffic to the host itself (a forward's `address` is one of
        // the host's, checked before the plan is applied), never what the
        // host routes elsewhere, nor the host's loopback services.
        let daddr = match f.address {
            Some(a) => format!("fib daddr type local ip daddr {a} "),
            None => "fib daddr type local ip daddr != 127.0.0.0/8 ".to_owned(),
        };
        let offset = i32::from(f.to_port) - i32::from(f.port.first);
        let targets: Vec<(String, String)> = if offset == 0 {
            vec![(f.port.ports(), f.to.to_string())]
        } else {
            (f.port.first..=f.port.last)
                .map(|port| {
                    let to = (i32::from(port) + offset) as u16;
                    (port.to_string(), format!("{}:{to}", f.to))
                })
                .collect()
        };
        for (ports, to) in targets {
            let _ = writeln!(
                prerouting,
                "\t\t{daddr}{proto} dport {ports} dnat ip to {to} {tag}"
            );
            let _ = writeln!(
                output,
                "\t\toifname \"lo\" {daddr}{proto} dport {ports} dnat ip to {to} {tag}"
            );
        }
    }
}

/// An nft anonymous set of `items`: `{ a, b }`.
fn set(items: impl IntoIterator<Item = String>) -> String {
    format!("{{ {} }}", items.into_iter().collect::<Vec<_>>().join(", "))
}

/// The guests' subnets as nft writes them: one subnet alone, else a set.
fn addr_set(nets: &[Ipv4Net]) -> String {
    match nets {
        [one] => one.trunc().to_string(),
        _ => set(nets.iter().map(|n| n.trunc().to_string())),
    }
}

fn nat_rules(out: &mut String, n: &NetworkRules, p: &Rules) {
    let tag = comment(&n.network);
    let guests = addr_set(&p.guests);
    if p.forwards().next().is_some() {
        // A guest reaching a forward of its own network through the host's
        // address: without this the guest answers the other guest directly
        // and the connection never completes.
        let _ = writeln!(
            out,
            "\t\toifname \"{}\" ip saddr {guests} ct status dnat masquerade {tag}",
            n.bridge
        );
    }
    for rule in &p.rules {
        let FirewallRule::Masquerade { uplink, except } = rule else {
            continue;
        };
        let out_if = uplink
            .as_ref()
            .map(|u| format!("oifname \"{u}\" "))
            .unwrap_or_else(|| format!("oifname != \"{}\" ", n.bridge));
        // Every rule names the network's own bridge as where the packet came
        // in, so no network's exceptions can decide another's traffic.
        let br = &n.bridge;
        // Broadcast and link-local multicast stay untranslated, as libvirt does.
        let _ = writeln!(
            out,
            "\t\tiifname \"{br}\" ip saddr {guests} ip daddr {{ 224.0.0.0/24, 255.255.255.255 }} return {tag}"
        );
        if !except.is_empty() {
            let _ = writeln!(
                out,
                "\t\tiifname \"{br}\" ip saddr {guests} ip daddr {} return {tag}",
                addr_set(except)
            );
        }
        let _ = writeln!(
            out,
            "\t\tiifname \"{br}\" {out_if}ip saddr {guests} ip daddr != {guests} masquerade {tag}"
        );
    }
}

/// A rule comment naming the network; network names are `[A-Za-z0-9_.-]`,
/// so they need no escaping inside the quotes.
pub(super) fn comment(network: &str) -> String {
    format!("comment \"guestnet:{network}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use guestnet_mode_api::Endpoint as E;

    /// A network with one rule of every kind, for reading and for `nft -c`.
    pub(crate) fn every_rule() -> Vec<NetworkRules> {
        let rules = vec![
            FirewallRule::allow(
                E::Guests,
                E::Uplink {
                    name: IfName::new("eth0").unwrap(),
                },
            ),
            FirewallRule::allow(
                E::Guests,
                E::Subnet {
                    subnet: "192.168.9.0/24".parse().unwrap(),
                },
            ),
            FirewallRule::allow(E::Guests, E::OtherNetworks),
            FirewallRule::allow(E::OtherNetworks, E::Guests),
            FirewallRule::allow(
                E::Subnet {
                    subnet: "10.9.0.0/16".parse().unwrap(),
                },
                E::Guests,
            ),
            FirewallRule::deny(
                E::Guests,
                E::Subnet {
                    subnet: "10.66.0.0/16".parse().unwrap(),
                },
            ),
            FirewallRule::deny(E::Guests, E::Host),
            FirewallRule::Masquerade {
                uplink: None,
                except: vec![
                    "10.9.0.0/16".parse().unwrap(),
                    "10.8.0.0/16".parse().unwrap(),
                ],
            },
            FirewallRule::Forward {
                port: "tcp/8080".parse().unwrap(),
                address: None,
                to: "10.1.2.50".parse().unwrap(),
                to_port: 80,
            },
            FirewallRule::Forward {
                port: "udp/5000-5010".parse().unwrap(),
                address: Some("192.0.2.1".parse().unwrap()),
                to: "10.1.2.50".parse().unwrap(),
                to_port: 5000,
            },
            FirewallRule::IsolateGuests,
        ];
        let a = NetworkRules {
            network: "a".into(),
            bridge: IfName::new("gnbra").unwrap(),
            policy: Some(Rules {
                guests: vec![
                    "10.1.2.0/24".parse().unwrap(),
                    "10.1.3.0/24".parse().unwrap(),
                ],
                rules,
            }),
            host: HostInput::default(),
        };
        let b = NetworkRules {
            network: "b".into(),
            bridge: IfName::new("gnbrb").unwrap(),
            policy: None,
            host: HostInput::default(),
        };
        vec![a, b]
    }

    #[test]
    fn rules_render_where_their_pass_says() {
        let batch = render(&every_rule());
        let line = |needle: &str| {
            batch
                .lines()
                .position(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no {needle:?} in\n{batch}"))
        };
        // Denies (pass 2) before every accept but pass 1's.
        assert!(
            line("iifname \"gnbra\" ip daddr 10.66.0.0/16 reject") < line("ct status dnat accept")
        );
        assert!(
            line("iifname \"gnbra\" oifname \"gnbra\" reject")
                < line("ip daddr 10.66.0.0/16 reject")
        );
        // Other networks are named by their bridges.
        line(
            "iifname \"gnbra\" oifname { \"gnbrb\" } ip saddr { 10.1.2.0/24, 10.1.3.0/24 } accept",
        );
        line(
            "oifname \"gnbra\" iifname { \"gnbrb\" } ip daddr { 10.1.2.0/24, 10.1.3.0/24 } accept",
        );
        // Inbound connections exist, so replies go out.
        line("iifname \"gnbra\" ct state established,related accept");
        // Masquerade with exceptions, forwards in both directions, hairpin.
        line("ip daddr { 10.9.0.0/16, 10.8.0.0/16 } return");
        line("fib daddr type local ip daddr != 127.0.0.0/8 tcp dport 8080 dnat ip to 10.1.2.50:80");
        line("fib daddr type local ip daddr 192.0.2.1 udp dport 5000-5010 dnat ip to 10.1.2.50");
        // Every NAT rule names the network's bridge.
        line("iifname \"gnbra\" ip saddr { 10.1.2.0/24, 10.1.3.0/24 } ip daddr { 10.9.0.0/16, 10.8.0.0/16 } return");
        line("oifname \"gnbra\" ip saddr { 10.1.2.0/24, 10.1.3.0/24 } ct status dnat masquerade");
        // Denied the host: no ping, no ports; DHCP and DNS would stay.
        assert!(!batch.contains("echo-request"), "{batch}");
    }
}
