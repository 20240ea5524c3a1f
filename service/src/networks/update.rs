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
use crate::host::links;
use guestnet_mode_api::{Definition, Plan};

impl Networks {
    /// Replaces a definition; an active network changes in place.
    pub async fn update(&self, name: &str, text: &str) -> Result<(), ServiceError> {
        let mut new = self.parse_checked(text)?;
        let held = self.hold(name).await?;
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
        let plan = match &old.plan {
            Some(old_plan) => Some(self.update_active(&held, &old, old_plan, &new).await?),
            None => None,
        };
        if old.persistent {
            self.definitions
                .save(&new)
                .map_err(|e| ServiceError::failed("saving the definition", e))?;
        }
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
        // The network's own bridge and subnet count as free: an Update that
        // names neither keeps them.
        let facts = facts::facts_for_update(&snapshot, old_plan);
        let new_plan = self.plan(def, facts).await?;
        // What the network holds now is no clash with what it will hold.
        let mut others = snapshot.clone();
        if let Some(own) = Self::own_bridge(&others, &def.name, old_plan).map(|l| l.index) {
            others.links.retain(|l| l.index != own);
            others.routes.retain(|r| r.oif != Some(own));
        }
        self.check_plan(&new_plan, &others, &def.name)?;
        if new_plan == *old_plan {
            return Ok(new_plan);
        }
        if !links::same_bridge(&old_plan.bridge, &new_plan.bridge) {
            drop(planning);
            return self
                .move_to_new_bridge(held, old, old_plan, def, new_plan)
                .await;
        }
        // Recorded first, with where it came from: a guestnetd killed from
        // here on finishes the move when it takes the network back.
        let record = AppliedRecord {
            definition: def.clone(),
            persistent: old.persistent,
            plan: new_plan.clone(),
            phase: Phase::Active,
            previous: Some(old_plan.clone()),
            bridge_index: None,
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

    /// An Update that needs another bridge: the new one is made and checked
    /// before the old one goes; every port moves over, whoever made it.
    async fn move_to_new_bridge(
        &self,
        held: &Held,
        old: &Network,
        old_plan: &Plan,
        def: &Definition,
        new_plan: Plan,
    ) -> Result<Plan, ServiceError> {
        let name = &def.name;
        // The watcher must not call a moving port gone: the old bridge is
        // forgotten first, so its release announces nothing.
        self.unwatch_bridge(name);
        let ports = self.release_ports(old_plan).await;
        if let Some(services) = held.slot.take_services() {
            services.stop().await;
        }
        let moved_out = self.unlink_for_move(name, old_plan).await;
        let activated = match moved_out {
            Ok(()) => self.relink(def, old.persistent, &new_plan).await,
            Err(e) => Err(e),
        };
        let (plan, result) = match activated {
            Ok(()) => (new_plan, Ok(())),
            Err(e) => {
                // Back on the old plan, with the same ports.
                let back = self.relink(&old.definition, old.persistent, old_plan).await;
                if let Err(b) = &back {
                    tracing::error!("bringing network {name} back after a refused update: {b}");
                }
                (old_plan.clone(), Err(e))
            }
        };
        self.plug_ports(&plan, &ports).await;
        self.watch_bridge(name, &plan).await;
        match self.start_services(name, &plan).await {
            Ok(s) => held.slot.put_services(s),
            Err(e) => tracing::error!("restarting the servers of {name}: {e}"),
        }
        let record = AppliedRecord {
            definition: if result.is_ok() {
                def.clone()
            } else {
                old.definition.clone()
            },
            persistent: old.persistent,
            plan: plan.clone(),
            phase: Phase::Active,
            previous: None,
            bridge_index: None,
        };
        if let Err(e) = self.runtime.save(&record) {
            tracing::warn!("recording network {name}: {e}");
        }
        result.map(|()| plan)
    }

    /// Takes the old bridge away (its ports were released), keeping the
    /// network's rules until the new ones replace them.
    async fn unlink_for_move(
        &self,
        name: &guestnet_mode_api::NetworkName,
        plan: &Plan,
    ) -> Result<(), ServiceError> {
        let errors = self.teardown_links(plan, name.as_str()).await;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::Failed(format!(
                "taking down the old bridge of {name}: {}",
                errors.join("; ")
            )))
        }
    }

    /// Makes a plan's links (checked against the host) and its rules.
    async fn relink(
        &self,
        def: &Definition,
        persistent: bool,
        plan: &Plan,
    ) -> Result<(), ServiceError> {
        let name = def.name.as_str();
        {
            let _planning = self.planning.lock().await;
            let snapshot = self.snapshot().await?;
            self.record_and_link(def, persistent, plan, &snapshot)
                .await?;
        }
        if let Err(e) = self.apply_shared(Change::Put(&def.name, plan)).await {
            for err in self.teardown_links(plan, name).await {
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
