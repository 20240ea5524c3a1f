//! Users and groups of the test's own: a tap's owner, a polkit rule's
//! group and its members.
//!
//! Every name is `gntu<pid>-<kind><n>` ([`crate::left_by_gone_process`]):
//! a user or group is removed on drop, also when the test panics, and the
//! ones left by a test process killed outright are removed by the next
//! process that makes one.

use std::fs;
use std::time::Duration;

use crate::cmd;

/// The prefix of every user and group made here.
const PREFIX: &str = "gntu";

/// Runs a command that edits /etc/passwd or /etc/group, trying again while
/// another process (a parallel test) holds their lock.
fn run_shadow_tool<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> std::process::Output {
    let mut out = cmd::run(args);
    for _ in 0..50 {
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !err.contains("lock") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        out = cmd::run(args);
    }
    out
}

/// Like [`run_shadow_tool`], and panics unless it succeeded.
fn run_shadow_tool_ok<S: AsRef<std::ffi::OsStr>>(args: &[S]) {
    let out = run_shadow_tool(args);
    if !out.status.success() {
        panic!("{}", cmd::failure(args, &out));
    }
}

/// The names in `db` (/etc/passwd or /etc/group).
fn names_in(db: &str) -> Vec<String> {
    fs::read_to_string(db)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(':').next())
        .map(str::to_owned)
        .collect()
}

/// Removes the users and groups of test processes that are gone (killed
/// before their Drop could run); once per process.
fn reap_stale() {
    static REAP: std::sync::Once = std::sync::Once::new();
    REAP.call_once(|| {
        let stale = |n: &String| crate::left_by_gone_process(n, PREFIX);
        for user in names_in("/etc/passwd").iter().filter(|n| stale(n)) {
            eprintln!("removing user {user} left by a test process that is gone");
            let _ = run_shadow_tool(&["userdel", user]);
        }
        for group in names_in("/etc/group").iter().filter(|n| stale(n)) {
            eprintln!("removing group {group} left by a test process that is gone");
            let _ = run_shadow_tool(&["groupdel", group]);
        }
    });
}

/// Deletes a user or group (`userdel`, `groupdel`). Never panics: it runs
/// in Drop.
fn delete(tool: &str, name: &str) {
    let out = run_shadow_tool(&[tool, name]);
    if !out.status.success() {
        eprintln!(
            "warning: {tool} {name} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
}

/// A group of the test's own (groupadd); deleted on drop.
pub struct TestGroup {
    name: String,
}

impl TestGroup {
    /// Makes a group with a unique name.
    pub fn create() -> TestGroup {
        reap_stale();
        let name = crate::unique_name(PREFIX, "g");
        run_shadow_tool_ok(&["groupadd", &name]);
        TestGroup { name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        delete("groupdel", &self.name);
    }
}

/// A user of the test's own (useradd: no home, no login shell, a user
/// group of its own); deleted with that group on drop.
pub struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl TestUser {
    /// Makes a user with a unique name, in no group but its own.
    pub fn new() -> TestUser {
        Self::in_groups(&[])
    }

    /// Makes a user with a unique name, member of `groups` too.
    pub fn in_groups(groups: &[&TestGroup]) -> TestUser {
        reap_stale();
        let name = crate::unique_name(PREFIX, "u");
        let mut args = vec![
            "useradd".to_owned(),
            "--no-create-home".to_owned(),
            "--home-dir".to_owned(),
            "/nonexistent".to_owned(),
            "--shell".to_owned(),
            "/usr/sbin/nologin".to_owned(),
            "--user-group".to_owned(),
        ];
        if !groups.is_empty() {
            args.push("--groups".to_owned());
            args.push(
                groups
                    .iter()
                    .map(|g| g.name())
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        args.push(name.clone());
        let out = run_shadow_tool(&args);
        // Dropped from here on, even if useradd half-failed.
        let mut user = TestUser {
            name,
            uid: 0,
            gid: 0,
        };
        if !out.status.success() {
            panic!("{}", cmd::failure(&args, &out));
        }
        let id = |flag: &str| -> u32 {
            let s = cmd::run_ok(&["id", flag, &user.name]);
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("id {flag} {} printed {s:?}", user.name))
        };
        user.uid = id("-u");
        user.gid = id("-g");
        assert!(
            user.uid != 0 && user.gid != 0,
            "useradd made uid {} gid {}",
            user.uid,
            user.gid
        );
        user
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Its primary group (its own user group).
    pub fn gid(&self) -> u32 {
        self.gid
    }
}

impl Default for TestUser {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        delete("userdel", &self.name);
        // userdel removes the user group where USERGROUPS_ENAB says so;
        // elsewhere it is still there.
        if names_in("/etc/group").contains(&self.name) {
            delete("groupdel", &self.name);
        }
    }
}
