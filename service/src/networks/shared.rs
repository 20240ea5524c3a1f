//! What every active network shares: guestnet's nftables table, firewalld's
//! zones and the sysctls. They are rendered from one map of the networks
//! whose rules are in place, under one small lock of their own, so two
//! networks changing at once never render each other out of the table.

use super::Networks;
use crate::error::ServiceError;
use crate::firewall::firewalld::{Bridge, Firewalld};
use crate::firewall::{self, Firewall, NetworkRules};
use crate::host::sysctl::SysctlKeeper;
use guestnet_mode_api::{NetworkName, Plan};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(super) struct Shared {
    /// guestnet's nftables table, and the DOCKER-USER rules beside it.
    firewall: Arc<Firewall>,
    /// firewalld's zones for the bridges, when firewalld runs.
    firewalld: Arc<Firewalld>,
    /// The networks whose rules and sysctls are in place (or about to be).
    plans: BTreeMap<NetworkName, Plan>,
    sysctls: SysctlKeeper,
    /// What is known of guestnet's tables (the skeleton) in the kernel.
    skeleton: Tables,
    /// Each network's part of the tables as applied (bridge, nft text), so
    /// an unchanged part is never rewritten and a changed one is replaced
    /// alone.
    applied: BTreeMap<NetworkName, Applied>,
    /// Where each part is recorded, for the next guestnetd: one file per
    /// network, so a change writes one small file.
    record: PathBuf,
}

/// What is known of guestnet's tables in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tables {
    /// Not there.
    Absent,
    /// The skeleton with exactly the applied parts.
    Known,
    /// Something not known to be ours (a guestnetd killed between a
    /// transaction and its record): made anew, or deleted, at the next
    /// apply.
    Unknown,
}

#[derive(Clone, PartialEq, Eq)]
struct Applied {
    bridge: String,
    part: String,
}

/// What changes in the shared state.
pub(super) enum Change<'a> {
    /// A network's rules come in or are replaced.
    Put(&'a NetworkName, &'a Plan),
    /// A network's rules go.
    Remove(&'a NetworkName),
    /// Nothing: bring the kernel back to what is recorded.
    Reassert,
}

impl Shared {
    pub(super) fn new(
        firewall: Arc<Firewall>,
        firewalld: Arc<Firewalld>,
        runtime_dir: &Path,
    ) -> Self {
        Shared {
            firewall,
            firewalld,
            plans: BTreeMap::new(),
            sysctls: SysctlKeeper::load(runtime_dir.to_owned()),
            skeleton: Tables::Unknown,
            applied: BTreeMap::new(),
            record: runtime_dir.join("firewall"),
        }
    }

    fn record_path(&self, name: &NetworkName) -> PathBuf {
        self.record.join(format!("net-{}.nft", name.as_str()))
    }
}

/// What one apply does to the tables: the nft batch (one transaction),
/// whether the skeleton is there after it, and the networks whose applied
/// part it changes (`None`: gone).
struct Transition {
    batch: String,
    skeleton: Tables,
    /// Whether every part applied before is gone (the tables were made anew
    /// or deleted).
    fresh: bool,
    changed: Vec<(NetworkName, Option<Applied>)>,
}

/// The transition from `skeleton`/`applied` to `plans` for the network
/// `touched` (every network when `None`, or when the tables must be made
/// anew). Only the touched networks' chains and elements are named in the
/// batch, unless the tables themselves come or go.
fn transition(
    plans: &BTreeMap<NetworkName, Plan>,
    tables: Tables,
    applied: &BTreeMap<NetworkName, Applied>,
    touched: Option<&NetworkName>,
) -> Transition {
    let skeleton = tables == Tables::Known;
    use guestnet_mode_api::FirewallPolicy;
    let wanted = plans
        .values()
        .any(|p| !matches!(p.firewall, FirewallPolicy::None));
    if !wanted {
        return Transition {
            batch: if tables == Tables::Absent {
                String::new()
            } else {
                firewall::drop_tables()
            },
            skeleton: Tables::Absent,
            fresh: true,
            changed: Vec::new(),
        };
    }
    let mut batch = String::new();
    let names: Vec<&NetworkName> = if !skeleton {
        batch.push_str(&firewall::skeleton());
        plans.keys().collect()
    } else if let Some(name) = touched {
        vec![name]
    } else {
        // Every network, and whatever was applied of networks now gone.
        let mut all: Vec<&NetworkName> = plans.keys().collect();
        all.extend(applied.keys().filter(|n| !plans.contains_key(*n)));
        all
    };
    let mut changed = Vec::new();
    for name in names {
        let old = applied.get(name).filter(|_| skeleton);
        let new = plans.get(name).map(|plan| {
            let rules = NetworkRules::of(name.as_str(), plan);
            Applied {
                bridge: rules.bridge.as_str().to_owned(),
                part: firewall::part(&rules),
            }
        });
        if skeleton && old == new.as_ref() {
            continue;
        }
        if skeleton {
            // A start removes whatever a killed guestnetd may have left of
            // the network first: the teardown is a no-op for what is not
            // there, and names nothing of other networks.
            let mut bridges: Vec<&str> = old
                .into_iter()
                .chain(&new)
                .map(|a| a.bridge.as_str())
                .collect();
            bridges.dedup();
            for bridge in bridges {
                batch.push_str(&firewall::teardown(name.as_str(), bridge));
            }
        }
        if let Some(new) = &new {
            batch.push_str(&new.part);
        }
        changed.push((name.clone(), new));
    }
    Transition {
        batch,
        skeleton: Tables::Known,
        fresh: !skeleton,
        changed,
    }
}

impl Networks {
    /// Reconciles the firewall table, firewalld and sysctls with the active
    /// networks after `change`. On failure the recorded set is as before.
    /// A change of one network writes that network's part of the tables
    /// only, in one transaction, whatever the number of networks.
    pub(super) async fn apply_shared(&self, change: Change<'_>) -> Result<(), ServiceError> {
        let mut guard = self.shared.lock().await;
        let shared = &mut *guard;
        // The change is made in place and undone on failure: no copy of
        // every plan per change.
        let (touched, undo) = match change {
            Change::Put(name, plan) => (
                Some(name),
                Some((name, shared.plans.insert(name.clone(), plan.clone()))),
            ),
            Change::Remove(name) => (Some(name), Some((name, shared.plans.remove(name)))),
            Change::Reassert => (None, None),
        };
        let result = shared.apply(touched).await;
        if result.is_err() {
            if let Some((name, old)) = undo {
                match old {
                    Some(plan) => shared.plans.insert(name.clone(), plan),
                    None => shared.plans.remove(name),
                };
            }
        }
        result
    }

    /// Takes the parts guestnetd last applied as current when the kernel
    /// holds exactly them (and the skeleton), so a restart rewrites nothing
    /// that is in place. Anything else (a guestnetd killed between `nft`
    /// and writing a record, or someone's edit) makes the next apply write
    /// the tables anew, whole, once.
    pub(super) async fn load_firewall_record(&self) {
        let mut shared = self.shared.lock().await;
        let mut recorded = BTreeMap::new();
        let mut expected = firewall::batch_fingerprint(&firewall::skeleton());
        let dir = std::fs::read_dir(&shared.record).into_iter().flatten();
        for entry in dir.flatten() {
            let file = entry.file_name();
            let Some(name) = file
                .to_str()
                .and_then(|f| f.strip_prefix("net-"))
                .and_then(|f| f.strip_suffix(".nft"))
                .and_then(|n| NetworkName::new(n).ok())
            else {
                continue;
            };
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let Some((bridge, part)) = text.split_once('\n') else {
                continue;
            };
            for (k, v) in firewall::batch_fingerprint(part) {
                *expected.entry(k).or_default() += v;
            }
            let applied = Applied {
                bridge: bridge.to_owned(),
                part: part.to_owned(),
            };
            recorded.insert(name, applied);
        }
        // Trusted only if the kernel holds exactly those parts: each part is
        // one transaction, but its record is written after it.
        let kernel = shared.firewall.kernel_fingerprint().await;
        if kernel.is_empty() {
            shared.skeleton = Tables::Absent;
        } else if kernel == expected {
            shared.skeleton = Tables::Known;
            shared.applied = recorded;
        } else {
            tracing::debug!("the firewall records {expected:?} are not the kernel's {kernel:?}");
        }
    }

    /// Counts a re-adopted network's rules as in place without applying
    /// anything; the next apply renders them.
    pub(super) async fn adopt_shared(&self, name: &NetworkName, plan: &Plan) {
        self.shared
            .lock()
            .await
            .plans
            .insert(name.clone(), plan.clone());
    }

    /// Re-applies guestnet's table if someone deleted it (an `nft flush
    /// ruleset`, say), and its DOCKER-USER rules if Docker's chain appeared
    /// or lost them. Called by the firewall guard.
    pub async fn restore_firewall(&self) {
        {
            let mut shared = self.shared.lock().await;
            if shared.skeleton == Tables::Known && !shared.firewall.table_exists().await {
                tracing::warn!(
                    "guestnet's nftables table was deleted by someone else; restoring it"
                );
                shared.skeleton = Tables::Absent;
                shared.applied.clear();
            }
        }
        if let Err(e) = self.apply_shared(Change::Reassert).await {
            tracing::error!("restoring the firewall: {e}");
        }
    }
}

impl Shared {
    /// Brings the kernel to `self.plans` after a change of `touched` (or
    /// of anything, when `None`).
    async fn apply(&mut self, touched: Option<&NetworkName>) -> Result<(), ServiceError> {
        let t = transition(&self.plans, self.skeleton, &self.applied, touched);
        tracing::debug!(
            "firewall: {} network part(s) changed{}",
            t.changed.len(),
            if t.fresh { ", tables made anew" } else { "" }
        );
        let plans = &self.plans;
        let all_rules = || -> Vec<NetworkRules> {
            plans
                .iter()
                .map(|(n, p)| NetworkRules::of(n.as_str(), p))
                .collect()
        };
        let docker = self.firewall.docker_user_batch(all_rules).await;
        if !t.batch.is_empty() || !docker.is_empty() {
            // Both in one batch: all of it applies or none.
            self.firewall
                .run(&format!("{}{docker}", t.batch))
                .await
                .map_err(|e| ServiceError::failed("updating the firewall", e))?;
        }
        if t.fresh {
            for name in std::mem::take(&mut self.applied).into_keys() {
                let _ = std::fs::remove_file(self.record_path(&name));
            }
        }
        self.skeleton = t.skeleton;
        if !t.changed.is_empty() {
            if let Err(e) = std::fs::create_dir_all(&self.record) {
                tracing::warn!("recording the firewall: {e}");
            }
        }
        for (name, new) in t.changed {
            let path = self.record_path(&name);
            match new {
                Some(new) => {
                    let text = format!("{}\n{}", new.bridge, new.part);
                    if let Err(e) = crate::files::write_volatile(&path, text.as_bytes()) {
                        tracing::warn!("recording the firewall: {e}");
                    }
                    self.applied.insert(name, new);
                }
                None => {
                    let _ = std::fs::remove_file(&path);
                    self.applied.remove(&name);
                }
            }
        }
        let sysctls: Vec<_> = self
            .plans
            .values()
            .flat_map(|p| {
                let bridge = p.bridge.name();
                p.sysctls
                    .iter()
                    .map(move |s| (s.key.path(bridge), s.value.clone()))
            })
            .collect();
        let firewalld_bridges: Vec<(String, Bridge)> = self
            .plans
            .values()
            .filter_map(|p| {
                let rules = crate::firewall::Rules::of(&p.firewall, &p.addresses);
                let kind = firewalld_kind(rules.as_ref())?;
                let ports = p.host_allow.clone();
                Some((p.bridge.name().as_str().to_owned(), Bridge { kind, ports }))
            })
            .collect();
        self.firewalld.set_bridges(firewalld_bridges).await;
        self.sysctls
            .reconcile(&sysctls)
            .map_err(|e| ServiceError::failed("setting sysctls", e))?;
        Ok(())
    }
}

/// What a network's bridge needs from firewalld: nothing for a bridge
/// without firewall rules (bridged mode: the host is a plain switch), a way
/// in from the LAN for networks that take connections from outside
/// (routed, forwarded ports), and a way out for the others.
fn firewalld_kind(
    policy: Option<&crate::firewall::Rules>,
) -> Option<crate::firewall::firewalld::Kind> {
    use crate::firewall::firewalld::Kind;
    let p = policy?;
    Some(if p.takes_inbound() {
        Kind::Routed
    } else {
        Kind::Closed
    })
}
