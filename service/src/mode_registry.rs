//! Loads mode libraries from the modes directory and calls them across the
//! C ABI of `guestnet_mode_api::abi`. A library built for another ABI
//! version, or claiming a mode name already taken, is refused with an error
//! naming the file; a mode that panics fails the one call.

use guestnet_mode_api::abi::{
    self, Buffer, EntryFn, ModeTable, Request, Response, ABI_VERSION, ENTRY_SYMBOL,
};
use guestnet_mode_api::{Definition, HostFacts, ModeError, ModeInfo, Plan};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{file}: cannot load: {reason}")]
    Open { file: PathBuf, reason: String },
    #[error("{file}: built for mode ABI version {found}, but this guestnetd speaks version {expected}; rebuild the mode against a guestnet-mode-api of ABI version {expected}")]
    AbiMismatch {
        file: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("{file}: {reason}")]
    BadMode { file: PathBuf, reason: String },
    /// A library, or its directory, that someone other than root (or
    /// guestnetd's own user) could change: loading it would run their code.
    #[error("{file}: not loaded: {reason}")]
    Untrusted { file: PathBuf, reason: String },
    /// A library that says it cannot do without a part of the API this
    /// guestnetd does not have (built against a later API).
    #[error("{file}: mode {mode:?} (built against mode API 1.{minor}) requires feature {feature:?}, which this guestnetd (mode API 1.{have}) lacks; upgrade guestnetd or rebuild the mode without it")]
    MissingFeature {
        file: PathBuf,
        mode: String,
        feature: String,
        minor: u32,
        have: u32,
    },
    #[error("{file}: mode {mode:?} is already provided by {first}")]
    Duplicate {
        file: PathBuf,
        mode: String,
        first: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("mode {mode:?} panicked: {message}")]
    Panicked { mode: String, message: String },
    #[error("mode {mode:?} answered nonsense: {message}")]
    Protocol { mode: String, message: String },
    #[error(transparent)]
    Refused(#[from] ModeError),
    /// An answer longer than guestnetd reads for that request: the
    /// mode's fault, refused before it is read.
    #[error("mode {mode:?} {what} in {len} bytes, more than the {limit} guestnetd takes")]
    TooLarge {
        mode: String,
        what: &'static str,
        len: usize,
        limit: usize,
    },
}

/// The longest description of its table guestnetd takes from a mode, in
/// bytes of JSON (`DescribeMode` answers with it).
pub const MAX_TABLE_JSON: usize = 64 * 1024;

/// One loaded mode library. The library is never unloaded: its code must
/// stay mapped while guestnetd runs.
pub struct LoadedMode {
    pub info: ModeInfo,
    pub file: PathBuf,
    table: &'static ModeTable,
    _library: libloading::Library,
}

// SAFETY: the table holds plain function pointers into a library that stays
// loaded; the ABI requires modes to be callable from any thread.
unsafe impl Send for LoadedMode {}
unsafe impl Sync for LoadedMode {}

impl LoadedMode {
    /// Loads one library, `opened` from `file` and checked, and asks it
    /// what it is. The dynamic loader opens it again through
    /// /proc/self/fd, so it loads the very file that was checked, not
    /// whatever `file` names by then.
    fn load_opened(file: &Path, opened: std::fs::File) -> Result<Self, LoadError> {
        use std::os::fd::IntoRawFd;
        let open_err = |reason: String| LoadError::Open {
            file: file.to_owned(),
            reason,
        };
        let fd = opened.into_raw_fd();
        // SAFETY: loading runs the library's initialisers; the file was
        // checked to be changeable only by root or guestnetd's own user, in
        // directories only they can change (`open_trusted_library`).
        let library = unsafe { libloading::Library::new(format!("/proc/self/fd/{fd}")) };
        match library {
            // The descriptor stays open for good once the loader knows the
            // library by the name /proc/self/fd/N: glibc finds an already
            // loaded library by its name first, so were N closed and
            // reused for the next file, that file's dlopen would return
            // this library (which may stay mapped even after a refusal).
            Ok(_) => {}
            Err(_) => {
                // SAFETY: `fd` came from into_raw_fd above and nothing else
                // owns it; the loader did not keep it.
                drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
            }
        }
        let library = library.map_err(|e| open_err(e.to_string()))?;
        // SAFETY: the symbol's type is fixed by the ABI.
        let entry: EntryFn = unsafe {
            *library
                .get::<EntryFn>(ENTRY_SYMBOL.as_bytes())
                .map_err(|_| open_err(format!("no {ENTRY_SYMBOL} symbol; not a guestnet mode")))?
        };
        // SAFETY: every ABI version starts the table with its version, so
        // reading that field is valid for any mode library.
        let table: &'static ModeTable = unsafe {
            let ptr = entry();
            if ptr.is_null() {
                return Err(open_err(format!("{ENTRY_SYMBOL} returned no table")));
            }
            let found = std::ptr::read(ptr.cast::<u32>());
            if found != ABI_VERSION {
                return Err(LoadError::AbiMismatch {
                    file: file.to_owned(),
                    found,
                    expected: ABI_VERSION,
                });
            }
            &*ptr
        };
        let mut mode = LoadedMode {
            info: ModeInfo {
                name: String::new(),
                version: String::new(),
                api_minor: 0,
                requires: vec![],
            },
            file: file.to_owned(),
            table,
            _library: library,
        };
        let bad = |reason: String| LoadError::BadMode {
            file: file.to_owned(),
            reason,
        };
        match mode
            .call(&Request::Describe)
            .map_err(|e| bad(e.to_string()))?
        {
            Response::Described(info) => {
                guestnet_mode_api::NetworkName::new(&info.name)
                    .map_err(|e| bad(format!("bad mode name: {e}")))?;
                let known = |f: &str| abi::FEATURES.iter().any(|(k, _)| *k == f);
                if let Some(feature) = info.requires.iter().find(|f| !known(f)) {
                    return Err(LoadError::MissingFeature {
                        file: file.to_owned(),
                        mode: info.name.clone(),
                        feature: feature.clone(),
                        minor: info.api_minor,
                        have: abi::API_MINOR,
                    });
                }
                mode.info = info;
            }
            other => return Err(bad(format!("answered {other:?} to describe"))),
        }
        Ok(mode)
    }

    fn call(&self, request: &Request) -> Result<Response, CallError> {
        self.call_within(request, usize::MAX, "answered")
    }

    /// [`Self::call`], refusing an answer longer than `limit` bytes
    /// (`what` the mode did, for the error) before copying or reading it.
    fn call_within(
        &self,
        request: &Request,
        limit: usize,
        what: &'static str,
    ) -> Result<Response, CallError> {
        let name = self.info.name.clone();
        let bytes = serde_json::to_vec(request).expect("requests always serialize");
        let mut buffer = Buffer::EMPTY;
        // SAFETY: the bytes and the buffer outlive the call, and the buffer
        // is released with the library's own `free`.
        let (status, body) = unsafe {
            let status = (self.table.call)(bytes.as_ptr(), bytes.len(), &mut buffer);
            if buffer.len > limit {
                let len = buffer.len;
                (self.table.free)(buffer);
                return Err(CallError::TooLarge {
                    mode: name,
                    what,
                    len,
                    limit,
                });
            }
            let body = if buffer.ptr.is_null() {
                Vec::new()
            } else {
                std::slice::from_raw_parts(buffer.ptr, buffer.len).to_vec()
            };
            (self.table.free)(buffer);
            (status, body)
        };
        let text = || String::from_utf8_lossy(&body).into_owned();
        match status {
            abi::STATUS_OK => read_response(&body).map_err(|message| {
                // A later API's library may say what this guestnetd cannot
                // read: say so, with the part it could not.
                let message = if self.info.api_minor > abi::API_MINOR {
                    format!(
                        "it was built against mode API 1.{}, and this guestnetd (mode API 1.{}) does not know {message}",
                        self.info.api_minor,
                        abi::API_MINOR
                    )
                } else {
                    message
                };
                CallError::Protocol {
                    mode: name,
                    message,
                }
            }),
            abi::STATUS_PANIC => Err(CallError::Panicked {
                mode: name,
                message: text(),
            }),
            _ => Err(CallError::Protocol {
                mode: name,
                message: text(),
            }),
        }
    }

    /// The mode's definition table, or `None` from a library of API 1.0,
    /// which cannot describe it. An answer over [`MAX_TABLE_JSON`] bytes is
    /// refused unread.
    pub fn table(&self) -> Result<Option<guestnet_mode_api::TableDescription>, CallError> {
        if self.info.api_minor == 0 {
            return Ok(None);
        }
        let asked = &Request::DescribeTable;
        match self.call_within(asked, MAX_TABLE_JSON, "described its table")? {
            Response::Table(t) => Ok(Some(t)),
            other => Err(self.unexpected(other)),
        }
    }

    pub fn validate(&self, definition: &Definition) -> Result<(), CallError> {
        let req = Request::Validate {
            definition: Box::new(definition.clone()),
        };
        match self.call(&req)? {
            Response::Validated => Ok(()),
            Response::Refused(e) => Err(e.into()),
            other => Err(self.unexpected(other)),
        }
    }

    pub fn plan(&self, definition: &Definition, facts: &HostFacts) -> Result<Plan, CallError> {
        let req = Request::Plan {
            definition: Box::new(definition.clone()),
            facts: Box::new(facts.clone()),
        };
        match self.call(&req)? {
            Response::Planned(plan) => Ok(*plan),
            Response::Refused(e) => Err(e.into()),
            other => Err(self.unexpected(other)),
        }
    }

    fn unexpected(&self, r: Response) -> CallError {
        CallError::Protocol {
            mode: self.info.name.clone(),
            message: format!("unexpected answer {r:?}"),
        }
    }
}

/// Whether only root or guestnetd's own user can change what `meta`
/// describes (a file or a directory): owned by one of them, writable by
/// neither group nor others. With `sticky_ok`, a directory with the sticky
/// bit (like /tmp) may be writable by others: they can add entries there,
/// but not rename or remove ours, and each entry below is checked itself.
fn trusted_meta(meta: &std::fs::Metadata, sticky_ok: bool) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!(
            "is owned by uid {}, not by root or guestnetd's own uid {me}",
            meta.uid()
        ));
    }
    let sticky = meta.is_dir() && meta.mode() & libc::S_ISVTX != 0;
    if meta.mode() & 0o022 != 0 && !(sticky_ok && sticky) {
        return Err(format!(
            "is writable by {} (mode {:o}); only its owner may write it",
            match meta.mode() & 0o022 {
                0o020 => "its group",
                0o002 => "everyone",
                _ => "its group and everyone",
            },
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Opens `path` once, following symbolic links, without blocking (a FIFO
/// must not hang the start), and closed on exec.
fn open_nonblocking(path: &Path, directory: bool) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
    if directory {
        flags |= libc::O_DIRECTORY;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| format!("cannot be opened: {e}"))
}

/// Where the opened `file` really is: no symbolic link in it.
fn real_path(file: &std::fs::File) -> Result<PathBuf, String> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|e| format!("cannot be resolved through /proc/self/fd: {e}"))
}

/// Checks every directory of `real` (the opened file's real path) from /
/// down with [`trusted_meta`], each opened relative to the one checked
/// before it (`O_PATH|O_NOFOLLOW`, so a component swapped for a symbolic
/// link is refused, not followed), and that the last component is still
/// the opened file `opened`. The directory holding it must not be writable
/// by others even if sticky when `strict_parent`; higher ones may be sticky
/// (like /tmp).
fn trusted_directories(
    real: &Path,
    opened: &std::fs::Metadata,
    strict_parent: bool,
) -> Result<(), String> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    use std::path::Component;
    let names: Vec<&std::ffi::OsStr> = real
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    if !real.is_absolute() || names.len() + 1 != real.components().count() {
        return Err(format!("has an unexpected real path {}", real.display()));
    }
    let open_at = |dir: Option<&OwnedFd>, name: &std::ffi::OsStr| -> std::io::Result<OwnedFd> {
        let c = std::ffi::CString::new(name.as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        let at = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
        // SAFETY: `c` is a valid C string and `at` an open descriptor (or
        // AT_FDCWD for the absolute "/").
        let fd = unsafe {
            libc::openat(
                at,
                c.as_ptr(),
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: openat just returned this descriptor, owned by no one else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let stat = |fd: &OwnedFd| -> std::io::Result<std::fs::Metadata> {
        let file = std::fs::File::from(fd.try_clone()?);
        file.metadata()
    };
    let mut shown = PathBuf::from("/");
    let mut dir = open_at(None, std::ffi::OsStr::new("/"))
        .map_err(|e| format!("its directory / cannot be opened: {e}"))?;
    for (i, name) in names.iter().enumerate() {
        let meta = stat(&dir).map_err(|e| format!("{}: {e}", shown.display()))?;
        let is_parent = i + 1 == names.len();
        if !meta.is_dir() {
            return Err(format!("{} is not a directory", shown.display()));
        }
        trusted_meta(&meta, !(strict_parent && is_parent))
            .map_err(|why| format!("its directory {} {why}", shown.display()))?;
        shown.push(name);
        dir = open_at(Some(&dir), name)
            .map_err(|e| format!("{} cannot be opened: {e}", shown.display()))?;
    }
    let last = stat(&dir).map_err(|e| format!("{}: {e}", shown.display()))?;
    if (last.dev(), last.ino()) != (opened.dev(), opened.ino()) {
        return Err(format!(
            "moved while it was checked: {} is no longer it",
            shown.display()
        ));
    }
    Ok(())
}

/// Opens a mode library once and checks what was opened: a regular file
/// only root or guestnetd's own user can change, in directories (all the
/// way up from its real path, through any symbolic link) only they can
/// change. The descriptor is what gets loaded, so what was checked is what
/// runs.
fn open_trusted_library(file: &Path) -> Result<std::fs::File, String> {
    let opened = open_nonblocking(file, false)?;
    let meta = opened
        .metadata()
        .map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".to_owned());
    }
    trusted_meta(&meta, false)?;
    let real = real_path(&opened)?;
    trusted_directories(&real, &meta, true)?;
    Ok(opened)
}

/// The modes directory itself, and every directory above its real path:
/// only root or guestnetd's own user may change them.
fn trusted_modes_dir(dir: &Path) -> Result<(), String> {
    let opened = open_nonblocking(dir, true)?;
    let meta = opened
        .metadata()
        .map_err(|e| format!("cannot be read: {e}"))?;
    trusted_meta(&meta, false)?;
    let real = real_path(&opened)?;
    trusted_directories(&real, &meta, false)
}

/// The loaded modes by name.
#[derive(Default)]
pub struct ModeRegistry {
    modes: BTreeMap<String, std::sync::Arc<LoadedMode>>,
}

impl ModeRegistry {
    /// Loads every `*.so` in `dir`, in name order. Libraries that fail are
    /// returned as errors beside the registry; they never stop the others.
    pub fn load_dir(dir: &Path) -> (Self, Vec<LoadError>) {
        let mut registry = Self::default();
        let mut errors = Vec::new();
        if let Err(reason) = trusted_modes_dir(dir) {
            errors.push(LoadError::Untrusted {
                file: dir.to_owned(),
                reason: format!("the modes directory {reason}"),
            });
            return (registry, errors);
        }
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "so"))
                .collect(),
            Err(e) => {
                errors.push(LoadError::Open {
                    file: dir.to_owned(),
                    reason: format!("cannot read the modes directory: {e}"),
                });
                return (registry, errors);
            }
        };
        files.sort();
        for file in files {
            let opened = match open_trusted_library(&file) {
                Ok(opened) => opened,
                Err(reason) => {
                    errors.push(LoadError::Untrusted { file, reason });
                    continue;
                }
            };
            match LoadedMode::load_opened(&file, opened) {
                Ok(mode) => {
                    if let Err(e) = registry.insert(mode) {
                        errors.push(e);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        (registry, errors)
    }

    fn insert(&mut self, mode: LoadedMode) -> Result<(), LoadError> {
        if let Some(first) = self.modes.get(&mode.info.name) {
            return Err(LoadError::Duplicate {
                file: mode.file.clone(),
                mode: mode.info.name.clone(),
                first: first.file.clone(),
            });
        }
        self.modes
            .insert(mode.info.name.clone(), std::sync::Arc::new(mode));
        Ok(())
    }

    /// A mode, shared: a plan is asked for on a blocking thread of its
    /// own, so a slow plugin never stalls the service's tasks.
    pub fn get(&self, name: &str) -> Option<std::sync::Arc<LoadedMode>> {
        self.modes.get(name).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        self.modes.keys().cloned().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &LoadedMode> {
        self.modes.values().map(|m| &**m)
    }
}

/// Reads a mode's answer strictly: a field or a variant this guestnetd
/// does not know (a library built against a later API, using what this
/// one lacks) is refused with its path (`planned.firewall.rules[0].rule:
/// unknown variant ...`), never ignored: a rule dropped unread could open
/// what the mode meant to close.
fn read_response(body: &[u8]) -> Result<Response, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        format!("{path}: {}", e.into_inner())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// A fresh directory under the system's temporary directory (sticky,
    /// so allowed above a modes directory), removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("gn-mode-trust-{tag}-{}-{n}", std::process::id()));
            std::fs::create_dir(&dir).unwrap();
            chmod(&dir, 0o755);
            Scratch(dir)
        }

        /// A directory `name` inside, mode `mode`.
        fn dir(&self, name: &str, mode: u32) -> PathBuf {
            let d = self.0.join(name);
            std::fs::create_dir_all(&d).unwrap();
            chmod(&d, mode);
            d
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A stand-in library: the checks look at files and directories, not
    /// at what is in them.
    fn library(dir: &Path) -> PathBuf {
        let f = dir.join("libgood.so");
        std::fs::write(&f, b"not really ELF").unwrap();
        chmod(&f, 0o644);
        f
    }

    #[test]
    fn a_private_library_in_private_directories_is_accepted() {
        let s = Scratch::new("ok");
        let lib = library(&s.dir("modes", 0o755));
        open_trusted_library(&lib).unwrap();
        trusted_modes_dir(&s.0.join("modes")).unwrap();
    }

    #[test]
    fn a_library_under_an_ancestor_others_may_write_is_refused() {
        let s = Scratch::new("ancestor");
        s.dir("vendor", 0o777);
        let modes = s.dir("vendor/lib/modes", 0o755);
        chmod(&s.0.join("vendor/lib"), 0o755);
        let lib = library(&modes);
        let why = open_trusted_library(&lib).unwrap_err();
        let vendor = s.0.join("vendor").display().to_string();
        assert!(
            why.contains(&vendor) && why.contains("writable by") && why.contains("everyone"),
            "{why}"
        );
        let why = trusted_modes_dir(&modes).unwrap_err();
        assert!(why.contains(&vendor), "{why}");
        // Group-writable counts too, and so does a sticky directory that
        // holds the library itself (others could add files beside it).
        chmod(&s.0.join("vendor"), 0o775);
        let why = open_trusted_library(&lib).unwrap_err();
        assert!(why.contains("writable by its group"), "{why}");
        chmod(&s.0.join("vendor"), 0o755);
        open_trusted_library(&lib).unwrap();
        chmod(&modes, 0o1777);
        assert!(open_trusted_library(&lib).is_err());
    }

    #[test]
    fn a_symbolic_link_is_judged_by_its_real_target() {
        let s = Scratch::new("link");
        let good = library(&s.dir("good", 0o755));
        let bad_dir = s.dir("bad", 0o777);
        let bad = bad_dir.join("libbad.so");
        std::fs::write(&bad, b"x").unwrap();
        chmod(&bad, 0o644);
        // A link in an open directory to a library in a private one: what
        // is loaded is the target, which only root can change.
        let link = bad_dir.join("liblink.so");
        symlink(&good, &link).unwrap();
        open_trusted_library(&link).unwrap();
        // A link in a private directory to a file in an open one: refused,
        // naming the open directory.
        let link = s.dir("modes", 0o755).join("libbad.so");
        symlink(&bad, &link).unwrap();
        let why = open_trusted_library(&link).unwrap_err();
        assert!(why.contains(&bad_dir.display().to_string()), "{why}");
    }

    #[test]
    fn only_a_regular_private_file_is_a_library() {
        let s = Scratch::new("kinds");
        let modes = s.dir("modes", 0o755);
        let dir = s.dir("modes/libdir.so", 0o755);
        assert!(open_trusted_library(&dir)
            .unwrap_err()
            .contains("not a regular file"));
        let fifo = modes.join("libfifo.so");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert!(open_trusted_library(&fifo)
            .unwrap_err()
            .contains("not a regular file"));
        let lib = library(&modes);
        chmod(&lib, 0o664);
        assert!(open_trusted_library(&lib)
            .unwrap_err()
            .contains("its group"));
    }
}
