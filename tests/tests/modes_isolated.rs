//! isolated mode: guests talk to each other and to the host, and nothing is
//! forwarded to or from anywhere else, even with forwarding on and routes
//! in place: the firewall, not the sysctl, keeps them apart.

use guestnet_tests::lab::{HOST_UPLINK_ADDR, LAN_ADDR};
use guestnet_tests::{probe, root_or_skip, Lab};

#[test]
fn guests_reach_each_other_and_the_host_but_never_the_lan() {
    root_or_skip!();
    let lab = Lab::new();
    let gn = lab.gn();
    let net = gn.define(
        r#"
name = "iso1"
mode = "isolated"
bridge = "gnbr3"
[ipv4]
address = "10.77.3.1/24"
[host]
allow = ["tcp/7022"]
"#,
    );
    gn.start(&net);
    assert!(gn.active(&net));
    let g1 = lab.add_guest("g1", "vg1", "gnbr3", "10.77.3.10/24", Some("10.77.3.1"));
    let g2 = lab.add_guest("g2", "vg2", "gnbr3", "10.77.3.11/24", Some("10.77.3.1"));
    let w = &lab.world;

    probe::assert_ping(w, &g1, "10.77.3.11");
    probe::assert_ping(w, &g2, "10.77.3.10");
    probe::assert_ping(w, &g1, "10.77.3.1");
    probe::assert_ping(w, &g2, "10.77.3.1");
    assert_eq!(
        probe::tcp_peer(w, &g2, 7021, &g1, "10.77.3.11").as_deref(),
        Some("10.77.3.10"),
        "guest -> guest"
    );
    assert_eq!(
        probe::tcp_peer(w, &lab.host, 7022, &g1, "10.77.3.1").as_deref(),
        Some("10.77.3.10"),
        "guest -> host, on a port the definition allows (issue #12: no other)"
    );
    assert_eq!(
        probe::tcp_peer(w, &g1, 7023, &lab.host, "10.77.3.10").as_deref(),
        Some("10.77.3.1"),
        "host -> guest"
    );

    // Open every door but the firewall: forwarding on in the host (set by
    // the test, in the host namespace) and routes both ways.
    w.sysctl_set(&lab.host, "net.ipv4.ip_forward", "1");
    w.ip(
        &lab.lan,
        &format!("route add 10.77.3.0/24 via {HOST_UPLINK_ADDR}"),
    );
    probe::assert_ping(w, &lab.host, LAN_ADDR); // the lan itself is there

    probe::assert_no_ping(w, &g1, LAN_ADDR);
    probe::assert_no_ping(w, &lab.lan, "10.77.3.10");
    assert_eq!(
        probe::tcp_peer(w, &lab.lan, 7024, &g1, LAN_ADDR),
        None,
        "an isolated guest reached the lan"
    );
    assert_eq!(
        probe::tcp_peer(w, &g1, 7025, &lab.lan, "10.77.3.10"),
        None,
        "the lan reached an isolated guest"
    );
}
