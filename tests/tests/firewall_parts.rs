//! guestnet's nftables table is made once; each network owns its own
//! chains and map elements, and a start, stop or update of one network
//! changes those alone, in one transaction: the table is never replaced
//! and no other network's rule is rewritten (their handles stay), while
//! the guests of the others keep their verdicts.
//!
//! Against the code before (the whole table rendered and replaced per
//! change) the first assertion fails: the table's handle and every rule
//! handle changed with each start and stop.

use guestnet_tests::lab::{started, LAN_ADDR};
use guestnet_tests::{probe, root_or_skip, Lab};
use serde_json::Value;
use std::collections::BTreeSet;

/// The table's handle, and every rule of `inet guestnet` as (chain,
/// handle, comment).
fn listing(lab: &Lab) -> (u64, BTreeSet<(String, u64, String)>) {
    let out = lab.world.exec(
        &lab.host,
        &["nft", "-j", "-a", "list", "table", "inet", "guestnet"],
    );
    assert!(out.status.success(), "no table inet guestnet");
    let json: Value = serde_json::from_slice(&out.stdout).expect("nft -j output");
    let mut table = 0;
    let mut rules = BTreeSet::new();
    for item in json["nftables"].as_array().into_iter().flatten() {
        if let Some(h) = item["table"]["handle"].as_u64() {
            table = h;
        }
        let r = &item["rule"];
        if let (Some(c), Some(h)) = (r["chain"].as_str(), r["handle"].as_u64()) {
            let comment = r["comment"].as_str().unwrap_or("").to_owned();
            rules.insert((c.to_owned(), h, comment));
        }
    }
    (table, rules)
}

fn of(rules: &BTreeSet<(String, u64, String)>, net: &str) -> BTreeSet<(String, u64, String)> {
    let tag = format!("guestnet:{net}");
    rules.iter().filter(|r| r.2 == tag).cloned().collect()
}

#[test]
fn starting_and_stopping_a_network_rewrites_no_other_networks_rules() {
    root_or_skip!();
    let lab = Lab::new();
    let gn = lab.gn();
    let _a = started(&gn, "fa", "nat", "gnbr1", "10.77.60");
    let g1 = lab.add_guest("g1", "vg1", "gnbr1", "10.77.60.10/24", Some("10.77.60.1"));
    probe::assert_ping(&lab.world, &g1, LAN_ADDR);
    let (table, before) = listing(&lab);
    let a_rules = of(&before, "fa");
    assert!(!a_rules.is_empty(), "{before:?}");

    let b = started(&gn, "fb", "routed", "gnbr2", "10.77.61");
    let c = started(&gn, "fc", "isolated", "gnbr3", "10.77.62");
    let (table2, mid) = listing(&lab);
    assert_eq!(
        table2,
        table,
        "a start replaced the table\n{}",
        lab.service.log_tail(40)
    );
    assert_eq!(
        of(&mid, "fa"),
        a_rules,
        "a start rewrote another network's rules"
    );
    assert!(!of(&mid, "fb").is_empty() && !of(&mid, "fc").is_empty());
    let c_rules = of(&mid, "fc");

    gn.stop(&b);
    let (table3, after) = listing(&lab);
    assert_eq!(table3, table, "a stop replaced the table");
    assert_eq!(
        of(&after, "fa"),
        a_rules,
        "a stop rewrote another network's rules"
    );
    assert_eq!(of(&after, "fc"), c_rules);
    assert!(
        of(&after, "fb").is_empty(),
        "the stopped network left rules"
    );
    let chains = lab
        .world
        .exec(&lab.host, &["nft", "list", "table", "inet", "guestnet"]);
    let text = String::from_utf8_lossy(&chains.stdout);
    assert!(
        !text.contains("net_fb_") && !text.contains("gnbr2"),
        "{text}"
    );
    // The nat guest still goes out, through its untouched rules.
    probe::assert_ping(&lab.world, &g1, LAN_ADDR);
    gn.stop(&c);
}
