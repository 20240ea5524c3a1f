//! nat mode: guests reach the outside through the host's uplink address;
//! nothing outside can open a connection to a guest.

use guestnet_tests::lab::{HOST_UPLINK_ADDR, LAN_ADDR, UPLINK};
use guestnet_tests::{probe, root_or_skip, Lab};

#[test]
fn guest_reaches_lan_masqueraded_and_lan_cannot_reach_guest() {
    root_or_skip!();
    let lab = Lab::new();
    let gn = lab.gn();
    let net = gn.define(&format!(
        r#"
name = "nat1"
mode = "nat"
bridge = "gnbr1"
[ipv4]
address = "10.77.1.1/24"
[nat]
uplink = "{UPLINK}"
"#
    ));
    gn.start(&net);
    assert!(gn.active(&net));
    assert_eq!(
        lab.world.sysctl_get(&lab.host, "net.ipv4.ip_forward"),
        "1",
        "nat turns on forwarding in the host"
    );
    let g1 = lab.add_guest("g1", "vg1", "gnbr1", "10.77.1.10/24", Some("10.77.1.1"));
    probe::assert_ping(&lab.world, &g1, "10.77.1.1");
    probe::assert_ping(&lab.world, &g1, LAN_ADDR);

    // the lan machine sees the host's uplink address, not the guest's
    let peer = probe::tcp_peer(&lab.world, &lab.lan, 7001, &g1, LAN_ADDR);
    assert_eq!(
        peer.as_deref(),
        Some(HOST_UPLINK_ADDR),
        "a guest's connection to the lan must be masqueraded"
    );

    // the lan cannot open a connection to the guest, even with a route to it
    lab.world.ip(
        &lab.lan,
        &format!("route add 10.77.1.0/24 via {HOST_UPLINK_ADDR}"),
    );
    let peer = probe::tcp_peer(&lab.world, &g1, 7002, &lab.lan, "10.77.1.10");
    assert_eq!(peer, None, "the lan opened a connection to a nat guest");

    // and the guest still gets out afterwards
    let peer = probe::tcp_peer(&lab.world, &lab.lan, 7003, &g1, LAN_ADDR);
    assert_eq!(peer.as_deref(), Some(HOST_UPLINK_ADDR));
}

#[test]
fn nat_uplink_defaults_to_the_default_route_interface() {
    root_or_skip!();
    let lab = Lab::new();
    let gn = lab.gn();
    let net = gn.define(
        r#"
name = "nat2"
mode = "nat"
bridge = "gnbr2"
[ipv4]
address = "10.77.2.1/24"
"#,
    );
    gn.start(&net);
    let g1 = lab.add_guest("g1", "vg1", "gnbr2", "10.77.2.10/24", Some("10.77.2.1"));
    probe::assert_ping(&lab.world, &g1, LAN_ADDR);
    let peer = probe::tcp_peer(&lab.world, &lab.lan, 7004, &g1, LAN_ADDR);
    assert_eq!(peer.as_deref(), Some(HOST_UPLINK_ADDR));
}
