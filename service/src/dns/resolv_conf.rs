//! The host's resolv.conf as a source of upstream servers: parsed the way
//! glibc reads it, and re-read when the file changes, checked on use (at
//! most once per interval) rather than by a task of its own.

use std::fs;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// glibc uses at most this many name servers (MAXNS); so do we, so that a
/// long list cannot multiply a client's wait by the upstream timeout.
pub const MAX_SERVERS: usize = 3;
/// How often the file's identity is checked at most.
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(1);

/// The upstream servers a resolv.conf names: its `nameserver` lines, in
/// order, on port 53. Comments (`#` or `;`), other keywords and addresses
/// that do not parse are ignored. An IPv6 address may carry a `%zone`.
pub fn parse(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver")
                .then(|| words.next())
                .flatten()
                .and_then(server)
        })
        .take(MAX_SERVERS)
        .collect()
}

fn server(word: &str) -> Option<SocketAddr> {
    if let Ok(ip) = word.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    let (addr, zone) = word.split_once('%')?;
    let addr: Ipv6Addr = addr.parse().ok()?;
    let scope = match zone.parse::<u32>() {
        Ok(index) => index,
        Err(_) => interface_index(zone)?,
    };
    Some(SocketAddr::V6(SocketAddrV6::new(addr, 53, 0, scope)))
}

fn interface_index(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string for the call's duration.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// What identifies one version of the file: a rewrite in place changes the
/// size or mtime, a replacement by rename changes the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

/// A resolv.conf and the servers it last held.
#[derive(Debug)]
pub(crate) struct Watched {
    path: PathBuf,
    pub(crate) recheck: Duration,
    checked: Option<Instant>,
    stamp: Option<Stamp>,
    servers: Arc<[SocketAddr]>,
}

impl Watched {
    pub(crate) fn new(path: PathBuf) -> Watched {
        Watched {
            path,
            recheck: DEFAULT_RECHECK,
            checked: None,
            stamp: None,
            servers: Arc::from([]),
        }
    }

    /// The servers, re-read first if the file changed since the last look
    /// (looking at most once per `recheck`).
    pub(crate) fn servers(&mut self) -> Arc<[SocketAddr]> {
        let now = Instant::now();
        if self
            .checked
            .is_some_and(|t| now.duration_since(t) < self.recheck)
        {
            return self.servers.clone();
        }
        let first = self.checked.is_none();
        self.checked = Some(now);
        let stamp = fs::metadata(&self.path).ok().map(|m| Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        });
        if first || stamp != self.stamp {
            self.stamp = stamp;
            let servers = match fs::read_to_string(&self.path) {
                Ok(text) => parse(&text),
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), "cannot read resolv.conf: {e}");
                    Vec::new()
                }
            };
            if servers.is_empty() {
                tracing::warn!(path = %self.path.display(), "no upstream DNS server in resolv.conf");
            }
            self.servers = servers.into();
        }
        self.servers.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn nameserver_lines_in_order() {
        let text = "# generated\n\
                    ; another comment\n\
                    search example.com\n\
                    nameserver 10.0.0.53\n\
                    options edns0 ndots:2\n\
                    nameserver\t2001:db8::1   # trailing words\n\
                    #nameserver 10.9.9.9\n\
                    nameserver not-an-address\n\
                    nameserver\n\
                    nameservers 10.8.8.8\n\
                    nameserver 10.0.0.54\n\
                    nameserver 10.0.0.55\n";
        assert_eq!(
            parse(text),
            vec![
                sa("10.0.0.53:53"),
                sa("[2001:db8::1]:53"),
                sa("10.0.0.54:53")
            ]
        );
        assert!(parse("").is_empty());
        assert!(parse("\u{0}\u{ff}garbage\nnameserver 999.1.1.1\n").is_empty());
    }

    #[test]
    fn ipv6_zones() {
        assert_eq!(
            parse("nameserver fe80::1%3\n"),
            vec![SocketAddr::V6(SocketAddrV6::new(
                "fe80::1".parse().unwrap(),
                53,
                0,
                3
            ))]
        );
        let lo = parse("nameserver fe80::1%lo\n");
        assert_eq!(lo.len(), 1);
        assert!(parse("nameserver fe80::1%no-such-if0\n").is_empty());
        assert!(parse("nameserver 10.0.0.1%lo\n").is_empty());
    }

    #[test]
    fn re_read_when_the_file_changes() {
        let dir = std::env::temp_dir().join(format!("guestnet-resolv-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("resolv.conf");
        fs::write(&path, "nameserver 10.0.0.1\n").unwrap();
        let mut w = Watched::new(path.clone());
        w.recheck = Duration::from_millis(50);
        assert_eq!(&w.servers()[..], &[sa("10.0.0.1:53")]);

        // Within the interval the file is not looked at.
        fs::write(&path, "nameserver 10.0.0.2\n").unwrap();
        assert_eq!(&w.servers()[..], &[sa("10.0.0.1:53")]);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(&w.servers()[..], &[sa("10.0.0.2:53")]);

        // Replaced by rename, as resolvconf and NetworkManager do.
        let new = dir.join("resolv.conf.new");
        fs::write(&new, "nameserver 10.0.0.3\n").unwrap();
        fs::rename(&new, &path).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(&w.servers()[..], &[sa("10.0.0.3:53")]);

        // Gone: no servers (SERVFAIL), and back again.
        fs::remove_file(&path).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert!(w.servers().is_empty());
        fs::write(&path, "nameserver 10.0.0.4\n").unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(&w.servers()[..], &[sa("10.0.0.4:53")]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
