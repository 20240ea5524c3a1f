//! Real DHCP clients in a world's guest namespaces: busybox `udhcpc` and ISC
//! `dhclient`, each with an event script of the test's own.
//!
//! The clients' default scripts rewrite `/etc/resolv.conf`, which `ip netns
//! exec` shares with the machine unless `/etc/netns/NAME/` exists. So a
//! client here always runs with the script below, written into a temporary
//! directory of its own together with its pid file, lease file, config and
//! log: the script sets the leased address (and the default route, when the
//! server offered a router) on the guest's interface, inside the guest's
//! namespace, and appends what the server offered to an events file. It
//! touches nothing else.
//!
//! The events file holds one block per event:
//!
//! ```text
//! event bound
//! time 1700000000123456789
//! ip 10.77.0.100
//! ...
//! end
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cmd;
use crate::world::World;

/// How long a client gets for a lease, by default.
pub const LEASE_TIMEOUT: Duration = Duration::from_secs(20);

/// Makes a guest namespace `role` whose `eth0` (MAC `mac`, no address) is a
/// veth to `host_if` in `host`, and plugs `host_if` into `bridge`. Returns
/// the guest's namespace.
pub fn add_dhcp_guest(
    world: &World,
    host: &str,
    role: &str,
    host_if: &str,
    bridge: &str,
    mac: &str,
) -> String {
    let guest = world.add_ns(role);
    world.veth(host, host_if, &guest, "eth0");
    world.ip(&guest, &format!("link set eth0 address {mac}"));
    world.ip(host, &format!("link set {host_if} master {bridge} up"));
    guest
}

/// The MAC `52:54:00:77:a:b` (lower case, as ListLeases reports it).
pub fn mac(a: u8, b: u8) -> String {
    format!("52:54:00:77:{a:02x}:{b:02x}")
}

/// What one event script call saw: the event (udhcpc's first argument,
/// dhclient's `$reason`), when, and the variables the client exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub event: String,
    /// Nanoseconds since the epoch when the script ran.
    pub time_ns: u128,
    pub vars: BTreeMap<String, String>,
}

impl Event {
    /// A variable, if the client exported it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// A variable that must be there.
    #[track_caller]
    pub fn var(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("event {} has no {key}: {:?}", self.event, self.vars))
    }
}

/// Parses an events file: the complete blocks only (a block still being
/// written has no `end` yet).
pub fn parse_events(text: &str) -> Vec<Event> {
    let mut out = Vec::new();
    let mut cur: Option<Event> = None;
    for line in text.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "event" => {
                cur = Some(Event {
                    event: value.to_owned(),
                    time_ns: 0,
                    vars: BTreeMap::new(),
                })
            }
            "end" => out.extend(cur.take()),
            "time" => {
                if let Some(e) = cur.as_mut() {
                    e.time_ns = value.parse().unwrap_or(0);
                }
            }
            _ => {
                if let Some(e) = cur.as_mut() {
                    e.vars.insert(key.to_owned(), value.to_owned());
                }
            }
        }
    }
    out
}

/// The part of an event script that records the event, after the actions.
fn record_block(events: &Path, vars_regex: &str, event_expr: &str) -> String {
    format!(
        r#"block=$(
  echo "event {event_expr}"
  echo "time $(date +%s%N)"
  env | grep -E '^({vars_regex})=' | sed 's/=/ /'
  echo "end"
)
printf '%s\n' "$block" >> '{events}'
"#,
        events = events.display()
    )
}

const UDHCPC_VARS: &str = "interface|ip|siaddr|sname|boot_file|subnet|mask|router|dns|domain|\
lease|serverid|mtu|hostname|broadcast|message|ntpsrv|search|staticroutes|msstaticroutes|tftp|\
bootfile|opt[0-9]+";

fn udhcpc_script(events: &Path) -> String {
    format!(
        r#"#!/bin/sh
# guestnet test harness: udhcpc's event script. Sets the leased address in
# this (the guest's) namespace and records what the server offered. It never
# touches /etc.
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${{mask:-24}}" dev "$interface"
    if [ -n "$router" ]; then ip route replace default via "${{router%% *}}" dev "$interface"; fi
    ;;
  renew)
    ip addr replace "$ip/${{mask:-24}}" dev "$interface"
    if [ -n "$router" ]; then ip route replace default via "${{router%% *}}" dev "$interface"; fi
    ;;
esac
# Classless static routes (option 121, "NET/LEN GW" pairs), as busybox's
# own example script installs them.
# (In a function: its `set --` leaves the event name in $1 alone.)
add_routes() {{
  set -- $staticroutes
  while [ $# -ge 2 ]; do ip route replace "$1" via "$2" dev "$interface"; shift 2; done
}}
case "$1" in
  bound|renew) if [ -n "$staticroutes" ]; then add_routes; fi ;;
esac
{record}exit 0
"#,
        record = record_block(events, UDHCPC_VARS, "$1")
    )
}

const DHCLIENT_VARS: &str = "interface|reason|new_[a-z_0-9]+|old_ip_address";

fn dhclient_script(events: &Path) -> String {
    format!(
        r#"#!/bin/sh
# guestnet test harness: dhclient's event script (-sf). Sets the leased
# address in this (the guest's) namespace and records what the server
# offered. It never touches /etc.
case "$reason" in
  PREINIT)
    ip link set "$interface" up
    ;;
  BOUND|RENEW|REBIND|REBOOT)
    if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then
      ip -4 addr flush dev "$interface"
    fi
    ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface"
    if [ -n "$new_routers" ]; then ip route replace default via "${{new_routers%% *}}" dev "$interface"; fi
    ;;
  EXPIRE|FAIL|RELEASE|STOP)
    ip -4 addr flush dev "$interface"
    ;;
esac
# Classless static routes (option 121, when the config names it): the
# option's bytes in decimal, as Debian's rfc3442 hook reads them.
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT)
    if [ -n "$new_rfc3442_classless_static_routes" ]; then
      set -- $(echo "$new_rfc3442_classless_static_routes" | tr ',' ' ')
      while [ $# -ge 5 ]; do
        len=$1; shift
        net=""; i=0
        while [ $i -lt 4 ]; do
          if [ $((i * 8)) -lt "$len" ]; then o=$1; shift; else o=0; fi
          net="$net${{net:+.}}$o"; i=$((i + 1))
        done
        ip route replace "$net/$len" via "$1.$2.$3.$4" dev "$interface"
        shift 4
      done
    fi
    ;;
esac
{record}exit 0
"#,
        record = record_block(events, DHCLIENT_VARS, "$reason")
    )
}

fn write_script(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// One client process (udhcpc or dhclient) and its files.
struct ClientProc {
    what: &'static str,
    ns: String,
    child: Option<Child>,
    events: PathBuf,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl ClientProc {
    fn new(world: &World, ns: &str, what: &'static str) -> ClientProc {
        assert!(
            world.owns(ns),
            "{what} must run in one of the test's own namespaces, not {ns:?}"
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("gnt-{what}-"))
            .tempdir()
            .expect("temp dir for a DHCP client");
        let events = dir.path().join("events");
        fs::write(&events, "").expect("create events file");
        let log = dir.path().join("log");
        ClientProc {
            what,
            ns: ns.to_owned(),
            child: None,
            events,
            log,
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts `args` inside the namespace, stdout and stderr to the log.
    fn spawn(&mut self, args: &[String]) {
        assert!(self.child.is_none(), "{} already runs", self.what);
        let mut full = vec![
            "ip".to_owned(),
            "netns".to_owned(),
            "exec".to_owned(),
            self.ns.clone(),
        ];
        full.extend(args.iter().cloned());
        let logf = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open client log");
        let child = Command::new(&full[0])
            .args(&full[1..])
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup log"))
            .stderr(logf)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", cmd::show(&full)));
        self.child = Some(child);
    }

    fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.what))
            .id()
    }

    fn events(&self) -> Vec<Event> {
        parse_events(&fs::read_to_string(&self.events).unwrap_or_default())
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn describe(&self) -> String {
        format!(
            "--- {} in {}: log ---\n{}--- events ---\n{}",
            self.what,
            self.ns,
            self.log(),
            fs::read_to_string(&self.events).unwrap_or_default()
        )
    }

    /// Waits for an event at index `from` or later whose name is one of
    /// `names`; None after `timeout`.
    fn wait_event(&self, names: &[&str], from: usize, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self
                .events()
                .into_iter()
                .skip(from)
                .find(|e| names.contains(&e.event.as_str()))
            {
                return Some(e);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for the process to exit; its exit code (None if
    /// killed by a signal, or still running at the deadline).
    fn wait_exit(&mut self, timeout: Duration) -> Option<Option<i32>> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Some(status.code());
                }
                Ok(None) if Instant::now() > deadline => return None,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("waiting for {}: {e}", self.what),
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            cmd::kill_group(&mut child);
        }
    }
}

impl Drop for ClientProc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("{}", self.describe());
        }
    }
}

/// Options of a udhcpc run.
#[derive(Clone, Debug)]
pub struct UdhcpcOpts {
    /// Sent as option 12 (`-x hostname:NAME`).
    pub hostname: Option<String>,
    /// DISCOVERs to send before giving up (`-t`), one a second (`-T 1`).
    pub discovers: u32,
    /// Exit when no lease came after those DISCOVERs (`-n`).
    pub exit_without_lease: bool,
    /// Exit once the lease is obtained (`-q`), without releasing it.
    pub quit_after_lease: bool,
    /// Check the offered address with ARP and DECLINE it when taken (`-a`).
    pub arp_check: bool,
    /// Seconds to wait after a failure or a DECLINE before trying again (`-A`).
    pub retry_after: u32,
    /// Further arguments.
    pub extra: Vec<String>,
}

impl Default for UdhcpcOpts {
    fn default() -> Self {
        UdhcpcOpts {
            hostname: None,
            discovers: 15,
            exit_without_lease: false,
            quit_after_lease: false,
            arp_check: false,
            retry_after: 2,
            extra: Vec::new(),
        }
    }
}

impl UdhcpcOpts {
    /// Defaults, sending `name` as the hostname.
    pub fn named(name: &str) -> UdhcpcOpts {
        UdhcpcOpts {
            hostname: Some(name.to_owned()),
            ..UdhcpcOpts::default()
        }
    }
}

/// `busybox udhcpc` on `eth0` of a guest namespace, in the foreground, with
/// the harness's script. Killed on drop. SIGUSR1 renews, SIGUSR2 releases.
pub struct Udhcpc {
    proc: ClientProc,
}

impl Udhcpc {
    /// Starts udhcpc in `ns` (a namespace of `world`) on its `eth0`.
    pub fn start(world: &World, ns: &str, opts: &UdhcpcOpts) -> Udhcpc {
        let mut proc = ClientProc::new(world, ns, "udhcpc");
        let script = proc.path("script");
        write_script(&script, &udhcpc_script(&proc.events));
        let mut args: Vec<String> = ["busybox", "udhcpc", "-f", "-i", "eth0", "-T", "1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend([
            "-s".to_owned(),
            script.display().to_string(),
            "-p".to_owned(),
            proc.path("pid").display().to_string(),
            "-t".to_owned(),
            opts.discovers.to_string(),
            "-A".to_owned(),
            opts.retry_after.to_string(),
        ]);
        if let Some(h) = &opts.hostname {
            args.push("-x".to_owned());
            args.push(format!("hostname:{h}"));
        }
        if opts.exit_without_lease {
            args.push("-n".to_owned());
        }
        if opts.quit_after_lease {
            args.push("-q".to_owned());
        }
        if opts.arp_check {
            args.push("-a".to_owned());
        }
        args.extend(opts.extra.iter().cloned());
        proc.spawn(&args);
        Udhcpc { proc }
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.proc.events()
    }

    /// udhcpc's own output.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Log and events, for messages.
    pub fn describe(&self) -> String {
        self.proc.describe()
    }

    /// The pid of udhcpc.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Waits for the first `bound` event; panics with the log after `timeout`.
    #[track_caller]
    pub fn wait_bound(&self, timeout: Duration) -> Event {
        self.proc
            .wait_event(&["bound"], 0, timeout)
            .unwrap_or_else(|| {
                panic!(
                    "udhcpc in {} got no lease within {timeout:?}\n{}",
                    self.proc.ns,
                    self.describe()
                )
            })
    }

    /// The first event at index `from` or later named one of `names`.
    pub fn wait_event(&self, names: &[&str], from: usize, timeout: Duration) -> Option<Event> {
        self.proc.wait_event(names, from, timeout)
    }

    /// Renews now (SIGUSR1) and waits for the outcome: the `renew` (or
    /// `bound`) event that follows, or panics with what happened instead.
    #[track_caller]
    pub fn renew(&self, timeout: Duration) -> Event {
        let from = self.events().len();
        cmd::signal(self.pid(), libc::SIGUSR1);
        self.proc
            .wait_event(&["renew", "bound"], from, timeout)
            .unwrap_or_else(|| {
                panic!(
                    "udhcpc in {} did not renew within {timeout:?} of SIGUSR1\n{}",
                    self.proc.ns,
                    self.describe()
                )
            })
    }

    /// Releases the lease (SIGUSR2: udhcpc sends a RELEASE and deconfigures)
    /// and waits for the `deconfig` event that follows.
    #[track_caller]
    pub fn release(&self) {
        let from = self.events().len();
        cmd::signal(self.pid(), libc::SIGUSR2);
        if self
            .proc
            .wait_event(&["deconfig"], from, Duration::from_secs(10))
            .is_none()
        {
            panic!(
                "udhcpc in {} did not release within 10 s of SIGUSR2\n{}",
                self.proc.ns,
                self.describe()
            );
        }
    }

    /// Waits up to `timeout` for udhcpc to exit by itself: Some(code) (the
    /// code None when a signal ended it), None while it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<Option<i32>> {
        self.proc.wait_exit(timeout)
    }

    /// Kills it outright (SIGKILL): no RELEASE is sent.
    pub fn kill(&mut self) {
        self.proc.kill();
    }
}

/// Options of a dhclient run.
#[derive(Clone, Debug, Default)]
pub struct DhclientOpts {
    /// `send host-name "NAME";` in its config.
    pub hostname: Option<String>,
    /// The lease file's content before the start (dhclient then first asks
    /// for that lease again, INIT-REBOOT).
    pub lease_file: Option<String>,
}

impl DhclientOpts {
    pub fn named(name: &str) -> DhclientOpts {
        DhclientOpts {
            hostname: Some(name.to_owned()),
            ..DhclientOpts::default()
        }
    }
}

/// A lease-file entry dhclient takes as a still valid lease of `ip` from
/// `server`, so that it asks for `ip` again on start (INIT-REBOOT).
pub fn dhclient_lease(ip: &str, server: &str) -> String {
    format!(
        r#"lease {{
  interface "eth0";
  fixed-address {ip};
  option subnet-mask 255.255.255.0;
  option dhcp-server-identifier {server};
  option dhcp-lease-time 86400;
  renew 4 2037/01/01 00:00:01;
  rebind 4 2037/01/01 00:00:01;
  expire 4 2037/01/01 00:00:01;
}}
"#
    )
}

/// ISC `dhclient -4 -d` on `eth0` of a guest namespace, with the harness's
/// script (-sf), its own config (-cf), lease file (-lf) and pid file (-pf).
/// Killed on drop.
pub struct Dhclient {
    proc: ClientProc,
}

impl Dhclient {
    pub fn start(world: &World, ns: &str, opts: &DhclientOpts) -> Dhclient {
        Self::start_with_conf(world, ns, opts, "")
    }

    /// As [`start`](Self::start), with `extra` appended to its config
    /// (option definitions, `also request ...;`).
    pub fn start_with_conf(world: &World, ns: &str, opts: &DhclientOpts, extra: &str) -> Dhclient {
        let mut proc = ClientProc::new(world, ns, "dhclient");
        let script = proc.path("script");
        write_script(&script, &dhclient_script(&proc.events));
        let mut conf = String::from(
            "# guestnet test harness\n\
             request subnet-mask, broadcast-address, routers, domain-name, \
             domain-name-servers, host-name, interface-mtu, dhcp-lease-time, \
             dhcp-renewal-time, dhcp-rebinding-time;\n\
             timeout 30;\nretry 2;\n",
        );
        if let Some(h) = &opts.hostname {
            conf.push_str(&format!("send host-name \"{h}\";\n"));
        }
        conf.push_str(extra);
        fs::write(proc.path("conf"), conf).expect("write dhclient conf");
        fs::write(
            proc.path("leases"),
            opts.lease_file.clone().unwrap_or_default(),
        )
        .expect("write dhclient lease file");
        let args = Self::args(&proc, &["-d", "-v"]);
        proc.spawn(&args);
        Dhclient { proc }
    }

    fn args(proc: &ClientProc, flags: &[&str]) -> Vec<String> {
        let mut v = vec!["dhclient".to_owned(), "-4".to_owned()];
        v.extend(flags.iter().map(|s| s.to_string()));
        for (flag, file) in [
            ("-sf", "script"),
            ("-lf", "leases"),
            ("-pf", "pid"),
            ("-cf", "conf"),
        ] {
            v.push(flag.to_owned());
            v.push(proc.path(file).display().to_string());
        }
        v.push("eth0".to_owned());
        v
    }

    pub fn events(&self) -> Vec<Event> {
        self.proc.events()
    }

    /// dhclient's own output (-v: every DHCPDISCOVER, DHCPNAK, ...).
    pub fn log(&self) -> String {
        self.proc.log()
    }

    pub fn describe(&self) -> String {
        self.proc.describe()
    }

    /// The lease file as dhclient wrote it.
    pub fn lease_file(&self) -> String {
        fs::read_to_string(self.proc.path("leases")).unwrap_or_default()
    }

    /// Waits for the first BOUND (or REBOOT) event; panics after `timeout`.
    #[track_caller]
    pub fn wait_bound(&self, timeout: Duration) -> Event {
        self.proc
            .wait_event(&["BOUND", "REBOOT"], 0, timeout)
            .unwrap_or_else(|| {
                panic!(
                    "dhclient in {} got no lease within {timeout:?}\n{}",
                    self.proc.ns,
                    self.describe()
                )
            })
    }

    pub fn wait_event(&self, names: &[&str], from: usize, timeout: Duration) -> Option<Event> {
        self.proc.wait_event(names, from, timeout)
    }

    /// `dhclient -r` with the same files: stops the running client (through
    /// its pid file) and sends a RELEASE. Panics unless that succeeds.
    #[track_caller]
    pub fn release(&mut self) {
        let mut full = vec![
            "ip".to_owned(),
            "netns".to_owned(),
            "exec".to_owned(),
            self.proc.ns.clone(),
        ];
        full.extend(Self::args(&self.proc, &["-r", "-v"]));
        let out = cmd::run(&full);
        if !out.status.success() {
            panic!("{}\n{}", cmd::failure(&full, &out), self.describe());
        }
        if self.proc.wait_exit(Duration::from_secs(5)).is_none() {
            panic!(
                "dhclient -r did not stop the running dhclient\n{}",
                self.describe()
            );
        }
    }

    pub fn kill(&mut self) {
        self.proc.kill();
    }
}
