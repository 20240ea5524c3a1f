//! Taking the host back after a restart: stored definitions, networks that
//! were active when guestnetd last ran (re-adopted, or finished off when a
//! kill caught them half-way), and autostart.

use super::shared::Change;
use super::{Network, Networks, Slot};
use crate::files::{AppliedRecord, Phase};
use crate::host::facts;
use crate::host::kernel::Snapshot;
use crate::host::links;
use guestnet_mode_api::{BridgePlan, NetworkName};

impl Networks {
    /// Loads stored definitions, re-adopts networks that were active when
    /// guestnetd last ran, and starts the autostart ones. Problems are logged;
    /// one bad network never stops the others. Runs before the service is on
    /// the bus, so nothing else changes the table meanwhile.
    pub async fn recover(&self) {
        for dir in [
            self.runtime_dir.clone(),
            self.runtime_dir.join("firewall"),
            self.guest_store.dir().to_owned(),
            self.leases_dir.clone(),
        ] {
            crate::files::remove_stale_temps(&dir);
        }
        let (defs, bad) = self.definitions.load_all();
        for b in bad {
            tracing::warn!("ignoring {}: {}", b.path.display(), b.reason);
        }
        {
            let mut table = self.table.write().expect("table lock");
            for def in defs {
                let network = Network {
                    definition: def.clone(),
                    persistent: true,
                    plan: None,
                };
                table.insert(def.name, Slot::new(network, true));
            }
        }
        self.load_firewall_record().await;
        self.readopt().await;
        self.remove_orphan_journals();
        if let Err(e) = self.apply_shared(Change::Reassert).await {
            tracing::error!("restoring the firewall and sysctls: {e}");
        }
        let autostart: Vec<NetworkName> = self
            .slots()
            .iter()
            .map(|s| s.network())
            .filter(|n| n.persistent && n.definition.autostart && !n.is_active())
            .map(|n| n.definition.name)
            .collect();
        for name in autostart {
            match self.start(name.as_str()).await {
                Ok(()) => tracing::info!("autostarted network {name}"),
                Err(e) => tracing::error!("autostarting network {name}: {e}"),
            }
        }
    }

    /// Removes lease journals of networks that no longer exist (an Undefine
    /// killed between removing the definition and the journal).
    fn remove_orphan_journals(&self) {
        let Ok(entries) = std::fs::read_dir(&self.leases_dir) else {
            return;
        };
        let table = self.table.read().expect("table lock");
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            let known = path
                .file_stem()
                .and_then(|s| NetworkName::new(&s.to_string_lossy()).ok())
                .is_some_and(|n| table.contains_key(&n));
            if path.extension().is_some_and(|x| x == "journal") && !known {
                tracing::info!(
                    "removing {}, the leases of a network that is gone",
                    path.display()
                );
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    /// Takes back networks whose bridge is still there; cleans up after
    /// those whose bridge is gone.
    async fn readopt(&self) {
        let (records, bad) = self.runtime.load_all();
        for b in bad {
            tracing::warn!("ignoring {}: {}", b.path.display(), b.reason);
            let _ = std::fs::remove_file(&b.path);
        }
        let mut snapshot = match self.kernel.snapshot().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot read the host's interfaces: {e}");
                return;
            }
        };
        for mut record in records {
            let name = record.definition.name.clone();
            if matches!(record.phase, Phase::Applying | Phase::Moving) {
                // A bridge created just before the kill may not carry its
                // mark yet: it is ours only under the ifindex the record
                // chose for it. An unmarked bridge of the name under any
                // other index is someone else's, made after the kill.
                if let BridgePlan::Create { name: br, .. } = &record.plan.bridge {
                    let unmarked = snapshot.links.iter_mut().find(|l| {
                        l.name == br.as_str()
                            && l.alias.is_none()
                            && l.kind.as_deref() == Some("bridge")
                    });
                    let unmarked = match unmarked {
                        Some(l) if record.bridge_index == Some(l.index) => Some(l),
                        Some(l) => {
                            tracing::warn!(
                                "leaving bridge {} (ifindex {}) alone: network {name} was \
                                 starting and planned a bridge of that name, but not this one",
                                l.name,
                                l.index
                            );
                            None
                        }
                        None => None,
                    };
                    if let Some(l) = unmarked {
                        let alias = facts::bridge_alias(name.as_str());
                        if self
                            .kernel
                            .set_alias(l.index, &l.name, &alias)
                            .await
                            .is_ok()
                        {
                            // What the teardown below reads: the mark is there now.
                            l.alias = Some(alias);
                        }
                    }
                }
            }
            if record.phase == Phase::Moving {
                self.finish_move(&mut record).await;
                record.phase = Phase::Active;
                record.previous = None;
                if let Err(e) = self.runtime.save(&record) {
                    tracing::warn!("recording network {name} as moved: {e}");
                }
                match self.kernel.snapshot().await {
                    Ok(s) => snapshot = s,
                    Err(e) => tracing::error!("cannot read the host's interfaces: {e}"),
                }
            }
            if record.phase != Phase::Active {
                tracing::warn!(
                    "network {name} was interrupted while {}; tearing it down",
                    if record.phase == Phase::Applying {
                        "starting"
                    } else {
                        "stopping"
                    }
                );
                self.delete_made_ports(&name, &record.plan, &snapshot).await;
                for e in links::teardown(&self.kernel, &record.plan, name.as_str(), &snapshot).await
                {
                    tracing::warn!("cleaning up {name}: {e}");
                }
                let _ = self.runtime.remove(&name);
                if !record.persistent {
                    self.forget_leases(&name);
                }
                continue;
            }
            if Self::own_bridge(&snapshot, &name, &record.plan).is_none() {
                tracing::warn!("network {name} was active but its bridge is gone; cleaning up");
                for e in links::teardown(&self.kernel, &record.plan, name.as_str(), &snapshot).await
                {
                    tracing::warn!("cleaning up {name}: {e}");
                }
                let _ = self.runtime.remove(&name);
                continue;
            }
            self.readopt_one(record, &snapshot).await;
            tracing::info!("re-adopted active network {name}");
        }
    }

    /// Finishes an Update that was moving a network to another bridge when
    /// guestnetd was killed: the old bridge goes if it is still there, the
    /// new one is made if it is not yet; the guests' ports are plugged back
    /// when the network is re-adopted ([`Networks::watch_bridge`]).
    async fn finish_move(&self, record: &mut AppliedRecord) {
        let name = record.definition.name.clone();
        tracing::warn!(
            "network {name} was moving to bridge {}; finishing the move",
            record.plan.bridge.name()
        );
        if let Some(from) = &record.previous {
            let _ = self.release_ports(&name, from).await;
            for e in self.teardown_links(from, name.as_str()).await {
                tracing::warn!("taking down the old bridge of {name}: {e}");
            }
        }
        if let Err(e) = self
            .make_bridge_of(&name, &record.plan, record.bridge_index)
            .await
        {
            tracing::error!("making the new bridge of {name}: {e}");
            // The way it came, rather than nowhere: its guests' ports are
            // plugged back into the old bridge when it is re-adopted.
            let Some(from) = record.previous.clone() else {
                return;
            };
            match self.make_bridge_of(&name, &from, None).await {
                Ok(()) => {
                    tracing::warn!(
                        "network {name} is back on its bridge {}",
                        from.bridge.name()
                    );
                    record.plan = from;
                }
                Err(e) => tracing::error!("bringing network {name} back: {e}"),
            }
        }
    }

    /// Makes `plan`'s links unless its bridge is there and ours.
    async fn make_bridge_of(
        &self,
        name: &NetworkName,
        plan: &guestnet_mode_api::Plan,
        index: Option<u32>,
    ) -> Result<(), String> {
        let snapshot = self.kernel.snapshot().await.map_err(|e| e.to_string())?;
        if Self::own_bridge(&snapshot, name, plan).is_some() {
            return Ok(());
        }
        let index = index.filter(|i| snapshot.link_by_index(*i).is_none());
        links::apply(&self.kernel, plan, name.as_str(), &snapshot, index)
            .await
            .map_err(|e| e.to_string())
    }

    /// Takes back one network whose bridge is in place: its links as the
    /// record says (an Update killed half-way is rolled forward), its
    /// guests, its servers.
    async fn readopt_one(&self, record: AppliedRecord, snapshot: &Snapshot) {
        let name = record.definition.name.clone();
        let from = record.previous.as_ref().unwrap_or(&record.plan);
        if let Err(e) =
            links::update(&self.kernel, from, &record.plan, name.as_str(), snapshot).await
        {
            tracing::warn!("bringing the links of {name} to its record: {e}");
        }
        if record.previous.is_some() {
            let finished = AppliedRecord {
                previous: None,
                ..record.clone()
            };
            if let Err(e) = self.runtime.save(&finished) {
                tracing::warn!("recording network {name} as updated: {e}");
            }
        }
        self.watch_bridge(&name, &record.plan).await;
        self.adopt_shared(&name, &record.plan).await;
        let slot = {
            let mut table = self.table.write().expect("table lock");
            table
                .entry(name.clone())
                .or_insert_with(|| {
                    Slot::new(
                        Network {
                            definition: record.definition.clone(),
                            persistent: false,
                            plan: None,
                        },
                        true,
                    )
                })
                .clone()
        };
        match self.start_services(&name, &record.plan).await {
            Ok(services) => slot.put_services(services),
            Err(e) => tracing::error!("restarting the servers of network {name}: {e}"),
        }
        let mut n = slot.network();
        // What runs is what the record says; an Update killed between
        // applying and saving is rolled forward.
        if n.persistent && n.definition != record.definition {
            if let Err(e) = self.definitions.save(&record.definition) {
                tracing::warn!("saving the running definition of {name}: {e}");
            }
            n.definition = record.definition.clone();
        }
        n.plan = Some(record.plan);
        slot.set(n);
    }
}
