//! An upstream DNS server for the tests: dnsmasq in one of the world's
//! namespaces (usually the `lan` machine), answering a few names of its own
//! and logging every query it gets.
//!
//! It reads no file of the machine's: `--conf-file=/dev/null`, `--no-resolv`,
//! `--no-hosts`, `--leasefile-ro`, no DHCP; it listens only on the address
//! given (`--listen-address` with `--bind-interfaces`), keeps its pid file and
//! query log in a temporary directory, and is killed on drop.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cmd;
use crate::dig;
use crate::world::World;

/// A running dnsmasq.
pub struct Upstream {
    child: Option<Child>,
    addr: String,
    log: PathBuf,
    stderr: PathBuf,
    // Last, so the directory goes after the process is dead.
    dir: tempfile::TempDir,
}

impl Upstream {
    /// Starts dnsmasq in `ns`, listening on `addr` port 53, with A (and
    /// PTR) records `records` (name, address); waits until it answers the
    /// first of them (10 s at most).
    pub fn start(world: &World, ns: &str, addr: &str, records: &[(&str, &str)]) -> Upstream {
        assert!(
            world.owns(ns),
            "dnsmasq must run in one of the test's own namespaces, not {ns:?}"
        );
        assert!(!records.is_empty(), "give the upstream at least one record");
        let dir = tempfile::Builder::new()
            .prefix("gnt-upstream-")
            .tempdir()
            .expect("temp dir for dnsmasq");
        let log = dir.path().join("queries.log");
        let stderr = dir.path().join("stderr");
        let mut args = vec![
            "ip".to_owned(),
            "netns".to_owned(),
            "exec".to_owned(),
            ns.to_owned(),
            "dnsmasq".to_owned(),
            "--keep-in-foreground".to_owned(),
            "--conf-file=/dev/null".to_owned(),
            format!("--pid-file={}", dir.path().join("pid").display()),
            "--no-resolv".to_owned(),
            "--no-hosts".to_owned(),
            "--leasefile-ro".to_owned(),
            "--no-ping".to_owned(),
            format!("--listen-address={addr}"),
            "--bind-interfaces".to_owned(),
            "--port=53".to_owned(),
            "--user=root".to_owned(),
            "--group=root".to_owned(),
            "--log-queries".to_owned(),
            format!("--log-facility={}", log.display()),
        ];
        for (name, ip) in records {
            args.push(format!("--host-record={name},{ip}"));
        }
        let errf = fs::File::create(&stderr).expect("create dnsmasq stderr file");
        let child = Command::new(&args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(errf.try_clone().expect("dup"))
            .stderr(errf)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", cmd::show(&args)));
        let mut up = Upstream {
            child: Some(child),
            addr: addr.to_owned(),
            log,
            stderr,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(c) = up.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    up.child = None;
                    panic!(
                        "dnsmasq exited ({status}): {}\n{}",
                        cmd::show(&args),
                        fs::read_to_string(&up.stderr).unwrap_or_default()
                    );
                }
            }
            let r = dig::query(world, ns, addr, &[records[0].0, "A"]);
            if r.is("NOERROR") {
                break;
            }
            if Instant::now() > deadline {
                panic!("dnsmasq on {addr} in {ns} does not answer within 10 s: {r}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        up
    }

    /// The address it listens on.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Its query log.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// True if a query for `name` reached it (its log has `query[...] name`).
    pub fn saw_query(&self, name: &str) -> bool {
        let needle = format!("] {} from", name.trim_end_matches('.'));
        self.log()
            .lines()
            .any(|l| l.contains("query[") && l.contains(&needle))
    }

    /// The temporary directory of this dnsmasq.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            cmd::kill_group(&mut child);
        }
    }
}
