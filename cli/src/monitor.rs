//! `guestnetctl monitor`: guestnet's signals as lines (or JSON objects),
//! as they come.

use std::collections::BTreeMap;

use futures::StreamExt;
use serde_json::{json, Map, Value as Json};
use zbus::message::{Message, Type as MessageType};
use zbus::{MatchRule, MessageStream};

use guestnet_dbus::{network_name, BUS_NAME, MANAGER_PATH, NETWORK_INTERFACE};

use crate::fail::{Failure, Result};
use crate::output::{self, line};
use crate::Ctx;

/// One event: its kind, the network it concerns (if any), its fields in
/// the order a line shows them, and extra JSON-only fields.
struct Event {
    kind: &'static str,
    network: Option<String>,
    path: Option<String>,
    /// (JSON key, JSON value, text shown in a line)
    fields: Vec<(&'static str, Json, String)>,
    /// For a line: what follows the fields (properties-changed's `K=V`s).
    tail: Vec<String>,
    /// JSON-only members.
    extra: Map<String, Json>,
}

impl Event {
    fn new(kind: &'static str, path: Option<&str>) -> Event {
        Event {
            kind,
            network: path.and_then(network_name),
            path: path.map(str::to_owned),
            fields: Vec::new(),
            tail: Vec::new(),
            extra: Map::new(),
        }
    }

    fn field(mut self, key: &'static str, value: Json, text: String) -> Event {
        self.fields.push((key, value, text));
        self
    }

    fn text_field(self, key: &'static str, value: &str) -> Event {
        self.field(key, json!(value), value.to_owned())
    }

    fn line(&self) -> String {
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_owned()
            } else {
                s.to_owned()
            }
        };
        let mut parts = vec![self.kind.to_owned()];
        if self.path.is_some() {
            parts.push(dash(self.network.as_deref().unwrap_or("")));
        }
        parts.extend(self.fields.iter().map(|(_, _, t)| dash(t)));
        parts.extend(self.tail.iter().cloned());
        parts.join(" ")
    }

    fn json(&self) -> Json {
        let mut m = Map::new();
        m.insert("event".to_owned(), json!(self.kind));
        if let Some(p) = &self.path {
            m.insert("network".to_owned(), json!(self.network));
            m.insert("path".to_owned(), json!(p));
        }
        for (k, v, _) in &self.fields {
            m.insert((*k).to_owned(), v.clone());
        }
        for (k, v) in &self.extra {
            m.insert(k.clone(), v.clone());
        }
        Json::Object(m)
    }
}

fn signal_rule() -> zbus::Result<zbus::match_rule::Builder<'static>> {
    Ok(MatchRule::builder().msg_type(MessageType::Signal))
}

/// The match rules: guestnet's own signals, PropertiesChanged of its
/// objects, the ObjectManager's signals, and the owner of org.guestnet1
/// changing. The bus matches the sender by the well-known name, so a
/// restarted service is followed.
fn rules() -> zbus::Result<Vec<MatchRule<'static>>> {
    Ok(vec![
        signal_rule()?
            .sender(BUS_NAME)?
            .interface(NETWORK_INTERFACE)?
            .path_namespace(MANAGER_PATH)?
            .build(),
        signal_rule()?
            .sender(BUS_NAME)?
            .interface("org.freedesktop.DBus.Properties")?
            .member("PropertiesChanged")?
            .path_namespace(MANAGER_PATH)?
            .build(),
        signal_rule()?
            .sender(BUS_NAME)?
            .interface("org.freedesktop.DBus.ObjectManager")?
            .path(MANAGER_PATH)?
            .build(),
        signal_rule()?
            .sender("org.freedesktop.DBus")?
            .interface("org.freedesktop.DBus")?
            .member("NameOwnerChanged")?
            .arg(0, BUS_NAME)?
            .build(),
    ])
}

pub async fn monitor(ctx: &Ctx, only: Option<&str>) -> Result<()> {
    let mut streams = Vec::new();
    for rule in rules()? {
        streams.push(MessageStream::for_match_rule(rule, &ctx.conn, Some(4096)).await?);
    }
    let mut all = futures::stream::select_all(streams);
    let dbus = zbus::fdo::DBusProxy::new(&ctx.conn).await?;
    let owner = match dbus
        .get_name_owner(zbus::names::BusName::from_static_str(BUS_NAME).map_err(zbus::Error::from)?)
        .await
    {
        Ok(o) => format!("owned by {o}"),
        Err(_) => "not running now".to_owned(),
    };
    let what = only.map_or(String::new(), |n| format!(" for network {n:?}"));
    eprintln!("Monitoring {BUS_NAME} ({owner}){what}; Ctrl-C stops.");
    while let Some(msg) = all.next().await {
        let msg = msg?;
        let Some(event) = event(&msg) else {
            continue;
        };
        if let Some(name) = only {
            if event.path.is_some() && event.network.as_deref() != Some(name) {
                continue;
            }
        }
        if ctx.json {
            output::json_line(&event.json());
        } else {
            line(&event.line());
        }
    }
    Err(Failure::Bus("the bus closed the connection".to_owned()))
}

/// The event a signal is, if it is one of ours and well-formed.
fn event(msg: &Message) -> Option<Event> {
    let header = msg.header();
    let path = header.path().map(|p| p.as_str().to_owned());
    let interface = header.interface()?.as_str().to_owned();
    let member = header.member()?.as_str().to_owned();
    match (interface.as_str(), member.as_str()) {
        (NETWORK_INTERFACE, m) => {
            let kind = match m {
                "LeaseAdded" => "lease-added",
                "LeaseRenewed" => "lease-renewed",
                "LeaseRemoved" => "lease-removed",
                "GuestAttached" => "guest-attached",
                "GuestDetached" => "guest-detached",
                _ => return None,
            };
            let e = Event::new(kind, path.as_deref());
            if kind.starts_with("lease-") {
                let (mac, ip, hostname, client_id, expiry): (String, String, String, String, u64) =
                    msg.body().deserialize().ok()?;
                Some(
                    e.text_field("mac", &mac)
                        .text_field("ip", &ip)
                        .text_field("hostname", &hostname)
                        .text_field("client_id", &client_id)
                        .field("expiry", json!(expiry), output::utc(expiry)),
                )
            } else {
                let (ifname, mac, guest): (String, String, String) =
                    msg.body().deserialize().ok()?;
                Some(
                    e.text_field("ifname", &ifname)
                        .text_field("mac", &mac)
                        .text_field("guest", &guest),
                )
            }
        }
        ("org.freedesktop.DBus.Properties", "PropertiesChanged") => {
            let signal = zbus::fdo::PropertiesChanged::from_message(msg.clone())?;
            let args = signal.args().ok()?;
            let changed: BTreeMap<String, Json> = args
                .changed_properties()
                .iter()
                .map(|(k, v)| ((*k).to_owned(), output::value_json(v)))
                .collect();
            let mut invalidated: Vec<String> = args
                .invalidated_properties()
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
            invalidated.sort();
            let mut e = Event::new("properties-changed", path.as_deref());
            e.tail = changed
                .iter()
                .map(|(k, v)| format!("{k}={}", output::plain(v)))
                .chain(invalidated.iter().map(|k| format!("{k}=?")))
                .collect();
            let snake: Map<String, Json> = changed
                .iter()
                .map(|(k, v)| (output::snake_case(k), v.clone()))
                .collect();
            e.extra.insert(
                "interface".to_owned(),
                json!(args.interface_name().as_str()),
            );
            e.extra.insert("changed".to_owned(), Json::Object(snake));
            e.extra.insert(
                "invalidated".to_owned(),
                json!(invalidated
                    .iter()
                    .map(|k| output::snake_case(k))
                    .collect::<Vec<_>>()),
            );
            Some(e)
        }
        ("org.freedesktop.DBus.ObjectManager", "InterfacesAdded") => {
            let signal = zbus::fdo::InterfacesAdded::from_message(msg.clone())?;
            let args = signal.args().ok()?;
            let object = args.object_path().as_str().to_owned();
            let mut interfaces: Vec<String> = args
                .interfaces_and_properties()
                .keys()
                .map(|i| i.as_str().to_owned())
                .collect();
            interfaces.sort();
            Some(object_event(true, &object, interfaces))
        }
        ("org.freedesktop.DBus.ObjectManager", "InterfacesRemoved") => {
            let signal = zbus::fdo::InterfacesRemoved::from_message(msg.clone())?;
            let args = signal.args().ok()?;
            let object = args.object_path().as_str().to_owned();
            let mut interfaces: Vec<String> = args
                .interfaces()
                .iter()
                .map(|i| i.as_str().to_owned())
                .collect();
            interfaces.sort();
            Some(object_event(false, &object, interfaces))
        }
        ("org.freedesktop.DBus", "NameOwnerChanged") => {
            let signal = zbus::fdo::NameOwnerChanged::from_message(msg.clone())?;
            let args = signal.args().ok()?;
            if args.name().as_str() != BUS_NAME {
                return None;
            }
            match args.new_owner().as_ref() {
                Some(owner) => {
                    Some(Event::new("service-started", None).text_field("owner", owner.as_str()))
                }
                None => Some(Event::new("service-stopped", None)),
            }
        }
        _ => None,
    }
}

/// network-added / network-removed for a network's object; object-added /
/// object-removed (with its path) for any other.
fn object_event(added: bool, object: &str, interfaces: Vec<String>) -> Event {
    let is_network = network_name(object).is_some();
    let kind = match (is_network, added) {
        (true, true) => "network-added",
        (true, false) => "network-removed",
        (false, true) => "object-added",
        (false, false) => "object-removed",
    };
    let mut e = Event::new(kind, Some(object));
    if !is_network {
        e.tail.push(object.to_owned());
    }
    e.extra.insert("interfaces".to_owned(), json!(interfaces));
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_events_as_lines_and_json() {
        let e = Event::new("lease-added", Some("/org/guestnet1/network/default"))
            .text_field("mac", "52:54:00:00:00:01")
            .text_field("ip", "10.0.0.5")
            .text_field("hostname", "")
            .field("expiry", json!(0u64), output::utc(0));
        assert_eq!(
            e.line(),
            "lease-added default 52:54:00:00:00:01 10.0.0.5 - 1970-01-01T00:00:00Z"
        );
        let j = e.json();
        assert_eq!(j["event"], "lease-added");
        assert_eq!(j["network"], "default");
        assert_eq!(j["hostname"], "");
        assert_eq!(j["expiry"], 0);
    }

    #[test]
    fn rules_are_valid() {
        let rules = rules().unwrap();
        assert_eq!(rules.len(), 4);
        assert!(rules[3].to_string().contains("arg0='org.guestnet1'"));
    }
}
