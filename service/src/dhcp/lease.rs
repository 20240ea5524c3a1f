//! A lease and what can happen to one.

use guestnet_mode_api::MacAddr;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    /// The client's host name, sanitized to one DNS label.
    pub hostname: Option<String>,
    /// The client identifier option (61), as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Vec<u8>>,
    /// Unix seconds.
    pub expires: u64,
}

impl Lease {
    /// The client id as colon-separated hex (`01:52:54:00:aa:bb:cc`), or "".
    pub fn client_id_hex(&self) -> String {
        self.client_id
            .as_deref()
            .map(|id| {
                id.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            })
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseChange {
    Added,
    Renewed,
    /// Released, declined or expired.
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseEvent {
    pub change: LeaseChange,
    pub lease: Lease,
}

/// Turns whatever a client sent as its host name into one DNS label:
/// lower-case letters, digits and inner dashes, at most 63 bytes; the first
/// label of a dotted name. `None` when nothing usable remains.
pub fn sanitize_hostname(raw: &str) -> Option<String> {
    let first = raw.split('.').next().unwrap_or("");
    let mut label: String = first
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => Some(c),
            'A'..='Z' => Some(c.to_ascii_lowercase()),
            '_' | ' ' => Some('-'),
            _ => None,
        })
        .take(63)
        .collect();
    while label.ends_with('-') {
        label.pop();
    }
    let label = label.trim_start_matches('-').to_owned();
    (!label.is_empty()).then_some(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_are_sanitized() {
        assert_eq!(sanitize_hostname("Web-1"), Some("web-1".into()));
        assert_eq!(sanitize_hostname("db.example.com"), Some("db".into()));
        assert_eq!(
            sanitize_hostname("my host_name"),
            Some("my-host-name".into())
        );
        assert_eq!(sanitize_hostname("--x--"), Some("x".into()));
        assert_eq!(sanitize_hostname("ünïcode"), Some("ncode".into()));
        assert_eq!(sanitize_hostname("$$$"), None);
        assert_eq!(sanitize_hostname(""), None);
        assert_eq!(sanitize_hostname(&"a".repeat(100)).unwrap().len(), 63);
    }
}
