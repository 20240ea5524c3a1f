//! A start that fails half-way leaves nothing behind: every step already
//! taken in the kernel is undone, and the network stays inactive.

use guestnet_tests::guestnet::expect_error;
use guestnet_tests::{root_or_skip, Lab};

/// Everything about the host's network state a failed start could disturb.
fn host_state(lab: &Lab) -> (String, String, String) {
    let w = &lab.world;
    (
        w.ip(&lab.host, "-br link show"),
        w.ip(&lab.host, "-br -4 addr show"),
        w.ip(&lab.host, "-4 route show"),
    )
}

#[test]
fn a_start_failing_midway_is_rolled_back() {
    root_or_skip!();
    // A tun device is an L3 interface: the kernel refuses to enslave it to a
    // bridge, which bridged mode finds out only after it has created the
    // bridge and moved the device's address and route onto it.
    let lab = Lab::build(|w, host, _| {
        w.ip(host, "tuntap add dev tun0 mode tun");
        w.ip(host, "addr add 10.99.0.1/24 dev tun0");
        w.ip(host, "link set tun0 up");
        w.ip(host, "route add 10.98.0.0/16 dev tun0");
    });
    let gn = lab.gn();
    let before = host_state(&lab);
    let net = gn.define(
        r#"
name = "rb"
mode = "bridged"
bridge = "gnbrrb"
[bridged]
interface = "tun0"
"#,
    );
    let msg = expect_error(gn.try_start(&net), "Failed");
    assert!(msg.contains("tun0"), "{msg}");
    assert!(!gn.active(&net));
    assert_eq!(
        host_state(&lab),
        before,
        "a failed start left changes behind"
    );
    assert!(lab.guestnet_table().is_none(), "{:?}", lab.guestnet_table());
    assert!(
        std::fs::read_dir(lab.service.runtime_dir().join("networks"))
            .map(|d| d.count() == 0)
            .unwrap_or(true),
        "a runtime record outlived the failed start"
    );
    // And the network can still be started once the host allows it.
    lab.world
        .ip(&lab.host, "link add dum0 type veth peer name dum1");
    gn.update(
        &net,
        "name = \"rb\"\nmode = \"bridged\"\nbridge = \"gnbrrb\"\n[bridged]\ninterface = \"dum0\"\n",
    );
    gn.start(&net);
    assert_eq!(
        lab.world.master_of(&lab.host, "dum0").as_deref(),
        Some("gnbrrb")
    );
}
