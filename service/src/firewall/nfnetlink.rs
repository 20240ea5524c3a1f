//! guestnet's own nf_tables netlink, with no process and no C library:
//! for now the announcements the guard watches (NFNLGRP_NFTABLES, what
//! `nft monitor` prints), read on a socket of guestnetd's own. Only the
//! few messages and attributes the guard needs are decoded; the rest is
//! passed over.
//!
//! The layout (include/uapi/linux/netfilter/nf_tables.h and nfnetlink.h):
//! a netlink header, whose type is the nf_tables subsystem (10) in the high
//! byte and the message in the low one; a 4-byte `nfgenmsg` (family,
//! version, resource id); then attributes, 4-byte aligned.

use std::io;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNLGRP_NFTABLES: u32 = 7;

const NFT_MSG_DELTABLE: u8 = 2;
const NFT_MSG_NEWCHAIN: u8 = 3;
const NFT_MSG_DELRULE: u8 = 8;
const NFT_MSG_NEWGEN: u8 = 15;

/// The first attribute of every object's message is its table
/// (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE...).
const NFTA_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_GEN_PROC_PID: u16 = 2;

/// Address families, as nftables numbers them (NFPROTO_*).
pub const NFPROTO_INET: u8 = 1;
pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_BRIDGE: u8 = 7;

/// One nf_tables announcement, as far as the guard cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A table was deleted.
    DeleteTable { family: u8, table: String },
    /// A chain was added.
    NewChain {
        family: u8,
        table: String,
        chain: String,
    },
    /// A rule was deleted.
    DeleteRule {
        family: u8,
        table: String,
        chain: String,
    },
    /// Anything else done to an object of `table`.
    Other { family: u8, table: String },
    /// The end of a transaction, with the process that made it.
    Generation { pid: Option<u32> },
}

impl Event {
    /// The family and table the event is about, if any.
    pub fn table(&self) -> Option<(u8, &str)> {
        match self {
            Event::DeleteTable { family, table }
            | Event::NewChain { family, table, .. }
            | Event::DeleteRule { family, table, .. }
            | Event::Other { family, table } => Some((*family, table)),
            Event::Generation { .. } => None,
        }
    }
}

/// The attributes of a message body, as (type, payload).
fn attributes(mut body: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if body.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([body[0], body[1]]));
        let kind = u16::from_ne_bytes([body[2], body[3]]) & 0x3fff;
        if len < 4 || len > body.len() {
            return None;
        }
        let payload = &body[4..len];
        body = body.get((len + 3) & !3..).unwrap_or(&[]);
        Some((kind, payload))
    })
}

fn string(payload: &[u8]) -> String {
    let end = payload
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(payload.len());
    String::from_utf8_lossy(&payload[..end]).into_owned()
}

/// The nf_tables announcements in one datagram read from the group.
pub fn parse(mut buf: &[u8]) -> Vec<Event> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let msg = &buf[16..len];
        buf = buf.get((len + 3) & !3..).unwrap_or(&[]);
        if kind >> 8 != NFNL_SUBSYS_NFTABLES || msg.len() < 4 {
            continue;
        }
        let family = msg[0];
        let attrs: Vec<(u16, &[u8])> = attributes(&msg[4..]).collect();
        let attr = |t: u16| attrs.iter().find(|(k, _)| *k == t).map(|(_, p)| *p);
        let event = match (kind & 0xff) as u8 {
            NFT_MSG_NEWGEN => Event::Generation {
                pid: attr(NFTA_GEN_PROC_PID)
                    .and_then(|p| p.try_into().ok())
                    .map(u32::from_be_bytes),
            },
            other => {
                let Some(table) = attr(NFTA_TABLE).map(string) else {
                    continue;
                };
                match other {
                    NFT_MSG_DELTABLE => Event::DeleteTable { family, table },
                    NFT_MSG_NEWCHAIN => Event::NewChain {
                        family,
                        table,
                        chain: attr(NFTA_CHAIN_NAME).map(string).unwrap_or_default(),
                    },
                    NFT_MSG_DELRULE => Event::DeleteRule {
                        family,
                        table,
                        chain: attr(NFTA_RULE_CHAIN).map(string).unwrap_or_default(),
                    },
                    _ => Event::Other { family, table },
                }
            }
        };
        out.push(event);
    }
    out
}

/// A socket subscribed to nf_tables' announcements in the calling
/// thread's network namespace.
pub fn subscribe() -> io::Result<netlink_sys::Socket> {
    let mut socket = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_NETFILTER)?;
    socket.bind(&netlink_sys::SocketAddr::new(0, 0))?;
    socket.add_membership(NFNLGRP_NFTABLES)?;
    Ok(socket)
}

/// [`subscribe`], as a tokio socket.
pub fn subscribe_async() -> io::Result<netlink_sys::TokioSocket> {
    use netlink_sys::AsyncSocket;
    let mut socket = netlink_sys::TokioSocket::new(netlink_sys::protocols::NETLINK_NETFILTER)?;
    socket
        .socket_mut()
        .bind(&netlink_sys::SocketAddr::new(0, 0))?;
    socket.socket_mut().add_membership(NFNLGRP_NFTABLES)?;
    crate::host::socket_buffers::grow(socket.socket_ref(), 4 << 20, false);
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel announces for `nft` commands run in a scratch
    /// network namespace, read on a socket opened in it.
    #[test]
    fn the_kernels_announcements_parse_as_the_guard_needs() {
        if unsafe { libc::geteuid() } != 0 {
            assert!(std::env::var_os("CI").is_none(), "needs root");
            return;
        }
        let ns = format!("gnnfnl{}", std::process::id());
        let run = |args: &[&str]| {
            let out = std::process::Command::new(args[0])
                .args(&args[1..])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&["ip", "netns", "add", &ns]);
        let path = format!("/var/run/netns/{ns}");
        let nft = |cmd: &str| run(&["ip", "netns", "exec", &ns, "nft", cmd]);
        let events = std::thread::scope(|s| {
            s.spawn(|| {
            let f = std::fs::File::open(path).unwrap();
            use std::os::fd::AsRawFd;
            // SAFETY: setns on this thread only, with an open netns fd.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            let socket = subscribe().unwrap();
            nft("add table inet guestnet");
            nft("add table ip filter; add chain ip filter DOCKER-USER; add rule ip filter DOCKER-USER accept comment \"x\"");
            nft("flush chain ip filter DOCKER-USER");
            nft("delete table inet guestnet");
            socket.set_non_blocking(true).unwrap();
            let mut events = Vec::new();
            let mut buf = vec![0u8; 65536];
            loop {
                match socket.recv(&mut &mut buf[..], 0) {
                    Ok(n) => events.extend(parse(&buf[..n])),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
            events
            })
            .join()
        });
        run(&["ip", "netns", "del", &ns]);
        let events = events.unwrap();
        let gens = events
            .iter()
            .filter(|e| matches!(e, Event::Generation { pid: Some(_) }))
            .count();
        assert_eq!(gens, 4, "{events:?}");
        for wanted in [
            Event::NewChain {
                family: NFPROTO_IPV4,
                table: "filter".into(),
                chain: "DOCKER-USER".into(),
            },
            Event::DeleteRule {
                family: NFPROTO_IPV4,
                table: "filter".into(),
                chain: "DOCKER-USER".into(),
            },
            Event::DeleteTable {
                family: NFPROTO_INET,
                table: "guestnet".into(),
            },
        ] {
            assert!(events.contains(&wanted), "no {wanted:?} in {events:?}");
        }
    }
}
