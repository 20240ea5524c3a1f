//! What one guest can do to the DNS server that every guest of its network
//! shares: hold its TCP connections, or claim names that are someone
//! else's. Both were holes (issue #12, points 6 and 7).

use std::time::{Duration, Instant};

use guestnet_tests::dhcp_client::{mac, Udhcpc, UdhcpcOpts, LEASE_TIMEOUT};
use guestnet_tests::lab::LAN_ADDR;
use guestnet_tests::upstream::Upstream;
use guestnet_tests::{cmd, dig, root_or_skip, Lab};

const DOMAIN: &str = "guest.lan";

/// A lab whose lan machine is the upstream DNS server (so that nothing is
/// asked of the machine's own resolver).
fn dns_lab() -> (Lab, Upstream) {
    let lab = Lab::with_resolv_conf(|_, _, _| {});
    let up = Upstream::start(
        &lab.world,
        &lab.lan,
        LAN_ADDR,
        &[("www.outside.test", "10.200.0.80")],
    );
    (lab, up)
}

/// A network on `p`.0/24 with a pool .100-.199, the domain, the lan
/// machine as forwarder, and the static host `web` at `p`.5.
fn network(name: &str, p: &str) -> String {
    let web = mac(99, 0x55);
    format!(
        r#"name = "{name}"
mode = "nat"
bridge = "gnbr1"
[ipv4]
address = "{p}.1/24"
dhcp = {{ start = "{p}.100", end = "{p}.199", lease_time = "2m" }}
hosts = [{{ mac = "{web}", ip = "{p}.5", name = "web" }}]
[dns]
domain = "{DOMAIN}"
forwarders = ["{LAN_ADDR}"]
"#
    )
}

/// A DNS-over-TCP client that opens `N` connections to `SERVER`:53 and
/// sends a query for `NAME` on each of them every second (or every
/// `PERIOD` seconds), draining the replies; a connection the server closes
/// is opened anew. With `SOURCES` (addresses, comma-separated) connection
/// i is made from the i-th of them, round robin.
const TCP_HOG: &str = r#"
import socket, struct, sys, time
server, n, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
period = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
sources = sys.argv[5].split(",") if len(sys.argv) > 5 else [None]
q = struct.pack(">HHHHHH", 0x4711, 0x0100, 1, 0, 0, 0)
for label in name.split("."):
    q += bytes([len(label)]) + label.encode()
q += b"\0" + struct.pack(">HH", 1, 1)
frame = struct.pack(">H", len(q)) + q
conns = {}
while True:
    for i in range(n):
        s = conns.get(i)
        try:
            if s is None:
                src = sources[i % len(sources)]
                s = socket.create_connection(
                    (server, 53), timeout=1, source_address=(src, 0) if src else None
                )
                s.setblocking(False)
                conns[i] = s
            s.send(frame)
        except OSError:
            conns.pop(i, None)
            if s is not None:
                s.close()
    time.sleep(period)
    for i, s in list(conns.items()):
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    raise OSError("closed")
        except BlockingIOError:
            pass
        except OSError:
            conns.pop(i, None)
            s.close()
"#;

/// One guest opening 80 TCP connections and keeping every one busy (a
/// query a second on each, well inside the 10 s idle timeout) held all 64
/// slots of the server: another guest's `dig +tcp` waited in the backlog
/// and timed out. Caught on the old code: no reply within dig's 2 s.
#[test]
fn one_guest_keeping_many_tcp_connections_busy_does_not_lock_out_another() {
    root_or_skip!();
    let (lab, _up) = dns_lab();
    let gn = lab.gn();
    let p = "10.77.70";
    let net = gn.define(&network("dnsab1", p));
    gn.start(&net);
    let w = &lab.world;
    let server = format!("{p}.1");
    let hog = lab.add_guest("hog", "vhog", "gnbr1", &format!("{p}.10/24"), Some(&server));
    let other = lab.add_guest("g2", "vg2", "gnbr1", &format!("{p}.11/24"), Some(&server));
    // Both are served before the hog starts.
    let r = dig::query(w, &other, &server, &["+tcp", &format!("web.{DOMAIN}"), "A"]);
    assert_eq!(r.data("A"), [format!("{p}.5")], "{r}");

    let script = lab.scratch.path().join("tcp_hog.py");
    std::fs::write(&script, TCP_HOG).unwrap();
    let script = script.display().to_string();
    let hog_pid = w.spawn(
        &hog,
        &[
            cmd::python3(),
            &script,
            &server,
            "80",
            &format!("web.{DOMAIN}"),
        ],
    );
    // Two rounds of the hog: every connection it could open is open and busy.
    std::thread::sleep(Duration::from_secs(3));
    assert!(cmd::still_running(hog_pid), "the TCP hog died");
    let established = w.exec_ok(&hog, &["ss", "-Htn", "state", "established"]);
    eprintln!(
        "the hog holds {} established TCP connections",
        established.lines().count()
    );

    for round in 0..3 {
        let started = Instant::now();
        let r = dig::query(w, &other, &server, &["+tcp", &format!("web.{DOMAIN}"), "A"]);
        let took = started.elapsed();
        eprintln!("round {round}: dig +tcp answered in {took:?}");
        assert_eq!(
            r.data("A"),
            [format!("{p}.5")],
            "another guest's TCP query went unanswered while one guest kept \
             many connections busy: {r}"
        );
        assert!(took < Duration::from_secs(2), "took {took:?}: {r}");
    }
    // UDP is not affected either.
    assert_eq!(dig::a(w, &other, &server, "web"), [format!("{p}.5")]);
    w.kill(hog_pid);
}

/// One guest with 64 addresses on its interface, one TCP connection from
/// each, every one sent a query several times a second: each address held
/// one slot, all 64 slots were busy, and the server closed every newcomer,
/// so another guest's `dig +tcp` got no answer. Caught on the code before
/// the fix (main at 56bb62f): dig failed in the first round
/// ("communications error ...: connection reset"). Now the connection
/// open longest gives way once it is 2 s old.
#[test]
fn one_guest_with_many_addresses_keeping_tcp_connections_busy_does_not_lock_out_another() {
    root_or_skip!();
    let (lab, _up) = dns_lab();
    let gn = lab.gn();
    let p = "10.77.71";
    let net = gn.define(&network("dnsab2", p));
    gn.start(&net);
    let w = &lab.world;
    let server = format!("{p}.1");
    let hog = lab.add_guest("hog", "vhog", "gnbr1", &format!("{p}.10/24"), Some(&server));
    let other = lab.add_guest("g2", "vg2", "gnbr1", &format!("{p}.11/24"), Some(&server));
    // One address per slot of the server.
    let sources: Vec<String> = (20..20 + 64).map(|i| format!("{p}.{i}")).collect();
    for a in &sources {
        w.ip(&hog, &format!("addr add {a}/24 dev eth0"));
    }
    let r = dig::query(w, &other, &server, &["+tcp", &format!("web.{DOMAIN}"), "A"]);
    assert_eq!(r.data("A"), [format!("{p}.5")], "{r}");

    let script = lab.scratch.path().join("tcp_hog.py");
    std::fs::write(&script, TCP_HOG).unwrap();
    let script = script.display().to_string();
    let hog_pid = w.spawn(
        &hog,
        &[
            cmd::python3(),
            &script,
            &server,
            &sources.len().to_string(),
            &format!("web.{DOMAIN}"),
            "0.2",
            &sources.join(","),
        ],
    );
    // Every connection open and busy, and older than the server's grace.
    std::thread::sleep(Duration::from_secs(3));
    assert!(cmd::still_running(hog_pid), "the TCP hog died");
    let established = w.exec_ok(&hog, &["ss", "-Htn", "state", "established"]);
    eprintln!(
        "the hog holds {} established TCP connections from {} addresses",
        established.lines().count(),
        sources.len()
    );

    for round in 0..3 {
        let started = Instant::now();
        let r = dig::query(w, &other, &server, &["+tcp", &format!("web.{DOMAIN}"), "A"]);
        let took = started.elapsed();
        eprintln!("round {round}: dig +tcp returned in {took:?}");
        assert_eq!(
            r.data("A"),
            [format!("{p}.5")],
            "another guest's TCP query went unanswered while one guest kept a \
             connection busy from each of 64 addresses: {r}"
        );
        assert!(took < Duration::from_secs(3), "took {took:?}: {r}");
    }
    assert!(cmd::still_running(hog_pid), "the TCP hog died");
    w.kill(hog_pid);
}

/// Polls until `dig name A` from `ns` gets a reply with the addresses `want`
/// (5 s at most).
#[track_caller]
fn wait_for_a(lab: &Lab, ns: &str, server: &str, name: &str, want: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = dig::query(&lab.world, ns, server, &[name, "A"]);
        if r.status.is_some() && r.data("A") == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: expected {want:?}, got {r}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The warnings in guestnetd's log that report a refused name for `mac`.
fn refusals(lab: &Lab, mac: &str) -> Vec<String> {
    std::fs::read_to_string(lab.service.log_path())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("not published") && l.contains(mac))
        .map(str::to_owned)
        .collect()
}

/// A DHCP host name was published whoever else had it: two guests both
/// resolved as `victim`, and a guest could name itself `wpad`, `localhost`
/// or the name of a static host of the definition. Caught on the old code:
/// `victim` resolved to both guests' addresses.
#[test]
fn a_name_belongs_to_its_first_guest_and_reserved_names_to_no_one() {
    root_or_skip!();
    let (lab, _up) = dns_lab();
    let gn = lab.gn();
    let p = "10.77.71";
    let net = gn.define(&network("dnsab2", p));
    gn.start(&net);
    let w = &lab.world;
    let server = format!("{p}.1");
    let victim = format!("victim.{DOMAIN}");

    let (mac_a, mac_b) = (mac(71, 1), mac(71, 2));
    let ga = lab.add_dhcp_guest("ga", "vga", "gnbr1", &mac_a);
    let gb = lab.add_dhcp_guest("gb", "vgb", "gnbr1", &mac_b);
    // Every port is plugged in before any guest talks: the bridge takes the
    // lowest MAC of its ports, so a port plugged in later may change it
    // under a guest's ARP cache (and that guest then reaches no one).
    let reserved = ["wpad", "localhost", "isatap", "web"];
    let others: Vec<(String, String)> = (0..reserved.len())
        .map(|i| {
            let m = mac(71, 10 + i as u8);
            let g = lab.add_dhcp_guest(&format!("r{i}"), &format!("vr{i}"), "gnbr1", &m);
            (m, g)
        })
        .collect();
    let ca = Udhcpc::start(w, &ga, &UdhcpcOpts::named("victim"));
    let ip_a = ca.wait_bound(LEASE_TIMEOUT).var("ip").to_owned();
    assert_eq!(dig::a(w, &ga, &server, &victim), [ip_a.as_str()]);
    let cb = Udhcpc::start(w, &gb, &UdhcpcOpts::named("victim"));
    let ip_b = cb.wait_bound(LEASE_TIMEOUT).var("ip").to_owned();
    // B's lease stands; the name stays A's.
    assert!(gn.lease_of(&net, &mac_b).is_some(), "B holds no lease");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        dig::a(w, &ga, &server, &victim),
        [ip_a.as_str()],
        "a second guest took a name another guest holds"
    );
    assert_eq!(dig::a(w, &ga, &server, "victim"), [ip_a.as_str()]);
    let r = dig::query(w, &ga, &server, &["-x", &ip_b]);
    assert!(
        !r.data("PTR").iter().any(|n| n.starts_with("victim")),
        "B's address points to victim: {r}"
    );
    // Refused once, with the network, the guest and the name...
    let lines = refusals(&lab, &mac_b);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("dnsab2") && lines[0].contains("victim"),
        "{}",
        lines[0]
    );
    // ...not again when B renews.
    cb.renew(Duration::from_secs(10));
    assert_eq!(dig::a(w, &ga, &server, &victim), [ip_a.as_str()]);
    assert_eq!(refusals(&lab, &mac_b).len(), 1);

    // Reserved names and the static host's name are no one's.
    let mut claimants = Vec::new();
    for (name, (m, g)) in reserved.into_iter().zip(others) {
        let c = Udhcpc::start(w, &g, &UdhcpcOpts::named(name));
        let ip = c.wait_bound(LEASE_TIMEOUT).var("ip").to_owned();
        claimants.push((name, m, ip, c));
    }
    std::thread::sleep(Duration::from_millis(300));
    for (name, m, ip, _) in &claimants {
        let r = dig::query(w, &ga, &server, &[&format!("{name}.{DOMAIN}"), "A"]);
        if *name == "web" {
            assert_eq!(r.data("A"), [format!("{p}.5")], "{r}");
        } else {
            assert!(r.is("NXDOMAIN"), "a guest claimed {name}: {r}");
        }
        let r = dig::query(w, &ga, &server, &["-x", ip]);
        assert!(
            !r.data("PTR").iter().any(|n| n.starts_with(name)),
            "{ip} points to {name}: {r}"
        );
        assert_eq!(
            refusals(&lab, m).len(),
            1,
            "refusal of {name} not logged once"
        );
    }

    // A's lease ends: the name is free, and B gets it when it next renews.
    ca.release();
    // (A has no address any more: B asks.)
    wait_for_a(&lab, &gb, &server, &victim, &[]);
    cb.renew(Duration::from_secs(10));
    wait_for_a(&lab, &gb, &server, &victim, &[ip_b]);
}
