//! Who may change state. Until guestnet speaks to polkit, only uid 0 may:
//! the caller's uid is asked of the bus for the caller's unique name, never
//! taken from guestnetd's own process.

use crate::error::ServiceError;
use zbus::message::Header;
use zbus::Connection;

/// Allows the call if its sender is uid 0.
pub async fn check(conn: &Connection, header: &Header<'_>) -> Result<(), ServiceError> {
    let sender = header
        .sender()
        .ok_or_else(|| ServiceError::AccessDenied("the call has no sender".into()))?;
    let dbus = zbus::fdo::DBusProxy::new(conn)
        .await
        .map_err(|e| ServiceError::failed("asking the bus who called", e))?;
    let uid = dbus
        .get_connection_unix_user(sender.clone().into())
        .await
        .map_err(|e| ServiceError::failed("asking the bus who called", e))?;
    if uid == 0 {
        Ok(())
    } else {
        Err(ServiceError::AccessDenied(format!(
            "uid {uid} may not change guestnet networks: without polkit only root may"
        )))
    }
}
