//! Ports are guestnet's by identity, not by name. A container that exits
//! leaves a name free; when another network's guest gets that name, no
//! Stop and no restart of guestnetd touches it. DetachGuest never releases
//! the NIC a bridged network enslaved.
//!
//! Before, the record of the exited container's port stayed on disk and
//! named whatever link later took the name: the next Stop of the first
//! network (or a restart, calling it "half-made") deleted the other
//! network's port; and DetachGuest released the bridged network's uplink,
//! cutting the host off its LAN.

use std::time::{Duration, Instant};

use guestnet_tests::guest::{attach, list, netns_path, try_detach, veth_opts};
use guestnet_tests::lab::{LAN_ADDR, UPLINK};
use guestnet_tests::{probe, root_or_skip, Lab};

fn nat(name: &str, bridge: &str, p: &str) -> String {
    format!(
        "name = \"{name}\"\nmode = \"nat\"\nbridge = \"{bridge}\"\n\
         [ipv4]\naddress = \"{p}.1/24\"\n"
    )
}

#[test]
fn a_name_left_by_an_exited_container_never_costs_another_network_its_port() {
    root_or_skip!();
    let mut lab = Lab::new();
    let (gn, host) = (lab.gn(), lab.host.clone());
    let a = gn.define(&nat("first", "gnbr60", "10.77.60"));
    let b = gn.define(&nat("second", "gnbr61", "10.77.61"));
    gn.start(&a);
    gn.start(&b);

    // A container on the first network exits: its namespace goes, and its
    // veth pair with it.
    let c1 = lab.world.add_ns("c1");
    let old = attach(&gn, &a, "c1", &veth_opts(&netns_path(&c1), None, None));
    lab.world.exec_ok(&host, &["ip", "netns", "del", &c1]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab.world.has_link(&host, &old) {
        assert!(Instant::now() < deadline, "{old} outlived its namespace");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The second network's guest gets the name that is free again.
    let c2 = lab.world.add_ns("c2");
    let reused = attach(&gn, &b, "c2", &veth_opts(&netns_path(&c2), None, None));
    assert_eq!(
        reused, old,
        "the name was not reused: the test proves nothing"
    );
    lab.world.ip(&c2, "addr add 10.77.61.20/24 dev eth0");
    lab.world.ip(&c2, "link set eth0 up");
    probe::assert_ping(&lab.world, &c2, "10.77.61.1");

    lab.service.restart();
    assert_eq!(
        lab.world.master_of(&host, &reused).as_deref(),
        Some("gnbr61"),
        "a restart of guestnetd took the second network's port"
    );
    gn.stop(&a);
    assert_eq!(
        lab.world.master_of(&host, &reused).as_deref(),
        Some("gnbr61"),
        "stopping the first network took the second network's port"
    );
    probe::assert_ping(&lab.world, &c2, "10.77.61.1");
    assert_eq!(list(&gn, &b).len(), 1);
    // Its own network's Stop does remove it.
    gn.stop(&b);
    assert!(!lab.world.has_link(&host, &reused));
}

#[test]
fn detaching_a_bridged_networks_uplink_is_refused_and_it_stays_enslaved() {
    root_or_skip!();
    let lab = Lab::new();
    let (w, host) = (&lab.world, lab.host.as_str());
    let gn = lab.gn();
    let net = gn.define(&format!(
        "name = \"lanbr\"\nmode = \"bridged\"\nbridge = \"gnbr62\"\n\
         [bridged]\ninterface = \"{UPLINK}\"\n"
    ));
    gn.start(&net);
    assert_eq!(w.master_of(host, UPLINK).as_deref(), Some("gnbr62"));

    let e = try_detach(&gn, &net, UPLINK).expect_err("DetachGuest of the uplink");
    assert_eq!(e.name, "org.freedesktop.DBus.Error.InvalidArgs", "{e}");
    assert!(
        e.message.contains(UPLINK) && e.message.contains("uplink"),
        "the refusal does not say why: {e}"
    );
    assert_eq!(
        w.master_of(host, UPLINK).as_deref(),
        Some("gnbr62"),
        "the uplink was released"
    );
    probe::assert_ping(w, host, LAN_ADDR);
}

/// A network's bridge keeps its MAC whatever ports join it, so a guest's
/// ARP entry for its gateway stays true. Caught: the kernel gave the
/// bridge the lowest MAC among its ports, and a port plugged in later
/// changed the gateway's address under the guests' feet.
#[test]
fn a_bridge_keeps_its_mac_when_ports_join() {
    root_or_skip!();
    let lab = Lab::new();
    let (gn, w, host) = (lab.gn(), &lab.world, lab.host.clone());
    let net = gn.define(&nat("macs", "gnbr63", "10.77.63"));
    gn.start(&net);
    let mac_of =
        |dev: &str| w.ip_json(&host, &format!("link show dev {dev}"))[0]["address"].clone();
    let before = mac_of("gnbr63");
    let c1 = w.add_ns("c1");
    attach(
        &gn,
        &net,
        "c1",
        &veth_opts(&netns_path(&c1), None, Some("02:00:00:00:00:01")),
    );
    lab.add_guest("g2", "low0", "gnbr63", "10.77.63.20/24", None);
    w.ip(&host, "link set low0 address 00:00:00:00:00:02");
    assert_eq!(
        mac_of("gnbr63"),
        before,
        "the bridge's MAC changed as ports joined"
    );
}
