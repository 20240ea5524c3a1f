//! Isolation between networks, end to end: one guestnetd with a network of
//! each mode at once, a guest on each, and a real TCP connection from every
//! guest to every other one, checked against what DESIGN.md promises:
//!
//! - nat guests reach out, and nobody opens a connection into them;
//! - routed guests reach out, and LAN hosts (the bridged guest here, which
//!   is one) and nat guests reach them by their own address;
//! - isolated guests talk to each other and the host only: nothing to or
//!   from them is forwarded, even with a route;
//! - a bridged network's guests are LAN hosts: the host is a plain switch.
//!
//! guestnetd orders its rules by network name, so the whole matrix runs
//! twice, with the names in both orders: no verdict may depend on a name.
//!
//! What it caught: with all rules in one chain in name order, a routed
//! network named before the others let its guest open connections into the
//! nat and isolated guests (its outbound accept came before their rejects),
//! and let the isolated guest into it (its inbound accept came before the
//! isolated network's reject); the nat guest reached the routed one only
//! when the routed network came first. Named the other way round, all of
//! those were refused.

use guestnet_tests::lab::{admin_bridge, HOST_UPLINK_ADDR};
use guestnet_tests::{probe, root_or_skip, Lab};

/// The port every guest listens on.
const PORT: u16 = 7101;

/// One guest of the matrix.
struct Party {
    /// What the matrix calls it.
    label: &'static str,
    ns: String,
    addr: &'static str,
}

/// Which connections (from, to) by label are let through; every other one
/// is refused.
const ALLOWED: &[(&str, &str)] = &[
    // A nat guest reaches out: to a LAN host, and to a routed guest as it
    // would to a LAN host (as libvirt allows).
    ("nat", "routed"),
    ("nat", "bridged"),
    // A routed guest reaches out to the LAN.
    ("routed", "bridged"),
    // A LAN host with a route reaches a routed guest by its address.
    ("bridged", "routed"),
];

/// Builds the world, with the networks named by `prefix` + mode (nat,
/// routed, isolated, bridged), runs the matrix and returns every pair whose
/// verdict was not the expected one.
fn matrix(prefixes: [&str; 4]) -> Vec<String> {
    let lab = Lab::build(|w, host, _lan| {
        // The admin's own bridge br0 holds the uplink and its address; the
        // bridged network uses it, and it is the host's way out.
        admin_bridge(w, host);
    });
    let w = &lab.world;
    let gn = lab.gn();
    let [p_nat, p_routed, p_iso, p_br] = prefixes;
    let definitions = [
        format!(
            "name = \"{p_nat}nat\"\nmode = \"nat\"\nbridge = \"gnbrn\"\n\
             [ipv4]\naddress = \"10.77.1.1/24\"\n"
        ),
        format!(
            "name = \"{p_routed}routed\"\nmode = \"routed\"\nbridge = \"gnbrr\"\n\
             [ipv4]\naddress = \"10.77.2.1/24\"\n"
        ),
        format!(
            "name = \"{p_iso}isolated\"\nmode = \"isolated\"\nbridge = \"gnbri\"\n\
             [ipv4]\naddress = \"10.77.3.1/24\"\n"
        ),
        format!("name = \"{p_br}bridged\"\nmode = \"bridged\"\nbridge = \"br0\"\n"),
    ];
    for d in &definitions {
        let net = gn.define(d);
        gn.start(&net);
        assert!(gn.active(&net), "not active: {d}");
    }
    let parties = [
        Party {
            label: "nat",
            ns: lab.add_guest("gn", "vn", "gnbrn", "10.77.1.10/24", Some("10.77.1.1")),
            addr: "10.77.1.10",
        },
        Party {
            label: "routed",
            ns: lab.add_guest("gr", "vr", "gnbrr", "10.77.2.10/24", Some("10.77.2.1")),
            addr: "10.77.2.10",
        },
        Party {
            // Given a route too: only the firewall keeps it in.
            label: "isolated",
            ns: lab.add_guest("gi", "vi", "gnbri", "10.77.3.10/24", Some("10.77.3.1")),
            addr: "10.77.3.10",
        },
        Party {
            // A LAN host on br0 whose way to the guest subnets is the host.
            label: "bridged",
            ns: lab.add_guest("gb", "vb", "br0", "10.200.0.60/24", Some(HOST_UPLINK_ADDR)),
            addr: "10.200.0.60",
        },
    ];
    // Every guest reaches its own gateway (and the ARP caches are warm).
    for (p, gw) in parties
        .iter()
        .zip(["10.77.1.1", "10.77.2.1", "10.77.3.1", HOST_UPLINK_ADDR])
    {
        probe::assert_ping(w, &p.ns, gw);
    }
    for p in &parties {
        probe::tcp_listener(w, &p.ns, PORT);
    }
    let mut wrong = Vec::new();
    for from in &parties {
        for to in &parties {
            if from.label == to.label {
                continue;
            }
            let expected = ALLOWED.contains(&(from.label, to.label));
            let got = probe::tcp_connects(w, &from.ns, to.addr, PORT);
            let verdict = |ok: bool| if ok { "allowed" } else { "refused" };
            eprintln!("{:>8} -> {:<8} {}", from.label, to.label, verdict(got));
            if got != expected {
                wrong.push(format!(
                    "{} -> {}: {}, should be {}",
                    from.label,
                    to.label,
                    verdict(got),
                    verdict(expected)
                ));
            }
        }
    }
    if !wrong.is_empty() {
        if let Some(table) = lab.guestnet_table() {
            eprintln!("--- the host's table inet guestnet ---\n{table}");
        }
    }
    wrong
}

#[track_caller]
fn assert_matrix(prefixes: [&str; 4]) {
    let wrong = matrix(prefixes);
    assert!(
        wrong.is_empty(),
        "with the networks named {prefixes:?} + mode (nat, routed, isolated, bridged):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_pair_of_guests_as_designed_routed_named_first() {
    root_or_skip!();
    // Name order: a-routed, b-nat, c-isolated, d-bridged.
    assert_matrix(["b-", "a-", "c-", "d-"]);
}

#[test]
fn every_pair_of_guests_as_designed_routed_named_last() {
    root_or_skip!();
    // Name order: w-bridged, x-isolated, y-nat, z-routed.
    assert_matrix(["y-", "z-", "x-", "w-"]);
}
