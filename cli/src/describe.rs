//! `guestnetctl mode describe NAME`: a mode's definition table as
//! `DescribeMode` returns it (JSON), printed for people. Read as plain JSON,
//! not as the mode API's types, so a kind of key this guestnetctl does not
//! know is still shown, by its name.

use serde_json::Value as Json;

use crate::fail::{Failure, Result};
use crate::output::{self, out};
use crate::Ctx;

pub async fn describe(ctx: &Ctx, name: &str) -> Result<()> {
    let manager = guestnet_dbus::manager(&ctx.conn).await?;
    let text = manager.describe_mode(name).await?;
    let description: Json = serde_json::from_str(&text).map_err(|e| {
        Failure::local(format!(
            "guestnetd described mode {name:?} in broken JSON: {e}"
        ))
    })?;
    if ctx.json {
        output::json(&description);
    } else {
        out(&render(&description));
    }
    Ok(())
}

fn str_of<'a>(v: &'a Json, key: &str) -> &'a str {
    v.get(key).and_then(Json::as_str).unwrap_or("")
}

/// The description for people:
///
/// ```text
/// Mode:     nat 0.1.0 (mode API 1.1)
///           Guests on a private subnet, ...
///
/// [nat]
///   uplink  interface, optional
///           The only NIC guests' traffic leaves through, masqueraded.
///           Default: the NIC of the host's default route.
/// ```
pub fn render(d: &Json) -> String {
    let mode = str_of(d, "mode");
    let mut text = format!(
        "Mode:     {mode} {} (mode API {})\n",
        str_of(d, "version"),
        str_of(d, "api")
    );
    let table = match d.get("table") {
        Some(t) if t.is_object() => t,
        _ => {
            text.push_str(&format!(
                "\nThe library of mode {mode} was built against mode API {} and cannot \
                 describe its table; see the mode's own documentation.\n",
                str_of(d, "api")
            ));
            return text;
        }
    };
    let help = str_of(table, "help");
    if !help.is_empty() {
        text.push_str(&format!("          {help}\n"));
    }
    let keys = table
        .get("keys")
        .and_then(Json::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if keys.is_empty() {
        text.push_str(&format!(
            "\nA definition of this mode takes no [{mode}] table.\n"
        ));
    } else {
        text.push_str(&format!("\n[{mode}]\n"));
        keys_text(&mut text, keys, 2);
    }
    text
}

/// Each key: its name and kind on one line, then its help and default,
/// indented; a table's keys follow, indented further.
fn keys_text(text: &mut String, keys: &[Json], indent: usize) {
    let width = keys
        .iter()
        .map(|k| str_of(k, "name").chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let pad = " ".repeat(indent);
    let under = " ".repeat(indent + width + 2);
    for key in keys {
        let required = if key.get("required").and_then(Json::as_bool) == Some(true) {
            "required"
        } else {
            "optional"
        };
        let kind = key.get("kind").cloned().unwrap_or(Json::Null);
        text.push_str(&format!(
            "{pad}{:<width$}  {}, {required}\n",
            str_of(key, "name"),
            kind_text(&kind)
        ));
        let help = str_of(key, "help");
        if !help.is_empty() {
            text.push_str(&format!("{under}{help}\n"));
        }
        if let Some(default) = key.get("default").and_then(Json::as_str) {
            text.push_str(&format!("{under}Default: {default}.\n"));
        }
        if kind.get("type").and_then(Json::as_str) == Some("table") {
            if let Some(inner) = kind.get("keys").and_then(Json::as_array) {
                keys_text(text, inner, indent + width + 2);
            }
        }
    }
}

/// A key's kind in words: `interface`, `integer 1..=4094`, `one of "a",
/// "b"`, `list of ipv4 subnet`, `table`.
fn kind_text(kind: &Json) -> String {
    let ty = str_of(kind, "type");
    match ty {
        "integer" => {
            let bound = |k| kind.get(k).and_then(Json::as_i64);
            match (bound("min"), bound("max")) {
                (None, None) => "integer".to_owned(),
                (Some(lo), None) => format!("integer >= {lo}"),
                (None, Some(hi)) => format!("integer <= {hi}"),
                (Some(lo), Some(hi)) => format!("integer {lo}..={hi}"),
            }
        }
        "choice" => {
            let values: Vec<String> = kind
                .get("values")
                .and_then(Json::as_array)
                .map(|vs| {
                    vs.iter()
                        .map(|v| format!("\"{}\"", output::plain(v)))
                        .collect()
                })
                .unwrap_or_default();
            format!("one of {}", values.join(", "))
        }
        "list" => format!(
            "list of {}",
            kind_text(kind.get("item").unwrap_or(&Json::Null))
        ),
        "" => "?".to_owned(),
        // interface, ipv4_address, mac_address, table, and kinds newer
        // than this guestnetctl: by name.
        other => other.replace('_', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_table_is_shown_key_by_key() {
        let d = json!({
            "mode": "nat", "version": "0.1.0", "api": "1.1",
            "table": {"help": "Guests behind NAT.", "keys": [
                {"name": "uplink", "kind": {"type": "interface"}, "required": false,
                 "help": "The NIC.", "default": "the default route's"},
                {"name": "vlan", "kind": {"type": "integer", "min": 1, "max": 4094},
                 "required": true, "help": ""},
                {"name": "via", "kind": {"type": "list", "item": {"type": "ipv4_subnet"}}},
                {"name": "how", "kind": {"type": "choice", "values": ["a", "b"]}},
                {"name": "routes", "kind": {"type": "table", "keys": [
                    {"name": "to", "kind": {"type": "ipv4_subnet"}, "required": true}]}},
                {"name": "future", "kind": {"type": "ipv6_subnet"}},
            ]}
        });
        let text = render(&d);
        for want in [
            "Mode:     nat 0.1.0 (mode API 1.1)\n",
            "          Guests behind NAT.\n",
            "[nat]\n",
            "  uplink  interface, optional\n",
            "The NIC.\n",
            "Default: the default route's.\n",
            "  vlan    integer 1..=4094, required\n",
            "  via     list of ipv4 subnet, optional\n",
            "  how     one of \"a\", \"b\", optional\n",
            "  routes  table, optional\n",
            "\n          to      ipv4 subnet, required\n",
            "  future  ipv6 subnet, optional\n",
        ] {
            assert!(text.contains(want), "{want:?} not in:\n{text}");
        }
    }

    #[test]
    fn no_keys_and_no_description_are_said_so() {
        let none = render(&json!({"mode": "routed", "version": "1", "api": "1.1",
                                  "table": {"help": "", "keys": []}}));
        assert!(none.contains("takes no [routed] table"), "{none}");
        let old = render(&json!({"mode": "old", "version": "1", "api": "1.0", "table": null}));
        assert!(
            old.contains("mode API 1.0 and cannot describe its table"),
            "{old}"
        );
    }
}
