//! Nothing a caller does stalls anyone else: a `netns` that is a FIFO, a
//! device or a plain file is refused at once, before anything opens it;
//! reads (ListLeases, WaitForLease, properties) and other networks' changes
//! go on while a network's Start is in progress.
//!
//! Before, one lock covered everything: an AttachGuest whose netns was a
//! FIFO blocked guestnetd in open() with it held, so every call of every
//! user hung; and ListLeases waited for any Start to finish.

use std::time::{Duration, Instant};

use guestnet_tests::guest::{attach, netns_path, try_attach, veth_opts};
use guestnet_tests::lab::host_and_lan;
use guestnet_tests::service::{example_library, modes_dir_with};
use guestnet_tests::{root_or_skip, Bus, Lab, Service, World};

fn nat(name: &str, bridge: &str, p: &str) -> String {
    format!(
        "name = \"{name}\"\nmode = \"nat\"\nbridge = \"{bridge}\"\n\
         [ipv4]\naddress = \"{p}.1/24\"\n\
         dhcp = {{ start = \"{p}.100\", end = \"{p}.199\" }}\n"
    )
}

#[test]
fn a_netns_that_is_no_namespace_is_refused_at_once_and_blocks_nobody() {
    root_or_skip!();
    let lab = Lab::new();
    let gn = lab.gn();
    let net = gn.define(&nat("ns", "gnbr50", "10.77.50"));
    gn.start(&net);
    let fifo = lab.scratch.path().join("fifo");
    let plain = lab.scratch.path().join("plain");
    std::fs::write(&plain, "not a namespace").unwrap();
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: c is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
    for bad in [
        fifo.to_str().unwrap(),
        "/dev/null",
        "/dev/zero",
        plain.to_str().unwrap(),
    ] {
        let started = Instant::now();
        let result = try_attach(&gn, &net, "c1", &veth_opts(bad, None, None));
        let took = started.elapsed();
        let e = match result {
            Err(e) if e.name == "org.freedesktop.DBus.Error.InvalidArgs" => e.message,
            other => panic!("{bad}: expected InvalidArgs, got {other:?}"),
        };
        assert!(e.contains("not a network namespace"), "{bad}: {e}");
        eprintln!("netns {bad}: refused in {took:?}");
        // Far less than the bus's call timeout: nothing waited for the file.
        assert!(
            took < Duration::from_secs(5),
            "{bad}: refused after {took:?}"
        );
    }
    // Nothing was left behind, and the service serves on.
    assert!(gn.list_networks().contains(&net));
    let ns = lab.world.add_ns("c1");
    let port = attach(&gn, &net, "c1", &veth_opts(&netns_path(&ns), None, None));
    assert_eq!(
        lab.world.master_of(&lab.host, &port).as_deref(),
        Some("gnbr50")
    );
}

#[test]
fn reads_and_other_networks_go_on_while_a_start_is_in_progress() {
    root_or_skip!();
    // A mode that takes three seconds to plan holds one network's Start.
    let modes = modes_dir_with(&[(&example_library("fixture_slow"), "libslow.so")]);
    let world = World::new();
    let (host, _lan) = host_and_lan(&world);
    let bus = Bus::start();
    let service = Service::start_with_modes(&world, &host, &bus, modes.path(), &[]);
    let gn = service.client();
    let busy = gn.define(&nat("busy", "gnbr51", "10.77.51"));
    gn.start(&busy);
    let slow = gn.define(
        "name = \"slowpoke\"\nmode = \"slow\"\nbridge = \"gnbr52\"\n[ipv4]\naddress = \"10.77.52.1/24\"\n",
    );
    let other = gn.define(&nat("other", "gnbr53", "10.77.53"));

    let starting = {
        let gn = gn.clone();
        let slow = slow.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            gn.start(&slow);
            started.elapsed()
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let leases = gn.list_leases(&busy);
    let list_leases = t.elapsed();
    let t = Instant::now();
    let active = gn.prop_bool(&busy, "Active");
    let property = t.elapsed();
    let t = Instant::now();
    gn.stop(&busy);
    let stop_other = t.elapsed();
    assert!(
        !starting.is_finished(),
        "the slow Start ended before the checks: they prove nothing"
    );
    let slow_start = starting.join().expect("the slow Start");
    eprintln!(
        "while a Start took {slow_start:?}: ListLeases {list_leases:?}, a property {property:?}, \
         Stop of another network {stop_other:?}"
    );
    assert!(leases.is_empty() && active);
    // Each answered while the slow Start was still in progress, which
    // took three seconds: none of them waited for it.
    let waited = Duration::from_millis(2000);
    assert!(list_leases < waited, "ListLeases took {list_leases:?}");
    assert!(property < waited, "a property read took {property:?}");
    assert!(
        stop_other < waited,
        "Stop of another network took {stop_other:?}"
    );
    assert!(gn.prop_bool(&slow, "Active"));
    // Another network's Start plans after the slow one (host links are
    // planned one at a time) but needs no more than that.
    gn.start(&other);
    assert!(gn.prop_bool(&other, "Active"));
}
