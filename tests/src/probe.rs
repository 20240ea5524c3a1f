//! Data-path checks between a world's namespaces: ping (once, or a long
//! one that counts what a disturbance lost), which source address a TCP
//! server sees (a tiny python3 server, `nc -z` as the client), and whether a
//! connection is let through at all (one listener per guest, for many
//! checks).

use std::io::{BufRead, BufReader};
use std::process::ChildStdout;

use crate::cmd;
use crate::world::{read_all, World};

/// One ping (`ping -c1 -W1`) from `from_ns` to `addr`.
pub fn ping_once(world: &World, from_ns: &str, addr: &str) -> bool {
    world
        .exec(from_ns, &["ping", "-n", "-q", "-c1", "-W1", addr])
        .status
        .success()
}

/// Up to `tries` pings, stopping at the first answer (ARP, bridge learning and
/// the like may lag a moment).
pub fn ping(world: &World, from_ns: &str, addr: &str, tries: u32) -> bool {
    (0..tries).any(|_| ping_once(world, from_ns, addr))
}

/// Panics unless `addr` answers a ping from `from_ns` within five tries.
#[track_caller]
pub fn assert_ping(world: &World, from_ns: &str, addr: &str) {
    if !ping(world, from_ns, addr, 5) {
        panic!(
            "{addr} does not answer ping from {from_ns}\n{}",
            describe(world, from_ns)
        );
    }
}

/// Panics if `addr` answers a ping from `from_ns` (two tries).
#[track_caller]
pub fn assert_no_ping(world: &World, from_ns: &str, addr: &str) {
    if ping(world, from_ns, addr, 2) {
        panic!("{addr} answers ping from {from_ns}, and must not");
    }
}

/// A ping running in the background while a test disturbs something
/// (`ping -n -i 0.05 -c COUNT -W 1`: one every 50 ms), to count what the
/// disturbance lost.
pub struct LongPing {
    pid: u32,
    stdout: ChildStdout,
}

/// How a [`LongPing`] ended: its summary line's counts, and all it printed.
#[derive(Debug)]
pub struct PingSummary {
    pub sent: u32,
    pub received: u32,
    pub output: String,
}

impl LongPing {
    /// Starts `count` pings from `from_ns` to `addr`, 50 ms apart.
    pub fn start(world: &World, from_ns: &str, addr: &str, count: u32) -> LongPing {
        let count = count.to_string();
        let (pid, stdout) = world.spawn_piped(
            from_ns,
            &["ping", "-n", "-i", "0.05", "-c", &count, "-W", "1", addr],
        );
        LongPing { pid, stdout }
    }

    /// Whether it still pings (a disturbance that outlasts it is not
    /// measured by it).
    pub fn is_running(&self) -> bool {
        cmd::still_running(self.pid)
    }

    /// Waits for the last ping; panics when ping printed no summary.
    pub fn finish(self, world: &World) -> PingSummary {
        let output = read_all(self.stdout);
        world.wait(self.pid);
        let (sent, received) =
            ping_counts(&output).unwrap_or_else(|| panic!("no ping summary in:\n{output}"));
        PingSummary {
            sent,
            received,
            output,
        }
    }
}

/// "N packets transmitted, M received, ..." of ping's summary.
fn ping_counts(out: &str) -> Option<(u32, u32)> {
    let line = out.lines().find(|l| l.contains("packets transmitted"))?;
    let mut nums = line
        .split(',')
        .map(|part| part.split_whitespace().next()?.parse::<u32>().ok());
    Some((nums.next()??, nums.next()??))
}

/// Addresses and routes of `ns`, for failure messages.
pub fn describe(world: &World, ns: &str) -> String {
    let addrs = world.try_ip(ns, "-br addr");
    let routes = world.try_ip(ns, "route");
    format!(
        "--- {ns}: addresses ---\n{}--- {ns}: routes ---\n{}",
        String::from_utf8_lossy(&addrs.stdout),
        String::from_utf8_lossy(&routes.stdout)
    )
}

const SERVER: &str = r#"
import socket, sys
port, wait = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(8)
s.settimeout(wait)
print("ready", flush=True)
try:
    c, a = s.accept()
    print("peer", a[0], flush=True)
    c.close()
except socket.timeout:
    print("none", flush=True)
"#;

/// Seconds the client gets to connect (`nc -w`).
const CONNECT_WAIT_S: u32 = 2;

/// Listens on TCP `port` in `server_ns` and connects to `connect_to:port`
/// from `client_ns`. Returns the source address the server saw, or None if
/// no connection arrived.
pub fn tcp_peer(
    world: &World,
    server_ns: &str,
    port: u16,
    client_ns: &str,
    connect_to: &str,
) -> Option<String> {
    let port_s = port.to_string();
    let wait = (CONNECT_WAIT_S + 3).to_string();
    let (pid, stdout) =
        world.spawn_piped(server_ns, &[cmd::python3(), "-c", SERVER, &port_s, &wait]);
    let mut lines = BufReader::new(stdout).lines();
    match lines.next() {
        Some(Ok(l)) if l == "ready" => {}
        other => panic!("the TCP server in {server_ns} did not start: {other:?}"),
    }
    let client = nc_z(world, client_ns, connect_to, port);
    let seen = lines.next().and_then(Result::ok).unwrap_or_default();
    world.wait(pid);
    let peer = seen.strip_prefix("peer ").map(str::to_owned);
    if client.status.success() && peer.is_none() {
        eprintln!(
            "note: nc from {client_ns} to {connect_to}:{port} connected, \
             but the server in {server_ns} saw no connection"
        );
    }
    peer
}

const LISTENER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(64)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"#;

/// Starts a TCP server in `ns` that accepts every connection to `port`
/// (and closes it) until the world is dropped or [`World::kill`] is called
/// with the returned pid. For many connection checks against one guest
/// without a server per check (see [`tcp_connects`]).
pub fn tcp_listener(world: &World, ns: &str, port: u16) -> u32 {
    let (pid, stdout) = world.spawn_piped(ns, &[cmd::python3(), "-c", LISTENER, &port.to_string()]);
    let mut lines = BufReader::new(stdout).lines();
    match lines.next() {
        Some(Ok(l)) if l == "ready" => pid,
        other => panic!("the TCP listener in {ns} did not start: {other:?}"),
    }
}

/// Whether a TCP connection from `client_ns` to `addr:port` is accepted
/// (`nc -z`, within [`CONNECT_WAIT_S`] seconds). A refused connection (a
/// firewall's reject) answers at once; a dropped one takes the whole wait.
pub fn tcp_connects(world: &World, client_ns: &str, addr: &str, port: u16) -> bool {
    nc_z(world, client_ns, addr, port).status.success()
}

/// `nc -z` from `client_ns` to `addr:port`, waiting [`CONNECT_WAIT_S`].
fn nc_z(world: &World, client_ns: &str, addr: &str, port: u16) -> std::process::Output {
    world.exec(
        client_ns,
        &[
            "nc",
            "-n",
            "-z",
            "-w",
            &CONNECT_WAIT_S.to_string(),
            addr,
            &port.to_string(),
        ],
    )
}
