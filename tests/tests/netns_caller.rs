//! A veth guest's namespace is tied to the caller (issue #12, point 1): a
//! user allowed only `org.guestnet1.attach-guests` passes the namespace as
//! a descriptor it opened (`netns_fd`, type `h`), so the kernel has checked
//! its own right to it; a path (`netns`), which guestnetd would open as
//! root, is for callers allowed `org.guestnet1.manage-networks`; and the
//! host's own namespace is refused to anyone else. polkit is told the
//! network, the guest and the kind, so a rule can grant attaching on one
//! network only.
//!
//! Before the fix, the attach-guests user put a peer named as it liked into
//! guestnetd's own namespace (`/proc/self/ns/net`, `/run/netns/HOST`) and
//! into a root process's namespace it cannot open (`/proc/PID/ns/net`);
//! `netns_fd` was an unknown option; and a rule reading
//! `action.lookup("network")` saw nothing, so it granted nothing. Every
//! test here but `root_and_managers_may_still_give_a_path` (which guards
//! what the fix keeps) failed on that code (546b4b8's guestnetd with this guestnetctl).
//!
//!
//! Being able to open a namespace is not enough (security review of that
//! fix): nsfs files are 0444 and /run/netns 0755, so any user may open
//! every named namespace. An attach-guests user may use only a namespace
//! it made in a user namespace of its own (what a rootless runtime
//! makes); another one, even one it opened or was handed, takes
//! manage-networks. A veth is the uid's who attached it: only that uid (or
//! a manager) detaches it.
//!
//! `/proc/1/ns/net` is never named here: on code that failed to refuse it,
//! the test would change the machine's own namespace. The refusal of every
//! path from an attach-guests user comes before anything is opened, and
//! the host's namespace is refused by identity, which the cases below show.
//!
//! Real parts only: a real polkitd with rules of the test's own, users of
//! the test's own, guestnetctl (which opens `--netns` as the user running
//! it) and `gdbus` run as those users.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use guestnet_tests::guest::{list, netns_path, try_attach, try_detach, veth_opts, GuestPort};
use guestnet_tests::lab::definition;
use guestnet_tests::polkit::{self, expect_denied, PolkitLock, Polkitd, ATTACH, DENIED, MANAGE};
use guestnet_tests::users::{TestGroup, TestUser};
use guestnet_tests::{cli, cmd, root_or_skip, Guestnet, Lab};

/// guestnetctl's exit code for a refused authorization.
const EXIT_DENIED: i32 = 5;

/// The JS rule that lets members of `group` perform `action` on network
/// `network` only, by the `network` detail guestnetd gives polkit.
fn network_rule(action: &str, group: &str, network: &str) -> String {
    format!(
        r#"// A guestnet test's rule, removed when the test ends.
polkit.addRule(function(action, subject) {{
    if (action.id == "{action}" && subject.isInGroup("{group}")
        && action.lookup("network") == "{network}") {{
        return polkit.Result.YES;
    }}
}});
"#
    )
}

/// `guestnetctl attach NETWORK GUEST --kind veth --netns NETNS --ifname
/// IFNAME`, run as `user` (no supplementary groups: polkit reads them from
/// the user database). With `inherit`, that descriptor is the process's
/// descriptor 3, as a privileged helper would hand it down.
fn ctl_attach(
    lab: &Lab,
    user: &TestUser,
    network: &str,
    guest: &str,
    netns: &str,
    ifname: &str,
    inherit: Option<&File>,
) -> Output {
    let mut c = Command::new(cli::binary());
    c.args(["--bus-address", lab.bus.address(), "attach", network, guest])
        .args(["--kind", "veth", "--netns", netns, "--ifname", ifname])
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
        .uid(user.uid())
        .gid(user.gid())
        .stdin(Stdio::null());
    if let Some(f) = inherit {
        let fd = f.as_raw_fd();
        // SAFETY: dup2 is async-signal-safe; fd stays open in the parent
        // until the child has exec'd (output() waits for it).
        unsafe {
            c.pre_exec(move || {
                if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    c.output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cli::binary().display()))
}

/// The interface name guestnetctl printed, or a panic saying what it said.
#[track_caller]
fn attached(out: &Output, what: &str, pk: &Polkitd) -> String {
    assert!(
        out.status.success(),
        "{what}: guestnetctl failed ({}):\n{}{}\n--- polkitd log ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        pk.log_tail(20)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// guestnetctl's stderr, after checking it exited with `code`.
#[track_caller]
fn refused(out: &Output, code: i32, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: guestnetctl should exit {code}: stdout {:?}, stderr {stderr:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// A network namespace `user` made in a user namespace of its own, as a
/// rootless container runtime does: `unshare --user --net --map-root-user
/// sleep 600` run as that user (killed with the world). Returns the path
/// of its namespace, `/proc/PID/ns/net`, which that user may open.
fn user_netns(lab: &Lab, user: &TestUser) -> String {
    let (uid, gid) = (user.uid().to_string(), user.gid().to_string());
    let pid = lab.world.spawn(
        &lab.host,
        &[
            "setpriv",
            "--reuid",
            &uid,
            "--regid",
            &gid,
            "--clear-groups",
            "unshare",
            "--user",
            "--net",
            "--map-root-user",
            "sleep",
            "600",
        ],
    );
    let own_userns = cmd::run_ok(&["readlink", "/proc/self/ns/user"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while cmd::run(&["readlink", &format!("/proc/{pid}/ns/user")]).stdout == own_userns.as_bytes() {
        assert!(
            Instant::now() < deadline,
            "uid {uid}'s `unshare --user --net` (pid {pid}) made no user namespace: \
             are unprivileged user namespaces allowed (user.max_user_namespaces)?"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    format!("/proc/{pid}/ns/net")
}

/// Whether the namespace at `netns` (any path, not only a world's) has a
/// link `name`.
fn ns_has_link(netns: &str, name: &str) -> bool {
    cmd::run(&[
        "nsenter",
        &format!("--net={netns}"),
        "ip",
        "link",
        "show",
        "dev",
        name,
    ])
    .status
    .success()
}

/// Waits (up to 20 s) until `user` is past polkit on `net` (polkitd reads
/// the rules of the test as it starts, but give it time): a DetachGuest of
/// a port that does not exist answers something other than AccessDenied.
fn wait_for_rules(gn: &Guestnet, net: &str, pk: &Polkitd) {
    if let Err(e) = polkit::once_granted(|| try_detach(gn, net, "gnnosuch0")) {
        assert!(
            e.name != DENIED,
            "the test's rules do not apply after 20 s: {e}\n--- polkitd log ---\n{}",
            pk.log_tail(20)
        );
    }
}

/// What the first four tests share, dropped in reverse: polkitd and the
/// lab first, the users, rules and lock last.
struct Setup {
    pk: Polkitd,
    lab: Lab,
    /// The test's guestnetd as root, as the attach-guests user, as a user
    /// allowed to manage networks.
    root: Guestnet,
    u: Guestnet,
    a: Guestnet,
    /// Network `nc` (NAT, bridge gnbrnc).
    net: String,
    /// A named namespace, which anyone may open (nsfs files are 0444).
    c1: String,
    /// The namespace of a root process, which the user may not open.
    c2: String,
    /// `/proc/PID/ns/net` of that root process.
    root_proc_ns: String,
    user: TestUser,
    _admin: TestUser,
    _groups: [TestGroup; 2],
    _rules: [polkit::InstalledFile; 3],
    _actions: polkit::InstalledFile,
    _lock: PolkitLock,
}

impl Setup {
    fn new() -> Setup {
        let lock = PolkitLock::acquire();
        let actions = polkit::install_actions(&lock);
        let attachers = TestGroup::create();
        let managers = TestGroup::create();
        let user = TestUser::in_groups(&[&attachers]);
        let admin = TestUser::in_groups(&[&managers]);
        let rules = [
            (ATTACH, &attachers),
            (ATTACH, &managers),
            (MANAGE, &managers),
        ]
        .map(|(action, group)| {
            polkit::install_rule(&lock, &polkit::group_rule(action, group.name()))
        });
        let lab = polkit::lab();
        let pk = Polkitd::start(&lab.world, &lab.host, lab.bus.address());
        let root = lab.gn();
        let u = root.as_user(user.uid(), user.gid());
        let a = root.as_user(admin.uid(), admin.gid());
        let net = root.create(&definition("nc", "nat", "gnbrnc", "10.77.92"));
        wait_for_rules(&u, &net, &pk);
        wait_for_rules(&a, &net, &pk);
        let w = &lab.world;
        let c1 = w.add_ns("c1");
        let c2 = w.add_ns("c2");
        let sleeper = w.spawn(&c2, &["sleep", "600"]);
        let root_proc_ns = format!("/proc/{sleeper}/ns/net");
        let own_ns = cmd::run_ok(&["readlink", "/proc/self/ns/net"]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while cmd::run(&["readlink", &root_proc_ns]).stdout == own_ns.as_bytes() {
            assert!(Instant::now() < deadline, "{sleeper} never entered {c2}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Setup {
            pk,
            lab,
            root,
            u,
            a,
            net,
            c1,
            c2,
            root_proc_ns,
            user,
            _admin: admin,
            _groups: [attachers, managers],
            _rules: rules,
            _actions: actions,
            _lock: lock,
        }
    }

    fn host(&self) -> &str {
        &self.lab.host
    }

    /// A check that no link appeared in the host or c2 and no guest on
    /// the network since it was made.
    fn nothing_made(&self) -> impl Fn(&str) + '_ {
        let w = &self.lab.world;
        let host_links = w.links(self.host());
        let c2_links = w.links(&self.c2);
        move |what: &str| {
            assert_eq!(
                w.links(self.host()),
                host_links,
                "{what}: links appeared in the host"
            );
            assert_eq!(w.links(&self.c2), c2_links, "{what}: links appeared in c2");
            assert_eq!(
                list(&self.root, &self.net),
                [],
                "{what}: ListGuests changed"
            );
        }
    }
}

/// (a) A path, any path, from the attach-guests user: refused, naming
/// netns_fd. Before the fix, the first was accepted and put `gnevil0`
/// beside the bridges (guestnetd opened any path as root).
#[test]
fn a_path_from_an_attach_guests_user_is_refused() {
    root_or_skip!();
    let s = Setup::new();
    let nothing_made = s.nothing_made();
    for path in [
        "/proc/self/ns/net".to_owned(),
        netns_path(s.host()),
        s.root_proc_ns.clone(),
    ] {
        let what = format!("AttachGuest netns={path} by the attach-guests user");
        let msg = expect_denied(
            try_attach(
                &s.u,
                &s.net,
                "evil",
                &veth_opts(&path, Some("gnevil0"), None),
            ),
            &what,
        );
        assert!(
            msg.contains("netns_fd"),
            "{what}: the refusal should say to pass netns_fd: {msg:?}"
        );
        nothing_made(&what);
    }
}

/// (c) The host's namespace by descriptor: the user may open
/// /run/netns/HOST, but guestnetd knows its own namespace by identity.
/// Before the fix, `netns_fd` was an unknown option (InvalidArgs, exit 1).
#[test]
fn the_hosts_namespace_by_descriptor_is_refused() {
    root_or_skip!();
    let s = Setup::new();
    let nothing_made = s.nothing_made();
    let what = "a descriptor of the host's namespace from the attach-guests user";
    let out = ctl_attach(
        &s.lab,
        &s.user,
        "nc",
        "evil",
        &netns_path(s.host()),
        "gnevil1",
        None,
    );
    let stderr = refused(&out, EXIT_DENIED, what);
    assert!(
        stderr.contains("host's own") && stderr.contains(MANAGE),
        "{what}: the refusal should say it is the host's namespace: {stderr:?}"
    );
    nothing_made(what);
    // ... also when a privileged helper opened it and handed it down.
    let what = "a handed-down descriptor of the host's namespace";
    let host_fd = File::open(netns_path(s.host())).expect("open the host's namespace");
    let out = ctl_attach(
        &s.lab,
        &s.user,
        "nc",
        "evil",
        "/proc/self/fd/3",
        "gnevil1",
        Some(&host_fd),
    );
    refused(&out, EXIT_DENIED, what);
    nothing_made(what);
}

/// (b) A namespace the user can open but did not make: a named one
/// (`/run/netns/c1`, root's, which any user may open: nsfs files are 0444
/// and /run/netns 0755), or a root process's a privileged helper opened
/// and handed down, is refused naming manage-networks; one it cannot open,
/// it cannot name at all. Before this round's fix, both were accepted
/// (the peer went into c1, a VPN or rootful container namespace of the
/// host's; 56bb62f's guestnetd put it there).
#[test]
fn a_namespace_the_user_did_not_make_is_refused() {
    root_or_skip!();
    let s = Setup::new();
    let nothing_made = s.nothing_made();
    let what = "--netns of a root process's namespace, opened by the user";
    let stderr = refused(
        &ctl_attach(&s.lab, &s.user, "nc", "c2", &s.root_proc_ns, "eth0", None),
        1,
        what,
    );
    assert!(
        stderr.contains("ermission denied") && stderr.contains(&s.root_proc_ns),
        "{what}: guestnetctl should say it may not open it: {stderr:?}"
    );
    nothing_made(what);

    let what = "a descriptor of root's /run/netns/c1, opened by the attach-guests user";
    let stderr = refused(
        &ctl_attach(
            &s.lab,
            &s.user,
            "nc",
            "c1",
            &netns_path(&s.c1),
            "eth0",
            None,
        ),
        EXIT_DENIED,
        what,
    );
    assert!(
        stderr.contains("initial user namespace") && stderr.contains(MANAGE),
        "{what}: the refusal should say whose namespace it is and what allows it: {stderr:?}"
    );
    assert!(!s.lab.world.has_link(&s.c1, "eth0"), "{what}: eth0 in c1");
    nothing_made(what);

    let what = "a handed-down descriptor of a root process's namespace";
    let c2_fd = File::open(&s.root_proc_ns).expect("open the root process's namespace");
    refused(
        &ctl_attach(
            &s.lab,
            &s.user,
            "nc",
            "c2",
            "/proc/self/fd/3",
            "eth0",
            Some(&c2_fd),
        ),
        EXIT_DENIED,
        what,
    );
    assert!(!s.lab.world.has_link(&s.c2, "eth0"), "{what}: eth0 in c2");
    nothing_made(what);
}

/// (b') A namespace the user made itself, in a user namespace of its own
/// (what a rootless container runtime makes), gets the peer, whether the
/// user opens it or a helper hands it down; another user's, handed down
/// to it, is refused. (The first passed before this round's fix too: it
/// guards what the fix keeps; the last failed on 56bb62f's guestnetd.)
#[test]
fn a_namespace_the_user_made_gets_the_peer() {
    root_or_skip!();
    let other = TestUser::new();
    let s = Setup::new();
    let host = s.host();
    let w = &s.lab.world;
    let own = user_netns(&s.lab, &s.user);
    let port1 = attached(
        &ctl_attach(&s.lab, &s.user, "nc", "mine", &own, "eth0", None),
        "attach by descriptor into the user's own namespace",
        &s.pk,
    );
    assert!(ns_has_link(&own, "eth0"), "no eth0 in {own}");
    assert_eq!(w.master_of(host, &port1).as_deref(), Some("gnbrnc"));
    let own_fd = File::open(&own).expect("open the user's namespace");
    let port2 = attached(
        &ctl_attach(
            &s.lab,
            &s.user,
            "nc",
            "mine2",
            "/proc/self/fd/3",
            "eth1",
            Some(&own_fd),
        ),
        "attach by a handed-down descriptor of the user's own namespace",
        &s.pk,
    );
    assert!(ns_has_link(&own, "eth1"), "no eth1 in {own}");
    assert_eq!(w.master_of(host, &port2).as_deref(), Some("gnbrnc"));
    let mut guests: Vec<(String, String)> = list(&s.root, &s.net)
        .into_iter()
        .map(|g| (g.guest, g.ifname))
        .collect();
    guests.sort();
    assert_eq!(guests, [("mine".into(), port1), ("mine2".into(), port2)]);

    let theirs = user_netns(&s.lab, &other);
    let what = "a handed-down descriptor of another user's namespace";
    let theirs_fd = File::open(&theirs).expect("open the other user's namespace");
    let stderr = refused(
        &ctl_attach(
            &s.lab,
            &s.user,
            "nc",
            "theirs",
            "/proc/self/fd/3",
            "eth0",
            Some(&theirs_fd),
        ),
        EXIT_DENIED,
        what,
    );
    assert!(
        stderr.contains(&format!("uid {}", other.uid())) && stderr.contains(MANAGE),
        "{what}: the refusal should name the namespace's owner: {stderr:?}"
    );
    assert!(!ns_has_link(&theirs, "eth0"), "{what}: eth0 in {theirs}");
}

/// A veth is the user's who attached it: another user allowed only to
/// attach guests cannot detach it (AccessDenied, naming the port and
/// manage-networks); its own user can. Before this round's fix, any
/// attach-guests caller could take away any other user's veth (56bb62f's
/// guestnetd let bob detach it).
#[test]
fn an_attach_guests_user_detaches_only_its_own_veths() {
    root_or_skip!();
    let lock = PolkitLock::acquire();
    let _actions = polkit::install_actions(&lock);
    let group = TestGroup::create();
    let alice = TestUser::in_groups(&[&group]);
    let bob = TestUser::in_groups(&[&group]);
    let _rule = polkit::install_rule(&lock, &polkit::group_rule(ATTACH, group.name()));
    let lab = polkit::lab();
    let pk = Polkitd::start(&lab.world, &lab.host, lab.bus.address());
    let (w, host) = (&lab.world, lab.host.as_str());
    let root = lab.gn();
    let a = root.as_user(alice.uid(), alice.gid());
    let b = root.as_user(bob.uid(), bob.gid());
    let net = root.create(&definition("v", "nat", "gnbrv", "10.77.95"));
    wait_for_rules(&a, &net, &pk);
    wait_for_rules(&b, &net, &pk);
    let alices = user_netns(&lab, &alice);
    let port = attached(
        &ctl_attach(&lab, &alice, "v", "c-alice", &alices, "eth0", None),
        "alice's veth into her own namespace",
        &pk,
    );
    let msg = expect_denied(
        try_detach(&b, &net, &port),
        "DetachGuest of alice's veth by bob",
    );
    assert!(
        msg.contains(&port) && msg.contains(MANAGE),
        "the refusal should name the veth and what would allow it: {msg:?}"
    );
    assert!(w.has_link(host, &port), "bob took alice's veth");
    assert!(ns_has_link(&alices, "eth0"));
    try_detach(&a, &net, &port).unwrap_or_else(|e| panic!("alice detaches her own veth: {e}"));
    assert!(!w.has_link(host, &port), "{port} is still there");
    assert!(!ns_has_link(&alices, "eth0"));
}

/// (d) Root, and a user allowed to manage networks, may still give a path.
/// (This one passed before the fix too: it guards what the fix keeps.)
#[test]
fn root_and_managers_may_still_give_a_path() {
    root_or_skip!();
    let s = Setup::new();
    let w = &s.lab.world;
    let r = try_attach(
        &s.root,
        &s.net,
        "r1",
        &veth_opts(&netns_path(&s.c1), Some("eth1"), None),
    )
    .unwrap_or_else(|e| panic!("root's AttachGuest by path: {e}"));
    assert!(w.has_link(&s.c1, "eth1"), "root's path: no eth1 in c1");
    let m = try_attach(
        &s.a,
        &s.net,
        "m1",
        &veth_opts(&s.root_proc_ns, Some("eth2"), None),
    )
    .unwrap_or_else(|e| {
        panic!(
            "AttachGuest by path from a manage-networks user: {e}\n--- polkitd log ---\n{}",
            s.pk.log_tail(20)
        )
    });
    assert!(w.has_link(&s.c2, "eth2"), "the admin's path: no eth2 in c2");
    let ports: Vec<String> = list(&s.root, &s.net)
        .into_iter()
        .map(|g| g.ifname)
        .collect();
    for p in [&r, &m] {
        assert!(ports.contains(p), "{p} not in ListGuests: {ports:?}");
    }
}

#[test]
fn a_rule_can_grant_attaching_on_one_network() {
    root_or_skip!();
    let lock = PolkitLock::acquire();
    let _actions = polkit::install_actions(&lock);
    let group = TestGroup::create();
    let user = TestUser::in_groups(&[&group]);
    let _rule = polkit::install_rule(&lock, &network_rule(ATTACH, group.name(), "a"));
    let lab = polkit::lab();
    let pk = Polkitd::start(&lab.world, &lab.host, lab.bus.address());
    let (w, host) = (&lab.world, lab.host.as_str());
    let root = lab.gn();
    let u = root.as_user(user.uid(), user.gid());
    let na = root.create(&definition("a", "nat", "gnbra", "10.77.93"));
    let nb = root.create(&definition("b", "nat", "gnbrb", "10.77.94"));
    wait_for_rules(&u, &na, &pk);
    let c1 = user_netns(&lab, &user);

    // On "a": allowed, by descriptor, and the user may detach it again.
    let port = attached(
        &ctl_attach(&lab, &user, "a", "c1", &c1, "eth0", None),
        "attach on network a, which the rule grants",
        &pk,
    );
    assert!(ns_has_link(&c1, "eth0"));
    assert_eq!(w.master_of(host, &port).as_deref(), Some("gnbra"));
    assert_eq!(
        list(&root, &na),
        [GuestPort::new(&port, &list(&root, &na)[0].mac, "c1")]
    );

    // On "b": refused by polkit, naming the action; nothing made.
    let host_links = w.links(host);
    let stderr = refused(
        &ctl_attach(&lab, &user, "b", "c1", &c1, "eth1", None),
        EXIT_DENIED,
        "attach on network b, which the rule does not grant",
    );
    assert!(stderr.contains(ATTACH), "{stderr:?}");
    assert_eq!(w.links(host), host_links);
    assert!(!ns_has_link(&c1, "eth1"));
    assert_eq!(list(&root, &nb), []);
    expect_denied(try_detach(&u, &nb, "gnnosuch0"), "DetachGuest on network b");

    try_detach(&u, &na, &port).unwrap_or_else(|e| panic!("DetachGuest on network a: {e}"));
    assert!(!w.has_link(host, &port), "{port} is still there");
    assert!(!ns_has_link(&c1, "eth0"));
}

/// polkit is told the veth peer's name as `interface` when the caller
/// gives one, so a rule can grant attaching under one name only. Before
/// this round's fix, a rule reading `action.lookup("interface")` saw
/// nothing and granted nothing (56bb62f's guestnetd refused eth5 too).
#[test]
fn a_rule_can_grant_attaching_under_one_interface_name() {
    root_or_skip!();
    let lock = PolkitLock::acquire();
    let _actions = polkit::install_actions(&lock);
    let group = TestGroup::create();
    let user = TestUser::in_groups(&[&group]);
    let rule = format!(
        r#"// A guestnet test's rule, removed when the test ends.
polkit.addRule(function(action, subject) {{
    if (action.id == "{ATTACH}" && subject.isInGroup("{}")
        && action.lookup("interface") == "eth5") {{
        return polkit.Result.YES;
    }}
}});
"#,
        group.name()
    );
    let _rule = polkit::install_rule(&lock, &rule);
    let lab = polkit::lab();
    let pk = Polkitd::start(&lab.world, &lab.host, lab.bus.address());
    let root = lab.gn();
    let net = root.create(&definition("i", "nat", "gnbri", "10.77.96"));
    let own = user_netns(&lab, &user);
    // polkitd reads the rule as it starts: give it time.
    let deadline = Instant::now() + Duration::from_secs(20);
    let port = loop {
        let out = ctl_attach(&lab, &user, "i", "c5", &own, "eth5", None);
        if out.status.success() || Instant::now() >= deadline {
            break attached(&out, "attach as eth5, which the rule grants", &pk);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(ns_has_link(&own, "eth5"));
    assert_eq!(
        lab.world.master_of(&lab.host, &port).as_deref(),
        Some("gnbri")
    );
    let stderr = refused(
        &ctl_attach(&lab, &user, "i", "c6", &own, "eth6", None),
        EXIT_DENIED,
        "attach as eth6, which the rule does not grant",
    );
    assert!(stderr.contains(ATTACH), "{stderr:?}");
    assert!(!ns_has_link(&own, "eth6"));
    let guests: Vec<String> = list(&root, &net).into_iter().map(|g| g.guest).collect();
    assert_eq!(guests, ["c5"]);
}

/// Nothing a caller passes is looked at before polkit has said it may
/// attach guests: a user allowed nothing gets AccessDenied whether its
/// netns_fd is a namespace or /dev/null, and whether a tap's owner exists
/// or not (the descriptor could be of a hung NFS or FUSE mount, the uid
/// lookup could wait on LDAP). Before this round's fix, both were examined
/// first, on a runtime worker (56bb62f's guestnetd answered InvalidArgs:
/// "not a network namespace", "uid ... does not exist").
#[test]
fn nothing_is_looked_at_before_polkit() {
    root_or_skip!();
    let lock = PolkitLock::acquire();
    let _actions = polkit::install_actions(&lock);
    let nobody = TestUser::new();
    let lab = polkit::lab();
    let _pk = Polkitd::start(&lab.world, &lab.host, lab.bus.address());
    let root = lab.gn();
    let u = root.as_user(nobody.uid(), nobody.gid());
    let net = root.create(&definition("p", "nat", "gnbrp", "10.77.97"));
    let stderr = refused(
        &ctl_attach(&lab, &nobody, "p", "x", "/dev/null", "eth0", None),
        EXIT_DENIED,
        "netns_fd of /dev/null from a user allowed nothing",
    );
    assert!(stderr.contains(ATTACH), "{stderr:?}");
    let missing = guestnet_tests::guest::unused_uid();
    let msg = expect_denied(
        try_attach(
            &u,
            &net,
            "x",
            &guestnet_tests::guest::tap_opts(Some(missing), None),
        ),
        "a tap for a uid that does not exist, from a user allowed nothing",
    );
    assert!(msg.contains(ATTACH), "{msg:?}");
    assert_eq!(list(&root, &net), []);
}
