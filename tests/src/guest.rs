//! Guests on a network's bridge through the D-Bus API: AttachGuest,
//! DetachGuest and ListGuests, called with real clients (busctl for results,
//! gdbus where a test needs an error's name: dbus-send cannot pass an
//! `a{sv}`); a uid nobody has, for tap ownership; and the data-path
//! helpers a tap needs (a process that opens it as some user and writes a
//! frame into it, a capture on the bridge).

use std::io::{BufRead, BufReader};
use std::time::Duration;

use crate::busctl::BusError;
use crate::cmd;
use crate::guestnet::{Guestnet, BUS_NAME, NETWORK_IFACE};
use crate::world::World;

/// One entry of ListGuests, or the arguments of a GuestAttached /
/// GuestDetached signal: `(sss)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GuestPort {
    /// The port on the bridge (`gntap0`, `gnveth0`, or a name someone
    /// else chose).
    pub ifname: String,
    /// Lower-case, colon-separated.
    pub mac: String,
    /// "" for a port someone else put on the bridge.
    pub guest: String,
}

impl GuestPort {
    pub fn new(ifname: &str, mac: &str, guest: &str) -> GuestPort {
        GuestPort {
            ifname: ifname.to_owned(),
            mac: mac.to_owned(),
            guest: guest.to_owned(),
        }
    }

    /// From busctl's JSON of a `(sss)`: an array of three strings.
    pub fn from_json(v: &serde_json::Value) -> Option<GuestPort> {
        match v.as_array()?.as_slice() {
            [i, m, g] => Some(GuestPort::new(i.as_str()?, m.as_str()?, g.as_str()?)),
            _ => None,
        }
    }

    /// From a GuestAttached / GuestDetached signal: three arguments, or one
    /// `(sss)` struct.
    pub fn from_signal(s: &crate::monitor::Signal) -> Option<GuestPort> {
        match s.args.as_slice() {
            [one] => GuestPort::from_json(one),
            _ => GuestPort::from_json(&serde_json::Value::Array(s.args.clone())),
        }
    }
}

/// A value of AttachGuest's options.
#[derive(Clone, Debug)]
pub enum Opt<'a> {
    S(&'a str),
    U(u32),
    /// A `t` (u64), for values no `u` can carry.
    T(u64),
}

/// The options of a veth guest: its namespace, and the name and MAC of its
/// interface there when given.
pub fn veth_opts<'a>(
    netns: &'a str,
    ifname: Option<&'a str>,
    mac: Option<&'a str>,
) -> Vec<(&'a str, Opt<'a>)> {
    let mut v = vec![("kind", Opt::S("veth")), ("netns", Opt::S(netns))];
    if let Some(i) = ifname {
        v.push(("ifname", Opt::S(i)));
    }
    if let Some(m) = mac {
        v.push(("mac", Opt::S(m)));
    }
    v
}

/// The options of a tap guest owned by `owner`, for a VM with `mac`.
pub fn tap_opts<'a>(owner: Option<u32>, mac: Option<&'a str>) -> Vec<(&'a str, Opt<'a>)> {
    let mut v = vec![("kind", Opt::S("tap"))];
    if let Some(o) = owner {
        v.push(("owner", Opt::U(o)));
    }
    if let Some(m) = mac {
        v.push(("mac", Opt::S(m)));
    }
    v
}

/// The path of a namespace `ip netns add` made.
pub fn netns_path(ns: &str) -> String {
    format!("/run/netns/{ns}")
}

/// AttachGuest through busctl; panics (with guestnetd's log) on failure.
/// Returns the port's name.
#[track_caller]
pub fn attach(gn: &Guestnet, path: &str, guest: &str, opts: &[(&str, Opt<'_>)]) -> String {
    let n = opts.len().to_string();
    let mut args: Vec<String> = vec![guest.to_owned(), n];
    for (k, v) in opts {
        args.push((*k).to_owned());
        match v {
            Opt::S(s) => args.extend(["s".to_owned(), (*s).to_owned()]),
            Opt::U(u) => args.extend(["u".to_owned(), u.to_string()]),
            Opt::T(t) => args.extend(["t".to_owned(), t.to_string()]),
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let v = gn.call(path, NETWORK_IFACE, "AttachGuest", "sa{sv}", &args);
    match v.as_str() {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => panic!("AttachGuest({guest}) replied {v}, not an interface name"),
    }
}

/// A GVariant text literal of a string.
fn gv_str(s: &str) -> String {
    let mut out = String::from("'");
    for c in s.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// [`try_attach`] as user `uid` with primary group `gid` and no
/// supplementary groups (through `setpriv`).
pub fn try_attach_as(
    (uid, gid): (u32, u32),
    gn: &Guestnet,
    path: &str,
    guest: &str,
    opts: &[(&str, Opt<'_>)],
) -> Result<String, BusError> {
    try_attach(&gn.as_user(uid, gid), path, guest, opts)
}

/// AttachGuest through `gdbus call`, which reports an error's name, run
/// as `gn`'s user ([`Guestnet::as_user`]). Ok: the interface name.
pub fn try_attach(
    gn: &Guestnet,
    path: &str,
    guest: &str,
    opts: &[(&str, Opt<'_>)],
) -> Result<String, BusError> {
    let dict: Vec<String> = opts
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Opt::S(s) => gv_str(s),
                Opt::U(u) => format!("uint32 {u}"),
                Opt::T(t) => format!("uint64 {t}"),
            };
            format!("{}: <{v}>", gv_str(k))
        })
        .collect();
    let dict = format!("{{{}}}", dict.join(", "));
    let method = format!("{NETWORK_IFACE}.AttachGuest");
    let guest = gv_str(guest);
    let mut args = gn.busctl().command("gdbus");
    args.extend(
        [
            "call",
            "--address",
            gn.busctl().address(),
            "--dest",
            BUS_NAME,
            "--object-path",
            path,
            "--method",
            &method,
            "--timeout",
            "30",
            &guest,
            &dict,
        ]
        .map(str::to_owned),
    );
    let out = cmd::run(&args);
    if out.status.success() {
        // `('gnveth0',)`
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let name = text
            .trim_start_matches("('")
            .trim_end_matches(",)")
            .trim_end_matches('\'');
        return Ok(name.to_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    // `Error: GDBus.Error:NAME: MESSAGE`, maybe followed by a hint line.
    let first = stderr.lines().next().unwrap_or_default();
    Err(
        BusError::parse(first, "Error: GDBus.Error:").unwrap_or_else(|| BusError {
            name: String::new(),
            message: cmd::failure(&args, &out),
        }),
    )
}

/// DetachGuest through busctl; panics on failure.
#[track_caller]
pub fn detach(gn: &Guestnet, path: &str, ifname: &str) {
    gn.call(path, NETWORK_IFACE, "DetachGuest", "s", &[ifname]);
}

/// DetachGuest through dbus-send, keeping the error's name.
pub fn try_detach(gn: &Guestnet, path: &str, ifname: &str) -> Result<String, BusError> {
    gn.try_call(path, NETWORK_IFACE, "DetachGuest", "s", &[ifname])
}

/// ListGuests through busctl, sorted.
#[track_caller]
pub fn list(gn: &Guestnet, path: &str) -> Vec<GuestPort> {
    let v = gn.call(path, NETWORK_IFACE, "ListGuests", "", &[]);
    let items = match &v {
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::Array(items) => items.clone(),
        _ => panic!("ListGuests replied {v}, not a(sss)"),
    };
    let mut out: Vec<GuestPort> = items
        .iter()
        .map(|i| {
            GuestPort::from_json(i)
                .unwrap_or_else(|| panic!("ListGuests: an entry {i} is not (sss)"))
        })
        .collect();
    out.sort();
    out
}

/// The MAC of link `name` in `ns`.
pub fn mac_of(world: &World, ns: &str, name: &str) -> String {
    let v = world.ip_json(ns, &format!("link show dev {name}"));
    v[0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} in {ns} has no address: {v}"))
        .to_owned()
}

/// Whether link `name` in `ns` is administratively up.
pub fn is_up(world: &World, ns: &str, name: &str) -> bool {
    let v = world.ip_json(ns, &format!("link show dev {name}"));
    v[0]["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP"))
}

/// A counter of `ip -s -j link show dev NAME`'s stats64, e.g. ("rx", "packets").
pub fn link_stat(world: &World, ns: &str, name: &str, dir: &str, what: &str) -> u64 {
    let v = world.ip_json(ns, &format!("-s link show dev {name}"));
    v[0]["stats64"][dir][what]
        .as_u64()
        .unwrap_or_else(|| panic!("no stats64.{dir}.{what} for {name} in {ns}: {v}"))
}

// ---- users ----

/// A uid no user of this machine has.
pub fn unused_uid() -> u32 {
    (0..1000)
        .map(|i| 3_999_000_000 - i)
        .find(|uid| {
            !cmd::run(&["getent", "passwd", &uid.to_string()])
                .status
                .success()
        })
        .expect("a free uid near 3999000000")
}

// ---- a tap's data path ----

/// Opens the tap named argv[1] on fd 3 (the clone device, opened before the
/// uid was dropped) with TUNSETIFF, as the user it runs as; then, with
/// argv[2] a MAC, writes ARP requests from that MAC (who-has argv[3]) into
/// it, 30 of them, 0.1 s apart.
const TAP_USER: &str = r#"
import fcntl, os, struct, sys, time
name = sys.argv[1].encode()
fd = 3
try:
    fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH22x', name, 0x0002 | 0x1000))
except OSError as e:
    print('refused', e.errno, e.strerror, flush=True)
    sys.exit(3)
print('attached', os.getuid(), flush=True)
if len(sys.argv) > 2:
    src = bytes.fromhex(sys.argv[2].replace(':', ''))
    tpa = bytes(int(x) for x in sys.argv[3].split('.'))
    frame = (b'\xff' * 6 + src + b'\x08\x06'
             + struct.pack('!HHBBH', 1, 0x0800, 6, 4, 1)
             + src + b'\x00\x00\x00\x00' + b'\x00' * 6 + tpa)
    frame += b'\x00' * (60 - len(frame))
    for _ in range(30):
        os.write(fd, frame)
        time.sleep(0.1)
    print('written', flush=True)
"#;

/// What a process running as `uid`:`gid` (no supplementary groups, no
/// capabilities) in namespace `ns` saw when it attached to the tap `tap`
/// with TUNSETIFF and, with `frame_from` Some((mac, ip)), wrote ARP
/// requests from `mac` asking for `ip` into it.
///
/// `/dev/net/tun` is opened by the shell, as root, before the uid is
/// dropped (many machines make it 0600, and the kernel checks the tap's
/// owner at TUNSETIFF, with the caller's credentials then, which is what a
/// VM manager handing QEMU a descriptor relies on too).
/// Returns (exit status success, stdout).
pub fn tap_as_user(
    world: &World,
    ns: &str,
    uid: u32,
    gid: u32,
    tap: &str,
    frame_from: Option<(&str, &str)>,
) -> (bool, String) {
    let script = "exec 3<>/dev/net/tun || exit 9\n\
                  uid=$1 gid=$2 py=$3\n\
                  shift 3\n\
                  exec setpriv --reuid=\"$uid\" --regid=\"$gid\" --clear-groups -- \"$py\" -c \"$0\" \"$@\"";
    let (uid, gid) = (uid.to_string(), gid.to_string());
    let mut args = vec![
        "sh",
        "-c",
        script,
        TAP_USER,
        &uid,
        &gid,
        cmd::python3(),
        tap,
    ];
    if let Some((mac, ip)) = frame_from {
        args.extend([mac, ip]);
    }
    let out = world.exec(ns, &args);
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Captures, on `dev` in `ns`, ARP frames from `mac`.
const CAPTURE: &str = r#"
import socket, sys, time
dev, src, wait = sys.argv[1], bytes.fromhex(sys.argv[2].replace(':', '')), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind((dev, 0))
s.settimeout(0.2)
print('ready', flush=True)
deadline = time.time() + wait
while time.time() < deadline:
    try:
        f = s.recv(65535)
    except socket.timeout:
        continue
    if f[6:12] == src and f[12:14] == b'\x08\x06':
        print('got', f[:42].hex(), flush=True)
        sys.exit(0)
print('none', flush=True)
"#;

/// A capture of ARP frames from one MAC on one interface (a raw socket in
/// a python3 process of the world's).
pub struct Capture<'w> {
    world: &'w World,
    pid: u32,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl<'w> Capture<'w> {
    /// Starts capturing on `dev` in `ns` for ARP frames from `mac`, for
    /// `wait` at most; returns once the socket is bound.
    pub fn start(world: &'w World, ns: &str, dev: &str, mac: &str, wait: Duration) -> Capture<'w> {
        let secs = format!("{:.1}", wait.as_secs_f64());
        let (pid, stdout) =
            world.spawn_piped(ns, &[cmd::python3(), "-c", CAPTURE, dev, mac, &secs]);
        let mut lines = BufReader::new(stdout).lines();
        match lines.next() {
            Some(Ok(l)) if l == "ready" => {}
            other => panic!("the capture on {dev} in {ns} did not start: {other:?}"),
        }
        Capture { world, pid, lines }
    }

    /// Waits for the capture's verdict: the frame's first 42 bytes in hex
    /// if one came, None when its time ran out.
    pub fn result(mut self) -> Option<String> {
        let line = self.lines.next().and_then(Result::ok).unwrap_or_default();
        self.world.wait(self.pid);
        line.strip_prefix("got ").map(str::to_owned)
    }
}
