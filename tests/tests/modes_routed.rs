//! routed mode: guests are routed at L3 without NAT; a machine with a route
//! to the guest subnet via the host reaches guests by their own address.

use guestnet_tests::lab::{HOST_UPLINK_ADDR, LAN_ADDR};
use guestnet_tests::{probe, root_or_skip, Lab};

#[test]
fn lan_and_guest_see_each_others_own_addresses() {
    root_or_skip!();
    let lab = Lab::new();
    let gn = lab.gn();
    let net = gn.define(
        r#"
name = "routed1"
mode = "routed"
bridge = "gnbr2"
[ipv4]
address = "10.77.2.1/24"
"#,
    );
    gn.start(&net);
    assert!(gn.active(&net));
    assert_eq!(gn.prop_str(&net, "Mode"), "routed");
    assert_eq!(
        lab.world.sysctl_get(&lab.host, "net.ipv4.ip_forward"),
        "1",
        "routed turns on forwarding in the host"
    );
    let g1 = lab.add_guest("g1", "vg1", "gnbr2", "10.77.2.10/24", Some("10.77.2.1"));
    lab.world.ip(
        &lab.lan,
        &format!("route add 10.77.2.0/24 via {HOST_UPLINK_ADDR}"),
    );

    probe::assert_ping(&lab.world, &g1, LAN_ADDR);
    probe::assert_ping(&lab.world, &lab.lan, "10.77.2.10");

    // lan -> guest: the guest sees the lan machine's own address
    let peer = probe::tcp_peer(&lab.world, &g1, 7011, &lab.lan, "10.77.2.10");
    assert_eq!(peer.as_deref(), Some(LAN_ADDR), "lan -> routed guest");

    // guest -> lan: the lan machine sees the guest's own address (no NAT)
    let peer = probe::tcp_peer(&lab.world, &lab.lan, 7012, &g1, LAN_ADDR);
    assert_eq!(peer.as_deref(), Some("10.77.2.10"), "routed guest -> lan");
}
