//! The text of guestnet's tables, from the active networks' firewall
//! rules: pure, so every verdict below is a unit test away.
//!
//! A network's plan says what crosses the firewall as a
//! [`FirewallPolicy`]; [`NetworkRules::of`] turns it into the typed rules
//! of the mode API ([`FirewallRule`], the fixed policies of API 1.0 being
//! shorthands for rule lists), and [`part`] writes one network's rules
//! into chains of its own, which the [`skeleton`]'s verdict maps reach in
//! passes by bridge, so that no network's verdict depends on another
//! network's name, place in the list, or chains. [`render`] is the whole:
//! the skeleton and every part.

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

/// The kinds of chain a network owns, in the order they are written: the
/// suffix of the chain's name (`net_NAME_suffix`), the verdict map of the
/// skeleton that sends a packet there by the network's bridge (the filter
/// passes), or the hook of the network's own base chain (NAT).
const KINDS: [(&str, Option<&str>, Option<&str>); 9] = [
    ("self", Some("pass1"), None),
    ("deny_out", Some("deny_out"), None),
    ("deny_in", Some("deny_in"), None),
    ("in", Some("inbound"), None),
    ("out", Some("outbound"), None),
    ("host", Some("host_in"), None),
    (
        "pre",
        None,
        Some("type nat hook prerouting priority dstnat; policy accept;"),
    ),
    (
        "lo",
        None,
        Some("type nat hook output priority -100; policy accept;"),
    ),
    (
        "post",
        None,
        Some("type nat hook postrouting priority srcnat; policy accept;"),
    ),
];

/// The set of every active network's bridge, for [`Endpoint::OtherNetworks`].
pub(super) const BRIDGES: &str = "bridges";

/// The name of network `network`'s chain of kind `suffix`.
fn chain(network: &str, suffix: &str) -> String {
    format!("net_{network}_{suffix}")
}

/// The nft batch that (re)creates guestnet's two tables empty: the fixed
/// skeleton, made once, into which each network adds its own chains and
/// map elements ([`part`]). The filter hooks dispatch by bridge through
/// verdict maps, one per pass, in the order of the passes
/// ([`forward_rules`]): a network's chain for a pass is only ever reached
/// by a packet that enters or leaves through that network's bridge, so no
/// network's verdict depends on another's chains, and each network's part
/// is added, replaced or deleted without touching anyone else's.
pub fn skeleton() -> String {
    let mut out = format!(
        "table inet {TABLE} {{}}\ndelete table inet {TABLE}\n\
         table bridge {TABLE} {{}}\ndelete table bridge {TABLE}\n\
         table inet {TABLE} {{\n\tset {BRIDGES} {{ type ifname; }}\n"
    );
    for (_, map, _) in KINDS {
        if let Some(map) = map {
            let _ = writeln!(out, "\tmap {map} {{ type ifname : verdict; }}");
        }
    }
    let _ = write!(
        out,
        "\tchain forward {{\n\t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tiifname vmap @pass1 {SKELETON}\n\
         \t\tiifname vmap @deny_out {SKELETON}\n\
         \t\toifname vmap @deny_in {SKELETON}\n\
         \t\toifname vmap @inbound {SKELETON}\n\
         \t\tiifname vmap @outbound {SKELETON}\n\
         \t}}\n\
         \tchain input {{\n\t\ttype filter hook input priority filter; policy accept;\n\
         \t\tiifname vmap @host_in {SKELETON}\n\
         \t}}\n\
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

/// The comment of the skeleton's own rules.
const SKELETON: &str = "comment \"guestnet\"";

/// The batch that deletes guestnet's tables, whether or not they exist.
pub fn drop_tables() -> String {
    format!(
        "table inet {TABLE} {{}}\ndelete table inet {TABLE}\n\
         table bridge {TABLE} {{}}\ndelete table bridge {TABLE}\n"
    )
}

/// The nft commands that add network `n`'s part to the skeleton: its
/// chains (only those with rules), the map elements that send its
/// bridge's packets to them, and its bridge in the set of all bridges. A
/// network without rules (the host is a plain switch) only adds its
/// bridge. The text depends on `n` alone.
pub fn part(n: &NetworkRules) -> String {
    let mut out = String::new();
    let br = n.bridge.as_str();
    if let Some(p) = &n.policy {
        let mut chains: Vec<(&str, String)> = KINDS.iter().map(|k| (k.0, String::new())).collect();
        let [self_, deny_out, deny_in, inbound, outbound, host, pre, lo, post] = &mut chains[..]
        else {
            unreachable!("nine kinds")
        };
        forward_rules(
            n,
            p,
            [
                &mut self_.1,
                &mut deny_out.1,
                &mut deny_in.1,
                &mut inbound.1,
                &mut outbound.1,
            ],
        );
        input_rules(&mut host.1, n, p);
        dnat_rules(&mut pre.1, &mut lo.1, n, p);
        nat_rules(&mut post.1, n, p);
        let _ = writeln!(out, "table inet {TABLE} {{");
        for ((suffix, map, hook), (_, rules)) in KINDS.iter().zip(&chains) {
            if rules.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\tchain {} {{", chain(&n.network, suffix));
            if let (Some(hook), None) = (hook, map) {
                let _ = writeln!(out, "\t\t{hook}");
            }
            let _ = writeln!(out, "{rules}\t}}");
        }
        let _ = writeln!(out, "}}");
        for ((suffix, map, _), (_, rules)) in KINDS.iter().zip(&chains) {
            if let (Some(map), false) = (map, rules.is_empty()) {
                let _ = writeln!(
                    out,
                    "add element inet {TABLE} {map} {{ \"{br}\" : jump {} }}",
                    chain(&n.network, suffix)
                );
            }
        }
    }
    let _ = writeln!(out, "add element inet {TABLE} {BRIDGES} {{ \"{br}\" }}");
    out
}

/// The nft commands that remove whatever part network `network` may have
/// in the skeleton with bridge `bridge`, whether it is all there, partly
/// (a guestnetd killed mid-way never leaves that: each part is one
/// transaction; but an older one may) or not at all: each object is
/// added (a no-op when it exists) before it is deleted. The same fixed
/// size whatever else is in the table.
pub fn teardown(network: &str, bridge: &str) -> String {
    let mut out = String::new();
    for (suffix, _, hook) in KINDS {
        let name = chain(network, suffix);
        match hook {
            Some(h) => {
                let _ = writeln!(out, "add chain inet {TABLE} {name} {{ {h} }}");
            }
            None => {
                let _ = writeln!(out, "add chain inet {TABLE} {name}");
            }
        }
    }
    for (suffix, map, _) in KINDS {
        if let Some(map) = map {
            let name = chain(network, suffix);
            let _ = writeln!(
                out,
                "add element inet {TABLE} {map} {{ \"{bridge}\" : jump {name} }}\n\
                 delete element inet {TABLE} {map} {{ \"{bridge}\" }}"
            );
        }
    }
    for (suffix, _, _) in KINDS {
        let name = chain(network, suffix);
        let _ = writeln!(
            out,
            "flush chain inet {TABLE} {name}\ndelete chain inet {TABLE} {name}"
        );
    }
    let _ = writeln!(
        out,
        "add element inet {TABLE} {BRIDGES} {{ \"{bridge}\" }}\n\
         delete element inet {TABLE} {BRIDGES} {{ \"{bridge}\" }}"
    );
    out
}

/// The whole of guestnet's tables for `networks` in one batch (the
/// skeleton and every network's part), or their deletion when no network
/// has rules: what a restore or a first start writes.
pub fn render(networks: &[NetworkRules]) -> String {
    if networks.iter().all(|n| n.policy.is_none()) {
        return drop_tables();
    }
    let mut out = skeleton();
    for n in networks {
        out.push_str(&part(n));
    }
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

/// Network `n`'s forward chains, one per pass (`passes`, in pass order),
/// so that no network's verdict depends on another network's name or
/// place in the list. The skeleton's forward chain looks the passes up in
/// their order, each in a verdict map keyed by a bridge: every rule names
/// its own network's bridge as the input or the output interface (pass 2
/// and 3: output for what goes in, input for what comes out), and a packet
/// has one of each; so within a pass at most one network's chain (two in
/// pass 2: the input's denies out and the output's denies in, all
/// refusals) is reached, and no order between networks exists to matter.
/// Only the order of the passes does:
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
/// traffic, which is not forwarded) is not matched at all. Other networks
/// are the set of every active network's bridge ([`BRIDGES`]), which each
/// network's part adds its own to: it also holds the network's own bridge,
/// but pass 1 decided that packet already.
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
fn forward_rules(n: &NetworkRules, p: &Rules, passes: [&mut String; 5]) {
    let [pass1, deny_out, deny_in, inbound, outbound] = passes;
    let others = Some(format!("@{BRIDGES}"));
    let others = others.as_deref();
    let (br, tag) = (n.bridge.as_str(), comment(&n.network));
    let verdict = if p.has(&FirewallRule::IsolateGuests) {
        "reject"
    } else {
        "accept"
    };
    let _ = writeln!(
        pass1,
        "\t\tiifname \"{br}\" oifname \"{br}\" {verdict} {tag}"
    );
    for rule in &p.rules {
        let FirewallRule::Deny { from, to } = rule else {
            continue;
        };
        if let Some(m) = matcher(br, from, to, &[], others) {
            let out = if *from == Endpoint::Guests {
                &mut *deny_out
            } else {
                &mut *deny_in
            };
            let _ = writeln!(out, "\t\t{m}reject {tag}");
        }
    }
    // Passes 3 and 4 skip a direction a network denies whole: pass 2
    // refused all of it already.
    if !p.has(&FirewallRule::deny(Endpoint::Anywhere, Endpoint::Guests)) {
        let out = inbound;
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
                    if let Some(m) = matcher(br, from, &Endpoint::Guests, &p.guests, others) {
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
    if !p.has(&FirewallRule::deny(Endpoint::Guests, Endpoint::Anywhere)) {
        let out = outbound;
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
                    if let Some(m) = matcher(br, &Endpoint::Guests, to, &p.guests, others) {
                        let _ = writeln!(out, "\t\t{m}accept {tag}");
                    }
                }
                _ => {}
            }
        }
        let _ = writeln!(out, "\t\tiifname \"{br}\" reject {tag}");
    }
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
pub(super) mod tests {
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

    /// The chain of `batch` holding the rule that contains `needle`.
    pub(crate) fn chain_of(batch: &str, needle: &str) -> String {
        let mut chain = "";
        for l in batch.lines() {
            if let Some(rest) = l.trim().strip_prefix("chain ") {
                chain = rest.split_whitespace().next().unwrap_or("");
            } else if l.contains(needle) {
                return chain.to_owned();
            }
        }
        panic!("no {needle:?} in\n{batch}")
    }

    #[test]
    fn rules_render_where_their_pass_says() {
        let batch = render(&every_rule());
        let line = |needle: &str| chain_of(&batch, needle);
        // Pass 1, then the denies (pass 2), then inbound and outbound.
        assert_eq!(
            line("iifname \"gnbra\" oifname \"gnbra\" reject"),
            "net_a_self"
        );
        assert_eq!(
            line("iifname \"gnbra\" ip daddr 10.66.0.0/16 reject"),
            "net_a_deny_out"
        );
        assert_eq!(line("ct status dnat accept"), "net_a_in");
        // Other networks are named by the set of every network's bridge.
        assert_eq!(
            line("iifname \"gnbra\" oifname @bridges ip saddr { 10.1.2.0/24, 10.1.3.0/24 } accept"),
            "net_a_out"
        );
        assert_eq!(
            line("oifname \"gnbra\" iifname @bridges ip daddr { 10.1.2.0/24, 10.1.3.0/24 } accept"),
            "net_a_in"
        );
        assert!(batch.contains("add element inet guestnet bridges { \"gnbrb\" }"));
        // Inbound connections exist, so replies go out.
        assert_eq!(
            line("iifname \"gnbra\" ct state established,related accept"),
            "net_a_out"
        );
        // Masquerade with exceptions, forwards in both directions, hairpin.
        // Every NAT rule names the network's bridge.
        assert_eq!(
            line("iifname \"gnbra\" ip saddr { 10.1.2.0/24, 10.1.3.0/24 } ip daddr { 10.9.0.0/16, 10.8.0.0/16 } return"),
            "net_a_post"
        );
        assert_eq!(
            line("fib daddr type local ip daddr != 127.0.0.0/8 tcp dport 8080 dnat ip to 10.1.2.50:80"),
            "net_a_pre"
        );
        assert_eq!(
            line("oifname \"lo\" fib daddr type local ip daddr 192.0.2.1 udp dport 5000-5010 dnat ip to 10.1.2.50"),
            "net_a_lo"
        );
        assert_eq!(
            line(
                "oifname \"gnbra\" ip saddr { 10.1.2.0/24, 10.1.3.0/24 } ct status dnat masquerade"
            ),
            "net_a_post"
        );
        // Each chain is reached by its pass's map, keyed by the bridge.
        for (map, chain) in [
            ("pass1", "self"),
            ("deny_out", "deny_out"),
            ("inbound", "in"),
            ("outbound", "out"),
            ("host_in", "host"),
        ] {
            let elem =
                format!("add element inet guestnet {map} {{ \"gnbra\" : jump net_a_{chain} }}");
            assert!(batch.contains(&elem), "no {elem:?} in\n{batch}");
        }
        // Denied the host: no ping, no ports; DHCP and DNS would stay.
        assert!(!batch.contains("echo-request"), "{batch}");
    }

    /// A network's part names nothing of any other network, and the
    /// skeleton looks the passes up in their order.
    #[test]
    fn a_networks_part_is_its_own_and_the_passes_keep_their_order() {
        let nets = every_rule();
        let a = part(&nets[0]);
        assert!(!a.contains("gnbrb") && !a.contains("net_b_"), "{a}");
        assert_eq!(
            part(&nets[1]),
            "add element inet guestnet bridges { \"gnbrb\" }\n"
        );
        let sk = skeleton();
        let at = |needle: &str| {
            sk.find(needle)
                .unwrap_or_else(|| panic!("{needle} in {sk}"))
        };
        assert!(at("iifname vmap @pass1") < at("iifname vmap @deny_out"));
        assert!(at("iifname vmap @deny_out") < at("oifname vmap @deny_in"));
        assert!(at("oifname vmap @deny_in") < at("oifname vmap @inbound"));
        assert!(at("oifname vmap @inbound") < at("iifname vmap @outbound"));
        // The teardown names the network's own chains and bridge only.
        let t = teardown("a", "gnbra");
        for l in t.lines() {
            assert!(l.contains("net_a_") || l.contains("\"gnbra\""), "{l}");
        }
    }

    /// Every batch is one nft accepts, in a scratch network namespace:
    /// the skeleton, a network's part, its replacement (teardown then
    /// part, for a part fully there and for one not there at all) and its
    /// removal, leaving the other network's part as it was.
    #[test]
    fn the_batches_load_into_a_scratch_namespace() {
        if unsafe { libc::geteuid() } != 0 {
            assert!(std::env::var_os("CI").is_none(), "needs root");
            return;
        }
        let ns = format!("gnrender{}", std::process::id());
        let ok = |args: &[&str], stdin: Option<&str>| -> String {
            use std::io::Write;
            let mut cmd = std::process::Command::new(args[0]);
            cmd.args(&args[1..])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            let mut input = child.stdin.take().unwrap();
            input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
            drop(input);
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                stdin.unwrap_or("")
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        ok(&["ip", "netns", "add", &ns], None);
        let nft = |batch: &str| ok(&["ip", "netns", "exec", &ns, "nft", "-f", "-"], Some(batch));
        let list = || {
            ok(
                &["ip", "netns", "exec", &ns, "nft", "list", "ruleset"],
                None,
            )
        };
        let nets = every_rule();
        let mut other = nets[0].clone();
        other.network = "o".into();
        other.bridge = IfName::new("gnbro").unwrap();
        let result = std::panic::catch_unwind(|| {
            nft(&render(&[other.clone()]));
            let alone = list();
            nft(&(teardown("a", "gnbra") + &part(&nets[0])));
            nft(&(teardown("a", "gnbra") + &part(&nets[0])));
            nft(&(teardown("b", "gnbrb") + &part(&nets[1])));
            let both = list();
            assert!(
                both.contains("jump net_a_in") && both.contains("\"gnbrb\""),
                "{both}"
            );
            nft(&(teardown("a", "gnbra") + &teardown("b", "gnbrb")));
            assert_eq!(list(), alone);
        });
        ok(&["ip", "netns", "del", &ns], None);
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    }
}
