//! Watching guestnet's signals with a real client: `busctl monitor`
//! (`--json=short`, one message a line) on the test's private bus, its
//! output collected by a thread.
//!
//! The monitor matches every signal of the interface `org.guestnet1.Network`
//! whoever sends it (so it keeps seeing them across restarts of guestnetd,
//! whose unique name changes). It is ready once it has seen a marker call of
//! its own to the bus driver.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::cmd;
use crate::guestnet::{lease_from_json, Lease, NETWORK_IFACE};
use crate::lines::Lines;

static MARKERS: AtomicU32 = AtomicU32::new(0);

/// One signal the monitor saw.
#[derive(Clone, Debug)]
pub struct Signal {
    pub path: String,
    pub interface: String,
    pub member: String,
    /// The arguments: a struct argument stays one JSON array.
    pub args: Vec<serde_json::Value>,
    /// When the bus delivered it to the monitor, microseconds since the epoch.
    pub timestamp_us: u64,
}

impl Signal {
    /// The lease a Lease* signal carries: one `(sssst)` struct, or the five
    /// values as separate arguments.
    pub fn lease(&self) -> Option<Lease> {
        match self.args.as_slice() {
            [one] => lease_from_json(one),
            _ => lease_from_json(&serde_json::Value::Array(self.args.clone())),
        }
    }
}

/// A running `busctl monitor`; killed on drop.
pub struct Monitor {
    child: Child,
    /// Every message, as busctl's JSON.
    out: Lines<serde_json::Value>,
    stderr: tempfile::NamedTempFile,
}

impl Monitor {
    /// Starts monitoring guestnet's Network signals on the bus at `address`
    /// and waits (up to 10 s) until the monitor is in place.
    pub fn start(address: &str) -> Monitor {
        Self::start_matching(
            address,
            &[format!("type='signal',interface='{NETWORK_IFACE}'")],
        )
    }

    /// Starts a monitor of the messages matching any of `rules` (D-Bus match
    /// rules, e.g. `type='signal',sender='org.guestnet1'`) and waits (up to
    /// 10 s) until it is in place.
    pub fn start_matching(address: &str, rules: &[String]) -> Monitor {
        let marker = format!(
            "org.guestnet1.TestMonitorReady.p{}n{}",
            std::process::id(),
            MARKERS.fetch_add(1, Ordering::SeqCst)
        );
        let mut args = vec![
            "busctl".to_owned(),
            format!("--address={address}"),
            "--json=short".to_owned(),
            "monitor".to_owned(),
        ];
        args.extend(rules.iter().map(|r| format!("--match={r}")));
        args.extend([format!(
            "--match=type='method_call',interface='org.freedesktop.DBus',\
                 member='NameHasOwner',arg0='{marker}'"
        )]);
        let stderr = tempfile::NamedTempFile::new().expect("temp file for busctl's stderr");
        let mut child = Command::new(&args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().expect("reopen stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", cmd::show(&args)));
        let stdout = child.stdout.take().expect("piped stdout");
        let out = Lines::collect(stdout, |line| {
            serde_json::from_str::<serde_json::Value>(line.trim()).ok()
        });
        let mut monitor = Monitor { child, out, stderr };
        monitor.wait_ready(address, &marker);
        monitor
    }

    fn wait_ready(&mut self, address: &str, marker: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let _ = cmd::run(&[
                "busctl",
                &format!("--address={address}"),
                "call",
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "NameHasOwner",
                "s",
                marker,
            ]);
            self.out.wait_for_more_than(0, Duration::from_millis(200));
            let (any, closed) = self.out.with(|lines, closed| (!lines.is_empty(), closed));
            if closed {
                panic!(
                    "busctl monitor exited at once: {}",
                    std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
                );
            }
            if any {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "busctl monitor did not see its own marker call within 10 s: {}",
                    std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
                );
            }
        }
    }

    /// Every signal seen so far, in order.
    pub fn signals(&self) -> Vec<Signal> {
        self.out.with(|lines, _| {
            lines
                .iter()
                .filter(|v| v["type"] == "signal")
                .map(|v| {
                    let data = &v["payload"]["data"];
                    Signal {
                        path: v["path"].as_str().unwrap_or_default().to_owned(),
                        interface: v["interface"].as_str().unwrap_or_default().to_owned(),
                        member: v["member"].as_str().unwrap_or_default().to_owned(),
                        args: data.as_array().cloned().unwrap_or_default(),
                        timestamp_us: v["timestamp-realtime"].as_u64().unwrap_or(0),
                    }
                })
                .collect()
        })
    }

    /// The leases carried by the `member` signals (LeaseAdded, ...) so far.
    pub fn leases(&self, member: &str) -> Vec<Lease> {
        self.signals()
            .iter()
            .filter(|s| s.member == member)
            .filter_map(Signal::lease)
            .collect()
    }

    /// Waits up to `timeout` for a `member` signal for which `pred` holds.
    pub fn wait_for(
        &self,
        member: &str,
        timeout: Duration,
        pred: impl Fn(&Signal) -> bool,
    ) -> Option<Signal> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self
                .signals()
                .into_iter()
                .find(|s| s.member == member && pred(s))
            {
                return Some(s);
            }
            let now = Instant::now();
            if now > deadline {
                return None;
            }
            let n = self.out.with(|lines, _| lines.len());
            self.out.wait_for_more_than(n, deadline - now);
        }
    }

    /// Waits for a `member` signal whose lease has MAC `mac`; panics with
    /// every signal seen after `timeout`.
    #[track_caller]
    pub fn expect_lease_signal(&self, member: &str, mac: &str, timeout: Duration) -> Signal {
        self.wait_for(member, timeout, |s| {
            s.lease().is_some_and(|l| l.mac.eq_ignore_ascii_case(mac))
        })
        .unwrap_or_else(|| {
            panic!(
                "no {member} signal for {mac} within {timeout:?}; signals seen:\n{}",
                self.describe()
            )
        })
    }

    /// The signals seen, one a line, for messages.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for sig in self.signals() {
            s.push_str(&format!(
                "  {} {}.{} {:?}\n",
                sig.path, sig.interface, sig.member, sig.args
            ));
        }
        if s.is_empty() {
            s.push_str("  (none)\n");
        }
        s
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.out.join();
    }
}
