//! The mode API grows without breaking built plugins: a mode library built
//! against guestnet-mode-api 1.0, the API of the first release (commit
//! 7f85a2e, kept in tests/fixtures/mode-api-1.0), loads into today's
//! guestnetd and the network it plans works: DHCP, DNS and NAT.
//!
//! The library is tests/fixtures/mode-v1 ("legacy-nat"), built outside the
//! workspace by scripts/test.sh into `target/fixtures`. (A library built
//! for another ABI major version is refused naming both versions:
//! tests/tests/plugins.rs, `a_library_for_another_abi_version_is_refused_by_name`.)

use std::path::PathBuf;

use guestnet_tests::dhcp_client::{mac, Udhcpc, UdhcpcOpts, LEASE_TIMEOUT};
use guestnet_tests::lab::{host_and_lan, HOST_UPLINK_ADDR, LAN_ADDR, UPLINK};
use guestnet_tests::service::{self, modes_dir_with};
use guestnet_tests::{dig, probe, root_or_skip, Bus, Service, World};

/// The 1.0 fixture library, built by scripts/test.sh; panics saying how to
/// build it when it is missing.
fn legacy_library() -> PathBuf {
    // guestnetd is target/<profile>/guestnetd: the fixtures are built into
    // target/fixtures/debug.
    let target = service::binary()
        .parent()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .expect("guestnetd's path has a target directory");
    let lib = target.join("fixtures/debug/libguestnet_mode_legacy_nat.so");
    assert!(
        lib.is_file(),
        "the mode built against guestnet-mode-api 1.0 is missing at {}: build it first with \
         `cargo build --locked --manifest-path tests/fixtures/mode-v1/Cargo.toml \
         --target-dir target/fixtures` (scripts/test.sh does)",
        lib.display()
    );
    lib
}

#[test]
fn a_mode_built_against_api_1_0_loads_and_its_nat_network_works() {
    root_or_skip!();
    let lib = legacy_library();
    let modes = modes_dir_with(&[(&lib, "libguestnet_mode_legacy_nat.so")]);
    let world = World::new();
    let (host, lan) = host_and_lan(&world);
    let bus = Bus::start();
    let service = Service::start_with_modes(&world, &host, &bus, modes.path(), &[]);
    let gn = service.client();

    // Loaded beside the built-ins.
    let log = std::fs::read_to_string(service.log_path()).unwrap();
    let offered = guestnet_tests::guestnet::strings(&gn.manager_prop("Modes"))
        .expect("Modes is a list of strings");
    assert_eq!(
        offered,
        ["bridged", "isolated", "legacy-nat", "nat", "routed"],
        "the 1.0 library was not loaded:\n{log}"
    );
    assert!(log.contains("loaded mode legacy-nat 1.0.0"), "{log}");

    // A network it plans: bridge, address, DHCP, DNS, NAT out of the uplink.
    let net = gn.define(&format!(
        r#"
name = "legacy1"
mode = "legacy-nat"
bridge = "gnbr7"
[ipv4]
address = "10.78.0.1/24"
dhcp = {{ start = "10.78.0.100", end = "10.78.0.199", lease_time = "1h" }}
[dns]
domain = "legacy.lan"
forwarders = ["{LAN_ADDR}"]
[legacy-nat]
uplink = "{UPLINK}"
"#
    ));
    gn.start(&net);
    assert!(gn.active(&net));
    assert_eq!(world.ipv4_addrs(&host, "gnbr7"), ["10.78.0.1/24"]);
    assert_eq!(world.sysctl_get(&host, "net.ipv4.ip_forward"), "1");

    // A guest gets its lease from guestnet's DHCP, with the host as router
    // and DNS server.
    let guest = guestnet_tests::dhcp_client::add_dhcp_guest(
        &world,
        &host,
        "g1",
        "vg1",
        "gnbr7",
        &mac(78, 1),
    );
    let client = Udhcpc::start(&world, &guest, &UdhcpcOpts::named("old1"));
    let bound = client.wait_bound(LEASE_TIMEOUT);
    let ip = bound.var("ip").to_owned();
    assert!(ip.starts_with("10.78.0.1"), "leased {ip}: {bound:?}");
    assert_eq!(bound.var("router"), "10.78.0.1", "{bound:?}");
    assert_eq!(bound.var("dns"), "10.78.0.1", "{bound:?}");

    // guestnet's DNS on the bridge knows the guest by the name it sent.
    assert_eq!(
        dig::a(&world, &guest, "10.78.0.1", "old1.legacy.lan"),
        [ip.as_str()]
    );

    // The guest reaches the lan, masqueraded behind the host's uplink.
    probe::assert_ping(&world, &guest, LAN_ADDR);
    let peer = probe::tcp_peer(&world, &lan, 7101, &guest, LAN_ADDR);
    assert_eq!(
        peer.as_deref(),
        Some(HOST_UPLINK_ADDR),
        "the legacy-nat guest's connection to the lan was not masqueraded"
    );
    // and nothing on the lan opens a connection to the guest.
    world.ip(
        &lan,
        &format!("route add 10.78.0.0/24 via {HOST_UPLINK_ADDR}"),
    );
    assert_eq!(probe::tcp_peer(&world, &guest, 7102, &lan, &ip), None);

    gn.stop(&net);
    assert!(!world.has_link(&host, "gnbr7"));
    drop(client);
}
