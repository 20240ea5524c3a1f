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
    /// The nft batch last applied, so an unchanged table is never rewritten.
    applied: Option<String>,
    /// Where that batch is recorded, for the next guestnetd.
    record: PathBuf,
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
            applied: None,
            record: runtime_dir.join("firewall.nft"),
        }
    }
}

impl Networks {
    /// Reconciles the firewall table, firewalld and sysctls with the active
    /// networks after `change`. On failure the recorded set is as before.
    pub(super) async fn apply_shared(&self, change: Change<'_>) -> Result<(), ServiceError> {
        let mut shared = self.shared.lock().await;
        let mut plans = shared.plans.clone();
        match change {
            Change::Put(name, plan) => {
                plans.insert(name.clone(), plan.clone());
            }
            Change::Remove(name) => {
                plans.remove(name);
            }
            Change::Reassert => {}
        }
        // One order however the set was reached (a BTreeMap), so the same
        // networks always render the same batch and a restart rewrites nothing.
        let sysctls: Vec<_> = plans
            .values()
            .flat_map(|p| {
                let bridge = p.bridge.name();
                p.sysctls
                    .iter()
                    .map(move |s| (s.key.path(bridge), s.value.clone()))
            })
            .collect();
        let rules: Vec<NetworkRules> = plans
            .iter()
            .map(|(n, p)| NetworkRules::of(n.as_str(), p))
            .collect();
        let batch = firewall::render(&rules);
        let docker = shared.firewall.docker_user_batch(&rules).await;
        let changed = shared.applied.as_deref() != Some(batch.as_str());
        if changed || !docker.is_empty() {
            // Both in one batch: all of it applies or none.
            let full = if changed {
                format!("{batch}{docker}")
            } else {
                docker
            };
            shared
                .firewall
                .run(&full)
                .await
                .map_err(|e| ServiceError::failed("updating the firewall", e))?;
            if let Err(e) = crate::files::write_volatile(&shared.record, batch.as_bytes()) {
                tracing::warn!("recording the firewall: {e}");
            }
            shared.applied = Some(batch);
        }
        shared
            .firewalld
            .set_bridges(rules.iter().filter_map(|r| {
                let kind = firewalld_kind(r.policy.as_ref())?;
                let ports = r.host.allow.clone();
                Some((r.bridge.as_str().to_owned(), Bridge { kind, ports }))
            }))
            .await;
        shared
            .sysctls
            .reconcile(&sysctls)
            .map_err(|e| ServiceError::failed("setting sysctls", e))?;
        shared.plans = plans;
        Ok(())
    }

    /// Takes the table guestnetd last applied as current when it is still
    /// in the kernel, so a restart rewrites nothing that is in place.
    pub(super) async fn load_firewall_record(&self) {
        let mut shared = self.shared.lock().await;
        let Ok(batch) = std::fs::read_to_string(&shared.record) else {
            return;
        };
        // Trusted only if the kernel holds exactly that batch: a guestnetd
        // killed between `nft` and writing the record leaves them apart.
        let (recorded, kernel) = (
            firewall::batch_fingerprint(&batch),
            shared.firewall.kernel_fingerprint().await,
        );
        if recorded == kernel {
            shared.applied = Some(batch);
        } else {
            tracing::debug!("the firewall record {recorded:?} is not the kernel's {kernel:?}");
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
            let Some(batch) = shared.applied.clone() else {
                return;
            };
            if firewall::has_tables(&batch) && !shared.firewall.table_exists().await {
                tracing::warn!(
                    "guestnet's nftables table was deleted by someone else; restoring it"
                );
                shared.applied = None;
            }
        }
        if let Err(e) = self.apply_shared(Change::Reassert).await {
            tracing::error!("restoring the firewall: {e}");
        }
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
