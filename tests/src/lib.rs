//! The world the end-to-end tests build.
//!
//! Every test makes its own small world of network namespaces ([`world`]),
//! a private dbus-daemon with the project's own bus policy ([`bus`]), runs
//! guestnetd inside the world's `host` namespace ([`service`]), and talks to it
//! through real clients ([`busctl`], [`guestnet`], and the project's own
//! guestnetctl in [`cli`]). Data-path checks (ping, who
//! did a TCP peer see) are in [`probe`]; the usual host + lan + guests layout in
//! [`lab`]. DHCP clients (udhcpc, dhclient) with scripts of the harness's own
//! are in [`dhcp_client`], DHCP exchanges no stock client makes (INFORM, a
//! relay) in [`dhcp_probe`], DNS queries in [`dig`], an upstream DNS server
//! (dnsmasq) in [`upstream`], and a `busctl monitor` of guestnet's signals in
//! [`monitor`]. Users and groups of the test's own (a tap's owner, a polkit
//! rule's group) are in [`users`].
//!
//! Nothing here touches the machine's root network namespace: every link,
//! address, route, sysctl and firewall rule is made inside a namespace the
//! test created, and every namespace and process is removed on drop, also
//! when the test panics.

pub mod bus;
pub mod busctl;
pub mod chaos;
pub mod cli;
pub mod cmd;
pub mod dhcp_abuse;
pub mod dhcp_client;
pub mod dhcp_probe;
pub mod dig;
pub mod guest;
pub mod guestnet;
pub mod host_input;
pub mod host_view;
pub mod ipv4;
pub mod lab;
pub mod lease_journal;
pub mod lines;
pub mod monitor;
pub mod polkit;
pub mod probe;
pub mod raw_dbus;
pub mod service;
pub mod upstream;
pub mod users;
pub mod vm;
pub mod world;

pub use bus::Bus;
pub use busctl::{BusError, Busctl};
pub use guestnet::Guestnet;
pub use ipv4::Cidr;
pub use lab::Lab;
pub use service::Service;
pub use world::World;

/// True when the tests may run: they need root for namespaces.
///
/// Without root: under `CI=true` this panics (a CI that skips every test
/// proves nothing); elsewhere it prints a loud SKIPPED line and returns false,
/// and the test returns early.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "guestnet end-to-end tests need root (network namespaces), and CI=true: \
             refusing to skip. Run the tests as uid 0."
        );
    }
    announce_skip("needs root (network namespaces)");
    false
}

/// A name no other call of this process, and no other live test process,
/// gets: `PREFIX<pid>-<kind><n>`, which [`left_by_gone_process`] recognizes
/// once this process is gone.
pub fn unique_name(prefix: &str, kind: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("{prefix}{}-{kind}{n}", std::process::id())
}

/// Whether `name` is `PREFIX<pid>-...` for a test process that is gone:
/// what a test made under that name (a user, a group, a file) was left
/// behind by a kill before its Drop could run.
pub fn left_by_gone_process(name: &str, prefix: &str) -> bool {
    let Some((pid, _)) = name.strip_prefix(prefix).and_then(|r| r.split_once('-')) else {
        return false;
    };
    !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Says, in a banner, that the current test skips and why. Straight to
/// fd 2, past the test harness's output capture, so the skip is seen even
/// when the test "passes".
pub fn announce_skip(why: &str) {
    use std::io::Write;
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_owned();
    let line = "*".repeat(60);
    let _ = write!(
        std::io::stderr(),
        "\n{line}\n*** SKIPPED: {why}: {test}\n{line}\n\n"
    );
}

/// `root_or_skip!()` at the top of a test: returns from it when
/// [`require_root`] says the test cannot run.
#[macro_export]
macro_rules! root_or_skip {
    () => {
        if !$crate::require_root() {
            return;
        }
    };
}
