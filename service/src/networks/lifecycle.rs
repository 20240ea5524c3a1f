//! A network's life: define, create, start, stop, undefine, autostart.
//! Activation and deactivation are the two halves every one of them uses.

use super::shared::Change;
use super::{Fate, Held, Network, Networks, Slot};
use crate::error::ServiceError;
use crate::files::{AppliedRecord, Phase};
use crate::host::facts;
use crate::host::links;
use guestnet_mode_api::{BridgePlan, Definition, NetworkName, Plan};
use std::sync::Arc;

impl Networks {
    /// Takes `def`'s name (and uuid) in the table, or says who has it. The
    /// slot is invisible until `visible` says otherwise.
    fn claim(
        &self,
        def: &Definition,
        network: Network,
        visible: bool,
    ) -> Result<Arc<Slot>, ServiceError> {
        let mut table = self.table.write().expect("table lock");
        if table.contains_key(&def.name) {
            return Err(ServiceError::AlreadyExists(format!(
                "a network named {:?} already exists",
                def.name.as_str()
            )));
        }
        if let Some(other) = table
            .values()
            .map(|s| s.network())
            .find(|n| n.definition.uuid == def.uuid)
        {
            return Err(ServiceError::AlreadyExists(format!(
                "network {:?} already has uuid {}",
                other.definition.name.as_str(),
                def.uuid
            )));
        }
        let slot = Slot::new(network, visible);
        table.insert(def.name.clone(), slot.clone());
        Ok(slot)
    }

    /// Stores a new persistent definition.
    pub async fn define(&self, text: &str) -> Result<NetworkName, ServiceError> {
        let def = self.parse_checked(text)?;
        let network = Network {
            definition: def.clone(),
            persistent: true,
            plan: None,
        };
        // Invisible until stored: a failed save leaves no trace.
        let slot = self.claim(&def, network, false)?;
        let _op = slot.ops.clone().lock_owned().await;
        if let Err(e) = self.definitions.save(&def) {
            self.remove_slot(&slot);
            return Err(ServiceError::failed("saving the definition", e));
        }
        slot.visible
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(def.name)
    }

    /// Starts a transient network; nothing of it remains if it fails.
    pub async fn create(&self, text: &str) -> Result<NetworkName, ServiceError> {
        let def = self.parse_checked(text)?;
        let network = Network {
            definition: def.clone(),
            persistent: false,
            plan: None,
        };
        let slot = self.claim(&def, network, false)?;
        let _op = slot.ops.clone().lock_owned().await;
        match self.activate(&slot, &def, false).await {
            Ok(plan) => {
                slot.edit(|n| n.plan = Some(plan));
                slot.visible
                    .store(true, std::sync::atomic::Ordering::Release);
                Ok(def.name)
            }
            Err(e) => {
                self.remove_slot(&slot);
                Err(e)
            }
        }
    }

    pub async fn start(&self, name: &str) -> Result<(), ServiceError> {
        let held = self.hold(name).await?;
        let net = held.slot.network();
        if net.is_active() {
            return Err(ServiceError::AlreadyActive(name.to_owned()));
        }
        let plan = self
            .activate(&held.slot, &net.definition, net.persistent)
            .await?;
        held.slot.edit(|n| n.plan = Some(plan));
        Ok(())
    }

    pub async fn stop(&self, name: &str) -> Result<Fate, ServiceError> {
        let held = self.hold(name).await?;
        let net = held.slot.network();
        let Some(plan) = &net.plan else {
            return Err(ServiceError::NotActive(name.to_owned()));
        };
        let result = self.deactivate(&held, &net, plan).await;
        let fate = if net.persistent {
            held.slot.edit(|n| n.plan = None);
            Fate::Kept
        } else {
            self.remove_slot(&held.slot);
            self.forget_leases(&net.definition.name);
            Fate::Removed
        };
        result.map(|()| fate)
    }

    /// Removes the stored definition. An active network goes on running as
    /// a transient one, as libvirt does; an inactive one is gone.
    pub async fn undefine(&self, name: &str) -> Result<Fate, ServiceError> {
        let held = self.hold(name).await?;
        let net = held.slot.network();
        if !net.persistent {
            return Err(ServiceError::Failed(format!(
                "network {name:?} is transient: it has no definition to remove; Stop removes it"
            )));
        }
        self.definitions
            .remove(&net.definition.name)
            .map_err(|e| ServiceError::failed("removing the definition", e))?;
        if net.is_active() {
            held.slot.edit(|n| n.persistent = false);
            if let Some(record) = held.slot.network().record(Phase::Active) {
                let _ = self.runtime.save(&record);
            }
            Ok(Fate::Kept)
        } else {
            self.remove_slot(&held.slot);
            self.forget_leases(&net.definition.name);
            Ok(Fate::Removed)
        }
    }

    pub async fn set_autostart(&self, name: &str, on: bool) -> Result<(), ServiceError> {
        let held = self.hold(name).await?;
        let net = held.slot.network();
        if !net.persistent {
            return Err(ServiceError::Failed(format!(
                "network {name:?} is transient and cannot start on its own; define it to make it persistent"
            )));
        }
        let mut def = net.definition.clone();
        def.autostart = on;
        self.definitions
            .save(&def)
            .map_err(|e| ServiceError::failed("saving the definition", e))?;
        held.slot.edit(|n| n.definition = def);
        // An active network's record carries the definition a restarted
        // guestnetd rolls forward to: it must say the same.
        if let Some(record) = held.slot.network().record(Phase::Active) {
            if let Err(e) = self.runtime.save(&record) {
                tracing::warn!("recording network {name}: {e}");
            }
        }
        Ok(())
    }

    /// Asks the mode for a plan on the host as it is now, checks it against
    /// the host and the other active networks, and creates its links. Runs
    /// under the planning lock, so the next planner sees these links.
    async fn plan_and_link(
        &self,
        def: &Definition,
        persistent: bool,
    ) -> Result<Plan, ServiceError> {
        let _planning = self.planning.lock().await;
        let snapshot = self.snapshot().await?;
        let plan = self.plan(def, facts::facts(&snapshot)).await?;
        self.record_and_link(def, persistent, &plan, &snapshot)
            .await?;
        Ok(plan)
    }

    /// Checks a plan against the host and the other active networks,
    /// records it and makes its links. The record goes first: a crash from
    /// here on leaves a trace that tells the next guestnetd what to clean
    /// up. Called under the planning lock, with the host as read under it.
    pub(super) async fn record_and_link(
        &self,
        def: &Definition,
        persistent: bool,
        plan: &Plan,
        snapshot: &crate::host::kernel::Snapshot,
    ) -> Result<(), ServiceError> {
        let name = def.name.as_str();
        self.check_plan(plan, snapshot, &def.name)?;
        let bridge_index = matches!(plan.bridge, BridgePlan::Create { .. })
            .then(|| links::unused_ifindex(snapshot));
        let record = AppliedRecord {
            bridge_index,
            ..AppliedRecord::new(def, persistent, plan, Phase::Applying)
        };
        self.runtime
            .save(&record)
            .map_err(|e| ServiceError::failed("recording the network", e))?;
        if let Err(e) = links::apply(&self.kernel, plan, name, snapshot, bridge_index).await {
            let _ = self.runtime.remove(&def.name);
            return Err(ServiceError::starting(name, e));
        }
        Ok(())
    }

    /// Tears down a plan's links on the host as it is now (after a failed
    /// step, when nothing read before can be trusted).
    pub(super) async fn teardown_links(&self, plan: &Plan, name: &str) -> Vec<String> {
        match self.snapshot().await {
            Ok(snapshot) => links::teardown(&self.kernel, plan, name, &snapshot)
                .await
                .into_iter()
                .map(|e| e.to_string())
                .collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    pub(super) async fn snapshot(&self) -> Result<crate::host::kernel::Snapshot, ServiceError> {
        self.kernel
            .snapshot()
            .await
            .map_err(|e| ServiceError::failed("reading the host's interfaces", e))
    }

    /// Plans and applies a network. On any failure everything it did is
    /// undone before the error is returned.
    pub(super) async fn activate(
        &self,
        slot: &Slot,
        def: &Definition,
        persistent: bool,
    ) -> Result<Plan, ServiceError> {
        let name = def.name.as_str();
        let plan = self.plan_and_link(def, persistent).await?;
        let shared = self.apply_shared(Change::Put(&def.name, &plan)).await;
        let services = match shared {
            Ok(()) => self.start_services(&def.name, &plan).await,
            Err(e) => Err(e),
        };
        match services {
            Ok(services) => {
                slot.put_services(services);
                self.watch_bridge(&def.name, &plan).await;
                let record = AppliedRecord::new(def, persistent, &plan, Phase::Active);
                if let Err(e) = self.runtime.save(&record) {
                    tracing::warn!("recording network {name} as active: {e}");
                }
                Ok(plan)
            }
            Err(e) => {
                for err in self.teardown_links(&plan, name).await {
                    tracing::warn!("rolling back {name}: {err}");
                }
                let _ = self.apply_shared(Change::Remove(&def.name)).await;
                let _ = self.runtime.remove(&def.name);
                if !persistent {
                    self.forget_leases(&def.name);
                }
                Err(e)
            }
        }
    }

    /// Tears a network down; every step runs even when an earlier one fails.
    pub(super) async fn deactivate(
        &self,
        held: &Held,
        net: &Network,
        plan: &Plan,
    ) -> Result<(), ServiceError> {
        let name = &net.definition.name;
        if let Some(record) = net.record(Phase::Stopping) {
            if let Err(e) = self.runtime.save(&record) {
                tracing::warn!("recording network {name} as stopping: {e}");
            }
        }
        if let Some(services) = held.slot.take_services() {
            services.stop().await;
            self.resolved.set(name.as_str(), None).await;
        }
        // One reading of the host for the whole teardown of the links,
        // while the firewall and sysctls go: each deleted link makes the
        // kernel wait for an RCU grace period, and the firewall's rules
        // and the sysctls' restoring need not wait for that (they name the
        // bridge, and a key of a bridge already gone is skipped).
        let links = async {
            match self.snapshot().await {
                Ok(snapshot) => {
                    self.unplug_guests(name, plan, &snapshot).await;
                    links::teardown(&self.kernel, plan, name.as_str(), &snapshot)
                        .await
                        .into_iter()
                        .map(|e| e.to_string())
                        .collect()
                }
                Err(e) => vec![e.to_string()],
            }
        };
        let (mut problems, shared): (Vec<String>, _) =
            tokio::join!(links, self.apply_shared(Change::Remove(name)));
        if let Err(e) = shared {
            problems.push(e.to_string());
        }
        if let Err(e) = self.runtime.remove(name) {
            problems.push(e.to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::Failed(format!(
                "network {:?} stopped with errors: {}",
                name.as_str(),
                problems.join("; ")
            )))
        }
    }

    /// The network's own bridge as the host has it, if it is there and ours.
    pub(super) fn own_bridge<'s>(
        snapshot: &'s crate::host::kernel::Snapshot,
        name: &NetworkName,
        plan: &Plan,
    ) -> Option<&'s crate::host::kernel::Link> {
        let link = snapshot.link(plan.bridge.name().as_str())?;
        let ours = matches!(plan.bridge, BridgePlan::Existing { .. })
            || link.alias.as_deref() == Some(&facts::bridge_alias(name.as_str()));
        ours.then_some(link)
    }
}
