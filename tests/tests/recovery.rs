//! Crash recovery: guestnetd killed outright (SIGKILL: no cleanup, no
//! goodbye) and started again.
//!
//! - Networks that were active are taken back as they are: not a link, an
//!   address, a route or an nftables rule handle changes, and guests keep
//!   talking (to each other, and through NAT to the lan machine) without
//!   losing a packet while the service is down.
//! - Killed at a random moment of Start, Stop, Update, Undefine or
//!   AttachGuest, over and over, the next guestnetd always converges: each
//!   network is fully active or fully absent, nothing leaks (links, rules,
//!   records, temporary files), and what a call acknowledged before the kill
//!   is still true after it. The engine (when the kill comes, what is
//!   checked, the `GUESTNET_RECOVERY_*` variables that steer it) is
//!   `guestnet_tests::chaos` (tests/src/chaos.rs); `scripts/stress-recovery.sh`
//!   runs it long.
//! - Every lease a client got, and every LeaseAdded seen, survives a kill
//!   right after the ACK; a torn journal tail is cut off with a log line and
//!   the leases before it stay.
//! - Someone flushing the host's ruleset or deleting guestnet's table sees
//!   it back within a second, without asking guestnet for it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::{Duration, Instant};

use guestnet_tests::chaos::{Chaos, Settings};
use guestnet_tests::dhcp_client::{mac, Udhcpc, UdhcpcOpts, LEASE_TIMEOUT};
use guestnet_tests::guest::{attach, list, netns_path, tap_opts, veth_opts, GuestPort};
use guestnet_tests::guestnet::{lease_keys, Lease};
use guestnet_tests::host_view::HostView;
use guestnet_tests::lab::{started, LAN_ADDR};
use guestnet_tests::monitor::Monitor;
use guestnet_tests::probe::LongPing;
use guestnet_tests::{lease_journal, probe, root_or_skip, Lab};
use serde_json::Value;

// ---------------------------------------------------------------------------
// 1. A kill and a start re-adopt everything untouched
// ---------------------------------------------------------------------------

#[test]
fn sigkill_and_start_readopt_every_active_network_untouched_and_guests_lose_no_packet() {
    root_or_skip!();
    let mut lab = Lab::new();
    let gn = lab.gn();
    let host = lab.host.clone();
    let nat = started(&gn, "natnet", "nat", "gnbr1", "10.77.90");
    let routed = started(&gn, "rtnet", "routed", "gnbr2", "10.77.91");
    let iso = started(&gn, "isonet", "isolated", "gnbr3", "10.77.92");

    // Guests: two containers (AttachGuest veths) and a VM's tap on the nat
    // network, a container and a hand-plugged guest on the routed one, a tap
    // on the isolated one. The containers and the hand-plugged guest take
    // their addresses from guestnet's DHCP with udhcpc.
    let w = &lab.world;
    let (c1, c2, c5) = (w.add_ns("c1"), w.add_ns("c2"), w.add_ns("c5"));
    let (m1, m2, m3, m4, m5, m6) = (
        mac(90, 1),
        mac(90, 2),
        mac(90, 3),
        mac(91, 4),
        mac(91, 5),
        mac(92, 6),
    );
    attach(
        &gn,
        &nat,
        "c1",
        &veth_opts(&netns_path(&c1), None, Some(&m1)),
    );
    attach(
        &gn,
        &nat,
        "c2",
        &veth_opts(&netns_path(&c2), None, Some(&m2)),
    );
    attach(&gn, &nat, "vm3", &tap_opts(None, Some(&m3)));
    let g4 = lab.add_dhcp_guest("g4", "vg4", "gnbr2", &m4);
    attach(
        &gn,
        &routed,
        "c5",
        &veth_opts(&netns_path(&c5), None, Some(&m5)),
    );
    attach(&gn, &iso, "vm6", &tap_opts(None, Some(&m6)));
    let clients: Vec<Udhcpc> = [(&c1, "c1"), (&c2, "c2"), (&g4, "g4"), (&c5, "c5")]
        .iter()
        .map(|(ns, name)| Udhcpc::start(w, ns, &UdhcpcOpts::named(name)))
        .collect();
    let ips: Vec<String> = clients
        .iter()
        .map(|c| c.wait_bound(LEASE_TIMEOUT).var("ip").to_owned())
        .collect();
    let ip2 = ips[1].clone();
    probe::assert_ping(w, &c1, &ip2);
    probe::assert_ping(w, &c1, LAN_ADDR);

    let nets = [&nat, &routed, &iso];
    let leases_before: Vec<_> = nets
        .iter()
        .map(|n| lease_keys(&gn.list_leases(n)))
        .collect();
    assert_eq!(
        leases_before.iter().map(BTreeSet::len).sum::<usize>(),
        4,
        "{leases_before:?}"
    );
    let guests_before: Vec<Vec<GuestPort>> = nets.iter().map(|n| list(&gn, n)).collect();
    assert_eq!(
        guests_before.iter().map(Vec::len).collect::<Vec<_>>(),
        [3, 2, 1],
        "{guests_before:?}"
    );
    let before = HostView::settled(w, &host);
    assert!(
        before.nft != Value::Null,
        "no guestnet table before the kill"
    );

    // 120 pings each, 50 ms apart (6 s), the kill and the start inside them.
    const COUNT: u32 = 120;
    let pings: Vec<(&str, LongPing)> = [
        ("guest to guest", ip2.as_str()),
        ("guest to the lan machine (NAT)", LAN_ADDR),
    ]
    .iter()
    .map(|(what, to)| (*what, LongPing::start(w, &c1, to, COUNT)))
    .collect();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));
    lab.service.sigkill();
    lab.service.start_again();
    let restarted = t0.elapsed();
    let w = &lab.world;
    for (what, ping) in &pings {
        assert!(
            ping.is_running(),
            "the kill and start took {restarted:?}, longer than the pings ({what}) ran: raise COUNT"
        );
    }
    for (what, ping) in pings {
        let pinged = ping.finish(w);
        assert_eq!(
            (pinged.sent, pinged.received),
            (COUNT, COUNT),
            "pings {what} were lost while guestnetd was killed and started again:\n{}",
            pinged.output
        );
    }

    let gn = lab.gn();
    let after = HostView::read(w, &host);
    let changes = after.changes_since(&before);
    assert!(
        changes.is_empty(),
        "the restart after a SIGKILL changed the host (re-adoption must leave it as it is):\n{}",
        changes.join("\n")
    );
    for (i, n) in nets.iter().enumerate() {
        assert!(gn.active(n), "{n} is no longer active");
        assert_eq!(
            lease_keys(&gn.list_leases(n)),
            leases_before[i],
            "the leases of {n} changed across the kill"
        );
        assert_eq!(
            list(&gn, n),
            guests_before[i],
            "the guests of {n} changed across the kill"
        );
    }
    let log = lab.service.log_since_start(2);
    for name in ["natnet", "rtnet", "isonet"] {
        assert!(
            log.contains(&format!("re-adopted active network {name}")),
            "no re-adoption of {name} logged:\n{log}"
        );
    }
    for bad in ["tearing it down", "cleaning up", "restoring it"] {
        assert!(
            !log.contains(bad),
            "the restart logged {bad:?} although nothing was amiss:\n{log}"
        );
    }
    // And the data path still works both ways after the restart.
    probe::assert_ping(w, &c1, &ip2);
    probe::assert_ping(w, &c1, LAN_ADDR);
    drop(clients);
}

// ---------------------------------------------------------------------------
// 2. SIGKILL at random moments of the life-cycle calls
// ---------------------------------------------------------------------------

/// The engine and everything it checks are in `guestnet_tests::chaos`.
#[test]
fn sigkill_at_random_moments_of_calls_always_converges() {
    root_or_skip!();
    let mut chaos = Chaos::new(Settings::from_env());
    chaos.time_the_calls();
    chaos.start_every_network();
    chaos.kill_at_random_moments();
}

/// The (ifindex, alias) of `name` in `ns`, None when it is gone.
fn link_identity(lab: &Lab, name: &str) -> Option<(u64, Option<String>)> {
    let links = lab.world.ip_json(&lab.host, "link show");
    links.as_array()?.iter().find_map(|l| {
        (l["ifname"] == name).then(|| {
            (
                l["ifindex"].as_u64().expect("an ifindex"),
                l["ifalias"].as_str().map(str::to_owned),
            )
        })
    })
}

/// A start killed half-way leaves a record in phase `applying`; the next
/// guestnetd tears the network down, adopting an unmarked bridge of the
/// planned name only if it is the one the record says the start made (its
/// ifindex). Here someone else made a bridge of that name after the kill:
/// it survives, untouched. And the bridge the start did make, under the
/// recorded index but killed before its alias, is still taken away. Caught
/// on the code before the fix: the foreign bridge was marked as guestnet's
/// and deleted.
#[test]
fn a_killed_start_adopts_only_the_bridge_its_record_proves_ours() {
    root_or_skip!();
    let mut lab = Lab::new();
    let gn = lab.gn();
    let (bridge, name) = ("gnbrap", "appl");
    let net = started(&gn, name, "nat", bridge, "10.77.93");
    assert!(gn.active(&net));
    lab.service.sigkill();

    // The state a start killed between making the bridge and marking it
    // would leave, except that this bridge is somebody else's: made with
    // no index of guestnet's choosing, and no alias.
    let record_path = lab
        .service
        .runtime_dir()
        .join("networks")
        .join(format!("{name}.json"));
    let mut record: Value =
        serde_json::from_slice(&fs::read(&record_path).expect("the network's record")).unwrap();
    record["phase"] = "applying".into();
    record.as_object_mut().unwrap().remove("bridge_index");
    fs::write(&record_path, serde_json::to_vec(&record).unwrap()).unwrap();
    lab.world.ip(&lab.host, &format!("link del {bridge}"));
    lab.world
        .ip(&lab.host, &format!("link add {bridge} type bridge"));
    let foreign = link_identity(&lab, bridge).expect("the foreign bridge");
    assert_eq!(foreign.1, None);

    lab.service.start_again();
    assert_eq!(
        link_identity(&lab, bridge),
        Some(foreign.clone()),
        "a bridge guestnet never made was taken over or deleted after a killed start\n{}",
        lab.service.log_tail(30)
    );
    assert!(!gn.active(&net), "the killed start is not undone");
    assert!(
        !record_path.exists(),
        "the record of the killed start stays"
    );
    let log = lab.service.log_tail(60);
    assert!(
        log.contains(&format!("leaving bridge {bridge}")),
        "no log line says why {bridge} was left alone:\n{log}"
    );

    // The bridge the killed start made itself: under the index it recorded.
    lab.service.sigkill();
    let index = 0x1234_5678u32;
    record["bridge_index"] = index.into();
    fs::write(&record_path, serde_json::to_vec(&record).unwrap()).unwrap();
    lab.world.ip(&lab.host, &format!("link del {bridge}"));
    lab.world.ip(
        &lab.host,
        &format!("link add {bridge} index {index} type bridge"),
    );
    lab.service.start_again();
    assert_eq!(
        link_identity(&lab, bridge),
        None,
        "the bridge a killed start made (ifindex {index}, as recorded) was left behind\n{}",
        lab.service.log_tail(30)
    );
    assert!(!record_path.exists());
    // And the network starts again, on a bridge of its own.
    gn.start(&net);
    let (ifindex, alias) = link_identity(&lab, bridge).expect("the bridge of the started network");
    assert!(
        ifindex >= 1 << 28,
        "made under an index of guestnet's choosing: {ifindex}"
    );
    assert!(alias.is_some());
    gn.stop(&net);
}

// ---------------------------------------------------------------------------
// 3. Leases are durable
// ---------------------------------------------------------------------------

/// Waits (polling every 2 ms, 30 s at most) until `done` holds.
#[track_caller]
fn poll_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// One DHCP guest of the lease test.
struct Client {
    mac: String,
    udhcpc: Udhcpc,
}

impl Client {
    /// Every address a `bound` or `renew` event of its script recorded.
    fn addresses(&self) -> BTreeSet<String> {
        self.udhcpc
            .events()
            .iter()
            .filter(|e| e.event == "bound" || e.event == "renew")
            .filter_map(|e| e.get("ip").map(str::to_owned))
            .collect()
    }

    fn bound(&self) -> bool {
        !self.addresses().is_empty()
    }
}

#[test]
fn every_lease_granted_before_a_sigkill_is_there_after_it() {
    root_or_skip!();
    let mut lab = Lab::new();
    let gn = lab.gn();
    let net = started(&gn, "durable", "nat", "gnbr1", "10.77.95");
    let mon = Monitor::start(lab.bus.address());
    let mut clients: Vec<Client> = Vec::new();

    // Three waves of six clients, each ended by a kill: once every client's
    // script ran (the ACK arrived); once guestnetd announced every lease
    // (LeaseAdded: the lease is on disk, the ACK about to go); and in the
    // middle of the storm, after the first two announcements.
    for wave in 0u8..3 {
        let first = clients.len();
        for i in 0..6u8 {
            let m = mac(95, wave * 10 + i);
            let role = format!("w{wave}c{i}");
            let ns = lab.add_dhcp_guest(&role, &format!("vw{wave}c{i}"), "gnbr1", &m);
            let udhcpc = Udhcpc::start(&lab.world, &ns, &UdhcpcOpts::named(&role));
            clients.push(Client { mac: m, udhcpc });
        }
        let wave_macs: Vec<String> = clients[first..].iter().map(|c| c.mac.clone()).collect();
        let announced = |n: usize| {
            let seen: BTreeSet<String> = mon
                .leases("LeaseAdded")
                .into_iter()
                .map(|l| l.mac)
                .filter(|m| wave_macs.contains(m))
                .collect();
            seen.len() >= n
        };
        match wave {
            0 => poll_until("every client of wave 0 bound", || {
                clients[first..].iter().all(Client::bound)
            }),
            1 => poll_until("a LeaseAdded for every client of wave 1", || announced(6)),
            _ => poll_until("two LeaseAdded of wave 2", || announced(2)),
        }
        // What was granted before the kill.
        let signalled: Vec<Lease> = mon.leases("LeaseAdded");
        let got: Vec<(String, BTreeSet<String>)> = clients
            .iter()
            .map(|c| (c.mac.clone(), c.addresses()))
            .collect();
        lab.service.sigkill();
        lab.service.start_again();
        let gn = lab.gn();
        let after = gn.list_leases(&net);
        let listed: BTreeMap<String, String> = after
            .iter()
            .map(|l| (l.mac.clone(), l.ip.clone()))
            .collect();
        for l in &signalled {
            assert_eq!(
                listed.get(&l.mac),
                Some(&l.ip),
                "wave {wave}: LeaseAdded {l:?} was announced before the kill, \
                 and ListLeases after it says {after:?}\n{}",
                lab.service.log_tail(40)
            );
        }
        for (m, ips) in &got {
            if let Some(ip) = ips.iter().next_back() {
                assert!(
                    ips.len() == 1 && listed.get(m) == Some(ip),
                    "wave {wave}: the client {m} got {ips:?} before the kill, \
                     and ListLeases after it says {after:?}"
                );
            }
        }
        // The clients cut off in the middle find their leases.
        poll_until(
            &format!("every client bound after wave {wave}'s kill"),
            || clients.iter().all(Client::bound),
        );
    }

    // No address was ever given to two clients, nor a client moved: a lost
    // lease would show as one or the other.
    let gn = lab.gn();
    let listed: BTreeMap<String, String> = gn
        .list_leases(&net)
        .into_iter()
        .map(|l| (l.mac, l.ip))
        .collect();
    let mut holders: BTreeMap<String, String> = BTreeMap::new();
    for c in &clients {
        let ips = c.addresses();
        assert_eq!(
            ips.len(),
            1,
            "{} was given several addresses across the kills: {ips:?}\n{}",
            c.mac,
            c.udhcpc.describe()
        );
        let ip = ips.into_iter().next().unwrap();
        if let Some(other) = holders.insert(ip.clone(), c.mac.clone()) {
            panic!("{ip} was given to both {other} and {}", c.mac);
        }
        assert_eq!(listed.get(&c.mac), Some(&ip), "{}: {listed:?}", c.mac);
    }
    assert_eq!(listed.len(), clients.len(), "{listed:?}");
}

#[test]
fn a_torn_journal_tail_is_dropped_and_the_leases_before_it_stay() {
    root_or_skip!();
    let mut lab = Lab::new();
    let gn = lab.gn();
    let net = started(&gn, "torn", "nat", "gnbr1", "10.77.96");
    let clients: Vec<Udhcpc> = (0..3u8)
        .map(|i| {
            let role = format!("t{i}");
            let ns = lab.add_dhcp_guest(&role, &format!("vt{i}"), "gnbr1", &mac(96, i));
            Udhcpc::start(&lab.world, &ns, &UdhcpcOpts::named(&role))
        })
        .collect();
    for c in &clients {
        c.wait_bound(LEASE_TIMEOUT);
    }
    let before = lease_keys(&gn.list_leases(&net));
    assert_eq!(before.len(), 3, "{before:?}");
    let journal = lab.service.state_dir().join("leases/torn.journal");

    // Garbage, then half of a real record (what a crash in the middle of a
    // write leaves): each is cut off at the next start, which says so.
    let whole =
        fs::read(&journal).unwrap_or_else(|e| panic!("no journal at {}: {e}", journal.display()));
    let (records, valid) = lease_journal::records(&whole);
    assert!(
        valid == whole.len() && records.len() >= 3,
        "the journal is not {}+ whole records: {records:?}",
        3
    );
    let first_len = u32::from_le_bytes(whole[..4].try_into().unwrap()) as usize;
    let mut garbage = Vec::new();
    garbage.extend_from_slice(&200u32.to_le_bytes());
    garbage.extend_from_slice(&0xdead_beefu32.to_le_bytes());
    garbage.extend_from_slice(b"{\"op\":\"grant\",\"mac\":\"52:54:00:77:60:");
    let tails = [garbage, whole[..8 + first_len / 2].to_vec()];
    for (i, tail) in tails.iter().enumerate() {
        lab.service.stop();
        let len = fs::metadata(&journal).unwrap().len();
        let mut bytes = fs::read(&journal).unwrap();
        bytes.extend_from_slice(tail);
        fs::write(&journal, &bytes).unwrap();
        lab.service.start_again();
        let gn = lab.gn();
        assert_eq!(
            lease_keys(&gn.list_leases(&net)),
            before,
            "tail {i}: leases lost or changed after a torn tail was cut off"
        );
        let log = lab.service.log_since_start(i as u32 + 2);
        let said = format!(
            "dropped {} bytes of a torn or corrupt journal tail",
            tail.len()
        );
        assert!(
            log.contains(&said),
            "tail {i}: the log does not say {said:?}:\n{log}"
        );
        assert_eq!(
            fs::metadata(&journal).unwrap().len(),
            len,
            "tail {i}: the torn tail is still in the journal"
        );
    }

    // The journal goes on: a renewal keeps its address, a new client gets
    // an address nobody holds, and both outlive one more kill.
    let r = clients[0].renew(Duration::from_secs(10));
    let ip0 = before
        .iter()
        .find(|l| l.0 == mac(96, 0))
        .map(|l| l.1.clone())
        .unwrap();
    assert_eq!(r.var("ip"), ip0);
    let ns = lab.add_dhcp_guest("t3", "vt3", "gnbr1", &mac(96, 3));
    let c3 = Udhcpc::start(&lab.world, &ns, &UdhcpcOpts::named("t3"));
    let ip3 = c3.wait_bound(LEASE_TIMEOUT).var("ip").to_owned();
    assert!(
        before.iter().all(|l| l.1 != ip3),
        "{ip3} was already leased"
    );
    lab.service.sigkill();
    lab.service.start_again();
    let after = lab.gn().list_leases(&net);
    assert_eq!(after.len(), 4, "{after:?}");
    assert!(after.iter().any(|l| l.mac == mac(96, 3) && l.ip == ip3));
    let bytes = fs::read(&journal).unwrap();
    assert_eq!(
        lease_journal::records(&bytes).1,
        bytes.len(),
        "the journal is not whole after the kill"
    );
}

// ---------------------------------------------------------------------------
// 4. Someone else deletes guestnet's table
// ---------------------------------------------------------------------------

#[test]
fn a_flushed_ruleset_or_a_deleted_table_comes_back_within_a_second() {
    root_or_skip!();
    let lab = Lab::new();
    let (w, host) = (&lab.world, lab.host.as_str());
    let gn = lab.gn();
    let net = started(&gn, "fw", "nat", "gnbr1", "10.77.97");
    let g1 = lab.add_guest("g1", "vg1", "gnbr1", "10.77.97.10/24", Some("10.77.97.1"));
    // The lan machine has no route to the guests: only NAT answers this.
    probe::assert_ping(w, &g1, LAN_ADDR);
    let table = lab.guestnet_table().expect("guestnet's table");

    let deletions: [(&str, &[&str]); 2] = [
        ("nft flush ruleset", &["nft", "flush", "ruleset"]),
        (
            "nft delete table inet guestnet",
            &["nft", "delete", "table", "inet", "guestnet"],
        ),
    ];
    for round in 0..2 {
        for (what, args) in deletions {
            w.exec_ok(host, args);
            let t0 = Instant::now();
            // Back means back as it was: poll until the table is whole again.
            let back = loop {
                if let Some(t) = lab.guestnet_table() {
                    if t == table || t0.elapsed() > Duration::from_secs(1) {
                        break Some(t);
                    }
                }
                if t0.elapsed() > Duration::from_secs(1) {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            let took = t0.elapsed();
            let back = back.unwrap_or_else(|| {
                panic!(
                    "round {round}: after `{what}` guestnet's table was not back within 1 s\n\
                     --- guestnetd log (tail) ---\n{}",
                    lab.service.log_tail(30)
                )
            });
            assert_eq!(
                back, table,
                "round {round}: after `{what}` the table came back different"
            );
            eprintln!("round {round}: `{what}`: the table was back after {took:?}");
            probe::assert_ping(w, &g1, LAN_ADDR);
        }
    }
    let log = fs::read_to_string(lab.service.log_path()).unwrap_or_default();
    assert!(
        log.matches("restoring it").count() >= 4,
        "four restorations are not all in the log:\n{log}"
    );

    // guestnet still knows what it has: a stop removes the table, a start
    // brings it back, and the guest (plugged in again: the stop deleted the
    // bridge) goes out again.
    gn.stop(&net);
    assert_eq!(lab.guestnet_table(), None, "the stop left the table");
    gn.start(&net);
    assert_eq!(lab.guestnet_table().as_deref(), Some(table.as_str()));
    w.ip(host, "link set vg1 master gnbr1");
    probe::assert_ping(w, &g1, LAN_ADDR);
}
