//! The harness itself: namespaces, veths, processes, the private bus and the
//! clients work, and everything is cleaned up. Needs no guestnetd.

use std::path::Path;

use guestnet_tests::{probe, root_or_skip, Bus, World};

fn netns_list() -> String {
    guestnet_tests::cmd::run_ok(&["ip", "netns", "list"])
}

#[test]
fn namespaces_veths_and_processes_are_made_and_cleaned_up() {
    root_or_skip!();
    let root_links_before = guestnet_tests::cmd::run_ok(&["ip", "-br", "link"]);
    let world = World::new();
    let a = world.add_ns("a");
    let b = world.add_ns("b");
    assert!(a.starts_with("gnt") && a.ends_with("-a"), "{a}");
    assert!(netns_list().contains(&a));
    world.veth(&a, "va", &b, "vb");
    assert!(world.has_link(&a, "va") && !world.has_link(&a, "vb"));
    assert!(world.has_link(&b, "vb"));
    world.ip(&a, "addr add 10.250.0.1/24 dev va");
    world.ip(&b, "addr add 10.250.0.2/24 dev vb");
    assert_eq!(world.ipv4_addrs(&a, "va"), ["10.250.0.1/24"]);
    probe::assert_ping(&world, &a, "10.250.0.2");
    probe::assert_no_ping(&world, &a, "10.250.1.2");

    // sysctls are the namespace's own
    world.sysctl_set(&a, "net.ipv4.ip_forward", "1");
    assert_eq!(world.sysctl_get(&a, "net.ipv4.ip_forward"), "1");
    assert_eq!(world.sysctl_get(&b, "net.ipv4.ip_forward"), "0");

    // a failing command does not panic through exec, and does through exec_ok
    assert!(!world.exec(&a, &["false"]).status.success());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        world.exec_ok(&a, &["sh", "-c", "echo oops >&2; exit 3"])
    }));
    let msg = *r.unwrap_err().downcast::<String>().unwrap();
    assert!(
        msg.contains("oops") && msg.contains("exit status: 3"),
        "{msg}"
    );

    // refuses namespaces that are not its own
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        world.exec("gntnot-ours", &["true"])
    }));
    assert!(r.is_err());

    let pid = world.spawn(&b, &["sleep", "300"]);
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    // `ip netns exec` enters the namespace a moment after the spawn returns.
    let identify = || world.exec_ok(&b, &["ip", "netns", "identify", &pid.to_string()]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut ns = identify();
    while ns.trim() != b && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        ns = identify();
    }
    assert_eq!(ns.trim(), b, "the process runs in its namespace");

    drop(world);
    let list = netns_list();
    assert!(!list.contains(&a) && !list.contains(&b), "{list}");
    let gone = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2) == Some("Z"))
        .unwrap_or(true);
    assert!(gone, "the background process outlived its world");
    assert_eq!(
        guestnet_tests::cmd::run_ok(&["ip", "-br", "link"]),
        root_links_before,
        "the root namespace's links changed"
    );
}

#[test]
fn namespaces_go_away_when_a_test_panics() {
    root_or_skip!();
    let mut name = String::new();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let world = World::new();
        name = world.add_ns("p");
        world.spawn(&name, &["sleep", "300"]);
        panic!("boom");
    }));
    assert!(r.is_err());
    assert!(!netns_list().contains(&name));
}

#[test]
fn private_bus_answers_busctl_and_dbus_send() {
    root_or_skip!();
    let bus = Bus::start();
    assert!(bus.address().starts_with("unix:path="));
    let dbus = bus.busctl("org.freedesktop.DBus");
    let names = dbus
        .call(
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "ListNames",
            "",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", bus.log_tail(20)));
    let names = guestnet_tests::guestnet::strings(&names).expect("as");
    assert!(
        names.iter().any(|n| n == "org.freedesktop.DBus"),
        "{names:?}"
    );

    assert_eq!(dbus.name_has_owner("org.guestnet1"), Ok(false));

    // dbus-send reports the error's name
    let err = dbus
        .try_call(
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "GetNameOwner",
            "s",
            &["org.guestnet1"],
        )
        .unwrap_err();
    assert_eq!(
        err.name, "org.freedesktop.DBus.Error.NameHasNoOwner",
        "{err}"
    );
    let owner = dbus
        .try_call(
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "GetNameOwner",
            "s",
            &["org.freedesktop.DBus"],
        )
        .unwrap();
    assert_eq!(owner, "org.freedesktop.DBus");

    // properties through busctl
    let features = dbus
        .get_property("/org/freedesktop/DBus", "org.freedesktop.DBus", "Features")
        .unwrap();
    assert!(features.is_array(), "{features}");

    // the policy lets an unprivileged user reach the bus too
    let nobody = dbus.as_uid(65534);
    let r = nobody.call(
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "GetConnectionUnixUser",
        "s",
        &["org.freedesktop.DBus"],
    );
    assert!(r.is_ok(), "{r:?}\n{}", bus.log_tail(20));

    // the shipped policy file is the one included
    let conf = std::fs::read_to_string(bus.dir().join("bus.conf")).unwrap();
    let shipped = guestnet_tests::bus::policy_file().canonicalize().unwrap();
    assert!(conf.contains(&format!("<include>{}</include>", shipped.display())));
}

#[test]
fn tcp_probe_reports_the_peer_address() {
    root_or_skip!();
    let world = World::new();
    let a = world.add_ns("a");
    let b = world.add_ns("b");
    world.veth(&a, "va", &b, "vb");
    world.ip(&a, "addr add 10.251.0.1/24 dev va");
    world.ip(&b, "addr add 10.251.0.2/24 dev vb");
    assert_eq!(
        probe::tcp_peer(&world, &b, 7100, &a, "10.251.0.2").as_deref(),
        Some("10.251.0.1")
    );
    // nothing listens behind an unreachable address
    assert_eq!(probe::tcp_peer(&world, &b, 7101, &a, "10.251.9.9"), None);
}
