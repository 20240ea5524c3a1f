//! guestnetctl, the project's own command-line client, run as a user would
//! run it against the test's private bus.
//!
//! The binary: `$GUESTNETCTL` if set, else `guestnetctl` beside guestnetd
//! (`target/<profile>/`). The tests do not build it: `cargo build -p
//! guestnetctl` first. guestnetctl only talks to the bus (a unix socket), so
//! it runs in the test process's own namespace and changes nothing there.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::cmd;
use crate::lines::Lines;

/// The guestnetctl binary the tests run.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("GUESTNETCTL") {
        return PathBuf::from(p);
    }
    crate::service::binary()
        .parent()
        .map(|d| d.join("guestnetctl"))
        .unwrap_or_else(|| PathBuf::from("guestnetctl"))
}

#[track_caller]
fn assert_built() -> PathBuf {
    let bin = binary();
    assert!(
        bin.is_file(),
        "guestnetctl not found at {}: build it first (cargo build -p guestnetctl), or set GUESTNETCTL",
        bin.display()
    );
    bin
}

/// Runs `guestnetctl --bus-address ADDR ARGS...` and returns its output,
/// whatever its status.
pub fn guestnetctl(bus_address: &str, args: &[&str]) -> Output {
    Ctl::new(bus_address).run(args)
}

/// guestnetctl on one bus, with an environment of the test's choosing.
#[derive(Clone, Debug)]
pub struct Ctl {
    bus_address: String,
    env: Vec<(String, String)>,
    stdin: Option<Vec<u8>>,
    uid: Option<u32>,
}

impl Ctl {
    pub fn new(bus_address: &str) -> Ctl {
        Ctl {
            bus_address: bus_address.to_owned(),
            env: Vec::new(),
            stdin: None,
            uid: None,
        }
    }

    /// The same, run as `uid` (gid the same, no supplementary groups).
    pub fn as_uid(mut self, uid: u32) -> Ctl {
        self.uid = Some(uid);
        self
    }

    /// The same, with `key=value` in the environment (EDITOR, ...).
    pub fn env(mut self, key: &str, value: &str) -> Ctl {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The same, with `data` on standard input.
    pub fn stdin(mut self, data: &[u8]) -> Ctl {
        self.stdin = Some(data.to_vec());
        self
    }

    /// The full command line, for messages.
    pub fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut v = vec![
            binary().display().to_string(),
            "--bus-address".to_owned(),
            self.bus_address.clone(),
        ];
        v.extend(args.iter().map(|a| a.to_string()));
        v
    }

    fn command(&self, args: &[&str]) -> Command {
        let bin = assert_built();
        let mut c = Command::new(bin);
        c.arg("--bus-address").arg(&self.bus_address).args(args);
        // Never an editor or a bus of the machine's by accident.
        c.env_remove("VISUAL").env_remove("DBUS_SYSTEM_BUS_ADDRESS");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        if let Some(uid) = self.uid {
            c.uid(uid).gid(uid);
        }
        c
    }

    /// Runs it and returns its output, whatever its status.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut c = self.command(args);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", cmd::show(&self.argv(args))));
        if let Some(data) = &self.stdin {
            use std::io::Write;
            let mut input = child.stdin.take().expect("piped stdin");
            input.write_all(data).expect("write guestnetctl's stdin");
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("waiting for `{}`: {e}", cmd::show(&self.argv(args))))
    }

    /// Runs it; panics with its output unless it exits 0. Its stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        if !out.status.success() {
            panic!("{}", cmd::failure(&self.argv(args), &out));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs it with `--json`; panics unless it exits 0 with one JSON
    /// document on stdout. The document.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "`{}` printed no JSON document ({e}):\n{text}",
                cmd::show(&self.argv(&all))
            )
        })
    }

    /// Runs it expecting it to fail with exit code `code`; panics otherwise.
    /// Its stderr.
    #[track_caller]
    pub fn fails(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        if out.status.code() != Some(code) {
            panic!(
                "expected exit code {code}\n{}",
                cmd::failure(&self.argv(args), &out)
            );
        }
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Starts `guestnetctl --json monitor ARGS...` and waits until it listens.
    pub fn monitor(&self, args: &[&str]) -> CtlMonitor {
        CtlMonitor::start(self, args)
    }
}

/// A running `guestnetctl --json monitor`, its stdout collected by a
/// thread; killed on drop.
pub struct CtlMonitor {
    child: Option<Child>,
    out: Lines<String>,
    stderr: tempfile::NamedTempFile,
    argv: Vec<String>,
}

/// What guestnetctl monitor says on stderr once it listens.
const READY: &str = "Monitoring org.guestnet1";

impl CtlMonitor {
    fn start(ctl: &Ctl, args: &[&str]) -> CtlMonitor {
        let mut all = vec!["--json", "monitor"];
        all.extend_from_slice(args);
        let argv = ctl.argv(&all);
        let stderr = tempfile::NamedTempFile::new().expect("temp file for guestnetctl's stderr");
        let mut child = ctl
            .command(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().expect("reopen stderr file"))
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", cmd::show(&argv)));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut m = CtlMonitor {
            child: Some(child),
            out: Lines::collect(stdout, Some),
            stderr,
            argv,
        };
        m.wait_ready();
        m
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.stderr_text().contains(READY) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                panic!(
                    "`{}` exited ({status}) before listening:\n{}",
                    cmd::show(&self.argv),
                    self.stderr_text()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "`{}` did not say {READY:?} within 10 s:\n{}",
                    cmd::show(&self.argv),
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.out.items()
    }

    /// Every line so far, each parsed as JSON; panics on a line that is not
    /// one JSON object.
    #[track_caller]
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
                Ok(v) if v.is_object() => v,
                _ => panic!("monitor printed a line that is not a JSON object: {l:?}"),
            })
            .collect()
    }

    /// Waits up to `timeout` for an event for which `pred` holds.
    pub fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let (found, n, closed) = self.out.with(|lines, closed| {
                let found = lines
                    .iter()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .find(|v| pred(v));
                (found, lines.len(), closed)
            });
            if found.is_some() {
                return found;
            }
            let now = Instant::now();
            if now >= deadline || closed {
                return None;
            }
            self.out.wait_for_more_than(n, deadline - now);
        }
    }

    /// Kills it (SIGTERM, as Ctrl-C would end it) and returns every line it
    /// printed.
    pub fn stop(mut self) -> Vec<String> {
        self.kill();
        self.lines()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            cmd::signal(child.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.out.join();
    }

    /// What it said on stderr.
    pub fn stderr(&self) -> String {
        self.stderr_text()
    }
}

impl Drop for CtlMonitor {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- {} ---\nstdout:\n{}\nstderr:\n{}",
                cmd::show(&self.argv),
                self.lines().join("\n"),
                self.stderr_text()
            );
        }
    }
}

/// Writes an executable shell script `name` into `dir` and returns its path.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\nset -e\n{body}"))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    path
}
