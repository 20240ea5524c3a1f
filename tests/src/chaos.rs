//! The recovery stress test's engine: guestnetd killed (SIGKILL) at random
//! moments of Start, Stop, Update, Undefine and AttachGuest, round after
//! round, on three networks (nat, routed, isolated) in a lab of their own;
//! after each restart, everything that must hold whatever moment the kill
//! hit is checked (`Chaos::violations`): each network fully active or
//! fully absent, nothing leaked (links, rules, records, temporary files,
//! veth peers, ip_forward), every file whole, and what a call acknowledged
//! before the kill still true.
//!
//! The kill comes 0 to 40 ms after the call, or until a quarter after the
//! call's undisturbed duration when that is longer (Stop and Update take
//! longer in a debug build); in half of the rounds within that quarter after
//! the call's duration however short. [`Settings::from_env`] reads what
//! steers a run: `GUESTNET_RECOVERY_ROUNDS` (default 100),
//! `GUESTNET_RECOVERY_MAX_DELAY_MS` (the 40 ms), `GUESTNET_RECOVERY_SEED`
//! (printed, so that a failing run can be repeated) and
//! `GUESTNET_RECOVERY_IGNORE` (`|`-separated parts of violation messages to
//! print instead of stopping at, to look past a known bug; the run still
//! fails at the end).
//!
//! The test `sigkill_at_random_moments_of_calls_always_converges` of
//! `tests/tests/recovery.rs` drives it; `scripts/stress-recovery.sh` runs
//! that test long. The calls go through the zbus proxies of guestnet-dbus
//! on a runtime of the engine's own, so that a call can be in flight while
//! the service is killed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use guestnet_dbus::{network_path, NetworkProxy};
use serde_json::Value;
use zbus::zvariant::Value as ZValue;

use crate::guest::netns_path;
use crate::lab::{definition, Lab, UPLINK};
use crate::service::files_under;
use crate::{cmd, lease_journal};

/// One of the networks the stress test plays with. `subnets`: Update
/// switches between the two, and `bridges` with them: where the two bridges
/// differ, the Update moves the network and its guests to another bridge;
/// where they are the same, it changes the network in place.
struct NetSpec {
    name: &'static str,
    mode: &'static str,
    bridges: [&'static str; 2],
    subnets: [&'static str; 2],
}

impl NetSpec {
    /// The bridge the network has on subnet `prefix`.
    fn bridge_of(&self, prefix: &str) -> &'static str {
        if prefix == self.subnets[1] {
            self.bridges[1]
        } else {
            self.bridges[0]
        }
    }
}

const NETS: [NetSpec; 3] = [
    NetSpec {
        name: "ka",
        mode: "nat",
        bridges: ["gnka", "gnka"],
        subnets: ["10.78.10", "10.78.11"],
    },
    NetSpec {
        name: "kb",
        mode: "routed",
        bridges: ["gnkb", "gnkb2"],
        subnets: ["10.78.20", "10.78.21"],
    },
    NetSpec {
        name: "kc",
        mode: "isolated",
        bridges: ["gnkc", "gnkc"],
        subnets: ["10.78.30", "10.78.31"],
    },
];

/// At most this many guest ports per network; a network with more is
/// restarted (which removes them) before the next AttachGuest.
const MAX_PORTS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Start,
    Stop,
    Update,
    Undefine,
    Attach,
}

const OPS: [Op; 5] = [Op::Start, Op::Stop, Op::Update, Op::Undefine, Op::Attach];

/// Where a network is in its life, as the API says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    Absent,
    Inactive,
    Active {
        persistent: bool,
    },
    /// Transient and inactive: a state that must not exist.
    InactiveTransient,
}

impl Life {
    fn is_active(self) -> bool {
        matches!(self, Life::Active { .. })
    }
}

/// splitmix64: small, seeded, good enough to pick moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn env_u64(key: &str) -> Option<u64> {
    let v = std::env::var(key).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{key}={v:?} is not a number")),
    )
}

/// A D-Bus error: (name, message); name "" for a failure that is no reply.
type CallError = (String, String);

fn error_of(e: &zbus::Error) -> CallError {
    guestnet_dbus::error::name_and_message(e).unwrap_or_else(|| (String::new(), e.to_string()))
}

/// Every call gets this long to answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// guestnet's API through the zbus proxies of guestnet-dbus, on a runtime
/// of the test's own (so a call can run while the test kills the service).
struct Api {
    rt: tokio::runtime::Runtime,
    conn: zbus::Connection,
    log: PathBuf,
}

impl Api {
    fn new(address: &str, log: &Path) -> Api {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let conn = rt
            .block_on(guestnet_dbus::connect(Some(address)))
            .unwrap_or_else(|e| panic!("cannot connect to the bus {address}: {e}"));
        Api {
            rt,
            conn,
            log: log.to_owned(),
        }
    }

    fn block<T>(&self, fut: impl Future<Output = zbus::Result<T>>) -> Result<T, CallError> {
        self.rt.block_on(async {
            match tokio::time::timeout(CALL_TIMEOUT, fut).await {
                Ok(r) => r.map_err(|e| error_of(&e)),
                Err(_) => Err((
                    "timeout".to_owned(),
                    format!("no answer within {CALL_TIMEOUT:?}"),
                )),
            }
        })
    }

    #[track_caller]
    fn must<T>(&self, what: &str, r: Result<T, CallError>) -> T {
        r.unwrap_or_else(|(name, message)| {
            panic!(
                "{what} failed: {name}: {message}\n--- guestnetd log (tail) ---\n{}",
                cmd::tail(&self.log, 60)
            )
        })
    }

    fn net(&self, name: &str) -> NetworkProxy<'static> {
        let r = self.block(guestnet_dbus::network_at(&self.conn, network_path(name)));
        self.must(&format!("a proxy for {name}"), r)
    }

    fn life(&self, name: &str) -> Result<Life, CallError> {
        let manager = self.block(guestnet_dbus::manager(&self.conn))?;
        match self.block(manager.get_network(name)) {
            Err((e, _)) if e == guestnet_dbus::error::NO_SUCH_NETWORK => return Ok(Life::Absent),
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        let net = self.net(name);
        let active = self.block(net.active())?;
        let persistent = self.block(net.persistent())?;
        Ok(match (active, persistent) {
            (true, persistent) => Life::Active { persistent },
            (false, true) => Life::Inactive,
            (false, false) => Life::InactiveTransient,
        })
    }

    #[track_caller]
    fn define(&self, spec: &NetSpec, subnet: &str) {
        let manager = self.must(
            "the manager",
            self.block(guestnet_dbus::manager(&self.conn)),
        );
        let text = definition(spec.name, spec.mode, spec.bridge_of(subnet), subnet);
        let r = self.block(manager.define_network(&text));
        self.must(&format!("DefineNetwork {}", spec.name), r);
    }

    #[track_caller]
    fn start(&self, name: &str) {
        let r = self.block(self.net(name).start());
        self.must(&format!("Start {name}"), r);
    }

    #[track_caller]
    fn stop(&self, name: &str) {
        let r = self.block(self.net(name).stop());
        self.must(&format!("Stop {name}"), r);
    }

    /// The `[ipv4] address` of the network's definition.
    fn config_address(&self, name: &str) -> Result<String, CallError> {
        let text = self.block(self.net(name).get_config())?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| (String::new(), format!("GetConfig is no TOML ({e}): {text}")))?;
        table
            .get("ipv4")
            .and_then(|t| t.get("address"))
            .and_then(|a| a.as_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                (
                    String::new(),
                    format!("GetConfig has no ipv4.address: {text}"),
                )
            })
    }
}

/// The killed call: what to call, and the argument it needs.
#[derive(Clone, Debug)]
enum Call {
    Start,
    Stop,
    Undefine,
    /// To this subnet (`P` of `P.1/24`).
    Update(String),
    /// A veth (`Some(peer ifname)`, in the guests' namespace) or a tap.
    Attach {
        guest: String,
        peer: Option<String>,
    },
}

/// What steers a run, read from the environment by [`Settings::from_env`].
#[derive(Clone, Debug)]
pub struct Settings {
    /// How many rounds: `GUESTNET_RECOVERY_ROUNDS`, 100 by default.
    pub rounds: u64,
    /// The kill comes 0 to this many ms after the call (or later, see the
    /// module doc): `GUESTNET_RECOVERY_MAX_DELAY_MS`, 40 by default.
    pub max_delay_ms: u64,
    /// The seed of every random pick: `GUESTNET_RECOVERY_SEED`, the clock
    /// by default.
    pub seed: u64,
    /// Parts of violation messages to print instead of stopping at:
    /// `GUESTNET_RECOVERY_IGNORE`, `|`-separated.
    pub ignore: Vec<String>,
}

impl Settings {
    /// The settings the `GUESTNET_RECOVERY_*` variables give, defaults for
    /// the unset ones; panics on a number that is none.
    pub fn from_env() -> Settings {
        let rounds = env_u64("GUESTNET_RECOVERY_ROUNDS").unwrap_or(100);
        let max_delay_ms = env_u64("GUESTNET_RECOVERY_MAX_DELAY_MS").unwrap_or(40);
        let seed = env_u64("GUESTNET_RECOVERY_SEED").unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
        let ignore: Vec<String> = std::env::var("GUESTNET_RECOVERY_IGNORE")
            .unwrap_or_default()
            .split('|')
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect();
        Settings {
            rounds,
            max_delay_ms,
            seed,
            ignore,
        }
    }
}

/// The stress test's world and bookkeeping.
pub struct Chaos {
    lab: Lab,
    api: Api,
    guests_ns: String,
    rng: Rng,
    attached: u64,
    /// ip_forward in the host before any network ran.
    forward_baseline: String,
    /// How many rules each network's part of the table has.
    rules: HashMap<&'static str, usize>,
    settings: Settings,
    /// How long each call takes when nothing kills it.
    durations: BTreeMap<Op, Duration>,
}

impl Chaos {
    /// A lab with guestnetd, a namespace for the peers of veth guests, and
    /// guestnet's API on a runtime of its own; prints how to repeat the run.
    pub fn new(settings: Settings) -> Chaos {
        let (rounds, max_delay_ms, seed) = (settings.rounds, settings.max_delay_ms, settings.seed);
        eprintln!(
            "recovery stress: {rounds} rounds, kills 0-{max_delay_ms} ms into a call, seed {seed} \
             (GUESTNET_RECOVERY_SEED={seed} GUESTNET_RECOVERY_ROUNDS={rounds} \
             GUESTNET_RECOVERY_MAX_DELAY_MS={max_delay_ms} repeats this run)"
        );
        let lab = Lab::new();
        let guests_ns = lab.world.add_ns("guests");
        let api = Api::new(lab.bus.address(), lab.service.log_path());
        let forward_baseline = lab.world.sysctl_get(&lab.host, "net.ipv4.ip_forward");
        Chaos {
            lab,
            api,
            guests_ns,
            rng: Rng(seed),
            attached: 0,
            forward_baseline,
            rules: HashMap::new(),
            settings,
            durations: BTreeMap::new(),
        }
    }

    /// Times each call undisturbed, which sets the moments of the kills:
    /// 0 to 40 ms (GUESTNET_RECOVERY_MAX_DELAY_MS) after the call, or until
    /// a quarter after its duration when it takes longer (Stop, Update); in
    /// half of the rounds, picked at random, within that quarter after its
    /// duration however short, so that short calls (Undefine, AttachGuest)
    /// are hit in their middle too, not mostly after their answer.
    pub fn time_the_calls(&mut self) {
        self.durations = self.time_calls();
        for op in OPS {
            eprintln!(
                "  {op:?} takes {:?} without a kill: kills 0-{:?} into it, in half of the rounds 0-{:?}",
                self.durations[&op],
                self.window(op),
                self.inside(op)
            );
        }
    }

    /// Until a quarter after `op`'s undisturbed duration.
    fn inside(&self, op: Op) -> Duration {
        self.durations.get(&op).copied().unwrap_or_default() * 5 / 4
    }

    /// 0 to the maximal delay, or [`Chaos::inside`] when that is longer.
    fn window(&self, op: Op) -> Duration {
        Duration::from_millis(self.settings.max_delay_ms).max(self.inside(op))
    }

    /// Defines and starts every network once, without a kill, to learn how
    /// many rules each has; panics unless everything holds before any kill.
    pub fn start_every_network(&mut self) {
        for spec in &NETS {
            self.api.define(spec, spec.subnets[0]);
            self.api.start(spec.name);
        }
        let table = self.lab.guestnet_table().expect("guestnet's table");
        for spec in &NETS {
            let n = rules_of(&table, spec.name).len();
            assert!(n > 0, "{} has no rules:\n{table}", spec.name);
            self.rules.insert(spec.name, n);
        }
        let v = self.violations();
        assert!(
            v.is_empty(),
            "before any kill:\n{}\n{}",
            v.join("\n"),
            self.diagnostics()
        );
    }

    /// The rounds, each on a random network: a random call from a state in
    /// which it means something, SIGKILL at a random moment of it, a start
    /// of guestnetd, and a look at everything (`Chaos::violations`, and
    /// what the call acknowledged before the kill). Panics at the first
    /// round after which something does not hold (saying the seed, the call
    /// and the moment), and at the end when violations were only printed
    /// (`GUESTNET_RECOVERY_IGNORE`).
    pub fn kill_at_random_moments(&mut self) {
        let (rounds, seed) = (self.settings.rounds, self.settings.seed);
        let mut ignored_total = 0;
        let started = Instant::now();
        // Bounded in time too: far more than a round takes.
        let budget = Duration::from_secs(60 + 5 * rounds);
        // (op, answered before the kill) -> rounds
        let mut tally: BTreeMap<(Op, bool), u32> = BTreeMap::new();
        for round in 1..=rounds {
            assert!(
                started.elapsed() < budget,
                "round {round} of {rounds} after {:?}: over the budget of {budget:?} (seed {seed})",
                started.elapsed()
            );
            let (op, answered, ignored) = self.round(round);
            *tally.entry((op, answered)).or_default() += 1;
            ignored_total += ignored;
        }
        eprintln!(
            "recovery stress: {rounds} rounds in {:?}, seed {seed}; kills per call \
             (answered before the kill / in flight):",
            started.elapsed()
        );
        for op in OPS {
            eprintln!(
                "  {op:?}: {} / {}",
                tally.get(&(op, true)).unwrap_or(&0),
                tally.get(&(op, false)).unwrap_or(&0)
            );
        }
        assert_eq!(
            ignored_total, 0,
            "{ignored_total} violations were only printed (GUESTNET_RECOVERY_IGNORE={:?})",
            self.settings.ignore
        );
    }

    /// Round `round`: returns its call, whether the call answered before
    /// the kill, and how many violations were only printed.
    fn round(&mut self, round: u64) -> (Op, bool, usize) {
        let (rounds, seed) = (self.settings.rounds, self.settings.seed);
        let spec = &NETS[self.rng.below(NETS.len() as u64) as usize];
        let op = OPS[self.rng.below(OPS.len() as u64) as usize];
        let call = self.prepare(spec, op);
        let life_before = self.life(spec);
        let window = if self.rng.chance(50) {
            self.window(op)
        } else {
            self.inside(op)
        };
        let window_us = window.as_micros() as u64;
        let delay = Duration::from_micros(self.rng.below(window_us + 1));

        let handle = self.issue(spec, &call);
        std::thread::sleep(delay);
        let answered = handle.is_finished();
        self.lab.service.sigkill();
        self.lab.service.start_again();
        let result = self.api.rt.block_on(async {
            match tokio::time::timeout(CALL_TIMEOUT, handle).await {
                Ok(joined) => joined.expect("the call's task panicked"),
                Err(_) => Err(("timeout".to_owned(), "no answer at all".to_owned())),
            }
        });

        let mut v = self.violations();
        let life = self.life(spec);
        // What a call answered before the kill must have lasted.
        if answered {
            match (&call, &result) {
                (_, Err(e)) => v.push(format!(
                    "{call:?} failed before the kill, from a state where it should succeed: {e:?}"
                )),
                (Call::Start, Ok(_)) if !life.is_active() => v.push(format!(
                    "Start succeeded before the kill, yet {} is {life:?}",
                    spec.name
                )),
                (Call::Stop, Ok(_)) if life.is_active() => v.push(format!(
                    "Stop succeeded before the kill, yet {} is active",
                    spec.name
                )),
                (Call::Undefine, Ok(_))
                    if matches!(life, Life::Inactive | Life::Active { persistent: true }) =>
                {
                    v.push(format!(
                        "Undefine succeeded before the kill, yet {} is {life:?}",
                        spec.name
                    ))
                }
                (Call::Update(p), Ok(_)) => {
                    let want = format!("{p}.1/24");
                    match self.api.config_address(spec.name) {
                    Ok(a) if a == want => {}
                    other => v.push(format!(
                        "Update to {want} succeeded before the kill, yet the definition says {other:?}"
                    )),
                }
                }
                (Call::Attach { guest, .. }, Ok(ifname)) => {
                    let listed = self.api.block(self.api.net(spec.name).list_guests());
                    let found = listed
                        .as_ref()
                        .is_ok_and(|l| l.iter().any(|g| &g.ifname == ifname && &g.guest == guest));
                    if !found {
                        v.push(format!(
                            "AttachGuest({guest}) answered {ifname} before the kill, \
                         yet ListGuests says {listed:?}"
                        ));
                    }
                }
                _ => {}
            }
        }
        let outcome = match &result {
            Ok(r) => format!("ok {r:?}"),
            Err((name, _)) => format!("error {name}"),
        };
        eprintln!(
            "round {round:>4}/{rounds}: {:<2} {:<24} from {:<28} kill after {:>6.2} ms \
         ({}): {outcome}; now {life:?}",
            spec.name,
            format!("{call:?}"),
            format!("{life_before:?}"),
            delay.as_secs_f64() * 1000.0,
            if answered { "answered" } else { "in flight" },
        );
        // Known violations the caller chose to look past (to hunt for
        // others): printed, not fatal.
        let (ignored, v): (Vec<String>, Vec<String>) = v
            .into_iter()
            .partition(|x| self.settings.ignore.iter().any(|i| x.contains(i.as_str())));
        for x in &ignored {
            eprintln!("  ignored (GUESTNET_RECOVERY_IGNORE): {x}");
        }
        if !v.is_empty() {
            panic!(
                "round {round} (seed {seed}): {call:?} on {} from {life_before:?}, SIGKILL after \
             {delay:?} ({}; the call got {result:?}); after the restart:\n  {}\n{}",
                spec.name,
                if answered {
                    "after its answer"
                } else {
                    "while in flight"
                },
                v.join("\n  "),
                self.diagnostics()
            );
        }
        (op, answered, ignored.len())
    }
    fn life(&self, spec: &NetSpec) -> Life {
        let r = self.api.life(spec.name);
        self.api.must(&format!("the state of {}", spec.name), r)
    }

    fn define_random(&mut self, spec: &NetSpec) {
        let subnet = spec.subnets[self.rng.below(2) as usize];
        self.api.define(spec, subnet);
    }

    /// Brings `spec` to a state in which `op` means something, with calls
    /// that are allowed to finish; returns the call to kill.
    fn prepare(&mut self, spec: &NetSpec, op: Op) -> Call {
        let name = spec.name;
        let life = self.life(spec);
        match op {
            Op::Start => {
                match life {
                    Life::Absent => self.define_random(spec),
                    Life::Inactive => {}
                    Life::Active { persistent: true } => self.api.stop(name),
                    Life::Active { persistent: false } => {
                        self.api.stop(name);
                        self.define_random(spec);
                    }
                    Life::InactiveTransient => panic!("{name} is transient and inactive"),
                }
                Call::Start
            }
            Op::Stop | Op::Attach => {
                match life {
                    Life::Absent => {
                        self.define_random(spec);
                        self.api.start(name);
                    }
                    Life::Inactive => self.api.start(name),
                    Life::Active { .. } => {}
                    Life::InactiveTransient => panic!("{name} is transient and inactive"),
                }
                if op == Op::Stop {
                    return Call::Stop;
                }
                let ports = self.api.block(self.api.net(name).list_guests());
                if self.api.must("ListGuests", ports).len() >= MAX_PORTS {
                    let persistent = self.life(spec) == Life::Active { persistent: true };
                    self.api.stop(name);
                    if !persistent {
                        self.define_random(spec);
                    }
                    self.api.start(name);
                }
                self.attached += 1;
                let n = self.attached;
                Call::Attach {
                    guest: format!("g{n}"),
                    peer: self.rng.chance(50).then(|| format!("p{n}")),
                }
            }
            Op::Update => {
                match life {
                    Life::Absent => {
                        self.define_random(spec);
                        if self.rng.chance(75) {
                            self.api.start(name);
                        }
                    }
                    Life::Inactive => {
                        if self.rng.chance(75) {
                            self.api.start(name);
                        }
                    }
                    Life::Active { .. } => {}
                    Life::InactiveTransient => panic!("{name} is transient and inactive"),
                }
                let now = self.api.config_address(name);
                let now = self.api.must("GetConfig", now);
                let other = if now.starts_with(&format!("{}.", spec.subnets[0])) {
                    spec.subnets[1]
                } else {
                    spec.subnets[0]
                };
                Call::Update(other.to_owned())
            }
            Op::Undefine => {
                match life {
                    Life::Absent => {
                        self.define_random(spec);
                        if self.rng.chance(50) {
                            self.api.start(name);
                        }
                    }
                    Life::Active { persistent: false } => {
                        self.api.stop(name);
                        self.define_random(spec);
                        if self.rng.chance(50) {
                            self.api.start(name);
                        }
                    }
                    Life::Inactive | Life::Active { persistent: true } => {}
                    Life::InactiveTransient => panic!("{name} is transient and inactive"),
                }
                Call::Undefine
            }
        }
    }

    /// Sends `call` on `spec` and returns at once: the reply arrives on the
    /// runtime, whenever it does.
    fn issue(
        &self,
        spec: &NetSpec,
        call: &Call,
    ) -> tokio::task::JoinHandle<Result<String, CallError>> {
        let net = self.api.net(spec.name);
        let ns_path = netns_path(&self.guests_ns);
        let spec_text = |p: &str| definition(spec.name, spec.mode, spec.bridge_of(p), p);
        let call = call.clone();
        let text = match &call {
            Call::Update(p) => spec_text(p),
            _ => String::new(),
        };
        self.api.rt.spawn(async move {
            let r = match call {
                Call::Start => net.start().await.map(|()| String::new()),
                Call::Stop => net.stop().await.map(|()| String::new()),
                Call::Undefine => net.undefine().await.map(|()| String::new()),
                Call::Update(_) => net.update(&text).await.map(|()| String::new()),
                Call::Attach { guest, peer } => {
                    let mut opts: HashMap<&str, ZValue<'_>> = HashMap::new();
                    match &peer {
                        Some(peer) => {
                            opts.insert("kind", ZValue::from("veth"));
                            opts.insert("netns", ZValue::from(ns_path.as_str()));
                            opts.insert("ifname", ZValue::from(peer.as_str()));
                        }
                        None => {
                            opts.insert("kind", ZValue::from("tap"));
                            opts.insert("owner", ZValue::from(0u32));
                        }
                    }
                    net.attach_guest(&guest, opts).await
                }
            };
            r.map_err(|e| error_of(&e))
        })
    }

    /// Times each call on the first network, undisturbed: Start, AttachGuest,
    /// Update (of the active network), Stop, Undefine; the longer of two
    /// tries. Leaves that network absent.
    fn time_calls(&mut self) -> BTreeMap<Op, Duration> {
        let spec = &NETS[0];
        let mut out: BTreeMap<Op, Duration> = BTreeMap::new();
        for _ in 0..2 {
            self.api.define(spec, spec.subnets[0]);
            self.attached += 1;
            let calls = [
                (Op::Start, Call::Start),
                (
                    Op::Attach,
                    Call::Attach {
                        guest: format!("g{}", self.attached),
                        peer: Some(format!("p{}", self.attached)),
                    },
                ),
                (Op::Update, Call::Update(spec.subnets[1].to_owned())),
                (Op::Stop, Call::Stop),
                (Op::Undefine, Call::Undefine),
            ];
            for (op, call) in calls {
                let t0 = Instant::now();
                let handle = self.issue(spec, &call);
                let r = self.api.rt.block_on(async {
                    match tokio::time::timeout(CALL_TIMEOUT, handle).await {
                        Ok(joined) => joined.expect("the call's task panicked"),
                        Err(_) => Err(("timeout".to_owned(), "no answer at all".to_owned())),
                    }
                });
                let took = t0.elapsed();
                self.api
                    .must(&format!("{call:?} on {} (timed)", spec.name), r);
                let d = out.entry(op).or_default();
                *d = (*d).max(took);
            }
        }
        out
    }

    /// What must hold after a restart, whatever moment the kill hit: each
    /// network fully active or fully absent, nothing leaked, every file
    /// whole. Returns the violations, one line each.
    fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        let w = &self.lab.world;
        let host = self.lab.host.as_str();
        let svc = &self.lab.service;

        // It answers.
        match self.api.block(async {
            guestnet_dbus::manager(&self.api.conn)
                .await?
                .version()
                .await
        }) {
            Ok(v) if !v.is_empty() => {}
            Ok(v) => out.push(format!("Version is {v:?}")),
            Err(e) => out.push(format!("guestnetd does not answer: {e:?}")),
        }

        let links = w.ip_json(host, "-d link show");
        let links: BTreeMap<String, Value> = links
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| {
                (
                    l["ifname"].as_str().unwrap_or_default().to_owned(),
                    l.clone(),
                )
            })
            .collect();
        let v4: Vec<(String, String)> = w
            .ip_json(host, "-4 addr show")
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|l| {
                let name = l["ifname"].as_str().unwrap_or_default().to_owned();
                l["addr_info"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |a| {
                        (
                            name.clone(),
                            format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]),
                        )
                    })
            })
            .collect();
        let routes: Vec<Value> = w
            .ip_json(host, "-4 route show table all")
            .as_array()
            .cloned()
            .unwrap_or_default();
        let table = self.lab.guestnet_table();
        let run = svc.runtime_dir();

        let mut allowed_links: BTreeSet<String> =
            ["lo", UPLINK].iter().map(|s| s.to_string()).collect();
        let mut recorded_veths = 0;
        let mut any_active = false;
        let mut forwarding = false;
        let mut existing = BTreeSet::new();

        for spec in &NETS {
            let name = spec.name;
            let life = match self.api.life(name) {
                Ok(l) => l,
                Err(e) => {
                    out.push(format!("{name}: cannot read its state: {e:?}"));
                    continue;
                }
            };
            if life != Life::Absent {
                existing.insert(name.to_owned());
            }
            let persistent = matches!(life, Life::Inactive | Life::Active { persistent: true });
            let def_file = svc.config_dir().join(format!("{name}.toml"));
            if def_file.exists() != persistent {
                out.push(format!(
                    "{name} is {life:?} but its definition file {}",
                    if persistent { "is missing" } else { "exists" }
                ));
            }
            let record_path = run.join("networks").join(format!("{name}.json"));
            let record: Option<Value> = fs::read(&record_path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let guests_path = run.join("guests").join(format!("{name}.json"));
            let net_rules: Vec<&str> = table
                .as_deref()
                .map(|t| rules_of(t, name))
                .unwrap_or_default();
            match life {
                Life::InactiveTransient => out.push(format!(
                    "{name} is transient and inactive: it should be gone"
                )),
                Life::Active { .. } => {
                    any_active = true;
                    forwarding |= spec.mode != "isolated";
                    let net = self.api.net(name);
                    let addrs = self.api.block(net.addresses()).unwrap_or_default();
                    let config = self.api.config_address(name);
                    match &config {
                        Ok(c) if addrs == [c.clone()] => {}
                        _ => out.push(format!(
                            "{name}: Addresses {addrs:?} but its definition says {config:?}"
                        )),
                    }
                    let Some(addr) = addrs.first().cloned() else {
                        out.push(format!("{name} is active without an address"));
                        continue;
                    };
                    let prefix = addr.rsplit_once('.').map(|(p, _)| p).unwrap_or("");
                    let bridge = spec.bridge_of(prefix);
                    allowed_links.insert(bridge.to_owned());
                    let other = spec
                        .subnets
                        .iter()
                        .find(|s| **s != prefix)
                        .copied()
                        .unwrap_or("");
                    match links.get(bridge) {
                        None => out.push(format!(
                            "{name} is active but its bridge {} is missing",
                            bridge
                        )),
                        Some(l) => {
                            if l["linkinfo"]["info_kind"] != "bridge" {
                                out.push(format!("{} is not a bridge: {l}", bridge));
                            }
                            if !l["flags"]
                                .as_array()
                                .is_some_and(|f| f.iter().any(|x| x == "UP"))
                            {
                                out.push(format!("{name}'s bridge is down: {l}"));
                            }
                        }
                    }
                    let on_bridge: Vec<&String> = v4
                        .iter()
                        .filter(|(l, _)| l == bridge)
                        .map(|(_, a)| a)
                        .collect();
                    if on_bridge != [&addr] {
                        out.push(format!(
                            "{name}: {} holds {on_bridge:?}, not [{addr}]",
                            bridge
                        ));
                    }
                    let subnet_routes: Vec<&Value> = routes
                        .iter()
                        .filter(|r| r["dst"] == format!("{prefix}.0/24"))
                        .collect();
                    if subnet_routes.len() != 1 || subnet_routes[0]["dev"] != bridge {
                        out.push(format!(
                            "{name}: routes to {prefix}.0/24 are {subnet_routes:?}, not one via {}",
                            bridge
                        ));
                    }
                    let want = self.rules[name];
                    let unique: BTreeSet<&&str> = net_rules.iter().collect();
                    if net_rules.len() != want || unique.len() != want {
                        out.push(format!(
                            "{name}: {} rules ({} distinct) in the table, not {want}:\n{}",
                            net_rules.len(),
                            unique.len(),
                            table.as_deref().unwrap_or("(no table)")
                        ));
                    }
                    let other_subnet = format!("{other}.0/24");
                    if net_rules.iter().any(|r| r.contains(&other_subnet)) {
                        out.push(format!(
                            "{name} runs on {prefix}.0/24 but its rules name {other_subnet}"
                        ));
                    }
                    if spec.mode != "isolated"
                        && !net_rules
                            .iter()
                            .any(|r| r.contains(&format!("{prefix}.0/24")))
                    {
                        out.push(format!(
                            "{name}'s rules do not name its subnet {prefix}.0/24"
                        ));
                    }
                    match &record {
                        None => out.push(format!(
                            "{name} is active but has no runtime record {}",
                            record_path.display()
                        )),
                        Some(r) if r["phase"] != "active" => {
                            out.push(format!("{name}'s runtime record is {}", r["phase"]))
                        }
                        Some(_) => {}
                    }
                    // Its guests: every recorded port on the bridge and up,
                    // and exactly those listed.
                    let records: Vec<Value> = fs::read(&guests_path)
                        .ok()
                        .and_then(|b| serde_json::from_slice(&b).ok())
                        .unwrap_or_default();
                    let mut want_guests = BTreeSet::new();
                    for r in &records {
                        let ifname = r["ifname"].as_str().unwrap_or_default().to_owned();
                        if r["port"]["kind"] == "veth" {
                            recorded_veths += 1;
                        }
                        allowed_links.insert(ifname.clone());
                        want_guests.insert((
                            ifname.clone(),
                            r["guest"].as_str().unwrap_or_default().to_owned(),
                        ));
                        match links.get(&ifname) {
                            None => out.push(format!(
                                "{name}: recorded guest port {ifname} does not exist"
                            )),
                            Some(l) => {
                                if l["master"] != bridge {
                                    out.push(format!(
                                        "{name}: recorded guest port {ifname} is not on {} \
                                         (half made?): {l}",
                                        bridge
                                    ));
                                }
                                if !l["flags"]
                                    .as_array()
                                    .is_some_and(|f| f.iter().any(|x| x == "UP"))
                                {
                                    out.push(format!(
                                        "{name}: recorded guest port {ifname} is down: {l}"
                                    ));
                                }
                            }
                        }
                    }
                    match self.api.block(net.list_guests()) {
                        Ok(listed) => {
                            let listed: BTreeSet<(String, String)> =
                                listed.into_iter().map(|g| (g.ifname, g.guest)).collect();
                            if listed != want_guests {
                                out.push(format!(
                                    "{name}: ListGuests {listed:?}, the records {want_guests:?}"
                                ));
                            }
                        }
                        Err(e) => out.push(format!("{name}: ListGuests failed: {e:?}")),
                    }
                    if let Err(e) = self.api.block(net.list_leases()) {
                        out.push(format!("{name}: ListLeases failed: {e:?}"));
                    }
                }
                Life::Absent | Life::Inactive => {
                    for bridge in spec.bridges {
                        if links.contains_key(bridge) {
                            out.push(format!(
                                "{name} is {life:?} but its bridge {bridge} is there"
                            ));
                        }
                    }
                    for p in spec.subnets {
                        let dot = format!("{p}.");
                        for (l, a) in &v4 {
                            if a.starts_with(&dot) {
                                out.push(format!("{name} is {life:?} but {l} holds {a}"));
                            }
                        }
                        for r in &routes {
                            if r["dst"].as_str().is_some_and(|d| d.starts_with(&dot)) {
                                out.push(format!("{name} is {life:?} but a route remains: {r}"));
                            }
                        }
                    }
                    let stale: Vec<&str> = table
                        .as_deref()
                        .unwrap_or("")
                        .lines()
                        .filter(|l| {
                            spec.bridges.iter().any(|b| l.contains(&format!("\"{b}\"")))
                                || l.contains(&format!("guestnet:{name}\""))
                        })
                        .collect();
                    if !stale.is_empty() {
                        out.push(format!(
                            "{name} is {life:?} but the table still has its rules:\n{}",
                            stale.join("\n")
                        ));
                    }
                    if record.is_some() || record_path.exists() {
                        out.push(format!(
                            "{name} is {life:?} but has a runtime record: {}",
                            fs::read_to_string(&record_path).unwrap_or_default()
                        ));
                    }
                    if guests_path.exists() {
                        out.push(format!(
                            "{name} is {life:?} but has guest records: {}",
                            fs::read_to_string(&guests_path).unwrap_or_default()
                        ));
                    }
                }
            }
        }

        for name in links.keys() {
            if !allowed_links.contains(name) {
                out.push(format!("leaked link {name} in the host: {}", links[name]));
            }
        }
        let peers = self
            .lab
            .world
            .links(&self.guests_ns)
            .into_iter()
            .filter(|l| l != "lo")
            .count();
        if peers != recorded_veths {
            out.push(format!(
                "the guests' namespace holds {peers} veth peers, the records {recorded_veths}"
            ));
        }
        if table.is_some() != any_active {
            out.push(format!(
                "the table {} although {} network is active",
                if table.is_some() {
                    "exists"
                } else {
                    "is missing"
                },
                if any_active { "a" } else { "no" }
            ));
        }
        let fwd = w.sysctl_get(host, "net.ipv4.ip_forward");
        let want_fwd = if forwarding {
            "1"
        } else {
            self.forward_baseline.as_str()
        };
        if fwd != want_fwd {
            out.push(format!(
                "net.ipv4.ip_forward is {fwd}, not {want_fwd} (a nat or routed network active: {forwarding})"
            ));
        }
        for dir in [svc.config_dir(), svc.state_dir(), svc.runtime_dir()] {
            check_files(dir, &existing, &mut out);
        }
        out
    }

    /// What a person needs to see the state the violations speak of.
    fn diagnostics(&self) -> String {
        let w = &self.lab.world;
        let host = self.lab.host.as_str();
        let show = |args: &[&str]| {
            let o = w.exec(host, args);
            format!(
                "--- {} ---\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        };
        let mut s = String::new();
        s.push_str(&show(&["ip", "-d", "-br", "link"]));
        s.push_str(&show(&["ip", "-br", "addr"]));
        s.push_str(&show(&["ip", "route", "show", "table", "all"]));
        s.push_str(&show(&["nft", "list", "ruleset"]));
        s.push_str("--- files ---\n");
        let svc = &self.lab.service;
        for dir in [svc.config_dir(), svc.state_dir(), svc.runtime_dir()] {
            for f in files_under(dir) {
                let text = fs::read(&f)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let text = if f.extension().is_some_and(|x| x == "journal") {
                    format!("({} bytes)", text.len())
                } else {
                    text
                };
                s.push_str(&format!("{}:\n{text}\n", f.display()));
            }
        }
        s.push_str(&format!(
            "--- guestnetd log (tail) ---\n{}",
            svc.log_tail(80)
        ));
        s
    }
}

/// No temporary file left, every file whole: definitions parse as TOML and
/// are named after their network, records as JSON, lease journals frame
/// by frame, and only networks that exist have a journal.
fn check_files(dir: &Path, existing: &BTreeSet<String>, out: &mut Vec<String>) {
    for f in files_under(dir) {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = f
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".tmp") {
            out.push(format!(
                "a temporary file was left behind: {} ({} bytes)",
                f.display(),
                fs::metadata(&f).map(|m| m.len()).unwrap_or(0)
            ));
            continue;
        }
        let bytes = match fs::read(&f) {
            Ok(b) => b,
            Err(e) => {
                out.push(format!("cannot read {}: {e}", f.display()));
                continue;
            }
        };
        match f.extension().and_then(|x| x.to_str()) {
            Some("toml") => {
                let parsed = std::str::from_utf8(&bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|t| t.parse::<toml::Table>().map_err(|e| e.to_string()));
                match parsed {
                    Ok(t) if t.get("name").and_then(|n| n.as_str()) == Some(&stem) => {}
                    Ok(t) => out.push(format!(
                        "{} defines network {:?}",
                        f.display(),
                        t.get("name")
                    )),
                    Err(e) => out.push(format!("{} is not whole TOML: {e}", f.display())),
                }
            }
            Some("json") => {
                if let Err(e) = serde_json::from_slice::<Value>(&bytes) {
                    out.push(format!("{} is not whole JSON: {e}", f.display()));
                }
            }
            Some("journal") => {
                let (_, valid) = lease_journal::records(&bytes);
                if valid != bytes.len() {
                    out.push(format!(
                        "{}: only {valid} of {} bytes are whole records",
                        f.display(),
                        bytes.len()
                    ));
                }
                if !existing.contains(&stem) {
                    out.push(format!(
                        "{} is the lease journal of network {stem:?}, which no longer exists \
                         (a network defined later under that name would inherit its leases)",
                        f.display()
                    ));
                }
            }
            Some("nft") if std::str::from_utf8(&bytes).is_err() => {
                out.push(format!("{} is not text", f.display()));
            }
            _ => {}
        }
    }
}

/// The rules of `table` (nft's text) that carry network `name`'s comment.
fn rules_of<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    let tag = format!("comment \"guestnet:{name}\"");
    table
        .lines()
        .map(str::trim)
        .filter(|l| l.contains(&tag))
        .collect()
}
