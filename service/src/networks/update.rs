//! Update: a new definition for a network. An inactive network just takes
//! it. An active one is brought from its old plan to the new one as a diff,
//! so that its guests keep their ports, leases and packets:
//!
//! - the same bridge (the usual case: DHCP range, static hosts, DNS,
//!   forwarders, MTU, the subnet, even the mode): addresses, routes and
//!   MTU change on the bridge in place, the firewall table is replaced in
//!   one atomic batch, the servers are reconfigured in place;
//! - a different bridge (another name, or a bridged network's NIC): the
//!   new bridge is made, every guest port (ours and anyone's) is moved to
//!   it, and the old one goes.
//!
//! A refused Update leaves the old network running as it was.

use super::shared::Change;
use super::{Held, Network, Networks};
use crate::error::ServiceError;
use crate::files::{AppliedRecord, Phase};
use crate::host::facts;
use crate::host::kernel::Snapshot;
use crate::host::links;
use guestnet_mode_api::{BridgePlan, Definition, NetworkName, Plan};

impl Networks {
    /// Replaces a definition; an active network changes in place.
    pub async fn update(&self, name: &str, text: &str) -> Result<(), ServiceError> {
        let new = self.parse_checked(text)?;
        let held = self.hold(name).await?;
        self.update_held(&held, name, text, new).await
    }

    /// Changes the definition as `edit` says (on TOML, as the network's
    /// definition reads now), under the network's own lock, so that no
    /// other change comes between reading and writing it (AddForward,
    /// RemoveForward).
    pub(super) async fn edit(
        &self,
        name: &str,
        edit: impl FnOnce(&Definition) -> Result<String, ServiceError>,
    ) -> Result<(), ServiceError> {
        let held = self.hold(name).await?;
        let text = edit(&held.slot.network().definition)?;
        let new = self.parse_checked(&text)?;
        self.update_held(&held, name, &text, new).await
    }

    async fn update_held(
        &self,
        held: &Held,
        name: &str,
        text: &str,
        mut new: Definition,
    ) -> Result<(), ServiceError> {
        let old = held.slot.network();
        if new.name != old.definition.name {
            return Err(ServiceError::InvalidConfig(format!(
                "name: an update cannot rename network {name:?}; define a new one instead"
            )));
        }
        if !text_has_uuid(text) {
            new.uuid = old.definition.uuid;
        }
        if new.uuid != old.definition.uuid {
            return Err(ServiceError::InvalidConfig(
                "uuid: an update cannot change the uuid".into(),
            ));
        }
        // Stored first: a definition that cannot be saved changes nothing,
        // and one that is saved is put back if the host refuses it.
        if old.persistent {
            self.definitions
                .save(&new)
                .map_err(|e| ServiceError::failed("saving the definition", e))?;
        }
        let plan = match &old.plan {
            Some(old_plan) => match self.update_active(held, &old, old_plan, &new).await {
                Ok(plan) => Some(plan),
                Err(e) => {
                    if old.persistent {
                        if let Err(e) = self.definitions.save(&old.definition) {
                            tracing::error!("putting back the definition of {name}: {e}");
                        }
                    }
                    return Err(e);
                }
            },
            None => None,
        };
        let network = Network {
            definition: new,
            persistent: old.persistent,
            plan,
        };
        if let Some(record) = network.record(Phase::Active) {
            if let Err(e) = self.runtime.save(&record) {
                tracing::warn!("recording network {name}: {e}");
            }
        }
        held.slot.set(network);
        Ok(())
    }

    /// Plans an active network again with the definition it has (what it
    /// plans from changed: a lease a forward follows), and applies what
    /// differs. Nothing happens when the plan is the same.
    pub(super) async fn replan(&self, name: &str) -> Result<(), ServiceError> {
        let held = self.hold(name).await?;
        let old = held.slot.network();
        let Some(old_plan) = &old.plan else {
            return Ok(());
        };
        let plan = self
            .update_active(&held, &old, old_plan, &old.definition)
            .await?;
        if plan == *old_plan {
            return Ok(());
        }
        let network = Network {
            definition: old.definition.clone(),
            persistent: old.persistent,
            plan: Some(plan),
        };
        if let Some(record) = network.record(Phase::Active) {
            if let Err(e) = self.runtime.save(&record) {
                tracing::warn!("recording network {name}: {e}");
            }
        }
        held.slot.set(network);
        Ok(())
    }

    /// Plans `def` for a network that runs on `old_plan` and moves it there.
    async fn update_active(
        &self,
        held: &Held,
        old: &Network,
        old_plan: &Plan,
        def: &Definition,
    ) -> Result<Plan, ServiceError> {
        let name = def.name.as_str();
        let planning = self.planning.lock().await;
        let snapshot = self.snapshot().await?;
        // What the network holds now is free for what it will hold: its own
        // bridge (and a NIC it enslaved), its addresses and routes. So an
        // Update that names no bridge or subnet keeps them, and none of it
        // counts as a clash.
        let others = facts::without_own(
            &snapshot,
            old_plan,
            Self::own_bridge(&snapshot, &def.name, old_plan),
        );
        let facts = facts::facts_for_update(&others, old_plan);
        let new_plan = self.plan(def, facts).await?;
        self.check_plan(&new_plan, &others, &def.name)?;
        if new_plan == *old_plan {
            return Ok(new_plan);
        }
        if !links::same_bridge(&old_plan.bridge, &new_plan.bridge) {
            return self
                .move_to_new_bridge(held, old, def, new_plan, &snapshot, planning)
                .await;
        }
        // Recorded first, with where it came from: a guestnetd killed from
        // here on finishes the move when it takes the network back.
        let record = AppliedRecord {
            previous: Some(old_plan.clone()),
            ..AppliedRecord::new(def, old.persistent, &new_plan, Phase::Active)
        };
        self.runtime
            .save(&record)
            .map_err(|e| ServiceError::failed("recording the network", e))?;
        let back = || self.put_back(old, &new_plan, old_plan);
        if let Err(e) = links::update(&self.kernel, old_plan, &new_plan, name, &snapshot).await {
            back().await;
            return Err(ServiceError::starting(name, e));
        }
        drop(planning);
        if let Err(e) = self.apply_shared(Change::Put(&def.name, &new_plan)).await {
            back().await;
            return Err(e);
        }
        if let Err(e) = self
            .update_services(&def.name, &held.slot, old_plan, &new_plan)
            .await
        {
            let _ = self.apply_shared(Change::Put(&def.name, old_plan)).await;
            let _ = self
                .update_services(&def.name, &held.slot, &new_plan, old_plan)
                .await;
            back().await;
            return Err(e);
        }
        if old_plan.dns != new_plan.dns {
            self.announce_dns(&def.name, &new_plan).await;
        }
        if super::ports::isolates_guests(old_plan) != super::ports::isolates_guests(&new_plan) {
            // The guests' ports change isolation in place.
            self.watch_bridge(&def.name, &new_plan).await;
        }
        Ok(new_plan)
    }

    /// Undoes an in-place move of the links, best effort, and records the
    /// network as it was.
    async fn put_back(&self, old: &Network, new_plan: &Plan, old_plan: &Plan) {
        let name = old.definition.name.as_str();
        let back = match self.snapshot().await {
            Ok(now) => links::update(&self.kernel, new_plan, old_plan, name, &now)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = back {
            tracing::warn!("putting the links of {name} back: {e}");
        }
        if let Some(r) = old.record(Phase::Active) {
            let _ = self.runtime.save(&r);
        }
    }

    /// An Update that needs another bridge. Recorded as a move first (a
    /// guestnetd killed from here on finishes it); the guest ports are
    /// released, the old bridge goes, the new one is made and checked, the
    /// ports are plugged into it. If the new one is refused, the network
    /// goes back the same way onto the old plan. Runs under the planning
    /// lock until the links are made, so no Start takes the new bridge's
    /// name meanwhile.
    async fn move_to_new_bridge(
        &self,
        held: &Held,
        old: &Network,
        def: &Definition,
        new_plan: Plan,
        snapshot: &Snapshot,
        planning: tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<Plan, ServiceError> {
        let name = &def.name;
        let old_plan = old
            .plan
            .as_ref()
            .ok_or_else(|| ServiceError::NotActive(name.to_string()))?;
        // A bridge to make gets its ifindex chosen here and recorded, so a
        // bridge left unmarked by a kill is known as ours by it.
        let moving = |d: &Definition, to: &Plan, from: &Plan| AppliedRecord {
            previous: Some(from.clone()),
            bridge_index: matches!(to.bridge, BridgePlan::Create { .. })
                .then(|| links::unused_ifindex(snapshot)),
            ..AppliedRecord::new(d, old.persistent, to, Phase::Moving)
        };
        let there = moving(def, &new_plan, old_plan);
        self.runtime
            .save(&there)
            .map_err(|e| ServiceError::failed("recording the network", e))?;
        // The watcher must not call a moving port gone: the old bridge is
        // forgotten first, so its release announces nothing.
        self.unwatch_bridge(name);
        let ports = self.release_ports(name, old_plan).await;
        if let Some(services) = held.slot.take_services() {
            services.stop().await;
            self.resolved.set(name.as_str(), None).await;
        }
        let moved = self
            .move_links(name, old_plan, &new_plan, there.bridge_index)
            .await;
        let (definition, plan, result) = match moved {
            Ok(()) => (def, new_plan, Ok(())),
            Err(e) => {
                let back = moving(&old.definition, old_plan, &new_plan);
                let _ = self.runtime.save(&back);
                let moved_back = self
                    .move_links(name, &new_plan, old_plan, back.bridge_index)
                    .await;
                if let Err(b) = moved_back {
                    tracing::error!("bringing network {name} back after a refused update: {b}");
                }
                (&old.definition, old_plan.clone(), Err(e))
            }
        };
        drop(planning);
        self.plug_ports(&plan, &ports).await;
        self.watch_bridge(name, &plan).await;
        match self.start_services(name, &plan).await {
            Ok(s) => held.slot.put_services(s),
            Err(e) => tracing::error!("restarting the servers of {name}: {e}"),
        }
        let record = AppliedRecord::new(definition, old.persistent, &plan, Phase::Active);
        if let Err(e) = self.runtime.save(&record) {
            tracing::warn!("recording network {name}: {e}");
        }
        result.map(|()| plan)
    }

    /// Takes the links of `from` away (their guest ports were released)
    /// and makes those of `to`, checked against the host and the other
    /// networks, with its firewall rules. Called under the planning lock.
    pub(super) async fn move_links(
        &self,
        name: &NetworkName,
        from: &Plan,
        to: &Plan,
        bridge_index: Option<u32>,
    ) -> Result<(), ServiceError> {
        let errors = self.teardown_links(from, name.as_str()).await;
        if !errors.is_empty() {
            return Err(ServiceError::Failed(format!(
                "taking down the old bridge of {name}: {}",
                errors.join("; ")
            )));
        }
        let snapshot = self.snapshot().await?;
        self.check_plan(to, &snapshot, name)?;
        let bridge_index = bridge_index.filter(|i| snapshot.link_by_index(*i).is_none());
        links::apply(&self.kernel, to, name.as_str(), &snapshot, bridge_index)
            .await
            .map_err(|e| ServiceError::starting(name.as_str(), e))?;
        if let Err(e) = self.apply_shared(Change::Put(name, to)).await {
            for err in self.teardown_links(to, name.as_str()).await {
                tracing::warn!("rolling back {name}: {err}");
            }
            return Err(e);
        }
        Ok(())
    }
}

fn text_has_uuid(text: &str) -> bool {
    toml::from_str::<toml::Table>(text).is_ok_and(|t| t.contains_key("uuid"))
}
