//! bridged mode: a bridge that enslaves a host NIC (taking over its
//! addresses and routes, and giving them back on stop), or an existing
//! bridge; guests sit on the LAN's own segment.

use guestnet_tests::lab::{admin_bridge, HOST_UPLINK_CIDR, LAN_ADDR, UPLINK};
use guestnet_tests::{probe, root_or_skip, Lab};

#[test]
fn bridge_takes_over_the_nic_and_gives_it_back() {
    root_or_skip!();
    let lab = Lab::new();
    let (w, host) = (&lab.world, &lab.host);
    let gn = lab.gn();
    let net = gn.define(&format!(
        r#"
name = "br1"
mode = "bridged"
bridge = "gnbr9"
[bridged]
interface = "{UPLINK}"
"#
    ));
    gn.start(&net);
    assert!(gn.active(&net));
    assert_eq!(gn.prop_str(&net, "Mode"), "bridged");
    assert_eq!(gn.bridge(&net), "gnbr9");

    // the NIC is a port of the bridge, which holds the NIC's address and route
    assert_eq!(w.master_of(host, UPLINK).as_deref(), Some("gnbr9"));
    assert_eq!(w.ipv4_addrs(host, "gnbr9"), [HOST_UPLINK_CIDR]);
    assert!(
        w.ipv4_addrs(host, UPLINK).is_empty(),
        "{UPLINK} kept its address: {:?}",
        w.ipv4_addrs(host, UPLINK)
    );
    assert_eq!(
        w.default_routes(host),
        [("gnbr9".to_owned(), Some(LAN_ADDR.to_owned()))],
        "the default route moves to the bridge"
    );
    probe::assert_ping(w, host, LAN_ADDR);

    // a guest on the bridge is on the lan's own segment
    let g1 = lab.add_guest("g1", "vg1", "gnbr9", "10.200.0.50/24", Some(LAN_ADDR));
    probe::assert_ping(w, &lab.lan, "10.200.0.50");
    probe::assert_ping(w, &g1, LAN_ADDR);
    assert_eq!(
        probe::tcp_peer(w, &g1, 7031, &lab.lan, "10.200.0.50").as_deref(),
        Some(LAN_ADDR)
    );
    assert_eq!(
        probe::tcp_peer(w, &lab.lan, 7032, &g1, LAN_ADDR).as_deref(),
        Some("10.200.0.50")
    );

    gn.stop(&net);
    assert!(!gn.active(&net));
    assert!(!w.has_link(host, "gnbr9"), "the bridge outlived Stop");
    assert_eq!(w.master_of(host, UPLINK), None);
    assert_eq!(w.ipv4_addrs(host, UPLINK), [HOST_UPLINK_CIDR]);
    assert_eq!(
        w.default_routes(host),
        [(UPLINK.to_owned(), Some(LAN_ADDR.to_owned()))],
        "the default route goes back to {UPLINK}"
    );
    probe::assert_ping(w, host, LAN_ADDR);
}

#[test]
fn an_existing_bridge_is_used_and_left_in_place() {
    root_or_skip!();
    let lab = Lab::build(|w, host, _lan| {
        // The admin's own bridge br0 holds the uplink and its address.
        admin_bridge(w, host);
    });
    let (w, host) = (&lab.world, &lab.host);
    let gn = lab.gn();
    let net = gn.define(
        r#"
name = "br2"
mode = "bridged"
bridge = "br0"
"#,
    );
    gn.start(&net);
    assert!(gn.active(&net));
    assert_eq!(gn.bridge(&net), "br0");
    let _g1 = lab.add_guest("g1", "vg1", "br0", "10.200.0.51/24", Some(LAN_ADDR));
    probe::assert_ping(w, &lab.lan, "10.200.0.51");

    gn.stop(&net);
    assert!(!gn.active(&net));
    assert!(
        w.has_link(host, "br0"),
        "Stop deleted a bridge guestnet did not make"
    );
    assert_eq!(w.master_of(host, UPLINK).as_deref(), Some("br0"));
    assert_eq!(w.ipv4_addrs(host, "br0"), [HOST_UPLINK_CIDR]);
    probe::assert_ping(w, host, LAN_ADDR);
}
