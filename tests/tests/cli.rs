//! guestnetctl end to end, against a running guestnetd on the test's private
//! bus: a network's whole life through the CLI (define from a file, list,
//! show, start, a real DHCP client's lease, autostart, edit through a
//! scripted $EDITOR, stop, undefine), `monitor --json` seeing it happen, and
//! the exit codes scripts rely on.

use std::path::Path;
use std::time::Duration;

use guestnet_tests::cli::{self, Ctl};
use guestnet_tests::dhcp_client::{mac, Udhcpc, UdhcpcOpts, LEASE_TIMEOUT};
use guestnet_tests::guestnet::expect_error;
use guestnet_tests::lab::LAN_ADDR;
use guestnet_tests::{root_or_skip, Lab};
use serde_json::Value;

const EVENT_WAIT: Duration = Duration::from_secs(10);

/// The exit codes guestnetctl documents.
const FAILED: i32 = 1;
const USAGE: i32 = 2;
const UNREACHABLE: i32 = 3;
const NOT_FOUND: i32 = 4;
const DENIED: i32 = 5;
const TIMEOUT: i32 = 6;

fn definition(name: &str, bridge: &str, p: &str) -> String {
    format!(
        r#"name = "{name}"
mode = "nat"
bridge = "{bridge}"
[ipv4]
address = "{p}.1/24"
dhcp = {{ start = "{p}.100", end = "{p}.199", lease_time = "1h" }}
[dns]
domain = "cli.lan"
forwarders = ["{LAN_ADDR}"]
"#
    )
}

fn write(dir: &Path, file: &str, text: &str) -> String {
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path.display().to_string()
}

/// The one network of a `list --json` named `name`.
#[track_caller]
fn listed(ctl: &Ctl, name: &str) -> Value {
    let list = ctl.json(&["list"]);
    let all = list.as_array().expect("list --json: an array");
    all.iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in list --json: {list}"))
        .clone()
}

#[test]
fn a_network_lives_its_whole_life_through_guestnetctl() {
    root_or_skip!();
    let lab = Lab::with_resolv_conf(|_, _, _| {});
    let gn = lab.gn();
    let dir = lab.scratch.path();
    // edit's temporary files (and any it keeps) go to the lab's scratch.
    let ctl = Ctl::new(lab.bus.address()).env("TMPDIR", &dir.display().to_string());

    // Nothing yet: a header, and an empty JSON array.
    let empty = ctl.ok(&["list"]);
    assert_eq!(empty.lines().count(), 1, "list with no network: {empty}");
    assert!(empty.starts_with("NAME"), "{empty}");
    assert_eq!(ctl.json(&["list"]), serde_json::json!([]));

    let mon = ctl.monitor(&[]);

    // define FILE prints the object path.
    let p = "10.77.60";
    let file = write(dir, "cli1.toml", &definition("cli1", "gnbr1", p));
    let path = ctl.ok(&["define", &file]);
    assert_eq!(path.trim(), "/org/guestnet1/network/cli1");
    assert_eq!(gn.get_network("cli1"), path.trim());

    // list, for people and for programs
    let text = ctl.ok(&["list"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "MODE",
            "ACTIVE",
            "AUTOSTART",
            "PERSISTENT",
            "BRIDGE",
            "ADDRESSES"
        ]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row[..6],
        ["cli1", "nat", "no", "no", "yes", "gnbr1"],
        "{text}"
    );
    let net = listed(&ctl, "cli1");
    assert_eq!(net["mode"], "nat");
    assert_eq!(net["active"], false);
    assert_eq!(net["persistent"], true);
    assert_eq!(net["autostart"], false);
    assert_eq!(net["bridge"], "gnbr1");
    assert_eq!(net["path"], path.trim());
    assert_eq!(net["uuid"], gn.prop_str(path.trim(), "Uuid"));

    // show: every property and the definition
    let shown = ctl.ok(&["show", "cli1"]);
    for want in [
        "Name:       cli1",
        "Mode:       nat",
        "Active:     no",
        "Persistent: yes",
        "Bridge:     gnbr1",
        "Domain:     cli.lan",
        "name = \"cli1\"",
    ] {
        assert!(shown.contains(want), "show lacks {want:?}:\n{shown}");
    }
    let shown = ctl.json(&["show", "cli1"]);
    assert_eq!(shown["name"], "cli1");
    assert_eq!(shown["domain"], "cli.lan");
    let config = shown["config"].as_str().expect("show --json: config");
    assert!(config.contains(&format!("{p}.1/24")), "{config}");

    // start: silent for people; --json of an active network is refused by name
    assert_eq!(ctl.ok(&["start", "cli1"]), "");
    assert!(gn.active(path.trim()));
    let err = ctl.fails(FAILED, &["start", "cli1"]);
    assert!(
        err.starts_with("guestnetctl: AlreadyActive: "),
        "stderr: {err}"
    );
    let net = listed(&ctl, "cli1");
    assert_eq!(net["active"], true);
    assert_eq!(net["addresses"], serde_json::json!([format!("{p}.1/24")]));

    // a real DHCP client's lease
    let m = mac(60, 1);
    let g = lab.add_dhcp_guest("g1", "vg1", "gnbr1", &m);
    let client = Udhcpc::start(&lab.world, &g, &UdhcpcOpts::named("web"));
    let bound = client.wait_bound(LEASE_TIMEOUT);
    let ip = bound.var("ip").to_owned();
    let waited = ctl.json(&["wait-lease", "cli1", &m, "--timeout", "20"]);
    assert_eq!(waited["ip"], ip.as_str());
    assert_eq!(waited["mac"], m.as_str());
    let leases = ctl.ok(&["leases", "cli1"]);
    let lines: Vec<&str> = leases.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["MAC", "IP", "HOSTNAME", "CLIENT-ID", "EXPIRES"]
    );
    assert_eq!(lines.len(), 2, "{leases}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row[..4],
        [m.as_str(), ip.as_str(), "web", &format!("01:{m}")]
    );
    assert!(row[4].ends_with('Z'), "EXPIRES in UTC: {leases}");
    let leases = ctl.json(&["leases", "cli1"]);
    let leases = leases.as_array().expect("leases --json: an array");
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(leases[0]["mac"], m.as_str());
    assert_eq!(leases[0]["ip"], ip.as_str());
    assert_eq!(leases[0]["hostname"], "web");
    assert!(leases[0]["expiry"].as_u64().unwrap() > guestnet_tests::guestnet::unix_now());
    drop(client);

    // autostart, reflected in the property
    assert_eq!(ctl.ok(&["autostart", "cli1"]).trim(), "off");
    ctl.ok(&["autostart", "cli1", "on"]);
    assert!(gn.prop_bool(path.trim(), "Autostart"));
    assert_eq!(ctl.ok(&["autostart", "cli1"]).trim(), "on");
    let state = ctl.json(&["autostart", "cli1", "off"]);
    assert_eq!(state["autostart"], false, "{state}");
    assert!(!gn.prop_bool(path.trim(), "Autostart"));

    // edit with an editor that changes nothing: nothing happens
    let unchanged = ctl.clone().env("EDITOR", "true").ok(&["edit", "cli1"]);
    assert!(unchanged.contains("not changed"), "{unchanged}");

    // edit with a scripted editor
    let editor = cli::script(
        dir,
        "editor.sh",
        "sed -i 's/cli\\.lan/edited.lan/' \"$1\"\n",
    );
    let edited = ctl
        .clone()
        .env("EDITOR", &editor.display().to_string())
        .ok(&["edit", "cli1"]);
    assert!(edited.contains("updated"), "{edited}");
    assert_eq!(gn.prop_str(path.trim(), "Domain"), "edited.lan");
    assert!(gn.get_config(path.trim()).contains("edited.lan"));
    assert!(
        gn.active(path.trim()),
        "an update keeps an active network up"
    );

    // a refused edit opens the editor again with the reason; the second
    // attempt is taken
    let count = dir.join("editor-runs");
    let editor = cli::script(
        dir,
        "editor2.sh",
        &format!(
            "n=$(cat '{count}' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{count}'\n\
             if [ $n = 1 ]; then\n\
               sed -i 's#{p}\\.1/24#{p}.300/24#' \"$1\"\n\
             else\n\
               grep -q '^# guestnetctl: .*InvalidConfig' \"$1\"\n\
               sed -i 's#{p}\\.300/24#{p}.1/24#; s/edited\\.lan/again.lan/' \"$1\"\n\
             fi\n",
            count = count.display()
        ),
    );
    let out = ctl
        .clone()
        .env("EDITOR", &editor.display().to_string())
        .run(&["edit", "cli1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "edit after a refusal: {}\n{stderr}",
        out.status
    );
    assert!(stderr.contains("InvalidConfig"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&count).unwrap().trim(), "2");
    assert_eq!(gn.prop_str(path.trim(), "Domain"), "again.lan");

    // an editor that keeps writing a bad definition: refused, given up, exit 1
    let editor = cli::script(
        dir,
        "editor3.sh",
        &format!("sed -i 's#{p}\\.1/24#{p}.300/24#' \"$1\"\n"),
    );
    let err = ctl
        .clone()
        .env("EDITOR", &editor.display().to_string())
        .fails(FAILED, &["edit", "cli1"]);
    assert!(
        err.contains("InvalidConfig") && err.contains("not changed"),
        "{err}"
    );
    assert!(gn.get_config(path.trim()).contains(&format!("{p}.1/24")));

    // stop and undefine
    assert_eq!(ctl.ok(&["stop", "cli1"]), "");
    assert!(!gn.active(path.trim()));
    ctl.ok(&["undefine", "cli1"]);
    expect_error(gn.try_get_network("cli1"), "NoSuchNetwork");
    ctl.fails(NOT_FOUND, &["show", "cli1"]);

    // What the monitor saw, one JSON object per line.
    mon.wait_for(EVENT_WAIT, |e| e["event"] == "network-removed")
        .unwrap_or_else(|| panic!("no network-removed event: {:#?}", mon.lines()));
    let lines = mon.stop();
    let events: Vec<Value> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("monitor line is not JSON ({e}): {l}"))
        })
        .collect();
    let find = |what: &str, pred: &dyn Fn(&Value) -> bool| {
        events
            .iter()
            .find(|e| e["event"] == what && pred(e))
            .unwrap_or_else(|| panic!("no {what} event among {lines:#?}"))
            .clone()
    };
    let added = find("lease-added", &|e| e["mac"] == m.as_str());
    assert_eq!(added["network"], "cli1");
    assert_eq!(added["ip"], ip.as_str());
    assert_eq!(added["hostname"], "web");
    assert!(added["expiry"].is_u64());
    find("properties-changed", &|e| {
        e["network"] == "cli1" && e["changed"]["active"] == true
    });
    find("properties-changed", &|e| {
        e["network"] == "cli1" && e["changed"]["active"] == false
    });
    find("properties-changed", &|e| {
        e["network"] == "cli1" && e["changed"]["autostart"] == true
    });
    find("network-added", &|e| e["network"] == "cli1");
    let order: Vec<&str> = events
        .iter()
        .filter_map(|e| e["event"].as_str())
        .filter(|e| *e == "network-added" || *e == "lease-added" || *e == "network-removed")
        .collect();
    assert_eq!(
        order,
        ["network-added", "lease-added", "network-removed"],
        "{lines:#?}"
    );
}

#[test]
fn exit_codes_and_errors_are_what_scripts_rely_on() {
    root_or_skip!();
    let mut lab = Lab::new();
    let gn = lab.gn();
    let dir = lab.scratch.path().to_owned();
    let ctl = Ctl::new(lab.bus.address());

    // not found: 4, with the service's error by its short name
    let err = ctl.fails(NOT_FOUND, &["show", "nosuch"]);
    assert!(
        err.starts_with("guestnetctl: NoSuchNetwork: ") && err.contains("nosuch"),
        "stderr: {err}"
    );
    for args in [
        &["start", "nosuch"][..],
        &["stop", "nosuch"],
        &["undefine", "nosuch"],
        &["leases", "nosuch"],
        &["--json", "edit", "nosuch"],
        &["autostart", "nosuch", "on"],
    ] {
        ctl.fails(NOT_FOUND, args);
    }

    // a bad definition: 1, the service's message, nothing defined
    let bad = write(
        &dir,
        "bad.toml",
        "name = \"bad1\"\nmode = \"nat\"\ncolour = \"blue\"\n",
    );
    let err = ctl.fails(FAILED, &["define", &bad]);
    assert!(
        err.starts_with("guestnetctl: InvalidConfig: ") && err.contains("colour"),
        "stderr: {err}"
    );
    let err = ctl.fails(FAILED, &["define", "/nonexistent/x.toml"]);
    assert!(err.contains("/nonexistent/x.toml"), "{err}");
    let err = ctl.fails(
        FAILED,
        &[
            "create",
            &write(&dir, "warp.toml", "name = \"w\"\nmode = \"warp\"\n"),
        ],
    );
    assert!(err.contains("UnknownMode"), "{err}");
    assert!(gn.list_networks().is_empty());

    // a definition on stdin; --json gives the name and the path
    let defined = ctl
        .clone()
        .stdin(definition("in1", "gnbr1", "10.77.61").as_bytes())
        .ok(&["--json", "define", "-"]);
    let defined: Value = serde_json::from_str(&defined).expect("define --json");
    assert_eq!(defined["name"], "in1");
    assert_eq!(defined["path"], gn.get_network("in1"));

    // a transient network: active at once, gone after stop
    let tmp = write(&dir, "tmp1.toml", &definition("tmp1", "gnbrt1", "10.77.62"));
    let created = ctl.json(&["create", &tmp]);
    let tpath = created["path"].as_str().unwrap().to_owned();
    assert!(gn.active(&tpath));
    assert!(!gn.prop_bool(&tpath, "Persistent"));
    let stopped = ctl.json(&["stop", "tmp1"]);
    assert_eq!(stopped["exists"], false, "{stopped}");
    expect_error(gn.try_get_network("tmp1"), "NoSuchNetwork");

    // redundant calls are refused by name, exit 1
    let err = ctl.fails(FAILED, &["stop", "in1"]);
    assert!(err.starts_with("guestnetctl: NotActive: "), "{err}");
    ctl.ok(&["start", "in1"]);
    let in1 = gn.get_network("in1");
    assert!(gn.active(&in1));

    // wait-lease that times out: 6
    let err = ctl.fails(
        TIMEOUT,
        &["wait-lease", "in1", "52:54:00:00:00:99", "--timeout", "0.2"],
    );
    assert!(err.starts_with("guestnetctl: Timeout: "), "{err}");

    // not authorized: 5 (no polkit here, so only uid 0 may change things);
    // reading is allowed
    let nobody = ctl.clone().as_uid(65534);
    let listed = nobody.json(&["list"]);
    assert_eq!(listed[0]["name"], "in1", "{listed}");
    let err = nobody.fails(DENIED, &["stop", "in1"]);
    assert!(err.starts_with("guestnetctl: AccessDenied"), "{err}");
    nobody.fails(DENIED, &["autostart", "in1", "on"]);
    assert!(gn.active(&in1));
    assert!(!gn.prop_bool(&in1, "Autostart"));

    // usage errors: 2
    ctl.fails(USAGE, &["frobnicate"]);
    ctl.fails(USAGE, &["autostart", "in1", "maybe"]);
    ctl.fails(USAGE, &["attach", "in1", "vm1"]);

    // the monitor follows the service across a restart
    let mon = ctl.monitor(&["in1"]);
    lab.service.restart();
    mon.wait_for(EVENT_WAIT, |e| e["event"] == "service-started")
        .unwrap_or_else(|| panic!("no service-started event: {:#?}", mon.lines()));
    ctl.ok(&["stop", "in1"]);
    mon.wait_for(EVENT_WAIT, |e| {
        e["event"] == "properties-changed"
            && e["network"] == "in1"
            && e["changed"]["active"] == false
    })
    .unwrap_or_else(|| {
        panic!(
            "no properties-changed after the restart: {:#?}",
            mon.lines()
        )
    });
    let lines = mon.stop();
    let kinds: Vec<String> = lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("monitor --json: JSON lines");
            v["event"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    let at = |k: &str| {
        kinds
            .iter()
            .position(|x| x == k)
            .unwrap_or_else(|| panic!("no {k} event: {lines:#?}"))
    };
    assert!(at("service-stopped") < at("service-started"), "{lines:#?}");

    // nobody owns org.guestnet1, and no bus at all: 3
    lab.service.stop();
    let err = ctl.fails(UNREACHABLE, &["list"]);
    assert!(err.contains("ServiceUnknown"), "{err}");
    let err = cli::guestnetctl("unix:path=/nonexistent/bus", &["list"]);
    assert_eq!(err.status.code(), Some(UNREACHABLE), "{err:?}");
}

#[test]
fn guest_ports_through_guestnetctl() {
    root_or_skip!();
    let lab = Lab::new();
    let dir = lab.scratch.path();
    let ctl = Ctl::new(lab.bus.address());
    let file = write(dir, "ports.toml", &definition("ports", "gnbr1", "10.77.63"));
    ctl.ok(&["define", &file]);
    ctl.ok(&["start", "ports"]);
    assert_eq!(ctl.json(&["guests", "ports"]), serde_json::json!([]));

    // a tap for a VM: the interface name on stdout
    let tap_mac = "52:54:00:63:00:01";
    let tap = ctl.ok(&["attach", "ports", "vm1", "--kind", "tap", "--mac", tap_mac]);
    let tap = tap.trim().to_owned();
    assert!(
        !tap.is_empty() && !tap.contains(char::is_whitespace),
        "{tap:?}"
    );
    assert!(lab.world.has_link(&lab.host, &tap), "no {tap} in the host");

    // a veth for a container, its end in the container's namespace
    let ns = lab.world.add_ns("c1");
    let attached = ctl.json(&[
        "attach",
        "ports",
        "c1",
        "--kind",
        "veth",
        "--netns",
        &format!("/run/netns/{ns}"),
        "--ifname",
        "eth7",
    ]);
    let veth = attached["ifname"]
        .as_str()
        .expect("attach --json: ifname")
        .to_owned();
    assert!(lab.world.has_link(&ns, "eth7"), "no eth7 in the container");

    let guests = ctl.json(&["guests", "ports"]);
    let guests = guests.as_array().expect("guests --json: an array");
    let find = |ifname: &str| {
        guests
            .iter()
            .find(|g| g["ifname"] == ifname)
            .unwrap_or_else(|| panic!("{ifname} not in guests: {guests:?}"))
    };
    assert_eq!(find(&tap)["guest"], "vm1");
    assert_eq!(find(&tap)["mac"], tap_mac);
    assert_eq!(find(&veth)["guest"], "c1");
    let text = ctl.ok(&["guests", "ports"]);
    assert!(text.starts_with("IFNAME"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == [tap.as_str(), tap_mac, "vm1"]),
        "{text}"
    );

    ctl.ok(&["detach", "ports", &tap]);
    ctl.ok(&["detach", "ports", &veth]);
    assert!(
        !lab.world.has_link(&lab.host, &tap),
        "{tap} outlived detach"
    );
    assert_eq!(ctl.json(&["guests", "ports"]), serde_json::json!([]));
    ctl.fails(USAGE, &["attach", "ports", "vm2", "--kind", "bridge"]);
}

#[test]
fn completions_are_generated() {
    // No service needed: only the binary.
    for shell in ["bash", "zsh", "fish"] {
        let out = cli::guestnetctl("unix:path=/nonexistent/bus", &["completions", shell]);
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("guestnetctl") && text.contains("wait-lease"),
            "{shell}: {text}"
        );
    }
    let out = cli::guestnetctl("unix:path=/nonexistent/bus", &["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Exit status") && help.contains("4  no such network"),
        "{help}"
    );
}
