//! Guests reach only the host services they should (issue #12, point 5).
//! A guest of a nat, routed or isolated network gets DHCP and DNS from the
//! host and can ping it, but cannot open a TCP connection to a service the
//! host runs on all its addresses (port 2222 here, as an sshd or a
//! database would) unless its network's definition allows the port
//! (`[host] allow = ["tcp/2222"]`), and then only on the host's address on
//! that network. The scenario is in tests/src/host_input.rs; the same runs
//! under firewalld in tests/tests/firewalld.rs.
//!
//! Each failed on the code before: guestnet's table had no input policy,
//! so the closed network's guest connected to the host's tcp/2222 (and
//! the definition's `[host]` table was refused as an unknown key).

use guestnet_tests::{host_input, root_or_skip, Lab};

fn run(mode: &str) {
    let lab = Lab::new();
    host_input::start_networks(&lab, mode);
    host_input::check(&lab);
}

#[test]
fn nat_guests_reach_only_dhcp_dns_ping_and_allowed_ports_on_the_host() {
    root_or_skip!();
    run("nat");
}

#[test]
fn routed_guests_reach_only_dhcp_dns_ping_and_allowed_ports_on_the_host() {
    root_or_skip!();
    run("routed");
}

#[test]
fn isolated_guests_reach_only_dhcp_dns_ping_and_allowed_ports_on_the_host() {
    root_or_skip!();
    run("isolated");
}

#[test]
fn a_bridged_network_refuses_a_host_allow_list_naming_the_key() {
    root_or_skip!();
    let lab = Lab::new();
    lab.world.ip(&lab.host, "link add gnbrx type bridge");
    let msg = guestnet_tests::guestnet::expect_error(
        lab.gn().try_create(
            "name = \"b\"\nmode = \"bridged\"\nbridge = \"gnbrx\"\n[host]\nallow = [\"tcp/22\"]\n",
        ),
        "InvalidConfig",
    );
    assert!(msg.contains("host.allow"), "{msg}");
}

#[test]
fn a_bad_host_allow_list_is_refused_naming_the_entry() {
    root_or_skip!();
    let lab = Lab::new();
    let msg = guestnet_tests::guestnet::expect_error(
        lab.gn()
            .try_create("name = \"n\"\n[host]\nallow = [\"tcp/22\", \"tcp/70000\"]\n"),
        "InvalidConfig",
    );
    assert!(msg.contains("host.allow[1]"), "{msg}");
}
