//! A real polkitd on a test's private bus, and the machine-wide things it
//! needs: guestnet's actions installed where polkitd reads them, and a JS
//! rule of the test's own. The users and groups it authorizes are
//! [`crate::users`].
//!
//! polkitd reads its actions and rules only from fixed, machine-wide
//! directories (`/usr/share/polkit-1/actions`, `/etc/polkit-1/rules.d`), so
//! every test that uses them takes [`PolkitLock`] first: a file lock that
//! serializes them across threads and test processes. Every file made here
//! is removed on drop, also when the test panics; ones left
//! by a test process killed outright are removed by the next
//! [`PolkitLock::acquire`].
//!
//! polkitd itself is started as root with `DBUS_SYSTEM_BUS_ADDRESS` naming
//! the test's bus (it drops to the `polkitd` user by itself), inside one of
//! the test's namespaces. The bus must include polkit's own bus policy
//! ([`BUS_POLICY`], see [`crate::bus::BusOptions`]), which lets the
//! `polkitd` user own `org.freedesktop.PolicyKit1` and everyone call it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::busctl::Busctl;
use crate::cmd;
use crate::world::World;

/// The polkit daemon (Debian's polkitd package).
pub const POLKITD: &str = "/usr/lib/polkit-1/polkitd";
/// polkit's bus policy, as the polkitd package installs it.
pub const BUS_POLICY: &str = "/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf";
/// polkit's bus name.
pub const BUS_NAME: &str = "org.freedesktop.PolicyKit1";
/// Where polkitd reads action definitions.
pub const ACTIONS_DIR: &str = "/usr/share/polkit-1/actions";
/// Where polkitd reads the administrator's JS rules.
pub const RULES_DIR: &str = "/etc/polkit-1/rules.d";
/// The lock every test using the directories above holds.
pub const LOCK_FILE: &str = "/tmp/guestnet-polkit-tests.lock";

/// The prefix of the rule files and records made here:
/// `gntpk<pid>-...`, so leftovers of a dead test process can be found.
const PREFIX: &str = "gntpk";

/// The project's polkit actions, as shipped.
pub fn shipped_actions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dbus/data/org.guestnet1.policy")
}

/// True when polkitd is installed.
pub fn available() -> bool {
    Path::new(POLKITD).is_file() && Path::new(BUS_POLICY).is_file()
}

/// An exclusive lock on [`LOCK_FILE`] (flock), held while this lives.
pub struct PolkitLock {
    _file: fs::File,
}

impl PolkitLock {
    /// Waits for the lock (every polkit test holds it from before it
    /// installs anything until everything is removed), then removes what
    /// test processes that no longer exist left behind.
    pub fn acquire() -> PolkitLock {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(LOCK_FILE)
            .unwrap_or_else(|e| panic!("cannot open {LOCK_FILE}: {e}"));
        // Any user may take it after us (a test run as another root-ish uid).
        let _ = fs::set_permissions(LOCK_FILE, fs::Permissions::from_mode(0o666));
        // SAFETY: flock(2) on a descriptor we own; it blocks until granted.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(
            rc,
            0,
            "flock {LOCK_FILE}: {}",
            std::io::Error::last_os_error()
        );
        reap_stale();
        PolkitLock { _file: file }
    }
}

/// Whether `name` (`gntpk<pid>-...`) was made by a process that is gone.
fn is_stale(name: &str) -> bool {
    crate::left_by_gone_process(name, PREFIX)
}

/// Removes the installed files of test processes that are
/// gone (killed before their Drop could run).
fn reap_stale() {
    let Ok(entries) = fs::read_dir(RECORDS_DIR) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".before") || !is_stale(&name) {
            continue;
        }
        let record = e.path();
        let Ok(path) = fs::read_to_string(&record) else {
            continue;
        };
        let path = PathBuf::from(path);
        let before = fs::read(backup_of(&record)).ok();
        eprintln!(
            "{} {} left by a test process that is gone",
            if before.is_some() {
                "restoring"
            } else {
                "removing"
            },
            path.display()
        );
        restore(
            &path,
            before
                .as_deref()
                .map(|c| (c, fs::Permissions::from_mode(0o644))),
        );
        let _ = fs::remove_file(backup_of(&record));
        let _ = fs::remove_file(&record);
    }
}

/// Where each [`InstalledFile`] leaves a record (`gntpk<pid>-f<n>`: the
/// path it installed; `.before` beside it: what was there before), so that
/// the next test process can undo what a killed one installed.
const RECORDS_DIR: &str = "/tmp/guestnet-polkit-tests.installed";

/// A file put into a machine-wide directory; on drop, removed, or the
/// file that was there before put back.
pub struct InstalledFile {
    path: PathBuf,
    before: Option<(Vec<u8>, fs::Permissions)>,
    record: PathBuf,
}

fn backup_of(record: &Path) -> PathBuf {
    record.with_extension("before")
}

/// Removes `path`, or puts `before` back. Never panics: it runs in Drop.
fn restore(path: &Path, before: Option<(&[u8], fs::Permissions)>) {
    let result = match before {
        None => match fs::remove_file(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r,
        },
        Some((contents, perms)) => {
            fs::write(path, contents).and_then(|_| fs::set_permissions(path, perms))
        }
    };
    if let Err(e) = result {
        eprintln!("warning: cannot restore {}: {e}", path.display());
    }
}

impl InstalledFile {
    /// Writes `contents` to `path` (mode 0644).
    pub fn write(path: &Path, contents: &[u8]) -> InstalledFile {
        let before = fs::read(path)
            .ok()
            .map(|c| (c, fs::metadata(path).expect("metadata").permissions()));
        fs::create_dir_all(RECORDS_DIR)
            .unwrap_or_else(|e| panic!("cannot create {RECORDS_DIR}: {e}"));
        let record = Path::new(RECORDS_DIR).join(crate::unique_name(PREFIX, "f"));
        if let Some((old, _)) = &before {
            fs::write(backup_of(&record), old).expect("write the backup record");
        }
        fs::write(&record, path.as_os_str().as_encoded_bytes()).expect("write the record");
        let installed = InstalledFile {
            path: path.to_owned(),
            before,
            record,
        };
        let tmp = path.with_extension("gnt-tmp");
        let mut f = fs::File::create(&tmp)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", tmp.display()));
        f.write_all(contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
        drop(f);
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).expect("chmod");
        // One rename, so polkitd's file monitor never reads half a file.
        if let Err(e) = fs::rename(&tmp, path) {
            let _ = fs::remove_file(&tmp);
            panic!("cannot rename onto {}: {e}", path.display());
        }
        installed
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for InstalledFile {
    fn drop(&mut self) {
        restore(
            &self.path,
            self.before.as_ref().map(|(c, p)| (c.as_slice(), p.clone())),
        );
        let _ = fs::remove_file(backup_of(&self.record));
        let _ = fs::remove_file(&self.record);
    }
}

/// guestnet's shipped actions at `/usr/share/polkit-1/actions/org.guestnet1.policy`
/// while this lives. Hold a [`PolkitLock`] first.
pub fn install_actions(_lock: &PolkitLock) -> InstalledFile {
    let shipped = shipped_actions();
    let contents =
        fs::read(&shipped).unwrap_or_else(|e| panic!("cannot read {}: {e}", shipped.display()));
    InstalledFile::write(
        &Path::new(ACTIONS_DIR).join("org.guestnet1.policy"),
        &contents,
    )
}

/// A JS rule in `/etc/polkit-1/rules.d/49-gntpk<pid>-r<n>.rules` while this
/// lives. Hold a [`PolkitLock`] first.
pub fn install_rule(_lock: &PolkitLock, js: &str) -> InstalledFile {
    let path = Path::new(RULES_DIR).join(format!("49-{}.rules", crate::unique_name(PREFIX, "r")));
    InstalledFile::write(&path, js.as_bytes())
}

/// The JS rule that lets members of `group` perform `action`.
pub fn group_rule(action: &str, group: &str) -> String {
    format!(
        r#"// A guestnet test's rule, removed when the test ends.
polkit.addRule(function(action, subject) {{
    if (action.id == "{action}" && subject.isInGroup("{group}")) {{
        return polkit.Result.YES;
    }}
}});
"#
    )
}

/// A polkitd on a test's bus; killed on drop.
pub struct Polkitd {
    child: Option<Child>,
    log: tempfile::NamedTempFile,
}

impl Polkitd {
    /// Starts polkitd in namespace `ns` of `world` against the bus at
    /// `bus_address` and waits (up to 10 s) until it owns its name.
    pub fn start(world: &World, ns: &str, bus_address: &str) -> Polkitd {
        assert!(
            world.owns(ns),
            "polkitd must run in one of the test's own namespaces, not {ns:?}"
        );
        assert!(
            Path::new(POLKITD).is_file(),
            "{POLKITD} is missing: install the polkitd package (scripts/deps.sh)"
        );
        let log = tempfile::NamedTempFile::new().expect("temp file for polkitd's log");
        let args = ["ip", "netns", "exec", ns, POLKITD, "--no-debug"];
        let child = Command::new(args[0])
            .args(&args[1..])
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus_address)
            .stdin(Stdio::null())
            .stdout(log.reopen().expect("reopen log"))
            .stderr(log.reopen().expect("reopen log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", cmd::show(&args)));
        let mut pk = Polkitd {
            child: Some(child),
            log,
        };
        let busctl = Busctl::new(bus_address, BUS_NAME);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(Ok(Some(status))) = pk.child.as_mut().map(Child::try_wait) {
                pk.child = None;
                panic!(
                    "polkitd exited ({status}) before taking {BUS_NAME}\n--- its log ---\n{}",
                    pk.log_tail(40)
                );
            }
            if busctl.name_has_owner(BUS_NAME) == Ok(true) {
                return pk;
            }
            if Instant::now() > deadline {
                panic!(
                    "polkitd did not take {BUS_NAME} within 10 s\n--- its log ---\n{}",
                    pk.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The pid of polkitd.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What polkitd printed.
    pub fn log_tail(&self, lines: usize) -> String {
        cmd::tail(self.log.path(), lines)
    }
}

impl Drop for Polkitd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- polkitd log (tail) at the panic ---\n{}",
                self.log_tail(40)
            );
        }
    }
}

/// The error polkit's refusal reaches a caller as.
pub const DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";
/// guestnet's polkit actions.
pub const MANAGE: &str = "org.guestnet1.manage-networks";
pub const ATTACH: &str = "org.guestnet1.attach-guests";

/// Panics unless `result` is AccessDenied; returns its message.
#[track_caller]
pub fn expect_denied<T: std::fmt::Debug>(result: Result<T, crate::BusError>, what: &str) -> String {
    match result {
        Err(e) if e.name == DENIED => e.message,
        Err(e) => panic!("{what}: expected {DENIED}, got {e}"),
        Ok(v) => panic!("{what}: expected {DENIED}, but the call succeeded: {v:?}"),
    }
}

/// A lab whose bus lets a polkitd own org.freedesktop.PolicyKit1.
pub fn lab() -> crate::Lab {
    assert!(
        available(),
        "{POLKITD} or {BUS_POLICY} is missing: install the polkitd package (scripts/deps.sh)"
    );
    crate::Lab::with_bus(&crate::bus::BusOptions {
        includes: vec![BUS_POLICY.into()],
    })
}

/// Calls `call` until polkit stops refusing it (polkitd reads new rules a
/// moment after they are installed), for up to 20 s, and returns the first
/// answer that is not AccessDenied, or the last refusal.
pub fn once_granted<T>(
    mut call: impl FnMut() -> Result<T, crate::BusError>,
) -> Result<T, crate::BusError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match call() {
            Err(e) if e.name == DENIED && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}
