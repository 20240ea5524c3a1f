//! Printing: tables for people, JSON for programs, and the conversions both
//! need.

use std::io::Write;

use serde_json::{json, Map, Value as Json};
use zbus::zvariant::Value;

/// Writes `text` to stdout. A closed pipe (`guestnetctl monitor | head`)
/// ends the program quietly with status 0; the reader has what it wanted.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("guestnetctl: writing to stdout: {e}");
        std::process::exit(crate::fail::code::FAILED);
    }
}

/// `text` and a newline.
pub fn line(text: &str) {
    out(&format!("{text}\n"));
}

/// One JSON document, pretty-printed.
pub fn json(v: &Json) {
    line(&serde_json::to_string_pretty(v).expect("JSON values always serialize"));
}

/// One JSON document on one line (monitor events).
pub fn json_line(v: &Json) {
    line(&v.to_string());
}

/// A table: a header row and rows, columns padded to their widest cell
/// (the last column is not padded). An empty cell is shown as `-`.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cell = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    let mut all: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    all.extend(rows.iter().map(|r| r.iter().map(|c| cell(c)).collect()));
    let columns = header.len();
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            all.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in &all {
        let mut l = String::new();
        for (i, c) in row.iter().enumerate() {
            if i + 1 == columns {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        text.push_str(l.trim_end());
        text.push('\n');
    }
    text
}

pub fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// `Addresses` → `addresses`, `ClientId` → `client_id`: the JSON key of a
/// D-Bus property.
pub fn snake_case(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                s.push('_');
            }
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

/// A D-Bus value as JSON: numbers, strings, booleans, arrays; a dict as an
/// object (its keys as strings); a struct as an array.
pub fn value_json(v: &Value<'_>) -> Json {
    match v {
        Value::U8(x) => json!(x),
        Value::Bool(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::F64(x) => json!(x),
        Value::Str(s) => json!(s.as_str()),
        Value::Signature(s) => json!(s.to_string()),
        Value::ObjectPath(p) => json!(p.as_str()),
        Value::Value(inner) => value_json(inner),
        Value::Array(a) => Json::Array(a.iter().map(value_json).collect()),
        Value::Dict(d) => {
            let mut m = Map::new();
            for (k, v) in d.iter() {
                let key = match value_json(k) {
                    Json::String(s) => s,
                    other => other.to_string(),
                };
                m.insert(key, value_json(v));
            }
            Json::Object(m)
        }
        Value::Structure(s) => Json::Array(s.fields().iter().map(value_json).collect()),
        #[allow(unreachable_patterns)]
        _ => Json::Null,
    }
}

/// A JSON value in one word or list, for text: `true`, `gnbr1`,
/// `10.0.0.1/24,10.0.1.1/24`.
pub fn plain(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(","),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

/// Unix seconds as UTC RFC 3339: `2026-11-27T18:18:55Z`.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_all_but_the_last_column_and_dash_empty_cells() {
        let t = table(
            &["NAME", "MODE", "ADDRESSES"],
            &[
                vec!["default".into(), "nat".into(), "10.0.0.1/24".into()],
                vec!["b".into(), "bridged".into(), "".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME     MODE     ADDRESSES\n\
             default  nat      10.0.0.1/24\n\
             b        bridged  -\n"
        );
    }

    #[test]
    fn property_names_become_snake_case() {
        assert_eq!(snake_case("Addresses"), "addresses");
        assert_eq!(snake_case("ClientId"), "client_id");
        assert_eq!(snake_case("Uuid"), "uuid");
    }

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn values_become_json() {
        let v = Value::from(vec!["a", "b"]);
        assert_eq!(value_json(&v), json!(["a", "b"]));
        assert_eq!(value_json(&Value::from(true)), json!(true));
        assert_eq!(plain(&json!(["a", "b"])), "a,b");
        assert_eq!(plain(&json!(false)), "false");
    }
}
