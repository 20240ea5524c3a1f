//! D-Bus calls through real clients: `busctl --json=short` for results, and
//! `dbus-send` where a test needs the D-Bus error *name* (busctl prints only
//! an error's message, never its name).

use std::fmt;

use crate::cmd;

/// A D-Bus error reply: its name (`org.guestnet1.Error.Conflict`) and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusError {
    pub name: String,
    pub message: String,
}

impl BusError {
    /// The error a D-Bus client printed as `PREFIX NAME: MESSAGE` (or
    /// `PREFIX NAME`), None when `text` is no such error.
    pub fn parse(text: &str, prefix: &str) -> Option<BusError> {
        let rest = text.strip_prefix(prefix)?;
        let (name, message) = rest.split_once(": ").unwrap_or((rest, ""));
        (!name.is_empty() && !name.contains(' ')).then(|| BusError {
            name: name.to_owned(),
            message: message.to_owned(),
        })
    }
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

/// A client of one bus address and one destination, run as root or, with
/// [`Busctl::as_uid`], as another user (through `setpriv`).
#[derive(Clone, Debug)]
pub struct Busctl {
    address: String,
    destination: String,
    /// (uid, gid) to run as.
    uid: Option<(u32, u32)>,
}

/// Reply timeout for every call, seconds.
const TIMEOUT_S: u32 = 30;

impl Busctl {
    pub fn new(address: &str, destination: &str) -> Busctl {
        Busctl {
            address: address.to_owned(),
            destination: destination.to_owned(),
            uid: None,
        }
    }

    /// The same client, run as `uid` (gid the same, no supplementary groups).
    pub fn as_uid(&self, uid: u32) -> Busctl {
        self.as_user(uid, uid)
    }

    /// The same client, run as `uid` with primary group `gid` (no
    /// supplementary groups).
    pub fn as_user(&self, uid: u32, gid: u32) -> Busctl {
        Busctl {
            uid: Some((uid, gid)),
            ..self.clone()
        }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// The same bus, another destination.
    pub fn to(&self, destination: &str) -> Busctl {
        Busctl {
            destination: destination.to_owned(),
            ..self.clone()
        }
    }

    /// The command line that runs `program` as this client's user.
    pub fn command(&self, program: &str) -> Vec<String> {
        let mut v = Vec::new();
        if let Some((uid, gid)) = self.uid {
            v.extend([
                "setpriv".to_owned(),
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--clear-groups".to_owned(),
                "--".to_owned(),
            ]);
        }
        v.push(program.to_owned());
        v
    }

    fn busctl(&self, verb: &str, rest: &[&str]) -> Result<serde_json::Value, String> {
        let mut args = self.command("busctl");
        args.extend([
            format!("--address={}", self.address),
            "--json=short".to_owned(),
            format!("--timeout={TIMEOUT_S}"),
            verb.to_owned(),
            self.destination.clone(),
        ]);
        args.extend(rest.iter().map(|s| s.to_string()));
        let out = cmd::run(&args);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            return Err(if err.is_empty() {
                format!("`{}` failed ({})", cmd::show(&args), out.status)
            } else {
                err
            });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(text.trim())
            .map_err(|e| format!("`{}` printed no JSON ({e}): {text}", cmd::show(&args)))
    }

    /// Calls `interface.method` on `path` with busctl's own argument syntax
    /// (`signature` then the arguments, e.g. `"as", &["2", "a", "b"]`).
    ///
    /// Ok: the reply's values: `Null` for none, the value itself for one,
    /// an array of them for several. Err: what busctl printed (the error's
    /// message; busctl does not print the error's name: see [`Busctl::try_call`]).
    pub fn call(
        &self,
        path: &str,
        interface: &str,
        method: &str,
        signature: &str,
        args: &[&str],
    ) -> Result<serde_json::Value, String> {
        let mut rest = vec![path, interface, method];
        if !signature.is_empty() {
            rest.push(signature);
            rest.extend_from_slice(args);
        }
        let v = self.busctl("call", &rest)?;
        Ok(match v.get("data") {
            None => serde_json::Value::Null,
            Some(serde_json::Value::Array(items)) if items.is_empty() => serde_json::Value::Null,
            Some(serde_json::Value::Array(items)) if items.len() == 1 => items[0].clone(),
            Some(data) => data.clone(),
        })
    }

    /// A property's value (JSON, as busctl prints it).
    pub fn get_property(
        &self,
        path: &str,
        interface: &str,
        property: &str,
    ) -> Result<serde_json::Value, String> {
        let v = self.busctl("get-property", &[path, interface, property])?;
        Ok(v.get("data").cloned().unwrap_or(serde_json::Value::Null))
    }

    /// Sets a property (busctl syntax: `"b", "true"`).
    pub fn set_property(
        &self,
        path: &str,
        interface: &str,
        property: &str,
        signature: &str,
        value: &str,
    ) -> Result<(), String> {
        self.busctl(
            "set-property",
            &[path, interface, property, signature, value],
        )
        .map(|_| ())
    }

    /// Calls like [`Busctl::call`] but through `dbus-send`, which reports an
    /// error's name. Ok: the reply as `dbus-send --print-reply=literal`
    /// printed it, trimmed (an object path or a string prints as itself).
    ///
    /// Arguments use busctl's syntax; supported are the basic types and
    /// arrays of them.
    pub fn try_call(
        &self,
        path: &str,
        interface: &str,
        method: &str,
        signature: &str,
        args: &[&str],
    ) -> Result<String, BusError> {
        self.dbus_send(
            path,
            &format!("{interface}.{method}"),
            &dbus_send_args(signature, args),
        )
    }

    /// `dbus-send` of `member` (`interface.method`) with arguments in its
    /// own `type:value` syntax.
    fn dbus_send(&self, path: &str, member: &str, args: &[String]) -> Result<String, BusError> {
        let mut argv = self.command("dbus-send");
        argv.extend([
            format!("--bus={}", self.address),
            "--print-reply=literal".to_owned(),
            format!("--reply-timeout={}", TIMEOUT_S * 1000),
            format!("--dest={}", self.destination),
            path.to_owned(),
            member.to_owned(),
        ]);
        argv.extend(args.iter().cloned());
        let out = cmd::run(&argv);
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        // dbus-send prints "Error NAME: MESSAGE".
        Err(
            BusError::parse(&stderr, "Error ").unwrap_or_else(|| BusError {
                name: String::new(),
                message: format!("{}\n{stderr}", cmd::failure(&argv, &out)),
            }),
        )
    }

    /// Sets a property like [`Busctl::set_property`] but through `dbus-send`,
    /// which reports an error's name (busctl prints only a generic text for
    /// the standard errors). `signature` is one basic type.
    pub fn try_set_property(
        &self,
        path: &str,
        interface: &str,
        property: &str,
        signature: &str,
        value: &str,
    ) -> Result<(), BusError> {
        assert!(
            signature.len() == 1,
            "try_set_property: one basic type, not {signature:?}"
        );
        let ty = dbus_send_type(signature.chars().next().unwrap_or('?'));
        let variant = format!("variant:{ty}:{value}");
        self.dbus_send(
            path,
            "org.freedesktop.DBus.Properties.Set",
            &[
                format!("string:{interface}"),
                format!("string:{property}"),
                variant,
            ],
        )
        .map(|_| ())
    }

    /// Whether `name` has an owner on this bus (asks org.freedesktop.DBus).
    pub fn name_has_owner(&self, name: &str) -> Result<bool, String> {
        let v = self.to("org.freedesktop.DBus").call(
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "NameHasOwner",
            "s",
            &[name],
        )?;
        v.as_bool()
            .ok_or_else(|| format!("NameHasOwner replied {v}, not a boolean"))
    }
}

fn dbus_send_type(code: char) -> &'static str {
    match code {
        's' => "string",
        'o' => "objpath",
        'b' => "boolean",
        'y' => "byte",
        'n' => "int16",
        'q' => "uint16",
        'i' => "int32",
        'u' => "uint32",
        'x' => "int64",
        't' => "uint64",
        'd' => "double",
        other => panic!(
            "dbus-send cannot pass D-Bus type '{other}' (basic types and arrays of them only)"
        ),
    }
}

/// busctl-style `signature` + `args` to dbus-send's `type:value` arguments.
fn dbus_send_args(signature: &str, args: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut args = args.iter();
    let mut next = |what: &str| -> &str {
        args.next()
            .unwrap_or_else(|| panic!("signature {signature:?}: missing argument for {what}"))
    };
    let mut sig = signature.chars();
    while let Some(c) = sig.next() {
        if c == 'a' {
            let elem = sig
                .next()
                .unwrap_or_else(|| panic!("signature {signature:?} ends in 'a'"));
            let ty = dbus_send_type(elem);
            let n: usize = next("array length").parse().unwrap_or_else(|_| {
                panic!("signature {signature:?}: an array's first argument is its length")
            });
            let items: Vec<&str> = (0..n).map(|_| next("array item")).collect();
            assert!(
                items.iter().all(|i| !i.contains(',')),
                "dbus-send cannot pass array items containing ','"
            );
            assert!(n > 0, "dbus-send cannot pass an empty array");
            out.push(format!("array:{ty}:{}", items.join(",")));
        } else {
            let ty = dbus_send_type(c);
            out.push(format!("{ty}:{}", next(ty)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::dbus_send_args;

    #[test]
    fn converts_busctl_arguments() {
        assert_eq!(
            dbus_send_args("sub", &["a b", "7", "true"]),
            ["string:a b", "uint32:7", "boolean:true"]
        );
        assert_eq!(
            dbus_send_args("asu", &["2", "x", "y", "3"]),
            ["array:string:x,y", "uint32:3"]
        );
        assert!(dbus_send_args("", &[]).is_empty());
    }
}
