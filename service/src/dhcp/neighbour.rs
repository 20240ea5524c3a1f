//! Lets a reply reach a client that has no address yet by unicast (RFC
//! 2131 4.1): the kernel is told, for the bridge, that the address being
//! given lives at the client's hardware address (an ARP entry, as dnsmasq
//! does), and the reply is then sent to that address. Without it, every
//! OFFER and ACK would be a broadcast that wakes every guest on the network.

use guestnet_mode_api::MacAddr;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

/// `ATF_COM` of <net/if_arp.h>: the entry is complete (has a hardware address).
const ATF_COM: libc::c_int = 0x02;

/// Adds or replaces the ARP entry `ip` -> `mac` on `device`, through an
/// IPv4 socket of this namespace.
pub fn learn(
    socket: &impl AsRawFd,
    device: &str,
    ip: Ipv4Addr,
    mac: MacAddr,
) -> std::io::Result<()> {
    // SAFETY: arpreq is plain old data; all-zero is a valid value.
    let mut req: libc::arpreq = unsafe { std::mem::zeroed() };
    let protocol = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size on Linux.
    req.arp_pa = unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(protocol) };
    req.arp_ha.sa_family = libc::ARPHRD_ETHER;
    for (slot, byte) in req.arp_ha.sa_data.iter_mut().zip(mac.0) {
        *slot = byte as libc::c_char;
    }
    req.arp_flags = ATF_COM;
    let name = device.as_bytes();
    if name.len() >= req.arp_dev.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("interface name {device:?} is too long"),
        ));
    }
    for (slot, byte) in req.arp_dev.iter_mut().zip(name) {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: the fd is open for the borrow; req is a valid arpreq.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSARP, &req) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
