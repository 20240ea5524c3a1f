//! Mode plugins as a third party ships them: the documented minimal mode
//! (`modes/api/examples/minimal_mode.rs`) dropped into the modes directory
//! is loaded and works; a library built for another ABI version is refused
//! with an error naming the file and both versions; a mode that panics
//! fails its call and guestnetd serves on; two libraries claiming one mode
//! name: the second is refused.

use guestnet_tests::guestnet::expect_error;
use guestnet_tests::lab::host_and_lan;
use guestnet_tests::service::{example_library, modes_dir_with};
use guestnet_tests::{probe, root_or_skip, service, Bus, Service, World};
use std::path::Path;

struct PluginLab {
    service: Service,
    _bus: Bus,
    host: String,
    lan: String,
    world: World,
    _modes: tempfile::TempDir,
}

fn lab_with(extra: &[(&Path, &str)]) -> PluginLab {
    let modes = modes_dir_with(extra);
    let world = World::new();
    let (host, lan) = host_and_lan(&world);
    let bus = Bus::start();
    let service = Service::start_with_modes(&world, &host, &bus, modes.path(), &[]);
    PluginLab {
        service,
        _bus: bus,
        host,
        lan,
        world,
        _modes: modes,
    }
}

fn modes_of(lab: &PluginLab) -> Vec<String> {
    let v = lab.service.client().manager_prop("Modes");
    guestnet_tests::guestnet::strings(&v).expect("Modes is a list of strings")
}

#[test]
fn the_documented_minimal_mode_loads_and_runs_a_network() {
    root_or_skip!();
    let lab = lab_with(&[(&example_library("minimal_mode"), "libopen.so")]);
    let gn = lab.service.client();
    assert!(
        modes_of(&lab).contains(&"open".to_owned()),
        "{:?}",
        modes_of(&lab)
    );
    let log = std::fs::read_to_string(lab.service.log_path()).unwrap();
    // An example's version is that of its package, guestnet-mode-api.
    let api: toml::Table = include_str!("../../modes/api/Cargo.toml").parse().unwrap();
    let version = api["package"]["version"].as_str().unwrap();
    assert!(
        log.contains(&format!("loaded mode open {version}")),
        "{log}"
    );

    let net = gn.create(
        r#"
name = "o1"
mode = "open"
bridge = "gnbr5"
[ipv4]
address = "10.60.0.1/24"
"#,
    );
    assert!(gn.active(&net));
    assert_eq!(lab.world.ipv4_addrs(&lab.host, "gnbr5"), ["10.60.0.1/24"]);
    // open forwards without a firewall: a guest reaches the lan, and the lan
    // (with a route) reaches the guest by its own address.
    let g = guestnet_tests::lab::add_guest(
        &lab.world,
        &lab.host,
        "g1",
        "vg1",
        "gnbr5",
        "10.60.0.20/24",
        Some("10.60.0.1"),
    );
    lab.world
        .ip(&lab.lan, "route add 10.60.0.0/24 via 10.200.0.1");
    probe::assert_ping(&lab.world, &g, "10.200.0.2");
    probe::assert_ping(&lab.world, &lab.lan, "10.60.0.20");
    gn.stop(&net);
    assert!(!lab.world.has_link(&lab.host, "gnbr5"));
}

#[test]
fn a_library_for_another_abi_version_is_refused_by_name() {
    root_or_skip!();
    let lab = lab_with(&[(&example_library("fixture_wrong_abi"), "libfuture.so")]);
    let log = std::fs::read_to_string(lab.service.log_path()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("libfuture.so"))
        .unwrap_or_else(|| panic!("no word about libfuture.so in the log:\n{log}"));
    assert!(
        line.contains("ABI version 2") && line.contains("speaks version 1"),
        "{line}"
    );
    // The built-in modes still load and work.
    let modes = modes_of(&lab);
    assert_eq!(modes, ["bridged", "isolated", "nat", "routed"], "{modes:?}");
    let gn = lab.service.client();
    let net = gn.create("name = \"n1\"\nmode = \"isolated\"");
    assert!(gn.active(&net));
}

#[test]
fn a_panicking_mode_fails_its_call_and_the_service_lives() {
    root_or_skip!();
    let mut lab = lab_with(&[(&example_library("fixture_panicking"), "libpanicky.so")]);
    let gn = lab.service.client();
    assert!(modes_of(&lab).contains(&"panicky".to_owned()));
    let before = lab.world.links(&lab.host);

    let msg = expect_error(gn.try_create("name = \"p1\"\nmode = \"panicky\""), "Failed");
    assert!(msg.contains("panicked"), "{msg}");
    let net = gn.define("name = \"p2\"\nmode = \"panicky\"");
    let msg = expect_error(gn.try_start(&net), "Failed");
    assert!(msg.contains("planning always panics"), "{msg}");

    // Still serving, nothing left behind, and other modes work.
    assert!(lab.service.is_running());
    assert!(!gn.active(&net));
    assert_eq!(lab.world.links(&lab.host), before);
    let nat = gn.create("name = \"n1\"");
    assert!(gn.active(&nat));
    let _ = &lab.lan;
}

#[test]
fn a_second_library_claiming_a_mode_name_is_refused() {
    root_or_skip!();
    let nat = service::modes_dir().join("libguestnet_mode_nat.so");
    // Sorted by file name, libzz-nat.so loads after libguestnet_mode_nat.so.
    let lab = lab_with(&[(&nat, "libzz-nat.so")]);
    let log = std::fs::read_to_string(lab.service.log_path()).unwrap();
    assert!(
        log.lines().any(|l| l.contains("libzz-nat.so")
            && l.contains("mode \"nat\" is already provided by")
            && l.contains("libguestnet_mode_nat.so")),
        "{log}"
    );
    assert_eq!(modes_of(&lab).iter().filter(|m| *m == "nat").count(), 1);
}

/// The log lines that refuse `file`.
fn refusals<'a>(log: &'a str, file: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| l.contains("refused mode library") && l.contains(file))
        .collect()
}

/// A mode library anyone but root (or guestnetd's own user) could change
/// is never loaded: world-writable, owned by another user, in a
/// directory others may write, or below one. Caught on the code before the fix: the
/// world-writable libopen.so was loaded and its mode "open" was offered.
#[test]
fn a_library_others_could_change_is_refused() {
    use std::os::unix::fs::{chown, PermissionsExt};
    root_or_skip!();
    let minimal = example_library("minimal_mode");
    let modes = modes_dir_with(&[(&minimal, "libopen.so"), (&minimal, "libtheirs.so")]);
    let chmod = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    chmod(&modes.path().join("libopen.so"), 0o666);
    chown(modes.path().join("libtheirs.so"), Some(65534), Some(65534)).unwrap();
    let world = World::new();
    let (host, _lan) = host_and_lan(&world);
    let bus = Bus::start();
    let service = Service::start_with_modes(&world, &host, &bus, modes.path(), &[]);
    let log = std::fs::read_to_string(service.log_path()).unwrap();
    let offered = guestnet_tests::guestnet::strings(&service.client().manager_prop("Modes"))
        .expect("Modes is a list of strings");
    assert!(
        !offered.contains(&"open".to_owned()),
        "a world-writable or foreign mode library was loaded: Modes = {offered:?}\n{log}"
    );
    assert!(offered.contains(&"nat".to_owned()), "{offered:?}");
    let open = refusals(&log, "libopen.so");
    assert!(
        open.iter()
            .any(|l| l.contains("writable by") && l.contains("everyone")),
        "no log line says why libopen.so was refused:\n{log}"
    );
    let theirs = refusals(&log, "libtheirs.so");
    assert!(
        theirs.iter().any(|l| l.contains("owned by uid 65534")),
        "no log line says why libtheirs.so was refused:\n{log}"
    );
    drop(service);

    // A directory others may write: nothing in it is loaded.
    chmod(&modes.path().join("libopen.so"), 0o644);
    chmod(modes.path(), 0o777);
    let service = Service::start_with_modes(&world, &host, &bus, modes.path(), &[]);
    let log = std::fs::read_to_string(service.log_path()).unwrap();
    let offered = guestnet_tests::guestnet::strings(&service.client().manager_prop("Modes"))
        .expect("Modes is a list of strings");
    assert!(
        offered.is_empty(),
        "modes were loaded from a world-writable directory: {offered:?}\n{log}"
    );
    let dir = modes.path().display().to_string();
    assert!(
        log.lines().any(|l| l.contains("refused mode library")
            && l.contains(&dir)
            && l.contains("writable")),
        "no log line says why {dir} was refused:\n{log}"
    );
    chmod(modes.path(), 0o700);
    drop(service);

    // A private modes directory whose parent others may write (like a
    // user's /home/u or an /opt/vendor): they could rename it away and put
    // their own in its place between check and load, so nothing in it is
    // loaded. Caught on the code before this fix (which checked only a
    // library and its own directory): every mode in it was loaded.
    let outer = tempfile::Builder::new()
        .prefix("gnt-modes-parent-")
        .tempdir()
        .unwrap();
    let inner = outer.path().join("modes");
    std::fs::create_dir(&inner).unwrap();
    chmod(&inner, 0o755);
    for entry in std::fs::read_dir(modes.path()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, inner.join(path.file_name().unwrap())).unwrap();
    }
    chmod(outer.path(), 0o777);
    let service = Service::start_with_modes(&world, &host, &bus, &inner, &[]);
    let log = std::fs::read_to_string(service.log_path()).unwrap();
    let offered = guestnet_tests::guestnet::strings(&service.client().manager_prop("Modes"))
        .expect("Modes is a list of strings");
    assert!(
        offered.is_empty(),
        "modes were loaded below a world-writable directory: {offered:?}\n{log}"
    );
    let parent = outer.path().display().to_string();
    assert!(
        log.lines().any(|l| l.contains("refused mode library")
            && l.contains(&parent)
            && l.contains("writable")),
        "no log line says why {} was refused:\n{log}",
        inner.display()
    );
    chmod(outer.path(), 0o700);
}
