//! The networks guestnetd knows and their life cycle: define, start, stop,
//! update, undefine. Every operation either completes or leaves things as
//! they were; the kernel, the firewall, the sysctls and the files on disk
//! change together.
//!
//! One room per concern:
//! - this file: the table of networks and what readers ask of it;
//! - [`lifecycle`]: define, create, start, stop, undefine, autostart;
//! - [`update`]: Update as a diff of two plans, applied in place;
//! - [`shared`]: what active networks share (the firewall table, sysctls);
//! - [`recovery`]: taking networks back after a restart;
//! - [`ports`]: guest ports (AttachGuest, DetachGuest, ListGuests);
//! - [`services`]: each active network's DHCP and DNS servers.
//!
//! Locks, from the outside in (never the other way round, and none of them
//! held across a blocking call on anything a caller supplied):
//! - `Slot::ops` (tokio) serializes the changes of one network: a Start of
//!   one network never waits for another's Stop;
//! - `planning` (tokio) covers reading the host, planning and creating
//!   links, so two starts never pick the same bridge name or subnet;
//! - `shared` (tokio) covers rendering and applying the firewall table and
//!   sysctls, which every active network shares;
//! - `table`, `Slot::view` and `Slot::services` are std locks held only to
//!   copy or swap a value, never across an await: readers (ListNetworks,
//!   properties, ListLeases, WaitForLease) never wait for a writer's
//!   kernel work.

mod forwards;
mod lifecycle;
mod ports;
mod recovery;
mod services;
mod shared;
mod update;
mod warnings;

use crate::dhcp::{Lease, LeaseEvent};
use crate::error::ServiceError;
use crate::files::{AppliedRecord, DefinitionStore, Phase, RuntimeStore};
use crate::firewall::firewalld::Firewalld;
use crate::firewall::Firewall;
use crate::guests::watch::SharedRegistry;
use crate::guests::{GuestEvent, GuestStore};
use crate::host::kernel::Kernel;
use crate::mode_registry::{LoadedMode, ModeRegistry, MAX_TABLE_JSON};
use crate::signals::{SignalQueue, SignalReceiver};
use guestnet_mode_api::{Definition, HostFacts, MacAddr, NetworkName, Plan};
use services::Services;
use shared::Shared;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use tokio::sync::{broadcast, Mutex};

pub use ports::{Detacher, Guest, PortClaim};

/// Lease and guest events queued for the D-Bus signal task when the bus is
/// slow (a boot storm of guests); allocated as they come.
const SIGNAL_BACKLOG: usize = 65_536;
/// Lease events kept for WaitForLease callers. A tokio broadcast channel
/// allocates every slot at once, so this stays small: a waiter that lags
/// behind asks the network for the lease instead.
const LEASE_WAIT_BACKLOG: usize = 1024;

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

    /// What the mode warned of in the plan it runs on (none while
    /// inactive), made safe to show.
    pub fn warnings(&self) -> Vec<String> {
        self.plan.as_ref().map(warnings::shown).unwrap_or_default()
    }

    /// What a restarted guestnetd needs to take the network back.
    fn record(&self, phase: Phase) -> Option<AppliedRecord> {
        Some(AppliedRecord::new(
            &self.definition,
            self.persistent,
            self.plan.as_ref()?,
            phase,
        ))
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

/// One network's place in the table.
struct Slot {
    /// Held by whoever changes this network, for the whole change.
    ops: Arc<Mutex<()>>,
    /// What readers see; replaced (under `ops`) when a change completes.
    view: RwLock<Network>,
    /// Its DHCP and DNS servers while active. Taken out to be stopped.
    services: std::sync::Mutex<Option<Services>>,
    /// False while a CreateNetwork is still starting it: the name is
    /// taken, but nobody sees the network yet.
    visible: std::sync::atomic::AtomicBool,
}

impl Slot {
    fn new(network: Network, visible: bool) -> Arc<Slot> {
        Arc::new(Slot {
            ops: Arc::new(Mutex::new(())),
            view: RwLock::new(network),
            services: std::sync::Mutex::new(None),
            visible: std::sync::atomic::AtomicBool::new(visible),
        })
    }

    fn network(&self) -> Network {
        self.view.read().expect("view lock").clone()
    }

    fn set(&self, network: Network) {
        *self.view.write().expect("view lock") = network;
    }

    fn edit(&self, f: impl FnOnce(&mut Network)) {
        f(&mut self.view.write().expect("view lock"));
    }

    fn is_visible(&self) -> bool {
        self.visible.load(std::sync::atomic::Ordering::Acquire)
    }

    fn take_services(&self) -> Option<Services> {
        self.services.lock().expect("services lock").take()
    }

    fn put_services(&self, services: Services) {
        *self.services.lock().expect("services lock") = Some(services);
    }
}

/// A network's slot with its change lock held.
struct Held {
    slot: Arc<Slot>,
    _op: tokio::sync::OwnedMutexGuard<()>,
}

pub struct Networks {
    modes: ModeRegistry,
    kernel: Kernel,
    /// systemd-resolved, told where each network's names are answered.
    resolved: Arc<crate::host::resolved::Resolved>,
    definitions: DefinitionStore,
    runtime: RuntimeStore,
    leases_dir: PathBuf,
    runtime_dir: PathBuf,
    resolv_conf: PathBuf,
    lease_events: broadcast::Sender<NetworkLeaseEvent>,
    lease_signals: SignalQueue<NetworkLeaseEvent>,
    guest_events: SignalQueue<GuestEvent>,
    guest_store: Arc<GuestStore>,
    registry: SharedRegistry,
    table: RwLock<BTreeMap<NetworkName, Arc<Slot>>>,
    planning: Mutex<()>,
    shared: Mutex<Shared>,
}

fn no_such(name: &str) -> ServiceError {
    ServiceError::NoSuchNetwork(name.to_owned())
}

impl Networks {
    pub fn new(
        modes: ModeRegistry,
        kernel: Kernel,
        firewall: Arc<Firewall>,
        firewalld: Arc<Firewalld>,
        resolved: Arc<crate::host::resolved::Resolved>,
        paths: &Paths,
    ) -> Self {
        Self {
            modes,
            kernel,
            resolved,
            definitions: DefinitionStore::new(paths.config_dir.clone()),
            runtime: RuntimeStore::new(paths.runtime_dir.clone()),
            leases_dir: paths.state_dir.join("leases"),
            runtime_dir: paths.runtime_dir.clone(),
            resolv_conf: paths.resolv_conf.clone(),
            lease_events: broadcast::channel(LEASE_WAIT_BACKLOG).0,
            lease_signals: crate::signals::queue(SIGNAL_BACKLOG),
            guest_events: crate::signals::queue(SIGNAL_BACKLOG),
            guest_store: Arc::new(GuestStore::new(paths.runtime_dir.clone())),
            registry: Arc::default(),
            table: RwLock::new(BTreeMap::new()),
            planning: Mutex::new(()),
            shared: Mutex::new(Shared::new(firewall, firewalld, &paths.runtime_dir)),
        }
    }

    pub fn mode_names(&self) -> Vec<String> {
        self.modes.names()
    }

    /// What `DescribeMode` answers: the mode's name, version, the API it
    /// was built against (`1.MINOR`) and its table (null from a library of
    /// API 1.0, which cannot describe it), as JSON. The library is asked on
    /// a blocking thread, with no lock held; an answer over
    /// [`MAX_TABLE_JSON`] bytes is the mode's fault, refused.
    pub async fn describe_mode(&self, name: &str) -> Result<String, ServiceError> {
        let mode = self
            .modes
            .get(name)
            .ok_or_else(|| ServiceError::UnknownMode {
                mode: name.to_owned(),
                loaded: self.modes.names().join(", "),
            })?;
        let asking = mode.clone();
        let table = tokio::task::spawn_blocking(move || asking.table())
            .await
            .map_err(|e| ServiceError::Failed(format!("describing mode {name:?}: {e}")))??;
        let description = serde_json::json!({
            "mode": mode.info.name,
            "version": mode.info.version,
            "api": format!("{}.{}", guestnet_mode_api::abi::ABI_VERSION, mode.info.api_minor),
            "table": table,
        })
        .to_string();
        if description.len() > MAX_TABLE_JSON {
            return Err(ServiceError::Failed(format!(
                "mode {name:?} describes itself in {} bytes, more than the {MAX_TABLE_JSON} \
                 guestnetd returns",
                description.len()
            )));
        }
        Ok(description)
    }

    fn slot(&self, name: &str) -> Result<Arc<Slot>, ServiceError> {
        let key = NetworkName::new(name).map_err(|_| no_such(name))?;
        self.table
            .read()
            .expect("table lock")
            .get(&key)
            .filter(|s| s.is_visible())
            .cloned()
            .ok_or_else(|| no_such(name))
    }

    /// The network's slot with its change lock taken; refused when the
    /// network went away while this waited for the lock.
    async fn hold(&self, name: &str) -> Result<Held, ServiceError> {
        let slot = self.slot(name)?;
        let op = slot.ops.clone().lock_owned().await;
        let still_there = self
            .table
            .read()
            .expect("table lock")
            .get(&slot.network().definition.name)
            .is_some_and(|s| Arc::ptr_eq(s, &slot));
        if !still_there {
            return Err(no_such(name));
        }
        Ok(Held { slot, _op: op })
    }

    fn remove_slot(&self, slot: &Arc<Slot>) {
        let name = slot.network().definition.name;
        let mut table = self.table.write().expect("table lock");
        if table.get(&name).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            table.remove(&name);
        }
    }

    /// Every visible slot, for work over all networks.
    fn slots(&self) -> Vec<Arc<Slot>> {
        self.table
            .read()
            .expect("table lock")
            .values()
            .filter(|s| s.is_visible())
            .cloned()
            .collect()
    }

    pub async fn names(&self) -> Vec<NetworkName> {
        self.table
            .read()
            .expect("table lock")
            .iter()
            .filter(|(_, s)| s.is_visible())
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub async fn get(&self, name: &str) -> Option<Network> {
        self.slot(name).ok().map(|s| s.network())
    }

    fn mode_of(&self, def: &Definition) -> Result<Arc<LoadedMode>, ServiceError> {
        self.modes
            .get(&def.mode)
            .ok_or_else(|| ServiceError::UnknownMode {
                mode: def.mode.clone(),
                loaded: self.modes.names().join(", "),
            })
    }

    /// Parses a definition and has its mode check it.
    fn parse_checked(&self, text: &str) -> Result<Definition, ServiceError> {
        let def =
            Definition::parse(text).map_err(|e| ServiceError::InvalidConfig(e.to_string()))?;
        self.mode_of(&def)?.validate(&def)?;
        Ok(def)
    }

    /// Asks `def`'s mode for a plan, on a blocking thread: a plugin is
    /// third-party code, and a slow one must not stall the service's tasks.
    /// The plan's warnings are cleaned and logged here, once per plan
    /// made (Start, Create, Update).
    async fn plan(&self, def: &Definition, mut facts: HostFacts) -> Result<Plan, ServiceError> {
        let mode = self.mode_of(def)?;
        // The guests a forward names by MAC or host name are found in the
        // network's current leases.
        if !def.forwards.is_empty() {
            facts.leases = self.lease_facts(&def.name);
        }
        let asked = def.clone();
        let mut plan = tokio::task::spawn_blocking(move || mode.plan(&asked, &facts))
            .await
            .map_err(|e| ServiceError::Failed(format!("planning: {e}")))?
            .map_err(ServiceError::from)?;
        forwards::note_unserved(def, &mut plan);
        warnings::take_in(&mut plan, def.name.as_str(), &def.mode);
        Ok(plan)
    }

    /// The current leases of a network, as a mode reads them.
    fn lease_facts(&self, name: &NetworkName) -> Vec<guestnet_mode_api::LeaseFact> {
        let Ok(slot) = self.slot(name.as_str()) else {
            return vec![];
        };
        let services = slot.services.lock().expect("services lock");
        services
            .as_ref()
            .map(|s| s.lease_facts())
            .unwrap_or_default()
    }

    /// Every lease change of every network, from now on (for waiters: a
    /// receiver that lags is told so and must look the lease up).
    pub fn subscribe_leases(&self) -> broadcast::Receiver<NetworkLeaseEvent> {
        self.lease_events.subscribe()
    }

    /// Every lease change of every network, for the one task that signals
    /// them; `None` after the first call.
    pub fn lease_signals(&self) -> Option<SignalReceiver<NetworkLeaseEvent>> {
        self.lease_signals.take_receiver()
    }

    /// Every guest arriving or leaving, for the one task that signals them;
    /// `None` after the first call.
    pub fn guest_signals(&self) -> Option<SignalReceiver<GuestEvent>> {
        self.guest_events.take_receiver()
    }

    /// The leases of a network (none while it is inactive). Never waits for
    /// a change of this network or any other.
    pub async fn leases(&self, name: &str) -> Result<Vec<Lease>, ServiceError> {
        let slot = self.slot(name)?;
        let services = slot.services.lock().expect("services lock");
        Ok(services
            .as_ref()
            .and_then(|s| s.dhcp.as_ref())
            .map(|d| d.leases())
            .unwrap_or_default())
    }

    pub async fn lease_of(&self, name: &str, mac: &MacAddr) -> Result<Option<Lease>, ServiceError> {
        let slot = self.slot(name)?;
        let services = slot.services.lock().expect("services lock");
        Ok(services
            .as_ref()
            .and_then(|s| s.dhcp.as_ref())
            .and_then(|d| d.lease_of(mac)))
    }

    fn journal_path(&self, name: &NetworkName) -> PathBuf {
        self.leases_dir.join(format!("{name}.journal"))
    }

    /// Removes the lease journal of a network that is gone for good.
    fn forget_leases(&self, name: &NetworkName) {
        if let Err(e) = crate::files::remove(&self.journal_path(name)) {
            tracing::warn!("removing the leases of {name}: {e}");
        }
    }

    /// The active networks other than `except`, with their plans, for
    /// checking a new plan against what they own.
    fn other_active_plans(&self, except: &NetworkName) -> Vec<(String, Plan)> {
        self.slots()
            .iter()
            .map(|s| s.network())
            .filter(|n| &n.definition.name != except)
            .filter_map(|n| n.plan.map(|p| (n.definition.name.to_string(), p)))
            .collect()
    }

    /// Refuses a plan that clashes with the host (less `own`, the links the
    /// network holds now) or with another active network.
    fn check_plan(
        &self,
        plan: &Plan,
        snapshot: &crate::host::kernel::Snapshot,
        name: &NetworkName,
    ) -> Result<(), ServiceError> {
        // A mode's plan is hostile input like a definition: bounded, and
        // every rule must make sense, before anything looks at the host.
        plan.check().map_err(|e| {
            ServiceError::Failed(format!("the mode planned network {name} wrongly: {e}"))
        })?;
        let others = self.other_active_plans(name);
        let others: Vec<(&str, &Plan)> = others.iter().map(|(n, p)| (n.as_str(), p)).collect();
        let host_addresses: Vec<std::net::Ipv4Addr> = snapshot
            .links
            .iter()
            .flat_map(|l| l.addresses.iter().map(|a| a.addr()))
            .chain(plan.addresses.iter().map(|a| a.addr()))
            .collect();
        forwards::check(plan, &others, &forwards::listening_ports(), &host_addresses)
            .map_err(ServiceError::Conflict)?;
        crate::host::facts::conflicts(plan, snapshot, name.as_str(), &others)
            .map_err(ServiceError::Conflict)
    }
}
