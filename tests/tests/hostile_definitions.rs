//! Hostile definitions: huge, deeply nested, not UTF-8, names with `/` and
//! `..`, 16-byte interface names, DHCP ranges outside the subnet or
//! reversed, overlapping static hosts, lease times of 0 or absurd size,
//! unknown keys, a mode that does not exist. Each is refused — by
//! DefineNetwork and by CreateNetwork — with InvalidConfig (UnknownMode for
//! the mode) naming the problem, within a bounded time, and nothing changes
//! on disk (config, state, runtime directories) or in the kernel (links,
//! addresses, routes, nftables of the host namespace).
//!
//! What cannot be sent as a D-Bus string (bytes that are not UTF-8) is sent
//! the ways a client actually can: as a file given to `guestnetctl define`,
//! and as a hand-made D-Bus message (which the bus, or zbus, refuses without
//! harming the service).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use guestnet_dbus::error as names;
use guestnet_tests::cli::Ctl;
use guestnet_tests::raw_dbus::{self, RawConn};
use guestnet_tests::{root_or_skip, Lab};

/// How long one call may take before the service counts as hung.
const CALL_BOUND: Duration = Duration::from_secs(15);

/// Error replies that mean the service is gone (crashed mid-call).
const LOST: [&str; 4] = [
    "org.freedesktop.DBus.Error.NoReply",
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.Disconnected",
];

/// Everything a refused definition must leave as it was.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Snapshot {
    /// Path (relative to the service's directory) → contents, for the
    /// config, state and runtime directories.
    files: BTreeMap<PathBuf, Vec<u8>>,
    links: String,
    addresses: String,
    routes: String,
    ruleset: String,
}

fn files_into(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap_or(&p).to_path_buf();
        if p.is_dir() {
            out.insert(rel.join(""), Vec::new());
            files_into(root, &p, out);
        } else {
            out.insert(rel, std::fs::read(&p).unwrap_or_default());
        }
    }
}

fn host_text(lab: &Lab, args: &[&str]) -> String {
    let out = lab.world.exec(&lab.host, args);
    assert!(
        out.status.success(),
        "{args:?} in the host: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn snapshot(lab: &Lab) -> Snapshot {
    let root = lab.service.dir();
    let mut files = BTreeMap::new();
    for d in [
        lab.service.config_dir(),
        lab.service.state_dir(),
        lab.service.runtime_dir(),
    ] {
        files_into(root, d, &mut files);
    }
    let routes = [
        host_text(lab, &["ip", "-4", "-o", "route", "show", "table", "all"]),
        host_text(lab, &["ip", "-6", "-o", "route", "show", "table", "all"]),
    ]
    .concat();
    Snapshot {
        files,
        links: host_text(lab, &["ip", "-o", "link", "show"]),
        addresses: host_text(lab, &["ip", "-o", "addr", "show"]),
        routes,
        ruleset: host_text(lab, &["nft", "list", "ruleset"]),
    }
}

/// What differs between two snapshots, for a failure message.
fn differences(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    if before.files != after.files {
        let b: Vec<_> = before.files.keys().collect();
        let a: Vec<_> = after.files.keys().collect();
        let changed: Vec<_> = after
            .files
            .iter()
            .filter(|(k, v)| before.files.get(*k).is_some_and(|bv| bv != *v))
            .map(|(k, _)| k)
            .collect();
        out.push(format!(
            "files: before {b:?}\n       after  {a:?}\n       changed {changed:?}"
        ));
    }
    for (what, b, a) in [
        ("links", &before.links, &after.links),
        ("addresses", &before.addresses, &after.addresses),
        ("routes", &before.routes, &after.routes),
        ("nft ruleset", &before.ruleset, &after.ruleset),
    ] {
        if b != a {
            out.push(format!("{what}:\n--- before ---\n{b}--- after ---\n{a}"));
        }
    }
    out
}

/// Waits (5 s at most) until no IPv6 address of the host is tentative, so
/// duplicate address detection finishing is not mistaken for a change.
fn settle_ipv6(lab: &Lab) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if host_text(lab, &["ip", "-6", "-o", "addr", "show", "tentative"])
            .trim()
            .is_empty()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One hostile definition.
struct Case {
    what: &'static str,
    toml: String,
    /// The error name expected, short (`InvalidConfig`, `UnknownMode`).
    error: &'static str,
    /// Text the message must contain: the field or the problem.
    needle: &'static str,
}

fn case(
    what: &'static str,
    toml: impl Into<String>,
    error: &'static str,
    needle: &'static str,
) -> Case {
    Case {
        what,
        toml: toml.into(),
        error,
        needle,
    }
}

/// A valid nat definition's head; the cases append what makes them bad.
fn head(name: &str) -> String {
    format!("name = \"{name}\"\nmode = \"nat\"\nbridge = \"gnbrh\"\n")
}

fn with_ipv4(name: &str, ipv4: &str) -> String {
    format!(
        "{}[ipv4]\naddress = \"10.77.50.1/24\"\n{ipv4}\n",
        head(name)
    )
}

fn lease(name: &str, lease_time: &str) -> String {
    with_ipv4(
        name,
        &format!("dhcp = {{ start = \"10.77.50.10\", end = \"10.77.50.20\", lease_time = {lease_time} }}"),
    )
}

/// `key.k.k…` with `levels` keys in all (a dotted key, `levels` tables deep).
fn dotted(first: &str, levels: usize) -> String {
    let mut s = first.to_owned();
    for _ in 1..levels {
        s.push_str(".k");
    }
    s
}

/// Tables nested about `inline_levels * 78` deep in a few kilobytes: each
/// inline table holds a dotted key 78 deep, which the TOML parser's
/// recursion limit (80) does not count across inline tables.
fn chained_dotted(first: &str, inline_levels: usize) -> String {
    let mut s = format!("{} = ", dotted(first, 78));
    for _ in 0..inline_levels {
        s.push_str(&format!("{{ {} = ", dotted("k", 78)));
    }
    s.push('1');
    for _ in 0..inline_levels {
        s.push_str(" }");
    }
    s.push('\n');
    s
}

fn cases() -> Vec<Case> {
    let deep = 10_000;
    vec![
        // ---- size ----
        case(
            "a definition one byte over the 64 KiB limit",
            {
                let mut s = head("huge1");
                s.push('#');
                s.push_str(&"x".repeat(64 * 1024 + 1 - s.len() - 1));
                s.push('\n');
                s
            },
            "InvalidConfig",
            "65536",
        ),
        case(
            "a definition of 1 MiB",
            format!("{}#{}\n", head("huge2"), "x".repeat(1 << 20)),
            "InvalidConfig",
            "65536",
        ),
        case(
            "a definition of 8 MiB of static hosts",
            {
                let mut s = with_ipv4("huge3", "");
                while s.len() < 8 << 20 {
                    s.push_str("[[ipv4.hosts]]\nmac = \"52:54:00:00:00:01\"\nip = \"10.77.50.5\"\n");
                }
                s
            },
            "InvalidConfig",
            "65536",
        ),
        // ---- depth ----
        case(
            "10,000 nested arrays",
            format!("{}a = {}{}\n", head("deep1"), "[".repeat(deep), "]".repeat(deep)),
            "InvalidConfig",
            "nested",
        ),
        case(
            "10,000 nested inline tables",
            format!("{}a = {}1{}\n", head("deep2"), "{a=".repeat(deep), "}".repeat(deep)),
            "InvalidConfig",
            "nested",
        ),
        case(
            "a dotted key 10,000 deep",
            format!("{}{} = 1\n", head("deep3"), dotted("a", deep)),
            "InvalidConfig",
            "nested",
        ),
        case(
            "a table header 10,000 deep",
            format!("{}[{}]\nx = 1\n", head("deep4"), dotted("a", deep)),
            "InvalidConfig",
            "nested",
        ),
        case(
            "10,000 nested arrays inside [nat]",
            format!("{}[nat]\nx = {}{}\n", head("deep5"), "[".repeat(deep), "]".repeat(deep)),
            "InvalidConfig",
            "nested",
        ),
        case(
            "an unknown key nested ~6,000 tables deep through dotted keys in inline tables (14 KB)",
            format!("{}{}", head("deep6"), chained_dotted("deep", 78)),
            "InvalidConfig",
            "deep",
        ),
        case(
            "a [nat] table nested 156 deep: a header and a dotted key each just under the parser's limit",
            format!("{}[{}]\n{} = 1\n", head("deep7"), dotted("nat", 78), dotted("k", 78)),
            "InvalidConfig",
            "nat",
        ),
        case(
            "a [nat] table nested ~6,000 deep through dotted keys in inline tables",
            format!("{}[nat]\n{}", head("deep8"), chained_dotted("k", 78)),
            "InvalidConfig",
            "nat",
        ),
        // ---- names ----
        case("a name with '/'", "name = \"a/b\"\n", "InvalidConfig", "name"),
        case("the name '..'", "name = \"..\"\n", "InvalidConfig", "name"),
        case("the name '../../etc/passwd'", "name = \"../../etc/passwd\"\n", "InvalidConfig", "name"),
        case("the name '.'", "name = \".\"\n", "InvalidConfig", "name"),
        case("an empty name", "name = \"\"\n", "InvalidConfig", "name"),
        case("a name of 65 bytes", format!("name = \"{}\"\n", "n".repeat(65)), "InvalidConfig", "name"),
        case("a name with a NUL", "name = \"a\\u0000b\"\n", "InvalidConfig", "name"),
        case("a name with a newline", "name = \"a\\nb\"\n", "InvalidConfig", "name"),
        case("a name that is not ASCII", "name = \"ne\u{301}t\u{202e}\"\n", "InvalidConfig", "name"),
        case("a name that is not a string", "name = 5\n", "InvalidConfig", "name"),
        case("no name", "mode = \"nat\"\n", "InvalidConfig", "name"),
        case("the name twice", "name = \"a\"\nname = \"b\"\n", "InvalidConfig", "name"),
        case(
            "a bridge name of 16 bytes",
            "name = \"if1\"\nbridge = \"gnbr0123456789ab\"\n",
            "InvalidConfig",
            "bridge",
        ),
        case("a bridge name with '/'", "name = \"if2\"\nbridge = \"br/0\"\n", "InvalidConfig", "bridge"),
        case("the bridge name '..'", "name = \"if3\"\nbridge = \"..\"\n", "InvalidConfig", "bridge"),
        case("an empty bridge name", "name = \"if4\"\nbridge = \"\"\n", "InvalidConfig", "bridge"),
        case(
            "a [nat] uplink of 16 bytes",
            format!("{}[nat]\nuplink = \"eth0123456789abc\"\n", head("if5")),
            "InvalidConfig",
            "uplink",
        ),
        // ---- addresses and ranges ----
        case(
            "a DHCP start outside the subnet",
            with_ipv4("rng1", "dhcp = { start = \"10.88.0.10\", end = \"10.77.50.20\" }"),
            "InvalidConfig",
            "ipv4.dhcp.start",
        ),
        case(
            "a DHCP end outside the subnet",
            with_ipv4("rng2", "dhcp = { start = \"10.77.50.10\", end = \"10.77.51.20\" }"),
            "InvalidConfig",
            "ipv4.dhcp.end",
        ),
        case(
            "a reversed DHCP range",
            with_ipv4("rng3", "dhcp = { start = \"10.77.50.200\", end = \"10.77.50.20\" }"),
            "InvalidConfig",
            "ipv4.dhcp",
        ),
        case(
            "a DHCP range starting at the network address",
            with_ipv4("rng4", "dhcp = { start = \"10.77.50.0\", end = \"10.77.50.20\" }"),
            "InvalidConfig",
            "ipv4.dhcp.start",
        ),
        case(
            "a DHCP range ending at the broadcast address",
            with_ipv4("rng5", "dhcp = { start = \"10.77.50.10\", end = \"10.77.50.255\" }"),
            "InvalidConfig",
            "ipv4.dhcp.end",
        ),
        case(
            "a DHCP range that is not addresses",
            with_ipv4("rng6", "dhcp = { start = \"ten\", end = \"10.77.50.20\" }"),
            "InvalidConfig",
            "ipv4.dhcp.start",
        ),
        case(
            "an address that is the network address",
            format!("{}[ipv4]\naddress = \"10.77.50.0/24\"\n", head("rng7")),
            "InvalidConfig",
            "ipv4.address",
        ),
        case(
            "an address with prefix /32",
            format!("{}[ipv4]\naddress = \"10.77.50.1/32\"\n", head("rng8")),
            "InvalidConfig",
            "ipv4.address",
        ),
        case(
            "an address with an octet of 300",
            format!("{}[ipv4]\naddress = \"10.77.300.1/24\"\n", head("rng9")),
            "InvalidConfig",
            "ipv4.address",
        ),
        // ---- static hosts ----
        case(
            "two static hosts with one IP",
            with_ipv4(
                "host1",
                "hosts = [{ mac = \"52:54:00:00:00:01\", ip = \"10.77.50.5\" }, \
                 { mac = \"52:54:00:00:00:02\", ip = \"10.77.50.5\" }]",
            ),
            "InvalidConfig",
            "ipv4.hosts[1].ip",
        ),
        case(
            "two static hosts with one MAC",
            with_ipv4(
                "host2",
                "hosts = [{ mac = \"52:54:00:00:00:01\", ip = \"10.77.50.5\" }, \
                 { mac = \"52:54:00:00:00:01\", ip = \"10.77.50.6\" }]",
            ),
            "InvalidConfig",
            "ipv4.hosts[1].mac",
        ),
        case(
            "two static hosts with one name",
            with_ipv4(
                "host3",
                "hosts = [{ mac = \"52:54:00:00:00:01\", ip = \"10.77.50.5\", name = \"web\" }, \
                 { mac = \"52:54:00:00:00:02\", ip = \"10.77.50.6\", name = \"WEB\" }]",
            ),
            "InvalidConfig",
            "ipv4.hosts[1].name",
        ),
        case(
            "a static host outside the subnet",
            with_ipv4(
                "host4",
                "hosts = [{ mac = \"52:54:00:00:00:01\", ip = \"10.77.51.5\" }]",
            ),
            "InvalidConfig",
            "ipv4.hosts[0].ip",
        ),
        case(
            "a static host on the host's own address",
            with_ipv4(
                "host5",
                "hosts = [{ mac = \"52:54:00:00:00:01\", ip = \"10.77.50.1\" }]",
            ),
            "InvalidConfig",
            "ipv4.hosts[0].ip",
        ),
        case(
            "a static host with a multicast MAC",
            with_ipv4(
                "host6",
                "hosts = [{ mac = \"01:00:5e:00:00:01\", ip = \"10.77.50.5\" }]",
            ),
            "InvalidConfig",
            "ipv4.hosts[0].mac",
        ),
        case(
            "a static host named '../x'",
            with_ipv4(
                "host7",
                "hosts = [{ mac = \"52:54:00:00:00:01\", ip = \"10.77.50.5\", name = \"../x\" }]",
            ),
            "InvalidConfig",
            "ipv4.hosts[0].name",
        ),
        // ---- lease times ----
        case("a lease time of 0", lease("lt1", "0"), "InvalidConfig", "lease_time"),
        case("a lease time of \"0s\"", lease("lt2", "\"0s\""), "InvalidConfig", "lease_time"),
        case("a lease time of -1", lease("lt3", "-1"), "InvalidConfig", "lease_time"),
        case(
            "a lease time of i64::MAX seconds",
            lease("lt4", "9223372036854775807"),
            "InvalidConfig",
            "lease_time",
        ),
        case(
            "a lease time of 10^14 days",
            lease("lt5", "\"99999999999999d\""),
            "InvalidConfig",
            "lease_time",
        ),
        case(
            "a lease time of 2^64 seconds (not an i64)",
            lease("lt6", "18446744073709551616"),
            "InvalidConfig",
            "lease_time",
        ),
        case("a lease time of 1e308", lease("lt7", "1e308"), "InvalidConfig", "lease_time"),
        case("a lease time of nan", lease("lt8", "nan"), "InvalidConfig", "lease_time"),
        case("a lease time of 367 days", lease("lt9", "\"367d\""), "InvalidConfig", "lease_time"),
        // ---- unknown keys ----
        case(
            "an unknown top-level key",
            format!("{}colour = \"blue\"\n", head("key1")),
            "InvalidConfig",
            "colour",
        ),
        case(
            "an unknown key in [ipv4]",
            with_ipv4("key2", "gateway = \"10.77.50.254\""),
            "InvalidConfig",
            "gateway",
        ),
        case(
            "an unknown key in the DHCP range",
            with_ipv4("key3", "dhcp = { start = \"10.77.50.10\", router = \"10.77.50.1\" }"),
            "InvalidConfig",
            "router",
        ),
        case(
            "an unknown key in [dns]",
            format!("{}[dns]\ndomain = \"lab.internal\"\nrecursion = true\n", head("key4")),
            "InvalidConfig",
            "recursion",
        ),
        case(
            "an unknown key in [nat]",
            format!("{}[nat]\nuplink = \"up0\"\nmasquerade = false\n", head("key5")),
            "InvalidConfig",
            "masquerade",
        ),
        case(
            "another mode's table",
            format!("{}[bridged]\ninterface = \"up0\"\n", head("key6")),
            "InvalidConfig",
            "bridged",
        ),
        case(
            "[nat] that is not a table",
            format!("{}nat = 5\n", head("key7")),
            "InvalidConfig",
            "nat",
        ),
        // ---- modes ----
        case(
            "a mode that does not exist",
            "name = \"mode1\"\nmode = \"warp\"\n",
            "UnknownMode",
            "warp",
        ),
        case(
            "a mode named like a path",
            "name = \"mode2\"\nmode = \"../nat\"\n",
            "InvalidConfig",
            "mode",
        ),
        case(
            "a mode that is a reserved key",
            "name = \"mode3\"\nmode = \"ipv4\"\n",
            "InvalidConfig",
            "mode",
        ),
        case(
            "a mode of 10,000 bytes",
            format!("name = \"mode4\"\nmode = \"{}\"\n", "m".repeat(10_000)),
            "InvalidConfig",
            "mode",
        ),
        // ---- other fields ----
        case("an mtu of 0", format!("{}mtu = 0\n", head("oth1")), "InvalidConfig", "mtu"),
        case(
            "an mtu of 2^40",
            format!("{}mtu = 1099511627776\n", head("oth2")),
            "InvalidConfig",
            "mtu",
        ),
        case(
            "a uuid that is not one",
            format!("{}uuid = \"not-a-uuid\"\n", head("oth3")),
            "InvalidConfig",
            "uuid",
        ),
        case(
            "nine DNS forwarders",
            format!(
                "{}[dns]\nforwarders = [{}]\n",
                head("oth4"),
                (1..=9).map(|i| format!("\"10.0.0.{i}\"")).collect::<Vec<_>>().join(", ")
            ),
            "InvalidConfig",
            "dns.forwarders",
        ),
        case(
            "a DNS domain with an empty label",
            format!("{}[dns]\ndomain = \"bad..lan\"\n", head("oth5")),
            "InvalidConfig",
            "dns.domain",
        ),
        case(
            "text that is not TOML",
            "name = \"oth6\nmode = [",
            "InvalidConfig",
            "TOML",
        ),
        case("an empty definition", "", "InvalidConfig", "name"),
        case(
            "autostart that is not a boolean",
            format!("{}autostart = \"yes\"\n", head("oth7")),
            "InvalidConfig",
            "autostart",
        ),
    ]
}

/// What one call gave: the path of an accepted definition, an error reply
/// (name, message), or no answer at all (hung, or not an error reply).
#[derive(Clone, Debug)]
enum Answer {
    Accepted(String),
    Refused { name: String, message: String },
    Silent(String),
}

async fn call_bounded(
    manager: &guestnet_dbus::ManagerProxy<'static>,
    method: &str,
    toml: &str,
) -> Answer {
    let call = async {
        if method == "CreateNetwork" {
            manager.create_network(toml).await
        } else {
            manager.define_network(toml).await
        }
    };
    match tokio::time::timeout(CALL_BOUND, call).await {
        Err(_) => Answer::Silent(format!("no answer within {CALL_BOUND:?}: hung")),
        Ok(Ok(path)) => Answer::Accepted(path.to_string()),
        Ok(Err(e)) => match names::name_and_message(&e) {
            Some((name, message)) => Answer::Refused { name, message },
            None => Answer::Silent(format!("not an error reply: {e}")),
        },
    }
}

/// One case's call through one method.
struct Outcome {
    what: &'static str,
    method: &'static str,
    error: &'static str,
    needle: &'static str,
    answer: Answer,
    took: Duration,
    /// guestnetd was dead after the call (it was started again).
    died: Option<String>,
}

/// True while guestnetd runs. Unlike `Service::is_running` this does not
/// reap a dead process: it stays a zombie, so `Service::sigkill` later
/// signals its own pid, never one the kernel gave to someone else.
fn alive(service: &guestnet_tests::Service) -> bool {
    let Some(pid) = service.pid() else {
        return false;
    };
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A lab whose service has answered once, with a zbus connection to it.
struct Client {
    rt: tokio::runtime::Runtime,
    conn: zbus::Connection,
    manager: guestnet_dbus::ManagerProxy<'static>,
}

impl Client {
    fn new(lab: &Lab) -> Client {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let (conn, manager) = Self::connect(&rt, lab);
        Client { rt, conn, manager }
    }

    /// A connection made on `rt` (its tasks live in that runtime).
    fn connect(
        rt: &tokio::runtime::Runtime,
        lab: &Lab,
    ) -> (zbus::Connection, guestnet_dbus::ManagerProxy<'static>) {
        rt.block_on(async {
            let conn = guestnet_dbus::connect(Some(lab.bus.address())).await?;
            let manager = guestnet_dbus::manager(&conn).await?;
            zbus::Result::Ok((conn, manager))
        })
        .expect("connect to the test's bus")
    }

    fn reconnect(&mut self, lab: &Lab) {
        (self.conn, self.manager) = Self::connect(&self.rt, lab);
    }

    /// Stops and undefines every network (what a wrongly accepted case left).
    fn remove_all(&self) {
        let listed = self
            .rt
            .block_on(self.manager.list_networks())
            .unwrap_or_default();
        for p in listed {
            if let Ok(n) = self.rt.block_on(guestnet_dbus::network_at(&self.conn, p)) {
                let _ = self.rt.block_on(n.stop());
                let _ = self.rt.block_on(n.undefine());
            }
        }
    }
}

/// Runs every case through `methods`, starting guestnetd again whenever a
/// case killed it, and returns what each call gave.
fn run_cases(lab: &mut Lab, client: &mut Client, methods: &[&'static str]) -> Vec<Outcome> {
    let mut out = Vec::new();
    for c in cases() {
        for &method in methods {
            let t0 = Instant::now();
            let answer = client
                .rt
                .block_on(call_bounded(&client.manager, method, &c.toml));
            let took = t0.elapsed();
            // A reply that says the service went away, or none: give the
            // process a moment to be seen dead.
            let lost = match &answer {
                Answer::Refused { name, .. } => LOST.contains(&name.as_str()),
                Answer::Silent(_) => true,
                Answer::Accepted(_) => false,
            };
            if lost {
                let deadline = Instant::now() + Duration::from_secs(5);
                while alive(&lab.service) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let died = (!alive(&lab.service)).then(|| {
                let log: Vec<String> = lab
                    .service
                    .log_tail(3)
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_owned)
                    .collect();
                log.join(" | ")
            });
            eprintln!(
                "{:>8.1?} {method:<13} {}: {}{}",
                took,
                c.what,
                short(&match &answer {
                    Answer::Refused { name, message } =>
                        format!("{}: {message}", names::short_name(name)),
                    Answer::Accepted(p) => format!("ACCEPTED as {p}"),
                    Answer::Silent(why) => why.clone(),
                }),
                if died.is_some() {
                    "  [guestnetd DIED]"
                } else {
                    ""
                }
            );
            if died.is_some() {
                // Collect the dead process (a zombie until then, so its pid
                // is still its own) and start it again.
                lab.service.sigkill();
                lab.service.start_again();
                client.reconnect(lab);
            }
            out.push(Outcome {
                what: c.what,
                method,
                error: c.error,
                needle: c.needle,
                answer,
                took,
                died,
            });
        }
        // Undo anything a wrongly accepted case left, so the next cases
        // and the final comparison see only their own effects.
        client.remove_all();
    }
    out
}

/// At most 200 characters of `s`, on one line.
fn short(s: &str) -> String {
    let one_line = s.replace('\n', " / ");
    if one_line.chars().count() <= 200 {
        return one_line;
    }
    let head: String = one_line.chars().take(200).collect();
    format!("{head}… ({} bytes)", s.len())
}

#[test]
fn hostile_definitions_are_refused_in_bounded_time_and_change_nothing() {
    root_or_skip!();
    let mut lab = Lab::new();
    let mut client = Client::new(&lab);
    let rt = &client.rt;
    assert!(rt
        .block_on(client.manager.list_networks())
        .unwrap()
        .is_empty());
    // The base the cases build on is itself valid: each case is refused
    // for what it adds, not for its head.
    let good = with_ipv4(
        "good1",
        "dhcp = { start = \"10.77.50.10\", end = \"10.77.50.20\", lease_time = \"1h\" }",
    );
    let path = rt
        .block_on(client.manager.define_network(&good))
        .expect("a valid definition");
    let net = rt
        .block_on(guestnet_dbus::network_at(&client.conn, path))
        .unwrap();
    rt.block_on(net.undefine())
        .expect("undefine the valid definition");
    drop(net);

    settle_ipv6(&lab);
    let before = snapshot(&lab);
    let outcomes = run_cases(&mut lab, &mut client, &["DefineNetwork", "CreateNetwork"]);

    let mut failures = Vec::new();
    for o in &outcomes {
        let want = format!("{}{}", names::PREFIX, o.error);
        let head = format!("{} — {}", o.what, o.method);
        match &o.answer {
            Answer::Refused { name, .. } if *name == want => {}
            Answer::Refused { name, message } => failures.push(format!(
                "{head}: expected {want}, got {name}: {}",
                short(message)
            )),
            Answer::Accepted(p) => failures.push(format!("{head}: ACCEPTED as {p}")),
            Answer::Silent(why) => failures.push(format!("{head}: {why}")),
        }
        if let Some(log) = &o.died {
            failures.push(format!("{head}: guestnetd DIED ({log})"));
        }
        if o.took > CALL_BOUND {
            failures.push(format!("{head}: took {:?}", o.took));
        }
    }
    // Still answering, with nothing defined.
    let listed = client
        .rt
        .block_on(client.manager.list_networks())
        .expect("the service answers after the hostile definitions");
    assert!(listed.is_empty(), "networks after refusals: {listed:?}");
    let slowest = outcomes.iter().max_by_key(|o| o.took).expect("cases");
    eprintln!(
        "{} calls; slowest: {} — {} in {:?}",
        outcomes.len(),
        slowest.what,
        slowest.method,
        slowest.took
    );
    let diff = differences(&before, &snapshot(&lab));
    assert!(
        failures.is_empty() && diff.is_empty(),
        "{} of {} calls with a hostile definition were not refused as expected:\n  {}\n\n\
         changes on disk or in the kernel:\n{}",
        failures.len(),
        outcomes.len(),
        failures.join("\n  "),
        diff.join("\n")
    );
}

#[test]
fn refusals_of_hostile_definitions_name_the_field_or_the_problem() {
    root_or_skip!();
    let mut lab = Lab::new();
    let mut client = Client::new(&lab);
    let outcomes = run_cases(&mut lab, &mut client, &["DefineNetwork"]);
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|o| match &o.answer {
            Answer::Refused { name, message }
                if *name == format!("{}{}", names::PREFIX, o.error)
                    && !message.contains(o.needle) =>
            {
                Some(format!(
                    "{}: the message does not name {:?}: {}",
                    o.what,
                    o.needle,
                    short(message)
                ))
            }
            // Wrong names, crashes and hangs are the other test's.
            _ => None,
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} refusal(s) do not say which field or what is wrong:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[test]
fn a_definition_file_that_is_not_utf8_is_refused_by_guestnetctl() {
    root_or_skip!();
    let lab = Lab::new();
    settle_ipv6(&lab);
    let before = snapshot(&lab);
    let file = lab.scratch.path().join("latin1.toml");
    // "café" in Latin-1: 0xE9 is not UTF-8.
    std::fs::write(&file, b"name = \"caf\xe9\"\nmode = \"nat\"\n").unwrap();
    let file_s = file.display().to_string();
    let ctl = Ctl::new(lab.bus.address());
    for verb in ["define", "create"] {
        let err = ctl.fails(1, &[verb, &file_s]);
        assert!(
            err.contains(&file_s) && err.contains("UTF-8"),
            "guestnetctl {verb} of a file that is not UTF-8 should name the file and say it is \
             not UTF-8: {err:?}"
        );
    }
    let err = ctl
        .clone()
        .stdin(b"name = \"caf\xe9\"\n")
        .fails(1, &["define", "-"]);
    assert!(
        err.contains("UTF-8"),
        "guestnetctl define - with input that is not UTF-8: {err:?}"
    );
    assert!(lab.gn().list_networks().is_empty());
    let diff = differences(&before, &snapshot(&lab));
    assert!(diff.is_empty(), "{}", diff.join("\n"));
}

#[test]
fn a_raw_message_that_is_not_utf8_harms_nothing() {
    root_or_skip!();
    let lab = Lab::new();
    let gn = lab.gn();
    assert!(gn.list_networks().is_empty());
    settle_ipv6(&lab);
    let before = snapshot(&lab);
    let manager = |conn: &mut RawConn, sig: &str, body: &[u8]| {
        conn.send_call(
            guestnet_dbus::BUS_NAME,
            guestnet_dbus::MANAGER_PATH,
            guestnet_dbus::MANAGER_INTERFACE,
            "DefineNetwork",
            sig,
            body,
        )
        .expect("send")
    };

    // 1. An `s` argument holding bytes that are not UTF-8: the bus checks
    //    every message it relays, and drops the client that sent it.
    let mut conn = RawConn::connect(lab.bus.address()).expect("raw connection");
    let mut body = Vec::new();
    raw_dbus::put_string(&mut body, b"name = \"caf\xe9\"\nmode = \"nat\"\n");
    let serial = manager(&mut conn, "s", &body);
    conn.set_read_timeout(Duration::from_secs(10)).unwrap();
    let seen = conn.reply_to(serial);
    eprintln!("a string that is not UTF-8: {seen:?}");
    match &seen {
        // The bus disconnected us: the message never reached the service.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => {}
        // Or an error reply (from the bus or the service) that is not a success.
        Ok(m) if m.msg_type == raw_dbus::ERROR => {}
        other => panic!("a DefineNetwork string that is not UTF-8 was answered {other:?}"),
    }
    conn.close();

    // 2. The same bytes as `ay`, a type DefineNetwork does not take: a
    //    valid message the bus relays, which the service refuses.
    let mut conn = RawConn::connect(lab.bus.address()).expect("raw connection");
    let mut body = Vec::new();
    raw_dbus::put_byte_array(&mut body, b"name = \"caf\xe9\"\nmode = \"nat\"\n");
    let serial = manager(&mut conn, "ay", &body);
    let reply = conn.reply_to(serial).expect("a reply to DefineNetwork(ay)");
    eprintln!(
        "DefineNetwork(ay): {:?}: {:?}",
        reply.error_name,
        reply.first_string()
    );
    // An error reply. (zbus names it org.freedesktop.zbus.Error, "Signature
    // mismatch", where sd-bus and GDBus say InvalidArgs.)
    assert_eq!(reply.msg_type, raw_dbus::ERROR, "{reply:?}");

    // 3. A string with a NUL inside, which D-Bus strings may not hold.
    let mut body = Vec::new();
    raw_dbus::put_string(&mut body, b"name = \"a\0b\"\n");
    let serial = manager(&mut conn, "s", &body);
    let seen = conn.reply_to(serial);
    eprintln!("a string with a NUL: {seen:?}");
    assert!(
        !matches!(&seen, Ok(m) if m.msg_type == raw_dbus::METHOD_RETURN),
        "a string with a NUL was accepted: {seen:?}"
    );
    conn.close();

    // The service runs on and answers, and nothing changed.
    assert!(alive(&lab.service), "guestnetd died");
    assert!(gn.list_networks().is_empty());
    let net =
        gn.define("name = \"after1\"\nbridge = \"gnbraft\"\n[ipv4]\naddress = \"10.77.52.1/24\"\n");
    gn.undefine(&net);
    let diff = differences(&before, &snapshot(&lab));
    assert!(diff.is_empty(), "{}", diff.join("\n"));
}
