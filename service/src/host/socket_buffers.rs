//! Socket buffers sized for bursts: a thousand DHCP clients booting at
//! once, or a thousand links appearing while the link watcher is busy.
//! The defaults (about 200 KiB) drop datagrams or netlink messages then.

use std::os::fd::AsRawFd;

/// Sets the receive (and, with `send`, the send) buffer of `socket` to
/// `bytes`. The FORCE options pass net.core.rmem_max with CAP_NET_ADMIN,
/// which guestnetd has; without it the ordinary, capped size is asked for.
/// Best effort: a smaller buffer only makes drops likelier.
pub fn grow(socket: &impl AsRawFd, bytes: usize, send: bool) {
    let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let mut options = vec![(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF)];
    if send {
        options.push((libc::SO_SNDBUFFORCE, libc::SO_SNDBUF));
    }
    for (force, plain) in options {
        for opt in [force, plain] {
            // SAFETY: the fd is open for the borrow and the value is a c_int.
            let rc = unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                break;
            }
        }
    }
}
