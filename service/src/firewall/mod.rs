//! guestnet's firewall: one nftables table, `inet guestnet`, rendered whole
//! from the policies of the active networks and replaced in one atomic `nft`
//! batch. No other table is ever read, flushed or edited.

use guestnet_mode_api::{FirewallPolicy, IfName};
use std::fmt::Write as _;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

pub mod firewalld;

pub const TABLE: &str = "guestnet";

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("cannot run nft: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("nft refused the batch: {0}")]
    Refused(String),
}

/// One active network's part of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRules {
    pub network: String,
    pub bridge: IfName,
    pub policy: FirewallPolicy,
}

/// The nft batch that makes `inet guestnet` hold exactly `networks`' rules
/// (or not exist, when none has any). Creating the table first makes the
/// delete valid whether or not it existed; the batch is all-or-nothing.
pub fn render(networks: &[NetworkRules]) -> String {
    let mut out = format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n");
    let with_rules: Vec<&NetworkRules> = networks
        .iter()
        .filter(|n| n.policy != FirewallPolicy::None)
        .collect();
    if with_rules.is_empty() {
        return out;
    }
    let forward = forward_rules(&with_rules);
    let mut postrouting = String::new();
    for n in with_rules {
        nat_rules(&mut postrouting, n);
    }
    let _ = write!(
        out,
        "table inet {TABLE} {{\n\
         \tchain forward {{\n\t\ttype filter hook forward priority filter; policy accept;\n{forward}\t}}\n\
         \tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n{postrouting}\t}}\n\
         }}\n"
    );
    out
}

/// The forward chain, in four passes over the networks, so that no
/// network's verdict depends on another network's name or place in the
/// list. Every rule names its own network's bridge as the input or the
/// output interface, and a packet has one of each; so within a pass the
/// rules of two networks never match the same packet, and their order
/// does not matter. Only the order of the passes does:
///
/// 1. Guest to guest on one bridge: accepted (seen here when br_netfilter
///    is loaded), in every mode.
/// 2. Isolated networks: everything forwarded from or to their bridges is
///    refused, before any other network's accept can see it.
/// 3. Inbound, by the network the packet goes into: a nat network takes
///    only replies (`established,related`) and refuses the rest; a routed
///    network takes anything addressed to its subnet, and refuses the rest.
/// 4. Outbound, by the network the packet comes from: a nat network lets
///    its subnet out (to its uplink, when it names one), a routed network
///    its subnet; each refuses the rest.
///
/// Refusals are `reject`, as libvirt does, so a sender learns at once
/// rather than timing out. Traffic touching no guestnet bridge with rules
/// (bridged networks: the host is a plain switch; the LAN; the host's own
/// traffic, which is not forwarded) is not matched at all.
///
/// What follows for a guest of the row opening a connection to a guest of
/// the column (a bridged guest is a LAN host):
///
/// | from \ to | nat     | routed  | isolated | bridged |
/// |-----------|---------|---------|----------|---------|
/// | nat       | refused | allowed | refused  | allowed |
/// | routed    | refused | allowed | refused  | allowed |
/// | isolated  | refused | refused | refused  | refused |
/// | bridged   | refused | allowed | refused  | n/a     |
///
/// (Each network's own guests always reach each other: pass 1; the table
/// is between two networks.) A nat guest reaches a routed guest as it
/// would a LAN host: the routed network's inbound accept (pass 3) comes
/// before the nat network's outbound reject (pass 4), so this holds even
/// when the nat network names an uplink, as in libvirt. An isolated guest
/// reaches nothing forwarded, even with a route: unlike libvirt, whose
/// inbound accepts come before an isolated network's rejects, pass 2 comes
/// first.
fn forward_rules(networks: &[&NetworkRules]) -> String {
    let mut out = String::new();
    for n in networks {
        let (br, tag) = (n.bridge.as_str(), comment(&n.network));
        let _ = writeln!(out, "\t\tiifname \"{br}\" oifname \"{br}\" accept {tag}");
    }
    for n in networks {
        if let FirewallPolicy::Isolated { .. } = n.policy {
            let (br, tag) = (n.bridge.as_str(), comment(&n.network));
            let _ = writeln!(out, "\t\tiifname \"{br}\" reject {tag}");
            let _ = writeln!(out, "\t\toifname \"{br}\" reject {tag}");
        }
    }
    for n in networks {
        let (br, tag) = (n.bridge.as_str(), comment(&n.network));
        let accept = match &n.policy {
            FirewallPolicy::Routed { subnet } => format!("ip daddr {subnet} accept"),
            FirewallPolicy::Nat { subnet, .. } => {
                format!("ip daddr {subnet} ct state established,related accept")
            }
            FirewallPolicy::None | FirewallPolicy::Isolated { .. } => continue,
        };
        let _ = writeln!(out, "\t\toifname \"{br}\" {accept} {tag}");
        let _ = writeln!(out, "\t\toifname \"{br}\" reject {tag}");
    }
    for n in networks {
        let (br, tag) = (n.bridge.as_str(), comment(&n.network));
        let accept = match &n.policy {
            FirewallPolicy::Routed { subnet } => format!("ip saddr {subnet} accept"),
            FirewallPolicy::Nat { subnet, uplink } => {
                let out_if = uplink
                    .as_ref()
                    .map(|u| format!("oifname \"{u}\" "))
                    .unwrap_or_default();
                format!("{out_if}ip saddr {subnet} accept")
            }
            FirewallPolicy::None | FirewallPolicy::Isolated { .. } => continue,
        };
        let _ = writeln!(out, "\t\tiifname \"{br}\" {accept} {tag}");
        let _ = writeln!(out, "\t\tiifname \"{br}\" reject {tag}");
    }
    out
}

fn nat_rules(out: &mut String, n: &NetworkRules) {
    let FirewallPolicy::Nat { subnet, uplink } = &n.policy else {
        return;
    };
    let tag = comment(&n.network);
    let out_if = uplink
        .as_ref()
        .map(|u| format!("oifname \"{u}\" "))
        .unwrap_or_else(|| format!("oifname != \"{}\" ", n.bridge));
    // Broadcast and link-local multicast stay untranslated, as libvirt does.
    let _ = writeln!(
        out,
        "\t\tip saddr {subnet} ip daddr {{ 224.0.0.0/24, 255.255.255.255 }} return {tag}"
    );
    let _ = writeln!(
        out,
        "\t\t{out_if}ip saddr {subnet} ip daddr != {subnet} masquerade {tag}"
    );
}

/// A rule comment naming the network; network names are `[A-Za-z0-9_.-]`,
/// so they need no escaping inside the quotes.
fn comment(network: &str) -> String {
    format!("comment \"guestnet:{network}\"")
}

/// Docker's chain for the rules of other software (with iptables-nft it
/// lives in `table ip filter`). Docker's forward chain has a drop policy and
/// jumps here first; an accept in guestnet's own table cannot override a
/// drop in another table, so where this chain exists guestnet puts its
/// accepts for nat and routed guests here, tagged with its comments, and
/// touches nothing else of Docker's.
const DOCKER_USER_TABLE: &str = "filter";
const DOCKER_USER_CHAIN: &str = "DOCKER-USER";

/// The rules guestnet wants in DOCKER-USER, by unique comment.
fn docker_user_rules(networks: &[NetworkRules]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for n in networks {
        let br = n.bridge.as_str();
        let (subnet, inbound) = match &n.policy {
            FirewallPolicy::Nat { subnet, .. } => (subnet, "ct state established,related "),
            FirewallPolicy::Routed { subnet } => (subnet, ""),
            FirewallPolicy::None | FirewallPolicy::Isolated { .. } => continue,
        };
        let tag = |dir: &str| format!("guestnet:{}:{dir}", n.network);
        out.push((
            tag("out"),
            format!(
                "iifname \"{br}\" ip saddr {subnet} accept comment \"{}\"",
                tag("out")
            ),
        ));
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

/// guestnet's rules now in DOCKER-USER as (handle, comment), or `None`
/// when there is no such chain. While the guard watches, a chain known to
/// be absent is not listed again (one `nft` process less per change) until
/// the guard sees Docker's table change.
async fn docker_user_existing() -> Option<Vec<(u64, String)>> {
    if own_changes::docker_user_known_absent() {
        return None;
    }
    let listed = list_docker_user().await;
    own_changes::set_docker_user_present(listed.is_some());
    listed
}

async fn list_docker_user() -> Option<Vec<(u64, String)>> {
    let out = tokio::process::Command::new("nft")
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
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
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

/// The nft commands that make DOCKER-USER hold exactly guestnet's wanted
/// rules, or "" when it already does or has no such chain.
pub async fn docker_user_batch(networks: &[NetworkRules]) -> String {
    let Some(existing) = docker_user_existing().await else {
        return String::new();
    };
    let wanted = docker_user_rules(networks);
    let mut have: Vec<&str> = existing.iter().map(|(_, c)| c.as_str()).collect();
    let mut want: Vec<&str> = wanted.iter().map(|(c, _)| c.as_str()).collect();
    have.sort_unstable();
    want.sort_unstable();
    if have == want {
        return String::new();
    }
    let mut batch = String::new();
    for (handle, _) in &existing {
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

/// What a table holds, for comparing: how many rules each (chain, comment)
/// has. nft batches are all-or-nothing, so this tells which batch is in
/// the kernel.
pub type Fingerprint = std::collections::BTreeMap<(String, String), usize>;

/// The fingerprint of a batch made by [`render`].
pub fn batch_fingerprint(batch: &str) -> Fingerprint {
    let mut out = Fingerprint::new();
    let mut chain = String::new();
    for line in batch.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("chain ") {
            chain = rest.split_whitespace().next().unwrap_or("").to_owned();
        } else if let Some((_, c)) = line.rsplit_once("comment \"") {
            let comment = c.trim_end_matches('"').to_owned();
            *out.entry((chain.clone(), comment)).or_default() += 1;
        }
    }
    out
}

/// The fingerprint of `table inet guestnet` as the kernel has it; empty
/// when there is no such table.
pub async fn kernel_fingerprint() -> Fingerprint {
    let mut out = Fingerprint::new();
    let Ok(o) = tokio::process::Command::new("nft")
        .args(["-j", "list", "table", "inet", TABLE])
        .stderr(Stdio::null())
        .output()
        .await
    else {
        return out;
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&o.stdout) else {
        return out;
    };
    for item in json["nftables"].as_array().into_iter().flatten() {
        let rule = &item["rule"];
        if let (Some(chain), Some(comment)) = (rule["chain"].as_str(), rule["comment"].as_str()) {
            *out.entry((chain.to_owned(), comment.to_owned()))
                .or_default() += 1;
        }
    }
    out
}

/// Whether `table inet guestnet` is in the kernel.
pub async fn table_exists() -> bool {
    tokio::process::Command::new("nft")
        .args(["list", "table", "inet", TABLE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// Watches nftables (`nft monitor`, pushed by the kernel, never polled)
/// for the deletion of guestnet's table and for changes of Docker's
/// DOCKER-USER chain (Docker starting after guestnet, or flushing it), and
/// calls `restore` shortly after each. guestnet's own batches delete its
/// table too (to replace it whole); the monitor ends each transaction
/// with the pid of the process that made it, and transactions of
/// guestnet's own `nft` processes ([`own_changes`]) are passed over.
pub fn guard<F, Fut>(restore: F) -> std::io::Result<tokio::task::JoinHandle<()>>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    use tokio::io::AsyncBufReadExt;
    let mut cmd = tokio::process::Command::new("nft");
    cmd.args(["monitor"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe; it makes the monitor die with
    // guestnetd even when guestnetd is killed outright.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().expect("stdout was piped");
    own_changes::set_watching(true);
    Ok(tokio::spawn(async move {
        let _child = child;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let docker_table = format!("ip {DOCKER_USER_TABLE} ");
        // Whether the transaction being printed touched what we guard.
        let mut touched = false;
        while let Ok(Some(line)) = lines.next_line().await {
            let line = line.trim_start();
            if let Some(maker) = own_changes::transaction_end(line) {
                if std::mem::take(&mut touched) {
                    if maker.is_some_and(own_changes::is_ours) {
                        continue;
                    }
                    tracing::debug!("nft monitor: someone else's change ({line})");
                    // Let a burst of transactions (Docker's rules) settle.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    restore().await;
                }
                continue;
            }
            if line.contains(&docker_table) {
                // Docker's table changed: its chain may have come or gone.
                own_changes::forget_docker_user();
            }
            touched |= guarded(line);
        }
        own_changes::set_watching(false);
        tracing::warn!("nft monitor ended; a deleted firewall table will not be noticed");
    }))
}

/// Whether a monitor line is the deletion of guestnet's table, a rule
/// leaving DOCKER-USER, or that chain being (re)created.
fn guarded(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let (verb, object) = (words.next(), words.next());
    match (verb, object) {
        (Some("delete"), Some("table")) => words.take(2).eq(["inet", TABLE]),
        (Some("add"), Some("chain")) | (Some("delete"), Some("rule")) => {
            words
                .take(3)
                .eq(["ip", DOCKER_USER_TABLE, DOCKER_USER_CHAIN])
        }
        _ => false,
    }
}

/// Which nft processes are guestnet's own, so the guard knows its own
/// changes; and what the guard has learnt of Docker's DOCKER-USER chain.
mod own_changes {
    use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    /// A pid is remembered this long after its process exits: the monitor
    /// may print the transaction after that, and a pid is not soon reused.
    const REMEMBERED_FOR: Duration = Duration::from_secs(5);

    /// guestnet's nft processes: pid, and when it exited.
    fn processes() -> &'static Mutex<Vec<(u32, Option<Instant>)>> {
        static PROCESSES: Mutex<Vec<(u32, Option<Instant>)>> = Mutex::new(Vec::new());
        &PROCESSES
    }

    /// Called once an nft process of guestnet's is spawned, before it is
    /// given its batch.
    pub fn started(pid: u32) {
        let mut p = processes().lock().expect("own nft processes");
        let now = Instant::now();
        p.retain(|(_, exited)| exited.is_none_or(|t| now.duration_since(t) < REMEMBERED_FOR));
        p.push((pid, None));
    }

    pub fn exited(pid: u32) {
        let mut p = processes().lock().expect("own nft processes");
        if let Some(entry) = p.iter_mut().find(|(q, _)| *q == pid) {
            entry.1 = Some(Instant::now());
        }
    }

    pub fn is_ours(pid: u32) -> bool {
        let p = processes().lock().expect("own nft processes");
        p.iter().any(|(q, _)| *q == pid)
    }

    /// For the line that ends a transaction in `nft monitor`'s output (`#
    /// new generation 7 by process 1234 (nft)`): Some(Some(pid)), or
    /// Some(None) when it names no process; None for any other line.
    pub fn transaction_end(line: &str) -> Option<Option<u32>> {
        let rest = line.strip_prefix("# new generation")?;
        Some(
            rest.split_once("by process ")
                .and_then(|(_, p)| p.split_whitespace().next())
                .and_then(|p| p.parse().ok()),
        )
    }

    static WATCHING: AtomicBool = AtomicBool::new(false);
    /// DOCKER-USER: 0 unknown, 1 absent, 2 present.
    static DOCKER_USER: AtomicU8 = AtomicU8::new(0);

    pub fn set_watching(on: bool) {
        WATCHING.store(on, Ordering::SeqCst);
        forget_docker_user();
    }

    pub fn forget_docker_user() {
        DOCKER_USER.store(0, Ordering::SeqCst);
    }

    pub fn set_docker_user_present(present: bool) {
        if WATCHING.load(Ordering::SeqCst) {
            DOCKER_USER.store(if present { 2 } else { 1 }, Ordering::SeqCst);
        }
    }

    /// Only trusted while the guard watches: it is what forgets it.
    pub fn docker_user_known_absent() -> bool {
        WATCHING.load(Ordering::SeqCst) && DOCKER_USER.load(Ordering::SeqCst) == 1
    }
}

/// Runs one nft batch; all of it applies or none.
pub async fn run_nft(batch: &str) -> Result<(), FirewallError> {
    let child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(FirewallError::Spawn)?;
    let pid = child.id().unwrap_or_default();
    own_changes::started(pid);
    let ran = feed_and_wait(child, batch).await;
    own_changes::exited(pid);
    ran
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
    use super::*;

    fn rules(policy: FirewallPolicy) -> NetworkRules {
        NetworkRules {
            network: "n1".into(),
            bridge: IfName::new("gnbr0").unwrap(),
            policy,
        }
    }

    #[test]
    fn the_monitor_names_who_made_each_transaction() {
        assert_eq!(
            own_changes::transaction_end("# new generation 3 by process 2877 (nft)"),
            Some(Some(2877))
        );
        assert_eq!(
            own_changes::transaction_end("# new generation 3"),
            Some(None)
        );
        assert_eq!(
            own_changes::transaction_end("delete table inet guestnet"),
            None
        );
        assert!(guarded("delete table inet guestnet"));
        assert!(guarded("add chain ip filter DOCKER-USER"));
        assert!(guarded("delete rule ip filter DOCKER-USER handle 9"));
        assert!(!guarded("delete table ip filter"));
        assert!(!guarded("add table inet guestnet"));
    }

    #[test]
    fn no_rules_means_no_table() {
        let batch = render(&[rules(FirewallPolicy::None)]);
        assert_eq!(
            batch,
            "table inet guestnet {}\ndelete table inet guestnet\n"
        );
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
            policy,
        }
    }

    /// Where `rule` is in the forward chain of `batch`.
    fn place(batch: &str, rule: &str) -> usize {
        batch
            .lines()
            .position(|l| l.trim().starts_with(rule))
            .unwrap_or_else(|| panic!("no rule {rule:?} in\n{batch}"))
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
        for order in orders {
            let list: Vec<NetworkRules> = order.into_iter().cloned().collect();
            let b = render(&list);
            let before = |first: &str, then: &str| {
                assert!(
                    place(&b, first) < place(&b, then),
                    "{first:?} must come before {then:?} in\n{b}"
                );
            };
            // An isolated network refuses before anyone accepts.
            for accept in [
                "oifname \"gnbrr\" ip daddr 10.1.2.0/24 accept",
                "iifname \"gnbrr\" ip saddr 10.1.2.0/24 accept",
                "iifname \"gnbrn\" oifname \"eth0\" ip saddr 10.1.1.0/24 accept",
            ] {
                before("iifname \"gnbri\" reject", accept);
                before("oifname \"gnbri\" reject", accept);
            }
            // Nobody's way out opens a way into a nat network ...
            before(
                "oifname \"gnbrn\" reject",
                "iifname \"gnbrr\" ip saddr 10.1.2.0/24 accept",
            );
            // ... and a routed network's way in is not closed by a nat
            // network's way out.
            before(
                "oifname \"gnbrr\" ip daddr 10.1.2.0/24 accept",
                "iifname \"gnbrn\" reject",
            );
            // Each network's guests reach each other.
            for br in ["gnbrn", "gnbrr", "gnbri"] {
                before(
                    &format!("iifname \"{br}\" oifname \"{br}\" accept"),
                    "iifname \"gnbri\" reject",
                );
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
}
