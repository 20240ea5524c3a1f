//! Who may change networks, decided by a real polkitd on the test's bus:
//! guestnet's shipped actions installed where polkitd reads them, a JS rule
//! of the test's own granting `org.guestnet1.manage-networks` to the members
//! of a test group, and calls made as users of the test's own. Without any
//! polkitd, only root may change anything, and the refusal says so.
//!
//! The polkit tests install files in machine-wide directories, so they hold
//! [`PolkitLock`] (a file lock) from before they install anything until
//! everything is removed.

use guestnet_tests::bus::BusOptions;
use guestnet_tests::guest::{attach, tap_opts, try_attach, try_attach_as, try_detach, Opt};
use guestnet_tests::guestnet::{strings, NETWORK_IFACE, NETWORK_PROPERTIES};
use guestnet_tests::lab::nat_definition;
use guestnet_tests::polkit::{self, expect_denied, PolkitLock, Polkitd, ATTACH, DENIED, MANAGE};
use guestnet_tests::users::{TestGroup, TestUser};
use guestnet_tests::{root_or_skip, BusError, Guestnet, Lab};

/// Every read-only call works for `c`, on network `net` named `name`.
#[track_caller]
fn reads_work(c: &Guestnet, who: &str, net: &str, name: &str) {
    assert!(
        c.list_networks().iter().any(|p| p == net),
        "{who}: ListNetworks lacks {net}"
    );
    assert_eq!(c.get_network(name), net, "{who}: GetNetwork");
    for prop in NETWORK_PROPERTIES {
        c.prop(net, prop);
    }
    assert_eq!(c.prop_str(net, "Name"), name, "{who}: Name");
    let all = c.call(
        net,
        "org.freedesktop.DBus.Properties",
        "GetAll",
        "s",
        &[NETWORK_IFACE],
    );
    for prop in NETWORK_PROPERTIES {
        assert!(all.get(prop).is_some(), "{who}: GetAll lacks {prop}: {all}");
    }
    c.list_leases(net);
    c.call(net, NETWORK_IFACE, "ListGuests", "", &[]);
    assert!(c.get_config(net).contains(name), "{who}: GetConfig");
    assert!(
        c.manager_prop("Version").as_str().is_some(),
        "{who}: Version"
    );
    assert!(strings(&c.manager_prop("Modes")).is_some(), "{who}: Modes");
    let e = c
        .try_wait_for_lease(net, "52:54:00:00:00:01", 1)
        .unwrap_err();
    assert_eq!(
        e.name, "org.guestnet1.Error.Timeout",
        "{who}: WaitForLease is read-only and should time out, not be refused: {e}"
    );
}

/// Sets Autostart as `c` (through dbus-send, keeping the error's name).
fn set_autostart(c: &Guestnet, net: &str, on: bool) -> Result<(), BusError> {
    c.busctl()
        .try_set_property(net, NETWORK_IFACE, "Autostart", "b", &on.to_string())
}

#[test]
fn a_group_rule_grants_its_members_and_polkit_refuses_everyone_else() {
    root_or_skip!();
    // Dropped in reverse: polkitd and the lab first, the lock last.
    let lock = PolkitLock::acquire();
    let _actions = polkit::install_actions(&lock);
    let group = TestGroup::create();
    let member = TestUser::in_groups(&[&group]);
    let outsider = TestUser::new();
    let lab = polkit::lab();
    let pk = Polkitd::start(&lab.world, &lab.host, lab.bus.address());
    let root = lab.gn();
    // Each with its own primary group and no supplementary groups: the
    // member is in the group only in the user database, where polkit looks.
    let m = root.as_user(member.uid(), member.gid());
    let o = root.as_user(outsider.uid(), outsider.gid());

    // Root needs no rule (and polkit is not even asked).
    let net = root.define(&nat_definition("pk1", "gnbrpk1", "10.77.40.1/24"));
    root.start(&net);
    assert!(root.active(&net));
    root.stop(&net);

    // Before the rule, polkit says no to both: no session is active, and
    // the actions' allow_any is "no".
    for (who, c) in [("the member", &m), ("the outsider", &o)] {
        let msg = expect_denied(
            c.try_start(&net),
            &format!("Start by {who} before the rule"),
        );
        assert!(
            msg.contains(MANAGE),
            "a refusal by polkit should name the action {MANAGE}: {msg:?}"
        );
        assert!(
            !msg.contains("only root"),
            "polkitd runs, yet the service says there is no polkit: {msg:?}\n\
             --- polkitd log ---\n{}",
            pk.log_tail(20)
        );
    }
    assert!(!root.active(&net));

    // The rule; polkitd reloads its rules when the directory changes. Poll
    // with the member's own Start until it is let through.
    let rule = polkit::install_rule(&lock, &polkit::group_rule(MANAGE, group.name()));
    if let Err(e) = polkit::once_granted(|| m.try_start(&net)) {
        panic!(
            "Start by the member of {} with {} in place: {e}\n--- polkitd log ---\n{}",
            group.name(),
            rule.path().display(),
            pk.log_tail(20)
        );
    }
    assert!(
        root.active(&net),
        "the member's Start succeeded, yet pk1 is not active"
    );

    // The outsider still may change nothing.
    expect_denied(o.try_stop(&net), "Stop by the outsider");
    assert!(root.active(&net));
    expect_denied(
        o.try_define(&nat_definition("pk2", "gnbrpk2", "10.77.41.1/24")),
        "DefineNetwork by the outsider",
    );
    expect_denied(
        o.try_create(&nat_definition("pk3", "gnbrpk3", "10.77.42.1/24")),
        "CreateNetwork by the outsider",
    );
    expect_denied(
        o.try_update(&net, &nat_definition("pk1", "gnbrpk1", "10.77.43.1/24")),
        "Update by the outsider",
    );
    expect_denied(o.try_undefine(&net), "Undefine by the outsider");
    let msg = expect_denied(
        set_autostart(&o, &net, true),
        "Autostart set by the outsider",
    );
    assert!(
        msg.contains(MANAGE),
        "a refusal by polkit should name the action {MANAGE}: {msg:?}"
    );
    assert!(!root.prop_bool(&net, "Autostart"));
    assert_eq!(root.list_networks(), std::slice::from_ref(&net));

    // The member may do all of it.
    m.stop(&net);
    assert!(!root.active(&net));
    set_autostart(&m, &net, true).unwrap_or_else(|e| panic!("member sets Autostart: {e}"));
    assert!(root.prop_bool(&net, "Autostart"));
    m.update(&net, &nat_definition("pk1", "gnbrpk1", "10.77.44.1/24"));
    assert!(root.get_config(&net).contains("10.77.44.1/24"));
    let n2 = m.define(&nat_definition("pk2", "gnbrpk2", "10.77.41.1/24"));
    m.undefine(&n2);
    let t = m.create(&nat_definition("pk3", "gnbrpk3", "10.77.42.1/24"));
    assert!(root.active(&t));
    m.stop(&t);
    assert_eq!(root.list_networks(), std::slice::from_ref(&net));

    // The rule grants managing networks, not attaching guests: a second
    // action, refused by name until a rule grants it too.
    let detach =
        |c: &Guestnet| c.try_call(&net, NETWORK_IFACE, "DetachGuest", "s", &["gntnosuch0"]);
    for (who, c) in [("the member", &m), ("the outsider", &o)] {
        let msg = expect_denied(detach(c), &format!("DetachGuest by {who}"));
        assert!(
            msg.contains(ATTACH),
            "a refusal by polkit should name the action {ATTACH}: {msg:?}"
        );
    }
    let attach_rule = polkit::install_rule(&lock, &polkit::group_rule(ATTACH, group.name()));
    // Any answer but AccessDenied (NotActive here: pk1 is stopped) is past
    // polkit.
    let past_polkit = polkit::once_granted(|| detach(&m));
    if let Err(e) = &past_polkit {
        assert!(
            e.name != DENIED,
            "DetachGuest by the member with {} in place: {e}\n--- polkitd log ---\n{}",
            attach_rule.path().display(),
            pk.log_tail(20)
        );
    }
    assert!(
        past_polkit.is_err(),
        "DetachGuest of a port that does not exist succeeded: {past_polkit:?}"
    );
    expect_denied(
        detach(&o),
        "DetachGuest by the outsider with the rules in place",
    );
    drop(attach_rule);

    // Read-only calls work for everyone, the rule or not.
    m.start(&net);
    for (who, c) in [("the member", &m), ("the outsider", &o), ("root", &root)] {
        reads_work(c, who, &net, "pk1");
    }
    m.stop(&net);

    // Root still works, with the rule in place.
    root.start(&net);
    root.stop(&net);
    root.undefine(&net);
    assert!(root.list_networks().is_empty());
}

#[test]
fn without_polkitd_only_root_may_change_networks() {
    root_or_skip!();
    let nobody = 65534;
    // The test bus as it is (polkit's name is not even allowed on it), and
    // a bus that would let polkitd in but where none runs.
    for (what, options) in [
        ("no polkit on the bus", BusOptions::default()),
        (
            "polkit's bus policy but no polkitd",
            BusOptions {
                includes: vec![polkit::BUS_POLICY.into()],
            },
        ),
    ] {
        let lab = Lab::with_bus(&options);
        let root = lab.gn();
        let n = root.as_uid(nobody);
        let net = root.define(&nat_definition("np1", "gnbrnp1", "10.77.45.1/24"));

        let check = |msg: &str, call: &str| {
            assert!(
                msg.contains("only root may"),
                "{what}: {call} by uid {nobody}: the refusal should say that only root may \
                 (no polkit answers): {msg:?}"
            );
        };
        check(&expect_denied(n.try_start(&net), "Start"), "Start");
        check(
            &expect_denied(
                n.try_define(&nat_definition("np2", "gnbrnp2", "10.77.46.1/24")),
                "DefineNetwork",
            ),
            "DefineNetwork",
        );
        check(
            &expect_denied(
                n.try_create(&nat_definition("np3", "gnbrnp3", "10.77.47.1/24")),
                "CreateNetwork",
            ),
            "CreateNetwork",
        );
        check(&expect_denied(n.try_undefine(&net), "Undefine"), "Undefine");
        check(
            &expect_denied(set_autostart(&n, &net, true), "setting Autostart"),
            "setting Autostart",
        );
        assert!(!root.active(&net));
        assert!(!root.prop_bool(&net, "Autostart"));
        assert_eq!(root.list_networks(), std::slice::from_ref(&net));

        reads_work(&n, "uid 65534", &net, "np1");

        root.start(&net);
        assert!(root.active(&net), "{what}: root's Start");
        set_autostart(&root, &net, true).unwrap_or_else(|e| panic!("{what}: root: {e}"));
        root.stop(&net);
        root.undefine(&net);
    }
}

/// The user a tap belongs to, as the kernel says (`ip -d link`): a name or
/// a uid.
fn tap_user(lab: &Lab, tap: &str) -> String {
    let info = lab
        .world
        .ip_json(&lab.host, &format!("-d link show dev {tap}"));
    info[0]["linkinfo"]["info_data"]["user"]
        .to_string()
        .trim_matches('"')
        .to_owned()
}

/// A tap is its caller's unless a caller allowed to manage networks names
/// another owner. Caught on the code before the fix: a tap without `owner`
/// belonged to root (uid 0), an `attach-guests` user could make a tap for
/// any other user, and `owner` 2^32 (a `t`) wrapped to 0 and made root's
/// tap.
#[test]
fn a_tap_is_its_callers_and_only_a_manager_names_another_owner() {
    root_or_skip!();
    let lock = PolkitLock::acquire();
    let _actions = polkit::install_actions(&lock);
    let attachers = TestGroup::create();
    let managers = TestGroup::create();
    let att = TestUser::in_groups(&[&attachers]);
    let mgr = TestUser::in_groups(&[&attachers, &managers]);
    let lab = polkit::lab();
    let pk = Polkitd::start(&lab.world, &lab.host, lab.bus.address());
    let root = lab.gn();
    let net = root.define(&nat_definition("pt1", "gnbrpt1", "10.77.48.1/24"));
    root.start(&net);
    let _attach_rule = polkit::install_rule(&lock, &polkit::group_rule(ATTACH, attachers.name()));
    let _manage_rule = polkit::install_rule(&lock, &polkit::group_rule(MANAGE, managers.name()));
    let as_att = (att.uid(), att.gid());
    let as_mgr = (mgr.uid(), mgr.gid());

    // No owner: the caller's tap. Polled until polkitd has read the rules.
    let tap =
        polkit::once_granted(|| try_attach_as(as_att, &root, &net, "vm1", &tap_opts(None, None)))
            .unwrap_or_else(|e| {
                panic!(
                    "AttachGuest of a tap by {} (attach-guests): {e}\n--- polkitd log ---\n{}",
                    att.name(),
                    pk.log_tail(20)
                )
            });
    let user = tap_user(&lab, &tap);
    assert!(
        user == att.name() || user == att.uid().to_string(),
        "a tap made without `owner` by {} ({}) belongs to {user:?}, not its caller",
        att.name(),
        att.uid()
    );
    // Its own uid, named, is fine too.
    let own = try_attach_as(as_att, &root, &net, "vm2", &tap_opts(Some(att.uid()), None))
        .unwrap_or_else(|e| panic!("a tap for the caller's own uid, named: {e}"));

    // Another uid (a manager's, or root's) is refused, and no tap is made.
    let guests_before = root.call(&net, NETWORK_IFACE, "ListGuests", "", &[]);
    for other in [mgr.uid(), 0] {
        let msg = expect_denied(
            try_attach_as(as_att, &root, &net, "vm3", &tap_opts(Some(other), None)),
            &format!("a tap for uid {other} by an attach-guests user"),
        );
        assert!(
            msg.contains(MANAGE) && msg.contains(&other.to_string()),
            "the refusal should name the uid and {MANAGE}: {msg:?}"
        );
    }
    assert_eq!(
        root.call(&net, NETWORK_IFACE, "ListGuests", "", &[]),
        guests_before,
        "a refused AttachGuest left a port behind"
    );

    // A manager may hand a tap to another user.
    let given = try_attach_as(as_mgr, &root, &net, "vm4", &tap_opts(Some(att.uid()), None))
        .unwrap_or_else(|e| panic!("a manager's tap for another uid: {e}"));
    let user = tap_user(&lab, &given);
    assert!(
        user == att.name() || user == att.uid().to_string(),
        "a tap the manager made for {} belongs to {user:?}",
        att.uid()
    );

    // An owner no uid_t holds is refused, even from root, never wrapped.
    for wide in [1u64 << 32, (1u64 << 32) + u64::from(att.uid())] {
        match try_attach(
            &root,
            &net,
            "vm5",
            &[("kind", Opt::S("tap")), ("owner", Opt::T(wide))],
        ) {
            Err(e) if e.name == "org.freedesktop.DBus.Error.InvalidArgs" => {
                assert!(e.message.contains("owner"), "{e}");
            }
            other => panic!("a tap for owner {wide} should be InvalidArgs, got {other:?}"),
        }
    }
    for tap in [tap, own, given] {
        root.call(&net, NETWORK_IFACE, "DetachGuest", "s", &[&tap]);
    }
    root.stop(&net);
    root.undefine(&net);
}

/// A tap made for one user is that user's: another user allowed only to
/// attach guests cannot detach it; its owner can, and so can root.
/// Before, any attach-guests caller could take away any other user's tap
/// (DetachGuest removed whatever port of the bridge it was given).
#[test]
fn an_attach_guests_user_detaches_only_its_own_taps() {
    root_or_skip!();
    let lock = PolkitLock::acquire();
    let _actions = polkit::install_actions(&lock);
    let group = TestGroup::create();
    let alice = TestUser::in_groups(&[&group]);
    let bob = TestUser::in_groups(&[&group]);
    let lab = polkit::lab();
    let pk = Polkitd::start(&lab.world, &lab.host, lab.bus.address());
    let root = lab.gn();
    let a = root.as_user(alice.uid(), alice.gid());
    let b = root.as_user(bob.uid(), bob.gid());
    let net = root.define(&nat_definition("own1", "gnbrown1", "10.77.48.1/24"));
    root.start(&net);
    let _rule = polkit::install_rule(&lock, &polkit::group_rule(ATTACH, group.name()));

    // Alice's tap, once polkitd has read the rule.
    let opts = tap_opts(Some(alice.uid()), None);
    let tap = polkit::once_granted(|| try_attach(&a, &net, "vm-alice", &opts))
        .unwrap_or_else(|e| panic!("AttachGuest by alice: {e}\n{}", pk.log_tail(20)));
    let msg = expect_denied(
        try_detach(&b, &net, &tap),
        "DetachGuest of alice's tap by bob",
    );
    assert!(
        msg.contains(&tap) && msg.contains(MANAGE),
        "the refusal should name the tap and what would allow it: {msg:?}"
    );
    assert!(lab.world.has_link(&lab.host, &tap), "bob took alice's tap");
    try_detach(&a, &net, &tap).expect("alice detaches her own tap");
    assert!(!lab.world.has_link(&lab.host, &tap));
    // Root may detach anyone's.
    let tap = attach(&root, &net, "vm-alice", &opts);
    try_detach(&root, &net, &tap).expect("root detaches alice's tap");
    root.stop(&net);
}
