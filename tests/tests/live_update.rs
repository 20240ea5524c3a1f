//! Update on a running network, as Cockpit or virt-manager make it while
//! guests run: the container keeps its `eth0`, ListGuests keeps it, and its
//! packets keep flowing. What changes in place (DHCP range, static hosts,
//! DNS forwarders, MTU, even the subnet) loses no ping; a new bridge gets
//! every port moved over; a refused Update leaves the old network running.
//!
//! Every test here caught the Update of before (stop, then start on the
//! new definition): it deleted every guest port, ours and foreign ones,
//! and never brought them back.

use std::time::{Duration, Instant};

use guestnet_tests::dhcp_client::{Udhcpc, UdhcpcOpts, LEASE_TIMEOUT};
use guestnet_tests::guest::{attach, list, netns_path, veth_opts, GuestPort};
use guestnet_tests::guestnet::{expect_error, Guestnet};
use guestnet_tests::lab::LAN_ADDR;
use guestnet_tests::monitor::Monitor;
use guestnet_tests::probe::{self, LongPing};
use guestnet_tests::{dig, root_or_skip, Lab};

/// A NAT network's definition; `top` goes before the first table (an
/// `mtu`, a `bridge`), `ipv4` into `[ipv4]` after the address and DHCP
/// range (static `hosts`), `dns` into `[dns]`.
fn definition(
    name: &str,
    bridge: &str,
    p: &str,
    end: u8,
    top: &str,
    ipv4: &str,
    dns: &str,
) -> String {
    format!(
        "name = \"{name}\"\nmode = \"nat\"\nbridge = \"{bridge}\"\n{top}\n\
         [ipv4]\naddress = \"{p}.1/24\"\n\
         dhcp = {{ start = \"{p}.100\", end = \"{p}.{end}\", lease_time = \"1h\" }}\n{ipv4}\n\
         [dns]\ndomain = \"guest.lan\"\n{dns}\n"
    )
}

/// A container on `net` with its `eth0` from AttachGuest and a lease from
/// udhcpc; returns (namespace, port, the client, its address).
fn container(
    lab: &Lab,
    gn: &Guestnet,
    net: &str,
    role: &str,
    mac: &str,
) -> (String, String, Udhcpc, String) {
    let w = &lab.world;
    let ns = w.add_ns(role);
    let port = attach(
        gn,
        net,
        role,
        &veth_opts(&netns_path(&ns), Some("eth0"), Some(mac)),
    );
    w.ip(&ns, "link set eth0 up");
    let client = Udhcpc::start(w, &ns, &UdhcpcOpts::named(role));
    let ip = client.wait_bound(LEASE_TIMEOUT).var("ip").to_owned();
    (ns, port, client, ip)
}

/// The GuestDetached signals seen for `net`.
fn detached(mon: &Monitor, net: &str) -> Vec<String> {
    mon.signals()
        .iter()
        .filter(|s| s.path == net && s.member == "GuestDetached")
        .map(|s| format!("{:?}", s.args))
        .collect()
}

/// How long until `addr` answers a ping from `ns` (tries every 50 ms, up
/// to `limit`); None if it never does.
fn back_within(lab: &Lab, ns: &str, addr: &str, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        let ok = lab
            .world
            .exec(ns, &["ping", "-n", "-q", "-c1", "-W", "0.2", addr])
            .status
            .success();
        if ok {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn a_dhcp_and_dns_update_loses_no_ping_and_serves_the_new_names_at_once() {
    root_or_skip!();
    let lab = Lab::with_resolv_conf(|_, _, _| {});
    let (w, gn) = (&lab.world, lab.gn());
    let p = "10.77.41";
    let net = gn.define(&definition("live", "gnbr41", p, 199, "", "", ""));
    gn.start(&net);
    let mon = Monitor::start(lab.bus.address());
    let (c1, port, _client, ip) = container(&lab, &gn, &net, "c1", "52:54:00:41:00:01");

    // A static host, the range's end moved, a forwarder named, all at once,
    // while the container pings the host every 50 ms.
    let pinger = LongPing::start(w, &c1, &format!("{p}.1"), 60);
    std::thread::sleep(Duration::from_millis(700));
    gn.update(
        &net,
        &definition(
            "live",
            "gnbr41",
            p,
            150,
            "",
            &format!("hosts = [{{ mac = \"52:54:00:41:00:99\", ip = \"{p}.5\", name = \"web\" }}]"),
            &format!("forwarders = [\"{LAN_ADDR}\"]"),
        ),
    );
    // The new name resolves at once, from the guest, at the same server.
    assert_eq!(
        dig::a(w, &c1, &format!("{p}.1"), "web.guest.lan"),
        [format!("{p}.5")],
        "the static host added by the Update"
    );
    let ping = pinger.finish(w);
    assert_eq!(
        (ping.sent, ping.received),
        (60, 60),
        "pings lost across a DHCP/DNS-only Update:\n{}",
        ping.output
    );
    assert_eq!(
        list(&gn, &net),
        [GuestPort::new(&port, "52:54:00:41:00:01", "c1")],
        "ListGuests after the Update"
    );
    assert_eq!(w.master_of(&lab.host, &port).as_deref(), Some("gnbr41"));
    assert!(
        w.links(&c1).contains("eth0"),
        "the container's eth0 is gone"
    );
    // The lease survives, and the pool serves the new range.
    assert!(
        gn.list_leases(&net).iter().any(|l| l.ip == ip),
        "the guest's lease {ip} is gone: {:?}",
        gn.list_leases(&net)
    );
    assert!(gn.get_config(&net).contains(&format!("{p}.150")));
    assert!(
        detached(&mon, &net).is_empty(),
        "{:?}",
        detached(&mon, &net)
    );
}

#[test]
fn an_mtu_update_keeps_the_port_and_the_guest_is_back_within_a_second() {
    root_or_skip!();
    let lab = Lab::with_resolv_conf(|_, _, _| {});
    let (w, gn) = (&lab.world, lab.gn());
    let p = "10.77.42";
    let net = gn.define(&definition("mtu", "gnbr42", p, 199, "", "", ""));
    gn.start(&net);
    let mon = Monitor::start(lab.bus.address());
    let (c1, port, _client, _) = container(&lab, &gn, &net, "c1", "52:54:00:42:00:01");

    gn.update(
        &net,
        &definition("mtu", "gnbr42", p, 199, "mtu = 1400", "", ""),
    );
    let mtu =
        |ns: &str, dev: &str| w.ip_json(ns, &format!("link show dev {dev}"))[0]["mtu"].clone();
    assert_eq!(mtu(&lab.host, "gnbr42"), 1400, "the bridge's MTU");
    assert_eq!(mtu(&lab.host, &port), 1400, "the port's MTU");
    assert_eq!(w.master_of(&lab.host, &port).as_deref(), Some("gnbr42"));
    let back = back_within(&lab, &c1, &format!("{p}.1"), Duration::from_secs(1));
    assert!(
        back.is_some(),
        "the guest did not reach the host within 1 s"
    );
    eprintln!("guest back after the MTU update within {back:?}");
    assert_eq!(list(&gn, &net).len(), 1);
    assert!(
        detached(&mon, &net).is_empty(),
        "{:?}",
        detached(&mon, &net)
    );
}

#[test]
fn a_subnet_change_keeps_the_port_and_the_guest_takes_a_lease_in_the_new_one() {
    root_or_skip!();
    let lab = Lab::with_resolv_conf(|_, _, _| {});
    let (w, gn) = (&lab.world, lab.gn());
    let net = gn.define(&definition("renum", "gnbr43", "10.77.43", 199, "", "", ""));
    gn.start(&net);
    let mon = Monitor::start(lab.bus.address());
    let (c1, port, client, _) = container(&lab, &gn, &net, "c1", "52:54:00:43:00:01");

    gn.update(
        &net,
        &definition("renum", "gnbr43", "10.77.44", 199, "", "", ""),
    );
    assert_eq!(
        gn.prop_strings(&net, "Addresses"),
        ["10.77.44.1/24"],
        "the network's address"
    );
    assert_eq!(w.ipv4_addrs(&lab.host, "gnbr43"), ["10.77.44.1/24"]);
    assert_eq!(
        w.master_of(&lab.host, &port).as_deref(),
        Some("gnbr43"),
        "the guest's port is still on the network's bridge"
    );
    assert!(w.links(&c1).contains("eth0"));
    // The guest learns the new subnet by asking again, as after a NAK.
    drop(client);
    let again = Udhcpc::start(w, &c1, &UdhcpcOpts::named("c1"));
    let ip = again.wait_bound(LEASE_TIMEOUT).var("ip").to_owned();
    assert!(
        ip.starts_with("10.77.44."),
        "leased {ip} after the subnet change"
    );
    probe::assert_ping(w, &c1, "10.77.44.1");
    assert!(
        detached(&mon, &net).is_empty(),
        "{:?}",
        detached(&mon, &net)
    );
}

#[test]
fn a_new_bridge_gets_every_port_moved_over_ours_and_foreign_ones() {
    root_or_skip!();
    let lab = Lab::with_resolv_conf(|_, _, _| {});
    let (w, gn, host) = (&lab.world, lab.gn(), lab.host.as_str());
    let p = "10.77.45";
    let net = gn.define(&definition("moving", "gnbr45", p, 199, "", "", ""));
    gn.start(&net);
    let mon = Monitor::start(lab.bus.address());
    let (c1, port, _client, _) = container(&lab, &gn, &net, "c1", "52:54:00:45:00:01");
    // A port another tool plugged in by hand.
    let g2 = lab.add_guest("g2", "hand0", "gnbr45", &format!("{p}.20/24"), None);

    gn.update(&net, &definition("moving", "gnbr46", p, 199, "", "", ""));
    assert_eq!(gn.prop_str(&net, "Bridge"), "gnbr46");
    assert!(!w.has_link(host, "gnbr45"), "the old bridge stays");
    assert_eq!(
        w.master_of(host, &port).as_deref(),
        Some("gnbr46"),
        "our port"
    );
    assert_eq!(
        w.master_of(host, "hand0").as_deref(),
        Some("gnbr46"),
        "a foreign port"
    );
    assert!(w.links(&c1).contains("eth0"));
    let back = back_within(&lab, &c1, &format!("{p}.1"), Duration::from_secs(1));
    assert!(
        back.is_some(),
        "the guest did not reach the host within 1 s"
    );
    eprintln!("guest back on the new bridge within {back:?}");
    probe::assert_ping(w, &g2, &format!("{p}.1"));
    let guests = list(&gn, &net);
    assert!(
        guests.iter().any(|g| g.ifname == port && g.guest == "c1"),
        "ListGuests keeps the container: {guests:?}"
    );
    assert!(
        detached(&mon, &net).is_empty(),
        "{:?}",
        detached(&mon, &net)
    );
}

#[test]
fn a_refused_update_leaves_the_network_and_its_guests_as_they_were() {
    root_or_skip!();
    let lab = Lab::with_resolv_conf(|_, _, _| {});
    let (w, gn) = (&lab.world, lab.gn());
    let p = "10.77.47";
    let before = definition("kept", "gnbr47", p, 199, "", "", "");
    let net = gn.define(&before);
    gn.start(&net);
    let (c1, port, _client, _) = container(&lab, &gn, &net, "c1", "52:54:00:47:00:01");
    let pinger = LongPing::start(w, &c1, &format!("{p}.1"), 30);

    // The host's own LAN: refused as a conflict, naming the clash.
    let clash = definition("kept", "gnbr47", "10.200.0", 199, "", "", "");
    let e = expect_error(gn.try_update(&net, &clash), "Conflict");
    assert!(e.contains("10.200.0"), "{e}");
    let ping = pinger.finish(w);
    assert_eq!(
        (ping.sent, ping.received),
        (30, 30),
        "pings lost across a refused Update:\n{}",
        ping.output
    );
    assert_eq!(w.ipv4_addrs(&lab.host, "gnbr47"), [format!("{p}.1/24")]);
    assert_eq!(w.master_of(&lab.host, &port).as_deref(), Some("gnbr47"));
    assert!(gn.get_config(&net).contains(&format!("{p}.1/24")));
}
