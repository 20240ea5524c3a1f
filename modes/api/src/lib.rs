//! # Writing a guestnet mode
//!
//! A *mode* decides what a network of its kind looks like on the host; the
//! guestnet service does the work. Given a network's [`Definition`] and
//! [`HostFacts`], a mode returns a [`Plan`]: the bridge, the host's addresses
//! on it, routes, sysctls, a [`FirewallPolicy`] and the DHCP and DNS service
//! it wants. guestnetd applies the plan through rtnetlink and one atomic
//! nftables batch, serves DHCP and DNS, tears the plan down on stop and
//! re-adopts it after a restart. A mode has no side effects, so it is tested
//! as plain data, without root.
//!
//! A mode is a `cdylib` that depends on this crate, implements [`Mode`] and
//! exports it with [`export_mode!`]. Drop the built library
//! (`libguestnet_mode_NAME.so`) into guestnetd's modes directory
//! (`/usr/lib/guestnet/modes/` when installed) and restart guestnetd; its
//! `Modes` property then lists the new mode.
//!
//! ## The contract
//! - Only JSON crosses the library boundary, through one versioned table
//!   ([`abi`]). guestnetd refuses a library built for another
//!   [`abi::ABI_VERSION`] with an error naming the file and both versions.
//! - Before any network plans, guestnetd checks every plan on its own
//!   ([`Plan::check`], which your tests can call): lists bounded, rules
//!   that make sense, sysctl values each key takes. Then it checks the plan
//!   against the host and the other networks (see each field of [`Plan`]),
//!   and only then changes anything. A refusal names the part of the plan.
//! - A panic in a mode fails that one call with an error; guestnetd goes on.
//!   Do not build a mode with `panic = "abort"`, which would take it down.
//! - [`Mode::validate`] checks the mode's own table of the definition
//!   (`[nat]`, `[bridged]`, ...); everything else in a definition has been
//!   checked before a mode sees it. Refuse with [`ModeError::invalid`],
//!   naming the field.
//! - [`Mode::plan`] may refuse with [`ModeError::conflict`] when the host
//!   does not allow the network (a NIC that does not exist, say).
//! - Two libraries claiming one mode name: the second is refused.
//!
//! ## A complete minimal mode
//! This is `examples/minimal_mode.rs`, built and loaded by guestnet's tests.
//! It puts guests on their own subnet with DHCP and DNS and forwards their
//! traffic without a firewall policy of its own:
//!
//! ```ignore
#![doc = include_str!("../examples/minimal_mode.rs")]
//! ```
//! Its `Cargo.toml` needs `crate-type = ["cdylib"]` and a dependency on
//! `guestnet-mode-api`.
//!
//! ## Starting from a built-in mode
//! [`builtin`] holds the planners of the built-in modes `nat`, `routed`
//! and `isolated` as functions. A variant starts from one and changes the
//! plan instead of writing it again: `examples/nat_routes.rs` (95 lines,
//! loaded by guestnet's tests) is nat with routes through guest routers
//! and destinations exempt from NAT.
//!
//! ## Testing a mode as plain data
//! A mode is a pure function, so its tests need no root, no kernel and no
//! guestnetd: parse a definition with [`Definition::parse`], make the
//! [`HostFacts`] of the host you mean (it derives `Default`), call your
//! `plan`, and compare the [`Plan`] (or the [`ModeError`]) with what you
//! expect; call [`Plan::check`] on it to know guestnetd will take it.
//!
//! ```
//! use guestnet_mode_api::{builtin::nat, Definition, HostFacts, IfName};
//!
//! let definition = Definition::parse("name = \"lab\"\n[nat]\nuplink = \"eth9\"").unwrap();
//! let facts = HostFacts {
//!     free_bridge_name: Some(IfName::new("guestnet0").unwrap()),
//!     free_subnet: Some("10.20.30.1/24".parse().unwrap()),
//!     ..Default::default()
//! };
//! // eth9 is not a NIC of this host: a conflict, naming it.
//! let refused = nat::plan(&definition, &facts).unwrap_err();
//! assert!(refused.to_string().contains("eth9"));
//!
//! let plan = nat::plan(&Definition::parse("name = \"lab\"").unwrap(), &facts).unwrap();
//! assert_eq!(plan.addresses, vec!["10.20.30.1/24".parse().unwrap()]);
//! plan.check().unwrap();
//! ```
//!
//! ## How the API grows (and what a built library can count on)
//! - **Major** ([`abi::ABI_VERSION`], the crate's semver major): the
//!   table's layout or the meaning of existing JSON changes. guestnetd
//!   refuses a library of another major version, naming both.
//! - **Minor** ([`abi::API_MINOR`], the crate's semver minor) only adds:
//!   new optional fields of a plan (absent means what it meant before, and
//!   a library leaves them out of its JSON when it does not use them), new
//!   enum variants, new requests. A library built against any earlier 1.x
//!   keeps loading and planning in a later guestnetd; the first release,
//!   1.0, is kept as a fixture that guestnet's CI builds and loads.
//! - What goes **to** a mode (definitions, host facts) only gains fields,
//!   which an older library ignores; so no type a mode reads may refuse
//!   unknown fields. What comes **back** (plans) is read strictly: a
//!   guestnetd refuses a plan holding a field or a variant it does not know
//!   (a library built against a later API that uses what this guestnetd
//!   lacks), naming it, rather than apply the plan without it.
//! - A library may also list the features it cannot do without
//!   ([`Mode::requires`], names from [`abi::FEATURES`]): a guestnetd that
//!   lacks one refuses to load it, naming the feature.
//! - A request a library does not know (an older library asked
//!   [`abi::Request::DescribeTable`]) fails that request only; guestnetd
//!   does without the answer.
//! - Source compatibility: a minor release may add fields to the plan's
//!   structs. Build plans from [`own_subnet::plan`] or a [`builtin`]
//!   planner and change fields, or end struct literals with `..`; a
//!   library already built is not affected.
//!
//! Use the crates this API's types are made of through its re-exports,
//! [`ipnet`], [`serde`], [`serde_json`] and [`uuid`], instead of guessing
//! matching versions; derive with
//! `#[serde(crate = "guestnet_mode_api::serde")]` to need no serde of your own.

pub mod abi;
pub mod builtin;
pub mod check;
pub mod definition;
pub mod describe;
pub mod facts;
pub mod forwards;
pub mod names;
pub mod own_subnet;
pub mod plan;

// The crates public types are made of (Ipv4Net, serde_json::Value, Uuid,
// the serde traits), so an author's versions always match.
pub use ipnet;
pub use serde;
pub use serde_json;
pub use uuid;

pub use definition::{Definition, DefinitionError, MacAddr, StaticHost};
pub use describe::{KeyDescription, KeyKind, TableDescription};
pub use facts::{HostFacts, LeaseFact, LinkFact, RouteFact};
pub use forwards::{ForwardConfig, ForwardTarget};
pub use names::{DnsName, IfName, NetworkName};
pub use plan::{
    BridgePlan, DhcpOptions, DhcpPlan, DhcpRoute, DnsPlan, DnsRecord, DomainServers, Endpoint,
    FirewallPolicy, FirewallRule, HostPort, Plan, Protocol, RawDhcpOption, RecordData,
    ResourceRecord, RoutePlan, Sysctl, SysctlKey, MAX_FIREWALL_RULES, MAX_HOST_ALLOW, MAX_WARNINGS,
    MAX_WARNING_LEN,
};

use serde::{Deserialize, Serialize};

/// A network mode. Implementations are pure: no I/O, no global state.
pub trait Mode: Send + Sync {
    /// The name definitions use in `mode = "..."`.
    fn name(&self) -> &str;

    /// The mode's version, shown by guestnetd when it loads the mode.
    fn version(&self) -> &str;

    /// Checks the definition's mode table. The default accepts a definition
    /// without one and refuses any table, since the mode reads none.
    fn validate(&self, definition: &Definition) -> Result<(), ModeError> {
        match &definition.mode_section {
            None => Ok(()),
            Some(_) => Err(ModeError::invalid(
                definition.mode.clone(),
                "this mode takes no settings",
            )),
        }
    }

    /// The desired state of the network on this host.
    fn plan(&self, definition: &Definition, facts: &HostFacts) -> Result<Plan, ModeError>;

    /// The mode's definition table, key by key, for frontends that render
    /// a form for it (guestnetd's `DescribeMode`). The default describes
    /// no keys, as the default [`validate`](Mode::validate) takes none.
    fn table(&self) -> TableDescription {
        TableDescription::default()
    }

    /// Features of the API ([`abi::FEATURES`]) the mode's plans cannot do
    /// without. A guestnetd that lacks one refuses to load the library,
    /// naming it, rather than refusing each plan that uses it. Plans are
    /// checked anyway: a guestnetd refuses a plan holding a field or a
    /// variant it does not know, naming it.
    fn requires(&self) -> &[&'static str] {
        &[]
    }
}

/// What a mode reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeInfo {
    pub name: String,
    pub version: String,
    /// The API minor version the library was built with
    /// ([`abi::API_MINOR`]); 0 from libraries of the first release, which
    /// did not say.
    #[serde(default)]
    pub api_minor: u32,
    /// What [`Mode::requires`] says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
}

/// A mode's refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModeError {
    /// The definition is wrong: `field` says where.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The definition is fine but the host does not allow it now.
    #[error("{reason}")]
    Conflict { reason: String },
}

impl ModeError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ModeError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn conflict(reason: impl Into<String>) -> Self {
        ModeError::Conflict {
            reason: reason.into(),
        }
    }
}

impl From<DefinitionError> for ModeError {
    fn from(e: DefinitionError) -> Self {
        ModeError::Invalid {
            field: e.field,
            reason: e.reason,
        }
    }
}

/// Reads the definition's mode table into `T` (absent: `T::default()`).
/// Give `T` `#[serde(deny_unknown_fields)]` so that typos are refused.
pub fn mode_section<T>(definition: &Definition) -> Result<T, ModeError>
where
    T: for<'de> Deserialize<'de> + Default,
{
    let mode = &definition.mode;
    let Some(section) = &definition.mode_section else {
        return Ok(T::default());
    };
    serde_path_to_error::deserialize(section).map_err(|e| {
        // The path of the failing key inside the table (`routes[1].via`),
        // after the table's own name.
        let path = e.path().to_string();
        let field = if path == "." {
            mode.clone()
        } else {
            format!("{mode}.{path}")
        };
        ModeError::invalid(field, e.into_inner().to_string())
    })
}
