//! A mode's warnings (`Plan::warnings`, mode API 1.1) reach the user:
//! guestnetd logs each (naming the network and the mode) whenever a plan
//! is made, and shows them in the network's `Warnings` property, emitting
//! PropertiesChanged as they change; guestnetctl prints them after a
//! start. Each is made safe first: control characters and bidirectional
//! overrides dropped, cut to 512 bytes on a character boundary.
//!
//! The mode is modes/api/examples/fixture_warnings.rs, which warns in
//! hostile text. New in mode API 1.1: before it, `Warnings` did not exist
//! (reading it was `UnknownProperty`) and nothing was logged.

use std::time::Duration;

use guestnet_tests::cli::Ctl;
use guestnet_tests::guestnet::{expect_error, NETWORK_IFACE};
use guestnet_tests::lab::host_and_lan;
use guestnet_tests::monitor::{Monitor, Signal};
use guestnet_tests::service::{example_library, modes_dir_with};
use guestnet_tests::{root_or_skip, Bus, Service, World};
use serde_json::{json, Value};

const PROPERTIES: &str = "org.freedesktop.DBus.Properties";

/// What the fixture warns of by default, as guestnetd shows it: the
/// newline, the escape and the override gone, the long one cut to 511
/// bytes ("long " and 253 two-byte 'é'; a 254th would pass 512).
fn cleaned_defaults() -> Vec<String> {
    vec![
        "uplink ignoredWARN forged log line [31mred".to_owned(),
        "bidi desrever".to_owned(),
        format!("long {}", "é".repeat(253)),
    ]
}

/// The `Warnings` of a PropertiesChanged of `path`'s Network, if it has one.
fn changed_warnings(s: &Signal, path: &str) -> Option<Value> {
    if s.member != "PropertiesChanged"
        || s.path != path
        || s.args.first()?.as_str()? != NETWORK_IFACE
    {
        return None;
    }
    s.args.get(1)?.get("Warnings")?.get("data").cloned()
}

/// Waits for a PropertiesChanged of `path` with Warnings = `want`, among
/// the signals after the first `after`.
#[track_caller]
fn expect_changed(monitor: &Monitor, path: &str, after: usize, want: &[String], what: &str) {
    let want = json!(want);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = monitor.signals();
        if seen
            .iter()
            .skip(after)
            .any(|s| changed_warnings(s, path).as_ref() == Some(&want))
        {
            return;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "no PropertiesChanged Warnings={want} on {path} after {what}; seen:\n{}",
                monitor.describe()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Proves: after Start, `Warnings` holds the mode's warnings made safe
/// (no control character, none over 512 bytes, cut on a character
/// boundary), a PropertiesChanged carried them, and the log has each
/// once per plan on one line naming the network and the mode (no forged
/// line); they survive a restart of guestnetd (taken back from the record,
/// not re-planned); an Update re-plans and changes them (PropertiesChanged
/// again), a plan with too many is refused and leaves them as they were;
/// Stop empties them (PropertiesChanged); guestnetctl start prints them.
#[test]
fn a_modes_warnings_are_logged_shown_and_cleared() {
    root_or_skip!();
    let modes = modes_dir_with(&[(&example_library("fixture_warnings"), "libwarnings.so")]);
    let world = World::new();
    let (host, _lan) = host_and_lan(&world);
    let bus = Bus::start();
    let mut service = Service::start_with_modes(&world, &host, &bus, modes.path(), &[]);
    let gn = service.client();
    let monitor = Monitor::start_matching(
        bus.address(),
        &[format!("type='signal',interface='{PROPERTIES}'")],
    );

    let definition = "name = \"w1\"\nmode = \"warnings\"\nbridge = \"gnbrw1\"\n\
                      [ipv4]\naddress = \"10.79.0.1/24\"\n";
    let net = gn.define(definition);
    assert!(gn.prop_strings(&net, "Warnings").is_empty());

    let before = monitor.signals().len();
    gn.start(&net);
    let shown = gn.prop_strings(&net, "Warnings");
    assert_eq!(shown, cleaned_defaults());
    for w in &shown {
        assert!(w.len() <= 512, "{} bytes: {w}", w.len());
        assert!(!w.chars().any(char::is_control), "{w:?}");
    }
    expect_changed(&monitor, &net, before, &shown, "Start");

    // The log: each warning once, on one line with the network and mode;
    // the newline in the first did not start a line of its own.
    let log = std::fs::read_to_string(service.log_path()).unwrap();
    for w in &shown {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&format!("mode warning: {w}")))
            .collect();
        assert_eq!(lines.len(), 1, "{w}: {lines:?}\n{log}");
        assert!(
            lines[0].contains(" WARN ")
                && lines[0].contains("network=\"w1\"")
                && lines[0].contains("mode=\"warnings\""),
            "{}",
            lines[0]
        );
    }
    assert!(
        !log.lines().any(|l| l.starts_with("WARN forged"))
            && !log.contains("\u{1b}[31mred")
            && !log.contains('\u{202e}'),
        "{log}"
    );

    // A restart takes the network back from its record, without planning:
    // the warnings are shown again, not logged again.
    service.restart();
    let gn = service.client();
    assert!(gn.active(&net));
    assert_eq!(gn.prop_strings(&net, "Warnings"), cleaned_defaults());

    // An Update plans again: new warnings, announced.
    let before = monitor.signals().len();
    gn.update(
        &net,
        &format!("{definition}[warnings]\nsay = [\"only this\"]\n"),
    );
    let only = vec!["only this".to_owned()];
    assert_eq!(gn.prop_strings(&net, "Warnings"), only);
    expect_changed(&monitor, &net, before, &only, "Update");
    // Too many (the API's limit is 16): the plan is refused, naming why,
    // and the network runs on as it was.
    let many: Vec<String> = (0..17).map(|i| format!("\"w{i}\"")).collect();
    let refused = expect_error(
        gn.try_update(
            &net,
            &format!("{definition}[warnings]\nsay = [{}]\n", many.join(", ")),
        ),
        "Failed",
    );
    assert!(refused.contains("warnings"), "{refused}");
    assert_eq!(gn.prop_strings(&net, "Warnings"), only);

    // Stop: none, announced.
    let before = monitor.signals().len();
    gn.stop(&net);
    assert!(gn.prop_strings(&net, "Warnings").is_empty());
    expect_changed(&monitor, &net, before, &[], "Stop");

    // guestnetctl start says them, after the start succeeded.
    let ctl = Ctl::new(bus.address());
    let out = ctl.run(&["start", "w1"]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: only this\n"),
        "guestnetctl start printed: {stderr}"
    );
    gn.stop(&net);
}
