//! A world of network namespaces: the hosts, guests and LAN machines of one
//! test, the veths between them, and the processes running inside them.
//!
//! Namespaces are named `gnt<pid>-<n>-<role>`: unique per test process and
//! per world, and recognisable, so namespaces left by a test process that was
//! killed outright (no Drop ran) are removed by the next run (see
//! [`World::new`]).

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};

use crate::cmd;

/// The prefix of every namespace a world makes.
pub const NS_PREFIX: &str = "gnt";

/// The longest interface name Linux accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

static COUNTER: AtomicU32 = AtomicU32::new(0);
static REAP_STALE: Once = Once::new();

/// The namespaces and background processes of one test. Dropping it kills the
/// processes and deletes the namespaces (with everything in them).
pub struct World {
    id: String,
    namespaces: Mutex<Vec<String>>,
    children: Mutex<Vec<Child>>,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    /// A new, empty world with an id unique to this process and world.
    ///
    /// The first world of a process also removes namespaces left behind by
    /// earlier test processes that no longer exist (killed before their Drop
    /// could run), killing what still runs inside them.
    pub fn new() -> World {
        REAP_STALE.call_once(reap_stale_namespaces);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        World {
            id: format!("{}-{}", std::process::id(), n),
            namespaces: Mutex::new(Vec::new()),
            children: Mutex::new(Vec::new()),
        }
    }

    /// This world's id, `<pid>-<n>`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The name the namespace for `role` has (or would have) in this world.
    pub fn ns_name(&self, role: &str) -> String {
        format!("{NS_PREFIX}{}-{role}", self.id)
    }

    /// True if `ns` is a namespace this world made.
    pub fn owns(&self, ns: &str) -> bool {
        self.namespaces.lock().unwrap().iter().any(|n| n == ns)
    }

    fn check_ns(&self, ns: &str) {
        assert!(
            self.owns(ns),
            "`{ns}` is not a namespace of this world ({}): refusing to act outside the test's own namespaces",
            self.id
        );
    }

    /// Makes the namespace `gnt<id>-<role>` with its loopback up; returns its name.
    pub fn add_ns(&self, role: &str) -> String {
        assert!(
            !role.is_empty() && role.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "namespace role {role:?}: use letters, digits and _"
        );
        let name = self.ns_name(role);
        assert!(
            !self.owns(&name),
            "this world already has a namespace {name}"
        );
        cmd::run_ok(&["ip", "netns", "add", &name]);
        // Recorded before anything else can fail, so Drop deletes it.
        self.namespaces.lock().unwrap().push(name.clone());
        cmd::run_ok(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// A veth pair: `name_a` in `ns_a` and `name_b` in `ns_b`, both up.
    /// The pair is created inside `ns_a` with its peer placed straight into
    /// `ns_b`: it never exists in the root namespace.
    pub fn veth(&self, ns_a: &str, name_a: &str, ns_b: &str, name_b: &str) {
        self.check_ns(ns_a);
        self.check_ns(ns_b);
        for name in [name_a, name_b] {
            assert!(
                !name.is_empty() && name.len() <= IFNAME_MAX,
                "interface name {name:?} must be 1..={IFNAME_MAX} bytes"
            );
        }
        cmd::run_ok(&[
            "ip", "-n", ns_a, "link", "add", name_a, "type", "veth", "peer", "name", name_b,
            "netns", ns_b,
        ]);
        cmd::run_ok(&["ip", "-n", ns_a, "link", "set", name_a, "up"]);
        cmd::run_ok(&["ip", "-n", ns_b, "link", "set", name_b, "up"]);
    }

    fn netns_exec_args<'a>(ns: &'a str, args: &[&'a str]) -> Vec<&'a str> {
        assert!(!args.is_empty(), "exec: empty command");
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(args);
        full
    }

    /// Runs a program inside `ns` (`ip netns exec`) and returns its output,
    /// whatever its exit status.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        self.check_ns(ns);
        cmd::run(&Self::netns_exec_args(ns, args))
    }

    /// Runs a program inside `ns`; panics with its status, stdout and stderr
    /// unless it exits 0. Returns its stdout.
    pub fn exec_ok(&self, ns: &str, args: &[&str]) -> String {
        self.check_ns(ns);
        cmd::run_ok(&Self::netns_exec_args(ns, args))
    }

    /// Runs `sh -c script` inside `ns`, whatever its exit status.
    pub fn sh(&self, ns: &str, script: &str) -> Output {
        self.exec(ns, &["sh", "-c", script])
    }

    /// `ip -n NS ARGS` with ARGS split at whitespace; panics unless it
    /// succeeds. Returns its stdout.
    pub fn ip(&self, ns: &str, args: &str) -> String {
        self.check_ns(ns);
        let mut full = vec!["ip", "-n", ns];
        full.extend(args.split_whitespace());
        cmd::run_ok(&full)
    }

    /// `ip -n NS ARGS`, whatever its exit status.
    pub fn try_ip(&self, ns: &str, args: &str) -> Output {
        self.check_ns(ns);
        let mut full = vec!["ip", "-n", ns];
        full.extend(args.split_whitespace());
        cmd::run(&full)
    }

    /// `ip -j -n NS ARGS` parsed as JSON; panics unless it succeeds.
    /// (`ip -j` prints nothing at all for an empty list: that is `[]` here.)
    pub fn ip_json(&self, ns: &str, args: &str) -> serde_json::Value {
        self.check_ns(ns);
        let mut full = vec!["ip", "-j", "-n", ns];
        full.extend(args.split_whitespace());
        let out = cmd::run_ok(&full);
        if out.trim().is_empty() {
            return serde_json::Value::Array(Vec::new());
        }
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}): {out}", cmd::show(&full)))
    }

    /// The names of the links in `ns`.
    pub fn links(&self, ns: &str) -> HashSet<String> {
        self.ip_json(ns, "link show")
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["ifname"].as_str().map(str::to_owned))
            .collect()
    }

    /// The names of the bridges in `ns`.
    pub fn bridges(&self, ns: &str) -> HashSet<String> {
        self.ip_json(ns, "link show type bridge")
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["ifname"].as_str().map(str::to_owned))
            .collect()
    }

    /// True if `ns` has a link called `name`.
    pub fn has_link(&self, ns: &str, name: &str) -> bool {
        self.links(ns).contains(name)
    }

    /// The master (bridge) of link `name` in `ns`, if it has one.
    pub fn master_of(&self, ns: &str, name: &str) -> Option<String> {
        let v = self.ip_json(ns, &format!("link show dev {name}"));
        v[0]["master"].as_str().map(str::to_owned)
    }

    /// The IPv4 addresses on link `name` in `ns`, as CIDR strings.
    pub fn ipv4_addrs(&self, ns: &str, name: &str) -> Vec<String> {
        let v = self.ip_json(ns, &format!("-4 addr show dev {name}"));
        v.as_array()
            .into_iter()
            .flatten()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| {
                Some(format!(
                    "{}/{}",
                    a["local"].as_str()?,
                    a["prefixlen"].as_u64()?
                ))
            })
            .collect()
    }

    /// The IPv4 default routes of `ns`, as (device, gateway) pairs.
    pub fn default_routes(&self, ns: &str) -> Vec<(String, Option<String>)> {
        let v = self.ip_json(ns, "-4 route show default");
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                Some((
                    r["dev"].as_str()?.to_owned(),
                    r["gateway"].as_str().map(str::to_owned),
                ))
            })
            .collect()
    }

    /// Sets a sysctl inside `ns` (for example `net.ipv4.ip_forward`, which is
    /// per namespace). Panics on failure.
    pub fn sysctl_set(&self, ns: &str, key: &str, value: &str) {
        self.exec_ok(ns, &["sysctl", "-q", "-w", &format!("{key}={value}")]);
    }

    /// Reads a sysctl inside `ns`.
    pub fn sysctl_get(&self, ns: &str, key: &str) -> String {
        self.exec_ok(ns, &["sysctl", "-n", key]).trim().to_owned()
    }

    fn spawn_inner(&self, ns: &str, args: &[&str], stdout: Stdio) -> Child {
        self.check_ns(ns);
        let full = Self::netns_exec_args(ns, args);
        let child = Command::new(full[0])
            .args(&full[1..])
            .stdin(Stdio::null())
            .stdout(stdout)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", cmd::show(&full)));
        child
    }

    /// Starts a background process inside `ns` (its stdout discarded, its
    /// stderr the test's). It is killed when the world is dropped, or by
    /// [`World::kill`]. Returns its pid (`ip netns exec` execs the program,
    /// so this is the program's own pid).
    pub fn spawn(&self, ns: &str, args: &[&str]) -> u32 {
        let child = self.spawn_inner(ns, args, Stdio::null());
        let pid = child.id();
        self.children.lock().unwrap().push(child);
        pid
    }

    /// Like [`World::spawn`], handing back the process's stdout.
    pub fn spawn_piped(&self, ns: &str, args: &[&str]) -> (u32, ChildStdout) {
        let mut child = self.spawn_inner(ns, args, Stdio::piped());
        let stdout = child.stdout.take().expect("piped stdout");
        let pid = child.id();
        self.children.lock().unwrap().push(child);
        (pid, stdout)
    }

    /// Kills (SIGKILL, with its process group) and reaps a process started
    /// by [`World::spawn`].
    pub fn kill(&self, pid: u32) {
        let mut children = self.children.lock().unwrap();
        if let Some(i) = children.iter().position(|c| c.id() == pid) {
            let mut child = children.remove(i);
            cmd::kill_group(&mut child);
        }
    }

    /// Waits for a process started by [`World::spawn`] to exit by itself and
    /// returns its exit code (None when killed by a signal).
    pub fn wait(&self, pid: u32) -> Option<i32> {
        let child = {
            let mut children = self.children.lock().unwrap();
            let i = children.iter().position(|c| c.id() == pid)?;
            children.remove(i)
        };
        let mut child = child;
        child.wait().ok()?.code()
    }
}

/// Kills every process inside namespace `ns` (by pid, as `ip netns pids`
/// lists them) and deletes the namespace. Never panics: it runs in Drop.
fn delete_ns(ns: &str) {
    if !ns.starts_with(NS_PREFIX) {
        return;
    }
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<u32>() {
                if pid > 1 {
                    cmd::signal(pid, libc::SIGKILL);
                }
            }
        }
    }
    match Command::new("ip").args(["netns", "del", ns]).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!(
            "warning: `ip netns del {ns}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => eprintln!("warning: cannot run `ip netns del {ns}`: {e}"),
    }
}

/// Removes `gnt<pid>-...` namespaces whose test process no longer exists.
fn reap_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('-') else {
            continue;
        };
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue; // its test process is still running
        }
        eprintln!("removing namespace {name} left by test process {pid}, which is gone");
        delete_ns(name);
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let children =
            std::mem::take(&mut *self.children.lock().unwrap_or_else(|e| e.into_inner()));
        for mut child in children {
            cmd::kill_group(&mut child);
        }
        let namespaces =
            std::mem::take(&mut *self.namespaces.lock().unwrap_or_else(|e| e.into_inner()));
        for ns in namespaces.iter().rev() {
            delete_ns(ns);
        }
    }
}

/// Reads everything left on a child's stdout (for messages).
pub fn read_all(mut stdout: ChildStdout) -> String {
    let mut s = String::new();
    let _ = stdout.read_to_string(&mut s);
    s
}
