//! A mode's description of its own definition table (`[nat]`,
//! `[bridged]`, ...), so that a frontend can render a form for a mode it
//! has never seen: guestnetd returns it as JSON from `DescribeMode`.

use serde::{Deserialize, Serialize};

/// The keys of a mode's table. Empty `keys`: the mode takes no table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDescription {
    /// What the mode does, in a sentence or two.
    #[serde(default)]
    pub help: String,
    #[serde(default)]
    pub keys: Vec<KeyDescription>,
}

/// One key of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDescription {
    pub name: String,
    pub kind: KeyKind,
    /// Whether a definition must give it.
    #[serde(default)]
    pub required: bool,
    /// What it means, for a form's help text.
    #[serde(default)]
    pub help: String,
    /// What an absent key means, in words ("the default route's NIC").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

impl KeyDescription {
    pub fn new(name: &str, kind: KeyKind, help: &str) -> Self {
        KeyDescription {
            name: name.to_owned(),
            kind,
            required: false,
            help: help.to_owned(),
            default: None,
        }
    }

    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub fn default_is(mut self, default: &str) -> Self {
        self.default = Some(default.to_owned());
        self
    }
}

/// What a key holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KeyKind {
    String,
    Boolean,
    Integer {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<i64>,
    },
    /// A network interface of the host (`eth0`).
    Interface,
    /// An IPv4 address (`10.0.0.1`).
    Ipv4Address,
    /// An IPv4 subnet (`10.0.0.0/24`).
    Ipv4Subnet,
    /// A MAC address (`52:54:00:aa:bb:cc`).
    MacAddress,
    /// One of `values`.
    Choice {
        values: Vec<String>,
    },
    /// A list of `item`.
    List {
        item: Box<KeyKind>,
    },
    /// A table of `keys` (an array of tables is a list of these).
    Table {
        keys: Vec<KeyDescription>,
    },
}
