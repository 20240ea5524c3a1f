//! The links of the namespace, read with RTM_GETLINK (one dump for all,
//! one request for a name) on a netlink socket of its own and parsed for
//! the few attributes guestnetd uses; the link watcher's announcements go
//! through the same parser. rtnetlink's own parser (netlink-packet-route 0.19) formats every
//! attribute of every link as text while it decodes, which made a dump of a
//! host with a few hundred links cost tens of milliseconds of CPU, once or
//! twice per start and stop. The walk below skips what it does not need,
//! and bounds every read: a message that does not fit is an error, not a
//! guess.

use super::{Link, LinkEvent};

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_IFALIAS: u16 = 20;
const IFLA_EXT_MASK: u16 = 29;
const IFLA_INFO_KIND: u16 = 1;
/// Leave the statistics out of the dump; nothing here reads them.
const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;
/// Nested attributes carry flags in the top bits of their type.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Reads every link; blocking (run it on a blocking thread).
pub fn dump() -> std::io::Result<Vec<Link>> {
    exchange(&request(NLM_F_REQUEST | NLM_F_DUMP, None))
}

/// The link named `name`, or None; blocking. One request, not a dump.
pub fn by_name(name: &str) -> std::io::Result<Option<Link>> {
    match exchange(&request(NLM_F_REQUEST, Some(name))) {
        Ok(mut links) => Ok(links.pop()),
        // The kernel answers a name it does not know with ENODEV.
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sends `request` on a socket of its own and collects the links of the
/// answer: up to NLMSG_DONE for a dump, the one message otherwise.
fn exchange(request: &[u8]) -> std::io::Result<Vec<Link>> {
    use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
    let dump = u16_at(request, 6).is_some_and(|f| f & NLM_F_DUMP != 0);
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    socket.send(request, 0)?;
    let mut links = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = socket.recv(&mut &mut buf[..], 0)?;
        for (kind, payload) in messages(&buf[..n])? {
            match kind {
                NLMSG_DONE => return Ok(links),
                NLMSG_ERROR => return Err(error_of(payload)),
                RTM_NEWLINK => links.push(parse(payload)?),
                _ => {}
            }
        }
        if !dump && !links.is_empty() {
            return Ok(links);
        }
    }
}

/// The link events in one datagram of RTNLGRP_LINK announcements.
pub fn announcements(datagram: &[u8]) -> std::io::Result<Vec<LinkEvent>> {
    let mut out = Vec::new();
    for (kind, payload) in messages(datagram)? {
        match kind {
            RTM_NEWLINK => out.push(LinkEvent::Changed(parse(payload)?)),
            RTM_DELLINK => out.push(LinkEvent::Removed(parse(payload)?)),
            _ => {}
        }
    }
    Ok(out)
}

/// An RTM_GETLINK request asking for no statistics, for one link by name
/// or (with NLM_F_DUMP) for all.
fn request(flags: u16, name: Option<&str>) -> Vec<u8> {
    let mut m = vec![0u8; NLMSG_HDRLEN];
    m[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
    m[6..8].copy_from_slice(&flags.to_ne_bytes());
    m[8..12].copy_from_slice(&1u32.to_ne_bytes()); // sequence number
    m.extend_from_slice(&[0u8; IFINFOMSG_LEN]); // any family, any index
    push_attribute(
        &mut m,
        IFLA_EXT_MASK,
        &RTEXT_FILTER_SKIP_STATS.to_ne_bytes(),
    );
    if let Some(name) = name {
        let mut value = name.as_bytes().to_vec();
        value.push(0);
        push_attribute(&mut m, IFLA_IFNAME, &value);
    }
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m
}

fn push_attribute(m: &mut Vec<u8>, kind: u16, value: &[u8]) {
    m.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(value);
    m.resize(align(m.len()), 0);
}

fn malformed(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("malformed link dump: {what}"),
    )
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The netlink messages of one datagram: (type, payload after the header).
fn messages(mut b: &[u8]) -> std::io::Result<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let len = u32_at(b, 0).ok_or_else(|| malformed("short header"))? as usize;
        let kind = u16_at(b, 4).ok_or_else(|| malformed("short header"))?;
        if len < NLMSG_HDRLEN || len > b.len() {
            return Err(malformed("message length"));
        }
        out.push((kind, &b[NLMSG_HDRLEN..len]));
        b = &b[align(len).min(b.len())..];
    }
    Ok(out)
}

fn error_of(payload: &[u8]) -> std::io::Error {
    match u32_at(payload, 0).map(|e| e as i32) {
        Some(code) if code < 0 => std::io::Error::from_raw_os_error(-code),
        _ => malformed("an error message without an error"),
    }
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// The attributes in `b`: (type without flags, value).
fn attributes(mut b: &[u8]) -> std::io::Result<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16_at(b, 0).expect("4 bytes") as usize;
        let kind = u16_at(b, 2).expect("4 bytes") & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            return Err(malformed("attribute length"));
        }
        out.push((kind, &b[4..len]));
        b = &b[align(len).min(b.len())..];
    }
    Ok(out)
}

/// A NUL-terminated string attribute.
fn text(v: &[u8]) -> String {
    let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

/// One RTM_NEWLINK payload: ifinfomsg, then attributes.
fn parse(payload: &[u8]) -> std::io::Result<Link> {
    let index = u32_at(payload, 4).ok_or_else(|| malformed("short ifinfomsg"))?;
    let mut link = Link {
        index,
        name: String::new(),
        kind: None,
        master: None,
        alias: None,
        mac: None,
        mtu: 0,
        addresses: Vec::new(),
    };
    for (kind, v) in attributes(payload.get(IFINFOMSG_LEN..).unwrap_or_default())? {
        match kind {
            IFLA_IFNAME => link.name = text(v),
            IFLA_IFALIAS => link.alias = Some(text(v)),
            IFLA_MASTER => link.master = u32_at(v, 0),
            IFLA_MTU => link.mtu = u32_at(v, 0).unwrap_or(0),
            IFLA_ADDRESS if v.len() == 6 => link.mac = v.try_into().ok(),
            IFLA_LINKINFO => {
                for (info, iv) in attributes(v)? {
                    if info == IFLA_INFO_KIND {
                        link.kind = Some(text(iv));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        push_attribute(&mut a, kind, value);
        a
    }

    #[test]
    fn a_link_message_yields_the_attributes_guestnetd_uses() {
        let mut p = vec![0u8; IFINFOMSG_LEN];
        p[4..8].copy_from_slice(&7u32.to_ne_bytes());
        p.extend(attr(IFLA_IFNAME, b"gnbr1\0"));
        p.extend(attr(IFLA_MTU, &1500u32.to_ne_bytes()));
        p.extend(attr(IFLA_MASTER, &3u32.to_ne_bytes()));
        p.extend(attr(IFLA_ADDRESS, &[2, 0, 0, 0, 0, 9]));
        p.extend(attr(IFLA_IFALIAS, b"guestnet:lan\0"));
        p.extend(attr(
            IFLA_LINKINFO | 0x8000,
            &attr(IFLA_INFO_KIND, b"bridge\0"),
        ));
        let l = parse(&p).expect("parses");
        assert_eq!((l.index, l.name.as_str(), l.mtu), (7, "gnbr1", 1500));
        assert_eq!(l.master, Some(3));
        assert_eq!(l.mac, Some([2, 0, 0, 0, 0, 9]));
        assert_eq!(l.alias.as_deref(), Some("guestnet:lan"));
        assert_eq!(l.kind.as_deref(), Some("bridge"));
    }

    #[test]
    fn lengths_that_do_not_fit_are_refused() {
        let mut p = vec![0u8; IFINFOMSG_LEN];
        p.extend_from_slice(&200u16.to_ne_bytes());
        p.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
        p.extend_from_slice(b"gn");
        assert!(parse(&p).is_err());
        assert!(messages(&[40, 0, 0, 0, 16, 0, 0, 0]).is_err());
        assert!(parse(&[0u8; 3]).is_err());
    }

    #[test]
    fn the_dump_lists_this_namespaces_loopback() {
        let links = dump().expect("a link dump");
        assert!(
            links.iter().any(|l| l.name == "lo" && l.index == 1),
            "{links:?}"
        );
    }
}
