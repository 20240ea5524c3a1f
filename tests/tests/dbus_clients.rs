//! Generic D-Bus clients against guestnetd, as a user would point them at
//! it: busctl and gdbus introspect the tree, call methods, get and set
//! properties, fetch every network at once through the ObjectManager, and
//! `busctl monitor` and `gdbus monitor` see what changes as it happens
//! (PropertiesChanged, InterfacesAdded, InterfacesRemoved).

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use guestnet_tests::guestnet::{
    strings, BUS_NAME, MANAGER_IFACE, MANAGER_PATH, NETWORK_IFACE, NETWORK_PROPERTIES,
};
use guestnet_tests::lab::nat_definition;
use guestnet_tests::monitor::{Monitor, Signal};
use guestnet_tests::{cmd, root_or_skip, Lab};

const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const OBJECT_MANAGER: &str = "org.freedesktop.DBus.ObjectManager";
/// How long a signal may take to reach a monitor.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(5);

/// [`nat_definition`] with the DNS domain `NAME.lan`.
fn nat(name: &str, bridge: &str, cidr: &str) -> String {
    format!(
        "{}[dns]\ndomain = \"{name}.lan\"\n",
        nat_definition(name, bridge, cidr)
    )
}

/// `s` as a GVariant text-format string literal.
fn gv_str(s: &str) -> String {
    let mut out = String::from("'");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The object path in gdbus's print of a reply, `(objectpath '/x/y',)`.
fn gv_object_path(reply: &str) -> String {
    let rest = reply
        .split_once("objectpath '")
        .unwrap_or_else(|| panic!("no object path in gdbus's reply {reply:?}"))
        .1;
    rest.split('\'').next().unwrap_or_default().to_owned()
}

/// gdbus against the test's bus.
struct Gdbus {
    address: String,
}

impl Gdbus {
    fn new(lab: &Lab) -> Gdbus {
        Gdbus {
            address: lab.bus.address().to_owned(),
        }
    }

    /// `gdbus call` of `iface.method` on `path`, arguments in GVariant text
    /// format. Ok: what gdbus printed; Err: its error line
    /// (`GDBus.Error:NAME: MESSAGE`).
    fn call(&self, path: &str, method: &str, args: &[&str]) -> Result<String, String> {
        let mut argv = vec![
            "gdbus",
            "call",
            "--address",
            &self.address,
            "--dest",
            BUS_NAME,
            "--object-path",
            path,
            "--timeout",
            "30",
            "--method",
            method,
        ];
        argv.extend_from_slice(args);
        let out = cmd::run(&argv);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    #[track_caller]
    fn call_ok(&self, path: &str, method: &str, args: &[&str]) -> String {
        self.call(path, method, args)
            .unwrap_or_else(|e| panic!("gdbus call {method} on {path}: {e}"))
    }

    /// `gdbus introspect`, recursively.
    fn introspect(&self, path: &str) -> String {
        cmd::run_ok(&[
            "gdbus",
            "introspect",
            "--address",
            &self.address,
            "--dest",
            BUS_NAME,
            "--object-path",
            path,
            "--recurse",
        ])
    }
}

/// A running `gdbus monitor --dest org.guestnet1` (which subscribes to
/// every signal the service sends), its output in a file; killed on drop.
struct GdbusMonitor {
    child: Child,
    out: tempfile::NamedTempFile,
}

impl GdbusMonitor {
    /// Starts it and waits until it has found the service (by then its
    /// subscription is in place: gdbus asks for it first).
    fn start(address: &str) -> GdbusMonitor {
        let out = tempfile::NamedTempFile::new().expect("temp file for gdbus monitor");
        let args = ["gdbus", "monitor", "--address", address, "--dest", BUS_NAME];
        let child = Command::new(args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(out.reopen().expect("reopen"))
            .stderr(out.reopen().expect("reopen"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", cmd::show(&args)));
        let mut mon = GdbusMonitor { child, out };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !mon.text().contains(&format!("{BUS_NAME} is owned by")) {
            if let Ok(Some(status)) = mon.child.try_wait() {
                panic!("gdbus monitor exited ({status}): {}", mon.text());
            }
            assert!(
                Instant::now() < deadline,
                "gdbus monitor did not find {BUS_NAME} within 10 s: {}",
                mon.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        mon
    }

    fn text(&self) -> String {
        fs::read_to_string(self.out.path()).unwrap_or_default()
    }

    /// The signal lines, `PATH: IFACE.MEMBER (ARGS)`.
    fn lines(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.starts_with('/'))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for GdbusMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `busctl monitor` of guestnet's PropertiesChanged and ObjectManager
/// signals.
fn busctl_monitor(lab: &Lab) -> Monitor {
    Monitor::start_matching(
        lab.bus.address(),
        &[
            format!("type='signal',interface='{PROPERTIES}'"),
            format!("type='signal',interface='{OBJECT_MANAGER}'"),
        ],
    )
}

/// The value of `prop` in a PropertiesChanged signal of `iface`, from
/// busctl's JSON (`[iface, {prop: {type, data}}, [invalidated]]`).
fn changed_value(s: &Signal, iface: &str, prop: &str) -> Option<serde_json::Value> {
    if s.member != "PropertiesChanged" || s.args.first()?.as_str()? != iface {
        return None;
    }
    s.args.get(1)?.get(prop)?.get("data").cloned()
}

/// What both monitors must have seen, checked one by one, each among the
/// signals after the last [`Expect::mark`] (so a signal of an earlier step
/// cannot stand in for one of this step); every miss is kept, and reported
/// together with all both monitors saw.
struct Expect<'a> {
    busctl: &'a Monitor,
    gdbus: &'a GdbusMonitor,
    /// How many signals each monitor had seen at the last mark.
    from: (usize, usize),
    misses: Vec<String>,
}

impl<'a> Expect<'a> {
    fn new(busctl: &'a Monitor, gdbus: &'a GdbusMonitor) -> Expect<'a> {
        let mut e = Expect {
            busctl,
            gdbus,
            from: (0, 0),
            misses: Vec::new(),
        };
        e.mark();
        e
    }

    /// Call before each step: what follows is looked for after this.
    fn mark(&mut self) {
        self.from = (self.busctl.signals().len(), self.gdbus.lines().len());
    }

    /// Waits for a busctl-seen signal after the mark for which `pred` holds.
    fn busctl_saw(&self, pred: impl Fn(&Signal) -> bool) -> bool {
        let deadline = Instant::now() + SIGNAL_TIMEOUT;
        loop {
            if self.busctl.signals().iter().skip(self.from.0).any(&pred) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a gdbus-seen line after the mark containing all of `parts`.
    fn gdbus_saw(&self, parts: &[&str]) -> bool {
        let deadline = Instant::now() + SIGNAL_TIMEOUT;
        loop {
            if self
                .gdbus
                .lines()
                .iter()
                .skip(self.from.1)
                .any(|l| parts.iter().all(|p| l.contains(p)))
            {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A PropertiesChanged of `prop` on `path` with value `value`.
    fn changed(&mut self, what: &str, path: &str, prop: &str, value: serde_json::Value) {
        if !self.busctl_saw(|s| {
            s.path == path && changed_value(s, NETWORK_IFACE, prop).as_ref() == Some(&value)
        }) {
            self.misses.push(format!(
                "busctl monitor: no PropertiesChanged {prop}={value} on {path} after {what}"
            ));
        }
        let gv = format!("'{prop}': <{value}>");
        if !self.gdbus_saw(&[
            &format!("{path}: {PROPERTIES}.PropertiesChanged"),
            &format!("'{NETWORK_IFACE}'"),
            &gv,
        ]) {
            self.misses.push(format!(
                "gdbus monitor: no PropertiesChanged {gv} on {path} after {what}"
            ));
        }
    }

    /// InterfacesAdded (`added`) or InterfacesRemoved of `net`'s
    /// org.guestnet1.Network on /org/guestnet1.
    fn object(&mut self, what: &str, net: &str, added: bool) {
        let member = if added {
            "InterfacesAdded"
        } else {
            "InterfacesRemoved"
        };
        if !self.busctl_saw(|s| {
            s.member == member
                && s.path == MANAGER_PATH
                && s.interface == OBJECT_MANAGER
                && s.args.first().and_then(|a| a.as_str()) == Some(net)
                && match s.args.get(1) {
                    Some(serde_json::Value::Object(m)) => m.contains_key(NETWORK_IFACE),
                    Some(serde_json::Value::Array(a)) => a.iter().any(|i| i == NETWORK_IFACE),
                    _ => false,
                }
        }) {
            self.misses.push(format!(
                "busctl monitor: no {member} of {net} on {MANAGER_PATH} after {what}"
            ));
        }
        if !self.gdbus_saw(&[
            &format!("{MANAGER_PATH}: {OBJECT_MANAGER}.{member}"),
            &format!("objectpath '{net}'"),
            &format!("'{NETWORK_IFACE}'"),
        ]) {
            self.misses.push(format!(
                "gdbus monitor: no {member} of {net} on {MANAGER_PATH} after {what}"
            ));
        }
    }

    #[track_caller]
    fn check(self, lab: &Lab) {
        assert!(
            self.misses.is_empty(),
            "signals missing:\n  {}\n--- busctl monitor saw ---\n{}--- gdbus monitor saw ---\n{}\n\
             --- guestnetd log (tail) ---\n{}",
            self.misses.join("\n  "),
            self.busctl.describe(),
            self.gdbus.lines().join("\n"),
            lab.service.log_tail(30)
        );
    }
}

#[test]
fn gdbus_and_busctl_introspect_the_tree() {
    root_or_skip!();
    let lab = Lab::new();
    let gn = lab.gn();
    let gd = Gdbus::new(&lab);
    let a = gn.define(&nat("tree-a", "gnbrta", "10.77.60.1/24"));
    let b = gn.create(&nat("tree.b", "gnbrtb", "10.77.61.1/24"));

    let text = gd.introspect(MANAGER_PATH);
    for want in [
        format!("node {MANAGER_PATH} {{"),
        format!("interface {MANAGER_IFACE} {{"),
        format!("interface {OBJECT_MANAGER} {{"),
        format!("node {a} {{"),
        format!("node {b} {{"),
        format!("interface {NETWORK_IFACE} {{"),
        "DefineNetwork(in  s toml,".to_owned(),
        "readwrite b Autostart".to_owned(),
        "LeaseAdded(".to_owned(),
    ] {
        assert!(
            text.contains(&want),
            "gdbus introspect --recurse lacks {want:?}:\n{text}"
        );
    }

    let tree = cmd::run_ok(&[
        "busctl",
        &format!("--address={}", lab.bus.address()),
        "--list",
        "tree",
        BUS_NAME,
    ]);
    for path in [MANAGER_PATH, &a, &b] {
        assert!(
            tree.lines().any(|l| l.trim() == path),
            "busctl tree lacks {path}:\n{tree}"
        );
    }
    let members = cmd::run_ok(&[
        "busctl",
        &format!("--address={}", lab.bus.address()),
        "introspect",
        BUS_NAME,
        &a,
        NETWORK_IFACE,
    ]);
    for want in [".Start", ".WaitForLease", ".Autostart", ".LeaseAdded"] {
        assert!(
            members.contains(want),
            "busctl introspect of {a} lacks {want}:\n{members}"
        );
    }
    gn.stop(&b);
}

#[test]
fn gdbus_calls_methods_and_both_clients_get_and_set_properties() {
    root_or_skip!();
    let lab = Lab::new();
    let gn = lab.gn();
    let gd = Gdbus::new(&lab);
    let addr = format!("--address={}", lab.bus.address());

    let reply = gd.call_ok(
        MANAGER_PATH,
        &format!("{MANAGER_IFACE}.DefineNetwork"),
        &[&gv_str(&nat("gd-1", "gnbrgd1", "10.77.62.1/24"))],
    );
    let net = gv_object_path(&reply);
    assert_eq!(
        gn.get_network("gd-1"),
        net,
        "gdbus's DefineNetwork: {reply}"
    );
    let listed = gd.call_ok(MANAGER_PATH, &format!("{MANAGER_IFACE}.ListNetworks"), &[]);
    assert!(listed.contains(&format!("'{net}'")), "{listed}");

    gd.call_ok(&net, &format!("{NETWORK_IFACE}.Start"), &[]);
    assert!(gn.active(&net));
    assert_eq!(
        lab.world.ipv4_addrs(&lab.host, "gnbrgd1"),
        ["10.77.62.1/24"]
    );
    let e = gd
        .call(&net, &format!("{NETWORK_IFACE}.Start"), &[])
        .expect_err("a second Start succeeded");
    assert!(
        e.contains("GDBus.Error:org.guestnet1.Error.AlreadyActive"),
        "gdbus should see the error's name: {e}"
    );
    let config = gd.call_ok(&net, &format!("{NETWORK_IFACE}.GetConfig"), &[]);
    assert!(config.contains("10.77.62.1/24"), "{config}");

    // Properties.Get through gdbus, get-property through busctl.
    let get = |prop: &str| {
        gd.call_ok(
            &net,
            &format!("{PROPERTIES}.Get"),
            &[&gv_str(NETWORK_IFACE), &gv_str(prop)],
        )
    };
    assert_eq!(get("Active"), "(<true>,)");
    assert_eq!(get("Name"), "(<'gd-1'>,)");
    assert_eq!(get("Bridge"), "(<'gnbrgd1'>,)");
    assert_eq!(get("Addresses"), "(<['10.77.62.1/24']>,)");
    assert_eq!(get("Domain"), "(<'gd-1.lan'>,)");
    let busctl_get = |prop: &str| {
        cmd::run_ok(&[
            "busctl",
            &addr,
            "get-property",
            BUS_NAME,
            &net,
            NETWORK_IFACE,
            prop,
        ])
        .trim()
        .to_owned()
    };
    assert_eq!(busctl_get("Active"), "b true");
    assert_eq!(busctl_get("Autostart"), "b false");
    assert_eq!(busctl_get("Mode"), "s \"nat\"");
    let all = gd.call_ok(
        &net,
        &format!("{PROPERTIES}.GetAll"),
        &[&gv_str(NETWORK_IFACE)],
    );
    for prop in NETWORK_PROPERTIES {
        assert!(
            all.contains(&format!("'{prop}': <")),
            "GetAll lacks {prop}: {all}"
        );
    }
    let manager = gd.call_ok(
        MANAGER_PATH,
        &format!("{PROPERTIES}.GetAll"),
        &[&gv_str(MANAGER_IFACE)],
    );
    assert!(
        manager.contains("'Version': <'") && manager.contains("'Modes': <["),
        "{manager}"
    );

    // Set with busctl, read with gdbus; set with gdbus, read with busctl.
    cmd::run_ok(&[
        "busctl",
        &addr,
        "set-property",
        BUS_NAME,
        &net,
        NETWORK_IFACE,
        "Autostart",
        "b",
        "true",
    ]);
    assert_eq!(get("Autostart"), "(<true>,)");
    assert!(gn.get_config(&net).contains("autostart = true"));
    gd.call_ok(
        &net,
        &format!("{PROPERTIES}.Set"),
        &[&gv_str(NETWORK_IFACE), &gv_str("Autostart"), "<false>"],
    );
    assert_eq!(busctl_get("Autostart"), "b false");
    // A read-only property cannot be set, and says so.
    let e = gd
        .call(
            &net,
            &format!("{PROPERTIES}.Set"),
            &[&gv_str(NETWORK_IFACE), &gv_str("Active"), "<false>"],
        )
        .expect_err("setting the read-only Active succeeded");
    assert!(e.contains("GDBus.Error:org.freedesktop.DBus.Error."), "{e}");
    assert!(gn.active(&net));

    gd.call_ok(&net, &format!("{NETWORK_IFACE}.Stop"), &[]);
    assert!(!gn.active(&net));
    gd.call_ok(&net, &format!("{NETWORK_IFACE}.Undefine"), &[]);
    assert!(gn.list_networks().is_empty());
}

#[test]
fn get_managed_objects_returns_every_network_with_its_properties() {
    root_or_skip!();
    let lab = Lab::new();
    let gn = lab.gn();
    let idle = gn.define(&nat("mo1", "gnbrmo1", "10.77.63.1/24"));
    let running = gn.define(&nat("mo2", "gnbrmo2", "10.77.64.1/24"));
    gn.start(&running);
    let transient = gn.create(&nat("mo3", "gnbrmo3", "10.77.65.1/24"));

    let objects = gn.call(MANAGER_PATH, OBJECT_MANAGER, "GetManagedObjects", "", &[]);
    let map = objects
        .as_object()
        .unwrap_or_else(|| panic!("GetManagedObjects replied {objects}, not a{{oa{{sa{{sv}}}}}}"));
    // zbus also lists the intermediate node /org/guestnet1/network, with no
    // interfaces: objects without any are not networks, and not compared.
    let mut paths: Vec<&String> = map
        .iter()
        .filter(|(_, ifaces)| ifaces.as_object().is_none_or(|m| !m.is_empty()))
        .map(|(p, _)| p)
        .collect();
    paths.sort();
    let mut listed = gn.list_networks();
    listed.sort();
    assert_eq!(
        paths,
        listed.iter().collect::<Vec<_>>(),
        "GetManagedObjects and ListNetworks disagree"
    );
    for (net, name, active, persistent) in [
        (&idle, "mo1", false, true),
        (&running, "mo2", true, true),
        (&transient, "mo3", true, false),
    ] {
        let props = map[net.as_str()]
            .get(NETWORK_IFACE)
            .unwrap_or_else(|| panic!("{net} has no {NETWORK_IFACE}: {}", map[net.as_str()]));
        for prop in NETWORK_PROPERTIES {
            let Some(v) = props.get(prop) else {
                panic!("GetManagedObjects: {net} lacks {prop}: {props}");
            };
            // The same value a Get gives.
            assert_eq!(v["data"], gn.prop(net, prop), "{net} {prop}");
        }
        assert_eq!(props["Name"]["data"], name);
        assert_eq!(props["Active"]["data"], active, "{net} Active");
        assert_eq!(props["Persistent"]["data"], persistent, "{net} Persistent");
    }
    let addresses = strings(&map[running.as_str()][NETWORK_IFACE]["Addresses"]["data"]);
    assert_eq!(addresses, Some(vec!["10.77.64.1/24".to_owned()]));

    // gdbus sees the same objects.
    let text = Gdbus::new(&lab).call_ok(
        MANAGER_PATH,
        &format!("{OBJECT_MANAGER}.GetManagedObjects"),
        &[],
    );
    for net in [&idle, &running, &transient] {
        // gdbus names the type of the first key only: `{objectpath '/a': ..., '/b': ...}`
        assert!(
            text.contains(&format!("'{net}': {{'{NETWORK_IFACE}': {{")),
            "{net}: {text}"
        );
    }
    gn.stop(&transient);
    gn.stop(&running);
}

#[test]
fn monitors_see_properties_change_and_networks_come_and_go() {
    root_or_skip!();
    let lab = Lab::new();
    let gn = lab.gn();
    let gd = Gdbus::new(&lab);
    let busctl = busctl_monitor(&lab);
    let gdbus = GdbusMonitor::start(lab.bus.address());
    let mut expect = Expect::new(&busctl, &gdbus);
    let addr = format!("--address={}", lab.bus.address());
    let t = serde_json::Value::Bool(true);
    let f = serde_json::Value::Bool(false);

    let net = gv_object_path(&gd.call_ok(
        MANAGER_PATH,
        &format!("{MANAGER_IFACE}.DefineNetwork"),
        &[&gv_str(&nat("mon1", "gnbrmon1", "10.77.66.1/24"))],
    ));
    expect.object("DefineNetwork", &net, true);

    expect.mark();
    gd.call_ok(&net, &format!("{NETWORK_IFACE}.Start"), &[]);
    expect.changed("Start", &net, "Active", t.clone());

    expect.mark();
    cmd::run_ok(&[
        "busctl",
        &addr,
        "set-property",
        BUS_NAME,
        &net,
        NETWORK_IFACE,
        "Autostart",
        "b",
        "true",
    ]);
    expect.changed(
        "busctl set-property Autostart true",
        &net,
        "Autostart",
        t.clone(),
    );

    expect.mark();
    gd.call_ok(
        &net,
        &format!("{PROPERTIES}.Set"),
        &[&gv_str(NETWORK_IFACE), &gv_str("Autostart"), "<false>"],
    );
    expect.changed(
        "gdbus Properties.Set Autostart false",
        &net,
        "Autostart",
        f.clone(),
    );

    expect.mark();
    gd.call_ok(&net, &format!("{NETWORK_IFACE}.Stop"), &[]);
    expect.changed("Stop", &net, "Active", f.clone());

    expect.mark();
    gd.call_ok(&net, &format!("{NETWORK_IFACE}.Undefine"), &[]);
    expect.object("Undefine", &net, false);

    // Transient from the start: there when created, gone when stopped.
    expect.mark();
    let tmp = gn.create(&nat("mon2", "gnbrmon2", "10.77.67.1/24"));
    expect.object("CreateNetwork", &tmp, true);
    expect.mark();
    gn.stop(&tmp);
    expect.object("Stop of a transient network", &tmp, false);

    // Undefined while running: it stays, no longer persistent, and goes
    // when stopped.
    expect.mark();
    let kept = gn.define(&nat("mon3", "gnbrmon3", "10.77.68.1/24"));
    expect.object("DefineNetwork", &kept, true);
    gn.start(&kept);
    expect.mark();
    gn.undefine(&kept);
    expect.changed(
        "Undefine of a running network",
        &kept,
        "Persistent",
        f.clone(),
    );
    assert!(gn.active(&kept), "Undefine stopped a running network");
    expect.mark();
    gn.stop(&kept);
    expect.object("Stop of an undefined running network", &kept, false);

    expect.check(&lab);
}
