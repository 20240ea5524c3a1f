//! Opening a network namespace by a path a caller gave, safely.
//!
//! guestnetd runs as root, and `open()` on a caller's path is not harmless:
//! a FIFO blocks until someone opens its other end, and opening a device
//! node can act on the device (a tape rewinds, a tty becomes a controlling
//! terminal). So the path is first opened with `O_PATH`, which opens
//! nothing and never blocks, and only a file of the namespace filesystem
//! (nsfs) is then opened for real, through `/proc/self/fd`, which names
//! that very inode whatever happened to the path meanwhile.
//!
//! A caller without the right to manage networks names no path: it passes
//! a descriptor of the namespace it opened itself ([`from_fd`]), so the
//! kernel has already checked its own right to open it, and the host's
//! own namespace ([`is_hosts`]) is refused to it. Being able to open a
//! namespace is not enough, though: nsfs files are 0444 and /run/netns is
//! 0755, so anyone may open every named namespace (`ip netns` VPN
//! namespaces, rootful podman's). Such a caller may use only a namespace
//! it made itself, in a user namespace of its own ([`owner`]).

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// `NSFS_MAGIC` from linux/magic.h: the filesystem of /proc/PID/ns/* and of
/// their bind mounts (/run/netns/NAME).
const NSFS_MAGIC: i64 = 0x6e73_6673;

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("{path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not a network namespace (use /run/netns/NAME or /proc/PID/ns/net)")]
    NotANamespace(String),
}

/// Opens the network namespace at `path`, refusing anything else (a
/// device, a FIFO, a regular file, another kind of namespace) before it is
/// opened for reading.
pub fn open(path: &Path) -> Result<File, NetnsError> {
    let shown = path.display().to_string();
    let open_err = |source| NetnsError::Open {
        path: shown.clone(),
        source,
    };
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| NetnsError::NotANamespace(shown.clone()))?;
    // SAFETY: c_path is a valid NUL-terminated string; O_PATH opens no
    // file contents and never blocks.
    let fd = unsafe { libc::open(c_path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(open_err(std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just returned by open and is owned by nobody else.
    let located = unsafe { File::from_raw_fd(fd) };
    if !on_nsfs(&located) {
        return Err(NetnsError::NotANamespace(shown));
    }
    let reopened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(format!("/proc/self/fd/{}", located.as_raw_fd()))
        .map_err(open_err)?;
    if !crate::host::tap::is_network_namespace(&reopened) {
        return Err(NetnsError::NotANamespace(shown));
    }
    Ok(reopened)
}

use std::os::unix::fs::OpenOptionsExt;

/// Takes a descriptor a caller passed as a network namespace, refusing
/// anything else: a file of another filesystem, another kind of namespace,
/// an `O_PATH` descriptor (which could not be used to enter it).
pub fn from_fd(fd: OwnedFd) -> Result<File, NetnsError> {
    let file = File::from(fd);
    if !on_nsfs(&file) || !crate::host::tap::is_network_namespace(&file) {
        return Err(NetnsError::NotANamespace("the descriptor".into()));
    }
    Ok(file)
}

/// Whether `ns` is the host's own network namespace: guestnetd's (where
/// its bridges are), or init's when guestnetd may see it (a service whose
/// capabilities are bounded may not read init's). The same namespace is
/// the same nsfs inode, whatever path or descriptor reached it.
pub fn is_hosts(ns: &File) -> bool {
    let Ok(meta) = ns.metadata() else {
        // Not even fstat works: nothing to compare, so treat it as the host's.
        return true;
    };
    use std::os::unix::fs::MetadataExt;
    ["/proc/self/ns/net", "/proc/1/ns/net"].iter().any(|host| {
        std::fs::metadata(host).is_ok_and(|h| h.dev() == meta.dev() && h.ino() == meta.ino())
    })
}

/// `_IO(0xb7, 0x1)`: a descriptor of the user namespace owning a namespace.
const NS_GET_USERNS: libc::c_ulong = 0xb701;
/// `_IO(0xb7, 0x4)`: the uid that created a user namespace, as seen from
/// the caller's (guestnetd's) user namespace.
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

/// Who owns a namespace: the user namespace it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsOwner {
    /// Whether that user namespace is guestnetd's own, the host's initial
    /// one (where /run/netns/*, init's and every rootful tool's live).
    pub initial: bool,
    /// The uid that created that user namespace (0 for the initial one).
    pub uid: u32,
}

/// The user namespace owning the namespace `ns`, by `NS_GET_USERNS` and
/// `NS_GET_OWNER_UID`; compared with `/proc/self/ns/user` by identity.
pub fn owner(ns: &File) -> std::io::Result<NsOwner> {
    // SAFETY: NS_GET_USERNS takes no argument and returns a new descriptor
    // (close-on-exec) or -1.
    let fd = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_USERNS as _) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by the kernel and is owned by nobody else.
    let userns = unsafe { File::from_raw_fd(fd) };
    let mut uid: libc::uid_t = 0;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t through the pointer.
    if unsafe { libc::ioctl(userns.as_raw_fd(), NS_GET_OWNER_UID as _, &mut uid) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    use std::os::unix::fs::MetadataExt;
    let theirs = userns.metadata()?;
    let ours = std::fs::metadata("/proc/self/ns/user")?;
    Ok(NsOwner {
        initial: theirs.dev() == ours.dev() && theirs.ino() == ours.ino(),
        uid,
    })
}

/// Whether `file` lives on nsfs and is a regular file there (what every
/// namespace file is), by `fstatfs` and `fstat`, which work on `O_PATH`.
fn on_nsfs(file: &File) -> bool {
    // SAFETY: statfs is plain data; zeroed is a valid value to be filled.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: the fd is open for the call; fs is a valid out-pointer.
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut fs) } != 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast)]
    let magic = fs.f_type as i64;
    // SAFETY: stat is plain data; zeroed is a valid value to be filled.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: the fd is open for the call; st is a valid out-pointer.
    if unsafe { libc::fstat(file.as_raw_fd(), &mut st) } != 0 {
        return false;
    }
    magic == NSFS_MAGIC && st.st_mode & libc::S_IFMT == libc::S_IFREG
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_namespaces_are_opened() {
        assert!(open(Path::new("/proc/self/ns/net")).is_ok());
        for bad in ["/dev/null", "/proc/self/ns/uts", "/etc/hostname", "/"] {
            assert!(
                matches!(open(Path::new(bad)), Err(NetnsError::NotANamespace(_))),
                "{bad} was not refused"
            );
        }
        assert!(matches!(
            open(Path::new("/nonexistent/ns")),
            Err(NetnsError::Open { .. })
        ));
    }

    #[test]
    fn descriptors_are_checked_and_the_hosts_is_known() {
        let own = File::open("/proc/self/ns/net").unwrap();
        let own = from_fd(own.into()).expect("our own namespace is a namespace");
        assert!(is_hosts(&own));
        for bad in ["/dev/null", "/proc/self/ns/uts", "/etc/hostname"] {
            let f = File::open(bad).unwrap();
            assert!(
                matches!(from_fd(f.into()), Err(NetnsError::NotANamespace(_))),
                "{bad} was not refused"
            );
        }
        // An O_PATH descriptor of a namespace enters nothing.
        let c = std::ffi::CString::new("/proc/self/ns/net").unwrap();
        // SAFETY: c is a valid path string; O_PATH opens no contents.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: fd was just returned by open and is owned by nobody else.
        let located = unsafe { OwnedFd::from_raw_fd(fd) };
        assert!(from_fd(located).is_err());
    }

    #[test]
    fn the_owner_of_our_namespace_is_the_initial_user_namespace() {
        let own = File::open("/proc/self/ns/net").unwrap();
        let o = owner(&own).expect("NS_GET_USERNS on our own namespace");
        assert!(o.initial, "{o:?}");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = std::env::temp_dir().join(format!("gn-netns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c is a valid path string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let started = std::time::Instant::now();
        assert!(matches!(open(&fifo), Err(NetnsError::NotANamespace(_))));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
