//! guestnetctl: a command-line client of guestnet's D-Bus API, and nothing
//! else: every command is calls to org.guestnet1 (see guestnet_dbus).

mod describe;
mod edit;
mod fail;
mod monitor;
mod output;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use serde_json::{json, Map, Value as Json};
use zbus::names::InterfaceName;
use zbus::zvariant::{OwnedObjectPath, Value};
use zbus::Connection;

use guestnet_dbus::{error as names, Lease, BUS_NAME, NETWORK_INTERFACE};

use fail::{Failure, Result, EXIT_CODES};
use output::{line, out, table, yes_no};

/// Manage guestnet's networks (guestnetd, org.guestnet1) over D-Bus.
#[derive(Parser, Debug)]
#[command(name = "guestnetctl", version, after_help = EXIT_CODES)]
struct Cli {
    /// D-Bus address of the bus guestnetd is on [default: the system bus,
    /// from DBUS_SYSTEM_BUS_ADDRESS when set]
    #[arg(long, global = true, value_name = "ADDR")]
    bus_address: Option<String>,

    /// Print JSON (one document; `monitor`: one object per line) instead of
    /// tables and text
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the networks: NAME MODE ACTIVE AUTOSTART PERSISTENT BRIDGE ADDRESSES
    List,
    /// Show a network's properties and its definition
    Show { name: String },
    /// Store a persistent network from a definition (TOML); prints its object path
    Define {
        /// The definition; `-` reads standard input
        file: PathBuf,
    },
    /// Start a transient network from a definition (TOML), gone when it
    /// stops; prints its object path (and the mode's warnings, if any, as
    /// `warning: ...` on standard error)
    Create {
        /// The definition; `-` reads standard input
        file: PathBuf,
    },
    /// Remove a network's definition (an active network runs on, transient)
    Undefine { name: String },
    /// Start a network; the mode's warnings about it, if any, go to
    /// standard error as `warning: ...`
    Start { name: String },
    /// Stop a network (a transient one is then gone)
    Stop { name: String },
    /// Show, or set, whether a network starts with the service
    Autostart {
        name: String,
        /// Omitted: print the current setting
        state: Option<OnOff>,
    },
    /// Edit a network's definition with $EDITOR (default vi), then update it
    ///
    /// The definition is written to a temporary file and $EDITOR (or
    /// $VISUAL) is run on it, through `sh -c`, so it may carry arguments or
    /// be a script. Saved unchanged: nothing happens. When the service
    /// refuses the new definition (InvalidConfig, UnknownMode, Conflict),
    /// the editor opens again with the reason at the top; quitting it
    /// without a change gives up (exit 1) and keeps the file. After an
    /// update, the mode's warnings about the network, if any, go to
    /// standard error as `warning: ...`.
    Edit { name: String },
    /// List a network's DHCP leases: MAC IP HOSTNAME CLIENT-ID EXPIRES (UTC)
    Leases { name: String },
    /// Wait for the lease of a MAC address and print it
    WaitLease {
        name: String,
        mac: String,
        /// Give up after this many seconds (exit 6)
        #[arg(long, value_name = "SECS", default_value_t = 30.0)]
        timeout: f64,
    },
    /// List the guest ports on a network's bridge: IFNAME MAC GUEST
    Guests { name: String },
    /// Make a port for a guest on a network; prints its interface name
    Attach {
        name: String,
        /// The guest's name
        guest: String,
        /// tap (for QEMU) or veth (for a container)
        #[arg(long, value_enum)]
        kind: Kind,
        /// The uid that owns a tap
        #[arg(long, value_name = "UID")]
        owner: Option<u32>,
        /// Where the peer of a veth goes: a network namespace path
        /// (/run/netns/NAME, /proc/PID/ns/net). guestnetctl opens it itself,
        /// as you, and passes the open namespace (netns_fd), so it must be
        /// a namespace you may open
        #[arg(long, value_name = "PATH")]
        netns: Option<PathBuf>,
        /// The name of a veth's guest end, inside --netns [default: eth0]
        #[arg(long, value_name = "NAME")]
        ifname: Option<String>,
        /// The guest's MAC address
        #[arg(long, value_name = "MAC")]
        mac: Option<String>,
    },
    /// Remove a guest port from a network
    Detach { name: String, ifname: String },
    /// Stream guestnet's signals, one line per event, until interrupted
    ///
    /// Events: lease-added, lease-renewed, lease-removed (NETWORK MAC IP
    /// HOSTNAME CLIENT-ID EXPIRES), guest-attached, guest-detached (NETWORK
    /// IFNAME MAC GUEST), properties-changed (NETWORK Prop=value...),
    /// network-added, network-removed (NETWORK), service-started (OWNER),
    /// service-stopped. An empty field is `-`. With --json, one object per
    /// line: {"event": "lease-added", "network": "default", "mac": ...}.
    /// Once it is listening, it says so on standard error.
    Monitor {
        /// Only this network's events (and the service's own)
        name: Option<String>,
    },
    /// The service's version and loaded modes
    Info,
    /// What a loaded mode takes (see `info` for their names)
    Mode {
        #[command(subcommand)]
        command: ModeCommand,
    },
    /// Port forwards of a network: add, remove, list
    Forward {
        #[command(subcommand)]
        command: ForwardCommand,
    },
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand, Debug)]
enum ForwardCommand {
    /// Forward a host port (or range) to a guest, live and kept in the
    /// definition (AddForward): e.g. `forward add lab tcp 8080 web1 --to-port 80`
    Add {
        name: String,
        /// tcp or udp
        proto: String,
        /// The host port, or a range like 8000-8010
        port: String,
        /// The guest: a static host's or DHCP guest's name, a MAC, or an IPv4 address
        to: String,
        /// The guest's port (a range: its first port); default: the host's
        #[arg(long)]
        to_port: Option<u16>,
        /// Only on this host address; default: every address of the host
        #[arg(long)]
        address: Option<String>,
    },
    /// Remove the forward of a host port (or range) (RemoveForward)
    Remove {
        name: String,
        proto: String,
        port: String,
    },
    /// List a network's forwards: PROTO PORT TO TO_PORT ADDRESS
    List { name: String },
}

#[derive(Subcommand, Debug)]
enum ModeCommand {
    /// Show a mode's table in a definition ([nat], [bridged], ...), key by key
    ///
    /// Each key with its kind (interface, ipv4 subnet, list of ..., one of
    /// ...), whether a definition must give it, what it means and what its
    /// absence means, as the mode describes them (DescribeMode). A mode
    /// built against mode API 1.0 cannot describe its table: that is said
    /// instead. With --json, the service's JSON as it is: {"mode",
    /// "version", "api", "table": {"help", "keys": [{"name", "kind":
    /// {"type", ...}, "required", "help", "default"}]}} (table null for an
    /// API 1.0 mode). An unknown mode is the service's UnknownMode (exit 1).
    Describe {
        /// The mode's name, as `mode = "..."` gives it in a definition
        name: String,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum OnOff {
    #[value(alias = "true", alias = "yes", alias = "1")]
    On,
    #[value(alias = "false", alias = "no", alias = "0")]
    Off,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tap,
    Veth,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Tap => "tap",
            Kind::Veth => "veth",
        }
    }
}

fn main() {
    // Usage errors exit 2 here (clap).
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        let mut cmd = Cli::command();
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, "guestnetctl", &mut buf);
        out(&String::from_utf8_lossy(&buf));
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = runtime.block_on(run(cli));
    if let Err(failure) = result {
        eprintln!("guestnetctl: {}", failure.message());
        std::process::exit(failure.exit_code());
    }
}

/// A connected client.
pub struct Ctx {
    conn: Connection,
    json: bool,
}

async fn run(cli: Cli) -> Result<()> {
    let conn = guestnet_dbus::connect(cli.bus_address.as_deref())
        .await
        .map_err(|e| match e {
            // zbus names the address in connection errors, not in these.
            zbus::Error::Address(_) => {
                let bus = cli
                    .bus_address
                    .clone()
                    .or_else(|| std::env::var("DBUS_SYSTEM_BUS_ADDRESS").ok())
                    .unwrap_or_default();
                Failure::Bus(format!("bad bus address {bus:?}: {e}"))
            }
            e => Failure::Bus(e.to_string()),
        })?;
    let ctx = Ctx {
        conn,
        json: cli.json,
    };
    match cli.command {
        Command::List => list(&ctx).await,
        Command::Show { name } => show(&ctx, &name).await,
        Command::Define { file } => define(&ctx, &file, false).await,
        Command::Create { file } => define(&ctx, &file, true).await,
        Command::Undefine { name } => {
            network(&ctx, &name).await?.undefine().await?;
            after_action(&ctx, &name).await
        }
        Command::Start { name } => {
            let net = network(&ctx, &name).await?;
            net.start().await?;
            print_warnings(&net).await;
            after_action(&ctx, &name).await
        }
        Command::Stop { name } => {
            network(&ctx, &name).await?.stop().await?;
            after_action(&ctx, &name).await
        }
        Command::Autostart { name, state } => autostart(&ctx, &name, state).await,
        Command::Edit { name } => edit::edit(&ctx, &name).await,
        Command::Leases { name } => {
            let leases = network(&ctx, &name).await?.list_leases().await?;
            print_leases(&ctx, &leases);
            Ok(())
        }
        Command::WaitLease { name, mac, timeout } => wait_lease(&ctx, &name, &mac, timeout).await,
        Command::Guests { name } => guests(&ctx, &name).await,
        Command::Attach {
            name,
            guest,
            kind,
            owner,
            netns,
            ifname,
            mac,
        } => {
            let mut options: HashMap<&str, Value<'_>> = HashMap::new();
            options.insert("kind", Value::from(kind.as_str()));
            if let Some(uid) = owner {
                options.insert("owner", Value::from(uid));
            }
            // Opened here, as the caller: the service takes a namespace
            // from anyone allowed to attach guests only as a descriptor.
            let netns = netns.as_deref().map(open_netns).transpose()?;
            if let Some(ns) = &netns {
                use std::os::fd::AsFd;
                options.insert(
                    "netns_fd",
                    Value::from(zbus::zvariant::Fd::from(ns.as_fd())),
                );
            }
            if let Some(i) = &ifname {
                options.insert("ifname", Value::from(i.as_str()));
            }
            if let Some(m) = &mac {
                options.insert("mac", Value::from(m.as_str()));
            }
            let net = network(&ctx, &name).await?;
            let ifname = net.attach_guest(&guest, options).await?;
            if ctx.json {
                output::json(&json!({"network": name, "guest": guest, "ifname": ifname}));
            } else {
                line(&ifname);
            }
            Ok(())
        }
        Command::Detach { name, ifname } => {
            network(&ctx, &name).await?.detach_guest(&ifname).await?;
            if ctx.json {
                output::json(&json!({"network": name, "ifname": ifname, "detached": true}));
            }
            Ok(())
        }
        Command::Monitor { name } => monitor::monitor(&ctx, name.as_deref()).await,
        Command::Info => info(&ctx).await,
        Command::Mode {
            command: ModeCommand::Describe { name },
        } => describe::describe(&ctx, &name).await,
        Command::Forward { command } => forward(&ctx, command).await,
        Command::Completions { .. } => unreachable!("handled before connecting"),
    }
}

async fn forward(ctx: &Ctx, command: ForwardCommand) -> Result<()> {
    match command {
        ForwardCommand::Add {
            name,
            proto,
            port,
            to,
            to_port,
            address,
        } => {
            let mut f: HashMap<&str, Value<'_>> = HashMap::new();
            f.insert("proto", Value::from(proto.as_str()));
            match port.parse::<u16>() {
                Ok(p) => f.insert("port", Value::from(p)),
                Err(_) => f.insert("port", Value::from(port.as_str())),
            };
            f.insert("to", Value::from(to.as_str()));
            if let Some(p) = to_port {
                f.insert("to_port", Value::from(p));
            }
            if let Some(a) = &address {
                f.insert("address", Value::from(a.as_str()));
            }
            network(ctx, &name).await?.add_forward(f).await?;
            Ok(())
        }
        ForwardCommand::Remove { name, proto, port } => {
            network(ctx, &name)
                .await?
                .remove_forward(&proto, &port)
                .await?;
            Ok(())
        }
        ForwardCommand::List { name } => {
            let forwards = network(ctx, &name).await?.forwards().await?;
            let rows: Vec<Json> = forwards
                .iter()
                .map(|f| {
                    let mut m = Map::new();
                    for (k, v) in f {
                        m.insert(k.clone(), output::value_json(v));
                    }
                    Json::Object(m)
                })
                .collect();
            if ctx.json {
                output::json(&Json::Array(rows));
            } else {
                for r in &rows {
                    let col = |k: &str| r.get(k).map(output::plain).unwrap_or_else(|| "-".into());
                    line(&format!(
                        "{}\t{}\t{}\t{}\t{}",
                        col("proto"),
                        col("port"),
                        col("to"),
                        col("to_port"),
                        col("address")
                    ));
                }
            }
            Ok(())
        }
    }
}

/// Opens the namespace file at `path` for AttachGuest's `netns_fd`, without
/// blocking on a FIFO or acquiring a terminal.
fn open_netns(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Failure::local(format!("--netns {}: {e}", path.display())))
}

/// The proxy of network `name` (NoSuchNetwork when there is none).
pub async fn network(ctx: &Ctx, name: &str) -> Result<guestnet_dbus::NetworkProxy<'static>> {
    Ok(guestnet_dbus::network(&ctx.conn, name).await?)
}

/// Every property of the network at `path`, by D-Bus name, as JSON.
async fn properties(ctx: &Ctx, path: &OwnedObjectPath) -> Result<BTreeMap<String, Json>> {
    let props = zbus::fdo::PropertiesProxy::builder(&ctx.conn)
        .destination(BUS_NAME)?
        .path(path.clone())?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    let all = props
        .get_all(InterfaceName::from_static_str_unchecked(NETWORK_INTERFACE))
        .await?;
    Ok(all
        .iter()
        .map(|(k, v)| (k.clone(), output::value_json(v)))
        .collect())
}

/// The properties in the order `show` prints them; others follow, sorted.
const PROPERTY_ORDER: [&str; 11] = [
    "Name",
    "Uuid",
    "Mode",
    "Active",
    "Persistent",
    "Autostart",
    "Bridge",
    "Domain",
    "Forwards",
    "Addresses",
    "Warnings",
];

/// A network as one JSON object: its properties (snake_case keys) and its
/// object path.
fn network_json(path: &OwnedObjectPath, props: &BTreeMap<String, Json>) -> Map<String, Json> {
    let mut m = Map::new();
    for (k, v) in props {
        m.insert(output::snake_case(k), v.clone());
    }
    m.insert("path".to_owned(), json!(path.as_str()));
    m
}

async fn list(ctx: &Ctx) -> Result<()> {
    let manager = guestnet_dbus::manager(&ctx.conn).await?;
    let paths = manager.list_networks().await?;
    let fetched = futures::future::join_all(paths.iter().map(|p| properties(ctx, p))).await;
    let mut nets = Vec::new();
    for (path, props) in paths.iter().zip(fetched) {
        match props {
            Ok(props) => nets.push((path, props)),
            // Gone between the listing and the reading: not listed.
            Err(f) if f.exit_code() == fail::code::NOT_FOUND => {}
            Err(f) => return Err(f),
        }
    }
    let name_of = |props: &BTreeMap<String, Json>| output::plain(&props["Name"]);
    nets.sort_by_key(|(_, props)| props.get("Name").map(output::plain));
    if ctx.json {
        let all: Vec<Json> = nets
            .iter()
            .map(|(path, props)| Json::Object(network_json(path, props)))
            .collect();
        output::json(&Json::Array(all));
        return Ok(());
    }
    let get = |props: &BTreeMap<String, Json>, k: &str| {
        props.get(k).map(output::plain).unwrap_or_default()
    };
    let flag = |props: &BTreeMap<String, Json>, k: &str| match props.get(k) {
        Some(Json::Bool(b)) => yes_no(*b),
        Some(other) => output::plain(other),
        None => String::new(),
    };
    let rows: Vec<Vec<String>> = nets
        .iter()
        .map(|(_, props)| {
            vec![
                name_of(props),
                get(props, "Mode"),
                flag(props, "Active"),
                flag(props, "Autostart"),
                flag(props, "Persistent"),
                get(props, "Bridge"),
                get(props, "Addresses"),
            ]
        })
        .collect();
    out(&table(
        &[
            "NAME",
            "MODE",
            "ACTIVE",
            "AUTOSTART",
            "PERSISTENT",
            "BRIDGE",
            "ADDRESSES",
        ],
        &rows,
    ));
    Ok(())
}

async fn show(ctx: &Ctx, name: &str) -> Result<()> {
    let manager = guestnet_dbus::manager(&ctx.conn).await?;
    let path = manager.get_network(name).await?;
    let props = properties(ctx, &path).await?;
    let config = guestnet_dbus::network_at(&ctx.conn, path.clone())
        .await?
        .get_config()
        .await?;
    if ctx.json {
        let mut m = network_json(&path, &props);
        m.insert("config".to_owned(), json!(config));
        output::json(&Json::Object(m));
        return Ok(());
    }
    let mut keys: Vec<&str> = PROPERTY_ORDER
        .iter()
        .copied()
        .filter(|k| props.contains_key(*k))
        .collect();
    keys.extend(
        props
            .keys()
            .map(String::as_str)
            .filter(|k| !PROPERTY_ORDER.contains(k)),
    );
    let mut text = String::new();
    let mut field = |k: &str, v: String| text.push_str(&format!("{:<12}{v}\n", format!("{k}:")));
    for k in keys {
        let v = match &props[k] {
            Json::Bool(b) => yes_no(*b),
            Json::Array(items) => items
                .iter()
                .map(output::plain)
                .collect::<Vec<_>>()
                .join(", "),
            other => output::plain(other),
        };
        field(k, if v.is_empty() { "-".to_owned() } else { v });
    }
    field("Path", path.to_string());
    text.push('\n');
    text.push_str(&config);
    if !config.ends_with('\n') {
        text.push('\n');
    }
    out(&text);
    Ok(())
}

/// A definition from FILE, or standard input for `-`.
fn read_definition(file: &Path) -> Result<String> {
    if file == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Failure::local(format!("reading the definition from stdin: {e}")))?;
        return Ok(s);
    }
    std::fs::read_to_string(file)
        .map_err(|e| Failure::local(format!("cannot read {}: {e}", file.display())))
}

async fn define(ctx: &Ctx, file: &Path, transient: bool) -> Result<()> {
    let toml = read_definition(file)?;
    let manager = guestnet_dbus::manager(&ctx.conn).await?;
    let path = if transient {
        manager.create_network(&toml).await?
    } else {
        manager.define_network(&toml).await?
    };
    if transient {
        if let Ok(net) = guestnet_dbus::network_at(&ctx.conn, path.clone()).await {
            print_warnings(&net).await;
        }
    }
    if ctx.json {
        let name = guestnet_dbus::network_name(path.as_str());
        output::json(&json!({"name": name, "path": path.as_str()}));
    } else {
        line(path.as_str());
    }
    Ok(())
}

/// After a plan was made (start, create, an update by edit): each of the
/// mode's warnings about it, `warning: ...`, on standard error (with
/// --json too, where they are also the `warnings` of the network). Best
/// effort: the change succeeded whether or not they can be read.
pub async fn print_warnings(net: &guestnet_dbus::NetworkProxy<'_>) {
    if let Ok(warnings) = net.warnings().await {
        for w in warnings {
            eprintln!("warning: {w}");
        }
    }
}

/// After start, stop, undefine, autostart: nothing for people; with
/// --json, the network as it is now (`{"name": N, "exists": false}` when
/// it is gone).
async fn after_action(ctx: &Ctx, name: &str) -> Result<()> {
    if !ctx.json {
        return Ok(());
    }
    let manager = guestnet_dbus::manager(&ctx.conn).await?;
    let state = match manager.get_network(name).await {
        Ok(path) => match properties(ctx, &path).await {
            Ok(props) => {
                let mut m = network_json(&path, &props);
                m.insert("exists".to_owned(), json!(true));
                Json::Object(m)
            }
            Err(f) if f.exit_code() == fail::code::NOT_FOUND => {
                json!({"name": name, "exists": false})
            }
            Err(f) => return Err(f),
        },
        Err(e) if names::is(&e, names::NO_SUCH_NETWORK) => {
            json!({"name": name, "exists": false})
        }
        Err(e) => return Err(e.into()),
    };
    output::json(&state);
    Ok(())
}

async fn autostart(ctx: &Ctx, name: &str, state: Option<OnOff>) -> Result<()> {
    let net = network(ctx, name).await?;
    match state {
        Some(s) => {
            net.set_autostart(s == OnOff::On).await?;
            after_action(ctx, name).await
        }
        None => {
            let on = net.autostart().await?;
            if ctx.json {
                output::json(&json!({"name": name, "autostart": on}));
            } else {
                line(if on { "on" } else { "off" });
            }
            Ok(())
        }
    }
}

fn lease_json(l: &Lease) -> Json {
    json!({
        "mac": l.mac,
        "ip": l.ip,
        "hostname": l.hostname,
        "client_id": l.client_id,
        "expiry": l.expiry,
    })
}

fn print_leases(ctx: &Ctx, leases: &[Lease]) {
    if ctx.json {
        output::json(&Json::Array(leases.iter().map(lease_json).collect()));
        return;
    }
    let rows: Vec<Vec<String>> = leases
        .iter()
        .map(|l| {
            vec![
                l.mac.clone(),
                l.ip.clone(),
                l.hostname.clone(),
                l.client_id.clone(),
                output::utc(l.expiry),
            ]
        })
        .collect();
    out(&table(
        &["MAC", "IP", "HOSTNAME", "CLIENT-ID", "EXPIRES"],
        &rows,
    ));
}

async fn wait_lease(ctx: &Ctx, name: &str, mac: &str, timeout: f64) -> Result<()> {
    if !(timeout.is_finite() && timeout >= 0.0) {
        return Err(Failure::local(format!(
            "--timeout {timeout}: not a number of seconds"
        )));
    }
    // guestnetd waits at most 10 minutes a call: a longer wait is several.
    const LONGEST_MS: u64 = 600_000;
    let mut left = (timeout * 1000.0).round().min(u64::MAX as f64) as u64;
    let net = network(ctx, name).await?;
    let mac = mac.to_ascii_lowercase();
    let lease = loop {
        let ms = left.min(LONGEST_MS);
        left -= ms;
        match net.wait_for_lease(&mac, ms as u32).await {
            Err(e)
                if left > 0
                    && guestnet_dbus::error::name(&e).as_deref()
                        == Some(guestnet_dbus::error::TIMEOUT) => {}
            other => break other?,
        }
    };
    if ctx.json {
        output::json(&lease_json(&lease));
    } else {
        print_leases(ctx, std::slice::from_ref(&lease));
    }
    Ok(())
}

async fn guests(ctx: &Ctx, name: &str) -> Result<()> {
    let guests = network(ctx, name).await?.list_guests().await?;
    if ctx.json {
        let all: Vec<Json> = guests
            .iter()
            .map(|g| json!({"ifname": g.ifname, "mac": g.mac, "guest": g.guest}))
            .collect();
        output::json(&Json::Array(all));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = guests
        .iter()
        .map(|g| vec![g.ifname.clone(), g.mac.clone(), g.guest.clone()])
        .collect();
    out(&table(&["IFNAME", "MAC", "GUEST"], &rows));
    Ok(())
}

async fn info(ctx: &Ctx) -> Result<()> {
    let manager = guestnet_dbus::manager(&ctx.conn).await?;
    let version = manager.version().await?;
    let mut modes = manager.modes().await?;
    modes.sort();
    if ctx.json {
        output::json(&json!({"version": version, "modes": modes}));
    } else {
        out(&format!(
            "Version:    {version}\nModes:      {}\n",
            modes.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn usage_errors_exit_2() {
        let e = Cli::try_parse_from(["guestnetctl", "frobnicate"]).unwrap_err();
        assert_eq!(e.exit_code(), fail::code::USAGE);
        let e = Cli::try_parse_from(["guestnetctl", "autostart", "x", "maybe"]).unwrap_err();
        assert_eq!(e.exit_code(), fail::code::USAGE);
    }

    #[test]
    fn json_and_the_bus_address_go_anywhere() {
        let cli = Cli::try_parse_from([
            "guestnetctl",
            "list",
            "--json",
            "--bus-address",
            "unix:path=/x",
        ])
        .unwrap();
        assert!(cli.json);
        assert_eq!(cli.bus_address.as_deref(), Some("unix:path=/x"));
    }
}
