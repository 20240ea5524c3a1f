//! guestnet's firewall: one nftables table, `inet guestnet`, with its small
//! companion `bridge guestnet` (DHCP requests policed per bridge port and
//! marked with it, see `dhcp/port.rs`). The tables are a fixed skeleton
//! ([`skeleton`]: the hooks, and one verdict map per pass keyed by bridge)
//! made once, when the first network with rules comes, and deleted when the
//! last one goes. Each network owns its chains and map elements
//! ([`part`], rendered from its policy alone, pure); a start, an update or
//! a stop writes that network's part only ([`teardown`] then [`part`]), in
//! one atomic `nft` batch that names no other network's objects, so its
//! cost does not grow with the number of networks. No other table is ever
//! read, flushed or edited (but for guestnet's own rules in Docker's
//! DOCKER-USER chain).
//!
//! The backend is a value, [`Firewall`], made once by main and handed to the
//! networks and to its guard: it runs `nft` and remembers what it must
//! between runs; the guard reads the kernel's announcements on a netlink
//! socket of its own ([`nfnetlink`]). Nothing here is process-wide;
//! firewalld's part is [`firewalld::Firewalld`], likewise a value.

use std::fmt::Write as _;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

pub mod firewalld;
pub mod nfnetlink;
mod render;

pub use render::{
    drop_tables, has_tables, part, render, skeleton, teardown, HostInput, NetworkRules, Rules,
};

pub const TABLE: &str = "guestnet";

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("cannot run nft: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("nft refused the batch: {0}")]
    Refused(String),
}

/// Docker's chain for the rules of other software (with iptables-nft it
/// lives in `table ip filter`). Docker's forward chain has a drop policy and
/// jumps here first; an accept in guestnet's own table cannot override a
/// drop in another table, so where this chain exists guestnet puts its
/// accepts for nat and routed guests here, tagged with its comments, and
/// touches nothing else of Docker's.
const DOCKER_USER_TABLE: &str = "filter";
const DOCKER_USER_CHAIN: &str = "DOCKER-USER";

/// The rules guestnet wants in DOCKER-USER, by unique comment: for each
/// network that sends out, its guests' traffic out; for each that sends
/// or takes anything, what goes in to it (replies, forwarded ports, or
/// everything when it takes connections from anywhere).
fn docker_user_rules(networks: &[NetworkRules]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for n in networks {
        let Some(p) = &n.policy else { continue };
        if !p.sends_out() && !p.takes_inbound() {
            continue;
        }
        let br = n.bridge.as_str();
        let subnets: Vec<String> = p.guests.iter().map(|g| g.trunc().to_string()).collect();
        let subnet = match subnets.as_slice() {
            [one] => one.clone(),
            _ => format!("{{ {} }}", subnets.join(", ")),
        };
        let tag = |dir: &str| format!("guestnet:{}:{dir}", n.network);
        if p.sends_out() {
            out.push((
                tag("out"),
                format!(
                    "iifname \"{br}\" ip saddr {subnet} accept comment \"{}\"",
                    tag("out")
                ),
            ));
        }
        // Docker's chain only must not drop what guestnet's own table
        // accepts; the verdicts stay with guestnet's table.
        let inbound = if p.takes_inbound() {
            ""
        } else {
            "ct state established,related "
        };
        out.push((
            tag("in"),
            format!(
                "oifname \"{br}\" ip daddr {subnet} {inbound}accept comment \"{}\"",
                tag("in")
            ),
        ));
    }
    out
}

/// The nft commands that make DOCKER-USER, which now holds guestnet's
/// rules `existing` as (handle, comment), hold exactly `wanted` (from
/// [`docker_user_rules`]); "" when it already does.
fn docker_user_diff(existing: &[(u64, String)], wanted: &[(String, String)]) -> String {
    let mut have: Vec<&str> = existing.iter().map(|(_, c)| c.as_str()).collect();
    let mut want: Vec<&str> = wanted.iter().map(|(c, _)| c.as_str()).collect();
    have.sort_unstable();
    want.sort_unstable();
    if have == want {
        return String::new();
    }
    let mut batch = String::new();
    for (handle, _) in existing {
        let _ = writeln!(
            batch,
            "delete rule ip {DOCKER_USER_TABLE} {DOCKER_USER_CHAIN} handle {handle}"
        );
    }
    for (_, rule) in wanted.iter().rev() {
        let _ = writeln!(
            batch,
            "insert rule ip {DOCKER_USER_TABLE} {DOCKER_USER_CHAIN} {rule}"
        );
    }
    batch
}

/// guestnet's rules in `nft -j -a list chain` output, as (handle, comment).
fn guestnet_rules_listed(json: &serde_json::Value) -> Option<Vec<(u64, String)>> {
    let rules = json["nftables"]
        .as_array()?
        .iter()
        .filter_map(|item| {
            let rule = item.get("rule")?;
            let comment = rule["comment"].as_str()?;
            comment
                .starts_with("guestnet:")
                .then(|| (rule["handle"].as_u64(), comment.to_owned()))
                .and_then(|(h, c)| h.map(|h| (h, c)))
        })
        .collect();
    Some(rules)
}

/// What a table holds, for comparing: how many rules each (chain, comment)
/// has. nft batches are all-or-nothing, so this tells which batch is in
/// the kernel.
pub type Fingerprint = std::collections::BTreeMap<(String, String), usize>;

/// The fingerprint of a batch made by [`render`], [`skeleton`] or
/// [`part`]: its rules by (chain, comment), and its set and map elements
/// as ("@set", "key") or ("@map", "key:chain").
pub fn batch_fingerprint(batch: &str) -> Fingerprint {
    let mut out = Fingerprint::new();
    let mut chain = String::new();
    for line in batch.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("chain ") {
            chain = rest.split_whitespace().next().unwrap_or("").to_owned();
        } else if let Some(rest) = line.strip_prefix(&format!("add element inet {TABLE} ")) {
            let Some((set, elem)) = rest.split_once(" { ") else {
                continue;
            };
            let elem = elem.trim_end_matches(" }");
            let key = match elem.split_once(" : jump ") {
                Some((k, c)) => format!("{}:{c}", k.trim_matches('"')),
                None => elem.trim_matches('"').to_owned(),
            };
            *out.entry((format!("@{set}"), key)).or_default() += 1;
        } else if let Some((_, c)) = line.rsplit_once("comment \"") {
            let comment = c.trim_end_matches('"').to_owned();
            *out.entry((chain.clone(), comment)).or_default() += 1;
        }
    }
    out
}

/// The entries of `fp` that are network `network`'s, with bridge
/// `bridge`: its rules (by their comment) and the elements keyed by its
/// bridge.
pub fn network_fingerprint(fp: &Fingerprint, network: &str, bridge: &str) -> Fingerprint {
    let tag = format!("guestnet:{network}");
    let keyed = format!("{bridge}:");
    fp.iter()
        .filter(|((place, what), _)| {
            if place.starts_with('@') {
                what == bridge || what.starts_with(&keyed)
            } else {
                *what == tag
            }
        })
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// The fingerprint of a table in `nft -j list table` output.
fn listed_fingerprint(json: &serde_json::Value) -> Fingerprint {
    let mut out = Fingerprint::new();
    for item in json["nftables"].as_array().into_iter().flatten() {
        let rule = &item["rule"];
        if let (Some(chain), Some(comment)) = (rule["chain"].as_str(), rule["comment"].as_str()) {
            *out.entry((chain.to_owned(), comment.to_owned()))
                .or_default() += 1;
        }
        let set = item.get("set").or_else(|| item.get("map"));
        let (Some(set), Some(name)) = (set, set.and_then(|s| s["name"].as_str())) else {
            continue;
        };
        for elem in set["elem"].as_array().into_iter().flatten() {
            let key = match elem {
                serde_json::Value::String(k) => k.clone(),
                serde_json::Value::Array(kv) => match (
                    kv.first().and_then(|k| k.as_str()),
                    kv.get(1).and_then(|v| v["jump"]["target"].as_str()),
                ) {
                    (Some(k), Some(c)) => format!("{k}:{c}"),
                    _ => continue,
                },
                _ => continue,
            };
            *out.entry((format!("@{name}"), key)).or_default() += 1;
        }
    }
    out
}

/// guestnet's nftables backend: the one way guestnetd runs `nft`, with
/// what it must remember between runs. Made once (in main) and handed to
/// whoever changes or watches the firewall, so a signature shows who
/// touches it. Its shared parts are behind a std mutex that is never held
/// across an `.await`.
#[derive(Debug)]
pub struct Firewall {
    /// The nft program.
    program: std::path::PathBuf,
    known: std::sync::Mutex<Known>,
}

impl Default for Firewall {
    fn default() -> Self {
        Self::new()
    }
}

impl Firewall {
    /// The firewall run by `nft` from `PATH`.
    pub fn new() -> Self {
        Self::with_program("nft")
    }

    /// The firewall run by the nft program at `program`.
    pub fn with_program(program: impl Into<std::path::PathBuf>) -> Self {
        Self {
            program: program.into(),
            known: std::sync::Mutex::default(),
        }
    }

    fn nft(&self) -> tokio::process::Command {
        tokio::process::Command::new(&self.program)
    }

    /// The record; the lock is only ever held for a few field updates.
    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one nft batch; all of it applies or none.
    pub async fn run(&self, batch: &str) -> Result<(), FirewallError> {
        let child = self
            .nft()
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(FirewallError::Spawn)?;
        let pid = child.id().unwrap_or_default();
        self.known().started(pid, Instant::now());
        let ran = feed_and_wait(child, batch).await;
        self.known().exited(pid, Instant::now());
        ran
    }

    /// The nft commands that make DOCKER-USER hold exactly guestnet's
    /// wanted rules for `networks`, or "" when it already does or has no
    /// such chain.
    /// `networks` is only called when the chain exists.
    pub async fn docker_user_batch(&self, networks: impl FnOnce() -> Vec<NetworkRules>) -> String {
        match self.docker_user_existing().await {
            Some(existing) => docker_user_diff(&existing, &docker_user_rules(&networks())),
            None => String::new(),
        }
    }

    /// guestnet's rules now in DOCKER-USER as (handle, comment), or `None`
    /// when there is no such chain. While the guard watches, a chain known
    /// to be absent is not listed again (one `nft` process less per
    /// change) until the guard sees Docker's table change.
    async fn docker_user_existing(&self) -> Option<Vec<(u64, String)>> {
        if self.known().docker_user_known_absent() {
            return None;
        }
        let listed = self.list_docker_user().await;
        self.known().set_docker_user_present(listed.is_some());
        listed
    }

    async fn list_docker_user(&self) -> Option<Vec<(u64, String)>> {
        let out = self
            .nft()
            .args([
                "-j",
                "-a",
                "list",
                "chain",
                "ip",
                DOCKER_USER_TABLE,
                DOCKER_USER_CHAIN,
            ])
            .stderr(Stdio::null())
            .output()
            .await
            .ok()?;
        if !out.status.success() {
            return None;
        }
        guestnet_rules_listed(&serde_json::from_slice(&out.stdout).ok()?)
    }

    /// The fingerprint of `table inet guestnet` as the kernel has it; empty
    /// when there is no such table.
    pub async fn kernel_fingerprint(&self) -> Fingerprint {
        let mut out = Fingerprint::new();
        for family in ["inet", "bridge"] {
            let Ok(o) = self
                .nft()
                .args(["-j", "list", "table", family, TABLE])
                .stderr(Stdio::null())
                .output()
                .await
            else {
                continue;
            };
            if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&o.stdout) {
                out.extend(listed_fingerprint(&json));
            }
        }
        out
    }

    /// Whether guestnet's tables (`inet guestnet`, `bridge guestnet`) are
    /// both in the kernel.
    pub async fn table_exists(&self) -> bool {
        for family in ["inet", "bridge"] {
            let there = self
                .nft()
                .args(["list", "table", family, TABLE])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .is_ok_and(|s| s.success());
            if !there {
                return false;
            }
        }
        true
    }

    /// Watches nftables (the kernel's NFNLGRP_NFTABLES announcements, on a
    /// netlink socket of guestnetd's own: pushed, never polled, no process)
    /// for the deletion of guestnet's tables and for changes of Docker's
    /// DOCKER-USER chain (Docker starting after guestnet, or flushing it),
    /// and calls `restore` shortly after each. Each transaction ends with
    /// the pid of the process that made it; transactions of this
    /// firewall's own `nft` processes ([`Known`]) are passed over (the
    /// last network's stop deletes the tables).
    pub fn guard<F, Fut>(
        self: &Arc<Self>,
        restore: F,
    ) -> std::io::Result<tokio::task::JoinHandle<()>>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        use netlink_sys::AsyncSocketExt;
        let socket = nfnetlink::subscribe_async()?;
        self.known().set_watching(true);
        let me = Arc::clone(self);
        Ok(tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            // Whether the transaction being announced touched what we guard.
            let mut touched = false;
            loop {
                buf.clear();
                match socket.recv(&mut buf).await {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        // Announcements were lost: look, to be safe.
                        touched = false;
                        me.known().forget_docker_user();
                        restore().await;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!("reading nftables announcements: {e}");
                        break;
                    }
                }
                for event in nfnetlink::parse(&buf) {
                    if let nfnetlink::Event::Generation { pid } = event {
                        if std::mem::take(&mut touched) {
                            if pid.is_some_and(|pid| me.known().is_ours(pid)) {
                                continue;
                            }
                            tracing::debug!("nftables: someone else's change (process {pid:?})");
                            // Let a burst of transactions (Docker's rules) settle.
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            restore().await;
                        }
                        continue;
                    }
                    if event.table() == Some((nfnetlink::NFPROTO_IPV4, DOCKER_USER_TABLE)) {
                        // Docker's table changed: its chain may have come or gone.
                        me.known().forget_docker_user();
                    }
                    touched |= guarded(&event);
                }
            }
            me.known().set_watching(false);
            tracing::warn!(
                "nftables announcements ended; a deleted firewall table will not be noticed"
            );
        }))
    }
}

/// Whether an announcement is the deletion of guestnet's tables, a rule
/// leaving DOCKER-USER, or that chain being (re)created.
fn guarded(event: &nfnetlink::Event) -> bool {
    use nfnetlink::{Event, NFPROTO_BRIDGE, NFPROTO_INET, NFPROTO_IPV4};
    match event {
        Event::DeleteTable { family, table } => {
            matches!(*family, NFPROTO_INET | NFPROTO_BRIDGE) && table == TABLE
        }
        Event::NewChain {
            family,
            table,
            chain,
        }
        | Event::DeleteRule {
            family,
            table,
            chain,
        } => *family == NFPROTO_IPV4 && table == DOCKER_USER_TABLE && chain == DOCKER_USER_CHAIN,
        _ => false,
    }
}

/// A pid is remembered this long after its process exits: the monitor may
/// print the transaction after that, and a pid is not soon reused.
const REMEMBERED_FOR: Duration = Duration::from_secs(5);

/// What a [`Firewall`] knows between runs: which nft processes are its own
/// (so its guard passes over their changes), and what the guard has learnt
/// of Docker's DOCKER-USER chain. Plain data; the times are given.
#[derive(Debug, Default)]
struct Known {
    /// Its nft processes: pid, and when it exited.
    processes: Vec<(u32, Option<Instant>)>,
    /// Whether a guard is watching the monitor.
    watching: bool,
    docker_user: DockerUser,
}

/// What is known of Docker's DOCKER-USER chain.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum DockerUser {
    #[default]
    Unknown,
    Absent,
    Present,
}

impl Known {
    /// Called once an nft process is spawned, before it is given its batch.
    fn started(&mut self, pid: u32, now: Instant) {
        self.processes
            .retain(|(_, exited)| exited.is_none_or(|t| now.duration_since(t) < REMEMBERED_FOR));
        self.processes.push((pid, None));
    }

    fn exited(&mut self, pid: u32, now: Instant) {
        if let Some(entry) = self.processes.iter_mut().find(|(q, _)| *q == pid) {
            entry.1 = Some(now);
        }
    }

    fn is_ours(&self, pid: u32) -> bool {
        self.processes.iter().any(|(q, _)| *q == pid)
    }

    fn set_watching(&mut self, on: bool) {
        self.watching = on;
        self.forget_docker_user();
    }

    fn forget_docker_user(&mut self) {
        self.docker_user = DockerUser::Unknown;
    }

    fn set_docker_user_present(&mut self, present: bool) {
        if self.watching {
            self.docker_user = if present {
                DockerUser::Present
            } else {
                DockerUser::Absent
            };
        }
    }

    /// Only trusted while the guard watches: it is what forgets it.
    fn docker_user_known_absent(&self) -> bool {
        self.watching && self.docker_user == DockerUser::Absent
    }
}

async fn feed_and_wait(mut child: tokio::process::Child, batch: &str) -> Result<(), FirewallError> {
    let mut stdin = child.stdin.take().expect("stdin was piped");
    stdin
        .write_all(batch.as_bytes())
        .await
        .map_err(FirewallError::Spawn)?;
    drop(stdin);
    let out = child
        .wait_with_output()
        .await
        .map_err(FirewallError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FirewallError::Refused(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::render::{DHCP_PORTS_COMMENT, DHCP_RATE_COMMENT};
    use super::*;
    use guestnet_mode_api::{FirewallPolicy, IfName};

    fn rules(policy: FirewallPolicy) -> NetworkRules {
        NetworkRules {
            network: "n1".into(),
            bridge: IfName::new("gnbr0").unwrap(),
            policy: Rules::of(&policy, &[]),
            host: HostInput::default(),
        }
    }

    #[test]
    fn the_guard_watches_guestnets_tables_and_docker_user_only() {
        use nfnetlink::{Event, NFPROTO_BRIDGE, NFPROTO_INET, NFPROTO_IPV4};
        let del = |family, table: &str| Event::DeleteTable {
            family,
            table: table.into(),
        };
        let rule = |family, table: &str, chain: &str| Event::DeleteRule {
            family,
            table: table.into(),
            chain: chain.into(),
        };
        assert!(guarded(&del(NFPROTO_INET, "guestnet")));
        assert!(guarded(&del(NFPROTO_BRIDGE, "guestnet")));
        assert!(!guarded(&del(NFPROTO_IPV4, "filter")));
        assert!(!guarded(&del(NFPROTO_BRIDGE, "filter")));
        assert!(guarded(&rule(NFPROTO_IPV4, "filter", "DOCKER-USER")));
        assert!(!guarded(&rule(NFPROTO_IPV4, "filter", "FORWARD")));
        assert!(guarded(&Event::NewChain {
            family: NFPROTO_IPV4,
            table: "filter".into(),
            chain: "DOCKER-USER".into()
        }));
        assert!(!guarded(&Event::Other {
            family: NFPROTO_INET,
            table: "guestnet".into()
        }));
        assert!(!guarded(&Event::Generation { pid: Some(1) }));
    }

    #[test]
    fn own_nft_processes_are_known_until_a_while_after_they_exit() {
        let t0 = Instant::now();
        let mut k = Known::default();
        k.started(100, t0);
        assert!(k.is_ours(100) && !k.is_ours(101));
        k.exited(100, t0);
        // The monitor may print the transaction after the process exited.
        k.started(101, t0 + Duration::from_secs(1));
        assert!(k.is_ours(100) && k.is_ours(101));
        // Long gone processes are forgotten; running ones never are.
        k.started(102, t0 + REMEMBERED_FOR + Duration::from_secs(1));
        assert!(!k.is_ours(100) && k.is_ours(101) && k.is_ours(102));
    }

    #[test]
    fn docker_users_absence_is_trusted_only_while_a_guard_watches() {
        let mut k = Known::default();
        k.set_docker_user_present(false);
        assert!(!k.docker_user_known_absent(), "nobody would notice it come");
        k.set_watching(true);
        k.set_docker_user_present(false);
        assert!(k.docker_user_known_absent());
        k.forget_docker_user(); // Docker's table changed
        assert!(!k.docker_user_known_absent());
        k.set_docker_user_present(false);
        k.set_watching(false);
        assert!(!k.docker_user_known_absent());
    }

    #[test]
    fn two_firewall_values_share_nothing() {
        let (a, b) = (Firewall::new(), Firewall::new());
        a.known().started(4242, Instant::now());
        assert!(a.known().is_ours(4242));
        assert!(!b.known().is_ours(4242));
    }

    #[test]
    fn docker_user_is_rewritten_only_when_its_rules_differ() {
        let nets = [rules(FirewallPolicy::Routed {
            subnet: "10.1.2.0/24".parse().unwrap(),
        })];
        let wanted = docker_user_rules(&nets);
        let tags: Vec<&str> = wanted.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(tags, ["guestnet:n1:out", "guestnet:n1:in"]);
        let existing = vec![(8, "guestnet:n1:in".into()), (7, "guestnet:n1:out".into())];
        assert_eq!(docker_user_diff(&existing, &wanted), "");
        let stale = vec![(7, "guestnet:old:out".to_owned())];
        let batch = docker_user_diff(&stale, &wanted);
        let lines: Vec<&str> = batch.lines().collect();
        assert_eq!(lines[0], "delete rule ip filter DOCKER-USER handle 7");
        // Inserted last first, so they end up in the wanted order.
        assert!(lines[1].starts_with("insert rule ip filter DOCKER-USER oifname \"gnbr0\""));
        assert!(lines[2].starts_with("insert rule ip filter DOCKER-USER iifname \"gnbr0\""));
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn the_kernels_listing_fingerprints_like_the_batch() {
        let n = rules(FirewallPolicy::Isolated {
            subnet: "10.1.2.0/24".parse().unwrap(),
        });
        let batch = render(std::slice::from_ref(&n));
        let rule = |chain: &str, handle: u64, comment: &str| {
            serde_json::json!({"rule": {"family": "inet", "table": TABLE, "chain": chain,
                "handle": handle, "comment": comment, "expr": []}})
        };
        let jump = |k: &str, c: &str| serde_json::json!([k, {"jump": {"target": c}}]);
        let listed = serde_json::json!({"nftables": [
            {"metainfo": {"json_schema_version": 1}},
            {"table": {"family": "inet", "name": TABLE, "handle": 1}},
            {"set": {"family": "inet", "name": "bridges", "table": TABLE, "elem": ["gnbr0"]}},
            {"map": {"family": "inet", "name": "pass1", "table": TABLE, "map": "verdict",
                "elem": [jump("gnbr0", "net_n1_self")]}},
            {"map": {"family": "inet", "name": "deny_out", "table": TABLE, "map": "verdict",
                "elem": [jump("gnbr0", "net_n1_deny_out")]}},
            {"map": {"family": "inet", "name": "deny_in", "table": TABLE, "map": "verdict",
                "elem": [jump("gnbr0", "net_n1_deny_in")]}},
            {"map": {"family": "inet", "name": "host_in", "table": TABLE, "map": "verdict",
                "elem": [jump("gnbr0", "net_n1_host")]}},
            {"chain": {"family": "inet", "table": TABLE, "name": "forward", "handle": 1}},
            rule("forward", 2, "guestnet"), rule("forward", 3, "guestnet"),
            rule("forward", 4, "guestnet"), rule("forward", 5, "guestnet"),
            rule("forward", 6, "guestnet"),
            rule("input", 7, "guestnet"),
            rule("net_n1_self", 8, "guestnet:n1"),
            rule("net_n1_deny_out", 9, "guestnet:n1"),
            rule("net_n1_deny_in", 10, "guestnet:n1"),
            rule("net_n1_host", 11, "guestnet:n1"), rule("net_n1_host", 12, "guestnet:n1"),
            rule("net_n1_host", 13, "guestnet:n1"), rule("net_n1_host", 14, "guestnet:n1"),
            rule("net_n1_host", 15, "guestnet:n1"),
        ]});
        let bridge = serde_json::json!({"nftables": [
            {"rule": {"family": "bridge", "table": TABLE, "chain": "dhcp_police",
                "handle": 3, "comment": DHCP_RATE_COMMENT, "expr": []}},
            {"rule": {"family": "bridge", "table": TABLE, "chain": "dhcp_ports",
                "handle": 5, "comment": DHCP_PORTS_COMMENT, "expr": []}},
        ]});
        let mut kernel = listed_fingerprint(&listed);
        kernel.extend(listed_fingerprint(&bridge));
        assert_eq!(kernel, batch_fingerprint(&batch));
        // The network's own share, as its part alone says.
        assert_eq!(
            network_fingerprint(&kernel, "n1", "gnbr0"),
            batch_fingerprint(&part(&n))
        );
        let handles = guestnet_rules_listed(&listed).unwrap();
        assert_eq!(handles.len(), 8);
        assert_eq!(handles[0], (8, "guestnet:n1".to_owned()));
    }

    #[test]
    fn no_rules_means_no_table() {
        let batch = render(&[rules(FirewallPolicy::None)]);
        assert_eq!(
            batch,
            "table inet guestnet {}\ndelete table inet guestnet\n\
             table bridge guestnet {}\ndelete table bridge guestnet\n"
        );
        assert!(!has_tables(&batch));
        let batch = render(&[rules(FirewallPolicy::Isolated {
            subnet: "10.1.2.0/24".parse().unwrap(),
        })]);
        assert!(has_tables(&batch));
        assert!(batch.contains(crate::dhcp::port::MARK_RULE));
    }

    #[test]
    fn nat_masquerades_and_refuses_inbound() {
        let batch = render(&[rules(FirewallPolicy::Nat {
            subnet: "10.1.2.0/24".parse().unwrap(),
            uplink: Some(IfName::new("eth0").unwrap()),
        })]);
        assert!(batch
            .contains("oifname \"eth0\" ip saddr 10.1.2.0/24 ip daddr != 10.1.2.0/24 masquerade"));
        assert!(batch.contains(
            "oifname \"gnbr0\" ip daddr 10.1.2.0/24 ct state established,related accept"
        ));
        assert!(batch.contains("oifname \"gnbr0\" reject"));
        assert!(!batch.contains("oifname \"gnbr0\" ip daddr 10.1.2.0/24 accept"));
    }

    fn named(network: &str, bridge: &str, policy: FirewallPolicy) -> NetworkRules {
        NetworkRules {
            network: network.into(),
            bridge: IfName::new(bridge).unwrap(),
            policy: Rules::of(&policy, &[]),
            host: HostInput::default(),
        }
    }

    /// The forward rules of every order of three networks hold the same
    /// passes: each refusal of one network comes before every accept of
    /// another that could match the same packet.
    #[test]
    fn no_verdict_depends_on_the_order_of_the_networks() {
        let nat = named(
            "a",
            "gnbrn",
            FirewallPolicy::Nat {
                subnet: "10.1.1.0/24".parse().unwrap(),
                uplink: Some(IfName::new("eth0").unwrap()),
            },
        );
        let routed = named(
            "b",
            "gnbrr",
            FirewallPolicy::Routed {
                subnet: "10.1.2.0/24".parse().unwrap(),
            },
        );
        let isolated = named(
            "c",
            "gnbri",
            FirewallPolicy::Isolated {
                subnet: "10.1.3.0/24".parse().unwrap(),
            },
        );
        let orders = [
            [&nat, &routed, &isolated],
            [&nat, &isolated, &routed],
            [&routed, &nat, &isolated],
            [&routed, &isolated, &nat],
            [&isolated, &nat, &routed],
            [&isolated, &routed, &nat],
        ];
        let alone: Vec<String> = [&nat, &routed, &isolated]
            .into_iter()
            .map(super::part)
            .collect();
        for order in orders {
            let list: Vec<NetworkRules> = order.into_iter().cloned().collect();
            let b = render(&list);
            // Each network's part is the same whoever else is there.
            for a in &alone {
                assert!(b.contains(a.as_str()), "{a} not in\n{b}");
            }
            let pass = |rule: &str, chain: &str| {
                let found = render::tests::chain_of(&b, rule);
                assert_eq!(found, chain, "{rule:?} is in {found}, not {chain}\n{b}");
            };
            // An isolated network refuses in pass 2, before anyone accepts
            // (passes 3 and 4).
            pass("iifname \"gnbri\" reject", "net_c_deny_out");
            pass("oifname \"gnbri\" reject", "net_c_deny_in");
            pass("oifname \"gnbrr\" ip daddr 10.1.2.0/24 accept", "net_b_in");
            pass("iifname \"gnbrr\" ip saddr 10.1.2.0/24 accept", "net_b_out");
            pass(
                "iifname \"gnbrn\" oifname \"eth0\" ip saddr 10.1.1.0/24 accept",
                "net_a_out",
            );
            // Nobody's way out opens a way into a nat network (pass 3
            // refuses first) and a routed network's way in is not closed
            // by a nat network's way out (pass 4 comes after).
            pass("oifname \"gnbrn\" reject", "net_a_in");
            pass("iifname \"gnbrn\" reject", "net_a_out");
            // Each network's guests reach each other, in pass 1.
            for (br, net) in [("gnbrn", "a"), ("gnbrr", "b"), ("gnbri", "c")] {
                pass(
                    &format!("iifname \"{br}\" oifname \"{br}\" accept"),
                    &format!("net_{net}_self"),
                );
                // Every rule for the host names the bridge its packets
                // come from and is reached by it alone.
                let chain = format!("chain net_{net}_host {{");
                let own: Vec<&str> = b
                    .lines()
                    .skip_while(|l| !l.contains(&chain))
                    .skip(1)
                    .take_while(|l| !l.trim().starts_with('}'))
                    .collect();
                assert_eq!(own.len(), 5, "{b}");
                let prefix = format!("iifname \"{br}\" ");
                let tag = format!("comment \"guestnet:{net}\"");
                assert!(
                    own.iter()
                        .all(|l| l.trim().starts_with(&prefix) && l.ends_with(&tag)),
                    "{b}"
                );
                let elem = format!("host_in {{ \"{br}\" : jump net_{net}_host }}");
                assert!(b.contains(&elem), "{b}");
            }
        }
    }

    #[test]
    fn isolated_forwards_nothing() {
        let batch = render(&[rules(FirewallPolicy::Isolated {
            subnet: "10.1.2.0/24".parse().unwrap(),
        })]);
        assert!(!batch.contains("ip saddr"));
        assert!(!batch.contains("masquerade"));
        assert!(batch.contains("iifname \"gnbr0\" reject"));
    }

    #[test]
    fn guests_reach_the_hosts_dhcp_dns_and_allowed_ports_only() {
        let mut n = rules(FirewallPolicy::Nat {
            subnet: "10.1.2.0/24".parse().unwrap(),
            uplink: None,
        });
        n.host = HostInput {
            addresses: vec!["10.1.2.1".parse().unwrap()],
            dhcp: Some("10.1.2.1".parse().unwrap()),
            dns: Some("10.1.2.1".parse().unwrap()),
            allow: ["tcp/22", "udp/69", "tcp/8000-8080"]
                .iter()
                .map(|p| p.parse().unwrap())
                .collect(),
        };
        let batch = render(&[n.clone()]);
        let input: Vec<&str> = batch
            .lines()
            .skip_while(|l| !l.contains("chain net_n1_host"))
            .skip(1)
            .take_while(|l| !l.trim().starts_with('}'))
            .map(|l| l.trim().trim_end_matches(" comment \"guestnet:n1\""))
            .collect();
        assert_eq!(
            input,
            [
                "iifname \"gnbr0\" ct state established,related accept",
                "iifname \"gnbr0\" meta nfproto ipv4 ip daddr { 255.255.255.255, 10.1.2.1 } udp dport 67 accept",
                "iifname \"gnbr0\" ip daddr 10.1.2.1 udp dport 53 accept",
                "iifname \"gnbr0\" ip daddr 10.1.2.1 tcp dport 53 accept",
                "iifname \"gnbr0\" icmp type echo-request accept",
                "iifname \"gnbr0\" icmpv6 type { echo-request, nd-neighbor-solicit, nd-neighbor-advert } accept",
                "iifname \"gnbr0\" ip daddr { 10.1.2.1 } tcp dport { 22, 8000-8080 } accept",
                "iifname \"gnbr0\" ip daddr { 10.1.2.1 } udp dport { 69 } accept",
                "iifname \"gnbr0\" meta l4proto tcp reject with tcp reset",
                "iifname \"gnbr0\" reject with icmpx admin-prohibited",
            ]
        );
        // Without DHCP, DNS or ports, only replies, pings and refusals.
        n.host = HostInput::default();
        let batch = render(&[n]);
        // (The bridge table's DHCP port marking is shared, not this input.)
        let input: String = batch
            .lines()
            .skip_while(|l| !l.contains("chain net_n1_host"))
            .take_while(|l| !l.trim().starts_with('}'))
            .collect();
        assert!(!input.contains("dport"), "{batch}");
        assert!(batch.contains("iifname \"gnbr0\" reject with icmpx admin-prohibited"));
        // A bridged network has no rules at all, so no input policy.
        assert!(!render(&[rules(FirewallPolicy::None)]).contains("input"));
    }
}
