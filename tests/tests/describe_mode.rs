//! `DescribeMode(s mode) → s json` on org.guestnet1.Manager: a frontend
//! asks guestnetd what a mode's table takes, key by key, to render a form
//! for a mode it does not know. Through real clients: busctl, gdbus,
//! dbus-send (for error names) and guestnetctl `mode describe`.
//!
//! New in mode API 1.1: before it, the method did not exist (every call
//! here was `UnknownMethod`) and guestnetctl had no `mode` command.

use std::path::PathBuf;

use guestnet_tests::cli::Ctl;
use guestnet_tests::guestnet::{expect_error, MANAGER_IFACE, MANAGER_PATH};
use guestnet_tests::lab::host_and_lan;
use guestnet_tests::service::{self, example_library, modes_dir_with};
use guestnet_tests::{cmd, root_or_skip, Bus, Service, World};
use serde_json::Value;

/// The 1.0 fixture library (as tests/tests/mode_compat.rs finds it), built
/// by scripts/test.sh into target/fixtures.
fn legacy_library() -> PathBuf {
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

/// DescribeMode(mode) through busctl, parsed.
#[track_caller]
fn describe(service: &Service, mode: &str) -> Value {
    let reply = service
        .client()
        .call(MANAGER_PATH, MANAGER_IFACE, "DescribeMode", "s", &[mode]);
    let text = reply
        .as_str()
        .unwrap_or_else(|| panic!("DescribeMode({mode}) replied {reply}, not a string"));
    serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("DescribeMode({mode}) is not JSON ({e}): {text}"))
}

/// The names of a description's keys.
fn key_names(d: &Value) -> Vec<&str> {
    d["table"]["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("no table.keys: {d}"))
        .iter()
        .map(|k| k["name"].as_str().expect("a key has a name"))
        .collect()
}

/// Proves: every built-in mode describes its table (nat: `uplink`, an
/// interface, and `isolate_guests`, a boolean; bridged: `interface`; routed and isolated: no keys, but what
/// they are), each with the API it was built against; a library of API
/// 1.0 is described with `table: null` and `api: "1.0"` instead of failing;
/// an unknown mode is UnknownMode naming it; a description over 64 KiB is
/// refused as the mode's fault; gdbus and guestnetctl get the same.
#[test]
fn every_loaded_mode_describes_its_table_over_the_bus() {
    root_or_skip!();
    let legacy = legacy_library();
    let modes = modes_dir_with(&[
        (&legacy, "libguestnet_mode_legacy_nat.so"),
        (&example_library("fixture_warnings"), "libwarnings.so"),
    ]);
    let world = World::new();
    let (host, _lan) = host_and_lan(&world);
    let bus = Bus::start();
    let service = Service::start_with_modes(&world, &host, &bus, modes.path(), &[]);

    let nat = describe(&service, "nat");
    assert_eq!(nat["mode"], "nat", "{nat}");
    assert_eq!(nat["api"], "1.1", "{nat}");
    assert!(
        nat["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{nat}"
    );
    assert_eq!(key_names(&nat), ["uplink", "isolate_guests"]);
    assert_eq!(nat["table"]["keys"][1]["kind"]["type"], "boolean", "{nat}");
    let uplink = &nat["table"]["keys"][0];
    assert_eq!(uplink["kind"]["type"], "interface", "{nat}");
    assert_eq!(uplink["required"], false, "{nat}");
    assert!(
        uplink["help"].as_str().is_some_and(|h| !h.is_empty()),
        "{nat}"
    );
    assert!(uplink["default"].as_str().is_some(), "{nat}");
    // No file path of the library leaks.
    assert!(!nat.to_string().contains(".so"), "{nat}");
    assert_eq!(
        nat.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["api", "mode", "table", "version"]
    );

    let bridged = describe(&service, "bridged");
    assert_eq!(key_names(&bridged), ["interface"]);
    assert_eq!(bridged["table"]["keys"][0]["kind"]["type"], "interface");
    assert_eq!(bridged["api"], "1.1");

    for mode in ["routed", "isolated"] {
        let d = describe(&service, mode);
        assert_eq!(d["mode"], mode, "{d}");
        assert!(key_names(&d).is_empty(), "{d}");
        assert!(
            d["table"]["help"].as_str().is_some_and(|h| !h.is_empty()),
            "{d}"
        );
    }

    // A library built against API 1.0 cannot answer the question: its
    // table is unknown, and it says which API it speaks.
    let legacy = describe(&service, "legacy-nat");
    assert_eq!(legacy["mode"], "legacy-nat", "{legacy}");
    assert_eq!(legacy["api"], "1.0", "{legacy}");
    assert_eq!(legacy["version"], "1.0.0", "{legacy}");
    assert!(legacy["table"].is_null(), "{legacy}");

    // An unknown mode: UnknownMode, naming it (dbus-send keeps the name).
    let gn = service.client();
    let refused = expect_error(
        gn.try_call(MANAGER_PATH, MANAGER_IFACE, "DescribeMode", "s", &["warp"]),
        "UnknownMode",
    );
    assert!(
        refused.contains("\"warp\"") && refused.contains("nat"),
        "{refused}"
    );

    // A mode describing itself in more than 64 KiB: refused as its fault.
    let big = expect_error(
        gn.try_call(
            MANAGER_PATH,
            MANAGER_IFACE,
            "DescribeMode",
            "s",
            &["warnings"],
        ),
        "Failed",
    );
    assert!(
        big.contains("\"warnings\"")
            && big.contains("65536")
            && big.contains("described its table"),
        "{big}"
    );
    // and guestnetd serves on.
    assert_eq!(describe(&service, "nat"), nat);

    // gdbus, another real client, gets the same text.
    let out = cmd::run_ok(&[
        "gdbus",
        "call",
        "--address",
        bus.address(),
        "--dest",
        "org.guestnet1",
        "--object-path",
        MANAGER_PATH,
        "--method",
        "org.guestnet1.Manager.DescribeMode",
        "bridged",
    ]);
    // GVariant text: ("...",) with the JSON's quotes escaped.
    let text = out.replace("\\\"", "\"");
    assert!(
        text.starts_with("(\"{") && text.contains(r#""mode":"bridged""#),
        "{out}"
    );
    assert!(
        text.contains(r#""name":"interface""#) && text.contains(r#""type":"interface""#),
        "{out}"
    );

    // guestnetctl: the same JSON with --json, the table for people without.
    let ctl = Ctl::new(bus.address());
    assert_eq!(ctl.json(&["mode", "describe", "nat"]), nat);
    let text = ctl.ok(&["mode", "describe", "nat"]);
    assert!(
        text.contains("Mode:     nat ")
            && text.contains("(mode API 1.1)")
            && text.contains("[nat]\n")
            && text
                .lines()
                .any(|l| l.starts_with("  uplink ") && l.ends_with(" interface, optional"))
            && text
                .lines()
                .any(|l| l.starts_with("  isolate_guests ") && l.ends_with(" boolean, optional"))
            && text.contains("Default: the NIC of the host's default route."),
        "{text}"
    );
    let text = ctl.ok(&["mode", "describe", "routed"]);
    assert!(text.contains("takes no [routed] table"), "{text}");
    let text = ctl.ok(&["mode", "describe", "legacy-nat"]);
    assert!(
        text.contains("mode API 1.0 and cannot describe its table"),
        "{text}"
    );
    let err = ctl.fails(1, &["mode", "describe", "warp"]);
    assert!(
        err.contains("UnknownMode") && err.contains("\"warp\""),
        "{err}"
    );
}
