//! The network-namespace sysctls active networks need. Like the firewall,
//! they are reconciled as a whole: a key is set while some active network
//! needs it, and its value from before guestnet is restored when none does.
//! The values from before are kept in the runtime directory, so a restart of
//! guestnetd still restores them.

use crate::files::{write_atomic, FileError};
use guestnet_mode_api::{Sysctl, SysctlKey};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[error("sysctl {path}: {source}")]
pub struct SysctlError {
    path: &'static str,
    #[source]
    source: std::io::Error,
}

pub struct SysctlKeeper {
    file: PathBuf,
    /// Key → the value it had before guestnet changed it.
    originals: BTreeMap<String, String>,
}

fn key_name(key: SysctlKey) -> String {
    serde_json::to_value(key)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn key_from_name(name: &str) -> Option<SysctlKey> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
}

impl SysctlKeeper {
    pub fn load(runtime_dir: PathBuf) -> Self {
        let file = runtime_dir.join("sysctl-originals.json");
        let originals = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self { file, originals }
    }

    /// Makes the namespace hold what `needed` asks (the union of the active
    /// networks' sysctls) and restores every key no longer needed.
    pub fn reconcile(&mut self, needed: &[Sysctl]) -> Result<(), ReconcileError> {
        let mut want: BTreeMap<String, (SysctlKey, String)> = BTreeMap::new();
        for s in needed {
            want.insert(key_name(s.key), (s.key, s.value.clone()));
        }
        for (name, (key, value)) in &want {
            let current = read(*key)?;
            if !self.originals.contains_key(name) {
                self.originals.insert(name.clone(), current.clone());
                self.save()?;
            }
            if current != *value {
                write(*key, value)?;
            }
        }
        let stale: Vec<String> = self
            .originals
            .keys()
            .filter(|k| !want.contains_key(*k))
            .cloned()
            .collect();
        for name in stale {
            if let (Some(key), Some(original)) = (key_from_name(&name), self.originals.get(&name)) {
                write(key, original)?;
            }
            self.originals.remove(&name);
            self.save()?;
        }
        Ok(())
    }

    fn save(&self) -> Result<(), FileError> {
        let bytes = serde_json::to_vec(&self.originals).expect("a map of strings serializes");
        write_atomic(&self.file, &bytes)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error(transparent)]
    File(#[from] FileError),
}

fn read(key: SysctlKey) -> Result<String, SysctlError> {
    std::fs::read_to_string(key.path())
        .map(|s| s.trim().to_owned())
        .map_err(|source| SysctlError {
            path: key.path(),
            source,
        })
}

fn write(key: SysctlKey, value: &str) -> Result<(), SysctlError> {
    std::fs::write(key.path(), value).map_err(|source| SysctlError {
        path: key.path(),
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
