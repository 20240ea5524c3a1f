//! guestnet's own DNS server on each network's bridge address, as dig in a
//! guest sees it: the guests' names (given by their DHCP clients) and the
//! static hosts, under the domain and bare, A and PTR; NXDOMAIN for unknown
//! names in the domain; everything else forwarded to the upstream (dnsmasq
//! on the lan machine), also from an isolated network; UDP and TCP; and no
//! answer at all to anyone outside the bridge.

use std::time::{Duration, Instant};

use guestnet_tests::dhcp_client::{mac, Dhclient, DhclientOpts, Udhcpc, UdhcpcOpts, LEASE_TIMEOUT};
use guestnet_tests::lab::{HOST_UPLINK_ADDR, LAN_ADDR};
use guestnet_tests::upstream::Upstream;
use guestnet_tests::{dig, probe, root_or_skip, Lab};

const DOMAIN: &str = "guest.lan";
/// A name only the upstream knows, and its address: the lan machine has it
/// too, so the host can reach it.
const OUTSIDE_NAME: &str = "www.outside.test";
const OUTSIDE_ADDR: &str = "10.200.0.80";

/// A lab (guestnetd's resolv.conf names the lan machine) whose lan machine
/// runs the upstream DNS server and also holds [`OUTSIDE_ADDR`].
fn dns_lab() -> (Lab, Upstream) {
    let lab = Lab::with_resolv_conf(|w, _host, lan| {
        w.ip(lan, &format!("addr add {OUTSIDE_ADDR}/32 dev eth0"));
    });
    let up = Upstream::start(
        &lab.world,
        &lab.lan,
        LAN_ADDR,
        &[
            (OUTSIDE_NAME, OUTSIDE_ADDR),
            ("mail.outside.test", "10.200.0.81"),
        ],
    );
    (lab, up)
}

/// A definition with a DHCP pool .100-.199, the domain, and `forwarders`
/// (TOML, e.g. `forwarders = ["10.200.0.2"]`, or "" for none), `hosts` as
/// given (TOML array body, or "").
fn network(name: &str, mode: &str, p: &str, hosts: &str, forwarders: &str) -> String {
    let hosts = if hosts.is_empty() {
        String::new()
    } else {
        format!("hosts = [{hosts}]\n")
    };
    format!(
        r#"name = "{name}"
mode = "{mode}"
bridge = "gnbr1"
[ipv4]
address = "{p}.1/24"
dhcp = {{ start = "{p}.100", end = "{p}.199", lease_time = "2m" }}
{hosts}[dns]
domain = "{DOMAIN}"
{forwarders}
"#
    )
}

fn forwarders() -> String {
    format!("forwarders = [\"{LAN_ADDR}\"]")
}

#[test]
fn guests_and_static_hosts_resolve_and_the_rest_is_forwarded() {
    root_or_skip!();
    let (lab, up) = dns_lab();
    let gn = lab.gn();
    let p = "10.77.60";
    let web = mac(60, 0xaa);
    let net = gn.define(&network(
        "dns1",
        "nat",
        p,
        &format!(r#"{{ mac = "{web}", ip = "{p}.5", name = "web" }}"#),
        &forwarders(),
    ));
    gn.start(&net);
    let w = &lab.world;
    let server = format!("{p}.1");

    // g1 names itself through udhcpc, g2 through dhclient
    let g1 = lab.add_dhcp_guest("g1", "vg1", "gnbr1", &mac(60, 1));
    let g2 = lab.add_dhcp_guest("g2", "vg2", "gnbr1", &mac(60, 2));
    let c1 = Udhcpc::start(w, &g1, &UdhcpcOpts::named("alpha"));
    let c2 = Dhclient::start(w, &g2, &DhclientOpts::named("beta"));
    let ip1 = c1.wait_bound(LEASE_TIMEOUT).var("ip").to_owned();
    let ip2 = c2
        .wait_bound(Duration::from_secs(30))
        .var("new_ip_address")
        .to_owned();

    // its own name, under the domain and bare
    assert_eq!(
        dig::a(w, &g1, &server, &format!("alpha.{DOMAIN}")),
        [ip1.as_str()]
    );
    assert_eq!(dig::a(w, &g1, &server, "alpha"), [ip1.as_str()]);
    // another guest's
    assert_eq!(
        dig::a(w, &g1, &server, &format!("beta.{DOMAIN}")),
        [ip2.as_str()]
    );
    assert_eq!(dig::a(w, &g1, &server, "beta"), [ip2.as_str()]);
    // a static host's, whether or not it ever asked for its lease
    assert_eq!(
        dig::a(w, &g1, &server, &format!("web.{DOMAIN}")),
        [format!("{p}.5")]
    );
    assert_eq!(dig::a(w, &g2, &server, "web"), [format!("{p}.5")]);
    // PTR
    assert_eq!(dig::ptr(w, &g1, &server, &ip2), [format!("beta.{DOMAIN}.")]);
    assert_eq!(
        dig::ptr(w, &g2, &server, &ip1),
        [format!("alpha.{DOMAIN}.")]
    );
    assert_eq!(
        dig::ptr(w, &g1, &server, &format!("{p}.5")),
        [format!("web.{DOMAIN}.")]
    );
    // an outside name, through the upstream
    assert_eq!(dig::a(w, &g1, &server, OUTSIDE_NAME), [OUTSIDE_ADDR]);
    assert!(
        up.saw_query(OUTSIDE_NAME),
        "the upstream never saw the query\n{}",
        up.log()
    );
    assert_eq!(
        dig::ptr(w, &g1, &server, OUTSIDE_ADDR),
        [format!("{OUTSIDE_NAME}.")],
        "reverse lookups outside the subnet are forwarded too"
    );
    // an unknown name in the domain: NXDOMAIN, answered here
    let nx = dig::query(w, &g1, &server, &[&format!("nosuch.{DOMAIN}"), "A"]);
    assert!(nx.is("NXDOMAIN"), "{nx}");
    assert!(
        !up.saw_query(&format!("nosuch.{DOMAIN}")),
        "a name of the local domain was forwarded\n{}",
        up.log()
    );
    // TCP too
    let tcp = dig::query(w, &g2, &server, &["+tcp", &format!("alpha.{DOMAIN}"), "A"]);
    assert_eq!(tcp.data("A"), [ip1.as_str()], "{tcp}");
    let tcp = dig::query(w, &g2, &server, &["+tcp", "mail.outside.test", "A"]);
    assert_eq!(tcp.data("A"), ["10.200.0.81"], "{tcp}");

    // a name goes with its lease
    c1.release();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = dig::query(w, &g2, &server, &[&format!("alpha.{DOMAIN}"), "A"]);
        if r.is("NXDOMAIN") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alpha still resolves after its lease was released: {r}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_client_hostname_becomes_a_valid_dns_label() {
    root_or_skip!();
    let (lab, _up) = dns_lab();
    let gn = lab.gn();
    let p = "10.77.61";
    let net = gn.define(&network("dns2", "nat", p, "", &forwarders()));
    gn.start(&net);
    let m = mac(61, 1);
    let g = lab.add_dhcp_guest("g1", "vg1", "gnbr1", &m);
    let c = Udhcpc::start(&lab.world, &g, &UdhcpcOpts::named("My_Guest.example"));
    let ip = c.wait_bound(LEASE_TIMEOUT).var("ip").to_owned();
    let lease = gn.lease_of(&net, &m).expect("lease not listed");
    let h = &lease.hostname;
    eprintln!("the hostname \"My_Guest.example\" became {h:?}");
    assert!(
        !h.is_empty()
            && h.len() <= 63
            && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !h.starts_with('-')
            && !h.ends_with('-'),
        "the hostname \"My_Guest.example\" was not made a DNS label: {h:?}"
    );
    assert_eq!(
        dig::a(&lab.world, &g, &format!("{p}.1"), &format!("{h}.{DOMAIN}")),
        [ip]
    );
}

#[test]
fn an_isolated_guest_resolves_an_outside_name_it_cannot_reach() {
    root_or_skip!();
    let (lab, up) = dns_lab();
    let gn = lab.gn();
    let p = "10.77.62";
    let net = gn.define(&network("dns3", "isolated", p, "", &forwarders()));
    gn.start(&net);
    let w = &lab.world;
    let g = lab.add_dhcp_guest("g1", "vg1", "gnbr1", &mac(62, 1));
    let c = Udhcpc::start(w, &g, &UdhcpcOpts::named("lonely"));
    let ip = c.wait_bound(LEASE_TIMEOUT).var("ip").to_owned();
    let server = format!("{p}.1");

    assert_eq!(dig::a(w, &g, &server, OUTSIDE_NAME), [OUTSIDE_ADDR]);
    assert!(up.saw_query(OUTSIDE_NAME));
    assert_eq!(dig::a(w, &g, &server, &format!("lonely.{DOMAIN}")), [ip]);
    let tcp = dig::query(w, &g, &server, &["+tcp", OUTSIDE_NAME, "A"]);
    assert_eq!(tcp.data("A"), [OUTSIDE_ADDR], "{tcp}");

    // The address is there (the host reaches it), and every door but the
    // firewall is open: a route in the guest, forwarding in the host, a
    // route back in the lan. The guest still cannot reach it.
    probe::assert_ping(w, &lab.host, OUTSIDE_ADDR);
    w.ip(&g, &format!("route replace default via {p}.1 dev eth0"));
    w.sysctl_set(&lab.host, "net.ipv4.ip_forward", "1");
    w.ip(
        &lab.lan,
        &format!("route add {p}.0/24 via {HOST_UPLINK_ADDR}"),
    );
    probe::assert_no_ping(w, &g, OUTSIDE_ADDR);
}

#[test]
fn without_forwarders_the_resolv_conf_given_is_the_upstream() {
    root_or_skip!();
    let (lab, up) = dns_lab();
    let gn = lab.gn();
    let p = "10.77.63";
    let net = gn.define(&network("dns4", "nat", p, "", ""));
    gn.start(&net);
    let g = lab.add_guest(
        "g1",
        "vg1",
        "gnbr1",
        &format!("{p}.10/24"),
        Some(&format!("{p}.1")),
    );
    assert_eq!(
        dig::a(&lab.world, &g, &format!("{p}.1"), OUTSIDE_NAME),
        [OUTSIDE_ADDR]
    );
    assert!(up.saw_query(OUTSIDE_NAME), "{}", up.log());
}

#[test]
fn the_resolver_answers_no_one_outside_the_bridge() {
    root_or_skip!();
    let (lab, up) = dns_lab();
    let gn = lab.gn();
    let p = "10.77.64";
    let net = gn.define(&network("dns5", "nat", p, "", &forwarders()));
    gn.start(&net);
    let w = &lab.world;
    let server = format!("{p}.1");
    // a guest on the bridge is answered
    let g = lab.add_guest("g1", "vg1", "gnbr1", &format!("{p}.10/24"), Some(&server));
    assert_eq!(dig::a(w, &g, &server, OUTSIDE_NAME), [OUTSIDE_ADDR]);

    // the lan machine, with a route to the bridge's subnet, is not
    w.ip(
        &lab.lan,
        &format!("route add {p}.0/24 via {HOST_UPLINK_ADDR}"),
    );
    let before = up.log().lines().count();
    for args in [
        vec!["mail.outside.test", "A"],
        vec!["+tcp", "mail.outside.test", "A"],
    ] {
        let r = dig::query(w, &lab.lan, &server, &args);
        assert_eq!(
            r.status, None,
            "an open resolver: the lan got an answer: {r}"
        );
        // nor on the host's uplink address
        let r = dig::query(w, &lab.lan, HOST_UPLINK_ADDR, &args);
        assert_eq!(r.status, None, "the host answers DNS on its uplink: {r}");
    }
    assert_eq!(
        up.log().lines().count(),
        before,
        "a query from the lan was forwarded upstream\n{}",
        up.log()
    );
}
