//! The networks guestnetd knows and their life cycle: define, start, stop,
//! update, undefine. Every operation either completes or leaves things as
//! they were; the kernel, the firewall, the sysctls and the files on disk
//! change together.

use crate::dhcp::server::{DhcpServer, EventSink};
use crate::dhcp::{Lease, LeaseChange, LeaseEvent};
use crate::dns::{DnsServer, SharedZone, Upstreams, Zone};
use crate::error::ServiceError;
use crate::files::{AppliedRecord, DefinitionStore, Phase, RuntimeStore};
use crate::firewall::{self, NetworkRules};
use crate::guests::watch::{Registry, SharedRegistry, WatchedBridge};
use crate::guests::{
    self, AttachKind, AttachRequest, GuestEvent, GuestRecord, GuestStore, PortKind,
};
use crate::host::facts;
use crate::host::kernel::Kernel;
use crate::host::links;
use crate::host::sysctl::SysctlKeeper;
use crate::mode_registry::ModeRegistry;
use guestnet_mode_api::{BridgePlan, Definition, MacAddr, NetworkName, Plan};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use tokio::sync::{broadcast, Mutex};

/// DNS is served on the standard port; the DNS module's tests use others.
const DNS_PORT: u16 = 53;
/// Lease events buffered for slow listeners (the D-Bus signal task).
const LEASE_EVENT_BACKLOG: usize = 65_536;

/// One network as guestnetd holds it.
#[derive(Debug, Clone)]
pub struct Network {
    pub definition: Definition,
    /// Stored in the config directory (else transient: gone when stopped).
    pub persistent: bool,
    /// The applied plan while the network is active.
    pub plan: Option<Plan>,
}

impl Network {
    pub fn is_active(&self) -> bool {
        self.plan.is_some()
    }

    /// The bridge in use when active, else the one the definition names.
    pub fn bridge(&self) -> String {
        match (&self.plan, &self.definition.bridge) {
            (Some(p), _) => p.bridge.name().to_string(),
            (None, Some(b)) => b.to_string(),
            (None, None) => String::new(),
        }
    }

    /// The host's addresses on the network, as CIDR strings.
    pub fn addresses(&self) -> Vec<String> {
        match &self.plan {
            Some(p) => p.addresses.iter().map(|a| a.to_string()).collect(),
            None => self
                .definition
                .ipv4
                .address
                .iter()
                .map(|a| a.to_string())
                .collect(),
        }
    }
}

/// What happened to a network that was stopped or undefined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It still exists (inactive, or now transient).
    Kept,
    /// It is gone: the D-Bus object must go too.
    Removed,
}

pub struct Paths {
    pub config_dir: PathBuf,
    pub state_dir: PathBuf,
    pub runtime_dir: PathBuf,
    /// Upstream DNS servers for networks whose definition names none.
    pub resolv_conf: PathBuf,
}

/// A lease change on a network.
#[derive(Debug, Clone)]
pub struct NetworkLeaseEvent {
    pub network: String,
    pub event: LeaseEvent,
}

/// The servers an active network runs; dropping them stops them.
struct Services {
    dhcp: Option<DhcpServer>,
    dns: Option<DnsServer>,
}

impl Services {
    /// Stops both servers and waits until their sockets are closed, so that
    /// a restart on the same address finds it free.
    async fn stop(self) {
        if let Some(d) = self.dhcp {
            d.stop().await;
        }
        if let Some(d) = self.dns {
            d.stop().await;
        }
    }
}

struct State {
    networks: BTreeMap<NetworkName, Network>,
    services: HashMap<NetworkName, Services>,
    sysctls: SysctlKeeper,
    /// The nft batch last applied, so an unchanged table is never rewritten.
    firewall: Option<String>,
}

pub struct Networks {
    modes: ModeRegistry,
    kernel: Kernel,
    definitions: DefinitionStore,
    runtime: RuntimeStore,
    leases_dir: PathBuf,
    runtime_dir: PathBuf,
    resolv_conf: PathBuf,
    lease_events: broadcast::Sender<NetworkLeaseEvent>,
    guest_events: broadcast::Sender<GuestEvent>,
    guest_store: GuestStore,
    registry: SharedRegistry,
    state: Mutex<State>,
    /// A copy of the networks for readers, published whenever the state
    /// lock is released: reading one network never waits for another's
    /// start or stop, which hold the lock through their kernel work.
    views: std::sync::RwLock<BTreeMap<NetworkName, Network>>,
}

/// The state, locked; publishes the networks to the readers' copy when
/// released.
struct StateGuard<'a> {
    guard: tokio::sync::MutexGuard<'a, State>,
    views: &'a std::sync::RwLock<BTreeMap<NetworkName, Network>>,
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        *self.views.write().expect("views lock") = self.guard.networks.clone();
    }
}

/// One port of a network's bridge, as ListGuests reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    pub ifname: String,
    pub mac: String,
    pub guest: String,
}

fn no_such(name: &str) -> ServiceError {
    ServiceError::NoSuchNetwork(name.to_owned())
}

impl Networks {
    pub fn new(modes: ModeRegistry, kernel: Kernel, paths: &Paths) -> Self {
        Self {
            modes,
            kernel,
            definitions: DefinitionStore::new(paths.config_dir.clone()),
            runtime: RuntimeStore::new(paths.runtime_dir.clone()),
            leases_dir: paths.state_dir.join("leases"),
            runtime_dir: paths.runtime_dir.clone(),
            resolv_conf: paths.resolv_conf.clone(),
            lease_events: broadcast::channel(LEASE_EVENT_BACKLOG).0,
            guest_events: broadcast::channel(LEASE_EVENT_BACKLOG).0,
            guest_store: GuestStore::new(paths.runtime_dir.clone()),
            registry: Arc::new(std::sync::RwLock::new(Registry::default())),
            views: std::sync::RwLock::new(BTreeMap::new()),
            state: Mutex::new(State {
                networks: BTreeMap::new(),
                services: HashMap::new(),
                firewall: None,
                sysctls: SysctlKeeper::load(paths.runtime_dir.clone()),
            }),
        }
    }

    pub fn mode_names(&self) -> Vec<String> {
        self.modes.names()
    }

    async fn snapshot(&self) -> Result<crate::host::kernel::Snapshot, ServiceError> {
        self.kernel
            .snapshot()
            .await
            .map_err(|e| ServiceError::failed("reading the host's interfaces", e))
    }

    async fn lock(&self) -> StateGuard<'_> {
        StateGuard {
            guard: self.state.lock().await,
            views: &self.views,
        }
    }

    pub async fn names(&self) -> Vec<NetworkName> {
        self.views
            .read()
            .expect("views lock")
            .keys()
            .cloned()
            .collect()
    }

    pub async fn get(&self, name: &str) -> Option<Network> {
        let key = NetworkName::new(name).ok()?;
        self.views.read().expect("views lock").get(&key).cloned()
    }

    /// Parses a definition and has its mode check it.
    fn parse_checked(&self, text: &str) -> Result<Definition, ServiceError> {
        let def =
            Definition::parse(text).map_err(|e| ServiceError::InvalidConfig(e.to_string()))?;
        let mode = self
            .modes
            .get(&def.mode)
            .ok_or_else(|| ServiceError::UnknownMode {
                mode: def.mode.clone(),
                loaded: self.modes.names().join(", "),
            })?;
        mode.validate(&def)?;
        Ok(def)
    }

    fn check_new(state: &State, def: &Definition) -> Result<(), ServiceError> {
        if state.networks.contains_key(&def.name) {
            return Err(ServiceError::AlreadyExists(format!(
                "a network named {:?} already exists",
                def.name.as_str()
            )));
        }
        if let Some(other) = state
            .networks
            .values()
            .find(|n| n.definition.uuid == def.uuid)
        {
            return Err(ServiceError::AlreadyExists(format!(
                "network {:?} already has uuid {}",
                other.definition.name.as_str(),
                def.uuid
            )));
        }
        Ok(())
    }

    /// Stores a new persistent definition.
    pub async fn define(&self, text: &str) -> Result<NetworkName, ServiceError> {
        let def = self.parse_checked(text)?;
        let mut state = self.lock().await;
        Self::check_new(&state, &def)?;
        self.definitions
            .save(&def)
            .map_err(|e| ServiceError::failed("saving the definition", e))?;
        let name = def.name.clone();
        state.networks.insert(
            name.clone(),
            Network {
                definition: def,
                persistent: true,
                plan: None,
            },
        );
        Ok(name)
    }

    /// Starts a transient network; nothing of it remains if it fails.
    pub async fn create(&self, text: &str) -> Result<NetworkName, ServiceError> {
        let def = self.parse_checked(text)?;
        let mut state = self.lock().await;
        Self::check_new(&state, &def)?;
        let plan = self.activate(&mut state, &def, false).await?;
        let name = def.name.clone();
        state.networks.insert(
            name.clone(),
            Network {
                definition: def,
                persistent: false,
                plan: Some(plan),
            },
        );
        Ok(name)
    }

    pub async fn start(&self, name: &str) -> Result<(), ServiceError> {
        let mut state = self.lock().await;
        let net = lookup(&state, name)?.clone();
        if net.is_active() {
            return Err(ServiceError::AlreadyActive(name.to_owned()));
        }
        let plan = self
            .activate(&mut state, &net.definition, net.persistent)
            .await?;
        if let Some(n) = state.networks.get_mut(&net.definition.name) {
            n.plan = Some(plan);
        }
        Ok(())
    }

    pub async fn stop(&self, name: &str) -> Result<Fate, ServiceError> {
        let mut state = self.lock().await;
        let net = lookup(&state, name)?.clone();
        let Some(plan) = &net.plan else {
            return Err(ServiceError::NotActive(name.to_owned()));
        };
        let result = self
            .deactivate(&mut state, &net.definition.name, plan)
            .await;
        let fate = if net.persistent {
            if let Some(n) = state.networks.get_mut(&net.definition.name) {
                n.plan = None;
            }
            Fate::Kept
        } else {
            state.networks.remove(&net.definition.name);
            self.forget_leases(&net.definition.name);
            Fate::Removed
        };
        result.map(|()| fate)
    }

    /// Removes the stored definition. An active network goes on running as
    /// a transient one, as libvirt does; an inactive one is gone.
    pub async fn undefine(&self, name: &str) -> Result<Fate, ServiceError> {
        let mut state = self.lock().await;
        let net = lookup(&state, name)?.clone();
        if !net.persistent {
            return Err(ServiceError::Failed(format!(
                "network {name:?} is transient: it has no definition to remove; Stop removes it"
            )));
        }
        self.definitions
            .remove(&net.definition.name)
            .map_err(|e| ServiceError::failed("removing the definition", e))?;
        if net.is_active() {
            let n = state
                .networks
                .get_mut(&net.definition.name)
                .expect("looked up");
            n.persistent = false;
            let record = self.record_of(n);
            let _ = self.runtime.save(&record);
            Ok(Fate::Kept)
        } else {
            state.networks.remove(&net.definition.name);
            self.forget_leases(&net.definition.name);
            Ok(Fate::Removed)
        }
    }

    /// Removes lease journals of networks that no longer exist (an Undefine
    /// killed between removing the definition and the journal).
    fn remove_orphan_journals(&self, state: &State) {
        let Ok(entries) = std::fs::read_dir(&self.leases_dir) else {
            return;
        };
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            let known = path
                .file_stem()
                .and_then(|s| NetworkName::new(&s.to_string_lossy()).ok())
                .is_some_and(|n| state.networks.contains_key(&n));
            if path.extension().is_some_and(|x| x == "journal") && !known {
                tracing::info!(
                    "removing {}, the leases of a network that is gone",
                    path.display()
                );
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    /// Removes the lease journal of a network that is gone for good.
    fn forget_leases(&self, name: &NetworkName) {
        if let Err(e) = crate::files::remove(&self.journal_path(name)) {
            tracing::warn!("removing the leases of {name}: {e}");
        }
    }

    /// Replaces a definition. An active network is restarted on the new
    /// one; if that fails it is brought back on the old one and the update
    /// is refused.
    pub async fn update(&self, name: &str, text: &str) -> Result<(), ServiceError> {
        let mut new = self.parse_checked(text)?;
        let mut state = self.lock().await;
        let old = lookup(&state, name)?.clone();
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
        if let Some(old_plan) = &old.plan {
            self.deactivate(&mut state, &old.definition.name, old_plan)
                .await?;
            match self.activate(&mut state, &new, old.persistent).await {
                Ok(plan) => self.set_plan(&mut state, &new.name, Some(plan)),
                Err(e) => {
                    let back = self
                        .activate(&mut state, &old.definition, old.persistent)
                        .await;
                    self.set_plan(&mut state, &new.name, back.ok());
                    return Err(e);
                }
            }
        }
        if old.persistent {
            self.definitions
                .save(&new)
                .map_err(|e| ServiceError::failed("saving the definition", e))?;
        }
        let n = state.networks.get_mut(&new.name).expect("looked up");
        n.definition = new;
        if n.is_active() {
            let record = self.record_of(n);
            let _ = self.runtime.save(&record);
        }
        Ok(())
    }

    pub async fn set_autostart(&self, name: &str, on: bool) -> Result<(), ServiceError> {
        let mut state = self.lock().await;
        let net = lookup(&state, name)?.clone();
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
        let key = def.name.clone();
        state.networks.get_mut(&key).expect("looked up").definition = def;
        Ok(())
    }

    fn set_plan(&self, state: &mut State, name: &NetworkName, plan: Option<Plan>) {
        if let Some(n) = state.networks.get_mut(name) {
            n.plan = plan;
        }
    }

    fn record_of(&self, n: &Network) -> AppliedRecord {
        AppliedRecord {
            definition: n.definition.clone(),
            persistent: n.persistent,
            plan: n.plan.clone().expect("only active networks have records"),
            phase: Phase::Active,
        }
    }

    /// Plans and applies a network. On any failure everything it did is
    /// undone before the error is returned.
    async fn activate(
        &self,
        state: &mut State,
        def: &Definition,
        persistent: bool,
    ) -> Result<Plan, ServiceError> {
        let name = def.name.as_str();
        let mode = self
            .modes
            .get(&def.mode)
            .ok_or_else(|| ServiceError::UnknownMode {
                mode: def.mode.clone(),
                loaded: self.modes.names().join(", "),
            })?;
        let snapshot = self.snapshot().await?;
        let plan = mode.plan(def, &facts::facts(&snapshot))?;
        facts::conflicts(
            &plan,
            &snapshot,
            name,
            &state
                .networks
                .iter()
                .filter(|(other, _)| other.as_str() != name)
                .filter_map(|(other, n)| Some((other.as_str(), n.plan.as_ref()?)))
                .collect::<Vec<_>>(),
        )
        .map_err(ServiceError::Conflict)?;
        // The record goes first: a crash from here on leaves a trace that
        // tells the next guestnetd what to clean up.
        let mut record = AppliedRecord {
            definition: def.clone(),
            persistent,
            plan: plan.clone(),
            phase: Phase::Applying,
        };
        self.runtime
            .save(&record)
            .map_err(|e| ServiceError::failed("recording the network", e))?;
        if let Err(e) = links::apply(&self.kernel, &plan, name).await {
            let _ = self.runtime.remove(&def.name);
            return Err(ServiceError::starting(name, e));
        }
        let shared = self
            .apply_shared(state, Some((&def.name, &plan)), None)
            .await;
        let services = match shared {
            Ok(()) => self.start_services(&def.name, &plan).await,
            Err(e) => Err(e),
        };
        match services {
            Ok(services) => {
                state.services.insert(def.name.clone(), services);
                self.watch_bridge(&def.name, &plan).await;
                record.phase = Phase::Active;
                if let Err(e) = self.runtime.save(&record) {
                    tracing::warn!("recording network {name} as active: {e}");
                }
                Ok(plan)
            }
            Err(e) => {
                for err in links::teardown(&self.kernel, &plan, name).await {
                    tracing::warn!("rolling back {name}: {err}");
                }
                let _ = self.apply_shared(state, None, Some(&def.name)).await;
                let _ = self.runtime.remove(&def.name);
                if !persistent {
                    self.forget_leases(&def.name);
                }
                Err(e)
            }
        }
    }

    fn journal_path(&self, name: &NetworkName) -> PathBuf {
        self.leases_dir.join(format!("{name}.journal"))
    }

    /// Starts the DHCP and DNS servers the plan asks for.
    async fn start_services(
        &self,
        name: &NetworkName,
        plan: &Plan,
    ) -> Result<Services, ServiceError> {
        let bridge = plan.bridge.name().as_str();
        let zone: SharedZone = Arc::new(RwLock::new(match &plan.dns {
            Some(d) => Zone::new(d.domain.clone(), &d.records),
            None => Zone::new(None, &[]),
        }));
        let dhcp = match &plan.dhcp {
            None => None,
            Some(d) => {
                let sink = self.lease_sink(name, zone.clone());
                let server = DhcpServer::start(bridge, d.clone(), &self.journal_path(name), sink)
                    .await
                    .map_err(|e| ServiceError::failed(&format!("starting DHCP on {bridge}"), e))?;
                let mut z = zone.write().expect("zone lock");
                for lease in server.leases() {
                    if let Some(h) = &lease.hostname {
                        z.add_lease(h, lease.ip);
                    }
                }
                drop(z);
                Some(server)
            }
        };
        let dns = match &plan.dns {
            None => None,
            Some(d) => {
                let upstreams = if d.forwarders.is_empty() {
                    Upstreams::resolv_conf(self.resolv_conf.clone())
                } else {
                    Upstreams::fixed(d.forwarders.clone())
                };
                let server = DnsServer::start(bridge, d.listen, DNS_PORT, zone, upstreams)
                    .await
                    .map_err(|e| {
                        ServiceError::failed(&format!("starting DNS on {}", d.listen), e)
                    })?;
                Some(server)
            }
        };
        Ok(Services { dhcp, dns })
    }

    /// Where a network's DHCP server reports durable lease changes: its DNS
    /// zone and the lease event channel.
    fn lease_sink(&self, name: &NetworkName, zone: SharedZone) -> EventSink {
        let tx = self.lease_events.clone();
        let network = name.to_string();
        Arc::new(move |events: &[LeaseEvent]| {
            {
                let mut z = zone.write().expect("zone lock");
                for e in events {
                    let Some(host) = &e.lease.hostname else {
                        continue;
                    };
                    match e.change {
                        LeaseChange::Added | LeaseChange::Renewed => z.add_lease(host, e.lease.ip),
                        LeaseChange::Removed => z.remove_lease(host, e.lease.ip),
                    }
                }
            }
            for e in events {
                let _ = tx.send(NetworkLeaseEvent {
                    network: network.clone(),
                    event: e.clone(),
                });
            }
        })
    }

    /// Every lease change of every network, from now on.
    pub fn subscribe_leases(&self) -> broadcast::Receiver<NetworkLeaseEvent> {
        self.lease_events.subscribe()
    }

    /// The leases of a network (none while it is inactive).
    pub async fn leases(&self, name: &str) -> Result<Vec<Lease>, ServiceError> {
        let state = self.lock().await;
        let net = lookup(&state, name)?;
        Ok(state
            .services
            .get(&net.definition.name)
            .and_then(|s| s.dhcp.as_ref())
            .map(|d| d.leases())
            .unwrap_or_default())
    }

    pub async fn lease_of(&self, name: &str, mac: &MacAddr) -> Result<Option<Lease>, ServiceError> {
        let state = self.lock().await;
        let net = lookup(&state, name)?;
        Ok(state
            .services
            .get(&net.definition.name)
            .and_then(|s| s.dhcp.as_ref())
            .and_then(|d| d.lease_of(mac)))
    }

    /// Tears a network down; every step runs even when an earlier one fails.
    async fn deactivate(
        &self,
        state: &mut State,
        name: &NetworkName,
        plan: &Plan,
    ) -> Result<(), ServiceError> {
        if let Some(net) = state.networks.get(name) {
            let record = AppliedRecord {
                definition: net.definition.clone(),
                persistent: net.persistent,
                plan: plan.clone(),
                phase: Phase::Stopping,
            };
            if let Err(e) = self.runtime.save(&record) {
                tracing::warn!("recording network {name} as stopping: {e}");
            }
        }
        if let Some(services) = state.services.remove(name) {
            services.stop().await;
        }
        self.unplug_guests(name, plan).await;
        let mut problems: Vec<String> = links::teardown(&self.kernel, plan, name.as_str())
            .await
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        if let Err(e) = self.apply_shared(state, None, Some(name)).await {
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

    /// Reconciles what active networks share (sysctls and the firewall table)
    /// with the active set, plus `adding`, less `removing`.
    async fn apply_shared(
        &self,
        state: &mut State,
        adding: Option<(&NetworkName, &Plan)>,
        removing: Option<&NetworkName>,
    ) -> Result<(), ServiceError> {
        let mut active: Vec<(&NetworkName, &Plan)> = state
            .networks
            .iter()
            .filter(|(n, _)| Some(*n) != removing && adding.is_none_or(|(a, _)| a != *n))
            .filter_map(|(n, net)| net.plan.as_ref().map(|p| (n, p)))
            .collect();
        active.extend(adding);
        // One order however the set was reached, so the same networks
        // always render the same batch (and a restart rewrites nothing).
        active.sort_by(|a, b| a.0.cmp(b.0));
        let sysctls: Vec<_> = active.iter().flat_map(|(_, p)| p.sysctls.clone()).collect();
        let rules: Vec<NetworkRules> = active
            .iter()
            .map(|(n, p)| NetworkRules {
                network: n.to_string(),
                bridge: p.bridge.name().clone(),
                policy: p.firewall.clone(),
            })
            .collect();
        let batch = firewall::render(&rules);
        let docker = firewall::docker_user_batch(&rules).await;
        let changed = state.firewall.as_deref() != Some(batch.as_str());
        if changed || !docker.is_empty() {
            // Both in one batch: all of it applies or none.
            let full = if changed {
                format!("{batch}{docker}")
            } else {
                docker
            };
            firewall::run_nft(&full)
                .await
                .map_err(|e| ServiceError::failed("updating the firewall", e))?;
            if let Err(e) = crate::files::write_atomic(&self.firewall_record(), batch.as_bytes()) {
                tracing::warn!("recording the firewall: {e}");
            }
            state.firewall = Some(batch);
        }
        crate::firewall::firewalld::set_bridges(
            rules.iter().filter_map(|r| {
                firewalld_kind(&r.policy).map(|k| (r.bridge.as_str().to_owned(), k))
            }),
        )
        .await;
        state
            .sysctls
            .reconcile(&sysctls)
            .map_err(|e| ServiceError::failed("setting sysctls", e))
    }

    fn firewall_record(&self) -> PathBuf {
        self.runtime_dir.join("firewall.nft")
    }

    /// Takes the table guestnetd last applied as current when it is still
    /// in the kernel, so a restart rewrites nothing that is in place.
    async fn load_firewall_record(&self, state: &mut State) {
        let Ok(batch) = std::fs::read_to_string(self.firewall_record()) else {
            return;
        };
        // Trusted only if the kernel holds exactly that batch: a guestnetd
        // killed between `nft` and writing the record leaves them apart.
        let (recorded, kernel) = (
            firewall::batch_fingerprint(&batch),
            firewall::kernel_fingerprint().await,
        );
        if recorded == kernel {
            state.firewall = Some(batch);
        } else {
            tracing::debug!("the firewall record {recorded:?} is not the kernel's {kernel:?}");
        }
    }

    /// Re-applies guestnet's table if someone deleted it (an `nft flush
    /// ruleset`, say), and its DOCKER-USER rules if Docker's chain appeared
    /// or lost them. Called by the firewall guard.
    pub async fn restore_firewall(&self) {
        let mut state = self.lock().await;
        let Some(batch) = state.firewall.clone() else {
            return;
        };
        if batch.lines().count() > 2 && !firewall::table_exists().await {
            tracing::warn!("guestnet's nftables table was deleted by someone else; restoring it");
            state.firewall = None;
        }
        if let Err(e) = self.apply_shared(&mut state, None, None).await {
            tracing::error!("restoring the firewall: {e}");
        }
    }

    /// Loads stored definitions, re-adopts networks that were active when
    /// guestnetd last ran, and starts the autostart ones. Problems are logged;
    /// one bad network never stops the others.
    pub async fn recover(&self) {
        let mut state = self.lock().await;
        for dir in [
            self.runtime_dir.clone(),
            self.runtime_dir.join("guests"),
            self.leases_dir.clone(),
        ] {
            crate::files::remove_stale_temps(&dir);
        }
        let (defs, bad) = self.definitions.load_all();
        for b in bad {
            tracing::warn!("ignoring {}: {}", b.path.display(), b.reason);
        }
        for def in defs {
            state.networks.insert(
                def.name.clone(),
                Network {
                    definition: def,
                    persistent: true,
                    plan: None,
                },
            );
        }
        self.load_firewall_record(&mut state).await;
        self.readopt(&mut state).await;
        self.remove_orphan_journals(&state);
        if let Err(e) = self.apply_shared(&mut state, None, None).await {
            tracing::error!("restoring the firewall and sysctls: {e}");
        }
        let autostart: Vec<Definition> = state
            .networks
            .values()
            .filter(|n| n.persistent && n.definition.autostart && !n.is_active())
            .map(|n| n.definition.clone())
            .collect();
        for def in autostart {
            match self.activate(&mut state, &def, true).await {
                Ok(plan) => {
                    tracing::info!("autostarted network {}", def.name);
                    self.set_plan(&mut state, &def.name, Some(plan));
                }
                Err(e) => tracing::error!("autostarting network {}: {e}", def.name),
            }
        }
    }

    /// Takes back networks whose bridge is still there; cleans up after
    /// those whose bridge is gone.
    async fn readopt(&self, state: &mut State) {
        let (records, bad) = self.runtime.load_all();
        for b in bad {
            tracing::warn!("ignoring {}: {}", b.path.display(), b.reason);
            let _ = std::fs::remove_file(&b.path);
        }
        let snapshot = match self.kernel.snapshot().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot read the host's interfaces: {e}");
                return;
            }
        };
        for record in records {
            let name = record.definition.name.clone();
            if record.phase == Phase::Applying {
                // A bridge created just before the kill may not carry its
                // mark yet; the name was free when the start began.
                if let BridgePlan::Create { name: br, .. } = &record.plan.bridge {
                    if let Some(l) = snapshot.link(br.as_str()) {
                        if l.alias.is_none() && l.kind.as_deref() == Some("bridge") {
                            let alias = facts::bridge_alias(name.as_str());
                            let _ = self.kernel.set_alias(l.index, &l.name, &alias).await;
                        }
                    }
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
                self.delete_made_ports(&name).await;
                for e in links::teardown(&self.kernel, &record.plan, name.as_str()).await {
                    tracing::warn!("cleaning up {name}: {e}");
                }
                let _ = self.runtime.remove(&name);
                if !record.persistent {
                    self.forget_leases(&name);
                }
                continue;
            }
            let alive = snapshot
                .link(record.plan.bridge.name().as_str())
                .is_some_and(|l| {
                    matches!(
                        record.plan.bridge,
                        guestnet_mode_api::BridgePlan::Existing { .. }
                    ) || l.alias.as_deref() == Some(&facts::bridge_alias(name.as_str()))
                });
            if !alive {
                tracing::warn!("network {name} was active but its bridge is gone; cleaning up");
                for e in links::teardown(&self.kernel, &record.plan, name.as_str()).await {
                    tracing::warn!("cleaning up {name}: {e}");
                }
                let _ = self.runtime.remove(&name);
                continue;
            }
            self.watch_bridge(&name, &record.plan).await;
            match self.start_services(&name, &record.plan).await {
                Ok(services) => {
                    state.services.insert(name.clone(), services);
                }
                Err(e) => tracing::error!("restarting the servers of network {name}: {e}"),
            }
            match state.networks.get_mut(&name) {
                Some(n) => {
                    // What runs is what the record says; an Update killed
                    // between applying and saving is rolled forward.
                    if n.persistent && n.definition != record.definition {
                        if let Err(e) = self.definitions.save(&record.definition) {
                            tracing::warn!("saving the running definition of {name}: {e}");
                        }
                        n.definition = record.definition.clone();
                    }
                    n.plan = Some(record.plan);
                }
                None => {
                    state.networks.insert(
                        name.clone(),
                        Network {
                            definition: record.definition,
                            persistent: false,
                            plan: Some(record.plan),
                        },
                    );
                }
            }
            tracing::info!("re-adopted active network {name}");
        }
    }
}

impl Networks {
    /// Announces guests joining and leaving guestnet bridges from the
    /// kernel's link events; call once, after `recover`.
    pub async fn watch_guests(&self) -> Result<(), ServiceError> {
        let links = crate::host::kernel::watch_links()
            .map_err(|e| ServiceError::failed("subscribing to link events", e))?;
        let initial = self.snapshot().await?;
        tokio::spawn(crate::guests::watch::run(
            links,
            initial,
            self.registry.clone(),
            self.guest_events.clone(),
        ));
        Ok(())
    }

    /// Every guest arriving or leaving, from now on.
    pub fn subscribe_guests(&self) -> broadcast::Receiver<GuestEvent> {
        self.guest_events.subscribe()
    }

    /// Tells the watcher about an active network's bridge and loads the
    /// records of the ports made for it.
    async fn watch_bridge(&self, name: &NetworkName, plan: &Plan) {
        let Ok(Some(bridge)) = self.kernel.link_by_name(plan.bridge.name().as_str()).await else {
            return;
        };
        let uplink = match &plan.bridge {
            guestnet_mode_api::BridgePlan::EnslaveUplink { uplink, .. } => Some(uplink.to_string()),
            _ => None,
        };
        let mut records = self.guest_store.load(name);
        // Ports that vanished while nobody watched (a container that exited).
        let before = records.len();
        if let Ok(snapshot) = self.kernel.snapshot().await {
            // Ports an AttachGuest killed half-way left off the bridge are
            // deleted: they were never announced or returned to anyone.
            let mut half_made = Vec::new();
            records.retain(|ifname, _| match snapshot.link(ifname) {
                None => false,
                Some(l) if l.master != Some(bridge.index) => {
                    half_made.push((l.index, l.name.clone()));
                    false
                }
                Some(_) => true,
            });
            for (index, ifname) in half_made {
                tracing::warn!("removing {ifname}, a guest port left half-made by a crash");
                let _ = self.kernel.delete_link(index, &ifname).await;
            }
            for ifname in records.keys() {
                if let Some(l) = snapshot.link(ifname) {
                    let _ = self.kernel.set_up(l.index, ifname).await;
                }
            }
        }
        if records.len() != before {
            if let Err(e) = self.guest_store.save(name, &records) {
                tracing::warn!("forgetting vanished guest ports of {name}: {e}");
            }
        }
        let mut reg = self.registry.write().expect("registry lock");
        reg.bridges.insert(
            bridge.index,
            WatchedBridge {
                network: name.to_string(),
                uplink,
            },
        );
        reg.records.extend(records);
    }

    /// Before a network stops: announces each guest leaving, forgets the
    /// bridge, and deletes the ports guestnetd made for it.
    async fn unplug_guests(&self, name: &NetworkName, plan: &Plan) {
        let guests = self.ports_of(plan).await;
        let records = self.guest_store.load(name);
        {
            let mut reg = self.registry.write().expect("registry lock");
            reg.bridges.retain(|_, b| b.network != name.as_str());
            for ifname in records.keys() {
                reg.records.remove(ifname);
            }
        }
        for g in guests {
            let _ = self.guest_events.send(GuestEvent {
                network: name.to_string(),
                ifname: g.ifname,
                mac: g.mac,
                guest: g.guest,
                attached: false,
            });
        }
        for r in records.values() {
            if let Ok(Some(link)) = self.kernel.link_by_name(&r.ifname).await {
                if let Err(e) = self.kernel.delete_link(link.index, &link.name).await {
                    tracing::warn!("removing guest port {}: {e}", r.ifname);
                }
            }
        }
        if let Err(e) = self.guest_store.save(name, &BTreeMap::new()) {
            tracing::warn!("forgetting the guests of {name}: {e}");
        }
    }

    /// Deletes the ports guestnetd made for a network and forgets them.
    async fn delete_made_ports(&self, name: &NetworkName) {
        for r in self.guest_store.load(name).values() {
            if let Ok(Some(link)) = self.kernel.link_by_name(&r.ifname).await {
                if let Err(e) = self.kernel.delete_link(link.index, &link.name).await {
                    tracing::warn!("removing guest port {}: {e}", r.ifname);
                }
            }
        }
        let _ = self.guest_store.save(name, &BTreeMap::new());
    }

    /// The ports of a plan's bridge, less a bridged network's uplink.
    async fn ports_of(&self, plan: &Plan) -> Vec<Guest> {
        let Ok(snapshot) = self.kernel.snapshot().await else {
            return Vec::new();
        };
        let Some(bridge) = snapshot.link(plan.bridge.name().as_str()) else {
            return Vec::new();
        };
        let reg = self.registry.read().expect("registry lock");
        snapshot
            .links
            .iter()
            .filter(|l| l.master == Some(bridge.index))
            .filter_map(|l| {
                reg.event(bridge.index, l, true).map(|e| Guest {
                    ifname: e.ifname,
                    mac: e.mac,
                    guest: e.guest,
                })
            })
            .collect()
    }

    pub async fn list_guests(&self, name: &str) -> Result<Vec<Guest>, ServiceError> {
        let plan = self.get(name).await.ok_or_else(|| no_such(name))?.plan;
        Ok(match plan {
            Some(plan) => self.ports_of(&plan).await,
            None => Vec::new(),
        })
    }

    /// Makes a port for a guest on an active network and returns its name.
    /// Nothing is left behind when a step fails.
    pub async fn attach_guest(
        &self,
        name: &str,
        guest: &str,
        request: AttachRequest,
    ) -> Result<String, ServiceError> {
        guests::check_guest_name(guest)?;
        let state = self.lock().await;
        let active = active_network(&state, name)?;
        let (network, uuid) = (active.name.clone(), active.uuid);
        let bridge = self.bridge_of(name, active.plan).await?;
        let ifname = self.free_port_name(&request.kind).await?;
        let mac = match request.mac {
            Some(m) => m,
            None => self.free_stable_mac(&uuid, guest, &network),
        };
        let record = GuestRecord {
            ifname: ifname.clone(),
            mac,
            guest: guest.to_owned(),
            port: match request.kind {
                AttachKind::Tap { owner } => PortKind::Tap { owner },
                AttachKind::Veth { .. } => PortKind::Veth,
            },
        };
        // Known before the port joins the bridge, so its event carries the name.
        self.registry
            .write()
            .expect("registry lock")
            .records
            .insert(ifname.clone(), record.clone());
        // Recorded before it exists: a crash from here on leaves a record
        // naming the port, so the port is never an orphan.
        let mut records = self.guest_store.load(&network);
        records.insert(ifname.clone(), record);
        if let Err(e) = self.guest_store.save(&network, &records) {
            self.registry
                .write()
                .expect("registry lock")
                .records
                .remove(&ifname);
            return Err(ServiceError::failed("recording the guest", e));
        }
        let made = self.make_port(&ifname, &request, mac, &bridge).await;
        if let Err(e) = made {
            self.registry
                .write()
                .expect("registry lock")
                .records
                .remove(&ifname);
            if let Ok(Some(l)) = self.kernel.link_by_name(&ifname).await {
                let _ = self.kernel.delete_link(l.index, &l.name).await;
            }
            records.remove(&ifname);
            if let Err(e) = self.guest_store.save(&network, &records) {
                tracing::warn!("forgetting the failed guest port {ifname}: {e}");
            }
            return Err(e);
        }
        drop(state);
        Ok(ifname)
    }

    /// The bridge of an active network, looked up by name rather than by a
    /// dump of the host, so the thousandth guest costs what the first did.
    async fn bridge_of(
        &self,
        name: &str,
        plan: &Plan,
    ) -> Result<crate::host::kernel::Link, ServiceError> {
        self.kernel
            .link_by_name(plan.bridge.name().as_str())
            .await
            .map_err(|e| ServiceError::failed("looking up the bridge", e))?
            .ok_or_else(|| ServiceError::Failed(format!("the bridge of {name:?} is gone")))
    }

    /// The first `gntapN` or `gnvethN` that is neither one of our ports nor
    /// any other link of the host.
    async fn free_port_name(&self, kind: &AttachKind) -> Result<String, ServiceError> {
        let prefix = match kind {
            AttachKind::Tap { .. } => "gntap",
            AttachKind::Veth { .. } => "gnveth",
        };
        for i in 0..10_000 {
            let candidate = format!("{prefix}{i}");
            let ours = self
                .registry
                .read()
                .expect("registry lock")
                .records
                .contains_key(&candidate);
            if ours {
                continue;
            }
            let taken = self
                .kernel
                .link_by_name(&candidate)
                .await
                .map_err(|e| ServiceError::failed("looking for a free interface name", e))?;
            if taken.is_none() {
                return Ok(candidate);
            }
        }
        Err(ServiceError::Failed("no free interface name".into()))
    }

    /// The guest's stable MAC, or, when that guest already has a port on
    /// this network, the next stable one no port there uses.
    fn free_stable_mac(&self, uuid: &uuid::Uuid, guest: &str, network: &NetworkName) -> MacAddr {
        let taken: Vec<MacAddr> = self
            .guest_store
            .load(network)
            .values()
            .map(|r| r.mac)
            .collect();
        (0u32..)
            .map(|n| {
                if n == 0 {
                    guests::stable_mac(uuid, guest)
                } else {
                    guests::stable_mac(uuid, &format!("{guest}#{n}"))
                }
            })
            .find(|m| !taken.contains(m))
            .expect("an unbounded search finds a free MAC")
    }

    async fn make_port(
        &self,
        ifname: &str,
        request: &AttachRequest,
        mac: MacAddr,
        bridge: &crate::host::kernel::Link,
    ) -> Result<(), ServiceError> {
        let failed =
            |e: &dyn std::fmt::Display| ServiceError::Failed(format!("attaching {ifname}: {e}"));
        let index = match &request.kind {
            AttachKind::Tap { owner } => {
                crate::host::tap::create(ifname, *owner).map_err(|e| failed(&e))?;
                let link = self
                    .kernel
                    .link_by_name(ifname)
                    .await
                    .map_err(|e| failed(&e))?
                    .ok_or_else(|| failed(&"the tap vanished"))?;
                self.kernel
                    .set_mtu(link.index, ifname, bridge.mtu)
                    .await
                    .map_err(|e| failed(&e))?;
                link.index
            }
            AttachKind::Veth {
                netns,
                ifname: peer,
            } => {
                let ns = std::fs::File::open(netns).map_err(|e| {
                    ServiceError::InvalidArgs(format!("netns: {}: {e}", netns.display()))
                })?;
                if !crate::host::tap::is_network_namespace(&ns) {
                    return Err(ServiceError::InvalidArgs(format!(
                        "netns: {} is not a network namespace (use /run/netns/NAME or /proc/PID/ns/net)",
                        netns.display()
                    )));
                }
                use std::os::fd::AsRawFd;
                self.kernel
                    .create_veth(
                        ifname,
                        peer.as_str(),
                        ns.as_raw_fd(),
                        mac.0,
                        Some(bridge.mtu),
                    )
                    .await
                    .map_err(|e| failed(&e))?
            }
        };
        crate::host::sysctl::disable_ipv6_on_port(ifname);
        self.kernel
            .set_master(index, ifname, Some(bridge.index))
            .await
            .map_err(|e| failed(&e))?;
        self.kernel
            .set_up(index, ifname)
            .await
            .map_err(|e| failed(&e))
    }

    /// Removes a port guestnetd made, or releases one someone else put on
    /// the bridge (leaving it otherwise alone).
    pub async fn detach_guest(&self, name: &str, ifname: &str) -> Result<(), ServiceError> {
        let state = self.lock().await;
        let active = active_network(&state, name)?;
        let network = active.name.clone();
        let bridge = self.bridge_of(name, active.plan).await?;
        let port = self
            .kernel
            .link_by_name(ifname)
            .await
            .map_err(|e| ServiceError::failed("looking up the port", e))?
            .filter(|l| l.master == Some(bridge.index))
            .ok_or_else(|| {
                ServiceError::InvalidArgs(format!("{ifname:?} is not a port of network {name:?}"))
            })?;
        let mut records = self.guest_store.load(&network);
        let result = if records.remove(ifname).is_some() {
            let r = self.kernel.delete_link(port.index, ifname).await;
            if r.is_ok() {
                if let Err(e) = self.guest_store.save(&network, &records) {
                    tracing::warn!("forgetting guest port {ifname}: {e}");
                }
            }
            r
        } else {
            self.kernel.set_master(port.index, ifname, None).await
        };
        drop(state);
        result.map_err(|e| ServiceError::failed(&format!("detaching {ifname}"), e))?;
        Ok(())
    }
}

/// What guest calls need of a network that must be active.
struct ActiveNetwork<'a> {
    name: &'a NetworkName,
    uuid: uuid::Uuid,
    plan: &'a Plan,
}

fn active_network<'a>(state: &'a State, name: &str) -> Result<ActiveNetwork<'a>, ServiceError> {
    let net = lookup(state, name)?;
    let plan = net
        .plan
        .as_ref()
        .ok_or_else(|| ServiceError::NotActive(name.to_owned()))?;
    Ok(ActiveNetwork {
        name: &net.definition.name,
        uuid: net.definition.uuid,
        plan,
    })
}

fn lookup<'a>(state: &'a State, name: &str) -> Result<&'a Network, ServiceError> {
    let key = NetworkName::new(name).map_err(|_| no_such(name))?;
    state.networks.get(&key).ok_or_else(|| no_such(name))
}

fn text_has_uuid(text: &str) -> bool {
    toml::from_str::<toml::Table>(text).is_ok_and(|t| t.contains_key("uuid"))
}

/// What a network's bridge needs from firewalld: nothing for a bridge
/// without firewall rules (bridged mode: the host is a plain switch), a way
/// in from the LAN for routed networks, and a way out for the others.
fn firewalld_kind(
    policy: &guestnet_mode_api::FirewallPolicy,
) -> Option<crate::firewall::firewalld::Kind> {
    use crate::firewall::firewalld::Kind;
    use guestnet_mode_api::FirewallPolicy as P;
    match policy {
        P::None => None,
        P::Routed { .. } => Some(Kind::Routed),
        P::Isolated { .. } | P::Nat { .. } => Some(Kind::Closed),
    }
}
