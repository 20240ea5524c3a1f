//! The "a lease was added" signal of either server, heard on a bus and
//! stamped the moment it is read: guestnetd's `org.guestnet1.Network.
//! LeaseAdded(mac, ip, hostname, client_id, expiry)` or dnsmasq's
//! `uk.org.thekelleys.dnsmasq.DhcpLeaseAdded(ip, mac, hostname)` (dnsmasq
//! with `--enable-dbus`, the signal libvirt could use but polls instead).

use clap::ValueEnum;
use futures::StreamExt;
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc;
use zbus::message::Type;
use zbus::{Connection, MatchRule, MessageStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Server {
    Guestnet,
    Dnsmasq,
}

impl Server {
    fn rule(self) -> zbus::Result<MatchRule<'static>> {
        let (interface, member) = match self {
            Server::Guestnet => ("org.guestnet1.Network", "LeaseAdded"),
            Server::Dnsmasq => ("uk.org.thekelleys.dnsmasq", "DhcpLeaseAdded"),
        };
        Ok(MatchRule::builder()
            .msg_type(Type::Signal)
            .interface(interface)?
            .member(member)?
            .build())
    }

    /// The client's MAC address from the signal's arguments.
    fn mac_of(self, body: &zbus::message::Body) -> zbus::Result<String> {
        let mac = match self {
            Server::Guestnet => {
                body.deserialize::<(String, String, String, String, u64)>()?
                    .0
            }
            Server::Dnsmasq => body.deserialize::<(String, String, String)>()?.1,
        };
        Ok(mac.to_ascii_lowercase())
    }
}

/// One signal as heard.
pub struct Heard {
    pub mac: String,
    pub at: Instant,
    pub wall: SystemTime,
}

/// Subscribes on `bus` and returns the signals as they arrive; the match
/// rule is in place when this returns, so nothing later is missed.
pub async fn subscribe(bus: &str, server: Server) -> zbus::Result<mpsc::UnboundedReceiver<Heard>> {
    let conn: Connection = zbus::connection::Builder::address(bus)?.build().await?;
    let mut stream = MessageStream::for_match_rule(server.rule()?, &conn, Some(65536)).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _keep = conn;
        while let Some(Ok(msg)) = stream.next().await {
            let (at, wall) = (Instant::now(), SystemTime::now());
            match server.mac_of(&msg.body()) {
                Ok(mac) => {
                    if tx.send(Heard { mac, at, wall }).is_err() {
                        return;
                    }
                }
                Err(e) => eprintln!("a lease signal with unexpected arguments: {e}"),
            }
        }
    });
    Ok(rx)
}
