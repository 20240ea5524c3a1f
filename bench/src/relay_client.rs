//! A DHCP client speaking as a relay agent (RFC 2131 4.1: giaddr set, from
//! port 67, answered at giaddr port 67), as Kea's perfdhcp does: it needs
//! no raw socket and no unconfigured interface, only an address in the
//! server's subnet, and it times the ACK to the microsecond in the same
//! process that hears the lease signal.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

const MAGIC: [u8; 4] = [99, 130, 83, 99];
const SERVER_PORT: u16 = 67;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MessageType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Ack = 5,
    Nak = 6,
}

pub struct RelayClient {
    socket: UdpSocket,
    relay: Ipv4Addr,
    server: SocketAddrV4,
}

/// What one DISCOVER, OFFER, REQUEST, ACK exchange gave.
pub struct Exchange {
    pub ip: Ipv4Addr,
    /// When the ACK was read off the socket.
    pub acked_at: Instant,
}

impl RelayClient {
    /// Binds `relay`:67, an address of this namespace in the server's subnet.
    pub async fn bind(relay: Ipv4Addr, server: Ipv4Addr) -> std::io::Result<RelayClient> {
        let socket = UdpSocket::bind(SocketAddrV4::new(relay, SERVER_PORT)).await?;
        Ok(RelayClient {
            socket,
            relay,
            server: SocketAddrV4::new(server, SERVER_PORT),
        })
    }

    /// One full exchange for `mac`; an error names the step that failed.
    pub async fn lease(&self, mac: [u8; 6], xid: u32, wait: Duration) -> Result<Exchange, String> {
        self.send(MessageType::Discover, xid, mac, None).await?;
        let offer = self.receive(xid, wait).await?;
        if offer.kind != MessageType::Offer {
            return Err(format!("DISCOVER answered with {:?}", offer.kind));
        }
        let server_id = offer.server_id.unwrap_or(*self.server.ip());
        self.send(
            MessageType::Request,
            xid,
            mac,
            Some((offer.yiaddr, server_id)),
        )
        .await?;
        let ack = self.receive(xid, wait).await?;
        let acked_at = Instant::now();
        match ack.kind {
            MessageType::Ack => Ok(Exchange {
                ip: ack.yiaddr,
                acked_at,
            }),
            other => Err(format!("REQUEST answered with {other:?}")),
        }
    }

    async fn send(
        &self,
        kind: MessageType,
        xid: u32,
        mac: [u8; 6],
        request: Option<(Ipv4Addr, Ipv4Addr)>,
    ) -> Result<(), String> {
        let packet = encode(kind, xid, mac, self.relay, request);
        self.socket
            .send_to(&packet, self.server)
            .await
            .map(|_| ())
            .map_err(|e| format!("sending {kind:?} to {}: {e}", self.server))
    }

    async fn receive(&self, xid: u32, wait: Duration) -> Result<Reply, String> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut buf = [0u8; 1500];
        loop {
            let n = tokio::time::timeout_at(deadline, self.socket.recv(&mut buf))
                .await
                .map_err(|_| format!("no reply to xid {xid:#x} within {wait:?}"))?
                .map_err(|e| format!("receiving: {e}"))?;
            if let Some(reply) = decode(&buf[..n]).filter(|r| r.xid == xid) {
                return Ok(reply);
            }
        }
    }
}

fn encode(
    kind: MessageType,
    xid: u32,
    mac: [u8; 6],
    relay: Ipv4Addr,
    request: Option<(Ipv4Addr, Ipv4Addr)>,
) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 1; // BOOTREQUEST
    p[1] = 1; // Ethernet
    p[2] = 6;
    p[3] = 1; // hops: one relay
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[24..28].copy_from_slice(&relay.octets());
    p[28..34].copy_from_slice(&mac);
    p.extend_from_slice(&MAGIC);
    p.extend_from_slice(&[53, 1, kind as u8]);
    if let Some((ip, server)) = request {
        p.extend_from_slice(&[50, 4]);
        p.extend_from_slice(&ip.octets());
        p.extend_from_slice(&[54, 4]);
        p.extend_from_slice(&server.octets());
    }
    p.extend_from_slice(&[55, 3, 1, 3, 6, 255]);
    p.resize(300, 0);
    p
}

struct Reply {
    xid: u32,
    kind: MessageType,
    yiaddr: Ipv4Addr,
    server_id: Option<Ipv4Addr>,
}

fn decode(p: &[u8]) -> Option<Reply> {
    if p.len() < 240 || p[0] != 2 || p[236..240] != MAGIC {
        return None;
    }
    let xid = u32::from_be_bytes(p[4..8].try_into().ok()?);
    let yiaddr = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let (mut kind, mut server_id) = (None, None);
    let mut i = 240;
    while i < p.len() {
        match p[i] {
            255 => break,
            0 => i += 1,
            code => {
                let len = *p.get(i + 1)? as usize;
                let value = p.get(i + 2..i + 2 + len)?;
                match (code, value) {
                    (53, [2]) => kind = Some(MessageType::Offer),
                    (53, [5]) => kind = Some(MessageType::Ack),
                    (53, [6]) => kind = Some(MessageType::Nak),
                    (54, [a, b, c, d]) => server_id = Some(Ipv4Addr::new(*a, *b, *c, *d)),
                    _ => {}
                }
                i += 2 + len;
            }
        }
    }
    Some(Reply {
        xid,
        kind: kind?,
        yiaddr,
        server_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_request_names_the_relay_the_client_and_the_address() {
        let mac = [2, 0, 0, 0, 0, 7];
        let p = encode(
            MessageType::Request,
            0xabcd,
            mac,
            Ipv4Addr::new(10, 1, 0, 2),
            Some((Ipv4Addr::new(10, 1, 0, 50), Ipv4Addr::new(10, 1, 0, 1))),
        );
        assert_eq!(&p[24..28], &[10, 1, 0, 2]);
        assert_eq!(&p[28..34], &mac);
        assert_eq!(&p[240..243], &[53, 1, 3]);
        assert_eq!(&p[243..249], &[50, 4, 10, 1, 0, 50]);
    }

    #[test]
    fn a_reply_is_decoded_and_a_request_is_not() {
        let mut p = encode(MessageType::Discover, 9, [2; 6], Ipv4Addr::LOCALHOST, None);
        assert!(decode(&p).is_none(), "a BOOTREQUEST is not a reply");
        p[0] = 2;
        p[16..20].copy_from_slice(&[10, 1, 0, 9]);
        p[242] = 5;
        let r = decode(&p).expect("an ACK");
        assert_eq!(
            (r.xid, r.kind, r.yiaddr),
            (9, MessageType::Ack, Ipv4Addr::new(10, 1, 0, 9))
        );
    }
}
