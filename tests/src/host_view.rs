//! A snapshot of a namespace's kernel state, to show that something (a
//! restart of guestnetd) re-created nothing: every link with its ifindex,
//! every address and route, and guestnet's nftables table with its rule
//! handles.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::world::World;

/// What a re-creation of anything in a namespace would change: links (with
/// their ifindex), addresses, routes, and guestnet's nftables table with its
/// rule handles.
pub struct HostView {
    pub links: BTreeMap<String, Value>,
    pub addresses: BTreeSet<String>,
    pub routes: BTreeSet<String>,
    pub nft: Value,
    /// An IPv6 address is still in duplicate address detection (its local
    /// route comes when that ends).
    pub tentative: bool,
}

impl HostView {
    /// Reads the view of `ns` now.
    pub fn read(w: &World, ns: &str) -> HostView {
        let links = w
            .ip_json(ns, "-d link show")
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|l| {
                let name = l["ifname"].as_str().unwrap_or_default().to_owned();
                // Not the bridge's timers or counters, which tick on their own.
                let facts = json!({
                    "ifindex": l["ifindex"],
                    "master": l["master"],
                    "mtu": l["mtu"],
                    "address": l["address"],
                    "flags": l["flags"],
                    "operstate": l["operstate"],
                    "ifalias": l["ifalias"],
                    "kind": l["linkinfo"]["info_kind"],
                    "slave_kind": l["linkinfo"]["info_slave_kind"],
                });
                (name, facts)
            })
            .collect();
        let mut addresses = BTreeSet::new();
        let mut tentative = false;
        for l in w.ip_json(ns, "addr show").as_array().into_iter().flatten() {
            for a in l["addr_info"].as_array().into_iter().flatten() {
                tentative |= a["tentative"] == true;
                addresses.insert(format!(
                    "{} {} {}/{} scope {}",
                    l["ifname"], a["family"], a["local"], a["prefixlen"], a["scope"]
                ));
            }
        }
        let mut routes = BTreeSet::new();
        for family in ["-4", "-6"] {
            let v = w.ip_json(ns, &format!("{family} route show table all"));
            for r in v.as_array().into_iter().flatten() {
                routes.insert(format!(
                    "{family} {} {} via {} dev {} proto {} scope {} table {} src {} metric {}",
                    r["type"],
                    r["dst"],
                    r["gateway"],
                    r["dev"],
                    r["protocol"],
                    r["scope"],
                    r["table"],
                    r["prefsrc"],
                    r["metric"]
                ));
            }
        }
        let out = w.exec(
            ns,
            &["nft", "-a", "-j", "list", "table", "inet", "guestnet"],
        );
        let nft = if out.status.success() {
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                panic!(
                    "nft -j printed no JSON ({e}): {}",
                    String::from_utf8_lossy(&out.stdout)
                )
            })
        } else {
            Value::Null
        };
        HostView {
            links,
            addresses,
            routes,
            nft,
            tentative,
        }
    }

    /// The view once it stopped changing by itself (carriers coming up,
    /// IPv6 addresses leaving DAD and their local routes appearing): two
    /// reads 300 ms apart agree; 15 s at most.
    pub fn settled(w: &World, ns: &str) -> HostView {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut view = HostView::read(w, ns);
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let next = HostView::read(w, ns);
            let changes = next.changes_since(&view);
            if changes.is_empty() && !next.tentative {
                return next;
            }
            assert!(
                Instant::now() < deadline,
                "{ns} keeps changing on its own:\n{}",
                changes.join("\n")
            );
            view = next;
        }
    }

    /// What differs from `before`, one line each.
    pub fn changes_since(&self, before: &HostView) -> Vec<String> {
        let mut out = Vec::new();
        for (name, facts) in &before.links {
            match self.links.get(name) {
                None => out.push(format!("link {name} is gone (was {facts})")),
                Some(now) if now != facts => {
                    out.push(format!("link {name} changed: {facts} -> {now}"))
                }
                Some(_) => {}
            }
        }
        for (name, facts) in &self.links {
            if !before.links.contains_key(name) {
                out.push(format!("link {name} is new: {facts}"));
            }
        }
        for a in before.addresses.difference(&self.addresses) {
            out.push(format!("address gone: {a}"));
        }
        for a in self.addresses.difference(&before.addresses) {
            out.push(format!("address new: {a}"));
        }
        for r in before.routes.difference(&self.routes) {
            out.push(format!("route gone: {r}"));
        }
        for r in self.routes.difference(&before.routes) {
            out.push(format!("route new: {r}"));
        }
        if self.nft != before.nft {
            out.push(format!(
                "the nftables table changed:\n--- before ---\n{:#}\n--- after ---\n{:#}",
                before.nft, self.nft
            ));
        }
        out
    }
}
