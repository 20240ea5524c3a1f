//! guestnetd, run inside one of the world's namespaces against a private bus,
//! with temporary config, state and runtime directories.
//!
//! The binary: `$GUESTNETD` if set, else `guestnetd` beside the test
//! executable's directory (`target/<profile>/deps/..`). The built-in mode
//! libraries (`libguestnet_mode_*.so`) are looked for in the binary's own
//! directory unless `$GUESTNET_MODES_DIR` says otherwise. The tests do not
//! build the service: `cargo build -p guestnetd -p guestnet-mode-nat ...`
//! first.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bus::Bus;
use crate::busctl::Busctl;
use crate::cmd;
use crate::guestnet::{Guestnet, BUS_NAME};
use crate::world::World;

/// How long the service gets to take its bus name, or to exit on SIGTERM.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The guestnetd binary the tests run.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("GUESTNETD") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> -> target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable has no grandparent directory");
    profile_dir.join("guestnetd")
}

/// Where the built-in mode libraries are.
pub fn modes_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("GUESTNET_MODES_DIR") {
        return PathBuf::from(p);
    }
    binary()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A mode library built as an example of guestnet-mode-api (the loader
/// fixtures and test modes in modes/api/examples), by `cargo build
/// --examples` (scripts/test.sh does it) into target/<profile>/examples.
pub fn example_library(name: &str) -> PathBuf {
    let lib = modes_dir().join("examples").join(format!("lib{name}.so"));
    assert!(
        lib.is_file(),
        "{} is missing: run `cargo build -p guestnet-mode-api --examples` first",
        lib.display()
    );
    lib
}

/// A temporary modes directory with the built-in modes and the given
/// libraries, each copied under its new file name.
pub fn modes_dir_with(extra: &[(&Path, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("gnt-modes-")
        .tempdir()
        .expect("temp dir for the modes");
    for entry in fs::read_dir(modes_dir()).expect("read the modes directory") {
        let path = entry.expect("read the modes directory").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("libguestnet_mode_") && name.ends_with(".so") {
            fs::copy(&path, dir.path().join(&name)).expect("copy a mode library");
        }
    }
    for (lib, as_name) in extra {
        fs::copy(lib, dir.path().join(as_name)).expect("copy a mode library");
    }
    dir
}

/// A guestnetd process (or none, between a stop and the next start) with its
/// directories, which live as long as this value: a restart keeps them.
pub struct Service {
    ns: String,
    bus_address: String,
    binary: PathBuf,
    modes_dir: PathBuf,
    extra_args: Vec<String>,
    config_dir: PathBuf,
    state_dir: PathBuf,
    runtime_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    starts: u32,
    // Last, so the directories go after the process is dead.
    dir: tempfile::TempDir,
}

impl Service {
    /// Starts guestnetd in namespace `ns` of `world`, on `bus`, and waits until
    /// it owns org.guestnet1.
    pub fn start(world: &World, ns: &str, bus: &Bus) -> Service {
        Self::start_with(world, ns, bus, &[])
    }

    /// Like [`Service::start`], with extra arguments for guestnetd.
    pub fn start_with(world: &World, ns: &str, bus: &Bus, extra_args: &[&str]) -> Service {
        Self::start_with_modes(world, ns, bus, &modes_dir(), extra_args)
    }

    /// Like [`Service::start_with`], loading modes from `modes` instead of
    /// the built-in modes' directory.
    pub fn start_with_modes(
        world: &World,
        ns: &str,
        bus: &Bus,
        modes: &Path,
        extra_args: &[&str],
    ) -> Service {
        assert!(
            world.owns(ns),
            "guestnetd must run in one of the test's own namespaces, not {ns:?}"
        );
        let binary = binary();
        assert!(
            binary.is_file(),
            "guestnetd not found at {}: build it first (cargo build -p guestnetd and the \
             mode crates guestnet-mode-{{nat,routed,isolated,bridged}}), or set GUESTNETD",
            binary.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("gnt-svc-")
            .tempdir()
            .expect("temp dir for the service");
        let sub = |name: &str| {
            let p = dir.path().join(name);
            fs::create_dir(&p).expect("create service dir");
            p
        };
        let (config_dir, state_dir, runtime_dir) = (sub("config"), sub("state"), sub("run"));
        let log = dir.path().join("guestnetd.log");
        let mut svc = Service {
            ns: ns.to_owned(),
            bus_address: bus.address().to_owned(),
            binary,
            modes_dir: modes.to_owned(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            config_dir,
            state_dir,
            runtime_dir,
            log,
            child: None,
            starts: 0,
            dir,
        };
        svc.launch();
        svc
    }

    fn args(&self) -> Vec<String> {
        let mut v = vec![
            "ip".to_owned(),
            "netns".to_owned(),
            "exec".to_owned(),
            self.ns.clone(),
            self.binary.display().to_string(),
            "--bus-address".to_owned(),
            self.bus_address.clone(),
            "--config-dir".to_owned(),
            self.config_dir.display().to_string(),
            "--state-dir".to_owned(),
            self.state_dir.display().to_string(),
            "--runtime-dir".to_owned(),
            self.runtime_dir.display().to_string(),
            "--modes-dir".to_owned(),
            self.modes_dir.display().to_string(),
        ];
        // Never the machine's /etc/resolv.conf: unless the test names its
        // own, upstream DNS is the lab's lan machine.
        if !self.extra_args.iter().any(|a| a == "--resolv-conf") {
            let resolv = self.dir.path().join("resolv.conf");
            if !resolv.exists() {
                fs::write(&resolv, "nameserver 10.200.0.2\n").expect("write resolv.conf");
            }
            v.push("--resolv-conf".to_owned());
            v.push(resolv.display().to_string());
        }
        v.extend(self.extra_args.iter().cloned());
        v
    }

    fn launch(&mut self) {
        assert!(self.child.is_none(), "guestnetd is already running");
        self.starts += 1;
        let args = self.args();
        let mut logf = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open guestnetd log");
        let _ = writeln!(logf, "{}: {}", start_marker(self.starts), cmd::show(&args));
        let mut command = Command::new(&args[0]);
        command
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup log"))
            .stderr(logf)
            .process_group(0);
        // The log is a file: no colour codes in it.
        command.env("NO_COLOR", "1");
        if std::env::var_os("GUESTNET_LOG").is_none() {
            command.env(
                "GUESTNET_LOG",
                "info,guestnetd=debug,netlink_packet_route=error",
            );
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", cmd::show(&args)));
        self.child = Some(child);
        self.wait_for_name(true);
    }

    /// Polls the bus every 20 ms until org.guestnet1 has (or, `owned` false,
    /// no longer has) an owner; panics with the log tail after 10 s, or as soon
    /// as the process exits while we wait for it to take the name.
    fn wait_for_name(&mut self, owned: bool) {
        let busctl = self.busctl();
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if owned {
                if let Some(child) = self.child.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        self.child = None;
                        panic!(
                            "guestnetd exited ({status}) before taking {BUS_NAME}\n--- guestnetd log (tail) ---\n{}",
                            self.log_tail(60)
                        );
                    }
                }
            }
            match busctl.name_has_owner(BUS_NAME) {
                Ok(has) if has == owned => return,
                Ok(_) => {}
                Err(e) => panic!("cannot ask the bus about {BUS_NAME}: {e}"),
            }
            if Instant::now() > deadline {
                panic!(
                    "{BUS_NAME} {} within {STARTUP_TIMEOUT:?}\n--- guestnetd log (tail) ---\n{}",
                    if owned {
                        "got no owner"
                    } else {
                        "kept its owner"
                    },
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts guestnetd again after [`Service::stop`] or [`Service::sigkill`],
    /// with the same directories.
    pub fn start_again(&mut self) {
        self.launch();
    }

    /// Stops guestnetd with SIGTERM and waits for it to exit (10 s at most,
    /// then it is killed and this panics), and for its name to leave the bus.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            panic!("guestnetd is not running");
        };
        cmd::signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() > deadline => {
                    cmd::signal(child.id(), libc::SIGKILL);
                    let _ = child.wait();
                    panic!(
                        "guestnetd did not exit within {STARTUP_TIMEOUT:?} of SIGTERM\n--- guestnetd log (tail) ---\n{}",
                        self.log_tail(60)
                    );
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => panic!("waiting for guestnetd: {e}"),
            }
        }
        self.wait_for_name(false);
    }

    /// Kills guestnetd with SIGKILL (a crash: no cleanup at all) and waits
    /// for its name to leave the bus.
    pub fn sigkill(&mut self) {
        let Some(mut child) = self.child.take() else {
            panic!("guestnetd is not running");
        };
        cmd::signal(child.id(), libc::SIGKILL);
        let _ = child.wait();
        self.wait_for_name(false);
    }

    /// A graceful stop and a start, with the same directories.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The pid of the running guestnetd.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The namespace it runs in.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// A busctl client addressed to org.guestnet1.
    pub fn busctl(&self) -> Busctl {
        Busctl::new(&self.bus_address, BUS_NAME)
    }

    /// The guestnet API client, whose panics carry this service's log tail.
    pub fn client(&self) -> Guestnet {
        Guestnet::new(self.busctl(), Some(self.log.clone()))
    }

    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn runtime_dir(&self) -> &Path {
        &self.runtime_dir
    }

    /// The log (stdout and stderr of every start, appended).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// What guestnetd logged since the harness started it for the `n`th
    /// time (the first start is 1), a panic when it was not started that often.
    pub fn log_since_start(&self, n: u32) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        match log.find(&start_marker(n)) {
            Some(at) => log[at..].to_owned(),
            None => panic!("no start #{n} in guestnetd's log:\n{log}"),
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        cmd::tail(&self.log, lines)
    }

    /// The temporary directory holding everything of this service.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Every file under `dir` (a service's config, state or runtime
/// directory), recursively, in order.
pub fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(p);
            }
        }
    }
    out
}

/// The line the harness writes into guestnetd's log before its `n`th start.
fn start_marker(n: u32) -> String {
    format!("===== test harness: start #{n} of guestnetd")
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            cmd::signal(child.id(), libc::SIGKILL);
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- guestnetd log (tail) at the panic ---\n{}",
                self.log_tail(60)
            );
        }
    }
}
