//! guestnet's own DHCPv4 server, as real clients see it: udhcpc and dhclient
//! in guest namespaces get leases with the promised options, renew and
//! release them; the D-Bus API lists them, waits for them and signals them
//! (seen by a real `busctl monitor`); static hosts, a full pool, NAK,
//! DECLINE, INFORM, relayed requests; leases survive restarts and crashes.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use guestnet_tests::dhcp_client::{
    dhclient_lease, mac, Dhclient, DhclientOpts, Event, Udhcpc, UdhcpcOpts, LEASE_TIMEOUT,
};
use guestnet_tests::guestnet::{expect_error, expires_in, lease_keys};
use guestnet_tests::lab::LAN_ADDR;
use guestnet_tests::monitor::Monitor;
use guestnet_tests::{dhcp_probe, dig, probe, root_or_skip, Lab, Service};

const DOMAIN: &str = "guest.lan";
const SIGNAL_WAIT: Duration = Duration::from_secs(5);

/// A lab whose guestnetd's upstream DNS is the lan machine (never the
/// machine's resolv.conf).
fn lab() -> Lab {
    Lab::with_resolv_conf(|_, _, _| {})
}

/// `{ start = "P.lo", end = "P.hi", lease_time = "LEASE" }` for the /24 `p`.
fn pool(p: &str, lo: u8, hi: u8, lease: &str) -> String {
    format!(r#"{{ start = "{p}.{lo}", end = "{p}.{hi}", lease_time = "{lease}" }}"#)
}

/// A network definition: bridge `bridge`, address `P.1/24`, `dhcp` as given
/// (a pool, or `false`), static `hosts` (mac, last octet, name), domain
/// guest.lan forwarding to the lan machine, `top` added at the top level.
fn network(
    name: &str,
    mode: &str,
    bridge: &str,
    p: &str,
    dhcp: &str,
    hosts: &[(&str, u8, &str)],
    top: &str,
) -> String {
    let mut s = format!(
        "name = \"{name}\"\nmode = \"{mode}\"\nbridge = \"{bridge}\"\n{top}\n\
         [ipv4]\naddress = \"{p}.1/24\"\ndhcp = {dhcp}\n"
    );
    if !hosts.is_empty() {
        let hs: Vec<String> = hosts
            .iter()
            .map(|(m, o, n)| format!("{{ mac = \"{m}\", ip = \"{p}.{o}\", name = \"{n}\" }}"))
            .collect();
        s.push_str(&format!("hosts = [{}]\n", hs.join(", ")));
    }
    s.push_str(&format!(
        "[dns]\ndomain = \"{DOMAIN}\"\nforwarders = [\"{LAN_ADDR}\"]\n"
    ));
    s
}

/// The last octet of `ip` if it is in the /24 `p`.
fn octet_in(p: &str, ip: &str) -> Option<u8> {
    let a: Ipv4Addr = ip.parse().ok()?;
    let o = a.octets();
    (format!("{}.{}.{}", o[0], o[1], o[2]) == p).then_some(o[3])
}

#[track_caller]
fn assert_in_pool(p: &str, lo: u8, hi: u8, ip: &str) {
    match octet_in(p, ip) {
        Some(o) if (lo..=hi).contains(&o) => {}
        _ => panic!("{ip} is not in the pool {p}.{lo}-{p}.{hi}"),
    }
}

/// udhcpc's client identifier for `mac`: type 1 (ethernet) and the MAC.
fn udhcpc_client_id(mac: &str) -> String {
    format!("01:{mac}")
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// A u32 udhcpc exported as hex (`opt58 0000003c`).
fn hex_u32(e: &Event, key: &str) -> u32 {
    u32::from_str_radix(e.var(key), 16)
        .unwrap_or_else(|_| panic!("{key} = {:?} is not a hex u32", e.var(key)))
}

/// A client started with `-n` that must get no lease: it exits 1 after its
/// DISCOVERs, having seen no `bound`.
#[track_caller]
fn assert_no_lease(c: &mut Udhcpc) {
    let exit = c.wait_exit(Duration::from_secs(30));
    assert_eq!(
        exit,
        Some(Some(1)),
        "udhcpc -n should have given up without a lease\n{}",
        c.describe()
    );
    assert!(
        c.events().iter().all(|e| e.event != "bound"),
        "a lease was granted:\n{}",
        c.describe()
    );
}

fn no_lease_opts() -> UdhcpcOpts {
    UdhcpcOpts {
        discovers: 4,
        exit_without_lease: true,
        ..UdhcpcOpts::default()
    }
}

#[test]
fn udhcpc_gets_a_lease_with_the_promised_options_renews_and_releases_it() {
    root_or_skip!();
    let lab = lab();
    let gn = lab.gn();
    let p = "10.77.40";
    let net = gn.define(&network(
        "dhcp1",
        "nat",
        "gnbr1",
        p,
        &pool(p, 100, 199, "2m"),
        &[],
        "mtu = 1450",
    ));
    gn.start(&net);
    let mon = Monitor::start(lab.bus.address());
    let m = mac(40, 1);
    let g = lab.add_dhcp_guest("g1", "vg1", "gnbr1", &m);
    let c = Udhcpc::start(&lab.world, &g, &UdhcpcOpts::named("g1"));
    let bound = c.wait_bound(LEASE_TIMEOUT);
    let ip = bound.var("ip").to_owned();
    assert_in_pool(p, 100, 199, &ip);

    // the options
    assert_eq!(bound.var("subnet"), "255.255.255.0", "{bound:?}");
    assert_eq!(
        bound.var("router"),
        "10.77.40.1",
        "router: the bridge address"
    );
    assert_eq!(
        bound.var("dns"),
        "10.77.40.1",
        "DNS server: the bridge address"
    );
    assert_eq!(bound.var("domain"), DOMAIN);
    assert_eq!(bound.var("serverid"), "10.77.40.1");
    assert_eq!(bound.var("lease"), "120", "lease_time = 2m");
    assert_eq!(bound.var("mtu"), "1450", "the definition's mtu");
    let (t1, t2) = (hex_u32(&bound, "opt58"), hex_u32(&bound, "opt59"));
    assert!(
        0 < t1 && t1 < t2 && t2 < 120,
        "T1 {t1} and T2 {t2} must be 0 < T1 < T2 < lease time 120"
    );
    assert_eq!(lab.world.ipv4_addrs(&g, "eth0"), [format!("{ip}/24")]);
    probe::assert_ping(&lab.world, &g, "10.77.40.1");

    // the signal, within moments of the ACK
    let added = mon.expect_lease_signal("LeaseAdded", &m, SIGNAL_WAIT);
    let lease = added.lease().unwrap();
    assert_eq!(lease.ip, ip);
    assert_eq!(lease.hostname, "g1");
    assert_eq!(lease.client_id, udhcpc_client_id(&m));
    let bound_us = (bound.time_ns / 1000) as u64;
    let lag_ms = (added.timestamp_us as i64 - bound_us as i64) / 1000;
    eprintln!("LeaseAdded reached the monitor {lag_ms} ms after udhcpc's bound script ran");
    assert!(
        lag_ms < 1000,
        "LeaseAdded came {lag_ms} ms after the client was bound"
    );

    // ListLeases and WaitForLease
    let leases = gn.list_leases(&net);
    assert_eq!(leases.len(), 1, "{leases:?}");
    let listed = &leases[0];
    assert_eq!(
        lease_keys(&leases),
        lease_keys(std::slice::from_ref(&lease))
    );
    assert!(
        (100..=125).contains(&expires_in(listed)),
        "a 2 minute lease expires in {} s",
        expires_in(listed)
    );
    let t = Instant::now();
    let waited = gn.wait_for_lease(&net, &m, 20_000);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "WaitForLease of an existing lease took {:?}",
        t.elapsed()
    );
    assert_eq!(waited.ip, ip);
    assert_eq!(waited.hostname, "g1");

    // renew: unicast to the server, same address, a LeaseRenewed signal
    std::thread::sleep(Duration::from_millis(1100));
    let renewed = c.renew(Duration::from_secs(10));
    assert_eq!(renewed.var("ip"), ip, "renewing changed the address");
    let sig = mon.expect_lease_signal("LeaseRenewed", &m, SIGNAL_WAIT);
    assert_eq!(sig.lease().unwrap().ip, ip);
    let after = gn.lease_of(&net, &m).expect("the renewed lease is listed");
    assert!(
        after.expiry > listed.expiry,
        "renewing did not move the expiry ({} then {})",
        listed.expiry,
        after.expiry
    );

    // release
    c.release();
    let removed = mon.expect_lease_signal("LeaseRemoved", &m, SIGNAL_WAIT);
    assert_eq!(removed.lease().unwrap().ip, ip);
    assert_eq!(gn.lease_of(&net, &m), None, "released but still listed");
    assert!(lab.world.ipv4_addrs(&g, "eth0").is_empty());
}

#[test]
fn wait_for_lease_waits_for_a_client_and_times_out_for_a_silent_one() {
    root_or_skip!();
    let lab = lab();
    let gn = lab.gn();
    let p = "10.77.41";
    let net = gn.define(&network(
        "dhcp2",
        "nat",
        "gnbr1",
        p,
        &pool(p, 100, 199, "2m"),
        &[],
        "",
    ));
    gn.start(&net);

    let t = Instant::now();
    expect_error(
        gn.try_wait_for_lease(&net, "52:54:00:77:41:ff", 1500),
        "Timeout",
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(10),
        "WaitForLease(1500 ms) for a MAC that never asks returned after {took:?}"
    );

    let m = mac(41, 1);
    let g = lab.add_dhcp_guest("g1", "vg1", "gnbr1", &m);
    let (gn2, net2, m2) = (gn.clone(), net.clone(), m.clone());
    let waiter = std::thread::spawn(move || {
        let lease = gn2.wait_for_lease(&net2, &m2, 25_000);
        (lease, now_us())
    });
    std::thread::sleep(Duration::from_millis(500));
    let c = Udhcpc::start(&lab.world, &g, &UdhcpcOpts::named("w1"));
    let bound = c.wait_bound(LEASE_TIMEOUT);
    let (lease, returned_us) = waiter.join().expect("the WaitForLease call failed");
    assert_eq!(lease.mac, m);
    assert_eq!(lease.ip, bound.var("ip"));
    assert_eq!(lease.hostname, "w1");
    let lag_ms = (returned_us as i64 - (bound.time_ns / 1000) as i64) / 1000;
    assert!(
        lag_ms < 2000,
        "WaitForLease returned {lag_ms} ms after the client was bound"
    );
}

#[test]
fn dhclient_gets_renews_at_t1_and_releases_a_lease() {
    root_or_skip!();
    let lab = lab();
    let gn = lab.gn();
    let p = "10.77.42";
    let net = gn.define(&network(
        "dhcp3",
        "nat",
        "gnbr1",
        p,
        &pool(p, 100, 199, "30s"),
        &[],
        "",
    ));
    gn.start(&net);
    let mon = Monitor::start(lab.bus.address());
    let m = mac(42, 1);
    let g = lab.add_dhcp_guest("g1", "vg1", "gnbr1", &m);
    let mut c = Dhclient::start(&lab.world, &g, &DhclientOpts::named("dhguest"));
    let bound = c.wait_bound(Duration::from_secs(30));
    let ip = bound.var("new_ip_address").to_owned();
    assert_in_pool(p, 100, 199, &ip);
    assert_eq!(bound.var("new_subnet_mask"), "255.255.255.0");
    assert_eq!(bound.var("new_routers"), "10.77.42.1");
    assert_eq!(bound.var("new_domain_name_servers"), "10.77.42.1");
    assert_eq!(bound.var("new_domain_name"), DOMAIN);
    assert_eq!(bound.var("new_dhcp_lease_time"), "30");
    assert_eq!(lab.world.ipv4_addrs(&g, "eth0"), [format!("{ip}/24")]);

    let added = mon.expect_lease_signal("LeaseAdded", &m, SIGNAL_WAIT);
    assert_eq!(added.lease().unwrap().ip, ip);
    let lease = gn
        .lease_of(&net, &m)
        .expect("dhclient's lease is not listed");
    assert_eq!(lease.ip, ip);
    assert_eq!(lease.hostname, "dhguest", "the host-name dhclient sent");
    assert_eq!(lease.client_id, "", "dhclient sends no client identifier");

    // dhclient renews by itself at T1 (15 s into a 30 s lease)
    let from = c.events().len();
    let renew = c
        .wait_event(
            &["RENEW", "REBIND", "BOUND", "EXPIRE", "FAIL"],
            from,
            Duration::from_secs(40),
        )
        .unwrap_or_else(|| panic!("dhclient did not renew\n{}", c.describe()));
    assert_eq!(renew.event, "RENEW", "{}", c.describe());
    assert_eq!(renew.var("new_ip_address"), ip);
    mon.expect_lease_signal("LeaseRenewed", &m, SIGNAL_WAIT);
    assert!(gn.lease_of(&net, &m).unwrap().expiry > lease.expiry);

    c.release();
    let removed = mon.expect_lease_signal("LeaseRemoved", &m, SIGNAL_WAIT);
    assert_eq!(removed.lease().unwrap().ip, ip);
    assert_eq!(gn.lease_of(&net, &m), None);
}

#[test]
fn a_client_that_comes_back_gets_its_old_address() {
    root_or_skip!();
    let lab = lab();
    let gn = lab.gn();
    let p = "10.77.43";
    let net = gn.define(&network(
        "dhcp4",
        "nat",
        "gnbr1",
        p,
        &pool(p, 100, 199, "2m"),
        &[],
        "",
    ));
    gn.start(&net);
    let (m1, m2) = (mac(43, 1), mac(43, 2));
    let g1 = lab.add_dhcp_guest("g1", "vg1", "gnbr1", &m1);
    let g2 = lab.add_dhcp_guest("g2", "vg2", "gnbr1", &m2);
    let once = UdhcpcOpts {
        quit_after_lease: true,
        ..UdhcpcOpts::named("back1")
    };
    let c1 = Udhcpc::start(&lab.world, &g1, &once);
    let ip1 = c1.wait_bound(LEASE_TIMEOUT).var("ip").to_owned();
    drop(c1);
    let c2 = Udhcpc::start(&lab.world, &g2, &UdhcpcOpts::named("back2"));
    let ip2 = c2.wait_bound(LEASE_TIMEOUT).var("ip").to_owned();
    assert_ne!(ip1, ip2);

    // g1 comes back with a fresh DISCOVER while its lease still runs
    lab.world.ip(&g1, "-4 addr flush dev eth0");
    let c1 = Udhcpc::start(&lab.world, &g1, &UdhcpcOpts::named("back1"));
    assert_eq!(
        c1.wait_bound(LEASE_TIMEOUT).var("ip"),
        ip1,
        "a returning client must get its old address"
    );
    // and again after it released the address, which nobody took since
    c1.release();
    drop(c1);
    let c1 = Udhcpc::start(&lab.world, &g1, &UdhcpcOpts::named("back1"));
    assert_eq!(
        c1.wait_bound(LEASE_TIMEOUT).var("ip"),
        ip1,
        "a client coming back after a release must get its old address while it is free"
    );
    let keys = lease_keys(&gn.list_leases(&net));
    assert_eq!(keys.len(), 2, "{keys:?}");
}

#[test]
fn static_hosts_get_their_address_and_name_and_the_pool_never_hands_them_out() {
    root_or_skip!();
    let lab = lab();
    let gn = lab.gn();
    let p = "10.77.44";
    let (web, db) = (mac(44, 0xaa), mac(44, 0xbb));
    // web's address is inside the pool, db's outside it
    let net = gn.define(&network(
        "dhcp5",
        "nat",
        "gnbr1",
        p,
        &pool(p, 100, 102, "2m"),
        &[(&web, 101, "web"), (&db, 5, "db")],
        "",
    ));
    gn.start(&net);
    let mut dynamic = Vec::new();
    for i in 1..=2u8 {
        let g = lab.add_dhcp_guest(&format!("g{i}"), &format!("vg{i}"), "gnbr1", &mac(44, i));
        dynamic.push(Udhcpc::start(&lab.world, &g, &UdhcpcOpts::default()));
    }
    let ips: BTreeSet<String> = dynamic
        .iter()
        .map(|c| c.wait_bound(LEASE_TIMEOUT).var("ip").to_owned())
        .collect();
    assert_eq!(
        ips,
        [format!("{p}.100"), format!("{p}.102")]
            .into_iter()
            .collect(),
        "the pool .100-.102 less web's .101"
    );
    // the pool is now used up: a third guest must not get web's address
    let g3 = lab.add_dhcp_guest("g3", "vg3", "gnbr1", &mac(44, 3));
    let mut c3 = Udhcpc::start(&lab.world, &g3, &no_lease_opts());
    assert_no_lease(&mut c3);

    let gw = lab.add_dhcp_guest("web", "vweb", "gnbr1", &web);
    let cw = Udhcpc::start(&lab.world, &gw, &UdhcpcOpts::default());
    assert_eq!(cw.wait_bound(LEASE_TIMEOUT).var("ip"), format!("{p}.101"));
    let gd = lab.add_dhcp_guest("db", "vdb", "gnbr1", &db);
    let cd = Udhcpc::start(&lab.world, &gd, &UdhcpcOpts::default());
    assert_eq!(cd.wait_bound(LEASE_TIMEOUT).var("ip"), format!("{p}.5"));

    let lw = gn.lease_of(&net, &web).expect("web's lease is not listed");
    assert_eq!(
        (lw.ip.as_str(), lw.hostname.as_str()),
        (format!("{p}.101").as_str(), "web")
    );
    let ld = gn.lease_of(&net, &db).expect("db's lease is not listed");
    assert_eq!(
        (ld.ip.as_str(), ld.hostname.as_str()),
        (format!("{p}.5").as_str(), "db")
    );
    assert_eq!(gn.list_leases(&net).len(), 4);
}

#[test]
fn two_guests_never_get_the_same_address() {
    root_or_skip!();
    let lab = lab();
    let gn = lab.gn();
    let p = "10.77.45";
    let net = gn.define(&network(
        "dhcp6",
        "nat",
        "gnbr1",
        p,
        &pool(p, 100, 199, "2m"),
        &[],
        "",
    ));
    gn.start(&net);
    // all asking at once
    let guests: Vec<(String, String)> = (1..=6u8)
        .map(|i| {
            let m = mac(45, i);
            let g = lab.add_dhcp_guest(&format!("g{i}"), &format!("vg{i}"), "gnbr1", &m);
            (g, m)
        })
        .collect();
    let clients: Vec<Udhcpc> = guests
        .iter()
        .enumerate()
        .map(|(i, (g, _))| Udhcpc::start(&lab.world, g, &UdhcpcOpts::named(&format!("many{i}"))))
        .collect();
    let ips: Vec<String> = clients
        .iter()
        .map(|c| c.wait_bound(LEASE_TIMEOUT).var("ip").to_owned())
        .collect();
    let distinct: BTreeSet<&String> = ips.iter().collect();
    assert_eq!(
        distinct.len(),
        ips.len(),
        "two guests share an address: {ips:?}"
    );
    for ip in &ips {
        assert_in_pool(p, 100, 199, ip);
    }
    let leases = gn.list_leases(&net);
    assert_eq!(leases.len(), guests.len(), "{leases:?}");
    for ((_, m), ip) in guests.iter().zip(&ips) {
        let l = gn
            .lease_of(&net, m)
            .unwrap_or_else(|| panic!("no lease for {m}"));
        assert_eq!(&l.ip, ip, "{m}");
    }
}

#[test]
fn an_exhausted_pool_offers_nothing_and_keeps_serving_the_others() {
    root_or_skip!();
    let mut lab = lab();
    let gn = lab.gn();
    let p = "10.77.46";
    let net = gn.define(&network(
        "dhcp7",
        "nat",
        "gnbr1",
        p,
        &pool(p, 100, 101, "2m"),
        &[],
        "",
    ));
    gn.start(&net);
    let (m1, m2, m3) = (mac(46, 1), mac(46, 2), mac(46, 3));
    let g1 = lab.add_dhcp_guest("g1", "vg1", "gnbr1", &m1);
    let g2 = lab.add_dhcp_guest("g2", "vg2", "gnbr1", &m2);
    let g3 = lab.add_dhcp_guest("g3", "vg3", "gnbr1", &m3);
    let c1 = Udhcpc::start(&lab.world, &g1, &UdhcpcOpts::default());
    let ip1 = c1.wait_bound(LEASE_TIMEOUT).var("ip").to_owned();
    let c2 = Udhcpc::start(&lab.world, &g2, &UdhcpcOpts::default());
    let ip2 = c2.wait_bound(LEASE_TIMEOUT).var("ip").to_owned();
    assert_ne!(ip1, ip2);

    let mut c3 = Udhcpc::start(&lab.world, &g3, &no_lease_opts());
    assert_no_lease(&mut c3);
    assert!(lab.service.is_running(), "guestnetd died of a full pool");
    let macs: BTreeSet<String> = gn.list_leases(&net).into_iter().map(|l| l.mac).collect();
    assert_eq!(macs, [m1.clone(), m2.clone()].into_iter().collect());

    // the others are still served
    assert_eq!(c1.renew(Duration::from_secs(10)).var("ip"), ip1);
    assert_eq!(c2.renew(Duration::from_secs(10)).var("ip"), ip2);
    // and an address released is handed out again
    c1.release();
    drop(c3);
    let c3 = Udhcpc::start(&lab.world, &g3, &UdhcpcOpts::default());
    assert_eq!(c3.wait_bound(LEASE_TIMEOUT).var("ip"), ip1);
    assert!(lab.service.is_running());
}

#[test]
fn a_request_for_a_foreign_or_taken_address_is_naked() {
    root_or_skip!();
    let lab = lab();
    let gn = lab.gn();
    let p = "10.77.47";
    let net = gn.define(&network(
        "dhcp8",
        "nat",
        "gnbr1",
        p,
        &pool(p, 100, 199, "2m"),
        &[],
        "",
    ));
    gn.start(&net);
    let m1 = mac(47, 1);
    let g1 = lab.add_dhcp_guest("g1", "vg1", "gnbr1", &m1);
    let c1 = Udhcpc::start(&lab.world, &g1, &UdhcpcOpts::default());
    let ip1 = c1.wait_bound(LEASE_TIMEOUT).var("ip").to_owned();

    // dhclient believes it holds a lease of another network: INIT-REBOOT
    // asks for it, the server NAKs, dhclient starts over and gets one here.
    let g2 = lab.add_dhcp_guest("g2", "vg2", "gnbr1", &mac(47, 2));
    let c2 = Dhclient::start(
        &lab.world,
        &g2,
        &DhclientOpts {
            hostname: None,
            lease_file: Some(dhclient_lease("10.98.0.50", "10.98.0.1")),
        },
    );
    let ip2 = c2
        .wait_bound(Duration::from_secs(40))
        .var("new_ip_address")
        .to_owned();
    assert!(
        c2.log().contains("DHCPNAK"),
        "no NAK for a foreign address\n{}",
        c2.describe()
    );
    assert_in_pool(p, 100, 199, &ip2);

    // another believes it holds g1's address
    let g3 = lab.add_dhcp_guest("g3", "vg3", "gnbr1", &mac(47, 3));
    let c3 = Dhclient::start(
        &lab.world,
        &g3,
        &DhclientOpts {
            hostname: None,
            lease_file: Some(dhclient_lease(&ip1, &format!("{p}.1"))),
        },
    );
    let ip3 = c3
        .wait_bound(Duration::from_secs(40))
        .var("new_ip_address")
        .to_owned();
    assert!(
        c3.log().contains("DHCPNAK"),
        "no NAK for another's address\n{}",
        c3.describe()
    );
    assert_ne!(ip3, ip1);
    assert_ne!(ip3, ip2);
    assert_eq!(gn.lease_of(&net, &m1).map(|l| l.ip), Some(ip1));
}

#[test]
fn a_declined_address_is_not_offered_again() {
    root_or_skip!();
    let mut lab = lab();
    let gn = lab.gn();
    let p = "10.77.48";
    // a pool of one address, which a squatter already uses
    let net = gn.define(&network(
        "dhcp9",
        "nat",
        "gnbr1",
        p,
        &pool(p, 100, 100, "2m"),
        &[],
        "",
    ));
    gn.start(&net);
    lab.add_guest("squat", "vsq", "gnbr1", &format!("{p}.100/24"), None);
    let m = mac(48, 1);
    let g = lab.add_dhcp_guest("g1", "vg1", "gnbr1", &m);
    // udhcpc -a checks the address it got with ARP and DECLINEs it
    let mut c = Udhcpc::start(
        &lab.world,
        &g,
        &UdhcpcOpts {
            arp_check: true,
            ..no_lease_opts()
        },
    );
    let exit = c.wait_exit(Duration::from_secs(60));
    let declines = c.log().matches("declining").count();
    // 0 when the server itself found the address taken and never offered it
    eprintln!("udhcpc -a sent {declines} DECLINE(s):\n{}", c.log());
    assert!(
        declines <= 1,
        "the declined address was offered again ({declines} DECLINEs)\n{}",
        c.describe()
    );
    assert_eq!(exit, Some(Some(1)), "{}", c.describe());
    assert!(lab.service.is_running());
    assert_eq!(
        gn.lease_of(&net, &m),
        None,
        "a declined address is still leased"
    );
    // nor to anyone else
    let g2 = lab.add_dhcp_guest("g2", "vg2", "gnbr1", &mac(48, 2));
    let mut c2 = Udhcpc::start(&lab.world, &g2, &no_lease_opts());
    assert_no_lease(&mut c2);
}

#[test]
fn inform_gets_the_options_and_no_lease() {
    root_or_skip!();
    let lab = lab();
    let gn = lab.gn();
    let p = "10.77.49";
    let net = gn.define(&network(
        "dhcp10",
        "nat",
        "gnbr1",
        p,
        &pool(p, 100, 199, "2m"),
        &[],
        "",
    ));
    gn.start(&net);
    let g = lab.add_guest("g1", "vg1", "gnbr1", &format!("{p}.20/24"), None);
    let m = mac(49, 0x20);
    let ack = dhcp_probe::inform(
        &lab.world,
        &g,
        &format!("{p}.1"),
        &format!("{p}.20"),
        &m,
        5.0,
    );
    assert_eq!(ack.kind, "ack", "no ACK to an INFORM: {:?}", ack.json);
    assert_eq!(ack.yiaddr, "0.0.0.0", "an ACK to an INFORM assigns nothing");
    assert_eq!(ack.option_ip(1).as_deref(), Some("255.255.255.0"));
    assert_eq!(ack.option_ip(3).as_deref(), Some("10.77.49.1"));
    assert_eq!(ack.option_ip(6).as_deref(), Some("10.77.49.1"));
    assert_eq!(ack.option_text(15).as_deref(), Some(DOMAIN));
    assert!(
        !ack.options.contains_key(&51),
        "RFC 2131 4.3.5: no lease time in the ACK to an INFORM: {:?}",
        ack.json
    );
    assert_eq!(gn.lease_of(&net, &m), None);
    assert!(gn.list_leases(&net).is_empty());
}

#[test]
fn relayed_requests_are_answered_to_the_relay() {
    root_or_skip!();
    let lab = lab();
    let gn = lab.gn();
    let p = "10.77.50";
    let net = gn.define(&network(
        "dhcp11",
        "nat",
        "gnbr1",
        p,
        &pool(p, 100, 199, "2m"),
        &[],
        "",
    ));
    gn.start(&net);
    let mon = Monitor::start(lab.bus.address());
    let r = lab.add_guest("relay", "vr", "gnbr1", &format!("{p}.2/24"), None);
    let m = mac(50, 0x77);
    let replies = dhcp_probe::relay(
        &lab.world,
        &r,
        &format!("{p}.1"),
        &format!("{p}.2"),
        &m,
        5.0,
    );
    assert!(
        !replies.is_empty() && replies[0].kind == "offer",
        "no OFFER to the relay: {replies:?}"
    );
    let offer = &replies[0];
    assert_eq!(offer.giaddr, format!("{p}.2"));
    assert_eq!(
        offer.from,
        format!("{p}.1:67"),
        "the answer comes from the server port"
    );
    assert_in_pool(p, 100, 199, &offer.yiaddr);
    assert_eq!(replies.len(), 2, "{replies:?}");
    let ack = &replies[1];
    assert_eq!(ack.kind, "ack", "{:?}", ack.json);
    assert_eq!(ack.yiaddr, offer.yiaddr);
    assert_eq!(ack.option_u32(51), Some(120));
    assert_eq!(ack.option_ip(3).as_deref(), Some("10.77.50.1"));
    let l = gn
        .lease_of(&net, &m)
        .expect("the relayed lease is not listed");
    assert_eq!(l.ip, offer.yiaddr);
    mon.expect_lease_signal("LeaseAdded", &m, SIGNAL_WAIT);
}

#[test]
fn an_isolated_network_offers_no_router() {
    root_or_skip!();
    let lab = lab();
    let gn = lab.gn();
    let p = "10.77.51";
    let net = gn.define(&network(
        "dhcp12",
        "isolated",
        "gnbr1",
        p,
        &pool(p, 100, 199, "2m"),
        &[],
        "",
    ));
    gn.start(&net);
    let m = mac(51, 1);
    let g = lab.add_dhcp_guest("g1", "vg1", "gnbr1", &m);
    let c = Udhcpc::start(&lab.world, &g, &UdhcpcOpts::named("iso"));
    let bound = c.wait_bound(LEASE_TIMEOUT);
    assert_in_pool(p, 100, 199, bound.var("ip"));
    assert_eq!(
        bound.get("router"),
        None,
        "an isolated network has no router: {bound:?}"
    );
    assert_eq!(bound.var("dns"), "10.77.51.1");
    assert_eq!(bound.var("domain"), DOMAIN);
    assert!(lab.world.default_routes(&g).is_empty());
    assert_eq!(
        gn.lease_of(&net, &m).map(|l| l.hostname),
        Some("iso".to_owned())
    );
}

#[test]
fn dhcp_false_serves_no_dhcp() {
    root_or_skip!();
    let lab = lab();
    let gn = lab.gn();
    let p = "10.77.52";
    let net = gn.define(&network("dhcp13", "nat", "gnbr1", p, "false", &[], ""));
    gn.start(&net);
    let g = lab.add_dhcp_guest("g1", "vg1", "gnbr1", &mac(52, 1));
    let mut c = Udhcpc::start(&lab.world, &g, &no_lease_opts());
    assert_no_lease(&mut c);
    assert!(gn.list_leases(&net).is_empty());
}

#[test]
fn a_lease_nobody_renews_expires_with_a_signal() {
    root_or_skip!();
    let lab = lab();
    let gn = lab.gn();
    let p = "10.77.53";
    let net = gn.define(&network(
        "dhcp14",
        "nat",
        "gnbr1",
        p,
        &pool(p, 100, 199, "30s"),
        &[],
        "",
    ));
    gn.start(&net);
    let mon = Monitor::start(lab.bus.address());
    let m = mac(53, 1);
    let g = lab.add_dhcp_guest("g1", "vg1", "gnbr1", &m);
    let mut c = Udhcpc::start(&lab.world, &g, &UdhcpcOpts::named("gone"));
    let ip = c.wait_bound(LEASE_TIMEOUT).var("ip").to_owned();
    c.kill(); // no RELEASE, no renewal
    let lease = gn.lease_of(&net, &m).expect("lease not listed");
    let removed = mon.expect_lease_signal("LeaseRemoved", &m, Duration::from_secs(60));
    assert_eq!(removed.lease().unwrap().ip, ip);
    assert!(
        removed.timestamp_us / 1_000_000 + 1 >= lease.expiry,
        "the lease was removed at {} s, before it expired at {}",
        removed.timestamp_us / 1_000_000,
        lease.expiry
    );
    assert_eq!(
        gn.lease_of(&net, &m),
        None,
        "an expired lease is still listed"
    );
}

/// Two guests hold leases; `restart` (graceful, or a crash and a start)
/// must lose none: ListLeases lists them, renewals keep the addresses,
/// their names still resolve, a new guest gets another address.
fn leases_survive(restart: impl FnOnce(&mut Service)) {
    let mut lab = lab();
    let gn = lab.gn();
    let p = "10.77.54";
    let net = gn.define(&network(
        "dhcp15",
        "nat",
        "gnbr1",
        p,
        &pool(p, 100, 199, "2m"),
        &[],
        "",
    ));
    gn.start(&net);
    let mon = Monitor::start(lab.bus.address());
    let (m1, m2) = (mac(54, 1), mac(54, 2));
    let g1 = lab.add_dhcp_guest("g1", "vg1", "gnbr1", &m1);
    let g2 = lab.add_dhcp_guest("g2", "vg2", "gnbr1", &m2);
    let c1 = Udhcpc::start(&lab.world, &g1, &UdhcpcOpts::named("keep1"));
    let c2 = Udhcpc::start(&lab.world, &g2, &UdhcpcOpts::named("keep2"));
    let ip1 = c1.wait_bound(LEASE_TIMEOUT).var("ip").to_owned();
    let ip2 = c2.wait_bound(LEASE_TIMEOUT).var("ip").to_owned();
    let before = gn.list_leases(&net);
    assert_eq!(before.len(), 2, "{before:?}");

    restart(&mut lab.service);

    let gn = lab.gn();
    let net = gn.get_network("dhcp15");
    assert!(gn.active(&net));
    let after = gn.list_leases(&net);
    assert_eq!(
        lease_keys(&after),
        lease_keys(&before),
        "leases lost or changed"
    );
    for l in &after {
        let b = before.iter().find(|b| b.mac == l.mac).unwrap();
        assert!(
            l.expiry.abs_diff(b.expiry) <= 1,
            "{}: expiry {} before, {} after the restart",
            l.mac,
            b.expiry,
            l.expiry
        );
    }
    let t = Instant::now();
    assert_eq!(gn.wait_for_lease(&net, &m1, 20_000).ip, ip1);
    assert!(t.elapsed() < Duration::from_secs(3));

    for (c, ip, m) in [(&c1, &ip1, &m1), (&c2, &ip2, &m2)] {
        let from = c.events().len();
        let r = c.renew(Duration::from_secs(10));
        assert_eq!(
            r.var("ip"),
            ip.as_str(),
            "renewing after the restart moved the guest"
        );
        assert!(
            c.events()[from..]
                .iter()
                .all(|e| e.event != "nak" && e.event != "deconfig"),
            "the renewal after the restart was refused\n{}",
            c.describe()
        );
        mon.expect_lease_signal("LeaseRenewed", m, SIGNAL_WAIT);
    }
    // names still resolve
    assert_eq!(
        dig::a(
            &lab.world,
            &g2,
            &format!("{p}.1"),
            &format!("keep1.{DOMAIN}")
        ),
        [ip1.as_str()]
    );
    // and a new guest gets an address nobody holds
    let g3 = lab.add_dhcp_guest("g3", "vg3", "gnbr1", &mac(54, 3));
    let c3 = Udhcpc::start(&lab.world, &g3, &UdhcpcOpts::default());
    let ip3 = c3.wait_bound(LEASE_TIMEOUT).var("ip").to_owned();
    assert!(ip3 != ip1 && ip3 != ip2, "{ip3} was already leased");
}

#[test]
fn leases_survive_a_restart_of_the_service() {
    root_or_skip!();
    leases_survive(|svc| svc.restart());
}

#[test]
fn leases_survive_a_crash_of_the_service() {
    root_or_skip!();
    leases_survive(|svc| {
        svc.sigkill();
        svc.start_again();
    });
}

/// Counts, on a bystander guest's eth0, the DHCP replies (UDP to port 68)
/// that reach it, for `secs` seconds; prints the count and exits.
const REPLY_COUNTER: &str = r#"
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind(('eth0', 0))
s.settimeout(0.2)
print('ready', flush=True)
end, n = time.time() + float(sys.argv[1]), 0
while time.time() < end:
    try:
        f = s.recv(2048)
    except socket.timeout:
        continue
    ihl = (f[14] & 15) * 4
    if f[23] == 17 and struct.unpack('!H', f[14 + ihl + 2:14 + ihl + 4])[0] == 68:
        n += 1
print(n, flush=True)
"#;

#[test]
fn a_guests_offer_and_ack_reach_that_guest_alone_unless_it_asks_for_broadcast() {
    root_or_skip!();
    let lab = lab();
    let gn = lab.gn();
    let p = "10.77.52";
    let net = gn.define(&network(
        "dhcpuni",
        "isolated",
        "gnbr1",
        p,
        &pool(p, 100, 199, "2m"),
        &[],
        "",
    ));
    gn.start(&net);
    let bystander = lab.add_dhcp_guest("by", "vby", "gnbr1", &mac(52, 1));
    let quiet = lab.add_dhcp_guest("quiet", "vquiet", "gnbr1", &mac(52, 2));
    let loud = lab.add_dhcp_guest("loud", "vloud", "gnbr1", &mac(52, 3));
    let count_replies_while = |run: &dyn Fn()| -> u32 {
        use std::io::BufRead;
        let (pid, out) = lab
            .world
            .spawn_piped(&bystander, &["python3", "-c", REPLY_COUNTER, "6"]);
        let mut lines = std::io::BufReader::new(out).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        run();
        let n = lines.next().unwrap().unwrap().parse().expect("a count");
        lab.world.wait(pid);
        n
    };

    // udhcpc asks for unicast replies (no -B): only its own port sees them.
    let seen = count_replies_while(&|| {
        let c = Udhcpc::start(&lab.world, &quiet, &UdhcpcOpts::named("quiet"));
        assert_in_pool(p, 100, 199, c.wait_bound(LEASE_TIMEOUT).var("ip"));
    });
    assert_eq!(seen, 0, "the bystander heard another guest's OFFER or ACK");

    // A client that asks for broadcast (-B) gets it, and the bystander hears
    // it: the counter above would have seen replies had there been any.
    let seen = count_replies_while(&|| {
        let opts = UdhcpcOpts {
            extra: vec!["-B".into()],
            ..UdhcpcOpts::named("loud")
        };
        let c = Udhcpc::start(&lab.world, &loud, &opts);
        assert_in_pool(p, 100, 199, c.wait_bound(LEASE_TIMEOUT).var("ip"));
    });
    assert!(
        seen >= 2,
        "a broadcast OFFER and ACK reach every guest; heard {seen}"
    );
    assert_eq!(gn.list_leases(&net).len(), 2);
}
