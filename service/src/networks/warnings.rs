//! A plan's warnings (`Plan::warnings`, since mode API 1.1): what a mode
//! wants the user to know. Third-party text, so each is made safe for a log
//! line and a D-Bus string before anyone sees it: control characters (a
//! newline that would forge a log line, an escape sequence for a terminal)
//! and bidirectional overrides are dropped, and it is cut to
//! [`MAX_WARNING_LEN`] bytes on a character boundary.

use guestnet_mode_api::{Plan, MAX_WARNINGS, MAX_WARNING_LEN};

/// Whether `c` may stay in a warning: no control character (C0, DEL, C1)
/// and no bidirectional embedding, override or isolate, which would make a
/// log line read other than it is.
fn kept(c: char) -> bool {
    !c.is_control() && !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// One warning as guestnetd shows it: see the module's doc.
pub fn clean(warning: &str) -> String {
    let mut out: String = warning.chars().filter(|&c| kept(c)).collect();
    if out.len() > MAX_WARNING_LEN {
        let mut end = MAX_WARNING_LEN;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

/// Cleans a fresh plan's warnings in place and logs each, naming the
/// network and the mode. A plan with more than [`MAX_WARNINGS`] is left as
/// it is, unlogged: `Plan::check` refuses it.
pub fn take_in(plan: &mut Plan, network: &str, mode: &str) {
    if plan.warnings.len() > MAX_WARNINGS {
        return;
    }
    for w in &mut plan.warnings {
        *w = clean(w);
        tracing::warn!(network, mode, "mode warning: {w}");
    }
}

/// What a network's `Warnings` property shows of `plan`: its warnings,
/// cleaned again (a plan taken back from a record after a restart is
/// shown the same way) and at most [`MAX_WARNINGS`].
pub fn shown(plan: &Plan) -> Vec<String> {
    plan.warnings
        .iter()
        .take(MAX_WARNINGS)
        .map(|w| clean(w))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_bidi_overrides_go() {
        assert_eq!(
            clean("line one\nWARN forged\r\t\u{1b}[31mred\u{7f}\u{85}"),
            "line oneWARN forged[31mred"
        );
        assert_eq!(clean("a\u{202e}b\u{2066}c"), "abc");
        // Other characters stay, however far from ASCII.
        assert_eq!(
            clean("uplink «eth0» — ignoré ✓"),
            "uplink «eth0» — ignoré ✓"
        );
    }

    #[test]
    fn long_warnings_are_cut_on_a_character_boundary() {
        let ascii = "x".repeat(MAX_WARNING_LEN + 10);
        assert_eq!(clean(&ascii).len(), MAX_WARNING_LEN);
        // 'é' is two bytes: an odd limit would split one.
        let wide = format!("a{}", "é".repeat(MAX_WARNING_LEN));
        let cut = clean(&wide);
        assert!(cut.len() <= MAX_WARNING_LEN && cut.len() >= MAX_WARNING_LEN - 1);
        assert!(cut.starts_with("aé"));
        // Control characters do not count against the limit: they go first.
        let padded = format!("{}{}", "\n".repeat(100), "y".repeat(MAX_WARNING_LEN));
        assert_eq!(clean(&padded), "y".repeat(MAX_WARNING_LEN));
    }

    #[test]
    fn a_plan_keeps_its_cleaned_warnings_unless_it_has_too_many() {
        let mut plan = Plan {
            bridge: guestnet_mode_api::BridgePlan::Existing {
                name: guestnet_mode_api::IfName::new("br0").unwrap(),
            },
            addresses: vec![],
            routes: vec![],
            sysctls: vec![],
            firewall: guestnet_mode_api::FirewallPolicy::None,
            host_allow: vec![],
            dhcp: None,
            dns: None,
            warnings: vec!["one\n".into(), "two".into()],
        };
        take_in(&mut plan, "n1", "m");
        assert_eq!(plan.warnings, ["one", "two"]);
        assert_eq!(shown(&plan), ["one", "two"]);
        plan.warnings = vec!["x\n".into(); MAX_WARNINGS + 1];
        take_in(&mut plan, "n1", "m");
        assert_eq!(plan.warnings[0], "x\n", "left for Plan::check to refuse");
        assert_eq!(shown(&plan).len(), MAX_WARNINGS);
    }
}
