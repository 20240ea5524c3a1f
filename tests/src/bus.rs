//! A private dbus-daemon for one test: a system-bus-like policy (modeled on
//! Debian's /usr/share/dbus-1/system.conf) that includes the project's own
//! shipped policy file, listening on a unix socket in a temporary directory.
//!
//! A unix socket path reaches the daemon from every network namespace, so
//! the service (in the world's `host` namespace) and clients anywhere share it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::busctl::Busctl;
use crate::cmd;

/// The project's bus policy, loaded as shipped (never a copy).
pub fn policy_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dbus/data/org.guestnet1.conf")
}

/// A running private bus; killed on drop.
pub struct Bus {
    child: Child,
    address: String,
    socket: PathBuf,
    log: PathBuf,
    // Last, so the directory goes after the daemon is dead.
    dir: tempfile::TempDir,
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// What a test's bus has beyond the standard config.
#[derive(Clone, Debug, Default)]
pub struct BusOptions {
    /// More policy files, `<include>`d after the project's own (e.g. polkit's
    /// `/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf`, so a
    /// polkitd on the test's bus may own its name and be called).
    pub includes: Vec<PathBuf>,
}

fn config(socket: &Path, policy: &Path, includes: &[PathBuf]) -> String {
    let extra: String = includes
        .iter()
        .map(|p| {
            format!(
                "  <include>{}</include>\n",
                xml_escape(&p.to_string_lossy())
            )
        })
        .collect();
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<!-- A test's private system-like bus (after Debian's system.conf). -->
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path={socket}</listen>

  <policy context="default">
    <allow user="*"/>

    <deny own="*"/>
    <deny send_type="method_call"/>

    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>

    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>

    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus" />
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.DBus.Debug.Stats"/>
  </policy>

  <policy user="root">
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>

  <!-- The project's shipped policy, as installed into system.d. -->
  <include>{policy}</include>
{extra}</busconfig>
"#,
        socket = xml_escape(&socket.to_string_lossy()),
        policy = xml_escape(&policy.to_string_lossy()),
    )
}

impl Bus {
    /// Starts the daemon and waits (up to 10 s) until its socket accepts
    /// connections.
    pub fn start() -> Bus {
        Self::start_with(&BusOptions::default())
    }

    /// Like [`Bus::start`], with `options`.
    pub fn start_with(options: &BusOptions) -> Bus {
        for p in &options.includes {
            assert!(
                p.is_file(),
                "bus policy to include is missing: {}",
                p.display()
            );
        }
        let policy = policy_file();
        assert!(
            policy.is_file(),
            "the project's bus policy is missing: {}",
            policy.display()
        );
        let policy = policy.canonicalize().expect("canonical policy path");
        let dir = tempfile::Builder::new()
            .prefix("gnt-bus-")
            .tempdir()
            .expect("temp dir for the bus");
        // Readable by everyone, so tests can also connect as an unprivileged uid.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod bus dir");
        let socket = dir.path().join("bus");
        let conf = dir.path().join("bus.conf");
        fs::write(&conf, config(&socket, &policy, &options.includes)).expect("write bus.conf");
        let log = dir.path().join("dbus-daemon.log");
        let logf = fs::File::create(&log).expect("create bus log");
        let args = [
            "dbus-daemon".to_owned(),
            format!("--config-file={}", conf.display()),
            "--nofork".to_owned(),
            "--nopidfile".to_owned(),
            "--nosyslog".to_owned(),
        ];
        let child = Command::new(&args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup log"))
            .stderr(logf)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", cmd::show(&args)));
        let address = format!("unix:path={}", socket.display());
        let mut bus = Bus {
            child,
            address,
            socket,
            log,
            dir,
        };
        bus.wait_ready();
        bus
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "dbus-daemon exited ({status}) before listening\n--- its log ---\n{}",
                    cmd::tail(&self.log, 40)
                );
            }
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "dbus-daemon did not listen on {} within 10 s\n--- its log ---\n{}",
                    self.socket.display(),
                    cmd::tail(&self.log, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The address clients use, `unix:path=...`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The temporary directory holding the socket, config and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The daemon's own log (stdout and stderr).
    pub fn log_tail(&self, lines: usize) -> String {
        cmd::tail(&self.log, lines)
    }

    /// A busctl client of this bus talking to `destination`.
    pub fn busctl(&self, destination: &str) -> Busctl {
        Busctl::new(&self.address, destination)
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
