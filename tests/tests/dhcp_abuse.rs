//! A hostile guest against guestnet's DHCP server (issue 12, points 2-4):
//! DECLINEs of addresses it was never given, a DISCOVER/DECLINE flood, many
//! spoofed MACs from one bridge port; and lease journals that are large,
//! corrupt in the middle, or readable by all. Each test says what it caught
//! in the code before the fix.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use guestnet_tests::dhcp_abuse::{self, grant};
use guestnet_tests::dhcp_client::{mac, Udhcpc, UdhcpcOpts, LEASE_TIMEOUT};
use guestnet_tests::guestnet::unix_now;
use guestnet_tests::lease_journal::frame;

/// The tests of this file run one at a time: the flood and the 32,000-lease
/// replay each take a CPU, and a flood that shares this small machine with
/// them measures the machine, not guestnetd.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
use guestnet_tests::lab::LAN_ADDR;
use guestnet_tests::{root_or_skip, Lab};

/// A lab whose guestnetd's upstream DNS is the lan machine.
fn lab() -> Lab {
    Lab::with_resolv_conf(|_, _, _| {})
}

/// A nat network `name` on `bridge`, address `P.1/24`, pool
/// `P.lo`-`P.hi` of one-hour leases.
fn network(name: &str, bridge: &str, p: &str, lo: u8, hi: u8) -> String {
    format!(
        "name = \"{name}\"\nmode = \"nat\"\nbridge = \"{bridge}\"\n[ipv4]\naddress = \"{p}.1/24\"\n\
         dhcp = {{ start = \"{p}.{lo}\", end = \"{p}.{hi}\", lease_time = \"1h\" }}\n\
         [dns]\ndomain = \"{name}.lan\"\nforwarders = [\"{LAN_ADDR}\"]\n"
    )
}

/// How many frames `ns`'s eth0 has received.
fn frames_received(lab: &Lab, ns: &str) -> u64 {
    let n = lab
        .world
        .exec_ok(ns, &["cat", "/sys/class/net/eth0/statistics/rx_packets"]);
    n.trim()
        .parse()
        .unwrap_or_else(|e| panic!("rx_packets of {ns}: {n:?}: {e}"))
}

/// Starts udhcpc in a new guest and returns its address and how long it took.
fn lease_for(lab: &Lab, role: &str, host_if: &str, m: &str) -> (String, Duration) {
    let g = lab.add_dhcp_guest(role, host_if, "gnbr1", m);
    let t = Instant::now();
    let c = Udhcpc::start(&lab.world, &g, &UdhcpcOpts::default());
    let ip = c.wait_bound(LEASE_TIMEOUT).var("ip").to_owned();
    (ip, t.elapsed())
}

/// Caught before the fix: any client's DECLINE took any address out of the
/// pool for ten minutes, and a DECLINE naming a holder's MAC removed its
/// lease; three DECLINEs emptied this pool, and g2 got no lease.
#[test]
fn declines_of_addresses_the_sender_was_not_given_are_ignored() {
    root_or_skip!();
    let _serial = one_at_a_time();
    let lab = lab();
    let gn = lab.gn();
    let p = "10.78.10";
    let net = gn.define(&network("abuse1", "gnbr1", p, 100, 102));
    gn.start(&net);
    let m1 = mac(10, 1);
    let (ip1, _) = lease_for(&lab, "g1", "vg1", &m1);
    let evil = lab.add_guest("evil", "vev", "gnbr1", &format!("{p}.50/24"), None);
    let pool: Vec<String> = (100..=102).map(|o| format!("{p}.{o}")).collect();
    // As a MAC that was given nothing, and as g1's own MAC from another port.
    dhcp_abuse::decline(&lab.world, &evil, "02:bb:00:00:00:01", &pool);
    dhcp_abuse::decline(&lab.world, &evil, &m1, &pool);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        gn.lease_of(&net, &m1).map(|l| l.ip),
        Some(ip1.clone()),
        "a DECLINE from another guest removed g1's lease"
    );
    // The rest of the pool is still there for others.
    let (ip2, t2) = lease_for(&lab, "g2", "vg2", &mac(10, 2));
    let (ip3, t3) = lease_for(&lab, "g3", "vg3", &mac(10, 3));
    eprintln!("after the DECLINEs: g2 got {ip2} in {t2:?}, g3 got {ip3} in {t3:?}");
    assert!(ip2 != ip1 && ip3 != ip1 && ip2 != ip3);
}

/// Caught before the fix: with the flood's DECLINEs the pool emptied (the
/// victim got no lease at all) and the declined map grew with every random
/// address, scanned each second under the pool lock; later, the victim
/// waited for its lease until the flood ended (see the wait's assertion).
/// The issue asks for a 60 s flood, < 10 MB and other guests served within
/// 1 s: run this with GUESTNET_FLOOD_SECS=60 for that; by default 15 s.
#[test]
fn a_discover_decline_flood_grows_no_memory_and_others_still_get_leases() {
    root_or_skip!();
    let _serial = one_at_a_time();
    let lab = lab();
    let gn = lab.gn();
    let p = "10.78.11";
    let net = gn.define(&network("abuse2", "gnbr1", p, 100, 199));
    gn.start(&net);
    let pid = lab.service.pid().expect("guestnetd runs");
    // Warm up: one ordinary lease, so the server's steady state is reached.
    lease_for(&lab, "g1", "vg1", &mac(11, 1));
    let before = dhcp_abuse::rss_kib(pid);
    let evil = lab.add_guest("evil", "vev", "gnbr1", &format!("{p}.50/24"), None);
    let secs: u32 = std::env::var("GUESTNET_FLOOD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    // 3,000 packets a second: a thousand times any client's rate. An
    // unpaced flood from a namespace on this small shared machine starves
    // the CPUs and fills the kernel's per-CPU backlog, which drops
    // everyone's frames before any DHCP server sees them; that is not what
    // this test is about.
    let (flood, out) = dhcp_abuse::start_flood(&lab.world, &evil, secs, p, 3_000);
    std::thread::sleep(Duration::from_secs(5));
    let victim = lab.add_dhcp_guest("victim", "vvi", "gnbr1", &mac(11, 2));
    let frames_before = frames_received(&lab, &victim);
    let started_ns = now_ns();
    let c = Udhcpc::start(&lab.world, &victim, &UdhcpcOpts::default());
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let frames = frames_received(&lab, &victim) - frames_before;
    let window = window.elapsed();
    let during = dhcp_abuse::rss_kib(pid);
    let sent = dhcp_abuse::flood_result(&lab.world, flood, out);
    let after = dhcp_abuse::rss_kib(pid);
    let bound = c.wait_event(&["bound"], 0, Duration::from_secs(5));
    let took = bound
        .as_ref()
        .map(|e| Duration::from_nanos((e.time_ns - started_ns) as u64));
    eprintln!(
        "flood of {secs} s: {sent}; guestnetd RSS {before} KiB before, {during} during, \
         {after} after (+{} KiB); the victim's lease during the flood: {:?} after {took:?}",
        after.saturating_sub(before),
        bound.as_ref().map(|e| e.var("ip").to_owned())
    );
    eprintln!("the victim's interface received {frames} frames in {window:?} of the flood");
    assert!(
        after.saturating_sub(before) < 10 * 1024,
        "guestnetd grew by {} KiB",
        after - before
    );
    let took = took.unwrap_or_else(|| {
        panic!(
            "no lease for the victim\n{}\n{}",
            c.describe(),
            lab.service.log_tail(40)
        )
    });
    // The bound issue #12 asks for, from the victim's client start to its
    // lease. Caught before the fix (the rate rule policed requests only as
    // the bridge passed them up, not as it flooded them to its other
    // ports): 5 runs in 17 took 1.7-11 s, the server answering each
    // request within a millisecond while the victim's udhcpc, whose packet
    // socket has no filter, dropped the replies from a queue full of the
    // flood's broadcasts (`ss -0 -m`: d124 in its first 2 s).
    eprintln!("the victim waited {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "the victim waited {took:?} for a lease during the flood\n{}",
        c.describe()
    );
    // What of the flood reaches another guest: its port's rate (50 a
    // second), not the flood's. Caught before the fix in 11 runs of 11:
    // 2,887-3,081 frames a second, each queued to the victim's DHCP client.
    assert!(
        frames < 500,
        "the flood reached the victim: {frames} frames in {window:?}"
    );
    // The flooder holds at most its port's share of the pool.
    let spoofed = gn
        .list_leases(&net)
        .iter()
        .filter(|l| l.mac.starts_with("02:aa:"))
        .count();
    assert!(spoofed <= 4, "{spoofed} leases for the flood's MACs");
    assert!(gn.active(&net));
}

/// Caught before the fix: one guest inventing MACs got all twelve leases it
/// asked for (and would have got the whole pool).
#[test]
fn one_port_spoofing_many_macs_gets_at_most_its_limit() {
    root_or_skip!();
    let _serial = one_at_a_time();
    let lab = lab();
    let gn = lab.gn();
    let p = "10.78.12";
    let net = gn.define(&network("abuse3", "gnbr1", p, 100, 199));
    gn.start(&net);
    let evil = lab.add_guest("evil", "vev", "gnbr1", &format!("{p}.50/24"), None);
    let (acked, offers) = dhcp_abuse::take_many(&lab.world, &evil, 12, 1.0);
    eprintln!(
        "12 spoofed clients on one port: {offers} offers, {} acks: {acked:?}",
        acked.len()
    );
    assert_eq!(
        acked.len(),
        4,
        "the default max_leases_per_port is 4: {acked:?}"
    );
    let listed = gn.list_leases(&net);
    assert_eq!(listed.len(), 4, "{listed:?}");
    // Another port is served as usual.
    let (ip, took) = lease_for(&lab, "g1", "vg1", &mac(12, 1));
    eprintln!("a guest on another port got {ip} in {took:?}");
}

/// Stops the service, writes `journal` for network `name`, starts the
/// service again; returns how long the start took (until it owned its bus
/// name, which it takes after replaying the journals).
fn restart_with_journal(lab: &mut Lab, name: &str, journal: &[u8]) -> Duration {
    lab.service.stop();
    let path = lab
        .service
        .state_dir()
        .join(format!("leases/{name}.journal"));
    fs::write(&path, journal).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let t = Instant::now();
    lab.service.start_again();
    t.elapsed()
}

/// Caught before the fix: the replay was quadratic; 32,000 leases took
/// 10+ s, longer than the harness waits for the bus name. The time is
/// printed beside that of a start with an empty journal (the debug build's
/// start-up itself); the bound asserted is generous.
#[test]
fn a_journal_of_32000_leases_replays_fast() {
    root_or_skip!();
    let _serial = one_at_a_time();
    let mut lab = lab();
    let gn = lab.gn();
    let def = "name = \"big\"\nmode = \"nat\"\nbridge = \"gnbr1\"\n[ipv4]\n\
               address = \"10.79.0.1/16\"\n\
               dhcp = { start = \"10.79.0.10\", end = \"10.79.255.254\", lease_time = \"1h\" }\n";
    let net = gn.define(def);
    gn.start(&net);
    let n = 32_000u32;
    let expires = unix_now() + 3000;
    let mut journal = Vec::new();
    for i in 0..n {
        let ip = format!("10.79.{}.{}", i / 200 + 1, i % 200 + 10);
        let m = format!("52:54:01:00:{:02x}:{:02x}", i >> 8, i & 255);
        frame(
            &grant(&m, &ip, Some(&format!("h{i}")), expires),
            &mut journal,
        );
    }
    let baseline = restart_with_journal(&mut lab, "big", &[]);
    let took = restart_with_journal(&mut lab, "big", &journal);
    let gn = lab.gn();
    let t = Instant::now();
    let listed = gn.list_leases(&net).len();
    eprintln!(
        "replaying {n} leases ({} KiB): guestnetd on the bus after {took:?} \
         ({baseline:?} with an empty journal); ListLeases of {listed} took {:?}",
        journal.len() / 1024,
        t.elapsed()
    );
    assert_eq!(listed, n as usize);
    assert!(took < Duration::from_secs(5), "the start took {took:?}");
}

fn mode(p: &std::path::Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Caught before the fix: the journal was 0644, readable by every user of
/// the host (each guest's MAC, address and name).
#[test]
fn lease_journals_are_readable_by_root_only() {
    root_or_skip!();
    let _serial = one_at_a_time();
    let mut lab = lab();
    let gn = lab.gn();
    let p = "10.78.15";
    let net = gn.define(&network("priv", "gnbr1", p, 100, 199));
    gn.start(&net);
    lease_for(&lab, "g1", "vg1", &mac(15, 1));
    let path = lab.service.state_dir().join("leases/priv.journal");
    assert_eq!(mode(&path), 0o600, "{} is not private", path.display());
    // One left 0644 by an older guestnetd is made private when replayed.
    let bytes = fs::read(&path).unwrap();
    restart_with_journal(&mut lab, "priv", &bytes);
    assert_eq!(
        mode(&path),
        0o600,
        "a 0644 journal was left readable by all"
    );
    assert_eq!(lab.gn().list_leases(&net).len(), 1);
}

/// Caught before the fix: a corrupt record in the middle lost every lease
/// after it (one of three kept).
#[test]
fn a_corrupt_middle_record_loses_only_itself() {
    root_or_skip!();
    let _serial = one_at_a_time();
    let mut lab = lab();
    let gn = lab.gn();
    let p = "10.78.14";
    let net = gn.define(&network("mid", "gnbr1", p, 100, 199));
    gn.start(&net);

    let expires = unix_now() + 3000;
    let macs = [
        "52:54:00:78:0e:0a",
        "52:54:00:78:0e:0b",
        "52:54:00:78:0e:0c",
    ];
    let mut journal = Vec::new();
    let mut starts = Vec::new();
    for (i, m) in macs.iter().enumerate() {
        starts.push(journal.len());
        frame(
            &grant(m, &format!("{p}.{}", 150 + i), None, expires),
            &mut journal,
        );
    }
    // One byte of the middle record's payload flipped: its CRC fails.
    journal[starts[1] + 8 + 20] ^= 0x20;
    restart_with_journal(&mut lab, "mid", &journal);
    let gn = lab.gn();
    let listed: Vec<String> = gn.list_leases(&net).into_iter().map(|l| l.mac).collect();
    eprintln!("after the corrupt middle record: {listed:?}");
    assert!(listed.contains(&macs[0].to_owned()), "{listed:?}");
    assert!(!listed.contains(&macs[1].to_owned()), "{listed:?}");
    assert!(
        listed.contains(&macs[2].to_owned()),
        "the record after the corrupt one was lost: {listed:?}"
    );
}
