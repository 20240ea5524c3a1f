//! Who may change state. Every state-changing call is checked with polkit
//! (`org.freedesktop.PolicyKit1.Authority.CheckAuthorization`) for the
//! caller's unique bus name, a `system-bus-name` subject, never a pid of
//! guestnetd's own. uid 0 is always allowed. Where no polkit daemon answers,
//! only uid 0 is, and the refusal says so.

use crate::error::ServiceError;
use std::collections::HashMap;
use zbus::message::{Flags, Header};
use zbus::names::BusName;
use zbus::zvariant::Value;
use zbus::Connection;

/// The polkit actions of `dbus/data/org.guestnet1.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Define, create, start, stop, update, undefine networks; autostart.
    ManageNetworks,
    /// Attach and detach guests.
    AttachGuests,
}

impl Action {
    pub fn id(self) -> &'static str {
        match self {
            Action::ManageNetworks => "org.guestnet1.manage-networks",
            Action::AttachGuests => "org.guestnet1.attach-guests",
        }
    }
}

const POLKIT_NAME: &str = "org.freedesktop.PolicyKit1";
const POLKIT_PATH: &str = "/org/freedesktop/PolicyKit1/Authority";
const POLKIT_INTERFACE: &str = "org.freedesktop.PolicyKit1.Authority";
/// CheckAuthorization flag: the caller may be asked for a password.
const ALLOW_USER_INTERACTION: u32 = 1;

/// Allows the call in `header` to perform `action`, or says why not.
pub async fn check(
    conn: &Connection,
    header: &Header<'_>,
    action: Action,
) -> Result<(), ServiceError> {
    let sender = header
        .sender()
        .ok_or_else(|| ServiceError::AccessDenied("the call has no sender".into()))?
        .to_string();
    let dbus = zbus::fdo::DBusProxy::new(conn)
        .await
        .map_err(|e| ServiceError::failed("asking the bus who called", e))?;
    let name =
        BusName::try_from(sender.as_str()).map_err(|e| ServiceError::failed("caller name", e))?;
    let uid = dbus
        .get_connection_unix_user(name)
        .await
        .map_err(|e| ServiceError::failed("asking the bus who called", e))?;
    if uid == 0 {
        return Ok(());
    }
    let interactive = header
        .primary()
        .flags()
        .contains(Flags::AllowInteractiveAuth);
    match ask_polkit(conn, &sender, action, interactive).await {
        Ok(PolkitAnswer::Authorized) => Ok(()),
        Ok(PolkitAnswer::NotAuthorized { challenge }) => Err(ServiceError::AccessDenied(format!(
            "uid {uid} is not authorized for {}{}",
            action.id(),
            if challenge {
                " (authentication is required: call again allowing interactive authorization)"
            } else {
                ""
            }
        ))),
        Err(NoPolkit(why)) => Err(ServiceError::AccessDenied(format!(
            "uid {uid} may not change guestnet networks: no polkit authority answers ({why}), \
             so only root may"
        ))),
    }
}

enum PolkitAnswer {
    Authorized,
    NotAuthorized { challenge: bool },
}

struct NoPolkit(String);

async fn ask_polkit(
    conn: &Connection,
    sender: &str,
    action: Action,
    interactive: bool,
) -> Result<PolkitAnswer, NoPolkit> {
    let mut subject_details: HashMap<&str, Value<'_>> = HashMap::new();
    subject_details.insert("name", Value::from(sender));
    let subject = ("system-bus-name", subject_details);
    let details: HashMap<&str, &str> = HashMap::new();
    let flags = if interactive {
        ALLOW_USER_INTERACTION
    } else {
        0
    };
    let reply = conn
        .call_method(
            Some(POLKIT_NAME),
            POLKIT_PATH,
            Some(POLKIT_INTERFACE),
            "CheckAuthorization",
            &(subject, action.id(), details, flags, ""),
        )
        .await
        .map_err(|e| NoPolkit(e.to_string()))?;
    let (authorized, challenge, _details): (bool, bool, HashMap<String, String>) = reply
        .body()
        .deserialize()
        .map_err(|e| NoPolkit(format!("unreadable answer: {e}")))?;
    Ok(if authorized {
        PolkitAnswer::Authorized
    } else {
        PolkitAnswer::NotAuthorized { challenge }
    })
}
