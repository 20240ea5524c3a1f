//! The mode API as an SDK, as a third-party author uses it:
//! - `modes/api/examples/nat_routes.rs`, a mode of under 100 lines that
//!   starts from the built-in nat planner (`builtin::nat`) and adds routes
//!   through a guest router and an exception to NAT, loads and its traffic
//!   goes where its plan says (the typed firewall rules of API 1.1:
//!   several guest subnets, masquerade with exceptions);
//! - a refusal of its table names the nested key (`nat-routes.routes[1].via`);
//! - a library that requires a feature this guestnetd lacks is refused at
//!   load, naming the feature; a library of a later API that plans a rule
//!   this guestnetd does not know has that plan refused, naming the rule
//!   (serde loses the path inside an internally tagged enum, so it says
//!   `firewall`, not `firewall.rules[0]`),
//!   and nothing of it is applied.
//!
//! None of this could be said before API 1.1: the 1.0 vocabulary had one
//! subnet per policy, no NAT exceptions, no features, and refusals named
//! only the table.

use guestnet_tests::guestnet::expect_error;
use guestnet_tests::lab::{host_and_lan, HOST_UPLINK_ADDR, LAN_ADDR, UPLINK};
use guestnet_tests::service::{example_library, modes_dir_with};
use guestnet_tests::{probe, root_or_skip, Bus, Service, World};

/// A second address of the lan machine, outside `no_nat`.
const FAR_ADDR: &str = "10.201.0.2";

#[test]
fn a_mode_extending_nat_routes_through_a_guest_and_keeps_addresses_for_no_nat() {
    root_or_skip!();
    let modes = modes_dir_with(&[(&example_library("nat_routes"), "libnat_routes.so")]);
    let world = World::new();
    let (host, lan) = host_and_lan(&world);
    world.ip(&lan, &format!("addr add {FAR_ADDR}/24 dev eth0"));
    let bus = Bus::start();
    let service = Service::start_with_modes(&world, &host, &bus, modes.path(), &[]);
    let gn = service.client();

    // A refusal names the key inside the array of tables.
    let bad = r#"
name = "nr0"
mode = "nat-routes"
[nat-routes]
routes = [{ to = "10.91.0.0/24", via = "10.79.0.5" }, { to = "10.92.0.0/24", via = "nowhere" }]
"#;
    let why = expect_error(gn.try_define(bad), "InvalidConfig");
    assert!(why.contains("nat-routes.routes[1].via"), "{why}");

    let net = gn.define(&format!(
        r#"
name = "nr1"
mode = "nat-routes"
bridge = "gnbr8"
[ipv4]
address = "10.79.0.1/24"
[nat-routes]
uplink = "{UPLINK}"
routes = [{{ to = "10.91.0.0/24", via = "10.79.0.5" }}]
no_nat = ["{LAN_ADDR}/32"]
"#
    ));
    gn.start(&net);
    assert!(gn.active(&net));

    // A guest router at .5 with a subnet behind it, and a plain guest.
    let router = world.add_ns("router");
    world.veth(&host, "vgr", &router, "eth0");
    world.ip(&host, "link set vgr master gnbr8 up");
    world.ip(&router, "addr add 10.79.0.5/24 dev eth0");
    world.ip(&router, "route add default via 10.79.0.1");
    world.sysctl_set(&router, "net.ipv4.ip_forward", "1");
    let behind = world.add_ns("behind");
    world.veth(&router, "lan1", &behind, "eth0");
    world.ip(&router, "addr add 10.91.0.1/24 dev lan1");
    world.ip(&behind, "addr add 10.91.0.2/24 dev eth0");
    world.ip(&behind, "route add default via 10.91.0.1");
    let guest = guestnet_tests::lab::add_guest(
        &world,
        &host,
        "g1",
        "vg1",
        "gnbr8",
        "10.79.0.10/24",
        Some("10.79.0.1"),
    );
    // The lan routes the guests' subnet back through the host, as a LAN
    // that wants their own addresses does.
    world.ip(
        &lan,
        &format!("route add 10.79.0.0/24 via {HOST_UPLINK_ADDR}"),
    );

    // The route through the guest router: the host reaches the subnet
    // behind it.
    let routes = world.ip(&host, "route show 10.91.0.0/24");
    assert!(routes.contains("via 10.79.0.5 dev gnbr8"), "{routes}");
    probe::assert_ping(&world, &host, "10.91.0.2");

    // The subnet behind the router is the guests' too: it gets out,
    // masqueraded.
    let peer = probe::tcp_peer(&world, &lan, 7101, &behind, FAR_ADDR);
    assert_eq!(peer.as_deref(), Some(HOST_UPLINK_ADDR), "behind the router");

    // A guest to a destination outside no_nat: masqueraded, as nat does.
    let peer = probe::tcp_peer(&world, &lan, 7102, &guest, FAR_ADDR);
    assert_eq!(peer.as_deref(), Some(HOST_UPLINK_ADDR), "to {FAR_ADDR}");

    // The exception: to no_nat the guest keeps its own address.
    let peer = probe::tcp_peer(&world, &lan, 7103, &guest, LAN_ADDR);
    assert_eq!(
        peer.as_deref(),
        Some("10.79.0.10"),
        "to {LAN_ADDR} (no_nat)"
    );

    // Still nat: the lan opens no connection to a guest.
    let peer = probe::tcp_peer(&world, &guest, 7104, &lan, "10.79.0.10");
    assert_eq!(peer, None, "the lan opened a connection to a guest");

    gn.stop(&net);
    assert!(!world.has_link(&host, "gnbr8"));
}

#[test]
fn libraries_of_a_later_api_are_refused_by_what_they_need() {
    root_or_skip!();
    let modes = modes_dir_with(&[
        (&example_library("fixture_needs_more"), "libneeds_more.so"),
        (&example_library("fixture_future"), "libfuture.so"),
    ]);
    let world = World::new();
    let (host, _lan) = host_and_lan(&world);
    let bus = Bus::start();
    let service = Service::start_with_modes(&world, &host, &bus, modes.path(), &[]);
    let gn = service.client();
    let offered = guestnet_tests::guestnet::strings(&gn.manager_prop("Modes")).unwrap();

    // Refused at load, naming the feature it cannot do without.
    assert!(!offered.contains(&"needs-more".to_owned()), "{offered:?}");
    let log = std::fs::read_to_string(service.log_path()).unwrap();
    assert!(
        log.contains("libneeds_more.so")
            && log.contains("requires feature \"teleport\"")
            && log.contains("lacks"),
        "{log}"
    );

    // Loaded (it requires nothing), but a plan with a rule this guestnetd
    // does not know is refused naming it, and nothing is made.
    assert!(offered.contains(&"future".to_owned()), "{offered:?}");
    let net = gn.define("name = \"f1\"\nmode = \"future\"\n");
    let why = expect_error(gn.try_start(&net), "Failed");
    assert!(
        why.contains("firewall")
            && why.contains("unknown variant `teleport`")
            && why.contains("1.9"),
        "{why}"
    );
    assert!(!gn.active(&net));
    assert!(
        !world.has_link(&host, "gnbrf"),
        "a refused plan made its bridge"
    );
}

/// `FirewallRule::IsolateGuests`, as the built-in nat offers it
/// (`[nat] isolate_guests = true`): guests on one bridge reach the host and
/// the outside but not each other, whether they were plugged in before an
/// Update turned it on or after; turned off again, they do. (Before API
/// 1.1 no mode could say it: guests of one bridge always reached each
/// other.)
#[test]
fn isolated_guests_reach_the_host_and_the_lan_but_not_each_other() {
    root_or_skip!();
    let lab = guestnet_tests::Lab::new();
    let gn = lab.gn();
    let definition = |isolate: bool| {
        format!(
            "name = \"iso1\"\nbridge = \"gnbr9\"\n[ipv4]\naddress = \"10.79.9.1/24\"\n\
             [nat]\nuplink = \"{UPLINK}\"\nisolate_guests = {isolate}\n"
        )
    };
    let net = gn.define(&definition(false));
    gn.start(&net);
    let g1 = lab.add_guest("g1", "vi1", "gnbr9", "10.79.9.11/24", Some("10.79.9.1"));
    let g2 = lab.add_guest("g2", "vi2", "gnbr9", "10.79.9.12/24", Some("10.79.9.1"));
    probe::assert_ping(&lab.world, &g1, "10.79.9.12");

    // The kernel's own flag, not only guestnet's nft rule (which sees
    // bridged frames only where br_netfilter is loaded): caught when the
    // flag was sent in an RTM_SETLINK, which the kernel ignores.
    let flag = |port: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            let d = lab.world.ip(&lab.host, &format!("-d link show {port}"));
            let on = d.contains("isolated on");
            if on || std::time::Instant::now() > deadline {
                return on;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    assert!(!flag("vi1"));
    // Turned on live: the ports already there are isolated.
    gn.update(&net, &definition(true));
    assert!(flag("vi1") && flag("vi2"));
    probe::assert_no_ping(&lab.world, &g1, "10.79.9.12");
    probe::assert_ping(&lab.world, &g1, "10.79.9.1");
    probe::assert_ping(&lab.world, &g2, LAN_ADDR);

    // A guest plugged in afterwards is isolated as it joins.
    let g3 = lab.add_guest("g3", "vi3", "gnbr9", "10.79.9.13/24", Some("10.79.9.1"));
    assert!(
        flag("vi3"),
        "the watcher did not isolate a port plugged in by hand"
    );
    probe::assert_ping(&lab.world, &g3, "10.79.9.1");
    probe::assert_no_ping(&lab.world, &g3, "10.79.9.11");
    probe::assert_no_ping(&lab.world, &g2, "10.79.9.13");

    // A port guestnetd itself makes (AttachGuest) is isolated before it is
    // up, not only once the link watcher sees it join.
    let g4 = lab.world.add_ns("g4");
    let port = guestnet_tests::guest::attach(
        &gn,
        &net,
        "g4",
        &guestnet_tests::guest::veth_opts(
            &guestnet_tests::guest::netns_path(&g4),
            Some("eth0"),
            None,
        ),
    );
    let details = lab.world.ip(&lab.host, &format!("-d link show {port}"));
    assert!(details.contains("isolated on"), "{details}");

    // Turned off: they reach each other again.
    gn.update(&net, &definition(false));
    probe::assert_ping(&lab.world, &g3, "10.79.9.11");
    let d = lab.world.ip(&lab.host, "-d link show vi1");
    assert!(d.contains("isolated off"), "{d}");
}
