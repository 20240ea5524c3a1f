//! The D-Bus error names of the contract, and helpers that tell a client
//! which one a failed call got.
//!
//! guestnetd answers a refused or failed call with one of the
//! `org.guestnet1.Error.*` names below and a message a person can act on; a
//! refused authorization is the standard
//! `org.freedesktop.DBus.Error.AccessDenied`.

use zbus::DBusError;

/// Every guestnet error name starts with this.
pub const PREFIX: &str = "org.guestnet1.Error.";

pub const NO_SUCH_NETWORK: &str = "org.guestnet1.Error.NoSuchNetwork";
pub const ALREADY_EXISTS: &str = "org.guestnet1.Error.AlreadyExists";
pub const INVALID_CONFIG: &str = "org.guestnet1.Error.InvalidConfig";
pub const CONFLICT: &str = "org.guestnet1.Error.Conflict";
pub const NOT_ACTIVE: &str = "org.guestnet1.Error.NotActive";
pub const ALREADY_ACTIVE: &str = "org.guestnet1.Error.AlreadyActive";
pub const UNKNOWN_MODE: &str = "org.guestnet1.Error.UnknownMode";
pub const TIMEOUT: &str = "org.guestnet1.Error.Timeout";
pub const FAILED: &str = "org.guestnet1.Error.Failed";

/// A refused authorization (polkit, or not uid 0 without polkit).
pub const ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";
/// A malformed argument (a MAC that is not one, say).
pub const INVALID_ARGS: &str = "org.freedesktop.DBus.Error.InvalidArgs";

/// Every `org.guestnet1.Error.*` name of the contract.
pub const ALL: [&str; 9] = [
    NO_SUCH_NETWORK,
    ALREADY_EXISTS,
    INVALID_CONFIG,
    CONFLICT,
    NOT_ACTIVE,
    ALREADY_ACTIVE,
    UNKNOWN_MODE,
    TIMEOUT,
    FAILED,
];

/// The name and message of a D-Bus error reply, if `e` is one.
pub fn name_and_message(e: &zbus::Error) -> Option<(String, String)> {
    match e {
        zbus::Error::MethodError(name, message, _) => {
            Some((name.to_string(), message.clone().unwrap_or_default()))
        }
        zbus::Error::FDO(fdo) => match fdo.as_ref() {
            zbus::fdo::Error::ZBus(inner) => name_and_message(inner),
            other => Some((
                other.name().to_string(),
                other.description().unwrap_or_default().to_owned(),
            )),
        },
        _ => None,
    }
}

/// The D-Bus error name of `e`, if it is an error reply.
pub fn name(e: &zbus::Error) -> Option<String> {
    name_and_message(e).map(|(n, _)| n)
}

/// True when `e` is the error reply `name` (one of the constants above).
pub fn is(e: &zbus::Error, name: &str) -> bool {
    self::name(e).as_deref() == Some(name)
}

/// The last element of an error name: `NoSuchNetwork` for
/// `org.guestnet1.Error.NoSuchNetwork`.
pub fn short_name(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_under_the_prefix_and_short_names_are_their_last_part() {
        for n in ALL {
            assert!(n.starts_with(PREFIX), "{n}");
            assert_eq!(format!("{PREFIX}{}", short_name(n)), n);
        }
        assert_eq!(short_name(ACCESS_DENIED), "AccessDenied");
        assert_eq!(short_name("plain"), "plain");
    }

    #[test]
    fn fdo_errors_are_recognized() {
        let e = zbus::Error::from(zbus::fdo::Error::AccessDenied("no".into()));
        assert_eq!(
            name_and_message(&e),
            Some((ACCESS_DENIED.to_owned(), "no".to_owned()))
        );
        assert!(is(&e, ACCESS_DENIED));
        assert!(!is(&zbus::Error::InvalidReply, ACCESS_DENIED));
    }
}
