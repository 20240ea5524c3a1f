//! Guests: the ports of a network's bridge. What an AttachGuest call asks
//! for, the records of the ports guestnetd made (kept in the runtime
//! directory so a restart keeps their names), and the events announced as
//! guests come and go, whoever plugged them in.

pub mod watch;

use crate::error::ServiceError;
use crate::files::{write_volatile, FileError};
use guestnet_mode_api::{IfName, MacAddr, NetworkName};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use zbus::zvariant::OwnedValue;

/// A guest's name: 1 to 64 bytes of `[A-Za-z0-9_.-]`, starting with a
/// letter, a digit or `_`.
pub fn check_guest_name(name: &str) -> Result<(), ServiceError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && !name.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(ServiceError::InvalidArgs(format!(
            "guest name {name:?}: use 1 to 64 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
        )))
    }
}

/// How a port was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PortKind {
    /// A persistent tap for a VM, owned by `owner`.
    Tap { owner: u32 },
    /// The host end of a veth pair whose peer is in a container, attached
    /// by uid `by` (records from before it was kept: root's).
    Veth {
        #[serde(default)]
        by: u32,
    },
}

/// A port guestnetd made for a guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestRecord {
    pub ifname: String,
    /// The guest's MAC: the veth peer's, or the one the VM is to use.
    pub mac: MacAddr,
    pub guest: String,
    pub port: PortKind,
    /// The port's ifindex once it exists: a record names one link, not
    /// whatever later takes the same name (absent in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifindex: Option<u32>,
}

/// The alias guestnetd gives the ports it makes, so that a port is known
/// as ours (and whose) by the link itself, not only by its name.
pub fn port_alias(network: &str) -> String {
    format!("guestnet-port:{network}")
}

/// What AttachGuest asks for.
#[derive(Debug)]
pub enum AttachKind {
    Tap { owner: u32 },
    Veth { netns: NetnsSource, ifname: IfName },
}

impl AttachKind {
    /// "tap" or "veth", as the `kind` option and polkit's `kind` detail say.
    pub fn name(&self) -> &'static str {
        match self {
            AttachKind::Tap { .. } => "tap",
            AttachKind::Veth { .. } => "veth",
        }
    }
}

/// Where a veth's peer goes.
#[derive(Debug)]
pub enum NetnsSource {
    /// `netns`: a path guestnetd opens itself, as root. Only a caller
    /// allowed to manage networks may name one (the bus edge checks).
    Path(PathBuf),
    /// `netns_fd`: a namespace the caller opened itself, known to be a
    /// network namespace (see [`AttachOptions::check`]).
    Fd(std::fs::File),
}

/// What AttachGuest asks for, checked: what guestnetd acts on.
#[derive(Debug)]
pub struct AttachRequest {
    pub kind: AttachKind,
    pub mac: Option<MacAddr>,
}

/// What, in an AttachGuest request, needs the right to manage networks
/// beyond that of attaching guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeyondAttaching {
    /// A namespace named by path: guestnetd, not the caller, would open it.
    NetnsPath,
    /// A peer in the host's own namespace, beside the bridges.
    HostNetns,
    /// A namespace the caller did not make in a user namespace of its own:
    /// one of the host's initial user namespace (a `/run/netns` name, a
    /// root process's, which any user may open), or another user's.
    NotCallersNetns(crate::host::netns::NsOwner),
    /// A namespace whose owner could not be read (`NS_GET_USERNS` failed).
    UnknownNetnsOwner,
    /// A tap for another uid than the caller's: a port that user may open.
    TapFor(u32),
}

/// AttachGuest's options as read off the message, before anything is
/// asked of the system about them (the descriptor is not yet looked at,
/// the owner's uid not yet looked up): [`AttachOptions::from_options`]
/// only extracts values, [`AttachOptions::check`] does the rest.
#[derive(Debug)]
pub struct AttachOptions {
    kind: OptionsKind,
    mac: Option<MacAddr>,
}

#[derive(Debug)]
enum OptionsKind {
    Tap {
        owner: u32,
    },
    Veth {
        netns: OptionsNetns,
        /// As the caller gave it, when it did.
        ifname: Option<IfName>,
    },
}

#[derive(Debug)]
enum OptionsNetns {
    Path(PathBuf),
    Fd(std::os::fd::OwnedFd),
}

fn arg(what: &str, why: impl std::fmt::Display) -> ServiceError {
    ServiceError::InvalidArgs(format!("{what}: {why}"))
}

fn string_option(
    options: &HashMap<String, OwnedValue>,
    key: &str,
) -> Result<Option<String>, ServiceError> {
    match options.get(key) {
        None => Ok(None),
        Some(v) => String::try_from(v.clone())
            .map(Some)
            .map_err(|_| arg(key, "must be a string")),
    }
}

/// A tap's `owner`: a uid as `u`, or as `t` or `i` when it fits one; never
/// wrapped (2^32 is not uid 0). (uid_t)-1 means "no uid" to the kernel.
fn owner_uid(v: &OwnedValue) -> Result<u32, ServiceError> {
    let wide: i128 = if let Ok(u) = u32::try_from(v.clone()) {
        u.into()
    } else if let Ok(u) = u64::try_from(v.clone()) {
        u.into()
    } else if let Ok(i) = i32::try_from(v.clone()) {
        i.into()
    } else {
        return Err(arg("owner", "must be a uid (u)"));
    };
    match u32::try_from(wide) {
        Ok(uid) if uid != u32::MAX => Ok(uid),
        _ => Err(arg(
            "owner",
            format!("{wide} is not a uid (0 to {})", u32::MAX - 1),
        )),
    }
}

/// A file descriptor option (D-Bus type `h`), as a descriptor of our own.
fn fd_option(
    options: &HashMap<String, OwnedValue>,
    key: &str,
) -> Result<Option<std::os::fd::OwnedFd>, ServiceError> {
    let Some(v) = options.get(key) else {
        return Ok(None);
    };
    let must = || arg(key, "must be a file descriptor (h)");
    let fd =
        zbus::zvariant::Fd::try_from(v.try_clone().map_err(|_| must())?).map_err(|_| must())?;
    std::os::fd::OwnedFd::try_from(fd)
        .map(Some)
        .map_err(|_| must())
}

impl AttachOptions {
    /// Reads AttachGuest's options: `kind` ("tap" with `owner` uid, or
    /// "veth" with `netns_fd`, a descriptor of its namespace, or `netns`,
    /// its path, and optional `ifname`), optional `mac`.
    /// A tap's owner is the caller's uid when not given. Nothing here
    /// blocks or asks the system anything: it runs on the bus before
    /// polkit has said the caller may attach guests at all.
    pub fn from_options(
        options: &HashMap<String, OwnedValue>,
        caller: u32,
    ) -> Result<Self, ServiceError> {
        const KNOWN: &[&str] = &["kind", "owner", "netns", "netns_fd", "ifname", "mac"];
        if let Some(k) = options.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(arg(
                k,
                "unknown option (known: kind, owner, netns, netns_fd, ifname, mac)",
            ));
        }
        let mac = string_option(options, "mac")?
            .map(|m| m.parse::<MacAddr>().map_err(|e| arg("mac", e)))
            .transpose()?;
        let kind = match string_option(options, "kind")?.as_deref() {
            Some("tap") => OptionsKind::Tap {
                owner: match options.get("owner") {
                    None => caller,
                    Some(v) => owner_uid(v)?,
                },
            },
            Some("veth") => {
                let path = string_option(options, "netns")?;
                let fd = fd_option(options, "netns_fd")?;
                let netns = match (path, fd) {
                    (Some(_), Some(_)) => {
                        return Err(arg("netns", "give netns_fd or netns, not both"))
                    }
                    (None, None) => {
                        return Err(arg(
                            "netns_fd",
                            "a veth guest needs its network namespace: a descriptor of it \
                             opened by the caller (netns_fd, type h), or its path (netns) \
                             from a caller allowed to manage networks",
                        ))
                    }
                    (Some(path), None) => {
                        let path = PathBuf::from(path);
                        if !path.is_absolute() {
                            return Err(arg(
                                "netns",
                                "must be an absolute path like /run/netns/NAME or /proc/PID/ns/net",
                            ));
                        }
                        OptionsNetns::Path(path)
                    }
                    (None, Some(fd)) => OptionsNetns::Fd(fd),
                };
                let ifname = string_option(options, "ifname")?
                    .map(|i| IfName::new(&i).map_err(|e| arg("ifname", e)))
                    .transpose()?;
                OptionsKind::Veth { netns, ifname }
            }
            Some(other) => {
                return Err(arg("kind", format!("{other:?} is not \"tap\" or \"veth\"")))
            }
            None => return Err(arg("kind", "missing: \"tap\" or \"veth\"")),
        };
        Ok(AttachOptions { kind, mac })
    }

    /// "tap" or "veth", as the `kind` option and polkit's `kind` detail say.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            OptionsKind::Tap { .. } => "tap",
            OptionsKind::Veth { .. } => "veth",
        }
    }

    /// The veth peer's name, when the caller gave one (polkit's
    /// `interface` detail).
    pub fn interface(&self) -> Option<&str> {
        match &self.kind {
            OptionsKind::Veth {
                ifname: Some(i), ..
            } => Some(i.as_str()),
            _ => None,
        }
    }

    /// Checks what the options name against the system, and says what in
    /// them needs more than the right to attach guests: a namespace path,
    /// a descriptor of the host's own namespace or of a namespace the
    /// caller did not make in a user namespace of its own, a tap for
    /// another uid. Blocking (`fstatfs`/`fstat`/`ioctl` on the caller's
    /// descriptor, which may be of a hung NFS or FUSE mount;
    /// `getpwuid_r`, which may ask LDAP): run it off the runtime, with a
    /// deadline, after polkit.
    pub fn check(
        self,
        caller: u32,
    ) -> Result<(AttachRequest, Option<BeyondAttaching>), ServiceError> {
        let (kind, beyond) = match self.kind {
            OptionsKind::Tap { owner } => {
                if !crate::host::tap::uid_exists(owner) {
                    return Err(arg("owner", format!("uid {owner} does not exist")));
                }
                let beyond = (owner != caller).then_some(BeyondAttaching::TapFor(owner));
                (AttachKind::Tap { owner }, beyond)
            }
            OptionsKind::Veth { netns, ifname } => {
                let ifname = ifname.unwrap_or_else(|| IfName::new("eth0").expect("eth0"));
                let (netns, beyond) = match netns {
                    OptionsNetns::Path(p) => {
                        (NetnsSource::Path(p), Some(BeyondAttaching::NetnsPath))
                    }
                    OptionsNetns::Fd(fd) => {
                        let ns = crate::host::netns::from_fd(fd).map_err(|e| arg("netns_fd", e))?;
                        let beyond = netns_beyond(&ns, caller);
                        (NetnsSource::Fd(ns), beyond)
                    }
                };
                (AttachKind::Veth { netns, ifname }, beyond)
            }
        };
        Ok((
            AttachRequest {
                kind,
                mac: self.mac,
            },
            beyond,
        ))
    }
}

/// Whether a caller needs more than attach-guests to put a peer in `ns`:
/// it may use only a namespace of a user namespace it created itself
/// (not the host's initial one, which owns every `/run/netns` name any
/// user may open), and never the host's own network namespace.
fn netns_beyond(ns: &std::fs::File, caller: u32) -> Option<BeyondAttaching> {
    if crate::host::netns::is_hosts(ns) {
        return Some(BeyondAttaching::HostNetns);
    }
    match crate::host::netns::owner(ns) {
        Ok(o) if !o.initial && o.uid == caller => None,
        Ok(o) => Some(BeyondAttaching::NotCallersNetns(o)),
        Err(e) => {
            tracing::info!("netns_fd: reading its owner: {e}");
            Some(BeyondAttaching::UnknownNetnsOwner)
        }
    }
}

/// A MAC in QEMU's range that stays the same for the same guest on the
/// same network.
pub fn stable_mac(network: &uuid::Uuid, guest: &str) -> MacAddr {
    // FNV-1a: small and stable across releases, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in network.as_bytes().iter().chain(guest.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    MacAddr([0x52, 0x54, 0x00, b[0], b[1], b[2]])
}

/// A guest arriving on or leaving a network's bridge.
#[derive(Debug, Clone)]
pub struct GuestEvent {
    pub network: String,
    pub ifname: String,
    pub mac: String,
    pub guest: String,
    pub attached: bool,
}

/// The records of the ports guestnetd made, per network, in
/// `RUNTIME_DIR/guests/NETWORK.json`.
pub struct GuestStore {
    dir: PathBuf,
    /// Held across one read-change-write of a file (our own small files,
    /// never a caller's path), so the link watcher forgetting a port and
    /// an AttachGuest adding one never lose each other's change.
    writing: std::sync::Mutex<()>,
}

impl GuestStore {
    pub fn new(runtime_dir: PathBuf) -> Self {
        Self {
            dir: runtime_dir.join("guests"),
            writing: std::sync::Mutex::new(()),
        }
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Changes a network's records with `f` and writes them back.
    pub fn update<R>(
        &self,
        network: &NetworkName,
        f: impl FnOnce(&mut BTreeMap<String, GuestRecord>) -> R,
    ) -> Result<R, FileError> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let mut records = self.load(network);
        let result = f(&mut records);
        self.save(network, &records)?;
        Ok(result)
    }

    fn path(&self, network: &NetworkName) -> PathBuf {
        self.dir.join(format!("{network}.json"))
    }

    pub fn load(&self, network: &NetworkName) -> BTreeMap<String, GuestRecord> {
        std::fs::read(self.path(network))
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<GuestRecord>>(&b).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.ifname.clone(), r))
            .collect()
    }

    fn save(
        &self,
        network: &NetworkName,
        records: &BTreeMap<String, GuestRecord>,
    ) -> Result<(), FileError> {
        if records.is_empty() {
            return crate::files::remove_volatile(&self.path(network));
        }
        let list: Vec<&GuestRecord> = records.values().collect();
        write_volatile(
            &self.path(network),
            &serde_json::to_vec_pretty(&list).expect("records serialize"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::zvariant::Value;

    fn opts(pairs: &[(&str, Value<'_>)]) -> HashMap<String, OwnedValue> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OwnedValue::try_from(v.clone()).unwrap()))
            .collect()
    }

    fn checked(
        pairs: &[(&str, Value<'_>)],
        caller: u32,
    ) -> Result<(AttachRequest, Option<BeyondAttaching>), ServiceError> {
        AttachOptions::from_options(&opts(pairs), caller)?.check(caller)
    }

    #[test]
    fn attach_options_are_checked() {
        let (tap, beyond) = checked(&[("kind", "tap".into()), ("owner", 0u32.into())], 0).unwrap();
        assert!(matches!(tap.kind, AttachKind::Tap { owner: 0 }));
        assert_eq!(beyond, None);
        let (_, beyond) = checked(&[("kind", "tap".into()), ("owner", 0u32.into())], 1000).unwrap();
        assert_eq!(beyond, Some(BeyondAttaching::TapFor(0)));
        // No owner: the caller's (uid 0 exists everywhere).
        let (tap, _) = checked(&[("kind", "tap".into())], 0).unwrap();
        assert!(matches!(tap.kind, AttachKind::Tap { owner: 0 }));
        let veth = [
            ("kind", "veth".into()),
            ("netns", "/run/netns/c1".into()),
            ("mac", "52:54:00:01:02:03".into()),
        ];
        assert_eq!(
            AttachOptions::from_options(&opts(&veth), 0)
                .unwrap()
                .interface(),
            None
        );
        let (veth, beyond) = checked(&veth, 0).unwrap();
        match &veth.kind {
            AttachKind::Veth {
                netns: NetnsSource::Path(p),
                ifname,
            } => {
                assert_eq!(p, std::path::Path::new("/run/netns/c1"));
                assert_eq!(ifname, &IfName::new("eth0").unwrap());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(beyond, Some(BeyondAttaching::NetnsPath));
        let named = AttachOptions::from_options(
            &opts(&[
                ("kind", "veth".into()),
                ("netns", "/x".into()),
                ("ifname", "eth7".into()),
            ]),
            0,
        )
        .unwrap();
        assert_eq!(
            (named.kind_name(), named.interface()),
            ("veth", Some("eth7"))
        );
        // A descriptor of our own namespace (the host's, here).
        let own = std::fs::File::open("/proc/self/ns/net").unwrap();
        let (by_fd, beyond) = checked(
            &[
                ("kind", "veth".into()),
                (
                    "netns_fd",
                    zbus::zvariant::Fd::from(std::os::fd::OwnedFd::from(own)).into(),
                ),
            ],
            0,
        )
        .unwrap();
        assert!(matches!(
            by_fd.kind,
            AttachKind::Veth {
                netns: NetnsSource::Fd(_),
                ..
            }
        ));
        assert_eq!(beyond, Some(BeyondAttaching::HostNetns));
        let fd_of = |path: &str| -> Value<'static> {
            zbus::zvariant::Fd::from(std::os::fd::OwnedFd::from(
                std::fs::File::open(path).unwrap(),
            ))
            .into()
        };
        for bad in [
            opts(&[]),
            opts(&[("kind", "macvtap".into())]),
            opts(&[("kind", "veth".into())]),
            opts(&[("kind", "veth".into()), ("netns_fd", fd_of("/dev/null"))]),
            opts(&[
                ("kind", "veth".into()),
                ("netns_fd", fd_of("/proc/self/ns/uts")),
            ]),
            opts(&[
                ("kind", "veth".into()),
                ("netns_fd", "/run/netns/c1".into()),
            ]),
            opts(&[
                ("kind", "veth".into()),
                ("netns", "/run/netns/c1".into()),
                ("netns_fd", fd_of("/proc/self/ns/net")),
            ]),
            opts(&[("kind", "veth".into()), ("netns", "relative".into())]),
            opts(&[
                ("kind", "veth".into()),
                ("netns", "/x".into()),
                ("ifname", "a-very-long-ifname".into()),
            ]),
            opts(&[("kind", "tap".into()), ("owner", 4_000_000_000u32.into())]),
            // Once wrapped to uid 0 (root's tap), or to uid 1, or to -1.
            opts(&[("kind", "tap".into()), ("owner", (1u64 << 32).into())]),
            opts(&[("kind", "tap".into()), ("owner", ((1u64 << 32) + 1).into())]),
            opts(&[("kind", "tap".into()), ("owner", (-1i32).into())]),
            opts(&[("kind", "tap".into()), ("owner", u32::MAX.into())]),
            opts(&[("kind", "tap".into()), ("mac", "nope".into())]),
            opts(&[("kind", "tap".into()), ("colour", "red".into())]),
        ] {
            let result = AttachOptions::from_options(&bad, 0).and_then(|o| o.check(0));
            assert!(result.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn veth_records_say_who_attached_them() {
        let old: GuestRecord = serde_json::from_str(
            r#"{"ifname":"gnveth0","mac":"52:54:00:01:02:03","guest":"c","port":{"kind":"veth"}}"#,
        )
        .expect("a record from before `by`");
        assert_eq!(old.port, PortKind::Veth { by: 0 });
        let new = GuestRecord {
            port: PortKind::Veth { by: 1000 },
            ..old
        };
        let text = serde_json::to_string(&new).unwrap();
        assert_eq!(serde_json::from_str::<GuestRecord>(&text).unwrap(), new);
    }

    #[test]
    fn guest_names_and_macs() {
        assert!(check_guest_name("vm-1.web_a").is_ok());
        for bad in ["", "../x", "a/b", ".x", "-x", &"a".repeat(65)] {
            assert!(check_guest_name(bad).is_err(), "{bad:?}");
        }
        let u = uuid::Uuid::nil();
        assert_eq!(stable_mac(&u, "vm1"), stable_mac(&u, "vm1"));
        assert_ne!(stable_mac(&u, "vm1"), stable_mac(&u, "vm2"));
        assert_eq!(stable_mac(&u, "vm1").0[..3], [0x52, 0x54, 0x00]);
    }
}
