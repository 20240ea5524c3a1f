//! Persistent tap devices for virtual machines, made through /dev/net/tun
//! (the kernel offers no netlink call for them): owned by the VM's uid, so
//! an unprivileged QEMU can open the tap by name and no one else can.

use std::ffi::c_short;
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
const IFF_TAP: c_short = 0x0002;
const IFF_NO_PI: c_short = 0x1000;
/// Fail if the tap exists rather than attach to it: two AttachGuest calls
/// racing for one name must never share a tap.
const IFF_TUN_EXCL: c_short = 0x8000u16 as c_short;

/// `struct ifreq` as TUNSETIFF reads it: the name and the flags.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: c_short,
    _pad: [u8; 22],
}

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("cannot open /dev/net/tun: {0}")]
    Open(#[source] std::io::Error),
    #[error("{step} for tap {name}: {source}")]
    Ioctl {
        step: &'static str,
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// Whether `file` is a network namespace (NS_GET_NSTYPE says CLONE_NEWNET).
pub fn is_network_namespace(file: &std::fs::File) -> bool {
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: the fd is open; NS_GET_NSTYPE takes no argument.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    kind == libc::CLONE_NEWNET
}

/// Whether `uid` is a user of this system.
pub fn uid_exists(uid: u32) -> bool {
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, buf's length is given.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    rc == 0 && !result.is_null()
}

/// Creates the persistent tap `name` owned by `owner`, in the caller's
/// network namespace. It stays after this process closes it.
pub fn create(name: &str, owner: u32) -> Result<(), TapError> {
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(TapError::Open)?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL,
        _pad: [0; 22],
    };
    let bytes = name.as_bytes();
    req.name[..bytes.len().min(libc::IFNAMSIZ - 1)]
        .copy_from_slice(&bytes[..bytes.len().min(libc::IFNAMSIZ - 1)]);
    let fd = tun.as_raw_fd();
    let ioctl = |step: &'static str, request: libc::c_ulong, arg: libc::c_ulong| {
        // SAFETY: fd is open; each request takes the argument given.
        let rc = unsafe { libc::ioctl(fd, request as _, arg) };
        if rc < 0 {
            Err(TapError::Ioctl {
                step,
                name: name.to_owned(),
                source: std::io::Error::last_os_error(),
            })
        } else {
            Ok(())
        }
    };
    ioctl(
        "creating",
        TUNSETIFF,
        &mut req as *mut IfReq as libc::c_ulong,
    )?;
    ioctl("setting the owner", TUNSETOWNER, libc::c_ulong::from(owner))?;
    ioctl("making it persistent", TUNSETPERSIST, 1)?;
    Ok(())
}
