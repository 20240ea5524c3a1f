//! The errors a caller of guestnetd sees. Each maps to one D-Bus error name
//! of the contract (`org.guestnet1.Error.*`, or the standard AccessDenied).

use crate::host::links::ApplyError;
use crate::mode_registry::CallError;
use guestnet_mode_api::ModeError;

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
    #[error("{0}")]
    AccessDenied(String),
    /// A method argument that makes no sense (a malformed MAC, say).
    #[error("{0}")]
    InvalidArgs(String),
}

impl ServiceError {
    /// The D-Bus error name for this error.
    pub fn dbus_name(&self) -> &'static str {
        match self {
            ServiceError::NoSuchNetwork(_) => "org.guestnet1.Error.NoSuchNetwork",
            ServiceError::AlreadyExists(_) => "org.guestnet1.Error.AlreadyExists",
            ServiceError::InvalidConfig(_) => "org.guestnet1.Error.InvalidConfig",
            ServiceError::Conflict(_) => "org.guestnet1.Error.Conflict",
            ServiceError::NotActive(_) => "org.guestnet1.Error.NotActive",
            ServiceError::AlreadyActive(_) => "org.guestnet1.Error.AlreadyActive",
            ServiceError::UnknownMode { .. } => "org.guestnet1.Error.UnknownMode",
            ServiceError::Timeout(_) => "org.guestnet1.Error.Timeout",
            ServiceError::Failed(_) => "org.guestnet1.Error.Failed",
            ServiceError::AccessDenied(_) => "org.freedesktop.DBus.Error.AccessDenied",
            ServiceError::InvalidArgs(_) => "org.freedesktop.DBus.Error.InvalidArgs",
        }
    }

    pub fn failed(context: &str, e: impl std::fmt::Display) -> Self {
        ServiceError::Failed(format!("{context}: {e}"))
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
