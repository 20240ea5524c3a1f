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

/// Listens on the host's udp/67 over IPv6 (another DHCP-port service, as
/// a DHCPv4-over-IPv6 relay or anything bound to [::]:67 would be) and
/// says whether one datagram arrived within argv[1] seconds.
const UDP6_SINK: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 67))
s.settimeout(float(sys.argv[1]))
print("ready", flush=True)
try:
    data, peer = s.recvfrom(2048)
    print("got", peer[0], flush=True)
except socket.timeout:
    print("none", flush=True)
"#;

/// Sends a few datagrams to `[argv[1]]:67`.
const UDP6_SEND: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
for _ in range(5):
    try:
        s.sendto(b"hello", (sys.argv[1], 67))
    except OSError:
        pass
    time.sleep(0.2)
"#;

/// Whether a datagram from `from_ns` to `[addr]:67` reaches a listener in
/// the lab's host.
fn udp6_67_reaches(lab: &Lab, from_ns: &str, addr: &str) -> bool {
    use std::io::{BufRead, BufReader};
    let w = &lab.world;
    let python = guestnet_tests::cmd::python3();
    let (pid, out) = w.spawn_piped(&lab.host, &[python, "-c", UDP6_SINK, "3"]);
    let mut lines = BufReader::new(out).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("ready"));
    w.exec(from_ns, &[python, "-c", UDP6_SEND, addr]);
    let seen = lines.next().and_then(Result::ok).unwrap_or_default();
    w.wait(pid);
    seen.starts_with("got")
}

/// The DHCP opening in a network's host-input rules is IPv4 to the
/// broadcast or the server's address only: a guest cannot reach another
/// service on the host's udp/67 over IPv6 (DHCP itself still works: the
/// dhcp and dhcp_abuse tests, and the scenarios above). Caught on the code
/// before the fix, whose `udp dport 67 accept` named no family: the
/// guest's datagram to the host's [fd79::1]:67 arrived.
#[test]
fn a_guest_reaches_the_hosts_udp_67_only_as_ipv4_dhcp() {
    root_or_skip!();
    let lab = Lab::new();
    let gn = lab.gn();
    let bridge = host_input::CLOSED_BRIDGE;
    let net = gn.define(&host_input::definition("closed", "nat", bridge, 1, ""));
    gn.start(&net);
    let w = &lab.world;
    let g = lab.add_guest("g6", "vg6", bridge, "10.79.1.20/24", None);
    w.ip(
        &lab.host,
        &format!("-6 addr add fd79::1/64 dev {bridge} nodad"),
    );
    w.ip(&g, "-6 addr add fd79::20/64 dev eth0 nodad");
    // IPv6 between them works (an echo is allowed), and the listener
    // hears the host itself.
    guestnet_tests::probe::assert_ping(w, &g, "fd79::1");
    assert!(
        udp6_67_reaches(&lab, &lab.host, "fd79::1"),
        "the host's own udp/67 listener heard nothing from the host"
    );
    assert!(
        !udp6_67_reaches(&lab, &g, "fd79::1"),
        "a guest reached the host's udp/67 over IPv6\n{}",
        lab.guestnet_table().unwrap_or_default()
    );
}
