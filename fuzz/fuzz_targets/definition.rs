//! Any text as a network definition: refused with a reason or parsed into
//! one that round-trips through TOML.
#![no_main]

use guestnet_mode_api::Definition;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(def) = Definition::parse(text) {
        let again = Definition::parse(&def.to_toml()).expect("a parsed definition re-parses");
        assert_eq!(def, again);
    }
});
