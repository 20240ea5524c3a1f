//! A network's life through the D-Bus API: define, start, stop, undefine;
//! transient networks; autostart and re-adoption across service restarts;
//! conflicts, refused definitions, chosen addresses, and who may do what.

use std::path::PathBuf;

use guestnet_tests::guestnet::expect_error;
use guestnet_tests::lab::{HOST_UPLINK_CIDR, LAN_SUBNET, UPLINK};
use guestnet_tests::service::files_under;
use guestnet_tests::{root_or_skip, Cidr, Lab};

/// The files under the config dir named `NAME.toml`.
fn definition_files(lab: &Lab, name: &str) -> Vec<PathBuf> {
    let file = format!("{name}.toml");
    files_under(lab.service.config_dir())
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|f| f == file.as_str()))
        .collect()
}

fn nat(name: &str, bridge: &str, cidr: &str, autostart: bool) -> String {
    format!(
        r#"
name = "{name}"
mode = "nat"
bridge = "{bridge}"
autostart = {autostart}
[ipv4]
address = "{cidr}"
"#
    )
}

#[test]
fn define_start_stop_undefine() {
    root_or_skip!();
    let lab = Lab::new();
    let (w, host) = (&lab.world, &lab.host);
    let gn = lab.gn();
    assert!(gn.list_networks().is_empty());

    let net = gn.define(&nat("life1", "gnbr1", "10.77.10.1/24", false));
    assert_eq!(gn.list_networks(), std::slice::from_ref(&net));
    assert_eq!(gn.get_network("life1"), net);
    assert_eq!(gn.prop_str(&net, "Name"), "life1");
    assert_eq!(gn.prop_str(&net, "Mode"), "nat");
    assert_eq!(gn.bridge(&net), "gnbr1");
    assert!(!gn.prop_str(&net, "Uuid").is_empty());
    assert!(gn.prop_bool(&net, "Persistent"));
    assert!(!gn.prop_bool(&net, "Autostart"));
    assert!(!gn.active(&net));
    assert_eq!(
        definition_files(&lab, "life1").len(),
        1,
        "no life1.toml in the config dir"
    );
    assert!(!w.has_link(host, "gnbr1"), "defining made the bridge");
    let config = gn.get_config(&net);
    assert!(
        config.contains("life1") && config.contains("10.77.10.1/24"),
        "GetConfig: {config}"
    );

    gn.start(&net);
    assert!(gn.active(&net));
    assert!(gn.addresses(&net).contains(&"10.77.10.1/24".to_owned()));
    assert!(
        w.bridges(host).contains("gnbr1"),
        "no bridge gnbr1 after Start"
    );
    assert_eq!(w.ipv4_addrs(host, "gnbr1"), ["10.77.10.1/24"]);
    let table = lab
        .guestnet_table()
        .expect("no nftables table inet guestnet in the host after Start");
    assert!(
        table.contains("gnbr1") || table.contains("10.77.10.0/24"),
        "{table}"
    );

    gn.stop(&net);
    assert!(!gn.active(&net));
    assert!(!w.has_link(host, "gnbr1"), "the bridge outlived Stop");
    if let Some(table) = lab.guestnet_table() {
        assert!(
            !table.contains("gnbr1") && !table.contains("10.77.10."),
            "rules for the stopped network remain:\n{table}"
        );
    }
    assert!(
        gn.prop_bool(&net, "Persistent"),
        "a stopped definition stays"
    );

    gn.undefine(&net);
    expect_error(gn.try_get_network("life1"), "NoSuchNetwork");
    assert!(gn.list_networks().is_empty());
    assert!(
        definition_files(&lab, "life1").is_empty(),
        "life1.toml outlived Undefine"
    );
}

#[test]
fn redundant_and_clashing_calls_are_refused_by_name() {
    root_or_skip!();
    let lab = Lab::new();
    let gn = lab.gn();
    let net = gn.define(&nat("dup1", "gnbr1", "10.77.14.1/24", false));
    expect_error(
        gn.try_define(&nat("dup1", "gnbr2", "10.77.15.1/24", false)),
        "AlreadyExists",
    );
    expect_error(gn.try_stop(&net), "NotActive");
    gn.start(&net);
    expect_error(gn.try_start(&net), "AlreadyActive");
    expect_error(gn.try_get_network("nosuch"), "NoSuchNetwork");
    gn.stop(&net);
}

#[test]
fn update_changes_the_definition() {
    root_or_skip!();
    let lab = Lab::new();
    let gn = lab.gn();
    let net = gn.define(&nat("upd1", "gnbr1", "10.77.16.1/24", false));
    gn.update(&net, &nat("upd1", "gnbr1", "10.77.17.1/24", true));
    let config = gn.get_config(&net);
    assert!(
        config.contains("10.77.17.1/24"),
        "GetConfig after Update: {config}"
    );
    assert!(gn.prop_bool(&net, "Autostart"));
    gn.start(&net);
    assert_eq!(lab.world.ipv4_addrs(&lab.host, "gnbr1"), ["10.77.17.1/24"]);
    let file = &definition_files(&lab, "upd1")[0];
    let on_disk = std::fs::read_to_string(file).unwrap();
    assert!(
        on_disk.contains("10.77.17.1/24"),
        "{}: {on_disk}",
        file.display()
    );
}

#[test]
fn autostart_networks_are_up_after_a_service_restart() {
    root_or_skip!();
    let mut lab = Lab::new();
    let gn = lab.gn();
    let a1 = gn.define(&nat("auto1", "gnbra1", "10.77.11.1/24", true));
    gn.start(&a1);
    gn.define(&nat("auto2", "gnbra2", "10.77.12.1/24", true)); // not started
    gn.define(&nat("pers1", "gnbrp1", "10.77.13.1/24", false)); // not started

    lab.service.stop();
    assert!(
        lab.world.has_link(&lab.host, "gnbra1"),
        "a graceful stop of the service must leave running networks as they are"
    );
    lab.service.start_again();

    let gn = lab.gn();
    let a1 = gn.get_network("auto1");
    let a2 = gn.get_network("auto2");
    let p1 = gn.get_network("pers1");
    assert!(gn.active(&a1), "auto1 is not active after the restart");
    assert!(gn.active(&a2), "autostart network auto2 was not started");
    assert!(!gn.active(&p1), "pers1 has no autostart but was started");
    assert!(
        gn.prop_bool(&p1, "Persistent"),
        "definitions survive a restart"
    );
    assert_eq!(gn.list_networks().len(), 3);
    assert_eq!(
        lab.world.bridges(&lab.host),
        ["gnbra1", "gnbra2"].map(String::from).into_iter().collect(),
        "one bridge per active network, no duplicate"
    );
    assert_eq!(lab.world.ipv4_addrs(&lab.host, "gnbra1"), ["10.77.11.1/24"]);
    assert!(lab.guestnet_table().is_some());
}

#[test]
fn a_running_network_is_readopted_after_a_restart() {
    root_or_skip!();
    let mut lab = Lab::new();
    let gn = lab.gn();
    let net = gn.define(&nat("run1", "gnbr1", "10.77.18.1/24", false));
    gn.start(&net);
    lab.service.restart();

    let gn = lab.gn();
    let net = gn.get_network("run1");
    assert!(
        gn.active(&net),
        "a running network must be re-adopted after a restart"
    );
    assert_eq!(lab.world.ipv4_addrs(&lab.host, "gnbr1"), ["10.77.18.1/24"]);
    gn.stop(&net);
    assert!(
        !lab.world.has_link(&lab.host, "gnbr1"),
        "the re-adopted bridge outlived Stop"
    );
}

#[test]
fn definitions_and_running_networks_survive_a_crash() {
    root_or_skip!();
    let mut lab = Lab::new();
    let gn = lab.gn();
    let net = gn.define(&nat("crash1", "gnbr1", "10.77.19.1/24", false));
    gn.start(&net);
    gn.define(&nat("crash2", "gnbr2", "10.77.21.1/24", false));
    lab.service.sigkill();
    lab.service.start_again();

    let gn = lab.gn();
    let net = gn.get_network("crash1");
    assert!(gn.prop_bool(&net, "Persistent"));
    assert!(
        gn.active(&net),
        "a running network must be re-adopted after a crash"
    );
    assert!(!gn.active(&gn.get_network("crash2")));
    gn.stop(&net);
    assert!(!lab.world.has_link(&lab.host, "gnbr1"));
}

#[test]
fn a_transient_network_is_active_at_once_and_gone_after_stop() {
    root_or_skip!();
    let lab = Lab::new();
    let gn = lab.gn();
    let before = files_under(lab.service.config_dir());
    let net = gn.create(&nat("tmp1", "gnbrt1", "10.77.22.1/24", false));
    assert!(gn.active(&net));
    assert!(!gn.prop_bool(&net, "Persistent"));
    assert!(lab.world.bridges(&lab.host).contains("gnbrt1"));
    assert_eq!(
        files_under(lab.service.config_dir()),
        before,
        "a transient network wrote a definition"
    );
    assert_eq!(gn.get_network("tmp1"), net);

    gn.stop(&net);
    expect_error(gn.try_get_network("tmp1"), "NoSuchNetwork");
    assert!(!gn.list_networks().contains(&net));
    assert!(!lab.world.has_link(&lab.host, "gnbrt1"));
}

#[test]
fn overlapping_addresses_conflict_on_start() {
    root_or_skip!();
    let lab = Lab::new();
    let gn = lab.gn();
    let o1 = gn.define(&nat("over1", "gnbro1", "10.77.20.1/24", false));
    let o2 = gn.define(&nat("over2", "gnbro2", "10.77.20.129/25", false));
    gn.start(&o1);
    let msg = expect_error(gn.try_start(&o2), "Conflict");
    assert!(
        msg.contains("over1") || msg.contains("10.77.20."),
        "the Conflict message should name the clash: {msg}"
    );
    assert!(!gn.active(&o2));
    assert!(
        !lab.world.has_link(&lab.host, "gnbro2"),
        "a refused Start left its bridge"
    );
    assert!(gn.active(&o1));
    assert_eq!(lab.world.ipv4_addrs(&lab.host, "gnbro1"), ["10.77.20.1/24"]);
}

#[test]
fn a_bridge_that_is_not_ours_conflicts() {
    root_or_skip!();
    let lab = Lab::new();
    let (w, host) = (&lab.world, &lab.host);
    w.ip(host, "link add gnbrx type bridge");
    let gn = lab.gn();
    let toml = nat("foreign1", "gnbrx", "10.77.23.1/24", false);
    // refused when defined, or else when started
    match gn.try_define(&toml) {
        Err(e) => assert_eq!(e.name, "org.guestnet1.Error.Conflict", "{e}"),
        Ok(path) => {
            expect_error(gn.try_start(&path), "Conflict");
            assert!(!gn.active(&path));
        }
    }
    assert!(w.has_link(host, "gnbrx"), "the foreign bridge was deleted");
    assert!(
        w.ipv4_addrs(host, "gnbrx").is_empty(),
        "the foreign bridge was changed"
    );
}

#[test]
fn bad_definitions_are_refused_whole() {
    root_or_skip!();
    let lab = Lab::new();
    let gn = lab.gn();
    let files_before = files_under(lab.service.config_dir());
    let links_before = lab.world.links(&lab.host);
    let bad = [
        (
            "a bridge name of 16 bytes",
            nat("bad1", "gnbr0123456789ab", "10.77.30.1/24", false),
        ),
        (
            "a DHCP range outside the subnet",
            r#"
name = "bad2"
mode = "nat"
bridge = "gnbrbad2"
[ipv4]
address = "10.77.31.1/24"
dhcp = { start = "10.88.0.10", end = "10.88.0.20" }
"#
            .to_owned(),
        ),
        (
            "an unknown key",
            r#"
name = "bad3"
mode = "nat"
bridge = "gnbrbad3"
colour = "blue"
"#
            .to_owned(),
        ),
        (
            "no name",
            "mode = \"nat\"\nbridge = \"gnbrbad4\"\n".to_owned(),
        ),
        (
            "a malformed address",
            nat("bad5", "gnbrbad5", "10.77.300.1/24", false),
        ),
        (
            "text that is not TOML",
            "name = \"bad6\nmode = [".to_owned(),
        ),
        (
            "bridged with neither an interface nor a bridge",
            "name = \"bad7\"\nmode = \"bridged\"\n".to_owned(),
        ),
    ];
    for (what, toml) in &bad {
        let msg = expect_error(gn.try_define(toml), "InvalidConfig");
        assert!(
            !msg.trim().is_empty(),
            "{what}: InvalidConfig without a message"
        );
        expect_error(gn.try_create(toml), "InvalidConfig");
    }
    assert!(gn.list_networks().is_empty(), "{:?}", gn.list_networks());
    assert_eq!(
        files_under(lab.service.config_dir()),
        files_before,
        "a refused definition left a file"
    );
    assert_eq!(
        lab.world.links(&lab.host),
        links_before,
        "a refused definition left a link"
    );
}

#[test]
fn an_unknown_mode_is_refused() {
    root_or_skip!();
    let lab = Lab::new();
    let gn = lab.gn();
    let toml = "name = \"warp1\"\nmode = \"warp\"\n";
    let msg = expect_error(gn.try_define(toml), "UnknownMode");
    assert!(msg.contains("warp"), "{msg}");
    expect_error(gn.try_create(toml), "UnknownMode");
    assert!(gn.list_networks().is_empty());
}

#[test]
fn a_network_without_an_address_gets_a_free_private_24() {
    root_or_skip!();
    // The host also owns 192.168.100.1/24 and libvirt's usual 192.168.122.1/24.
    let taken = [LAN_SUBNET, "192.168.100.1/24", "192.168.122.1/24"];
    let lab = Lab::build(|w, host, _lan| {
        w.ip(host, &format!("addr add 192.168.100.1/24 dev {UPLINK}"));
        w.ip(host, &format!("addr add 192.168.122.1/24 dev {UPLINK}"));
    });
    assert!(lab
        .world
        .ipv4_addrs(&lab.host, UPLINK)
        .contains(&HOST_UPLINK_CIDR.to_owned()));
    let gn = lab.gn();
    let mut chosen: Vec<Cidr> = Vec::new();
    for (name, bridge) in [("free1", "gnbrf1"), ("free2", "gnbrf2")] {
        let net = gn.define(&format!(
            "name = \"{name}\"\nmode = \"nat\"\nbridge = \"{bridge}\"\n"
        ));
        gn.start(&net);
        let v4: Vec<Cidr> = gn
            .addresses(&net)
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        assert_eq!(v4.len(), 1, "{name}: Addresses {:?}", gn.addresses(&net));
        let c = v4[0];
        assert_eq!(c.prefix, 24, "{name} got {c}");
        assert!(c.is_private(), "{name} got {c}, not a private range");
        for t in taken {
            let t: Cidr = t.parse().unwrap();
            assert!(
                !c.overlaps(&t),
                "{name} got {c}, which overlaps the host's {t}"
            );
        }
        for other in &chosen {
            assert!(!c.overlaps(other), "{name} got {c}, which overlaps {other}");
        }
        assert!(
            lab.world
                .ipv4_addrs(&lab.host, bridge)
                .contains(&c.to_string()),
            "{bridge} does not hold {c}"
        );
        chosen.push(c);
    }
}

#[test]
fn unprivileged_callers_may_read_but_not_change() {
    root_or_skip!();
    let lab = Lab::new();
    let gn = lab.gn();
    let nobody = gn.as_uid(65534);
    let net = gn.define(&nat("priv1", "gnbr1", "10.77.24.1/24", false));

    assert_eq!(nobody.list_networks(), std::slice::from_ref(&net));
    assert_eq!(nobody.prop_str(&net, "Name"), "priv1");
    let denied = "org.freedesktop.DBus.Error.AccessDenied";
    let e = nobody
        .try_define(&nat("priv2", "gnbr2", "10.77.25.1/24", false))
        .unwrap_err();
    assert_eq!(e.name, denied, "{e}");
    let e = nobody.try_start(&net).unwrap_err();
    assert_eq!(e.name, denied, "{e}");
    let e = nobody.try_undefine(&net).unwrap_err();
    assert_eq!(e.name, denied, "{e}");
    assert!(!gn.active(&net));
    assert_eq!(gn.list_networks(), [net]);
}

#[test]
fn the_manager_reports_its_version_and_modes() {
    root_or_skip!();
    let lab = Lab::new();
    let gn = lab.gn();
    let version = gn.manager_prop("Version");
    assert!(
        version.as_str().is_some_and(|v| !v.is_empty()),
        "Version: {version}"
    );
    let modes = guestnet_tests::guestnet::strings(&gn.manager_prop("Modes")).expect("Modes: as");
    for m in ["nat", "routed", "isolated", "bridged"] {
        assert!(
            modes.iter().any(|x| x == m),
            "mode {m} not loaded: {modes:?}"
        );
    }
}

/// Autostart set on a running network stays set across a restart of
/// guestnetd. Caught: the runtime record, which a restarted guestnetd rolls
/// the definition forward to, still carried the old autostart.
#[test]
fn autostart_set_while_running_survives_a_restart() {
    root_or_skip!();
    let mut lab = Lab::new();
    let gn = lab.gn();
    let net = gn.define(&nat("live1", "gnbrl1", "10.77.14.1/24", false));
    gn.start(&net);
    gn.busctl()
        .try_set_property(&net, "org.guestnet1.Network", "Autostart", "b", "true")
        .expect("setting Autostart");
    lab.service.restart();
    let gn = lab.gn();
    let net = gn.get_network("live1");
    assert!(
        gn.prop_bool(&net, "Autostart"),
        "Autostart went back to false across the restart"
    );
}
