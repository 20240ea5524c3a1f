//! The network-namespace sysctls active networks need. Like the firewall,
//! they are reconciled as a whole: a key is set while some active network
//! needs it, and its value from before guestnet is restored when none does.
//! The values from before are kept in the runtime directory, so a restart of
//! guestnetd still restores them.

use crate::files::{write_volatile, FileError};
use guestnet_mode_api::SysctlKey;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[error("sysctl {path}: {source}")]
pub struct SysctlError {
    path: String,
    #[source]
    source: std::io::Error,
}

pub struct SysctlKeeper {
    file: PathBuf,
    /// Path → the value it had before guestnet changed it.
    originals: BTreeMap<String, String>,
}

impl SysctlKeeper {
    pub fn load(runtime_dir: PathBuf) -> Self {
        let file = runtime_dir.join("sysctl-originals.json");
        let originals: BTreeMap<String, String> = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        // A guestnetd before per-bridge keys kept them by key name.
        let originals = originals
            .into_iter()
            .filter_map(|(k, v)| Some((legacy_path(&k)?, v)))
            .collect();
        Self { file, originals }
    }

    /// Makes the namespace hold what `needed` asks (the union of the active
    /// networks' sysctls, as path and value; the plans' keys are a closed
    /// list, so these paths are guestnet's own) and restores every path no
    /// longer needed. A per-bridge path whose bridge is gone needs no
    /// restoring.
    pub fn reconcile(&mut self, needed: &[(String, String)]) -> Result<(), ReconcileError> {
        let want: BTreeMap<&str, &str> = needed
            .iter()
            .map(|(p, v)| (p.as_str(), v.as_str()))
            .collect();
        for (path, value) in &want {
            let current = read(path)?;
            if !self.originals.contains_key(*path) {
                self.originals.insert((*path).to_owned(), current.clone());
                self.save()?;
            }
            if current != *value {
                write(path, value)?;
            }
        }
        let stale: Vec<String> = self
            .originals
            .keys()
            .filter(|k| !want.contains_key(k.as_str()))
            .cloned()
            .collect();
        for path in stale {
            if let Some(original) = self.originals.get(&path) {
                match write(&path, original) {
                    Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => {}
                    other => other?,
                }
            }
            self.originals.remove(&path);
            self.save()?;
        }
        Ok(())
    }

    fn save(&self) -> Result<(), FileError> {
        let bytes = serde_json::to_vec(&self.originals).expect("a map of strings serializes");
        // In the runtime directory: see write_volatile.
        write_volatile(&self.file, &bytes)
    }
}

/// The path of a key as kept in the originals file: a path already, or the
/// name of a namespace-wide key (as a guestnetd before per-bridge keys
/// wrote it). Anything else is not guestnet's and is dropped.
fn legacy_path(kept: &str) -> Option<String> {
    if kept.starts_with("/proc/sys/net/") && !kept.contains("..") {
        return Some(kept.to_owned());
    }
    let key: SysctlKey = serde_json::from_value(serde_json::Value::String(kept.to_owned())).ok()?;
    let any = guestnet_mode_api::IfName::new("lo").ok()?;
    (!key.per_bridge()).then(|| key.path(&any))
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error(transparent)]
    File(#[from] FileError),
}

fn read(path: &str) -> Result<String, SysctlError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| SysctlError {
            path: path.to_owned(),
            source,
        })
}

fn write(path: &str, value: &str) -> Result<(), SysctlError> {
    std::fs::write(path, value).map_err(|source| SysctlError {
        path: path.to_owned(),
        source,
    })
}

/// Turns IPv6 off on a port guestnetd made (the host's end of a guest's
/// veth or tap): it never needs an address, and with IPv6 on, each port
/// sends its own neighbour and router solicitations and multicast reports,
/// which the bridge floods to every guest (a thousand guests: a million
/// packets). The setting goes away with the port, so nothing is restored.
/// Best effort: without IPv6 in the kernel there is nothing to turn off.
/// Makes the kernel keep a bridge's other addresses in a subnet when its
/// primary one there goes (an Update from `.1/24` to `.254/24` adds the new
/// address, then removes the old: without this the kernel drops both).
pub fn promote_secondaries(ifname: &str) {
    let path = format!("/proc/sys/net/ipv4/conf/{ifname}/promote_secondaries");
    if let Err(e) = std::fs::write(&path, "1") {
        tracing::debug!("{path}: {e}");
    }
}

pub fn disable_ipv6_on_port(ifname: &str) {
    let path = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
    if let Err(e) = std::fs::write(&path, "1") {
        tracing::debug!("{path}: {e}");
    }
}
