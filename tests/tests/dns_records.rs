//! The `[dns]` records, `upstream = false` and per-domain `servers` of a
//! definition, as dig in a guest sees them: CNAME (followed to the current
//! address of the guest it names, in the same answer), SRV, TXT, MX and A
//! records of the network's domain; names of a split domain answered by
//! that domain's own server (dnsmasq in a namespace of its own, `corp`)
//! while the rest goes to the default upstream (dnsmasq on the lan
//! machine); and, with `upstream = false`, outside names refused without a
//! query leaving the host.
//!
//! Run against the service before it served them (the DNS code of commit
//! 993cbf3 with today's definition parser and modes), both tests failed:
//! `www.guest.lan` (the alias) was NXDOMAIN, its records never served, and
//! with `upstream = false` the outside name was still forwarded and
//! answered.

use std::time::{Duration, Instant};

use guestnet_tests::dhcp_client::{mac, Udhcpc, UdhcpcOpts, LEASE_TIMEOUT};
use guestnet_tests::lab::{HOST_UPLINK_ADDR, LAN_ADDR};
use guestnet_tests::upstream::Upstream;
use guestnet_tests::{dig, root_or_skip, Lab};

const DOMAIN: &str = "guest.lan";
/// A name only the default upstream (the lan machine) knows.
const OUTSIDE_NAME: &str = "www.outside.test";
const OUTSIDE_ADDR: &str = "10.200.0.80";
/// The split domain, its server (in the `corp` namespace) and a name only
/// it knows.
const CORP_DOMAIN: &str = "corp.example";
const CORP_SERVER: &str = "10.201.0.53";
const CORP_NAME: &str = "db.corp.example";
const CORP_ADDR: &str = "10.201.0.80";

/// A lab whose guestnetd takes the lan machine as its upstream (through
/// its resolv.conf), the lan machine running dnsmasq with
/// [`OUTSIDE_NAME`], and a `corp` namespace, reached from the host through
/// a veth, running a second dnsmasq with [`CORP_NAME`].
fn lab_with_two_upstreams() -> (Lab, Upstream, Upstream) {
    let lab = Lab::with_resolv_conf(|_, _, _| {});
    let w = &lab.world;
    let up = Upstream::start(w, &lab.lan, LAN_ADDR, &[(OUTSIDE_NAME, OUTSIDE_ADDR)]);
    let corp = w.add_ns("corp");
    w.veth(&lab.host, "corp0", &corp, "eth0");
    w.ip(
        &lab.host,
        &format!("addr add {HOST_CORP_ADDR}/24 dev corp0"),
    );
    w.ip(&corp, &format!("addr add {CORP_SERVER}/24 dev eth0"));
    let corp_up = Upstream::start(w, &corp, CORP_SERVER, &[(CORP_NAME, CORP_ADDR)]);
    (lab, up, corp_up)
}

/// A nat network on gnbr1 with address `P.1/24`, a DHCP pool, the domain,
/// the split domain, and `dns_extra` (TOML lines of `[dns]`).
fn network(name: &str, p: &str, dns_extra: &str) -> String {
    format!(
        r#"name = "{name}"
mode = "nat"
bridge = "gnbr1"
[ipv4]
address = "{p}.1/24"
dhcp = {{ start = "{p}.100", end = "{p}.199", lease_time = "2m" }}
[dns]
domain = "{DOMAIN}"
servers = [{{ domain = "{CORP_DOMAIN}", address = "{CORP_SERVER}" }}]
{dns_extra}
"#
    )
}

/// The host's address towards the `corp` namespace.
const HOST_CORP_ADDR: &str = "10.201.0.1";

/// How many queries a dnsmasq has logged from guestnet's host (`from`
/// one of its addresses; dnsmasq's own readiness probe comes from inside).
fn queries(up: &Upstream) -> usize {
    up.log()
        .lines()
        .filter(|l| l.contains("query[") && from_host(l))
        .count()
}

fn from_host(line: &str) -> bool {
    line.ends_with(&format!("from {HOST_UPLINK_ADDR}"))
        || line.ends_with(&format!("from {HOST_CORP_ADDR}"))
}

/// Whether guestnet's host asked `up` for `name`.
fn asked(up: &Upstream, name: &str) -> bool {
    let needle = format!("] {name} from");
    up.log()
        .lines()
        .any(|l| l.contains("query[") && l.contains(&needle) && from_host(l))
}

#[test]
fn records_of_every_type_and_an_alias_that_follows_its_guest() {
    root_or_skip!();
    let (lab, up, corp) = lab_with_two_upstreams();
    let gn = lab.gn();
    let p = "10.77.70";
    let net = gn.define(&network(
        "rec1",
        p,
        &format!(
            r#"forwarders = ["{LAN_ADDR}"]
records = [
  {{ name = "www", type = "CNAME", value = "web1" }},
  {{ name = "_http._tcp", type = "SRV", value = "0 5 80 web1" }},
  {{ name = "info", type = "TXT", value = "hello" }},
  {{ name = "mail", type = "MX", value = "10 web1" }},
  {{ name = "db", type = "A", value = "{p}.9" }},
]"#
        ),
    ));
    gn.start(&net);
    let w = &lab.world;
    let server = format!("{p}.1");
    let client = lab.add_guest("c", "vc", "gnbr1", &format!("{p}.10/24"), None);

    // web1 is a DHCP guest: the alias gives its lease's address.
    let g1 = lab.add_dhcp_guest("g1", "vg1", "gnbr1", &mac(70, 1));
    let c1 = Udhcpc::start(w, &g1, &UdhcpcOpts::named("web1"));
    let ip1 = c1.wait_bound(LEASE_TIMEOUT).var("ip").to_owned();
    let www = format!("www.{DOMAIN}");
    let target = format!("web1.{DOMAIN}.");
    let r = dig::query(w, &client, &server, &[&www, "A"]);
    assert!(r.is("NOERROR"), "{r}");
    assert_eq!(r.data("CNAME"), [target.as_str()], "{r}");
    assert_eq!(
        r.data("A"),
        [ip1.as_str()],
        "the alias without its target's address: {r}"
    );
    assert!(
        r.output.contains(" aa "),
        "an answer of the zone is authoritative: {r}"
    );
    let r = dig::query(w, &client, &server, &["+tcp", "www", "CNAME"]);
    assert_eq!(r.data("CNAME"), [target.as_str()], "{r}");

    let r = dig::query(
        w,
        &client,
        &server,
        &[&format!("_http._tcp.{DOMAIN}"), "SRV"],
    );
    assert_eq!(r.data("SRV"), [format!("0 5 80 {target}")], "{r}");
    let r = dig::query(w, &client, &server, &[&format!("info.{DOMAIN}"), "TXT"]);
    assert_eq!(r.data("TXT"), ["\"hello\""], "{r}");
    let r = dig::query(w, &client, &server, &[&format!("mail.{DOMAIN}"), "MX"]);
    assert_eq!(r.data("MX"), [format!("10 {target}")], "{r}");
    assert_eq!(
        dig::a(w, &client, &server, &format!("db.{DOMAIN}")),
        [format!("{p}.9")]
    );
    assert_eq!(
        dig::ptr(w, &client, &server, &format!("{p}.9")),
        [format!("db.{DOMAIN}.")]
    );
    for name in ["www", "_http._tcp", "info", "mail", "db", "web1"] {
        assert!(
            !asked(&up, &format!("{name}.{DOMAIN}")),
            "{name}.{DOMAIN} was forwarded\n{}",
            up.log()
        );
    }

    // The split domain goes to its server, the rest to the default one.
    let corp_before = queries(&corp);
    assert_eq!(dig::a(w, &client, &server, CORP_NAME), [CORP_ADDR]);
    assert!(asked(&corp, CORP_NAME), "{}", corp.log());
    assert!(!asked(&up, CORP_NAME), "{}", up.log());
    assert_eq!(dig::a(w, &client, &server, OUTSIDE_NAME), [OUTSIDE_ADDR]);
    assert!(asked(&up, OUTSIDE_NAME), "{}", up.log());
    assert!(!asked(&corp, OUTSIDE_NAME), "{}", corp.log());
    let tcp = dig::query(w, &client, &server, &["+tcp", CORP_NAME, "A"]);
    assert_eq!(tcp.data("A"), [CORP_ADDR], "{tcp}");
    eprintln!(
        "the corp server saw {} queries",
        queries(&corp) - corp_before
    );

    // GetConfig shows them as written, in a form Update takes again.
    let config = gn.get_config(&net);
    let t: toml::Table = toml::from_str(&config).expect("GetConfig is TOML");
    let dns = t["dns"].as_table().expect("[dns]");
    assert_eq!(dns["records"].as_array().map(Vec::len), Some(5), "{config}");
    assert_eq!(
        dns["servers"][0]["domain"].as_str(),
        Some(CORP_DOMAIN),
        "{config}"
    );
    gn.update(&net, &config);

    // The guest goes: the alias's target is no one's now.
    c1.release();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = dig::query(w, &client, &server, &[&www, "A"]);
        if r.is("NXDOMAIN") {
            assert_eq!(r.data("CNAME"), [target.as_str()], "{r}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "www still resolves after web1's lease was released: {r}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Another guest takes the name, at another address: the alias follows.
    let g2 = lab.add_dhcp_guest("g2", "vg2", "gnbr1", &mac(70, 2));
    let c2 = Udhcpc::start(w, &g2, &UdhcpcOpts::named("web1"));
    let ip2 = c2.wait_bound(LEASE_TIMEOUT).var("ip").to_owned();
    assert_ne!(ip1, ip2, "the pool gave the new guest the old address");
    let r = dig::query(w, &client, &server, &[&www, "A"]);
    assert_eq!(r.data("CNAME"), [target.as_str()], "{r}");
    assert_eq!(
        r.data("A"),
        [ip2.as_str()],
        "the alias did not follow web1: {r}"
    );
}

#[test]
fn without_upstream_outside_names_are_refused_and_no_query_leaves() {
    root_or_skip!();
    let (lab, up, corp) = lab_with_two_upstreams();
    let gn = lab.gn();
    let p = "10.77.71";
    // No forwarders: the resolv.conf (the lan machine) would be the
    // upstream, were there one.
    let net = gn.define(&network(
        "rec2",
        p,
        &format!(
            r#"upstream = false
records = [{{ name = "db", type = "A", value = "{p}.9" }}]"#
        ),
    ));
    gn.start(&net);
    let w = &lab.world;
    let server = format!("{p}.1");
    let client = lab.add_guest("c", "vc", "gnbr1", &format!("{p}.10/24"), None);
    let lan_before = queries(&up);

    for args in [
        vec![OUTSIDE_NAME, "A"],
        vec!["+tcp", OUTSIDE_NAME, "A"],
        vec!["-x", OUTSIDE_ADDR],
        vec!["example", "MX"],
    ] {
        let r = dig::query(w, &client, &server, &args);
        assert!(r.is("REFUSED"), "{args:?}: {r}");
        assert!(r.answers.is_empty(), "{r}");
    }
    // The network's own names are answered, NXDOMAIN included...
    assert_eq!(
        dig::a(w, &client, &server, &format!("db.{DOMAIN}")),
        [format!("{p}.9")]
    );
    let r = dig::query(w, &client, &server, &[&format!("nosuch.{DOMAIN}"), "A"]);
    assert!(r.is("NXDOMAIN"), "{r}");
    // ...and the split domain still goes to its server.
    assert_eq!(dig::a(w, &client, &server, CORP_NAME), [CORP_ADDR]);
    assert!(asked(&corp, CORP_NAME), "{}", corp.log());

    assert!(!asked(&up, OUTSIDE_NAME), "{}", up.log());
    assert_eq!(
        queries(&up),
        lan_before,
        "a query reached the default upstream\n{}",
        up.log()
    );
    assert!(!asked(&corp, OUTSIDE_NAME), "{}", corp.log());
}
