//! Files guestnetd keeps: persistent definitions (one TOML file a network in
//! the config directory) and records of what is applied now (one JSON file a
//! network in the runtime directory). Every write is atomic: a temporary
//! file, fsynced, renamed over the old one, and the directory fsynced, so a
//! crash leaves the old file or the new one, never half of one. Files of
//! the runtime directory skip the fsyncs: see [`write_volatile`].

use guestnet_mode_api::{Definition, NetworkName, Plan};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FileError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError {
        path: path.to_owned(),
        source,
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_atomic_mode(path, bytes, 0o666)
}

/// Writes `bytes` to `path` atomically, readable by its owner only (0600)
/// from the first byte on.
pub fn write_atomic_private(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_atomic_mode(path, bytes, 0o600)
}

/// Writes `bytes` to `path` atomically, for a file of the runtime
/// directory: as [`write_atomic`] but without the fsyncs. Such a file must
/// not outlive a reboot (/run is a tmpfs, where fsync does nothing), and a
/// crash of guestnetd alone loses nothing the kernel has been given: the
/// rename is what makes it atomic. On a disk the fsyncs cost tens of
/// milliseconds a file, several times in every Start and Stop.
pub fn write_volatile(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_with(path, bytes, 0o666, false)
}

/// Removes a file of the runtime directory (no fsync, as
/// [`write_volatile`]); a file already gone is fine.
pub fn remove_volatile(path: &Path) -> Result<(), FileError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(at(path)(e)),
    }
}

/// `mode` as for open(2): the umask still applies.
fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    write_with(path, bytes, mode, true)
}

fn write_with(path: &Path, bytes: &[u8], mode: u32, durable: bool) -> Result<(), FileError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(at(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    // A leftover temporary file would keep its own mode: start afresh.
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(at(&tmp))?;
    f.write_all(bytes).map_err(at(&tmp))?;
    if durable {
        f.sync_all().map_err(at(&tmp))?;
    }
    drop(f);
    std::fs::rename(&tmp, path).map_err(at(path))?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), FileError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(at(dir))
}

/// Removes the temporary files of atomic writes that a crash interrupted.
pub fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') && name.ends_with(".tmp") {
            tracing::info!("removing {}, left by an interrupted write", path.display());
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Removes `path`; a file already gone is fine.
pub fn remove(path: &Path) -> Result<(), FileError> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            let dir = path.parent().unwrap_or(Path::new("."));
            sync_dir(dir)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(at(path)(e)),
    }
}

/// The persistent definitions in the config directory.
pub struct DefinitionStore {
    dir: PathBuf,
}

/// A definition file that could not be read back; reported, never fatal.
#[derive(Debug)]
pub struct BadFile {
    pub path: PathBuf,
    pub reason: String,
}

impl DefinitionStore {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn path_of(&self, name: &NetworkName) -> PathBuf {
        self.dir.join(format!("{name}.toml"))
    }

    pub fn save(&self, definition: &Definition) -> Result<(), FileError> {
        write_atomic(
            &self.path_of(&definition.name),
            definition.to_toml().as_bytes(),
        )
    }

    pub fn remove(&self, name: &NetworkName) -> Result<(), FileError> {
        remove(&self.path_of(name))
    }

    /// Every `*.toml` definition in the directory. A file whose name does not
    /// match the network it defines is refused, so one network never has two
    /// files.
    pub fn load_all(&self) -> (Vec<Definition>, Vec<BadFile>) {
        remove_stale_temps(&self.dir);
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return (good, bad);
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            match read_definition(&path) {
                Ok(d) => good.push(d),
                Err(reason) => bad.push(BadFile { path, reason }),
            }
        }
        (good, bad)
    }
}

fn read_definition(path: &Path) -> Result<Definition, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let def = Definition::parse(&text).map_err(|e| e.to_string())?;
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    if stem.as_deref() != Some(def.name.as_str()) {
        return Err(format!(
            "defines network {:?}; the file must be named {}.toml",
            def.name.as_str(),
            def.name
        ));
    }
    Ok(def)
}

/// Where a network was in its life when the record was last written. A
/// guestnetd killed mid-way leaves `Applying` or `Stopping` behind, and the
/// next one finishes the job by tearing the network down: the state always
/// converges to fully active or fully absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Applying,
    #[default]
    Active,
    Stopping,
    /// An Update moving the network from the bridge of `previous` to the
    /// bridge of `plan`, with its guests' ports: the next guestnetd
    /// finishes the move.
    Moving,
}

/// What guestnetd applied for one active network: enough to tear it down or
/// re-adopt it after a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppliedRecord {
    pub definition: Definition,
    pub persistent: bool,
    pub plan: Plan,
    #[serde(default)]
    pub phase: Phase,
    /// While an Update moves the network in place: the plan it came from,
    /// so a guestnetd killed half-way finishes the move (addresses and
    /// routes of `previous` that `plan` lacks are removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Plan>,
    /// While a start creates the plan's bridge: the ifindex it is made
    /// under, chosen and recorded before it exists. A start killed before
    /// the bridge carries its alias leaves an unmarked bridge that this
    /// index alone proves ours; no other unmarked bridge is ever adopted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_index: Option<u32>,
}

impl AppliedRecord {
    pub fn new(definition: &Definition, persistent: bool, plan: &Plan, phase: Phase) -> Self {
        AppliedRecord {
            definition: definition.clone(),
            persistent,
            plan: plan.clone(),
            phase,
            previous: None,
            bridge_index: None,
        }
    }
}

/// Records of applied networks in the runtime directory.
pub struct RuntimeStore {
    dir: PathBuf,
}

impl RuntimeStore {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir: dir.join("networks"),
        }
    }

    fn path_of(&self, name: &NetworkName) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    pub fn save(&self, record: &AppliedRecord) -> Result<(), FileError> {
        let bytes = serde_json::to_vec_pretty(record).expect("records always serialize");
        write_volatile(&self.path_of(&record.definition.name), &bytes)
    }

    pub fn remove(&self, name: &NetworkName) -> Result<(), FileError> {
        remove_volatile(&self.path_of(name))
    }

    pub fn load_all(&self) -> (Vec<AppliedRecord>, Vec<BadFile>) {
        remove_stale_temps(&self.dir);
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return (good, bad);
        };
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    serde_json::from_slice::<AppliedRecord>(&b).map_err(|e| e.to_string())
                });
            match parsed {
                Ok(r) => good.push(r),
                Err(reason) => bad.push(BadFile { path, reason }),
            }
        }
        (good, bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_round_trip_and_misnamed_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("gn-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = DefinitionStore::new(dir.clone());
        let def = Definition::parse("name = \"a\"\n[ipv4]\naddress = \"10.1.1.1/24\"").unwrap();
        store.save(&def).unwrap();
        std::fs::write(dir.join("b.toml"), "name = \"c\"").unwrap();
        let (good, bad) = store.load_all();
        assert_eq!(good, vec![def.clone()]);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].reason.contains("c.toml"), "{}", bad[0].reason);
        store.remove(&def.name).unwrap();
        assert!(!store.path_of(&def.name).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
