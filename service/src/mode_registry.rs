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
}

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
    /// Loads one library and asks it what it is.
    pub fn load(file: &Path) -> Result<Self, LoadError> {
        let open_err = |reason: String| LoadError::Open {
            file: file.to_owned(),
            reason,
        };
        // SAFETY: loading runs the library's initialisers; the modes
        // directory is trusted like the guestnetd binary itself.
        let library =
            unsafe { libloading::Library::new(file) }.map_err(|e| open_err(e.to_string()))?;
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
                mode.info = info;
            }
            other => return Err(bad(format!("answered {other:?} to describe"))),
        }
        Ok(mode)
    }

    fn call(&self, request: &Request) -> Result<Response, CallError> {
        let name = self.info.name.clone();
        let bytes = serde_json::to_vec(request).expect("requests always serialize");
        let mut buffer = Buffer::EMPTY;
        // SAFETY: the bytes and the buffer outlive the call, and the buffer
        // is released with the library's own `free`.
        let (status, body) = unsafe {
            let status = (self.table.call)(bytes.as_ptr(), bytes.len(), &mut buffer);
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
            abi::STATUS_OK => serde_json::from_slice(&body).map_err(|e| CallError::Protocol {
                mode: name,
                message: e.to_string(),
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

/// Whether only root or guestnetd's own user can change `path` (a file or
/// a directory): owned by one of them, writable by neither group nor
/// others. Follows symbolic links.
fn trusted(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot be read: {e}"))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!(
            "is owned by uid {}, not by root or guestnetd's own uid {me}",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
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

/// [`trusted`] for a library and the directory it really is in (through
/// any symbolic link).
fn trusted_library(file: &Path) -> Result<(), String> {
    trusted(file)?;
    let real = std::fs::canonicalize(file).map_err(|e| format!("cannot be resolved: {e}"))?;
    if let Some(dir) = real.parent() {
        trusted(dir).map_err(|why| format!("its directory {} {why}", dir.display()))?;
    }
    Ok(())
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
        if let Err(reason) = trusted(dir) {
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
            if let Err(reason) = trusted_library(&file) {
                errors.push(LoadError::Untrusted { file, reason });
                continue;
            }
            match LoadedMode::load(&file) {
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
