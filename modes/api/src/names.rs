//! Validated names. A value of these types has already been checked, so code
//! that receives one never re-validates it and never builds a path or an
//! interface name from unchecked input.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The kernel's limit for an interface name (IFNAMSIZ less the NUL).
pub const IFNAME_MAX: usize = 15;
/// Our limit for a network name: it becomes a file name and part of an object path.
pub const NETWORK_NAME_MAX: usize = 64;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(String);

/// A network's name: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 64 bytes, so it is
/// safe as a file name (no `/`, no `..`, no leading dot).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NetworkName(String);

impl NetworkName {
    pub fn new(name: &str) -> Result<Self, NameError> {
        check_token(name, NETWORK_NAME_MAX, "network name")?;
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Linux interface name: 1 to 15 bytes of `[A-Za-z0-9_.-]`, not starting
/// with a dot or a dash.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IfName(String);

impl IfName {
    pub fn new(name: &str) -> Result<Self, NameError> {
        check_token(name, IFNAME_MAX, "interface name")?;
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_token(name: &str, max: usize, what: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError(format!("{what} is empty")));
    }
    if name.len() > max {
        return Err(NameError(format!(
            "{what} {name:?} is {} bytes long; the limit is {max}",
            name.len()
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(NameError(format!(
            "{what} {name:?} contains {bad:?}; only letters, digits, '_', '.' and '-' are allowed"
        )));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err(NameError(format!(
            "{what} {name:?} must start with a letter, a digit or '_'"
        )));
    }
    Ok(())
}

macro_rules! string_newtype_impls {
    ($t:ident) => {
        impl TryFrom<String> for $t {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                Self::new(&s)
            }
        }
        impl From<$t> for String {
            fn from(n: $t) -> String {
                n.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
string_newtype_impls!(NetworkName);
string_newtype_impls!(IfName);

/// A DNS name made of labels of `[A-Za-z0-9-]`, each 1 to 63 bytes, at most
/// 253 bytes in all. Stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DnsName(String);

impl DnsName {
    pub fn new(name: &str) -> Result<Self, NameError> {
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() || name.len() > 253 {
            return Err(NameError(format!(
                "DNS name {name:?} must be 1 to 253 bytes long"
            )));
        }
        for label in name.split('.') {
            check_label(label).map_err(|e| NameError(format!("DNS name {name:?}: {e}")))?;
        }
        Ok(Self(name.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_newtype_impls!(DnsName);

/// Checks one DNS label (a host name without dots).
pub fn check_label(label: &str) -> Result<(), NameError> {
    if label.is_empty() || label.len() > 63 {
        return Err(NameError(format!(
            "label {label:?} must be 1 to 63 bytes long"
        )));
    }
    if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(NameError(format!(
            "label {label:?} may hold only letters, digits and '-'"
        )));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(NameError(format!(
            "label {label:?} must not start or end with '-'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_names() {
        assert!(NetworkName::new("default").is_ok());
        assert!(NetworkName::new("lab-1.v2_x").is_ok());
        for bad in ["", "..", "../etc", "a/b", ".hidden", "-x", "a b", "é"] {
            assert!(NetworkName::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(NetworkName::new(&"a".repeat(65)).is_err());
    }

    #[test]
    fn interface_names_fit_the_kernel() {
        assert!(IfName::new("gnbr0").is_ok());
        assert!(IfName::new(&"b".repeat(15)).is_ok());
        let err = IfName::new(&"b".repeat(16)).unwrap_err();
        assert!(err.to_string().contains("16 bytes"), "{err}");
        assert!(IfName::new("br/0").is_err());
    }

    #[test]
    fn dns_names() {
        assert_eq!(DnsName::new("Guest.LAN.").unwrap().as_str(), "guest.lan");
        assert!(DnsName::new("a..b").is_err());
        assert!(DnsName::new("-a.b").is_err());
        assert!(DnsName::new(&"a".repeat(64)).is_err());
    }
}
