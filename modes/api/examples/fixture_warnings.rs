//! Test fixture, not an example to follow: mode `warnings` says more about
//! itself than guestnetd passes on, so that guestnet's tests can see what
//! the service does with it. It puts guests on their own subnet like
//! `examples/minimal_mode.rs`, and
//! - warns, in every plan, what its table's `say` lists, or by default a
//!   line with a newline and a terminal escape in it, one with a
//!   bidirectional override and one far longer than a warning may be;
//! - describes its table in more than 64 KiB of JSON, which guestnetd
//!   refuses to return.
//!
//! ```toml
//! [warnings]
//! say = ["one thing", "another"]   # optional
//! ```

use guestnet_mode_api::{
    mode_section, own_subnet, Definition, HostFacts, KeyDescription, KeyKind, Mode, ModeError,
    Plan, TableDescription,
};
use serde::Deserialize;

pub struct Warnings;

/// The `[warnings]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    say: Option<Vec<String>>,
}

/// What the mode warns of by default: hostile text for a log and a bus.
fn default_warnings() -> Vec<String> {
    vec![
        "uplink ignored\nWARN forged log line \u{1b}[31mred".to_owned(),
        "bidi \u{202e}desrever".to_owned(),
        // 'é' is two bytes: 600 of them are 1201 bytes.
        format!("long {}", "é".repeat(600)),
    ]
}

impl Mode for Warnings {
    fn name(&self) -> &str {
        "warnings"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn validate(&self, definition: &Definition) -> Result<(), ModeError> {
        mode_section::<Section>(definition).map(drop)
    }

    fn plan(&self, definition: &Definition, facts: &HostFacts) -> Result<Plan, ModeError> {
        let section: Section = mode_section(definition)?;
        let mut plan = own_subnet::plan(definition, facts, own_subnet::Gateway::Offered)?;
        plan.warnings = section.say.unwrap_or_else(default_warnings);
        Ok(plan)
    }

    fn table(&self) -> TableDescription {
        TableDescription {
            help: "x".repeat(70 * 1024),
            keys: vec![KeyDescription::new(
                "say",
                KeyKind::List {
                    item: Box::new(KeyKind::String),
                },
                "The warnings of every plan.",
            )],
        }
    }
}

guestnet_mode_api::export_mode!(Warnings, Warnings);
