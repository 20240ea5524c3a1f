//! The service checks the routes a mode plans before they reach the host
//! (issue #10, point 4). The test mode `routes`
//! (`modes/api/examples/fixture_routes.rs`) plans whatever routes its
//! `[routes]` table lists, so each test hands guestnetd a route a mode could
//! plan and looks at the host as a user would: the D-Bus error, `ip route`.
//!
//! Each test failed on the code before the check: guestnetd installed the
//! route at metric 0 on the bridge (cutting the host off its LAN gateway,
//! taking its default route, shadowing another network), or passed the
//! kernel's refusal on as `Failed` with netlink's raw text.

use guestnet_tests::guestnet::expect_error;
use guestnet_tests::lab::{self, host_and_lan, LAN_ADDR, UPLINK};
use guestnet_tests::service::{example_library, modes_dir_with};
use guestnet_tests::{probe, root_or_skip, Bus, Guestnet, Service, World};

/// host + lan (see [`lab`]), with guestnetd loading the built-in modes and
/// `routes`; `setup(world, host)` runs before guestnetd starts.
struct RoutesLab {
    service: Service,
    _bus: Bus,
    host: String,
    world: World,
    _modes: tempfile::TempDir,
}

impl RoutesLab {
    fn new(setup: impl FnOnce(&World, &str)) -> RoutesLab {
        let modes = modes_dir_with(&[(&example_library("fixture_routes"), "libroutes.so")]);
        let world = World::new();
        let (host, _lan) = host_and_lan(&world);
        setup(&world, &host);
        let bus = Bus::start();
        let service = Service::start_with_modes(&world, &host, &bus, modes.path(), &[]);
        RoutesLab {
            service,
            _bus: bus,
            host,
            world,
            _modes: modes,
        }
    }

    fn gn(&self) -> Guestnet {
        self.service.client()
    }

    /// The host's IPv4 main routing table, as `ip -4 route` prints it.
    fn routes(&self) -> String {
        self.world.ip(&self.host, "-4 route")
    }

    /// Asserts that starting `toml` is refused as a Conflict, leaving the
    /// host's routes and links as they were; returns the message.
    #[track_caller]
    fn refused(&self, toml: &str) -> String {
        let (routes, links) = (self.routes(), self.world.links(&self.host));
        let msg = expect_error(self.gn().try_create(toml), "Conflict");
        assert_eq!(
            self.routes(),
            routes,
            "a refused plan changed the host's routes"
        );
        assert_eq!(
            self.world.links(&self.host),
            links,
            "a refused plan left links"
        );
        msg
    }
}

/// A definition of mode `routes` on `bridge` with the host at `address`,
/// planning `routes` (TOML inline tables).
fn routes_net(name: &str, bridge: &str, address: &str, routes: &[&str]) -> String {
    format!(
        "name = \"{name}\"\nmode = \"routes\"\nbridge = \"{bridge}\"\n\
         [ipv4]\naddress = \"{address}\"\n[routes]\nto = [{}]\n",
        routes.join(", ")
    )
}

#[test]
fn a_route_into_the_hosts_lan_is_refused_and_the_host_keeps_its_routes() {
    root_or_skip!();
    let lab = RoutesLab::new(|_, _| {});
    // 10.200.0.0/25 holds the host's gateway (the lan machine, 10.200.0.2):
    // installed on the bridge, it cut the host off its LAN and its default
    // route.
    let msg = lab.refused(&routes_net(
        "x",
        "gnbrx",
        "10.61.0.1/24",
        &[r#"{ destination = "10.200.0.0/25" }"#],
    ));
    assert!(
        msg.contains("route 10.200.0.0/25")
            && msg.contains(r#"network "x""#)
            && msg.contains(&format!("{} on interface {UPLINK}", lab::HOST_UPLINK_CIDR)),
        "the refusal should name the route and the host's LAN address: {msg}"
    );
    assert_eq!(
        lab.world.default_routes(&lab.host),
        [(UPLINK.to_owned(), Some(LAN_ADDR.to_owned()))]
    );
    probe::assert_ping(&lab.world, &lab.host, LAN_ADDR);
}

#[test]
fn a_default_route_over_the_hosts_default_with_a_metric_is_refused() {
    root_or_skip!();
    // A host whose default route has a metric (as DHCP clients and
    // NetworkManager install it): a planned default at metric 0 took all of
    // the host's traffic.
    let lab = RoutesLab::new(|w, host| {
        w.ip(host, "route del default");
        w.ip(
            host,
            &format!("route add default via {LAN_ADDR} dev {UPLINK} metric 100"),
        );
    });
    let msg = lab.refused(&routes_net(
        "x",
        "gnbrx",
        "10.61.0.1/24",
        &[r#"{ destination = "0.0.0.0/0", gateway = "10.61.0.254" }"#],
    ));
    assert!(
        msg.contains("route 0.0.0.0/0")
            && msg.contains(&format!(
                "the host's default route via {UPLINK} (metric 100)"
            )),
        "the refusal should name the planned and the host's default route: {msg}"
    );
    let defaults = lab.world.ip(&lab.host, "-4 route show default");
    assert_eq!(
        defaults.trim(),
        format!("default via {LAN_ADDR} dev {UPLINK} metric 100")
    );
    probe::assert_ping(&lab.world, &lab.host, LAN_ADDR);
}

#[test]
fn a_route_onto_another_active_network_is_refused_and_a_valid_one_installed() {
    root_or_skip!();
    let lab = RoutesLab::new(|_, _| {});
    let gn = lab.gn();
    let y = gn.create(
        "name = \"y\"\nmode = \"isolated\"\nbridge = \"gnbry\"\n[ipv4]\naddress = \"10.62.0.1/24\"\n",
    );
    let y_routes = lab.world.ip(&lab.host, "-4 route show dev gnbry");
    // 10.62.0.0/25 on x's bridge took half of y's guests from it.
    let msg = lab.refused(&routes_net(
        "x",
        "gnbrx",
        "10.63.0.1/24",
        &[r#"{ destination = "10.62.0.0/25", gateway = "10.63.0.9" }"#],
    ));
    assert!(
        msg.contains("route 10.62.0.0/25") && msg.contains(r#"10.62.0.0/24 of active network "y""#),
        "the refusal should name the route and the other network: {msg}"
    );
    assert!(gn.active(&y));
    assert_eq!(lab.world.ip(&lab.host, "-4 route show dev gnbry"), y_routes);

    // A route clear of the host and of y is installed through the bridge,
    // and goes when the network stops.
    let x = gn.create(&routes_net(
        "x",
        "gnbrx",
        "10.63.0.1/24",
        &[
            r#"{ destination = "10.90.0.0/24", gateway = "10.63.0.9" }"#,
            r#"{ destination = "10.91.0.0/24" }"#,
        ],
    ));
    assert!(gn.active(&x));
    let ours = lab.world.ip(&lab.host, "-4 route show dev gnbrx");
    assert!(
        ours.contains("10.90.0.0/24 via 10.63.0.9 proto static")
            && ours.contains("10.91.0.0/24 proto static scope link"),
        "{ours}"
    );
    gn.stop(&x);
    let left = lab.world.ip(&lab.host, "-4 route show 10.90.0.0/16");
    assert_eq!(left.trim(), "", "a stopped network left its routes");
    assert!(gn.active(&y));
}

#[test]
fn a_route_the_kernel_refuses_is_a_conflict_in_words() {
    root_or_skip!();
    let lab = RoutesLab::new(|_, _| {});
    // The network's own subnet once more: the kernel already holds the
    // subnet route of the bridge address at metric 0 and says EEXIST.
    let msg = lab.refused(&routes_net(
        "x",
        "gnbrx",
        "10.64.0.1/24",
        &[r#"{ destination = "10.64.0.0/24" }"#],
    ));
    assert!(
        msg.contains(r#"route 10.64.0.0/24 planned by network "x""#)
            && msg.contains("already has a route to 10.64.0.0/24"),
        "{msg}"
    );
    assert_no_raw_kernel_text(&msg);
    // A gateway on no subnet of the bridge: ENETUNREACH.
    let msg = lab.refused(&routes_net(
        "x",
        "gnbrx",
        "10.64.0.1/24",
        &[r#"{ destination = "10.92.0.0/24", gateway = "10.99.0.1" }"#],
    ));
    assert!(
        msg.contains("route 10.92.0.0/24")
            && msg.contains("gateway 10.99.0.1 is not reachable through bridge gnbrx"),
        "{msg}"
    );
    assert_no_raw_kernel_text(&msg);
}

#[track_caller]
fn assert_no_raw_kernel_text(msg: &str) {
    for raw in ["netlink", "os error", "File exists"] {
        assert!(!msg.contains(raw), "raw kernel text in {msg:?}");
    }
}

#[test]
fn a_stopped_network_takes_its_routes_off_a_bridge_that_stays() {
    root_or_skip!();
    // brx is the host's, with an address of its own: it and its routes stay
    // when the network stops. The plan's routes used to stay with them.
    let lab = RoutesLab::new(|w, host| {
        w.ip(host, "link add brx type bridge");
        w.ip(host, "addr add 10.66.0.1/24 dev brx");
        w.ip(host, "link set brx up");
    });
    let gn = lab.gn();
    let before = lab.routes();
    let mut toml = routes_net(
        "x",
        "brx",
        "10.67.0.1/24",
        &[
            r#"{ destination = "10.93.0.0/24", gateway = "10.67.0.9" }"#,
            r#"{ destination = "10.94.0.0/24" }"#,
        ],
    );
    toml.push_str("existing = true\n");
    let x = gn.create(&toml);
    let ours = lab.world.ip(&lab.host, "-4 route show dev brx");
    assert!(
        ours.contains("10.93.0.0/24 via 10.67.0.9") && ours.contains("10.94.0.0/24 proto static"),
        "{ours}"
    );
    gn.stop(&x);
    assert!(lab.world.has_link(&lab.host, "brx"));
    assert_eq!(lab.routes(), before, "the network's routes outlived it");
}

/// The vocabulary of API 1.1 reaches the host: a route's metric, and
/// sysctls of the network's own bridge from the closed list, set while it
/// runs and gone with it; a value a key does not take is refused naming
/// the plan's part, before anything is made. (API 1.0 had routes at metric
/// 0 only and one sysctl, IPv4 forwarding.)
#[test]
fn route_metrics_and_bridge_sysctls_reach_the_host() {
    root_or_skip!();
    let lab = RoutesLab::new(|_, _| {});
    let gn = lab.service.client();
    let definition = |value: &str| {
        format!(
            "name = \"m1\"\nmode = \"routes\"\nbridge = \"gnbrm\"\n[ipv4]\naddress = \"10.61.0.1/24\"\n\
             [routes]\nto = [{{ destination = \"10.93.0.0/24\", gateway = \"10.61.0.9\", metric = 50 }}]\n\
             sysctls = [{{ key = \"bridge_rp_filter\", value = \"{value}\" }}, {{ key = \"bridge_proxy_arp\", value = \"1\" }}]\n"
        )
    };
    let bad = gn.define(&definition("7"));
    let why = expect_error(gn.try_start(&bad), "Failed");
    assert!(
        why.contains("sysctls[0]") && why.contains("bridge_rp_filter"),
        "{why}"
    );
    assert!(
        !lab.world.has_link(&lab.host, "gnbrm"),
        "a refused plan made its bridge"
    );
    gn.undefine(&bad);

    let net = gn.define(&definition("2"));
    gn.start(&net);
    let route = lab.world.ip(&lab.host, "route show 10.93.0.0/24");
    assert!(
        route.contains("via 10.61.0.9 dev gnbrm") && route.contains("metric 50"),
        "{route}"
    );
    let get = |key: &str| {
        lab.world
            .sysctl_get(&lab.host, &format!("net.ipv4.conf.gnbrm.{key}"))
    };
    assert_eq!(get("rp_filter"), "2");
    assert_eq!(get("proxy_arp"), "1");
    gn.stop(&net);
    assert!(!lab.world.has_link(&lab.host, "gnbrm"));
    assert!(lab
        .world
        .ip(&lab.host, "route show 10.93.0.0/24")
        .is_empty());
}
