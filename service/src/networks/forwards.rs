//! Port forwards, the service's side: what a plan's forwards must not take
//! (a port another network forwards, a port a process of the host listens
//! on), and a forward that follows its guest: when a lease of a network
//! with forwards changes, the network is planned again, so the rule moves
//! with the guest's address.

use super::Networks;
use crate::error::ServiceError;
use guestnet_mode_api::{Definition, FirewallPolicy, FirewallRule, HostPort, Plan, Protocol};
use std::net::Ipv4Addr;

/// The forward rules of a plan.
fn forwards(plan: &Plan) -> impl Iterator<Item = (&HostPort, Option<&Ipv4Addr>)> {
    let rules = match &plan.firewall {
        FirewallPolicy::Rules { rules, .. } => rules.as_slice(),
        _ => &[],
    };
    rules.iter().filter_map(|r| match r {
        FirewallRule::Forward { port, address, .. } => Some((port, address.as_ref())),
        _ => None,
    })
}

fn overlap(a: (&HostPort, Option<&Ipv4Addr>), b: (&HostPort, Option<&Ipv4Addr>)) -> bool {
    a.0.protocol == b.0.protocol
        && a.0.first <= b.0.last
        && b.0.first <= a.0.last
        && match (a.1, b.1) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        }
}

/// A mode that took the definition's forwards and planned none of them,
/// and said nothing, is a mode that does not know forwards: the user
/// learns it from the network's warnings rather than from a silent port.
pub(super) fn note_unserved(def: &Definition, plan: &mut Plan) {
    if def.forwards.is_empty() || forwards(plan).next().is_some() {
        return;
    }
    if plan.warnings.iter().any(|w| w.contains("forward")) {
        return;
    }
    plan.warnings.push(format!(
        "mode {} planned none of the network's {} forwards",
        def.mode,
        def.forwards.len()
    ));
}

/// Refuses a plan whose forwards take a port another active network
/// forwards, or one a process of the host listens on (`listening`: from
/// [`listening_ports`]).
pub(super) fn check(
    plan: &Plan,
    others: &[(&str, &Plan)],
    listening: &[(Protocol, Option<Ipv4Addr>, u16)],
    host_addresses: &[Ipv4Addr],
) -> Result<(), String> {
    for mine in forwards(plan) {
        if let Some(a) = mine.1 {
            if !host_addresses.contains(a) {
                return Err(format!("{}: {a} is not an address of this host", mine.0));
            }
        }
        for (name, other) in others {
            if let Some(theirs) = forwards(other).find(|t| overlap(mine, *t)) {
                return Err(format!(
                    "{} is already forwarded by network {name:?} ({})",
                    mine.0, theirs.0
                ));
            }
        }
        let taken = listening.iter().find(|(proto, addr, port)| {
            *proto == mine.0.protocol
                && (mine.0.first..=mine.0.last).contains(port)
                && match (addr, mine.1) {
                    (Some(a), Some(m)) => a == m,
                    _ => true,
                }
        });
        if let Some((proto, addr, port)) = taken {
            let on = addr
                .map(|a| a.to_string())
                .unwrap_or_else(|| "every address".into());
            return Err(format!(
                "{}: a process of the host listens on {}/{port} ({on})",
                mine.0,
                proto.as_str()
            ));
        }
    }
    Ok(())
}

/// The ports processes of this network namespace listen on: TCP sockets in
/// LISTEN and bound UDP sockets, IPv4 and IPv6, with their address (`None`:
/// any). Read from /proc/net, whose size is bounded by the sockets there.
pub(super) fn listening_ports() -> Vec<(Protocol, Option<Ipv4Addr>, u16)> {
    let mut out = Vec::new();
    for (file, proto, v6) in [
        ("/proc/net/tcp", Protocol::Tcp, false),
        ("/proc/net/tcp6", Protocol::Tcp, true),
        ("/proc/net/udp", Protocol::Udp, false),
        ("/proc/net/udp6", Protocol::Udp, true),
    ] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (cols.get(1), cols.get(3)) else {
                continue;
            };
            // TCP: LISTEN only; UDP: unconnected sockets (state 07),
            // not a client's connected one.
            let wanted = if proto == Protocol::Tcp { "0A" } else { "07" };
            if *state != wanted {
                continue;
            }
            let Some((addr, port)) = local.split_once(':') else {
                continue;
            };
            let Ok(port) = u16::from_str_radix(port, 16) else {
                continue;
            };
            let addr = if v6 {
                // Only the any address and IPv4-mapped ones matter here.
                match addr {
                    "00000000000000000000000000000000" => None,
                    // ::ffff:a.b.c.d, in the kernel's words of host order.
                    a if a.len() == 32
                        && (a.starts_with("0000000000000000FFFF0000")
                            || a.starts_with("00000000000000000000FFFF")) =>
                    {
                        parse_v4_hex(&a[24..])
                    }
                    _ => continue,
                }
            } else {
                parse_v4_hex(addr).filter(|a| !a.is_unspecified())
            };
            // A socket on 127.0.0.0/8 takes nothing a forward sees.
            if addr.is_some_and(|a| a.is_loopback()) {
                continue;
            }
            out.push((proto, addr, port));
        }
    }
    out
}

/// /proc/net's IPv4 address: 8 hex digits, in host byte order.
fn parse_v4_hex(s: &str) -> Option<Ipv4Addr> {
    let n = u32::from_str_radix(s, 16).ok()?;
    Some(Ipv4Addr::from(n.to_ne_bytes()))
}

impl Networks {
    /// Adds the forward `table` (the keys of `[[forwards]]`) to network
    /// `name`'s definition, as an Update would: checked whole, kept when
    /// the network is persistent, live when it runs.
    pub async fn add_forward(&self, name: &str, table: toml::Value) -> Result<(), ServiceError> {
        self.edit(name, |def| {
            let mut text: toml::Table = toml::from_str(&def.to_toml())
                .map_err(|e| ServiceError::Failed(format!("reading back the definition: {e}")))?;
            let forwards = text
                .entry("forwards")
                .or_insert_with(|| toml::Value::Array(vec![]));
            if let toml::Value::Array(list) = forwards {
                list.push(table);
            }
            Ok(toml::to_string(&text).expect("a table of plain values serializes"))
        })
        .await
    }

    /// Removes the forward of `proto` host port(s) `port` (`8080` or
    /// `8000-8010`) from network `name`.
    pub async fn remove_forward(
        &self,
        name: &str,
        proto: &str,
        port: &str,
    ) -> Result<(), ServiceError> {
        let wanted: HostPort = format!("{proto}/{port}")
            .parse()
            .map_err(ServiceError::InvalidConfig)?;
        self.edit(name, |def| {
            let mut def = def.clone();
            let before = def.forwards.len();
            def.forwards.retain(|f| f.port != wanted);
            if def.forwards.len() == before {
                return Err(ServiceError::InvalidConfig(format!(
                    "network {name:?} forwards no {wanted}"
                )));
            }
            Ok(def.to_toml())
        })
        .await
    }

    /// Moves forwards with their guests from now on: when a lease of a
    /// network whose forwards name a guest by MAC or host name changes,
    /// the network is planned again ([`Networks::replan`]), within the
    /// second. One task for all networks; a network is re-planned by its
    /// own `ops` lock like any change, so guests and other networks wait
    /// for nothing.
    pub fn follow_forwards(self: &std::sync::Arc<Self>) {
        let networks = self.clone();
        let mut events = self.subscribe_leases();
        tokio::spawn(async move {
            loop {
                let names: Vec<String> = match events.recv().await {
                    // A renewal keeps the address: nothing to follow. A
                    // guest renewing fast re-plans nothing.
                    Ok(e) if e.event.change == crate::dhcp::LeaseChange::Renewed => continue,
                    Ok(e) if !networks.forwards_name(&e.network, &e.event.lease) => continue,
                    Ok(e) => vec![e.network],
                    // Missed some: look at every network.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => networks
                        .slots()
                        .iter()
                        .map(|s| s.network().definition.name.to_string())
                        .collect(),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                for name in names {
                    networks.follow_leases(&name).await;
                }
            }
        });
    }

    /// Whether a forward of `network` names the guest of `lease` (by MAC
    /// or host name): only then can its change move a forward.
    fn forwards_name(&self, network: &str, lease: &crate::dhcp::Lease) -> bool {
        let Ok(slot) = self.slot(network) else {
            return false;
        };
        slot.network()
            .definition
            .forwards
            .iter()
            .any(|f| match &f.to {
                guestnet_mode_api::ForwardTarget::Mac(m) => *m == lease.mac,
                guestnet_mode_api::ForwardTarget::Name(n) => lease
                    .hostname
                    .as_deref()
                    .is_some_and(|h| h.eq_ignore_ascii_case(n)),
                guestnet_mode_api::ForwardTarget::Ip(_) => false,
            })
    }

    async fn follow_leases(&self, name: &str) {
        let Ok(slot) = self.slot(name) else { return };
        let network = slot.network();
        let named = network
            .definition
            .forwards
            .iter()
            .any(|f| !matches!(f.to, guestnet_mode_api::ForwardTarget::Ip(_)));
        if !named || network.plan.is_none() {
            return;
        }
        if let Err(e) = self.replan(name).await {
            match e {
                ServiceError::NoSuchNetwork(_) => {}
                e => tracing::warn!("moving the forwards of {name} after a lease change: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_addresses_read_as_written() {
        // 127.0.0.1 and 10.200.0.1 as /proc/net/tcp prints them on x86.
        assert_eq!(parse_v4_hex("0100007F"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(parse_v4_hex("0100C80A"), Some(Ipv4Addr::new(10, 200, 0, 1)));
    }
}
