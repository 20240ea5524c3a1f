//! guestnetd: gives virtual machines and containers their networks, driven
//! over D-Bus as `org.guestnet1`.

use guestnetd::bus::api as dbus_api;
use guestnetd::firewall::firewalld::Firewalld;
use guestnetd::firewall::Firewall;
use guestnetd::host::kernel;
use guestnetd::{mode_registry, networks};

use clap::Parser;
use std::path::PathBuf;
use std::sync::Arc;

const INSTALLED_MODES_DIR: &str = "/usr/lib/guestnet/modes";

/// guestnet's service: networks for virtual machines and containers, driven
/// over D-Bus as org.guestnet1. Networks keep running when it exits; the next
/// guestnetd takes them back.
#[derive(Parser, Debug)]
#[command(name = "guestnetd", version)]
struct Args {
    /// D-Bus address to serve on [default: the system bus, from
    /// DBUS_SYSTEM_BUS_ADDRESS when set]
    #[arg(long, value_name = "ADDR")]
    bus_address: Option<String>,
    /// Persistent network definitions, one NAME.toml each
    #[arg(long, value_name = "DIR", default_value = "/etc/guestnet/networks")]
    config_dir: PathBuf,
    /// Durable state (leases)
    #[arg(long, value_name = "DIR", default_value = "/var/lib/guestnet")]
    state_dir: PathBuf,
    /// What is applied now; must not outlive a reboot
    #[arg(long, value_name = "DIR", default_value = "/run/guestnet")]
    runtime_dir: PathBuf,
    /// Upstream DNS servers for networks whose definition names no
    /// forwarders; re-read when it changes
    #[arg(long, value_name = "FILE", default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// Mode libraries (*.so), each loaded only if neither it nor the
    /// directory can be changed by anyone but root or guestnetd's own user
    /// (a build tree: --modes-dir target/debug)
    #[arg(long, value_name = "DIR", default_value = INSTALLED_MODES_DIR)]
    modes_dir: PathBuf,
}

/// Most threads for blocking work (journal syncs, link dumps, mode plans,
/// polkit checks) at once; more queue. Each lives this long once idle.
const BLOCKING_THREADS: usize = 32;
const BLOCKING_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(2);
/// Most runtime workers: DHCP and DNS hand their disk and CPU work to
/// tasks that rarely run long, and a service of a few networks gains
/// nothing from one worker per core of a large machine but memory.
const MAX_WORKERS: usize = 4;

fn main() {
    limit_malloc_arenas();
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, MAX_WORKERS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .enable_all()
        .build()
        .expect("starting the tokio runtime");
    runtime.block_on(serve());
}

/// glibc gives each thread that allocates an arena of its own, up to eight
/// per core, and keeps what was freed in each: on a service whose work
/// hops between workers and blocking threads that is resident memory held
/// per thread for nothing. Two arenas are plenty for guestnetd's load.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable; called first thing in main,
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

async fn serve() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GUESTNET_LOG").unwrap_or_else(|_| {
                // netlink-packet-route warns about every attribute newer
                // than itself; that is noise, not news.
                "info,netlink_packet_route=error".into()
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    if let Err(e) = run(args).await {
        tracing::error!("{e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    for dir in [&args.config_dir, &args.state_dir, &args.runtime_dir] {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let modes_dir = args.modes_dir.clone();
    let (modes, errors) = mode_registry::ModeRegistry::load_dir(&modes_dir);
    for e in errors {
        tracing::error!("refused mode library: {e}");
    }
    for m in modes.iter() {
        tracing::info!(
            "loaded mode {} {} from {}",
            m.info.name,
            m.info.version,
            m.file.display()
        );
    }
    if modes.names().is_empty() {
        tracing::warn!("no modes loaded from {}", modes_dir.display());
    }
    let kernel = kernel::Kernel::connect().map_err(|e| e.to_string())?;
    let paths = networks::Paths {
        config_dir: args.config_dir.clone(),
        state_dir: args.state_dir.clone(),
        runtime_dir: args.runtime_dir.clone(),
        resolv_conf: args.resolv_conf.clone(),
    };
    // The firewall backends, chosen once and handed to who uses them.
    let firewall = Arc::new(Firewall::new());
    let firewalld = Arc::new(Firewalld::new());
    let resolved = Arc::new(guestnetd::host::resolved::Resolved::new());
    let networks = Arc::new(networks::Networks::new(
        modes,
        kernel,
        firewall.clone(),
        firewalld.clone(),
        resolved.clone(),
        &paths,
    ));
    networks.recover().await;
    networks.watch_guests().await.map_err(|e| e.to_string())?;
    networks.follow_forwards();
    let guarded = networks.clone();
    let _firewall_guard = firewall
        .guard(move || {
            let n = guarded.clone();
            async move { n.restore_firewall().await }
        })
        .map_err(|e| format!("watching nftables (NFNLGRP_NFTABLES): {e}"))?;

    let conn = connect(args.bus_address.as_deref()).await?;
    dbus_api::export_all(&conn, networks.clone())
        .await
        .map_err(|e| format!("exporting objects: {e}"))?;
    // firewalld, when on the bus: guestnet's bridges into their zones,
    // again after each of its reloads.
    if let Err(e) = firewalld.watch(&conn).await {
        tracing::warn!("cannot watch firewalld on the bus: {e}");
    }
    // systemd-resolved, when on the bus: guests' names on the host.
    resolved.connect(&conn).await;
    conn.request_name(guestnet_dbus::BUS_NAME)
        .await
        .map_err(|e| format!("cannot own {}: {e}", guestnet_dbus::BUS_NAME))?;
    tracing::info!("serving {} on the bus", guestnet_dbus::BUS_NAME);

    wait_for_signal().await;
    tracing::info!("exiting; active networks keep running");
    Ok(())
}

async fn connect(address: Option<&str>) -> Result<zbus::Connection, String> {
    let builder = match address {
        Some(a) => zbus::connection::Builder::address(a)
            .map_err(|e| format!("bad bus address {a:?}: {e}"))?,
        None => zbus::connection::Builder::system().map_err(|e| format!("no system bus: {e}"))?,
    };
    builder
        .build()
        .await
        .map_err(|e| format!("connecting to the bus: {e}"))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
