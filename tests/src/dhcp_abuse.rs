//! A hostile guest's DHCP, sent by a small python3 program from a guest
//! namespace that has an address in the subnet (outside the pool): many
//! spoofed client MACs taking leases, DECLINEs for addresses the sender
//! never got, and a DISCOVER/DECLINE flood. Each mode prints one JSON line.
//!
//! Also here: guestnetd's resident memory, and lease journals written by the
//! test in the service's own record format (u32 length, u32 CRC-32, JSON,
//! little-endian) to be replayed by guestnetd.

use crate::cmd;
use crate::world::World;

const PROBE: &str = r#"
import json, os, random, socket, struct, sys, time

def addr(a): return socket.inet_aton(a)
def mac_bytes(m): return bytes(int(x, 16) for x in m.split(':'))
def spoofed(i): return '02:aa:%02x:%02x:%02x:%02x' % ((i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255)

def packet(kind, xid, mac, opts=()):
    # the broadcast flag: replies come to 255.255.255.255:68, which we hear
    p = struct.pack('!BBBBIHH4s4s4s4s16s64s128s', 1, 1, 6, 0, xid, 0, 0x8000,
                    bytes(4), bytes(4), bytes(4), bytes(4), mac_bytes(mac) + bytes(10), b'', b'')
    p += b'\x63\x82\x53\x63' + bytes([53, 1, kind])
    for code, val in opts:
        p += bytes([code, len(val)]) + val
    p += b'\xff'
    return p + bytes(max(0, 300 - len(p)))

def reply(data):
    if len(data) < 243 or data[0] != 2 or data[236:240] != b'\x63\x82\x53\x63':
        return None
    xid = struct.unpack('!I', data[4:8])[0]
    yiaddr = socket.inet_ntoa(data[16:20])
    i, kind, sid = 240, 0, None
    while i + 1 < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        n = data[i + 1]
        if data[i] == 53: kind = data[i + 2]
        if data[i] == 54: sid = data[i + 2:i + 6]
        i += 2 + n
    return xid, kind, yiaddr, sid

def wait(s, xid, seconds):
    end = time.time() + seconds
    while True:
        left = end - time.time()
        if left <= 0: return None
        s.settimeout(left)
        try:
            data, _ = s.recvfrom(4096)
        except socket.timeout:
            return None
        r = reply(data)
        if r and r[0] == xid: return r

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, 25, b'eth0')
s.bind(('0.0.0.0', 68))
TO = ('255.255.255.255', 67)
mode = sys.argv[1]
if mode == 'take':
    # take N WAIT: N spoofed clients, one after another, each DISCOVER + REQUEST
    n, w = int(sys.argv[2]), float(sys.argv[3])
    acked, offers = [], 0
    for i in range(n):
        mac, xid = spoofed(i + 1), random.getrandbits(32)
        s.sendto(packet(1, xid, mac), TO)
        o = wait(s, xid, w)
        if not o or o[1] != 2: continue
        offers += 1
        s.sendto(packet(3, xid, mac, [(50, addr(o[2])), (54, o[3] or bytes(4))]), TO)
        a = wait(s, xid, w)
        if a and a[1] == 5: acked.append([mac, a[2]])
    print(json.dumps({'offers': offers, 'acked': acked}), flush=True)
elif mode == 'decline':
    # decline MAC IP...: DECLINEs of addresses MAC was never given
    mac = sys.argv[2]
    for ip in sys.argv[3:]:
        s.sendto(packet(4, random.getrandbits(32), mac, [(50, addr(ip))]), TO)
    print(json.dumps({'sent': len(sys.argv) - 3}), flush=True)
elif mode == 'flood':
    # flood SECS PREFIX RATE: DISCOVERs from ever new MACs, DECLINEs of
    # every offer they get, of the pool's addresses and of random ones, at
    # about RATE packets a second
    secs, prefix, rate = float(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    s.setblocking(False)
    start = time.time()
    end, i, sent, offers = start + secs, 0, 0, 0
    while time.time() < end:
        ahead = start + sent / rate - time.time()
        if ahead > 0:
            time.sleep(ahead)
        for _ in range(64):
            i += 1
            mac = spoofed(i)
            s.sendto(packet(1, i, mac), TO)
            pool_ip = '%s.%d' % (prefix, 100 + i % 100)
            s.sendto(packet(4, i, mac, [(50, addr(pool_ip))]), TO)
            rand_ip = socket.inet_ntoa(struct.pack('!I', random.getrandbits(32)))
            s.sendto(packet(4, i, mac, [(50, addr(rand_ip))]), TO)
            sent += 3
        while True:
            try:
                data = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                break
            r = reply(data)
            if r and r[1] == 2:
                offers += 1
                mac = spoofed(r[0])
                s.sendto(packet(4, r[0], mac, [(50, addr(r[2])), (54, r[3] or bytes(4))]), TO)
                sent += 1
    print(json.dumps({'sent': sent, 'offers': offers}), flush=True)
else:
    sys.exit('unknown mode ' + mode)
"#;

fn run(world: &World, ns: &str, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["python3", "-c", PROBE];
    full.extend_from_slice(args);
    let out = world.exec(ns, &full);
    if !out.status.success() {
        panic!(
            "the DHCP abuse probe failed in {ns}: {}",
            cmd::failure(&full[3..], &out)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("the probe printed no JSON line: {text}"))
}

/// `n` spoofed clients (MACs `02:aa:00:00:00:01`, ...) each try DISCOVER +
/// REQUEST from `ns`'s eth0, waiting `wait_s` for each reply. Returns the
/// (mac, address) pairs that got an ACK, and how many got an OFFER.
pub fn take_many(world: &World, ns: &str, n: u32, wait_s: f32) -> (Vec<(String, String)>, u64) {
    let v = run(world, ns, &["take", &n.to_string(), &wait_s.to_string()]);
    let acked = v["acked"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p[0].as_str().unwrap_or_default().to_owned(),
                p[1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    (acked, v["offers"].as_u64().unwrap_or(0))
}

/// DECLINEs of each of `ips`, as client `mac`, from `ns`'s eth0.
pub fn decline(world: &World, ns: &str, mac: &str, ips: &[String]) {
    let mut args = vec!["decline", mac];
    args.extend(ips.iter().map(String::as_str));
    run(world, ns, &args);
}

/// Starts a DISCOVER/DECLINE flood of `secs` seconds at about `rate`
/// packets a second from `ns`'s eth0 (the pool is `PREFIX.100`-
/// `PREFIX.199`); returns the probe's pid. Its JSON line (packets sent,
/// offers seen) is read by [`flood_result`].
pub fn start_flood(
    world: &World,
    ns: &str,
    secs: u32,
    prefix: &str,
    rate: u32,
) -> (u32, std::process::ChildStdout) {
    let (secs, rate) = (secs.to_string(), rate.to_string());
    world.spawn_piped(ns, &["python3", "-c", PROBE, "flood", &secs, prefix, &rate])
}

/// The JSON line a flood printed, once it ended.
pub fn flood_result(
    world: &World,
    pid: u32,
    stdout: std::process::ChildStdout,
) -> serde_json::Value {
    world.wait(pid);
    let text = crate::world::read_all(stdout);
    text.lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("the flood printed no JSON line: {text}"))
}

/// The resident memory of process `pid`, in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// A grant record as guestnetd writes it.
pub fn grant(mac: &str, ip: &str, hostname: Option<&str>, expires: u64) -> serde_json::Value {
    serde_json::json!({"op": "grant", "mac": mac, "ip": ip, "hostname": hostname, "expires": expires})
}
