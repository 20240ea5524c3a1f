//! Which bridge port a DHCP request came in on, so that the pool can limit
//! what the clients behind one port take (`max_leases_per_port`).
//!
//! A UDP socket on a bridge sees every request as coming from the bridge:
//! IP_PKTINFO names the bridge, and a packet socket with PACKET_ORIGDEV on
//! the bridge does too (the bridge hands frames up as received on itself).
//! Only a packet tap on every port, or the bridge's own netfilter hook,
//! sees the port; a tap would bypass the kernel's checks and the firewall
//! and cost every packet of the host a filter run. So guestnet's firewall
//! has one rule in its `bridge guestnet` table ([`MARK_RULE`]): a DHCP
//! request the bridge passes up to the host gets a packet mark derived from
//! its input port (`meta iif`), a fixed-seed hash tagged in the top byte;
//! the server's socket reads the mark of each datagram (SO_RCVMARK, Linux
//! 5.19) and takes it as the port's identity. nft cannot copy an interface
//! index into a mark (the types differ), hence the hash: 24 bits, so two
//! ports of a network share an identity (and a limit) only by a rare
//! collision. A guest cannot forge the mark: it is not on the wire, a veth
//! crossing namespaces clears it, and the rule overwrites it.
//!
//! The rules match DHCP requests passed up from any bridge of the host:
//! naming the bridge (`meta ibrname`) needs CONFIG_NFT_BRIDGE_META, which
//! not every kernel has. Other bridges' requests thus carry a mark too, a
//! value in 0x67000001..=0x67ffffff that only guestnet reads; a host policy
//! matching marks on incoming DHCP (`ip rule fwmark`, a mark-based drop)
//! should leave those values alone.
//!
//! When the port cannot be known (a kernel without SO_RCVMARK, the rule
//! missing, a mark someone else set after ours) the request counts against
//! no port: limited per MAC only, one lease per client, as before.

use super::protocol::PortId;
use std::os::fd::AsRawFd;

/// SO_MARK and SO_RCVMARK (asm-generic, as on x86-64 and arm64).
const SO_MARK: libc::c_int = 36;
const SO_RCVMARK: libc::c_int = 75;

/// The top byte of every mark the rule sets ("g").
const TAG: u32 = 0x67 << 24;
const TAG_MASK: u32 = 0xff << 24;

/// The bridge-family rule that marks DHCP requests with their input port:
/// `jhash(iif) mod 2^24-1`, plus the tag and one, so a mark is never 0 nor
/// another tag's. The seed is fixed, so a port keeps its identity when the
/// table is rendered again.
pub const MARK_RULE: &str =
    "udp dport 67 meta mark set jhash meta iif mod 16777215 seed 0x67756e65 offset 0x67000001";

/// The bridge-family rule that polices volume: a port sending more than 50
/// client requests a second (from port 68, after a burst of 100) has the
/// rest dropped. A client sends a few a minute. Relay agents (from port
/// 67) are not policed, so one relaying for many clients (or a benchmark)
/// is not slowed; a guest posing as one escapes the rate, never the
/// per-port lease limit. The set of ports is bounded ([`RATE_SET`]).
///
/// It runs in the bridge's `prerouting` hook, before the bridge decides
/// where a frame goes, not in `input` beside [`MARK_RULE`]: a request is
/// a broadcast, which the bridge floods to every other port as well as
/// passing it up. Policed in `input` only, a flood could not fill the
/// server's socket, but it still reached every other guest at full rate,
/// and a DHCP client before its lease (busybox udhcpc: a packet socket
/// with no filter) reads every IPv4 frame of its interface: its queue
/// overflowed with the flood and dropped the OFFERs and ACKs the server
/// had sent at once (issue 12: other guests served only once the flood
/// ended). A dropped request now goes nowhere.
///
/// As the hook sees every bridge of the host, the limit also holds for
/// requests other bridges forward between their own ports.
pub const RATE_RULE: &str = "udp sport 68 udp dport 67 update @dhcp_rate { meta iif limit rate over 50/second burst 100 packets } drop";

/// The set [`RATE_RULE`] keeps its per-port buckets in: one element (and
/// so one `limit`) per input port, dropped 10 s after its last request.
pub const RATE_SET: &str =
    "set dhcp_rate {\n\t\ttype iface_index; flags dynamic, timeout; timeout 10s; size 4096;\n\t}";

/// The port a mark names, if the mark is ours.
pub fn port_of(mark: u32) -> Option<PortId> {
    (mark & TAG_MASK == TAG).then_some(mark & !TAG_MASK)
}

/// Asks the kernel to pass each datagram's mark; false when it cannot
/// (a kernel before 5.19).
pub fn enable(socket: &impl AsRawFd) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: the fd is open for the borrow and the value is a c_int.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_RCVMARK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

/// The mark the kernel passed with a received datagram (`recvmsg` or one
/// message of `recvmmsg`, on a socket [`enable`]d), if any.
pub fn mark_of(msg: &libc::msghdr) -> Option<u32> {
    let mut mark = None;
    // SAFETY: the CMSG macros walk the control buffer the kernel filled,
    // bounded by msg_controllen; each data read is checked for length.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let len = c.cmsg_len as usize;
            if c.cmsg_level == libc::SOL_SOCKET
                && c.cmsg_type == SO_MARK
                && len >= libc::CMSG_LEN(4) as usize
            {
                mark = Some(std::ptr::read_unaligned(
                    libc::CMSG_DATA(cmsg).cast::<u32>(),
                ));
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    mark
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tagged_marks_name_a_port() {
        assert_eq!(port_of(0), None);
        assert_eq!(port_of(0x0000_8000), None);
        assert_eq!(port_of(0x6700_0001), Some(1));
        assert_eq!(port_of(0x67ff_ffff), Some(0x00ff_ffff));
        assert_eq!(port_of(0x6800_0001), None);
    }
}
