//! The options a network serves beyond the ones every reply carries (mask,
//! router, DNS, domain, MTU, lease times): NTP (42), classless static
//! routes (121, and 249 for old Windows), the domain search list (119),
//! the PXE boot server and file (66, 67) and raw options by code. Pure
//! encoding and selection, as the rest of the protocol core.
//!
//! Each is sent only to a client that lists it in its parameter request
//! list (option 55), as RFC 2132 says: a client that did not ask may not
//! parse it, and the space is scarce. The exception is the header's
//! `siaddr` and `file` fields (set by [`super::Pool`]), which PXE ROMs and
//! BOOTP clients read without asking and which cost no option space.

use guestnet_mode_api::check::{DHCP_OPTIONS_OF_GUESTNET, MAX_DHCP_LIST, MAX_RAW_DHCP_OPTIONS};
use guestnet_mode_api::ipnet::Ipv4Net;
use guestnet_mode_api::{DhcpOptions, DnsName, StaticHost};
use std::collections::HashMap;
use std::net::Ipv4Addr;

pub const NTP: u8 = 42;
pub const TFTP_SERVER_NAME: u8 = 66;
pub const BOOTFILE_NAME: u8 = 67;
pub const DOMAIN_SEARCH: u8 = 119;
pub const CLASSLESS_ROUTES: u8 = 121;
/// Microsoft's code for classless routes, before RFC 3442 had one.
pub const MS_CLASSLESS_ROUTES: u8 = 249;
const END: u8 = 255;

/// The smallest message every client accepts (RFC 2131 2: 576-byte IP
/// datagrams), and the IP and UDP headers around the DHCP message.
const MIN_DATAGRAM: usize = 576;
const IP_UDP_HEADERS: usize = 28;

/// One option to append: its code and its whole value (split into
/// 255-byte pieces on the wire, RFC 3396).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extra {
    pub code: u8,
    pub data: Vec<u8>,
}

impl Extra {
    /// Bytes it takes in the options field: a code and a length per piece.
    fn wire_len(&self) -> usize {
        let pieces = self.data.len().div_ceil(255).max(1);
        self.data.len() + 2 * pieces
    }
}

/// The largest DHCP message (without IP and UDP headers) a client with
/// maximum message size `max` (option 57, which counts the whole IP
/// datagram) accepts, never more than `cap`. A value under the legal
/// minimum of 576 is read as 576.
pub fn message_limit(max: Option<u16>, cap: usize) -> usize {
    let datagram = max.map_or(MIN_DATAGRAM, |m| usize::from(m).max(MIN_DATAGRAM));
    datagram.min(cap) - IP_UDP_HEADERS
}

/// The options of `o` that a client asking for `asked` gets, highest
/// priority first: routes (a wrong route is worse than a missing NTP
/// server), search, NTP, PXE, then raw options in the definition's order.
/// `router` is the network's default gateway: RFC 3442 has clients ignore
/// option 3 when 121 is present, so the default route goes into 121 too.
/// Lists are cut at the API's bounds and raw options guestnet sets itself
/// are skipped, whether or not the plan was checked.
pub fn wanted(o: &DhcpOptions, router: Option<Ipv4Addr>, asked: &[u8]) -> Vec<Extra> {
    let asks = |code: u8| asked.contains(&code);
    let mut out = Vec::new();
    let routes = o.routes.iter().take(MAX_DHCP_LIST);
    if !o.routes.is_empty() && (asks(CLASSLESS_ROUTES) || asks(MS_CLASSLESS_ROUTES)) {
        let has_default = o.routes.iter().any(|r| r.to.prefix_len() == 0);
        let default = router
            .filter(|_| !has_default)
            .map(|r| (Ipv4Net::default(), r));
        let data = classless_routes(default.into_iter().chain(routes.map(|r| (r.to, r.via))));
        for code in [CLASSLESS_ROUTES, MS_CLASSLESS_ROUTES] {
            if asks(code) {
                out.push(Extra {
                    code,
                    data: data.clone(),
                });
            }
        }
    }
    if !o.search.is_empty() && asks(DOMAIN_SEARCH) {
        let names: Vec<&DnsName> = o.search.iter().take(MAX_DHCP_LIST).collect();
        out.push(Extra {
            code: DOMAIN_SEARCH,
            data: search_list(&names),
        });
    }
    if !o.ntp.is_empty() && asks(NTP) {
        let data = o.ntp.iter().take(MAX_DHCP_LIST).flat_map(|a| a.octets());
        out.push(Extra {
            code: NTP,
            data: data.collect(),
        });
    }
    if let Some(server) = o.next_server.filter(|_| asks(TFTP_SERVER_NAME)) {
        out.push(Extra {
            code: TFTP_SERVER_NAME,
            data: server.to_string().into_bytes(),
        });
    }
    if let Some(file) = boot_file(o).filter(|_| asks(BOOTFILE_NAME)) {
        out.push(Extra {
            code: BOOTFILE_NAME,
            data: file.as_bytes().to_vec(),
        });
    }
    // A static host's own and the network's ([`for_host`]).
    for raw in o.raw.iter().take(2 * MAX_RAW_DHCP_OPTIONS) {
        let ours = DHCP_OPTIONS_OF_GUESTNET.contains(&raw.code);
        let again = out.iter().any(|e| e.code == raw.code);
        if !ours && !again && raw.value.len() <= 255 && asks(raw.code) {
            out.push(Extra {
                code: raw.code,
                data: raw.value.clone(),
            });
        }
    }
    out
}

/// The options a static host gets: the network's, with the host's boot
/// file in place of the network's, and its raw options first, each in
/// place of the network's of the same code. Bounded as [`wanted`] reads
/// them: the host's list is cut at the API's bound.
pub fn for_host(network: &DhcpOptions, host: &StaticHost) -> DhcpOptions {
    let mut o = network.clone();
    if let Some(f) = &host.filename {
        o.filename = Some(f.clone());
    }
    let own = &host.options[..host.options.len().min(MAX_RAW_DHCP_OPTIONS)];
    o.raw.retain(|r| !own.iter().any(|h| h.code == r.code));
    o.raw.splice(0..0, own.iter().cloned());
    o
}

/// The boot file, if it fits the header's 128-byte `file` field with its
/// terminator (the API's bound).
pub fn boot_file(o: &DhcpOptions) -> Option<&str> {
    o.filename
        .as_deref()
        .filter(|f| !f.is_empty() && f.len() <= 127 && !f.contains('\0'))
}

/// Appends `extras` in order to `buf`, an encoded message that ends with
/// the End option, keeping the whole under `limit` bytes; an option that
/// does not fit is left out (a later, smaller one may still fit). Returns
/// the codes left out.
pub fn append(buf: &mut Vec<u8>, extras: &[Extra], limit: usize) -> Vec<u8> {
    if buf.last() != Some(&END) {
        // Not a message this module's caller built; leave it whole.
        return extras.iter().map(|e| e.code).collect();
    }
    buf.pop();
    let mut room = limit.saturating_sub(buf.len() + 1);
    let mut dropped = Vec::new();
    for e in extras {
        let len = e.wire_len();
        if len > room {
            dropped.push(e.code);
            continue;
        }
        room -= len;
        if e.data.is_empty() {
            buf.extend([e.code, 0]);
        }
        for piece in e.data.chunks(255) {
            buf.extend([e.code, piece.len() as u8]);
            buf.extend_from_slice(piece);
        }
    }
    buf.push(END);
    dropped
}

/// Routes as RFC 3442 encodes them: per route the prefix length, the
/// significant octets of the destination, then the router.
pub fn classless_routes(routes: impl IntoIterator<Item = (Ipv4Net, Ipv4Addr)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (to, via) in routes {
        let len = to.prefix_len();
        out.push(len);
        out.extend_from_slice(&to.network().octets()[..usize::from(len).div_ceil(8)]);
        out.extend_from_slice(&via.octets());
    }
    out
}

/// Names as RFC 3397 encodes them: RFC 1035 names one after the other,
/// a suffix already written replaced by a pointer to it (offsets count
/// from the start of the option's whole value).
pub fn search_list(names: &[&DnsName]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut seen: HashMap<&str, u16> = HashMap::new();
    for name in names {
        let s = name.as_str();
        let mut rest = s;
        loop {
            if let Some(&at) = seen.get(rest) {
                out.extend((0xc000 | at).to_be_bytes());
                break;
            }
            // A pointer holds 14 bits of offset.
            if let Ok(at) = u16::try_from(out.len()) {
                if at < 0x4000 {
                    seen.insert(rest, at);
                }
            }
            let (label, tail) = rest.split_once('.').unwrap_or((rest, ""));
            // DnsName's labels are 1 to 63 bytes.
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
            if tail.is_empty() {
                out.push(0);
                break;
            }
            rest = tail;
        }
    }
    out
}
