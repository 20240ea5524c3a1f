//! Guests on a network's bridge, as a VM manager or a container runtime
//! uses them: AttachGuest makes a tap owned by a VM's uid or a veth whose
//! peer appears inside a container's namespace; DetachGuest and ListGuests;
//! GuestAttached / GuestDetached for every port that joins or leaves the
//! bridge, whoever plugged it in (seen by a real `busctl monitor`); guests
//! keep talking while guestnetd restarts or crashes; refused attachments
//! leave nothing behind and say what is wrong; stopping a network unplugs
//! its guests; the NIC a bridged network enslaves is no guest.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use guestnet_tests::dhcp_client::{Udhcpc, UdhcpcOpts, LEASE_TIMEOUT};
use guestnet_tests::guest::{
    attach, detach, is_up, link_stat, list, mac_of, netns_path, tap_as_user, tap_opts, try_attach,
    try_detach, unused_uid, veth_opts, Capture, GuestPort, Opt,
};
use guestnet_tests::guestnet::error;
use guestnet_tests::lab::{started, UPLINK};
use guestnet_tests::monitor::Monitor;
use guestnet_tests::probe::LongPing;
use guestnet_tests::users::TestUser;
use guestnet_tests::{probe, root_or_skip, Lab};

const SIGNAL_WAIT: Duration = Duration::from_secs(5);
const INVALID_ARGS: &str = "org.freedesktop.DBus.Error.InvalidArgs";

/// The guests the `member` signals (GuestAttached, GuestDetached) of the
/// network at object path `net` carried.
fn guest_signals(mon: &Monitor, net: &str, member: &str) -> Vec<GuestPort> {
    mon.signals()
        .iter()
        .filter(|s| s.member == member && s.path == net)
        .map(|s| {
            GuestPort::from_signal(s)
                .unwrap_or_else(|| panic!("{member} does not carry (sss): {:?}", s.args))
        })
        .collect()
}

/// Waits until `n` `member` signals of the network `net` carrying `port`
/// have been seen.
#[track_caller]
fn expect_signals(mon: &Monitor, net: &str, member: &str, port: &GuestPort, n: usize) {
    let deadline = Instant::now() + SIGNAL_WAIT;
    loop {
        let seen = guest_signals(mon, net, member)
            .iter()
            .filter(|p| *p == port)
            .count();
        if seen >= n {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "expected {n} {member} signal(s) on {net} for {port:?} within {SIGNAL_WAIT:?}, \
                 saw {seen}; signals seen:\n{}",
                mon.describe()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[track_caller]
fn expect_signal(mon: &Monitor, net: &str, member: &str, port: &GuestPort) {
    expect_signals(mon, net, member, port, 1);
}

/// The signals about guests, for assertions that there are none.
fn any_guest_signals(mon: &Monitor) -> Vec<String> {
    mon.signals()
        .iter()
        .filter(|s| s.member.starts_with("Guest"))
        .map(|s| format!("{} {} {:?}", s.path, s.member, s.args))
        .collect()
}

#[test]
fn a_tap_opens_for_its_owner_only_and_carries_frames_to_the_bridge() {
    root_or_skip!();
    let lab = Lab::new();
    let (w, host) = (&lab.world, lab.host.as_str());
    let gn = lab.gn();
    let net = started(&gn, "taps", "nat", "gnbr1", "10.77.70");
    let owner = TestUser::new();
    let other = TestUser::new();
    let mon = Monitor::start(lab.bus.address());

    let vm_mac = "52:54:00:70:00:01";
    let tap = attach(&gn, &net, "vm1", &tap_opts(Some(owner.uid()), Some(vm_mac)));
    assert!(tap.starts_with("gntap"), "the port is called {tap:?}");
    assert_eq!(w.master_of(host, &tap).as_deref(), Some("gnbr1"));
    assert!(is_up(w, host, &tap), "{tap} is not up");
    let info = w.ip_json(host, &format!("-d link show dev {tap}"));
    let data = &info[0]["linkinfo"]["info_data"];
    assert_eq!(data["type"], "tap", "{info}");
    assert_eq!(
        data["persist"], true,
        "a tap that outlives its opener: {info}"
    );
    let user = data["user"].to_string().trim_matches('"').to_owned();
    assert!(
        user == owner.name() || user == owner.uid().to_string(),
        "the tap's owner is {user:?}, not {} ({}): {info}",
        owner.name(),
        owner.uid()
    );
    let port = GuestPort::new(&tap, vm_mac, "vm1");
    assert_eq!(
        list(&gn, &net),
        std::slice::from_ref(&port),
        "ListGuests: the VM's MAC"
    );
    expect_signal(&mon, &net, "GuestAttached", &port);

    // Another unprivileged user may not attach to it.
    let (ok, out) = tap_as_user(w, host, other.uid(), other.gid(), &tap, None);
    assert!(
        !ok && out.contains("refused 1 "),
        "user {} ({}) must get EPERM attaching to {tap} owned by {}; it saw:\n{out}",
        other.name(),
        other.uid(),
        owner.uid()
    );

    // Its owner may, and what it writes reaches the bridge.
    let bridge_rx = link_stat(w, host, "gnbr1", "rx", "packets");
    let cap = Capture::start(w, host, "gnbr1", vm_mac, Duration::from_secs(15));
    let (ok, out) = tap_as_user(
        w,
        host,
        owner.uid(),
        owner.gid(),
        &tap,
        Some((vm_mac, "10.77.70.1")),
    );
    assert!(
        ok && out.contains(&format!("attached {}", owner.uid())) && out.contains("written"),
        "the owner {} ({}) could not attach to {tap} and write into it:\n{out}",
        owner.name(),
        owner.uid()
    );
    let frame = cap.result();
    assert!(
        frame.is_some(),
        "the ARP requests {vm_mac} wrote into {tap} never reached gnbr1 \
         (tap rx {} packets, bridge rx {} -> {})",
        link_stat(w, host, &tap, "rx", "packets"),
        bridge_rx,
        link_stat(w, host, "gnbr1", "rx", "packets")
    );
    assert!(
        link_stat(w, host, &tap, "rx", "packets") >= 30,
        "the tap counted fewer frames than were written"
    );
    assert!(link_stat(w, host, "gnbr1", "rx", "packets") > bridge_rx);

    // The tap outlives its opener, still a guest.
    assert!(w.has_link(host, &tap));
    assert_eq!(list(&gn, &net), [port]);
}

#[test]
fn a_veth_guest_appears_in_its_namespace_gets_a_lease_and_is_reachable() {
    root_or_skip!();
    let lab = Lab::with_resolv_conf(|_, _, _| {});
    let (w, host) = (&lab.world, lab.host.as_str());
    let gn = lab.gn();
    let net = started(&gn, "veths", "nat", "gnbr2", "10.77.71");
    let mon = Monitor::start(lab.bus.address());

    // A named namespace, the interface's name and MAC asked for.
    let c1 = w.add_ns("c1");
    let m1 = "52:54:00:71:00:01";
    let p1 = attach(
        &gn,
        &net,
        "c1",
        &veth_opts(&netns_path(&c1), Some("lan0"), Some(m1)),
    );
    assert!(p1.starts_with("gnveth"), "the port is called {p1:?}");
    assert_eq!(w.master_of(host, &p1).as_deref(), Some("gnbr2"));
    assert!(is_up(w, host, &p1), "the host end {p1} is not up");
    assert_eq!(
        w.links(&c1),
        HashSet::from(["lo".to_owned(), "lan0".to_owned()]),
        "the peer appears in the guest's namespace with the name asked for"
    );
    assert_eq!(mac_of(w, &c1, "lan0"), m1);
    assert!(
        !is_up(w, &c1, "lan0"),
        "the guest's interface is left down for the container to bring up"
    );
    assert!(
        !w.has_link(host, "lan0"),
        "the peer must never be in the host"
    );
    let port1 = GuestPort::new(&p1, m1, "c1");
    assert_eq!(list(&gn, &net), std::slice::from_ref(&port1));
    expect_signal(&mon, &net, "GuestAttached", &port1);

    // The container brings it up and asks for a lease. (udhcpc runs on
    // eth0: rename the interface as a runtime would.)
    w.ip(&c1, "link set lan0 name eth0");
    w.ip(&c1, "link set eth0 up");
    let c = Udhcpc::start(w, &c1, &UdhcpcOpts::named("c1"));
    let bound = c.wait_bound(LEASE_TIMEOUT);
    let ip = bound.var("ip").to_owned();
    assert!(ip.starts_with("10.77.71."), "leased {ip}");
    let lease = gn.wait_for_lease(&net, m1, 5000);
    assert_eq!(lease.ip, ip);
    assert_eq!(w.ipv4_addrs(&c1, "eth0"), [format!("{ip}/24")]);
    probe::assert_ping(w, host, &ip);
    probe::assert_ping(w, &c1, "10.77.71.1");

    // A container's own namespace, named by /proc/PID/ns/net (an
    // anonymous namespace: `unshare --net`), and the defaults: eth0 and a
    // stable generated MAC.
    let container = w.spawn(host, &["unshare", "--net", "sleep", "600"]);
    let proc_ns = format!("/proc/{container}/ns/net");
    wait_for_own_netns(container);
    let p2 = attach(&gn, &net, "c2", &veth_opts(&proc_ns, None, None));
    assert_ne!(p2, p1);
    assert_eq!(
        links_in(container),
        HashSet::from(["lo".to_owned(), "eth0".to_owned()]),
        "the default interface name is eth0"
    );
    let m2 = mac_in(container, "eth0");
    assert!(m2.starts_with("52:54:00:"), "the generated MAC is {m2}");
    assert_ne!(m2, m1);
    let port2 = GuestPort::new(&p2, &m2, "c2");
    let mut both = vec![port1.clone(), port2.clone()];
    both.sort();
    assert_eq!(list(&gn, &net), both);
    expect_signal(&mon, &net, "GuestAttached", &port2);

    // Detached: gone from the host and from the guest.
    detach(&gn, &net, &p2);
    assert!(!w.has_link(host, &p2), "DetachGuest left {p2} in the host");
    assert!(
        !links_in(container).contains("eth0"),
        "DetachGuest left eth0 in the container"
    );
    expect_signal(&mon, &net, "GuestDetached", &port2);
    assert_eq!(list(&gn, &net), std::slice::from_ref(&port1));

    // Attached again: the same generated MAC.
    let p2b = attach(&gn, &net, "c2", &veth_opts(&proc_ns, None, None));
    assert_eq!(
        mac_in(container, "eth0"),
        m2,
        "the generated MAC is not stable for the same guest"
    );
    let port2b = GuestPort::new(&p2b, &m2, "c2");
    expect_signal(&mon, &net, "GuestAttached", &port2b);

    // The container exits: its namespace goes, and the veth with it; the
    // guest leaves, announced with its name.
    w.kill(container);
    expect_signal(&mon, &net, "GuestDetached", &port2b);
    // The kernel announces the port leaving the bridge a moment before
    // the veth is gone (namespace teardown is asynchronous).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while w.has_link(host, &p2b) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!w.has_link(host, &p2b), "{p2b} outlived its container");
    assert_eq!(list(&gn, &net), [port1]);
}

/// Waits until process `pid` runs in a network namespace other than ours
/// (`unshare` has made it and exec'd its program).
fn wait_for_own_netns(pid: u32) {
    let ours = std::fs::read_link("/proc/self/ns/net").expect("our netns");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if theirs.is_some_and(|t| t != ours) && comm.trim() == "sleep" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} did not get a namespace of its own"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ip -j ARGS` inside the network namespace of process `pid` (one the
/// test made).
fn ip_in(pid: u32, args: &str) -> serde_json::Value {
    let t = pid.to_string();
    let mut full = vec!["nsenter", "--target", &t, "--net", "ip", "-j"];
    full.extend(args.split_whitespace());
    let out = guestnet_tests::cmd::run_ok(&full);
    if out.trim().is_empty() {
        return serde_json::Value::Array(Vec::new());
    }
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ip -j {args}: {e}: {out}"))
}

fn links_in(pid: u32) -> HashSet<String> {
    ip_in(pid, "link show")
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["ifname"].as_str().map(str::to_owned))
        .collect()
}

fn mac_in(pid: u32, ifname: &str) -> String {
    let v = ip_in(pid, &format!("link show dev {ifname}"));
    v[0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no {ifname} in the namespace of {pid}: {v}"))
        .to_owned()
}

#[test]
fn ports_enslaved_and_released_by_hand_are_announced() {
    root_or_skip!();
    let lab = Lab::new();
    let (w, host) = (&lab.world, lab.host.as_str());
    let gn = lab.gn();
    let net = started(&gn, "hand", "nat", "gnbr3", "10.77.72");
    let net_b = started(&gn, "handb", "nat", "gnbr3b", "10.77.78");
    let x = w.add_ns("x");
    w.veth(host, "vhand0", &x, "eth0");
    w.veth(host, "vhand1", &x, "eth1");
    let mac0 = mac_of(w, host, "vhand0");
    let mon = Monitor::start(lab.bus.address());

    w.ip(host, "link set vhand0 master gnbr3");
    let hand = GuestPort::new("vhand0", &mac0, "");
    expect_signal(&mon, &net, "GuestAttached", &hand);
    assert_eq!(list(&gn, &net), std::slice::from_ref(&hand));
    assert_eq!(list(&gn, &net_b), []);

    w.ip(host, "link set vhand0 nomaster");
    expect_signal(&mon, &net, "GuestDetached", &hand);
    assert_eq!(list(&gn, &net), []);

    // A bridge that is not guestnet's: nothing to announce.
    w.ip(host, "link add other0 type bridge");
    w.ip(host, "link set vhand1 master other0");
    w.ip(host, "link set vhand1 nomaster");

    // Moved straight from one network's bridge to another's: it leaves
    // the first and joins the second.
    w.ip(host, "link set vhand0 master gnbr3");
    expect_signals(&mon, &net, "GuestAttached", &hand, 2);
    w.ip(host, "link set vhand0 master gnbr3b");
    expect_signals(&mon, &net, "GuestDetached", &hand, 2);
    expect_signal(&mon, &net_b, "GuestAttached", &hand);
    assert_eq!(list(&gn, &net), []);
    assert_eq!(list(&gn, &net_b), std::slice::from_ref(&hand));

    // Released through DetachGuest: the port is someone else's, so it is
    // released, not deleted.
    let e = try_detach(&gn, &net, "vhand0").expect_err("DetachGuest on the wrong network");
    assert_eq!(e.name, INVALID_ARGS, "{e}");
    assert_eq!(w.master_of(host, "vhand0").as_deref(), Some("gnbr3b"));
    detach(&gn, &net_b, "vhand0");
    expect_signal(&mon, &net_b, "GuestDetached", &hand);
    assert!(
        w.has_link(host, "vhand0"),
        "DetachGuest deleted a port it did not make"
    );
    assert_eq!(w.master_of(host, "vhand0"), None);
    assert!(w.has_link(&x, "eth0"), "the far end of vhand0 is gone");
    assert_eq!(list(&gn, &net_b), []);

    std::thread::sleep(Duration::from_millis(300));
    let stray: Vec<String> = any_guest_signals(&mon)
        .into_iter()
        .filter(|s| !s.contains("\"vhand0\""))
        .collect();
    assert!(
        stray.is_empty(),
        "signals for ports of a bridge that is not guestnet's: {stray:?}"
    );
    assert_eq!(
        any_guest_signals(&mon).len(),
        6,
        "one signal per move:\n{}",
        mon.describe()
    );
}

#[test]
fn guests_keep_talking_while_guestnetd_restarts_and_crashes() {
    root_or_skip!();
    let mut lab = Lab::new();
    let gn = lab.gn();
    let net = started(&gn, "rst", "nat", "gnbr4", "10.77.73");
    let (c1, c2) = (lab.world.add_ns("c1"), lab.world.add_ns("c2"));
    let sleeper = lab.world.spawn(&c2, &["sleep", "600"]);
    let (m1, m2, m3) = (
        "52:54:00:73:00:01",
        "52:54:00:73:00:02",
        "52:54:00:73:00:03",
    );
    let p1 = attach(
        &gn,
        &net,
        "c1",
        &veth_opts(&netns_path(&c1), None, Some(m1)),
    );
    let p2 = attach(
        &gn,
        &net,
        "c2",
        &veth_opts(&format!("/proc/{sleeper}/ns/net"), Some("net0"), Some(m2)),
    );
    let p3 = attach(&gn, &net, "vm3", &tap_opts(None, Some(m3)));
    {
        let w = &lab.world;
        w.ip(&c1, "addr add 10.77.73.11/24 dev eth0");
        w.ip(&c1, "link set eth0 up");
        w.ip(&c2, "addr add 10.77.73.12/24 dev net0");
        w.ip(&c2, "link set net0 up");
        probe::assert_ping(w, &c1, "10.77.73.12");
    }
    let mut want = vec![
        GuestPort::new(&p1, m1, "c1"),
        GuestPort::new(&p2, m2, "c2"),
        GuestPort::new(&p3, m3, "vm3"),
    ];
    want.sort();
    let before = list(&gn, &net);
    assert_eq!(before, want);
    let mon = Monitor::start(lab.bus.address());

    // 200 pings, 50 ms apart: 10 s, the restarts inside them.
    const COUNT: u32 = 200;
    let ping = LongPing::start(&lab.world, &c1, "10.77.73.12", COUNT);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(700));
    lab.service.restart();
    std::thread::sleep(Duration::from_millis(700));
    lab.service.sigkill();
    lab.service.start_again();
    let restarts_done = t0.elapsed();
    assert!(
        ping.is_running(),
        "the restarts took {restarts_done:?}, longer than the pings ran: raise COUNT"
    );
    let pinged = ping.finish(&lab.world);
    assert_eq!(
        (pinged.sent, pinged.received),
        (COUNT, COUNT),
        "pings between two guests were lost across a restart and a crash of guestnetd:\n{}",
        pinged.output
    );

    let w = &lab.world;
    let host = lab.host.as_str();
    assert_eq!(
        list(&gn, &net),
        before,
        "ListGuests changed across the restarts"
    );
    for p in [&p1, &p2, &p3] {
        assert_eq!(w.master_of(host, p).as_deref(), Some("gnbr4"), "{p}");
        assert!(is_up(w, host, p), "{p} is down after the restarts");
    }
    let announced = any_guest_signals(&mon);
    assert!(
        announced.is_empty(),
        "no guest came or went, yet guestnetd announced: {announced:?}"
    );

    // The records survived: DetachGuest still knows the port is its own
    // and deletes it (with the peer in c2), not merely releasing it.
    detach(&gn, &net, &p2);
    assert!(!w.has_link(host, &p2), "{p2} was released, not deleted");
    assert!(!w.has_link(&c2, "net0"), "the peer in c2 is still there");
    expect_signal(&mon, &net, "GuestDetached", &GuestPort::new(&p2, m2, "c2"));
    want.retain(|g| g.ifname != p2);
    assert_eq!(list(&gn, &net), want);

    // The new guestnetd watches the bridge as the first did.
    let x = w.add_ns("x");
    w.veth(host, "vhand0", &x, "eth0");
    w.ip(host, "link set vhand0 master gnbr4");
    let hand = GuestPort::new("vhand0", &mac_of(w, host, "vhand0"), "");
    expect_signal(&mon, &net, "GuestAttached", &hand);

    // And it stops the network as the first would have: every guest
    // announced leaving, the ports made before the restarts deleted.
    gn.stop(&net);
    want.push(hand);
    for g in &want {
        expect_signal(&mon, &net, "GuestDetached", g);
    }
    assert!(!w.has_link(host, &p1), "the stop left {p1}");
    assert!(!w.has_link(&c1, "eth0"), "the stop left the peer in c1");
    assert!(!w.has_link(host, &p3), "the stop left the tap {p3}");
    assert!(w.has_link(host, "vhand0"));
}

#[test]
fn refused_attachments_leave_nothing_behind() {
    root_or_skip!();
    let lab = Lab::new();
    let (w, host) = (&lab.world, lab.host.as_str());
    let gn = lab.gn();
    let net = started(&gn, "errs", "nat", "gnbr5", "10.77.74");
    let idle = started(&gn, "idle", "nat", "gnbr6", "10.77.75");
    gn.stop(&idle);
    let c0 = w.add_ns("c0");
    let keep = attach(&gn, &net, "keep", &veth_opts(&netns_path(&c0), None, None));
    let c1 = w.add_ns("c1");
    let c1_path = netns_path(&c1);
    let mon = Monitor::start(lab.bus.address());

    let host_before = w.links(host);
    let c1_before = w.links(&c1);
    let guests_before = list(&gn, &net);
    assert_eq!(guests_before.len(), 1, "{guests_before:?}");
    assert_eq!(guests_before[0].ifname, keep);

    let missing = format!("/run/netns/{}", w.ns_name("missing"));
    let bad_uid = unused_uid();
    let bad_uid_s = bad_uid.to_string();
    let not_active = error("NotActive");
    let mut colour = veth_opts(&c1_path, None, None);
    colour.push(("colour", Opt::S("red")));
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, &str, &str, Vec<(&str, Opt<'_>)>, &str, &str)> = vec![
        (
            "a guest name with a slash",
            &net,
            "../c1",
            veth_opts(&c1_path, None, None),
            INVALID_ARGS,
            "../c1",
        ),
        (
            "an empty guest name",
            &net,
            "",
            tap_opts(Some(0), None),
            INVALID_ARGS,
            "guest name",
        ),
        (
            "a namespace path that does not exist",
            &net,
            "c1",
            veth_opts(&missing, None, None),
            INVALID_ARGS,
            &missing,
        ),
        (
            "an unknown kind",
            &net,
            "c1",
            vec![("kind", Opt::S("macvtap")), ("netns", Opt::S(&c1_path))],
            INVALID_ARGS,
            "macvtap",
        ),
        (
            "a uid no user has",
            &net,
            "vm1",
            tap_opts(Some(bad_uid), None),
            INVALID_ARGS,
            &bad_uid_s,
        ),
        (
            "an unknown option",
            &net,
            "c1",
            colour,
            INVALID_ARGS,
            "colour",
        ),
        (
            "a malformed MAC",
            &net,
            "c1",
            veth_opts(&c1_path, None, Some("52:54:00:zz:00:01")),
            INVALID_ARGS,
            "mac",
        ),
        (
            "a stopped network (veth)",
            &idle,
            "c1",
            veth_opts(&c1_path, None, None),
            &not_active,
            "idle",
        ),
        (
            "a stopped network (tap)",
            &idle,
            "vm1",
            tap_opts(Some(0), None),
            &not_active,
            "idle",
        ),
    ];
    for (what, path, guest, opts, want, mention) in &cases {
        match try_attach(&gn, path, guest, opts) {
            Ok(ifname) => panic!("AttachGuest with {what} succeeded: {ifname}"),
            Err(e) => {
                assert_eq!(&e.name, want, "AttachGuest with {what}: {e}");
                assert!(
                    e.message.contains(mention),
                    "AttachGuest with {what}: the message does not say what is wrong \
                     (no {mention:?}): {e}"
                );
                eprintln!("{what}: {e}");
            }
        }
        assert_eq!(
            w.links(host),
            host_before,
            "AttachGuest with {what} left links in the host"
        );
        assert_eq!(
            w.links(&c1),
            c1_before,
            "AttachGuest with {what} left links in the guest's namespace"
        );
        assert_eq!(
            list(&gn, &net),
            guests_before,
            "AttachGuest with {what} changed ListGuests"
        );
        assert_eq!(list(&gn, &idle), [], "a stopped network has no guests");
    }

    // Refused by the kernel rather than by the checks: the interface name
    // is taken in the guest's namespace (c0 has the eth0 of "keep").
    let c0_before = w.links(&c0);
    match try_attach(
        &gn,
        &net,
        "c9",
        &veth_opts(&netns_path(&c0), Some("eth0"), None),
    ) {
        Ok(ifname) => panic!("AttachGuest with an interface name taken succeeded: {ifname}"),
        Err(e) => {
            assert_eq!(w.links(host), host_before, "links left in the host");
            assert_eq!(w.links(&c0), c0_before, "links left in c0");
            assert_eq!(list(&gn, &net), guests_before, "ListGuests changed");
            assert!(
                [INVALID_ARGS.to_owned(), error("Failed"), error("Conflict")].contains(&e.name),
                "AttachGuest with an interface name taken in the namespace: {e}"
            );
            assert!(
                e.message.contains("eth0"),
                "the message does not name the interface: {e}"
            );
        }
    }

    // DetachGuest of what is not a port, or on a stopped network.
    let e = try_detach(&gn, &net, "up0").expect_err("DetachGuest of the uplink");
    assert_eq!(e.name, INVALID_ARGS, "{e}");
    assert!(e.message.contains("up0"), "{e}");
    let e = try_detach(&gn, &idle, &keep).expect_err("DetachGuest on a stopped network");
    assert_eq!(e.name, not_active, "{e}");
    assert_eq!(w.links(host), host_before);
    assert_eq!(list(&gn, &net), guests_before);

    std::thread::sleep(Duration::from_millis(300));
    let announced = any_guest_signals(&mon);
    assert!(
        announced.is_empty(),
        "refused attachments were announced: {announced:?}"
    );
}

#[test]
fn stopping_a_network_unplugs_its_guests() {
    root_or_skip!();
    let lab = Lab::new();
    let (w, host) = (&lab.world, lab.host.as_str());
    let gn = lab.gn();
    let net = started(&gn, "stops", "nat", "gnbr7", "10.77.76");
    let c1 = w.add_ns("c1");
    let x = w.add_ns("x");
    let mon = Monitor::start(lab.bus.address());

    let m1 = "52:54:00:76:00:01";
    let m2 = "52:54:00:76:00:02";
    let p1 = attach(
        &gn,
        &net,
        "c1",
        &veth_opts(&netns_path(&c1), None, Some(m1)),
    );
    let p2 = attach(&gn, &net, "vm2", &tap_opts(Some(0), Some(m2)));
    w.veth(host, "vhand0", &x, "eth0");
    w.ip(host, "link set vhand0 master gnbr7");
    let hand = GuestPort::new("vhand0", &mac_of(w, host, "vhand0"), "");
    let mut all = vec![
        GuestPort::new(&p1, m1, "c1"),
        GuestPort::new(&p2, m2, "vm2"),
        hand.clone(),
    ];
    all.sort();
    for g in &all {
        expect_signal(&mon, &net, "GuestAttached", g);
    }
    assert_eq!(list(&gn, &net), all);

    gn.stop(&net);
    for g in &all {
        expect_signal(&mon, &net, "GuestDetached", g);
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut detached = guest_signals(&mon, &net, "GuestDetached");
    detached.sort();
    assert_eq!(detached, all, "one GuestDetached per guest");
    assert!(!w.has_link(host, &p1), "the stop left the veth {p1}");
    assert!(!w.has_link(&c1, "eth0"), "the stop left the peer in c1");
    assert!(!w.has_link(host, &p2), "the stop left the tap {p2}");
    assert!(
        w.has_link(host, "vhand0"),
        "the stop deleted a port it did not make"
    );
    assert_eq!(w.master_of(host, "vhand0"), None);
    assert!(w.has_link(&x, "eth0"));
    assert_eq!(list(&gn, &net), []);

    // Started again: a fresh bridge, no guests from before.
    gn.start(&net);
    assert_eq!(list(&gn, &net), []);
    assert!(!w.has_link(host, &p1) && !w.has_link(host, &p2));
}

#[test]
fn a_path_that_is_not_a_namespace_is_refused_clearly() {
    root_or_skip!();
    let lab = Lab::new();
    let (w, host) = (&lab.world, lab.host.as_str());
    let gn = lab.gn();
    let net = started(&gn, "notns", "nat", "gnbr8", "10.77.77");
    let not_a_netns = lab.scratch.path().join("not-a-netns");
    std::fs::write(&not_a_netns, "").unwrap();
    let not_a_netns = not_a_netns.display().to_string();
    let host_before = w.links(host);

    let e = try_attach(&gn, &net, "c1", &veth_opts(&not_a_netns, None, None))
        .expect_err("AttachGuest into a plain file succeeded");
    assert_eq!(w.links(host), host_before, "links left in the host");
    assert_eq!(list(&gn, &net), [], "ListGuests changed");
    assert_eq!(
        e.name, INVALID_ARGS,
        "a netns path that is not a network namespace is a bad argument: {e}"
    );
    assert!(
        e.message.contains(&not_a_netns),
        "the message does not name the path: {e}"
    );
}

#[test]
fn a_bridged_networks_uplink_is_not_a_guest() {
    root_or_skip!();
    let lab = Lab::new();
    let (w, host) = (&lab.world, lab.host.as_str());
    let gn = lab.gn();
    let mon = Monitor::start(lab.bus.address());
    let net = gn.define(&format!(
        "name = \"lanbr\"\nmode = \"bridged\"\nbridge = \"gnbr9\"\n\
         [bridged]\ninterface = \"{UPLINK}\"\n"
    ));
    gn.start(&net);
    assert_eq!(w.master_of(host, UPLINK).as_deref(), Some("gnbr9"));
    assert_eq!(list(&gn, &net), [], "the enslaved NIC is listed as a guest");

    // A container on the LAN's own segment.
    let c1 = w.add_ns("c1");
    let m1 = "52:54:00:79:00:01";
    let p1 = attach(
        &gn,
        &net,
        "c1",
        &veth_opts(&netns_path(&c1), None, Some(m1)),
    );
    let port1 = GuestPort::new(&p1, m1, "c1");
    expect_signal(&mon, &net, "GuestAttached", &port1);
    assert_eq!(list(&gn, &net), std::slice::from_ref(&port1));
    w.ip(&c1, "addr add 10.200.0.60/24 dev eth0");
    w.ip(&c1, "link set eth0 up");
    probe::assert_ping(w, &lab.lan, "10.200.0.60");

    gn.stop(&net);
    expect_signal(&mon, &net, "GuestDetached", &port1);
    assert!(!w.has_link(host, &p1));
    assert_eq!(w.master_of(host, UPLINK), None);
    std::thread::sleep(Duration::from_millis(300));
    let about_uplink: Vec<String> = any_guest_signals(&mon)
        .into_iter()
        .filter(|s| s.contains(&format!("\"{UPLINK}\"")))
        .collect();
    assert!(
        about_uplink.is_empty(),
        "the NIC a bridged network enslaves is announced as a guest: {about_uplink:?}"
    );
}
