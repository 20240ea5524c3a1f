//! The servers an active network runs: DHCP and DNS on its bridge, fed by
//! one zone, and changed in place by an Update where they can be: a DHCP
//! pool keeps its socket and leases, a DNS server its sockets and the names
//! of the leases. Only a server whose bridge or address moves starts anew.

use super::{NetworkLeaseEvent, Networks, Slot};
use crate::dhcp::server::{DhcpServer, EventSink};
use crate::dhcp::{Lease, LeaseChange, LeaseEvent};
use crate::dns::{Claim, DnsServer, Refusal, SharedZone, Upstreams, Zone};
use crate::error::ServiceError;
use guestnet_mode_api::{DhcpPlan, DnsPlan, NetworkName, Plan};
use std::sync::{Arc, RwLock};

/// DNS is served on the standard port; the DNS module's tests use others.
const DNS_PORT: u16 = 53;

/// The servers of one active network; dropping them stops them.
pub(super) struct Services {
    pub(super) dhcp: Option<DhcpServer>,
    dns: Option<Dns>,
    /// Names of leases and static hosts, shared by both servers.
    zone: SharedZone,
}

impl Services {
    /// The network's leases as a mode reads them, each with its host name
    /// only when the DNS answers that name with the lease's address (the
    /// first guest to claim a name keeps it): a guest cannot take another
    /// one's forward by sending its name.
    pub(super) fn lease_facts(&self) -> Vec<guestnet_mode_api::LeaseFact> {
        let Some(dhcp) = &self.dhcp else {
            return vec![];
        };
        let leases = dhcp.leases();
        let zone = self.zone.read().expect("zone lock");
        leases
            .into_iter()
            .map(|l| guestnet_mode_api::LeaseFact {
                mac: l.mac,
                ip: l.ip,
                name: l
                    .hostname
                    .filter(|n| zone.addresses(n).first() == Some(&l.ip)),
            })
            .collect()
    }
}

struct Dns {
    server: DnsServer,
    /// Where forwarded queries go; swapped in place by an Update.
    upstreams: Upstreams,
    plan: DnsPlan,
}

impl Services {
    /// Stops both servers and waits until their sockets are closed, so that
    /// a restart on the same address finds it free.
    pub(super) async fn stop(self) {
        stop_both(self.dhcp, self.dns).await;
    }
}

async fn stop_both(dhcp: Option<DhcpServer>, dns: Option<Dns>) {
    if let Some(d) = dhcp {
        d.stop().await;
    }
    if let Some(d) = dns {
        d.server.stop().await;
    }
}

impl Networks {
    fn upstreams_for(&self, plan: &DnsPlan) -> Upstreams {
        if !plan.upstream {
            // The zone refuses what would go there; nothing to read either.
            Upstreams::fixed(vec![])
        } else if plan.forwarders.is_empty() {
            Upstreams::resolv_conf(self.resolv_conf.clone())
        } else {
            Upstreams::fixed(plan.forwarders.clone())
        }
    }

    /// Starts the DHCP and DNS servers the plan asks for.
    pub(super) async fn start_services(
        &self,
        name: &NetworkName,
        plan: &Plan,
    ) -> Result<Services, ServiceError> {
        let zone: SharedZone = Arc::new(RwLock::new(match &plan.dns {
            Some(d) => Zone::from_plan(d),
            None => Zone::new(None, &[]),
        }));
        let dhcp = match &plan.dhcp {
            Some(d) => Some(self.start_dhcp(name, plan, d, &zone).await?),
            None => None,
        };
        if let Some(server) = &dhcp {
            let mut z = zone.write().expect("zone lock");
            // Refusals were reported when the leases were granted.
            for lease in server.leases() {
                publish(&mut z, name.as_str(), &lease, false);
            }
        }
        let dns = match &plan.dns {
            Some(d) => Some(self.start_dns(plan, d, &zone).await?),
            None => None,
        };
        self.announce_dns(name, plan).await;
        Ok(Services { dhcp, dns, zone })
    }

    /// Tells systemd-resolved where the network's names are answered (see
    /// `host/resolved.rs`), or that they are not any more.
    pub(super) async fn announce_dns(&self, name: &NetworkName, plan: &Plan) {
        let link = match &plan.dns {
            Some(d) => match self.kernel.link_by_name(plan.bridge.name().as_str()).await {
                Ok(Some(bridge)) => Some(crate::host::resolved::LinkDns {
                    ifindex: bridge.index as i32,
                    server: d.listen,
                    domain: d.domain.clone(),
                }),
                _ => None,
            },
            None => None,
        };
        self.resolved.set(name.as_str(), link).await;
    }

    async fn start_dhcp(
        &self,
        name: &NetworkName,
        plan: &Plan,
        dhcp: &DhcpPlan,
        zone: &SharedZone,
    ) -> Result<DhcpServer, ServiceError> {
        let bridge = plan.bridge.name().as_str();
        let sink = self.lease_sink(name, zone.clone());
        DhcpServer::start(bridge, dhcp.clone(), &self.journal_path(name), sink)
            .await
            .map_err(|e| ServiceError::failed(&format!("starting DHCP on {bridge}"), e))
    }

    async fn start_dns(
        &self,
        plan: &Plan,
        dns: &DnsPlan,
        zone: &SharedZone,
    ) -> Result<Dns, ServiceError> {
        let upstreams = self.upstreams_for(dns);
        let server = DnsServer::start(
            plan.bridge.name().as_str(),
            dns.listen,
            DNS_PORT,
            zone.clone(),
            upstreams.clone(),
        )
        .await
        .map_err(|e| ServiceError::failed(&format!("starting DNS on {}", dns.listen), e))?;
        Ok(Dns {
            server,
            upstreams,
            plan: dns.clone(),
        })
    }

    /// Brings an active network's servers from `old` to `new`. In place,
    /// under the slot's std lock and without an await: the DHCP pool, the
    /// zone's domain and records, the DNS upstreams. A server that must
    /// start anew (its bridge or address changed, or it comes or goes) is
    /// taken out, stopped and replaced outside the lock, so ListLeases and
    /// WaitForLease never wait on it.
    pub(super) async fn update_services(
        &self,
        name: &NetworkName,
        slot: &Slot,
        old: &Plan,
        new: &Plan,
    ) -> Result<(), ServiceError> {
        let same_bridge = old.bridge.name() == new.bridge.name();
        let running = slot.services.lock().expect("services lock").is_some();
        if !running {
            let services = self.start_services(name, new).await?;
            slot.put_services(services);
            return Ok(());
        }
        let (zone, old_dhcp, old_dns) = {
            let mut guard = slot.services.lock().expect("services lock");
            let services = guard
                .as_mut()
                .expect("only this network's change lock holder takes them");
            {
                let mut zone = services.zone.write().expect("zone lock");
                match &new.dns {
                    Some(d) => zone.set_plan(d),
                    None => zone.set_definition(None, &[]),
                }
            }
            let old_dhcp = match (&services.dhcp, &new.dhcp) {
                (Some(server), Some(plan)) if same_bridge => {
                    server.reconfigure(plan.clone());
                    None
                }
                _ => services.dhcp.take(),
            };
            let old_dns = match (&mut services.dns, &new.dns) {
                (Some(dns), Some(plan)) if same_bridge && dns.plan.listen == plan.listen => {
                    if dns.plan.forwarders != plan.forwarders || dns.plan.upstream != plan.upstream
                    {
                        dns.upstreams.replace_with(&self.upstreams_for(plan));
                    }
                    dns.plan = plan.clone();
                    None
                }
                _ => services.dns.take(),
            };
            (services.zone.clone(), old_dhcp, old_dns)
        };
        stop_both(old_dhcp, old_dns).await;
        // Whatever the target plan wants and does not run now starts, by
        // what runs, not by what the plans say: after a failed start, the
        // way back starts it again.
        let (want_dhcp, want_dns) = {
            let guard = slot.services.lock().expect("services lock");
            let running = guard.as_ref();
            (
                new.dhcp
                    .as_ref()
                    .filter(|_| running.is_some_and(|s| s.dhcp.is_none())),
                new.dns
                    .as_ref()
                    .filter(|_| running.is_some_and(|s| s.dns.is_none())),
            )
        };
        let dhcp = match want_dhcp {
            Some(d) => Some(self.start_dhcp(name, new, d, &zone).await?),
            None => None,
        };
        // Kept at once: a DNS server that fails to start next must not
        // lose the DHCP server just started.
        if let Some(server) = dhcp {
            if let Some(services) = slot.services.lock().expect("services lock").as_mut() {
                services.dhcp = Some(server);
            }
        }
        let dns = match want_dns {
            Some(d) => Some(self.start_dns(new, d, &zone).await?),
            None => None,
        };
        if let Some(server) = dns {
            if let Some(services) = slot.services.lock().expect("services lock").as_mut() {
                services.dns = Some(server);
            }
        }
        Ok(())
    }

    /// Where a network's DHCP server reports durable lease changes: its DNS
    /// zone and the lease event channel.
    fn lease_sink(&self, name: &NetworkName, zone: SharedZone) -> EventSink {
        let tx = self.lease_events.clone();
        let signals = self.lease_signals.sender();
        let network = name.to_string();
        Arc::new(move |events: &[LeaseEvent]| {
            {
                let mut z = zone.write().expect("zone lock");
                for e in events {
                    match (e.change, &e.lease.hostname) {
                        (LeaseChange::Added | LeaseChange::Renewed, _) => {
                            publish(&mut z, &network, &e.lease, true);
                        }
                        (LeaseChange::Removed, Some(host)) => z.remove_lease(host, e.lease.ip),
                        (LeaseChange::Removed, None) => {}
                    }
                }
            }
            for e in events {
                let event = NetworkLeaseEvent {
                    network: network.clone(),
                    event: e.clone(),
                };
                if tx.receiver_count() > 0 {
                    let _ = tx.send(event.clone());
                }
                signals.send(event);
            }
        })
    }
}

/// Publishes the name a lease carries (or forgets the one its address had,
/// if it carries none). A refused name is reported once per lease and name,
/// as a warning when `report`.
fn publish(zone: &mut Zone, network: &str, lease: &Lease, report: bool) {
    let Some(host) = &lease.hostname else {
        zone.forget_address(lease.ip);
        return;
    };
    let Claim::Refused { why, first } = zone.add_lease(host, lease.ip) else {
        return;
    };
    let why = match why {
        Refusal::Invalid => "not a DNS label under the domain",
        Refusal::Reserved => "a reserved name or one of the definition",
        Refusal::Taken => "held by another guest's lease",
    };
    if report && first {
        tracing::warn!(network, mac = %lease.mac, name = %host, ip = %lease.ip, "guest's host name not published: {why}");
    } else {
        tracing::debug!(network, mac = %lease.mac, name = %host, ip = %lease.ip, "guest's host name not published: {why}");
    }
}
