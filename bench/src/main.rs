//! Load generators for `scripts/bench-load.sh`, pointed at guestnetd or at
//! dnsmasq alike:
//!
//! * `latency`: leases addresses one after another as a relay agent and
//!   times, for each, how long after the ACK reached the client the "lease
//!   added" signal reached a bus client (negative: the signal came first).
//! * `watch`: counts "lease added" signals for distinct clients until it
//!   has seen the number expected, and says when the last one came.

mod lease_signals;
mod relay_client;

use clap::{Parser, Subcommand};
use lease_signals::Server;
use relay_client::RelayClient;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, UNIX_EPOCH};

#[derive(Parser)]
#[command(about = "Lease load generators for scripts/bench-load.sh")]
struct Cli {
    /// The bus the server announces leases on, e.g. unix:path=/tmp/x/bus.
    #[arg(long)]
    bus: String,
    /// Whose signals to listen for.
    #[arg(long, value_enum)]
    server: Server,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lease ROUNDS addresses in turn and time each signal against its ACK.
    Latency {
        /// This namespace's address in the server's subnet (we bind it, port 67).
        #[arg(long)]
        relay: Ipv4Addr,
        /// The DHCP server's address.
        #[arg(long)]
        dhcp_server: Ipv4Addr,
        #[arg(long, default_value_t = 500)]
        rounds: u32,
    },
    /// Wait for COUNT distinct clients' lease signals (or SIGTERM, or the
    /// timeout); print how many came and when the last one did.
    Watch {
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
        /// Created once the subscription is in place.
        #[arg(long)]
        ready: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Latency {
            relay,
            dhcp_server,
            rounds,
        } => latency(&cli.bus, cli.server, relay, dhcp_server, rounds).await,
        Command::Watch {
            count,
            timeout_secs,
            ready,
        } => watch(&cli.bus, cli.server, count, timeout_secs, &ready).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guestnet-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn latency(
    bus: &str,
    server: Server,
    relay: Ipv4Addr,
    dhcp_server: Ipv4Addr,
    rounds: u32,
) -> Result<(), String> {
    let mut heard = lease_signals::subscribe(bus, server)
        .await
        .map_err(|e| format!("subscribing on {bus}: {e}"))?;
    let client = RelayClient::bind(relay, dhcp_server)
        .await
        .map_err(|e| format!("binding {relay}:67: {e}"))?;
    let mut early: HashMap<String, Instant> = HashMap::new();
    let mut samples_us = Vec::with_capacity(rounds as usize);
    let started = Instant::now();
    for round in 0..rounds {
        let mac = client_mac(round);
        let exchange = client
            .lease(mac, 0x6e00_0000 | round, Duration::from_secs(2))
            .await
            .map_err(|e| format!("round {round}: {e}"))?;
        let key = format_mac(mac);
        let signalled = match early.remove(&key) {
            Some(at) => at,
            None => wait_for(&mut heard, &key, &mut early)
                .await
                .ok_or_else(|| {
                    format!(
                        "round {round}: no signal for {key} ({}) within 5 s",
                        exchange.ip
                    )
                })?,
        };
        samples_us.push(signed_us(signalled, exchange.acked_at));
    }
    let elapsed = started.elapsed();
    samples_us.sort_unstable();
    let pct = |p: f64| samples_us[((samples_us.len() - 1) as f64 * p).round() as usize];
    let report = serde_json::json!({
        "rounds": rounds,
        "signal_after_ack_us": {
            "min": samples_us[0], "p50": pct(0.5), "p90": pct(0.9),
            "p99": pct(0.99), "max": samples_us[samples_us.len() - 1],
        },
        "signal_before_ack": samples_us.iter().filter(|&&s| s < 0).count(),
        "leases_per_s": f64::from(rounds) / elapsed.as_secs_f64(),
    });
    println!("{report}");
    Ok(())
}

/// Waits up to 5 s for `mac`'s signal, keeping others that come first.
async fn wait_for(
    heard: &mut tokio::sync::mpsc::UnboundedReceiver<lease_signals::Heard>,
    mac: &str,
    early: &mut HashMap<String, Instant>,
) -> Option<Instant> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let h = tokio::time::timeout_at(deadline, heard.recv())
            .await
            .ok()??;
        if h.mac == mac {
            return Some(h.at);
        }
        early.insert(h.mac, h.at);
    }
}

async fn watch(
    bus: &str,
    server: Server,
    count: usize,
    timeout_secs: u64,
    ready: &std::path::Path,
) -> Result<(), String> {
    let mut heard = lease_signals::subscribe(bus, server)
        .await
        .map_err(|e| format!("subscribing on {bus}: {e}"))?;
    std::fs::write(ready, b"").map_err(|e| format!("{}: {e}", ready.display()))?;
    // SIGTERM: the clients are done; report what was heard so far.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("SIGTERM handler: {e}"))?;
    let deadline = tokio::time::sleep(Duration::from_secs(timeout_secs));
    tokio::pin!(deadline);
    let mut seen = std::collections::HashSet::new();
    let (mut signals, mut last_wall) = (0usize, None);
    while seen.len() < count {
        tokio::select! {
            h = heard.recv() => {
                let h = h.ok_or("the bus connection closed")?;
                signals += 1;
                seen.insert(h.mac);
                last_wall = Some(h.wall);
            }
            _ = &mut deadline => break,
            _ = term.recv() => break,
        }
    }
    let last_ns = last_wall
        .and_then(|w| w.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as u64);
    let report = serde_json::json!({
        "clients": seen.len(), "signals": signals, "last_signal_unix_ns": last_ns,
    });
    println!("{report}");
    if seen.len() < count {
        return Err(format!("heard {} of {count} clients' signals", seen.len()));
    }
    Ok(())
}

/// A locally administered unicast address, distinct per round.
fn client_mac(round: u32) -> [u8; 6] {
    let [a, b, c, d] = round.to_be_bytes();
    [0x02, 0xbe, a, b, c, d]
}

fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// `later - earlier` in microseconds, negative when "later" came first.
fn signed_us(later: Instant, earlier: Instant) -> i64 {
    match later.checked_duration_since(earlier) {
        Some(d) => d.as_micros() as i64,
        None => -(earlier.duration_since(later).as_micros() as i64),
    }
}
