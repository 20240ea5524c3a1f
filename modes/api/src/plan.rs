//! What a mode hands back: the desired state of one network, as data. The
//! service applies it, tears it down and re-adopts it; a mode never touches
//! the kernel itself.

use crate::definition::StaticHost;
use crate::names::{DnsName, IfName};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};

/// The desired state of one active network.
///
/// What guestnetd does with a plan, when a network starts:
/// 1. It checks the whole plan against the host and the other active
///    networks, and refuses it with `org.guestnet1.Error.Conflict`, naming
///    both sides, when it would take what is someone else's (see each
///    field). Nothing has been changed then.
/// 2. It records the plan in its runtime directory, so that a guestnetd
///    started later (after a crash, say) takes the network back or cleans
///    up after it.
/// 3. It applies [`bridge`](Plan::bridge), [`addresses`](Plan::addresses)
///    and [`routes`](Plan::routes) over rtnetlink, then the firewall and
///    sysctls of all active networks, then starts DHCP and DNS. When any
///    step fails, every step taken is undone and the start is refused.
///
/// When the network stops, it undoes the plan part by part, carrying on
/// past a failed step: DHCP and DNS stop, guests' ports go, the bridge part
/// is taken down, the firewall and sysctls are reconciled without the
/// network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The bridge guests plug into; see [`BridgePlan`] for what is created,
    /// taken over or left alone. A bridge name that exists on the host and is
    /// not guestnet's (marked with the alias `guestnet:NETWORK`) is refused
    /// for [`BridgePlan::Create`] and [`BridgePlan::EnslaveUplink`]; a bridge
    /// the same network left behind is replaced.
    pub bridge: BridgePlan,
    /// Addresses the host holds on the bridge, with their prefix
    /// (`192.168.122.1/24`); the kernel adds the subnet route for each.
    ///
    /// Checked before anything is applied: an address whose subnet overlaps
    /// an address of a host interface, a route of the host (but for its
    /// default route), or a subnet or route of another active network is
    /// refused as a conflict. Added to the bridge; removed on stop (with the
    /// bridge when guestnet deletes it, one by one from an existing bridge;
    /// an uplink taken over gets back its own addresses, not these).
    pub addresses: Vec<Ipv4Net>,
    /// Further routes through the bridge, in the main table.
    ///
    /// Checked before anything is applied, against the host and the other
    /// active networks; refused as a conflict, naming the route and what it
    /// clashes with, when its destination overlaps:
    /// - the subnet of an address on a host interface (a route into the
    ///   host's LAN would cut the host off it and off its gateway);
    /// - a route the host has; a default route (`0.0.0.0/0`) is held only
    ///   against the host's default route, at whatever metric that has (more
    ///   specific routes win over a default, and take nothing from it);
    /// - an address's subnet or a route of another active network.
    ///
    /// The network's own addresses do not count: a route inside the plan's
    /// own subnet is the network's business, and the leftovers of the same
    /// network (its bridge after a crash) are replaced.
    ///
    /// Installed on the bridge (`dev BRIDGE`, `via gateway` when given, else
    /// scope link) with `proto static` and no metric of its own, that is
    /// metric 0. A route the kernel still refuses (the same destination at
    /// metric 0 already there, a gateway the bridge cannot reach) fails the
    /// start with a Conflict naming the route. Removed on stop: with the
    /// bridge when guestnet deletes it, one by one from a bridge that stays
    /// ([`BridgePlan::Existing`]); an uplink taken over by
    /// [`BridgePlan::EnslaveUplink`] gets back its own routes, not these.
    pub routes: Vec<RoutePlan>,
    /// Network-namespace sysctls the network needs, such as IPv4 forwarding.
    ///
    /// Not checked against other networks: written when the network starts
    /// (the value from before guestnet is kept in the runtime directory),
    /// and put back when no active network asks for the key any more. When
    /// two active networks ask for different values of one key, the network
    /// whose name sorts last wins.
    pub sysctls: Vec<Sysctl>,
    /// What crosses the host's firewall to and from the network: the typed
    /// rules of [`FirewallPolicy::Rules`] (see [`FirewallRule`] for what
    /// each does and how the rules of several networks combine), or a fixed
    /// policy of API 1.0.
    ///
    /// Checked by [`Plan::check`]: at most [`MAX_FIREWALL_RULES`] rules,
    /// exactly one side of an allow or deny the guests, the host only as a
    /// destination, a forward's target in the guests' subnets.
    ///
    /// Rendered with the policies of every other active network into
    /// guestnet's own nftables table `inet guestnet`, replaced as one atomic
    /// batch at each start and stop (no other table is touched, beyond
    /// rules in Docker's `DOCKER-USER` chain when Docker is there). Where
    /// firewalld runs, the bridge of a policy other than
    /// [`FirewallPolicy::None`] is also bound, at runtime only, to a
    /// firewalld zone (`trusted`, or `guestnet-routed` for
    /// [`FirewallPolicy::Routed`]) so that firewalld's rejects do not
    /// override guestnet's accepts. On stop the table is rendered without
    /// the network and the binding goes.
    pub firewall: FirewallPolicy,
    /// Further host ports the network's guests may open, on the host's
    /// own addresses on the bridge ([`addresses`](Plan::addresses)).
    ///
    /// A network whose [`firewall`](Plan::firewall) is not
    /// [`FirewallPolicy::None`] has a host-input policy in `inet guestnet`:
    /// what arrives at the host from its bridge is accepted when it is a
    /// reply (`established,related`), DHCP (udp 67, when the plan has
    /// [`dhcp`](Plan::dhcp)), DNS (udp and tcp 53 to
    /// [`DnsPlan::listen`], when the plan has [`dns`](Plan::dns)), an ICMP
    /// echo request, or one of these ports; everything else is refused
    /// (tcp reset, else ICMP admin-prohibited). The rules name the
    /// network's own bridge only, so no network's verdict depends on
    /// another's. Ignored with [`FirewallPolicy::None`], whose host is a
    /// plain switch. At most [`MAX_HOST_ALLOW`] entries (more is refused).
    ///
    /// Missing from the JSON of modes built before it existed: empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_allow: Vec<HostPort>,
    /// The DHCPv4 server to run on the bridge, if any: guestnetd answers
    /// DHCP itself, keeps its leases in a durable journal in its state
    /// directory (a restart loses none) and announces them as D-Bus
    /// signals. It stops with the network; the journal of a transient
    /// network goes when the network does.
    pub dhcp: Option<DhcpPlan>,
    /// The DNS server to run on the bridge address, if any: guestnetd
    /// answers for the network's domain (the plan's records and the
    /// hostnames of DHCP leases) and forwards other names upstream. It stops
    /// with the network.
    pub dns: Option<DnsPlan>,
    /// Things the mode wants the user to know about this plan (a setting it
    /// ignored, a choice it made for them). guestnetd logs each and shows
    /// them in the network's `Warnings` property; they never stop a start.
    /// At most [`MAX_WARNINGS`], each cut to [`MAX_WARNING_LEN`] bytes.
    ///
    /// Since API 1.1; absent: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Most warnings one plan may carry (more is refused).
pub const MAX_WARNINGS: usize = 16;
/// Longest warning kept, in bytes; longer ones are cut.
pub const MAX_WARNING_LEN: usize = 512;
/// Most rules a [`FirewallPolicy::Rules`] may hold.
pub const MAX_FIREWALL_RULES: usize = 256;

/// How the network's bridge comes to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BridgePlan {
    /// A new bridge the service creates and later deletes.
    Create { name: IfName, mtu: Option<u32> },
    /// A new bridge that enslaves a host NIC and takes over its IPv4
    /// addresses and routes; stopping gives them back to the NIC.
    EnslaveUplink {
        name: IfName,
        uplink: IfName,
        mtu: Option<u32>,
    },
    /// A bridge that already exists and is not ours: used, never changed.
    Existing { name: IfName },
}

impl BridgePlan {
    pub fn name(&self) -> &IfName {
        match self {
            BridgePlan::Create { name, .. }
            | BridgePlan::EnslaveUplink { name, .. }
            | BridgePlan::Existing { name } => name,
        }
    }
}

/// One route through the network's bridge; see [`Plan::routes`] for how it
/// is checked, installed and removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutePlan {
    /// Where the route leads (host bits are ignored: `10.9.0.7/24` is
    /// `10.9.0.0/24`).
    pub destination: Ipv4Net,
    /// The next hop, which must be on a subnet of the bridge; `None` for a
    /// destination reached directly on the bridge (scope link).
    pub gateway: Option<Ipv4Addr>,
    /// The route's metric (its priority: lower wins); `None` is metric 0.
    /// Since API 1.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
}

/// A sysctl under `/proc/sys/net/`, set while the network is active and
/// restored when no active network needs it any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sysctl {
    pub key: SysctlKey,
    pub value: String,
}

/// The sysctls a mode may ask for; a closed list, so a plugin can never name
/// an arbitrary path. The `bridge_*` keys are those of the network's own
/// bridge (`net/ipv4/conf/BRIDGE/...`): they apply to that interface only.
///
/// Each key takes only the values listed; the service refuses any other
/// value, naming the key. `ipv4_forward` is since API 1.0, the rest since 1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SysctlKey {
    /// `net/ipv4/ip_forward`: 0 or 1.
    Ipv4Forward,
    /// `net/ipv4/conf/BRIDGE/rp_filter`: 0 (off), 1 (strict), 2 (loose).
    /// The kernel applies the larger of this and `conf/all/rp_filter`.
    BridgeRpFilter,
    /// `net/ipv4/conf/BRIDGE/proxy_arp`: 0 or 1.
    BridgeProxyArp,
    /// `net/ipv4/conf/BRIDGE/route_localnet`: 0 or 1.
    BridgeRouteLocalnet,
    /// `net/ipv4/conf/BRIDGE/accept_local`: 0 or 1.
    BridgeAcceptLocal,
    /// `net/ipv4/conf/BRIDGE/arp_ignore`: 0 to 3, or 8.
    BridgeArpIgnore,
    /// `net/ipv4/conf/BRIDGE/arp_announce`: 0 to 2.
    BridgeArpAnnounce,
    /// `net/ipv4/conf/BRIDGE/forwarding`: 0 or 1.
    BridgeForwarding,
}

impl SysctlKey {
    /// Every key, in order.
    pub const ALL: [SysctlKey; 8] = [
        SysctlKey::Ipv4Forward,
        SysctlKey::BridgeRpFilter,
        SysctlKey::BridgeProxyArp,
        SysctlKey::BridgeRouteLocalnet,
        SysctlKey::BridgeAcceptLocal,
        SysctlKey::BridgeArpIgnore,
        SysctlKey::BridgeArpAnnounce,
        SysctlKey::BridgeForwarding,
    ];

    /// The key's path under `/proc/sys/net/` for a network on `bridge`.
    pub fn path(self, bridge: &IfName) -> String {
        let conf = |leaf: &str| format!("/proc/sys/net/ipv4/conf/{}/{leaf}", bridge.as_str());
        match self {
            SysctlKey::Ipv4Forward => "/proc/sys/net/ipv4/ip_forward".to_owned(),
            SysctlKey::BridgeRpFilter => conf("rp_filter"),
            SysctlKey::BridgeProxyArp => conf("proxy_arp"),
            SysctlKey::BridgeRouteLocalnet => conf("route_localnet"),
            SysctlKey::BridgeAcceptLocal => conf("accept_local"),
            SysctlKey::BridgeArpIgnore => conf("arp_ignore"),
            SysctlKey::BridgeArpAnnounce => conf("arp_announce"),
            SysctlKey::BridgeForwarding => conf("forwarding"),
        }
    }

    /// Whether the key belongs to the network's bridge (rather than to the
    /// whole namespace, shared by every network).
    pub fn per_bridge(self) -> bool {
        self != SysctlKey::Ipv4Forward
    }

    /// The values the key takes.
    pub fn values(self) -> &'static [&'static str] {
        match self {
            SysctlKey::BridgeRpFilter => &["0", "1", "2"],
            SysctlKey::BridgeArpIgnore => &["0", "1", "2", "3", "8"],
            SysctlKey::BridgeArpAnnounce => &["0", "1", "2"],
            _ => &["0", "1"],
        }
    }

    /// The key as plans write it (`ipv4_forward`).
    pub fn name(self) -> &'static str {
        match self {
            SysctlKey::Ipv4Forward => "ipv4_forward",
            SysctlKey::BridgeRpFilter => "bridge_rp_filter",
            SysctlKey::BridgeProxyArp => "bridge_proxy_arp",
            SysctlKey::BridgeRouteLocalnet => "bridge_route_localnet",
            SysctlKey::BridgeAcceptLocal => "bridge_accept_local",
            SysctlKey::BridgeArpIgnore => "bridge_arp_ignore",
            SysctlKey::BridgeArpAnnounce => "bridge_arp_announce",
            SysctlKey::BridgeForwarding => "bridge_forwarding",
        }
    }
}

/// What crosses the host's firewall to and from the network.
///
/// [`Rules`](FirewallPolicy::Rules) is the vocabulary (since API 1.1); the
/// other variants are the fixed policies of API 1.0, kept as shorthands for
/// the rule lists their documentation gives, and rendered exactly as those.
/// The built-in modes write rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FirewallPolicy {
    /// No rules: the host is a plain switch for this bridge (and guests'
    /// traffic to the host meets no policy of guestnet's).
    None,
    /// Guests talk to each other and to the host (within
    /// [`Plan::host_allow`]); nothing is forwarded. The same as
    /// `Rules` with `deny guests → anywhere` and `deny anywhere → guests`.
    Isolated { subnet: Ipv4Net },
    /// Forwarded both ways without translation: `allow guests → anywhere`,
    /// `allow anywhere → guests`.
    Routed { subnet: Ipv4Net },
    /// Guests reach out, masqueraded behind the host (through `uplink` only
    /// when given); nothing from outside opens a connection to a guest:
    /// `allow guests → uplink` (or `anywhere`) and `masquerade`.
    Nat {
        subnet: Ipv4Net,
        uplink: Option<IfName>,
    },
    /// A list of typed rules about the network's guests. Since API 1.1.
    Rules {
        /// The guests' subnets (what `guests` means in a rule); empty: the
        /// subnets of [`Plan::addresses`].
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        guests: Vec<Ipv4Net>,
        /// At most [`MAX_FIREWALL_RULES`].
        rules: Vec<FirewallRule>,
    },
}

impl FirewallPolicy {
    /// The rules a policy stands for, with the guests' subnets; `None` for
    /// [`FirewallPolicy::None`]. `addresses` are the plan's, for a `Rules`
    /// policy that names no subnets.
    pub fn to_rules(&self, addresses: &[Ipv4Net]) -> Option<(Vec<Ipv4Net>, Vec<FirewallRule>)> {
        use Endpoint::{Anywhere, Guests, Uplink};
        Some(match self {
            FirewallPolicy::None => return None,
            FirewallPolicy::Isolated { subnet } => (
                vec![*subnet],
                vec![
                    FirewallRule::deny(Guests, Anywhere),
                    FirewallRule::deny(Anywhere, Guests),
                ],
            ),
            FirewallPolicy::Routed { subnet } => (
                vec![*subnet],
                vec![
                    FirewallRule::allow(Guests, Anywhere),
                    FirewallRule::allow(Anywhere, Guests),
                ],
            ),
            FirewallPolicy::Nat { subnet, uplink } => {
                let to = match uplink {
                    Some(name) => Uplink { name: name.clone() },
                    None => Anywhere,
                };
                (
                    vec![*subnet],
                    vec![
                        FirewallRule::allow(Guests, to),
                        FirewallRule::Masquerade {
                            uplink: uplink.clone(),
                            except: vec![],
                        },
                    ],
                )
            }
            FirewallPolicy::Rules { guests, rules } => {
                let guests = if guests.is_empty() {
                    addresses.iter().map(Ipv4Net::trunc).collect()
                } else {
                    guests.iter().map(Ipv4Net::trunc).collect()
                };
                (guests, rules.clone())
            }
        })
    }
}

/// One typed firewall rule about a network's guests.
///
/// What the service does with them (one network's rules never decide
/// another network's traffic, and their order in the list does not
/// matter):
/// - Replies to allowed connections always pass; guests of one bridge
///   always reach each other unless [`IsolateGuests`](Self::IsolateGuests).
/// - Every `deny` of every network is checked before any `allow`: a packet
///   a network denies is refused even when another network allows it.
/// - Forwarded traffic to or from the guests that no `allow` (and no
///   forward) accepts is refused (`reject`, so a sender learns at once).
/// - `host` as a destination: `allow` opens every port of the host to the
///   guests; `deny` leaves only DHCP and DNS. Without either, guests reach
///   the host's DHCP, DNS, ping and [`Plan::host_allow`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum FirewallRule {
    /// Connections opened from `from` to `to` are forwarded (one of the
    /// two must be [`Endpoint::Guests`]).
    Allow { from: Endpoint, to: Endpoint },
    /// Connections from `from` to `to` are refused, before any allow (one
    /// of the two must be [`Endpoint::Guests`]).
    Deny { from: Endpoint, to: Endpoint },
    /// The guests' connections leave with the host's address (through
    /// `uplink` only, when given; else through any interface but the
    /// bridge), except those to the `except` subnets, which keep the
    /// guest's address. The guests' own subnets, broadcast and link-local
    /// multicast are never translated.
    Masquerade {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uplink: Option<IfName>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        except: Vec<Ipv4Net>,
    },
    /// Connections to the host's `port` (on `address` only, when given;
    /// else on every address of the host) go to the guest `to`, at
    /// `to_port` (a range maps onto a range of the same size, starting
    /// there). `to` must be in the guests' subnets. Implies the allow.
    Forward {
        port: HostPort,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<Ipv4Addr>,
        to: Ipv4Addr,
        to_port: u16,
    },
    /// Guests on the bridge do not reach each other (they still reach the
    /// host and, by the other rules, the world).
    IsolateGuests,
}

impl FirewallRule {
    pub fn allow(from: Endpoint, to: Endpoint) -> Self {
        FirewallRule::Allow { from, to }
    }

    pub fn deny(from: Endpoint, to: Endpoint) -> Self {
        FirewallRule::Deny { from, to }
    }
}

/// One end of an [`FirewallRule::Allow`] or [`FirewallRule::Deny`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Endpoint {
    /// The network's guests: its bridge, from or to the guests' subnets.
    Guests,
    /// The host itself (only as a destination).
    Host,
    /// Anything the host forwards to or from: the LAN, the internet,
    /// other networks' guests.
    Anywhere,
    /// What goes out through (or comes in from) the host's interface `name`.
    Uplink { name: IfName },
    /// The guests of the host's other guestnet networks.
    OtherNetworks,
    /// Addresses in `subnet`, wherever they are.
    Subnet { subnet: Ipv4Net },
}

/// The DHCPv4 service the network wants on its bridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpPlan {
    pub server: Ipv4Addr,
    pub subnet: Ipv4Net,
    pub range_start: Ipv4Addr,
    pub range_end: Ipv4Addr,
    pub lease_time_secs: u32,
    /// The default gateway offered; `None` on isolated networks.
    pub router: Option<Ipv4Addr>,
    pub dns_server: Option<Ipv4Addr>,
    pub domain: Option<DnsName>,
    pub mtu: Option<u32>,
    pub hosts: Vec<StaticHost>,
    /// How many addresses the clients behind one bridge port may hold at
    /// once; absent from the plans of older modes, which get the default.
    #[serde(default = "crate::definition::leases_per_port_default")]
    pub max_leases_per_port: u32,
    /// Further options, each answered to a client that asks for it (its
    /// parameter request list). Since API 1.1; absent: none.
    #[serde(default, skip_serializing_if = "DhcpOptions::is_empty")]
    pub options: DhcpOptions,
}

/// DHCPv4 options beyond those guestnet always serves (mask, router, DNS,
/// domain, lease times, MTU). The service refuses a raw option whose code
/// guestnet sets itself, naming it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpOptions {
    /// NTP servers (option 42).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ntp: Vec<Ipv4Addr>,
    /// Classless static routes (option 121, and 249 for old Windows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<DhcpRoute>,
    /// The domain search list (option 119).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<DnsName>,
    /// The boot server (the header's `siaddr`, and option 66 as a dotted quad).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_server: Option<Ipv4Addr>,
    /// The boot file (the header's `file`, and option 67).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Options by code, as bytes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub raw: Vec<RawDhcpOption>,
}

impl DhcpOptions {
    pub fn is_empty(&self) -> bool {
        self == &DhcpOptions::default()
    }
}

/// A route a DHCP client installs (option 121).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpRoute {
    pub to: Ipv4Net,
    pub via: Ipv4Addr,
}

/// An option by code, with its value as bytes (at most 255).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDhcpOption {
    pub code: u8,
    pub value: Vec<u8>,
}

/// The DNS service the network wants on its bridge address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsPlan {
    pub listen: Ipv4Addr,
    pub domain: Option<DnsName>,
    /// Upstream servers; empty means the host's resolv.conf (unless
    /// [`upstream`](DnsPlan::upstream) is off).
    pub forwarders: Vec<IpAddr>,
    /// A records of the network's domain (static hosts, say).
    pub records: Vec<DnsRecord>,
    /// Whether names outside the network's domain (and outside every
    /// [`domain_servers`](DnsPlan::domain_servers) domain) are forwarded;
    /// `false`: they are refused (REFUSED), and the network's DNS never
    /// sends a query out. Since API 1.1; absent: `true`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub upstream: bool,
    /// Split DNS: names in each `domain` go to its `servers`, whatever
    /// [`upstream`](DnsPlan::upstream) says. Since API 1.1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domain_servers: Vec<DomainServers>,
    /// Further records of the network's domain, of any type. Since API 1.1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub typed_records: Vec<ResourceRecord>,
}

pub(crate) fn yes() -> bool {
    true
}

pub(crate) fn is_true(b: &bool) -> bool {
    *b
}

/// Where the names of one domain are asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainServers {
    pub domain: DnsName,
    pub servers: Vec<IpAddr>,
}

/// A record of the network's domain: `name` is relative to it (`www`, or
/// `_http._tcp` for a service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRecord {
    pub name: String,
    pub data: RecordData,
}

/// A record's type and value. Names it points to (a CNAME's target, an
/// MX's exchange, an SRV's target) are relative to the network's domain
/// unless they end with a dot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "UPPERCASE", deny_unknown_fields)]
pub enum RecordData {
    A {
        ip: Ipv4Addr,
    },
    Cname {
        target: String,
    },
    Txt {
        text: Vec<String>,
    },
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Mx {
        preference: u16,
        exchange: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsRecord {
    pub name: String,
    pub ip: Ipv4Addr,
}

/// Most entries a network's host allow-list ([`Plan::host_allow`], `[host]
/// allow` in a definition) may have.
pub const MAX_HOST_ALLOW: usize = 64;

/// A transport protocol a host port is opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A host port, or a range of them, guests may open: `tcp/22`, `udp/69`,
/// `tcp/8000-8080` (both ends included). Written and sent as that string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPort {
    pub protocol: Protocol,
    /// The first port, 1 or more.
    pub first: u16,
    /// The last port, `first` or more.
    pub last: u16,
}

impl HostPort {
    /// The ports as nft and firewalld write them: `22` or `8000-8080`.
    pub fn ports(&self) -> String {
        if self.first == self.last {
            self.first.to_string()
        } else {
            format!("{}-{}", self.first, self.last)
        }
    }
}

impl std::str::FromStr for HostPort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?} is not a port like \"tcp/22\", \"udp/69\" or \"tcp/8000-8080\"");
        let (proto, ports) = s.split_once('/').ok_or_else(bad)?;
        let protocol = match proto {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return Err(format!("{s:?}: the protocol must be tcp or udp")),
        };
        let port = |p: &str| -> Result<u16, String> {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            match p.parse::<u32>() {
                Ok(n @ 1..=65535) => Ok(n as u16),
                _ => Err(format!("{s:?}: a port is from 1 to 65535")),
            }
        };
        let (first, last) = match ports.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(ports)?, port(ports)?),
        };
        if first > last {
            return Err(format!("{s:?}: the range ends before it starts"));
        }
        Ok(HostPort {
            protocol,
            first,
            last,
        })
    }
}

impl TryFrom<String> for HostPort {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<HostPort> for String {
    fn from(p: HostPort) -> String {
        p.to_string()
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.protocol.as_str(), self.ports())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports_read_and_write_as_written() {
        for s in ["tcp/22", "udp/69", "tcp/8000-8080", "udp/1-65535"] {
            let p: HostPort = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
        }
        for s in [
            "22",
            "tcp/",
            "tcp/0",
            "tcp/65536",
            "icmp/1",
            "tcp/9-8",
            "tcp/+22",
            "tcp/2 2",
            "TCP/22",
            "tcp/1-",
            "tcp/99999999999",
        ] {
            assert!(s.parse::<HostPort>().is_err(), "{s}");
        }
    }

    #[test]
    fn plans_of_older_modes_parse_with_no_host_ports() {
        let json = r#"{"bridge":{"kind":"create","name":"br0","mtu":null},"addresses":["10.0.0.1/24"],
            "routes":[],"sysctls":[],"firewall":{"kind":"isolated","subnet":"10.0.0.0/24"},
            "dhcp":null,"dns":null}"#;
        let plan: Plan = serde_json::from_str(json).unwrap();
        assert!(plan.host_allow.is_empty());
        assert!(!serde_json::to_string(&plan).unwrap().contains("host_allow"));
        let mut plan = plan;
        plan.host_allow = vec!["tcp/22".parse().unwrap()];
        let again: Plan = serde_json::from_str(&serde_json::to_string(&plan).unwrap()).unwrap();
        assert_eq!(again, plan);
        let bad = json.replace("\"dhcp\":null", "\"host_allow\":[\"tcp/0\"],\"dhcp\":null");
        assert!(serde_json::from_str::<Plan>(&bad).is_err());
    }
}
