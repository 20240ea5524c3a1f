//! The running guestnetd's introspection matches the committed XML
//! (`dbus/data/org.guestnet1.Manager.xml`, `org.guestnet1.Network.xml`)
//! member for member: methods (name, argument types and directions in
//! order), signals (name, argument types), properties (name, type, access).
//! Comments, annotations and argument names are not compared. On a mismatch
//! the test prints what only the service has, what only the file has, and
//! what differs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use guestnet_tests::guestnet::{MANAGER_IFACE, MANAGER_PATH, NETWORK_IFACE};
use guestnet_tests::{cmd, root_or_skip, Lab};

const OBJECT_MANAGER: &str = "org.freedesktop.DBus.ObjectManager";

/// One interface: `"method Start"` → `"method Start()"`, and so on; the
/// value is the member's canonical form, all that is compared.
type Members = BTreeMap<String, String>;

fn committed(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dbus/data")
        .join(file)
}

fn parse<'a>(xml: &'a str, origin: &str) -> roxmltree::Document<'a> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(xml, options)
        .unwrap_or_else(|e| panic!("{origin} is not well-formed XML: {e}\n{xml}"))
}

/// The names of the interfaces the node of `xml` implements.
fn interface_names(xml: &str, origin: &str) -> Vec<String> {
    let doc = parse(xml, origin);
    doc.root_element()
        .children()
        .filter(|n| n.has_tag_name("interface"))
        .filter_map(|n| n.attribute("name").map(str::to_owned))
        .collect()
}

/// The members of interface `name` in `xml`, or None when it has no such
/// interface.
fn members(xml: &str, origin: &str, name: &str) -> Option<Members> {
    let doc = parse(xml, origin);
    let iface = doc
        .root_element()
        .children()
        .find(|n| n.has_tag_name("interface") && n.attribute("name") == Some(name))?;
    let mut out = Members::new();
    for m in iface.children().filter(|n| n.is_element()) {
        let kind = m.tag_name().name();
        let Some(member) = m.attribute("name") else {
            panic!("{origin}: a <{kind}> of {name} has no name");
        };
        let args = || m.children().filter(|a| a.has_tag_name("arg"));
        let arg_type = |a: roxmltree::Node| {
            a.attribute("type")
                .unwrap_or_else(|| panic!("{origin}: an argument of {kind} {member} has no type"))
                .to_owned()
        };
        let canonical = match kind {
            "method" => {
                let args: Vec<String> = args()
                    .map(|a| {
                        format!(
                            "{} {}",
                            a.attribute("direction").unwrap_or("in"),
                            arg_type(a)
                        )
                    })
                    .collect();
                format!("method {member}({})", args.join(", "))
            }
            "signal" => {
                let args: Vec<String> = args().map(arg_type).collect();
                format!("signal {member}({})", args.join(", "))
            }
            "property" => format!(
                "property {member}: {} {}",
                m.attribute("type")
                    .unwrap_or_else(|| panic!("{origin}: property {member} has no type")),
                m.attribute("access")
                    .unwrap_or_else(|| panic!("{origin}: property {member} has no access")),
            ),
            // annotations of the interface itself
            _ => continue,
        };
        let key = format!("{kind} {member}");
        if out.insert(key.clone(), canonical).is_some() {
            panic!("{origin}: {key} appears twice in {name}");
        }
    }
    Some(out)
}

/// What differs between the service's members and the file's, one line
/// each; empty when they match.
fn diff(service: &Members, file: &Members) -> Vec<String> {
    let mut lines = Vec::new();
    for (key, s) in service {
        match file.get(key) {
            None => lines.push(format!("only in the service: {s}")),
            Some(f) if f != s => lines.push(format!(
                "differs: the service has {s}\n         the file has    {f}"
            )),
            Some(_) => {}
        }
    }
    for (key, f) in file {
        if !service.contains_key(key) {
            lines.push(format!("only in the file:    {f}"));
        }
    }
    lines
}

/// Panics with a readable diff unless interface `iface` of the service's
/// introspection `service_xml` matches the committed `file`.
#[track_caller]
fn assert_matches_file(service_xml: &str, object: &str, iface: &str, file: &str) {
    let path = committed(file);
    let file_xml = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let origin = path.display().to_string();
    assert_eq!(
        interface_names(&file_xml, &origin),
        [iface],
        "{origin} should describe exactly the interface {iface}"
    );
    let file_members = members(&file_xml, &origin, iface).expect("checked above");
    let service_members = members(service_xml, &format!("the service's {object}"), iface)
        .unwrap_or_else(|| {
            panic!(
                "the service's {object} does not implement {iface}; it has {:?}",
                interface_names(service_xml, object)
            )
        });
    let lines = diff(&service_members, &file_members);
    assert!(
        lines.is_empty(),
        "{iface}: the running guestnetd ({object}) and {file} differ (change both together):\n  {}\n\
         --- the service's introspection of {iface} ---\n{}",
        lines.join("\n  "),
        service_members
            .values()
            .map(|v| format!("  {v}\n"))
            .collect::<String>()
    );
}

/// `busctl introspect --xml-interface` of `path`.
fn introspect(lab: &Lab, path: &str) -> String {
    cmd::run_ok(&[
        "busctl",
        &format!("--address={}", lab.bus.address()),
        "introspect",
        "--xml-interface",
        "org.guestnet1",
        path,
    ])
}

#[test]
fn the_service_matches_the_committed_introspection() {
    root_or_skip!();
    let lab = Lab::new();
    let gn = lab.gn();

    let manager = introspect(&lab, MANAGER_PATH);
    assert_matches_file(
        &manager,
        MANAGER_PATH,
        MANAGER_IFACE,
        "org.guestnet1.Manager.xml",
    );
    let ifaces = interface_names(&manager, MANAGER_PATH);
    assert!(
        ifaces.iter().any(|i| i == OBJECT_MANAGER),
        "{MANAGER_PATH} does not implement {OBJECT_MANAGER}; it has {ifaces:?}"
    );
    let om = members(&manager, MANAGER_PATH, OBJECT_MANAGER).expect("checked above");
    for m in [
        "method GetManagedObjects(out a{oa{sa{sv}}})",
        "signal InterfacesAdded(o, a{sa{sv}})",
        "signal InterfacesRemoved(o, as)",
    ] {
        assert!(
            om.values().any(|v| v == m),
            "{OBJECT_MANAGER} on {MANAGER_PATH} lacks {m}: {om:?}"
        );
    }

    // A defined network, and a running one: the same interface.
    let defined = gn.define(
        "name = \"intro1\"\nmode = \"nat\"\nbridge = \"gnbri1\"\n\
         [ipv4]\naddress = \"10.77.50.1/24\"\n",
    );
    let running = gn.create(
        "name = \"intro-2.x\"\nmode = \"nat\"\nbridge = \"gnbri2\"\n\
         [ipv4]\naddress = \"10.77.51.1/24\"\n",
    );
    for net in [&defined, &running] {
        let xml = introspect(&lab, net);
        assert_matches_file(&xml, net, NETWORK_IFACE, "org.guestnet1.Network.xml");
        assert!(
            !interface_names(&xml, net)
                .iter()
                .any(|i| i == MANAGER_IFACE),
            "{net} also claims {MANAGER_IFACE}"
        );
    }
    gn.stop(&running);
}

#[test]
fn a_mismatch_is_reported_member_by_member() {
    // No root needed: the comparison itself, on the committed file and a
    // changed copy.
    let path = committed("org.guestnet1.Network.xml");
    let file = std::fs::read_to_string(&path).unwrap();
    let changed = file
        .replace(
            "<property name=\"Active\" type=\"b\" access=\"read\"/>",
            "<property name=\"Active\" type=\"s\" access=\"read\"/>",
        )
        .replace(
            "<method name=\"GetConfig\">",
            "<method name=\"GetConfiguration\">",
        )
        .replace(
            "<arg name=\"timeout_ms\" type=\"u\" direction=\"in\"/>",
            "<arg name=\"timeout\" type=\"u\" direction=\"in\"/>",
        );
    let a = members(&file, "file", NETWORK_IFACE).unwrap();
    let b = members(&changed, "changed", NETWORK_IFACE).unwrap();
    assert!(diff(&a, &a).is_empty());
    let lines = diff(&b, &a);
    assert_eq!(
        lines,
        [
            "only in the service: method GetConfiguration(out s)".to_owned(),
            "differs: the service has property Active: s read\n         \
             the file has    property Active: b read"
                .to_owned(),
            "only in the file:    method GetConfig(out s)".to_owned(),
        ],
        "an argument's name is not compared; the rest is"
    );
}
