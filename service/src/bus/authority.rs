//! Who may change state. Every state-changing call is checked with polkit
//! (`org.freedesktop.PolicyKit1.Authority.CheckAuthorization`) for the
//! caller's unique bus name, a `system-bus-name` subject, never a pid of
//! guestnetd's own. uid 0 is always allowed. Where no polkit daemon answers,
//! only uid 0 is, and the refusal says so.
//!
//! A check may carry details (polkit's `a{ss}`), which an administrator's
//! rule reads with `action.lookup(KEY)`: AttachGuest gives `network`,
//! `guest`, `kind` ("tap" or "veth") and, when the caller named the veth
//! peer, `interface`; DetachGuest `network` and `interface`, so attaching
//! can be granted per network (or per peer name).

use crate::error::ServiceError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use zbus::message::{Flags, Header};
use zbus::names::BusName;
use zbus::proxy::CacheProperties;
use zbus::zvariant::{Type, Value};
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

/// CheckAuthorization flag: the caller may be asked for a password.
const ALLOW_USER_INTERACTION: u32 = 1;

/// The part of polkit's authority guestnetd uses.
#[zbus::proxy(
    interface = "org.freedesktop.PolicyKit1.Authority",
    default_service = "org.freedesktop.PolicyKit1",
    default_path = "/org/freedesktop/PolicyKit1/Authority",
    gen_blocking = false
)]
trait Authority {
    fn check_authorization(
        &self,
        subject: &Subject<'_>,
        action_id: &str,
        details: &HashMap<&str, &str>,
        flags: u32,
        cancellation_id: &str,
    ) -> zbus::Result<AuthorizationResult>;
}

/// Who asks: `(sa{sv})`, a kind ("system-bus-name") and its details.
#[derive(Debug, Serialize, Type)]
struct Subject<'a> {
    kind: &'a str,
    details: HashMap<&'a str, Value<'a>>,
}

/// polkit's answer: `(bba{ss})`.
#[derive(Debug, Deserialize, Type)]
struct AuthorizationResult {
    is_authorized: bool,
    is_challenge: bool,
    #[allow(dead_code)]
    details: HashMap<String, String>,
}

/// Allows the call in `header` to perform `action`, or says why not.
/// Returns the caller's uid.
pub async fn check(
    conn: &Connection,
    header: &Header<'_>,
    action: Action,
) -> Result<u32, ServiceError> {
    check_with(conn, header, action, &[]).await
}

/// [`check`], telling polkit `details` (key, value) about the request.
/// The caller of the call in `header`: its unique bus name and its uid, as
/// the bus daemon knows them (never what the caller says of itself).
pub async fn caller(conn: &Connection, header: &Header<'_>) -> Result<(String, u32), ServiceError> {
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
    Ok((sender, uid))
}

pub async fn check_with(
    conn: &Connection,
    header: &Header<'_>,
    action: Action,
    details: &[(&str, &str)],
) -> Result<u32, ServiceError> {
    let who = caller(conn, header).await?;
    check_caller(conn, header, &who, action, details).await
}

/// [`check_with`] for a caller already asked of the bus ([`caller`]), so a
/// call that checks twice asks the bus who called once.
pub async fn check_caller(
    conn: &Connection,
    header: &Header<'_>,
    (sender, uid): &(String, u32),
    action: Action,
    details: &[(&str, &str)],
) -> Result<u32, ServiceError> {
    let (sender, uid) = (sender.as_str(), *uid);
    if uid == 0 {
        return Ok(uid);
    }
    let interactive = header
        .primary()
        .flags()
        .contains(Flags::AllowInteractiveAuth);
    match ask_polkit(conn, sender, action, details, interactive).await {
        Ok(PolkitAnswer::Authorized) => Ok(uid),
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
    details: &[(&str, &str)],
    interactive: bool,
) -> Result<PolkitAnswer, NoPolkit> {
    let subject = Subject {
        kind: "system-bus-name",
        details: HashMap::from([("name", Value::from(sender))]),
    };
    let flags = if interactive {
        ALLOW_USER_INTERACTION
    } else {
        0
    };
    let authority = AuthorityProxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(|e| NoPolkit(e.to_string()))?;
    let answer = authority
        .check_authorization(
            &subject,
            action.id(),
            &details.iter().copied().collect(),
            flags,
            "",
        )
        .await
        .map_err(|e| NoPolkit(e.to_string()))?;
    Ok(if answer.is_authorized {
        PolkitAnswer::Authorized
    } else {
        PolkitAnswer::NotAuthorized {
            challenge: answer.is_challenge,
        }
    })
}
