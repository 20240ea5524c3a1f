//! What can go wrong, how it is shown, and the exit code it gives.

use guestnet_dbus::error as names;

/// The exit codes, as `--help` documents them.
pub mod code {
    /// The service refused or failed the request, or a local step (reading
    /// FILE, running the editor) failed.
    pub const FAILED: i32 = 1;
    /// Bad arguments (clap exits with it; here for the record and tests).
    #[allow(dead_code)]
    pub const USAGE: i32 = 2;
    /// The bus or guestnetd cannot be reached.
    pub const UNREACHABLE: i32 = 3;
    /// No such network.
    pub const NOT_FOUND: i32 = 4;
    /// Not authorized.
    pub const DENIED: i32 = 5;
    /// Timed out (wait-lease).
    pub const TIMEOUT: i32 = 6;
}

/// The exit codes, for `--help`.
pub const EXIT_CODES: &str = "\
Exit status:
  0  success
  1  the service refused or failed the request (its D-Bus error is shown as
     `guestnetctl: ShortName: message`), or a local step failed (reading
     FILE, the editor)
  2  usage error: bad arguments
  3  the bus or guestnetd cannot be reached
  4  no such network (org.guestnet1.Error.NoSuchNetwork)
  5  not authorized (org.freedesktop.DBus.Error.AccessDenied)
  6  timed out (org.guestnet1.Error.Timeout, wait-lease)";

/// A failure of a command.
#[derive(Debug)]
pub enum Failure {
    /// An error reply: its D-Bus name and message.
    Service { name: String, message: String },
    /// The bus (or the connection to it) failed.
    Bus(String),
    /// A local step failed.
    Local(String),
}

/// Error replies that mean nobody answers for org.guestnet1.
const UNREACHABLE_NAMES: [&str; 5] = [
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.NoReply",
    "org.freedesktop.DBus.Error.Disconnected",
    "org.freedesktop.DBus.Error.NoServer",
];

impl Failure {
    pub fn local(msg: impl Into<String>) -> Failure {
        Failure::Local(msg.into())
    }

    /// The D-Bus error name, if it is an error reply.
    pub fn dbus_name(&self) -> Option<&str> {
        match self {
            Failure::Service { name, .. } => Some(name),
            _ => None,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Service { name, .. } => match name.as_str() {
                names::NO_SUCH_NETWORK => code::NOT_FOUND,
                // A network that went away between finding it and calling it.
                "org.freedesktop.DBus.Error.UnknownObject" => code::NOT_FOUND,
                names::ACCESS_DENIED => code::DENIED,
                "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired" => code::DENIED,
                names::TIMEOUT => code::TIMEOUT,
                n if UNREACHABLE_NAMES.contains(&n) => code::UNREACHABLE,
                _ => code::FAILED,
            },
            Failure::Bus(_) => code::UNREACHABLE,
            Failure::Local(_) => code::FAILED,
        }
    }

    /// The line printed after `guestnetctl: `.
    pub fn message(&self) -> String {
        match self {
            Failure::Service { name, message } => {
                let short = names::short_name(name);
                let hint = if UNREACHABLE_NAMES.contains(&name.as_str()) {
                    " (is guestnetd running on this bus?)"
                } else {
                    ""
                };
                if message.is_empty() {
                    format!("{short}{hint}")
                } else {
                    format!("{short}: {message}{hint}")
                }
            }
            Failure::Bus(m) => format!("cannot reach the bus: {m}"),
            Failure::Local(m) => m.clone(),
        }
    }
}

impl From<zbus::Error> for Failure {
    fn from(e: zbus::Error) -> Failure {
        if let Some((name, message)) = names::name_and_message(&e) {
            return Failure::Service { name, message };
        }
        Failure::Bus(e.to_string())
    }
}

impl From<zbus::fdo::Error> for Failure {
    fn from(e: zbus::fdo::Error) -> Failure {
        zbus::Error::from(e).into()
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, message: &str) -> Failure {
        Failure::Service {
            name: name.to_owned(),
            message: message.to_owned(),
        }
    }

    #[test]
    fn errors_map_to_exit_codes_by_name() {
        assert_eq!(service(names::NO_SUCH_NETWORK, "x").exit_code(), 4);
        assert_eq!(service(names::INVALID_CONFIG, "x").exit_code(), 1);
        assert_eq!(service(names::ACCESS_DENIED, "x").exit_code(), 5);
        assert_eq!(service(names::TIMEOUT, "x").exit_code(), 6);
        assert_eq!(
            service("org.freedesktop.DBus.Error.ServiceUnknown", "x").exit_code(),
            3
        );
        assert_eq!(Failure::Bus("gone".into()).exit_code(), 3);
        assert_eq!(Failure::local("x").exit_code(), 1);
    }

    #[test]
    fn messages_carry_the_short_name() {
        assert_eq!(
            service(names::NO_SUCH_NETWORK, "no network named \"x\"").message(),
            "NoSuchNetwork: no network named \"x\""
        );
        let e = zbus::Error::from(zbus::fdo::Error::AccessDenied("not root".into()));
        assert_eq!(Failure::from(e).message(), "AccessDenied: not root");
    }
}
