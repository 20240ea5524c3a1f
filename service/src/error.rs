//! The errors a caller of guestnetd sees. Each becomes one error of the
//! contract on the wire ([`BusError`]): a [`guestnet_dbus::error::Error`]
//! (`org.guestnet1.Error.*`, names zbus derives) or a standard
//! `org.freedesktop.DBus.Error.*` one.

use crate::host::links::ApplyError;
use crate::mode_registry::CallError;
use guestnet_dbus::error::Error as Contract;
use guestnet_mode_api::ModeError;
use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    #[error("no network named {0:?}")]
    NoSuchNetwork(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("invalid definition: {0}")]
    InvalidConfig(String),
    #[error("{0}")]
    Conflict(String),
    #[error("network {0:?} is not active")]
    NotActive(String),
    #[error("network {0:?} is already active")]
    AlreadyActive(String),
    #[error("no mode named {mode:?} is loaded (loaded: {loaded})")]
    UnknownMode { mode: String, loaded: String },
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Failed(String),
    /// A step that failed, with the error that made it fail kept as the
    /// source for logs; see [`ServiceError::failed`].
    #[error("{context}: {source}")]
    FailedAt {
        context: String,
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    #[error("{0}")]
    AccessDenied(String),
    /// A method argument that makes no sense (a malformed MAC, say).
    #[error("{0}")]
    InvalidArgs(String),
    /// A bound of guestnetd's reached (too many waits at once, say).
    #[error("{0}")]
    LimitsExceeded(String),
}

impl ServiceError {
    /// `context` failed because of `e`: `Failed` on the wire, with the
    /// message "context: e", and `e` kept as the source.
    pub fn failed(context: &str, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ServiceError::FailedAt {
            context: context.to_owned(),
            source: Arc::from(e.into()),
        }
    }

    /// The error and its sources, "a: b: c", for a log line.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut next = std::error::Error::source(self).and_then(|s| s.source());
        while let Some(e) = next {
            out.push_str(&format!(": {e}"));
            next = e.source();
        }
        out
    }

    /// A network's plan that did not apply: a route the kernel refused is a
    /// clash with the host, anything else a failure.
    pub fn starting(network: &str, e: ApplyError) -> Self {
        match e {
            ApplyError::RouteRefused(why) => ServiceError::Conflict(why),
            ApplyError::Kernel(e) => Self::failed(&format!("starting network {network:?}"), e),
        }
    }
}

impl From<CallError> for ServiceError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Refused(ModeError::Invalid { field, reason }) => {
                ServiceError::InvalidConfig(format!("{field}: {reason}"))
            }
            CallError::Refused(ModeError::Conflict { reason }) => ServiceError::Conflict(reason),
            other => ServiceError::Failed(other.to_string()),
        }
    }
}

/// A failed call's answer on the wire: one of guestnet's errors or a
/// standard one. zbus derives both kinds' names; this only picks the kind.
#[derive(Debug)]
pub enum BusError {
    Guestnet(Contract),
    Standard(zbus::fdo::Error),
}

impl From<ServiceError> for BusError {
    fn from(e: ServiceError) -> Self {
        let message = e.to_string();
        BusError::Guestnet(match e {
            ServiceError::NoSuchNetwork(_) => Contract::NoSuchNetwork(message),
            ServiceError::AlreadyExists(_) => Contract::AlreadyExists(message),
            ServiceError::InvalidConfig(_) => Contract::InvalidConfig(message),
            ServiceError::Conflict(_) => Contract::Conflict(message),
            ServiceError::NotActive(_) => Contract::NotActive(message),
            ServiceError::AlreadyActive(_) => Contract::AlreadyActive(message),
            ServiceError::UnknownMode { .. } => Contract::UnknownMode(message),
            ServiceError::Timeout(_) => Contract::Timeout(message),
            ServiceError::Failed(_) => Contract::Failed(message),
            ServiceError::FailedAt { .. } => {
                tracing::warn!("{}", e.chain());
                Contract::Failed(message)
            }
            ServiceError::AccessDenied(m) => {
                return BusError::Standard(zbus::fdo::Error::AccessDenied(m))
            }
            ServiceError::InvalidArgs(m) => {
                return BusError::Standard(zbus::fdo::Error::InvalidArgs(m))
            }
            ServiceError::LimitsExceeded(m) => {
                return BusError::Standard(zbus::fdo::Error::LimitsExceeded(m))
            }
        })
    }
}

/// A bus call of guestnetd's own that failed (exporting an object, say).
impl From<zbus::Error> for BusError {
    fn from(e: zbus::Error) -> Self {
        ServiceError::failed("D-Bus", e).into()
    }
}

impl zbus::DBusError for BusError {
    fn create_reply(&self, call: &zbus::message::Header<'_>) -> zbus::Result<zbus::Message> {
        match self {
            BusError::Guestnet(e) => e.create_reply(call),
            BusError::Standard(e) => e.create_reply(call),
        }
    }

    fn name(&self) -> zbus::names::ErrorName<'_> {
        match self {
            BusError::Guestnet(e) => e.name(),
            BusError::Standard(e) => e.name(),
        }
    }

    fn description(&self) -> Option<&str> {
        match self {
            BusError::Guestnet(e) => e.description(),
            BusError::Standard(e) => e.description(),
        }
    }
}

impl std::fmt::Display for BusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusError::Guestnet(e) => e.fmt(f),
            BusError::Standard(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for BusError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot write /etc/guestnet/n1.toml")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn failed_keeps_the_source_chain_for_logs() {
        let e = ServiceError::failed(
            "saving the definition",
            Outer(std::io::Error::other("disk on fire")),
        );
        // The caller reads one line, as before.
        assert_eq!(
            e.to_string(),
            "saving the definition: cannot write /etc/guestnet/n1.toml"
        );
        // The log gets the whole chain.
        assert_eq!(
            e.chain(),
            "saving the definition: cannot write /etc/guestnet/n1.toml: disk on fire"
        );
        let source = std::error::Error::source(&e).expect("a source");
        assert_eq!(source.to_string(), "cannot write /etc/guestnet/n1.toml");
        // Plain text is accepted too.
        let e = ServiceError::failed("attaching tap0", "no such device".to_owned());
        assert_eq!(e.to_string(), "attaching tap0: no such device");
    }
}
