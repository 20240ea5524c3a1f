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
use guestnet_tests::guest::{attach, list, netns_path, tap_opts, try_detach, veth_opts, GuestPort};
use guestnet_tests::guestnet::{expect_error, Guestnet};
use guestnet_tests::lab::{LAN_ADDR, UPLINK};
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
    // Frames of the new MTU, not fragmented, cross the port both ways.
    assert!(
        w.exec(
            &c1,
            &[
                "ping",
                "-n",
                "-q",
                "-c1",
                "-W1",
                "-M",
                "do",
                "-s",
                "1372",
                &format!("{p}.1")
            ]
        )
        .status
        .success(),
        "a 1400-byte ping does not cross at MTU 1400"
    );
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

/// A bridged network that enslaved the host's NIC takes an Update like any
/// other. Caught: the re-plan saw the NIC already enslaved to the network's
/// own bridge and refused every Update of such a network as a Conflict.
#[test]
fn a_bridged_network_that_enslaved_the_nic_takes_an_update() {
    root_or_skip!();
    let lab = Lab::new();
    let (w, gn, host) = (&lab.world, lab.gn(), lab.host.as_str());
    let text = |domain: &str| {
        format!(
            "name = \"lanbr\"\nmode = \"bridged\"\nbridge = \"gnbr48\"\n\
             [bridged]\ninterface = \"{UPLINK}\"\n[dns]\ndomain = \"{domain}\"\n"
        )
    };
    let net = gn.define(&text("one.lan"));
    gn.start(&net);
    let ns = w.add_ns("c1");
    let port = attach(&gn, &net, "c1", &veth_opts(&netns_path(&ns), None, None));
    gn.update(&net, &text("two.lan"));
    assert_eq!(gn.prop_str(&net, "Domain"), "two.lan");
    assert_eq!(w.master_of(host, UPLINK).as_deref(), Some("gnbr48"));
    assert_eq!(w.master_of(host, &port).as_deref(), Some("gnbr48"));
    probe::assert_ping(w, host, LAN_ADDR);
}

/// A network on the admin's own bridge that moves to a bridge of
/// guestnet's takes only guestnet's ports along: the host's NIC and the
/// ports other tools plugged in stay on the admin's bridge. Caught: every
/// port of the existing bridge was moved, the host's NIC with them.
#[test]
fn moving_off_an_existing_bridge_leaves_the_hosts_nic_and_foreign_ports_there() {
    root_or_skip!();
    let lab = Lab::build(|w, host, _lan| {
        w.ip(host, "link add br0 type bridge");
        w.ip(host, &format!("link set {UPLINK} master br0"));
        w.ip(host, "link set br0 up");
    });
    let (w, gn, host) = (&lab.world, lab.gn(), lab.host.as_str());
    let net = gn.define("name = \"onbr0\"\nmode = \"bridged\"\nbridge = \"br0\"\n");
    gn.start(&net);
    let ns = w.add_ns("c1");
    let port = attach(&gn, &net, "c1", &veth_opts(&netns_path(&ns), None, None));
    let _foreign = lab.add_guest("g2", "hand0", "br0", "10.200.0.70/24", None);

    gn.update(
        &net,
        "name = \"onbr0\"\nmode = \"isolated\"\nbridge = \"gnbr49\"\n[ipv4]\naddress = \"10.77.49.1/24\"\n",
    );
    assert_eq!(
        w.master_of(host, &port).as_deref(),
        Some("gnbr49"),
        "our port moves"
    );
    assert_eq!(
        w.master_of(host, UPLINK).as_deref(),
        Some("br0"),
        "the host's NIC stays"
    );
    assert_eq!(
        w.master_of(host, "hand0").as_deref(),
        Some("br0"),
        "a foreign port stays"
    );
    // And DetachGuest never releases the admin's NIC from its bridge.
    gn.update(
        &net,
        "name = \"onbr0\"\nmode = \"bridged\"\nbridge = \"br0\"\n",
    );
    let e = try_detach(&gn, &net, UPLINK).expect_err("DetachGuest of the admin's NIC");
    assert_eq!(e.name, "org.freedesktop.DBus.Error.InvalidArgs", "{e}");
    assert_eq!(w.master_of(host, UPLINK).as_deref(), Some("br0"));
}

/// Two VM managers attaching taps on two networks at once never share a
/// name, let alone a tap. Caught: with one lock per network, both could
/// pick the same free name, and TUNSETIFF without IFF_TUN_EXCL attached
/// the second to the first one's tap.
#[test]
fn attaching_on_two_networks_at_once_never_shares_a_port() {
    root_or_skip!();
    let lab = Lab::new();
    let (w, gn, host) = (&lab.world, lab.gn(), lab.host.clone());
    let a = gn.define(&definition("ta", "gnbr58", "10.77.58", 199, "", "", ""));
    let b = gn.define(&definition("tb", "gnbr59", "10.77.59", 199, "", "", ""));
    gn.start(&a);
    gn.start(&b);
    let attach_many = |net: String, vm: &'static str| {
        let gn = gn.clone();
        std::thread::spawn(move || {
            (0..8)
                .map(|i| attach(&gn, &net, &format!("{vm}{i}"), &tap_opts(None, None)))
                .collect::<Vec<String>>()
        })
    };
    let (on_a, on_b) = (attach_many(a.clone(), "va"), attach_many(b.clone(), "vb"));
    let (on_a, on_b) = (on_a.join().unwrap(), on_b.join().unwrap());
    let all: std::collections::BTreeSet<&String> = on_a.iter().chain(&on_b).collect();
    assert_eq!(all.len(), 16, "names handed out twice: {on_a:?} {on_b:?}");
    for (ports, bridge) in [(&on_a, "gnbr58"), (&on_b, "gnbr59")] {
        for p in ports {
            assert_eq!(w.master_of(&host, p).as_deref(), Some(bridge), "{p}");
        }
    }
}
