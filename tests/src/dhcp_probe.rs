//! DHCP exchanges no stock client makes on demand, sent by a small python3
//! probe from a namespace that already has an address in the subnet:
//!
//! * INFORM (RFC 2131 3.4): a client with an address asks for the options
//!   only, and the server answers with an ACK to that address.
//! * A relayed DISCOVER + REQUEST, as a relay agent (and Kea's perfdhcp)
//!   sends them: giaddr set, from port 67, unicast to the server, which
//!   answers the relay at giaddr port 67.
//!
//! Each reply is printed by the probe as one JSON line and returned as a
//! [`Reply`].

use std::collections::BTreeMap;

use crate::cmd;
use crate::world::World;

const PROBE: &str = r#"
import json, os, socket, struct, sys, time

def addr(a): return socket.inet_aton(a)
def mac_bytes(m): return bytes(int(x, 16) for x in m.split(':'))
TYPES = {1: 'discover', 2: 'offer', 3: 'request', 4: 'decline', 5: 'ack', 6: 'nak', 7: 'release', 8: 'inform'}

def packet(kind, xid, mac, ciaddr='0.0.0.0', giaddr='0.0.0.0', hops=0, opts=()):
    p = struct.pack('!BBBBIHH4s4s4s4s16s64s128s', 1, 1, 6, hops, xid, 0, 0,
                    addr(ciaddr), addr('0.0.0.0'), addr('0.0.0.0'), addr(giaddr),
                    mac_bytes(mac) + bytes(10), b'', b'')
    p += b'\x63\x82\x53\x63' + bytes([53, 1, kind])
    for code, val in opts:
        p += bytes([code, len(val)]) + val
    p += b'\xff'
    return p + bytes(max(0, 300 - len(p)))

def parse(data, peer):
    if len(data) < 240 or data[236:240] != b'\x63\x82\x53\x63':
        return None
    op, _, _, hops, xid = struct.unpack('!BBBBI', data[:8])
    r = {'op': op, 'xid': xid, 'hops': hops, 'from': '%s:%d' % peer,
         'ciaddr': socket.inet_ntoa(data[12:16]), 'yiaddr': socket.inet_ntoa(data[16:20]),
         'siaddr': socket.inet_ntoa(data[20:24]), 'giaddr': socket.inet_ntoa(data[24:28]),
         'chaddr': ':'.join('%02x' % b for b in data[28:34]), 'options': {}}
    i = 240
    while i < len(data):
        code = data[i]
        if code == 255: break
        if code == 0:
            i += 1
            continue
        n = data[i + 1]
        r['options'][str(code)] = data[i + 2:i + 2 + n].hex()
        i += 2 + n
    t = r['options'].get('53')
    r['type'] = TYPES.get(int(t, 16), 'unknown') if t else 'bootp'
    return r

def wait(sock, xid, seconds):
    end = time.time() + seconds
    while True:
        left = end - time.time()
        if left <= 0:
            return {'type': 'none'}
        sock.settimeout(left)
        try:
            data, peer = sock.recvfrom(4096)
        except socket.timeout:
            return {'type': 'none'}
        r = parse(data, peer)
        if r and r['op'] == 2 and r['xid'] == xid:
            return r

def out(r):
    print(json.dumps(r), flush=True)

PRL = (55, bytes([1, 3, 6, 15, 26, 51, 54, 58, 59]))
mode, server, local, mac, wait_s = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
xid = int.from_bytes(os.urandom(4), 'big')
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if mode == 'inform':
    s.bind((local, 68))
    s.sendto(packet(8, xid, mac, ciaddr=local, opts=[PRL]), (server, 67))
    out(wait(s, xid, wait_s))
elif mode == 'relay':
    s.bind((local, 67))
    s.sendto(packet(1, xid, mac, giaddr=local, hops=1, opts=[PRL]), (server, 67))
    offer = wait(s, xid, wait_s)
    out(offer)
    if offer['type'] == 'offer':
        sid = bytes.fromhex(offer['options'].get('54', ''))
        opts = [(50, addr(offer['yiaddr'])), PRL] + ([(54, sid)] if sid else [])
        s.sendto(packet(3, xid, mac, giaddr=local, hops=1, opts=opts), (server, 67))
        out(wait(s, xid, wait_s))
else:
    sys.exit('unknown mode ' + mode)
"#;

/// One DHCP reply the probe got (or `kind == "none"`).
#[derive(Clone, Debug)]
pub struct Reply {
    /// offer, ack, nak, ... or none.
    pub kind: String,
    pub yiaddr: String,
    pub giaddr: String,
    /// Where the reply came from, `ip:port`.
    pub from: String,
    /// Options by code, their value as hex.
    pub options: BTreeMap<u8, String>,
    pub json: serde_json::Value,
}

impl Reply {
    fn from_json(v: serde_json::Value) -> Reply {
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let options = v["options"]
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, val)| Some((k.parse().ok()?, val.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        Reply {
            kind: s("type"),
            yiaddr: s("yiaddr"),
            giaddr: s("giaddr"),
            from: s("from"),
            options,
            json: v,
        }
    }

    /// Option `code` as an IPv4 address (its first four bytes).
    pub fn option_ip(&self, code: u8) -> Option<String> {
        let hex = self.options.get(&code)?;
        let bytes = hex_bytes(hex)?;
        (bytes.len() >= 4).then(|| format!("{}.{}.{}.{}", bytes[0], bytes[1], bytes[2], bytes[3]))
    }

    /// Option `code` as text.
    pub fn option_text(&self, code: u8) -> Option<String> {
        let bytes = hex_bytes(self.options.get(&code)?)?;
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Option `code` as a big-endian u32.
    pub fn option_u32(&self, code: u8) -> Option<u32> {
        let bytes = hex_bytes(self.options.get(&code)?)?;
        (bytes.len() == 4).then(|| u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }
}

fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

fn run(world: &World, ns: &str, args: &[&str]) -> Vec<Reply> {
    let mut full = vec!["python3", "-c", PROBE];
    full.extend_from_slice(args);
    let out = world.exec(ns, &full);
    if !out.status.success() {
        panic!(
            "the DHCP probe failed in {ns}: {}",
            cmd::failure(&full[3..], &out)
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .map(Reply::from_json)
        .collect()
}

/// Sends a DHCPINFORM from `local` (an address `ns` has) port 68 to
/// `server`, as MAC `mac`; the reply within `wait_s` seconds.
pub fn inform(world: &World, ns: &str, server: &str, local: &str, mac: &str, wait_s: f32) -> Reply {
    let w = wait_s.to_string();
    run(world, ns, &["inform", server, local, mac, &w])
        .into_iter()
        .next()
        .expect("the probe printed no reply line")
}

/// A relayed DISCOVER (and, when an OFFER comes, REQUEST) for client `mac`,
/// sent as a relay agent at `giaddr` (an address `ns` has) from port 67 to
/// `server`. Returns the replies: the OFFER (or none), then the ACK/NAK.
pub fn relay(
    world: &World,
    ns: &str,
    server: &str,
    giaddr: &str,
    mac: &str,
    wait_s: f32,
) -> Vec<Reply> {
    let w = wait_s.to_string();
    run(world, ns, &["relay", server, giaddr, mac, &w])
}
