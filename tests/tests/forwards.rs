//! Port forwards on a nat network, as a user sets them up and checks them
//! (issue #14, part 1): in the definition (`[[forwards]]`) and live over
//! D-Bus (AddForward, RemoveForward, the Forwards property); a forward to
//! a DHCP guest's name follows the guest to a new address; it works from
//! the LAN (the guest sees the LAN client's own address), from another
//! guest of the network and of another network through the host's
//! address, and from the host itself; what would clash is refused.
//!
//! Before this, guestnet had no forwards at all: every check here failed.

use guestnet_tests::dhcp_client::{mac, Udhcpc, UdhcpcOpts, LEASE_TIMEOUT};
use guestnet_tests::guestnet::expect_error;
use guestnet_tests::lab::{HOST_UPLINK_ADDR, LAN_ADDR, UPLINK};
use guestnet_tests::{probe, root_or_skip, Lab};
use std::time::{Duration, Instant};

const NETWORK: &str = r#"
name = "fw1"
bridge = "gnbrf1"
[ipv4]
address = "10.80.1.1/24"
dhcp = { start = "10.80.1.100", end = "10.80.1.199" }
[nat]
uplink = "up0"
[[forwards]]
proto = "tcp"
port = 8080
to = "web1"
"#;

/// A TCP connection from `client` to `addr:port` reaches a server on
/// `server`'s `port`: the address the server saw, polled for up to
/// `within` (a forward that must follow a lease gets that long).
fn reaches(
    lab: &Lab,
    server: &str,
    port: u16,
    client: &str,
    addr: &str,
    within: Duration,
) -> Option<String> {
    let start = Instant::now();
    loop {
        let peer = probe::tcp_peer(&lab.world, server, port, client, addr);
        if peer.is_some() || start.elapsed() >= within {
            return peer;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn forwards_reach_a_dhcp_guest_from_everywhere_and_follow_it() {
    root_or_skip!();
    assert_eq!(UPLINK, "up0");
    let lab = Lab::with_resolv_conf(|_, _, _| {});
    let gn = lab.gn();
    let net = gn.define(NETWORK);
    gn.start(&net);
    // No guest named web1 yet: the port is closed, and the network says why.
    let warnings = gn.prop_strings(&net, "Warnings");
    assert!(warnings.iter().any(|w| w.contains("web1")), "{warnings:?}");

    // web1 takes a lease; the forward follows it within the second.
    let web1 = lab.add_dhcp_guest("web1", "vw1", "gnbrf1", &mac(80, 1));
    let client = Udhcpc::start(&lab.world, &web1, &UdhcpcOpts::named("web1"));
    let first = client.wait_bound(LEASE_TIMEOUT).var("ip").to_owned();
    let t = Instant::now();
    let peer = reaches(
        &lab,
        &web1,
        8080,
        &lab.lan,
        HOST_UPLINK_ADDR,
        Duration::from_secs(3),
    );
    println!(
        "the forward reached web1's first lease after {:?}",
        t.elapsed()
    );
    // From the LAN, the guest sees the LAN machine's own address.
    assert_eq!(peer.as_deref(), Some(LAN_ADDR));

    // From another guest of the network, through the host's address.
    let g2 = lab.add_guest("g2", "vg2", "gnbrf1", "10.80.1.20/24", Some("10.80.1.1"));
    assert!(
        probe::tcp_peer(&lab.world, &web1, 8080, &g2, HOST_UPLINK_ADDR).is_some(),
        "hairpin"
    );
    // From a guest of another network.
    let other = gn.define(&guestnet_tests::lab::nat_definition(
        "fw2",
        "gnbrf2",
        "10.80.2.1/24",
    ));
    gn.start(&other);
    let g3 = lab.add_guest("g3", "vg3", "gnbrf2", "10.80.2.30/24", Some("10.80.2.1"));
    assert!(
        probe::tcp_peer(&lab.world, &web1, 8080, &g3, HOST_UPLINK_ADDR).is_some(),
        "from fw2"
    );
    // From the host itself, to its own address.
    assert!(
        probe::tcp_peer(&lab.world, &web1, 8080, &lab.host, HOST_UPLINK_ADDR).is_some(),
        "from the host"
    );

    // Live over D-Bus: added, listed, in the definition, gone when removed.
    gn.call(
        &net,
        "org.guestnet1.Network",
        "AddForward",
        "a{sv}",
        &[
            "3",
            "proto",
            "s",
            "udp",
            "port",
            "q",
            "5353",
            "to",
            "s",
            "10.80.1.20",
        ],
    );
    gn.call(
        &net,
        "org.guestnet1.Network",
        "AddForward",
        "a{sv}",
        &[
            "3", "proto", "s", "tcp", "port", "q", "9090", "to", "s", "web1",
        ],
    );
    assert_eq!(
        probe::tcp_peer(&lab.world, &web1, 9090, &lab.lan, HOST_UPLINK_ADDR).as_deref(),
        Some(LAN_ADDR)
    );
    let listed = gn.prop(&net, "Forwards").to_string();
    assert!(
        listed.contains("9090") && listed.contains("5353") && listed.contains("8080"),
        "{listed}"
    );
    assert!(gn.get_config(&net).contains("port = 9090"));
    gn.call(
        &net,
        "org.guestnet1.Network",
        "RemoveForward",
        "ss",
        &["tcp", "9090"],
    );
    assert_eq!(
        probe::tcp_peer(&lab.world, &web1, 9090, &lab.lan, HOST_UPLINK_ADDR),
        None
    );
    assert!(!gn.get_config(&net).contains("9090"));

    // Refused, each with its reason: the port is forwarded already; another
    // network takes it; a process of the host listens on it; a target
    // outside the subnet; a range onto one of another size.
    let ctl = |args: &[&str]| {
        let out = guestnet_tests::cli::guestnetctl(lab.bus.address(), args);
        assert!(!out.status.success(), "guestnetctl {args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let why = ctl(&["forward", "add", "fw1", "tcp", "8080", "g2"]);
    assert!(
        why.contains("InvalidConfig") && why.contains("8080"),
        "{why}"
    );
    let fw2_forward = format!(
        "{}\n[[forwards]]\nproto = \"tcp\"\nport = 8080\nto = \"10.80.2.30\"\n",
        guestnet_tests::lab::nat_definition("fw2", "gnbrf2", "10.80.2.1/24")
    );
    let why = expect_error(gn.try_update(&other, &fw2_forward), "Conflict");
    assert!(why.contains("fw1"), "{why}");
    let _sshd = probe::tcp_listener(&lab.world, &lab.host, 2222);
    let why = ctl(&["forward", "add", "fw1", "tcp", "2222", "web1"]);
    assert!(why.contains("Conflict") && why.contains("listens"), "{why}");
    let why = ctl(&["forward", "add", "fw1", "tcp", "7070", "10.99.0.5"]);
    assert!(
        why.contains("InvalidConfig") && why.contains("10.99.0.5"),
        "{why}"
    );
    // Only the host's own addresses: not an address the host routes to
    // (it would catch every guest's traffic there).
    let why = ctl(&[
        "forward",
        "add",
        "fw1",
        "udp",
        "5300",
        "web1",
        "--address",
        "8.8.8.8",
    ]);
    assert!(why.contains("Conflict") && why.contains("8.8.8.8"), "{why}");
    // Not guestnet's own DNS port on every address.
    let why = ctl(&["forward", "add", "fw1", "udp", "53", "web1"]);
    assert!(why.contains("53") && why.contains("DNS"), "{why}");
    // A range onto one of another size is refused in the definition too.
    let uneven = format!(
        "{NETWORK}[[forwards]]\nproto = \"tcp\"\nport = \"7000-7002\"\nto = \"web1\"\nto_port = \"80-81\"\n"
    );
    let why = expect_error(gn.try_update(&net, &uneven), "InvalidConfig");
    assert!(why.contains("forwards[1].to_port"), "{why}");
    // guestnetctl lists what is there.
    let out = guestnet_tests::cli::guestnetctl(lab.bus.address(), &["forward", "list", "fw1"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("tcp\t8080\tweb1") && listed.contains("udp\t5353"),
        "{listed}"
    );

    // web1 goes; another guest named web1 comes with another address: the
    // forward follows within the second.
    client.release();
    drop(client);
    // Another guest takes the freed address first, so web1's next lease is
    // elsewhere.
    let filler = lab.add_dhcp_guest("filler", "vfl", "gnbrf1", &mac(80, 3));
    let filler_client = Udhcpc::start(&lab.world, &filler, &UdhcpcOpts::named("filler"));
    assert_eq!(filler_client.wait_bound(LEASE_TIMEOUT).var("ip"), first);
    let web1b = lab.add_dhcp_guest("web1b", "vw1b", "gnbrf1", &mac(80, 2));
    let client_b = Udhcpc::start(&lab.world, &web1b, &UdhcpcOpts::named("web1"));
    let bound = client_b.wait_bound(LEASE_TIMEOUT);
    assert_ne!(bound.var("ip"), first);
    let t = Instant::now();
    let peer = reaches(
        &lab,
        &web1b,
        8080,
        &lab.lan,
        HOST_UPLINK_ADDR,
        Duration::from_secs(3),
    );
    println!(
        "the forward followed web1 to {} after {:?}",
        bound.var("ip"),
        t.elapsed()
    );
    assert_eq!(
        peer.as_deref(),
        Some(LAN_ADDR),
        "the forward did not follow web1"
    );
}
