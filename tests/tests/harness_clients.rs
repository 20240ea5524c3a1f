//! The harness's DHCP and DNS clients work, checked against dnsmasq as the
//! server (no guestnetd needed): udhcpc and dhclient get, renew and release
//! leases and record what was offered, with scripts that never touch the
//! machine's files; the DHCP probe's INFORM and relay exchanges; dig and the
//! upstream dnsmasq; the signal monitor.

use std::path::Path;
use std::time::Duration;

use guestnet_tests::dhcp_client::{
    add_dhcp_guest, dhclient_lease, mac, Dhclient, DhclientOpts, Udhcpc, UdhcpcOpts, LEASE_TIMEOUT,
};
use guestnet_tests::monitor::Monitor;
use guestnet_tests::upstream::Upstream;
use guestnet_tests::{dhcp_probe, dig, root_or_skip, Bus, World};

/// What the machine's resolver files look like, to prove no client touched them.
fn etc_state() -> Vec<(String, Option<Vec<u8>>, Option<std::time::SystemTime>)> {
    ["/etc/resolv.conf", "/etc/hosts"]
        .iter()
        .map(|p| {
            let path = Path::new(p);
            (
                p.to_string(),
                std::fs::read(path).ok(),
                std::fs::metadata(path).and_then(|m| m.modified()).ok(),
            )
        })
        .collect()
}

/// A namespace `srv` with bridge `br0` (10.99.0.1/24) and dnsmasq serving
/// DHCP on it (pool .100-.199, 2 minutes, domain guest.lan, no DNS).
fn dhcp_server(world: &World, dir: &Path) -> String {
    let srv = world.add_ns("srv");
    world.ip(&srv, "link add br0 type bridge");
    world.ip(&srv, "addr add 10.99.0.1/24 dev br0");
    world.ip(&srv, "link set br0 up");
    let pid = format!("--pid-file={}", dir.join("dnsmasq.pid").display());
    let leases = format!("--dhcp-leasefile={}", dir.join("dnsmasq.leases").display());
    world.spawn(
        &srv,
        &[
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            &pid,
            &leases,
            "--no-resolv",
            "--no-hosts",
            "--port=0",
            "--interface=br0",
            "--bind-interfaces",
            "--dhcp-range=10.99.0.100,10.99.0.199,2m",
            "--dhcp-authoritative",
            "--dhcp-option=option:dns-server,10.99.0.1",
            "--no-ping",
            "--domain=guest.lan",
            "--user=root",
            "--group=root",
        ],
    );
    srv
}

#[test]
fn udhcpc_gets_renews_and_releases_a_lease_and_touches_no_machine_file() {
    root_or_skip!();
    let before = etc_state();
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let srv = dhcp_server(&world, dir.path());
    let m = mac(0x99, 1);
    let g = add_dhcp_guest(&world, &srv, "g1", "vg1", "br0", &m);
    let c = Udhcpc::start(&world, &g, &UdhcpcOpts::named("g1"));
    let bound = c.wait_bound(LEASE_TIMEOUT);
    let ip = bound.var("ip").to_owned();
    assert!(ip.starts_with("10.99.0."), "{bound:?}");
    assert_eq!(bound.var("router"), "10.99.0.1");
    assert_eq!(bound.var("dns"), "10.99.0.1");
    assert_eq!(bound.var("serverid"), "10.99.0.1");
    assert_eq!(bound.var("domain"), "guest.lan");
    assert_eq!(bound.var("lease"), "120");
    assert_eq!(bound.var("subnet"), "255.255.255.0");
    assert!(bound.time_ns > 0);
    assert_eq!(world.ipv4_addrs(&g, "eth0"), [format!("{ip}/24")]);
    assert_eq!(
        world.default_routes(&g),
        [("eth0".to_owned(), Some("10.99.0.1".to_owned()))]
    );
    let renewed = c.renew(Duration::from_secs(10));
    assert_eq!(renewed.var("ip"), ip);
    c.release();
    assert!(world.ipv4_addrs(&g, "eth0").is_empty());
    let leases = std::fs::read_to_string(dir.path().join("dnsmasq.leases")).unwrap();
    assert!(
        !leases.contains(&ip),
        "dnsmasq still has the lease: {leases}"
    );

    // -n: exits when no lease comes (here: no server on the bridge)
    let lonely = world.add_ns("lonely");
    let void = world.add_ns("void");
    world.veth(&lonely, "eth0", &void, "p0");
    let mut c = Udhcpc::start(
        &world,
        &lonely,
        &UdhcpcOpts {
            discovers: 2,
            exit_without_lease: true,
            ..UdhcpcOpts::default()
        },
    );
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(Some(1)));
    assert!(c.events().iter().all(|e| e.event != "bound"));
    drop(world);
    assert_eq!(etc_state(), before, "a DHCP client changed /etc");
}

#[test]
fn dhclient_gets_a_lease_is_naked_for_a_foreign_one_and_releases() {
    root_or_skip!();
    let before = etc_state();
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let srv = dhcp_server(&world, dir.path());
    let g = add_dhcp_guest(&world, &srv, "g1", "vg1", "br0", &mac(0x99, 2));
    // It first asks for a lease of another network; the server says no.
    let mut c = Dhclient::start(
        &world,
        &g,
        &DhclientOpts {
            hostname: Some("dh1".to_owned()),
            lease_file: Some(dhclient_lease("10.98.0.50", "10.98.0.1")),
        },
    );
    let bound = c.wait_bound(Duration::from_secs(30));
    let ip = bound.var("new_ip_address").to_owned();
    assert!(ip.starts_with("10.99.0."), "{bound:?}");
    assert!(c.log().contains("DHCPNAK"), "{}", c.log());
    assert_eq!(bound.var("new_routers"), "10.99.0.1");
    assert_eq!(bound.var("new_domain_name_servers"), "10.99.0.1");
    assert_eq!(bound.var("new_dhcp_lease_time"), "120");
    assert_eq!(world.ipv4_addrs(&g, "eth0"), [format!("{ip}/24")]);
    c.release();
    assert!(c.events().iter().any(|e| e.event == "RELEASE"));
    assert!(world.ipv4_addrs(&g, "eth0").is_empty());
    drop(c);
    drop(world);
    assert_eq!(etc_state(), before, "a DHCP client changed /etc");
}

#[test]
fn the_probe_informs_and_relays() {
    root_or_skip!();
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let srv = dhcp_server(&world, dir.path());
    let r = world.add_ns("relay");
    world.veth(&srv, "vr", &r, "eth0");
    world.ip(&srv, "link set vr master br0 up");
    world.ip(&r, "addr add 10.99.0.2/24 dev eth0");

    let ack = dhcp_probe::inform(&world, &r, "10.99.0.1", "10.99.0.2", &mac(0x99, 3), 5.0);
    assert_eq!(ack.kind, "ack", "{:?}", ack.json);
    assert_eq!(ack.option_ip(6).as_deref(), Some("10.99.0.1"));
    assert_eq!(ack.option_text(15).as_deref(), Some("guest.lan"));

    let replies = dhcp_probe::relay(&world, &r, "10.99.0.1", "10.99.0.2", &mac(0x99, 4), 5.0);
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert_eq!(replies[0].kind, "offer");
    assert_eq!(replies[0].giaddr, "10.99.0.2");
    assert_eq!(replies[1].kind, "ack");
    assert_eq!(replies[1].yiaddr, replies[0].yiaddr);
    assert_eq!(replies[1].option_u32(51), Some(120));
}

#[test]
fn dig_asks_the_upstream_dnsmasq() {
    root_or_skip!();
    let world = World::new();
    let a = world.add_ns("a");
    let b = world.add_ns("b");
    world.veth(&a, "va", &b, "vb");
    world.ip(&a, "addr add 10.250.1.1/24 dev va");
    world.ip(&b, "addr add 10.250.1.2/24 dev vb");
    let up = Upstream::start(
        &world,
        &b,
        "10.250.1.2",
        &[("www.outside.test", "10.250.1.80")],
    );
    assert_eq!(
        dig::a(&world, &a, "10.250.1.2", "www.outside.test"),
        ["10.250.1.80"]
    );
    assert!(up.saw_query("www.outside.test"), "{}", up.log());
    assert_eq!(
        dig::ptr(&world, &a, "10.250.1.2", "10.250.1.80"),
        ["www.outside.test."]
    );
    let tcp = dig::query(&world, &a, "10.250.1.2", &["+tcp", "www.outside.test", "A"]);
    assert_eq!(tcp.data("A"), ["10.250.1.80"], "{tcp}");
    // nothing listens on the other address: no reply at all
    let none = dig::query(&world, &a, "10.250.1.1", &["www.outside.test", "A"]);
    assert_eq!(none.status, None, "{none}");
}

#[test]
fn the_monitor_sees_signals() {
    root_or_skip!();
    let bus = Bus::start();
    let mon = Monitor::start(bus.address());
    let emit = |member: &str, args: &[&str]| {
        let mut full = vec![
            "gdbus",
            "emit",
            "--address",
            bus.address(),
            "--object-path",
            "/org/guestnet1/network/n1",
            "--signal",
        ];
        let sig = format!("org.guestnet1.Network.{member}");
        full.push(&sig);
        full.extend_from_slice(args);
        guestnet_tests::cmd::run_ok(&full);
    };
    emit(
        "LeaseAdded",
        &["('52:54:00:77:99:05', '10.99.0.100', 'g1', '01:52:54:00:77:99:05', uint64 1700000000)"],
    );
    emit(
        "LeaseRemoved",
        &[
            "'52:54:00:77:99:05'",
            "'10.99.0.100'",
            "''",
            "''",
            "uint64 1700000001",
        ],
    );
    let added = mon.expect_lease_signal("LeaseAdded", "52:54:00:77:99:05", Duration::from_secs(5));
    let lease = added.lease().unwrap();
    assert_eq!(lease.ip, "10.99.0.100");
    assert_eq!(lease.hostname, "g1");
    assert_eq!(lease.client_id, "01:52:54:00:77:99:05");
    assert_eq!(lease.expiry, 1_700_000_000);
    let removed =
        mon.expect_lease_signal("LeaseRemoved", "52:54:00:77:99:05", Duration::from_secs(5));
    assert_eq!(removed.lease().unwrap().expiry, 1_700_000_001);
    assert!(mon
        .wait_for("LeaseRenewed", Duration::from_millis(200), |_| true)
        .is_none());
}
