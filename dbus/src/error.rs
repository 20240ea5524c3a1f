//! The D-Bus error names of the contract, and helpers that tell a client
//! which one a failed call got.
//!
//! guestnetd answers a refused or failed call with one of the
//! `org.guestnet1.Error.*` names below and a message a person can act on; a
//! refused authorization is the standard
//! `org.freedesktop.DBus.Error.AccessDenied`.

use zbus::DBusError as _;

/// Writes each guestnet error once: the variant of [`Error`], from which
/// zbus derives the D-Bus name (`prefix.Variant`), and a constant with that
/// name for clients that match on names (`NO_SUCH_NETWORK`, ...).
macro_rules! errors {
    (prefix = $prefix:literal; $($(#[$doc:meta])* $variant:ident => $constant:ident,)*) => {
        /// The errors of guestnet's contract, as the service sends them and
        /// a client gets them back (`Error::from(zbus_error)`). The message
        /// is a sentence for a person.
        #[derive(Clone, Debug, PartialEq, zbus::DBusError)]
        #[zbus(prefix = $prefix)]
        pub enum Error {
            /// Any other error: the bus's own, or a standard
            /// `org.freedesktop.DBus.Error.*` reply such as [`ACCESS_DENIED`].
            #[zbus(error)]
            ZBus(zbus::Error),
            $($(#[$doc])* $variant(String),)*
        }

        $(
            #[doc = concat!("`", $prefix, ".", stringify!($variant), "`")]
            pub const $constant: &str = concat!($prefix, ".", stringify!($variant));
        )*

        /// Every guestnet error name starts with this.
        pub const PREFIX: &str = concat!($prefix, ".");

        /// Every `org.guestnet1.Error.*` name of the contract.
        pub const ALL: &[&str] = &[$($constant),*];
    };
}

errors! {
    prefix = "org.guestnet1.Error";
    /// No network has that name.
    NoSuchNetwork => NO_SUCH_NETWORK,
    /// A network of that name (or uuid) exists.
    AlreadyExists => ALREADY_EXISTS,
    /// The definition is malformed or its mode refuses it.
    InvalidConfig => INVALID_CONFIG,
    /// The network would clash with the host (a subnet or name in use).
    Conflict => CONFLICT,
    NotActive => NOT_ACTIVE,
    AlreadyActive => ALREADY_ACTIVE,
    /// No loaded mode has the definition's mode name.
    UnknownMode => UNKNOWN_MODE,
    /// `WaitForLease` saw no lease in time.
    Timeout => TIMEOUT,
    /// Something on the host failed; the message says what.
    Failed => FAILED,
}

/// A refused authorization (polkit, or not uid 0 without polkit); zbus's
/// `fdo::Error::AccessDenied`.
pub const ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";
/// A malformed argument (a MAC that is not one, say); zbus's
/// `fdo::Error::InvalidArgs`.
pub const INVALID_ARGS: &str = "org.freedesktop.DBus.Error.InvalidArgs";

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
        for &n in ALL {
            assert!(n.starts_with(PREFIX), "{n}");
            assert_eq!(format!("{PREFIX}{}", short_name(n)), n);
        }
        assert_eq!(short_name(ACCESS_DENIED), "AccessDenied");
        assert_eq!(short_name("plain"), "plain");
    }

    #[test]
    fn the_constants_are_the_names_zbus_derives() {
        use zbus::DBusError as _;
        let e = Error::NoSuchNetwork("no network named \"x\"".into());
        assert_eq!(e.name().as_str(), NO_SUCH_NETWORK);
        assert_eq!(e.description(), Some("no network named \"x\""));
        assert_eq!(Error::Failed(String::new()).name().as_str(), FAILED);
        assert_eq!(ALL.len(), 9);
        let denied = zbus::fdo::Error::AccessDenied(String::new());
        assert_eq!(denied.name().as_str(), ACCESS_DENIED);
        let invalid = zbus::fdo::Error::InvalidArgs(String::new());
        assert_eq!(invalid.name().as_str(), INVALID_ARGS);
    }

    #[test]
    fn a_client_gets_the_error_back_by_name() {
        let call = zbus::Message::method_call("/org/guestnet1", "GetNetwork")
            .unwrap()
            .sender(":1.7")
            .unwrap()
            .build(&())
            .unwrap();
        let sent = Error::NoSuchNetwork("no network named \"x\"".into());
        let reply = sent.create_reply(&call.header()).unwrap();
        assert_eq!(Error::from(zbus::Error::from(reply)), sent);
        let fdo = zbus::Error::from(zbus::fdo::Error::AccessDenied("no".into()));
        assert!(matches!(Error::from(fdo), Error::ZBus(_)));
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
