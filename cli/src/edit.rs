//! `guestnetctl edit NAME`: the definition in $EDITOR, then Update, again
//! and again while the service refuses what was written (as `virsh edit`).

use std::path::Path;
use std::process::Command;

use serde_json::json;

use guestnet_dbus::error as names;

use crate::fail::{Failure, Result};
use crate::output::{self, line};
use crate::Ctx;

/// Lines of ours at the top of the file, explaining a refusal. They are
/// TOML comments, so leaving them in does no harm; they are removed before
/// each new attempt.
const NOTE: &str = "# guestnetctl: ";

/// The refusals that are about the text, which the user can fix by editing.
const FIXABLE: [&str; 3] = [names::INVALID_CONFIG, names::UNKNOWN_MODE, names::CONFLICT];

/// The editor command: $EDITOR, else $VISUAL, else vi.
fn editor() -> String {
    for var in ["EDITOR", "VISUAL"] {
        if let Ok(e) = std::env::var(var) {
            if !e.trim().is_empty() {
                return e;
            }
        }
    }
    "vi".to_owned()
}

/// Runs the editor on `file`, through `sh -c` so that it may carry
/// arguments (`code --wait`) or be a script.
fn run_editor(file: &Path) -> Result<()> {
    let editor = editor();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(file)
        .status()
        .map_err(|e| Failure::local(format!("cannot run the editor {editor:?}: {e}")))?;
    if !status.success() {
        return Err(Failure::local(format!(
            "the editor {editor:?} failed ({status}); the definition was not changed"
        )));
    }
    Ok(())
}

/// The text without our note lines at the top.
fn strip_note(text: &str) -> &str {
    let mut rest = text;
    while rest.starts_with(NOTE) {
        rest = rest.split_once('\n').map_or("", |(_, r)| r);
    }
    rest
}

/// The text with a note saying why the service refused it.
fn with_note(text: &str, failure: &Failure) -> String {
    let mut s = format!("{NOTE}the service refused this definition:\n");
    for l in failure.message().lines() {
        s.push_str(&format!("{NOTE}  {l}\n"));
    }
    s.push_str(&format!(
        "{NOTE}fix it and save to try again; quit without saving to give up.\n"
    ));
    s.push_str(strip_note(text));
    s
}

fn same(a: &str, b: &str) -> bool {
    a.trim_end() == b.trim_end()
}

pub async fn edit(ctx: &Ctx, name: &str) -> Result<()> {
    let net = crate::network(ctx, name).await?;
    let original = net.get_config().await?;
    let file = tempfile::Builder::new()
        .prefix(&format!("guestnet-{}-", sanitize(name)))
        .suffix(".toml")
        .tempfile()
        .map_err(|e| Failure::local(format!("cannot make a temporary file: {e}")))?;
    let path = file.path().to_owned();
    let write = |text: &str| {
        std::fs::write(&path, text)
            .map_err(|e| Failure::local(format!("cannot write {}: {e}", path.display())))
    };
    let read = || {
        std::fs::read_to_string(&path)
            .map_err(|e| Failure::local(format!("cannot read {}: {e}", path.display())))
    };
    write(&original)?;
    // What the file held when the editor was last started.
    let mut before = original.clone();
    loop {
        if let Err(f) = run_editor(&path) {
            if same(&before, &original) {
                return Err(f);
            }
            return Err(give_up(file, &f.message()));
        }
        let edited = read()?;
        if same(&edited, &before) {
            if same(&before, &original) {
                report(ctx, name, false);
                return Ok(());
            }
            // Refused before, and left as it was: give up.
            return Err(give_up(
                file,
                &format!("the definition of {name:?} was not changed"),
            ));
        }
        if same(strip_note(&edited), &original) {
            report(ctx, name, false);
            return Ok(());
        }
        match net.update(strip_note(&edited)).await {
            Ok(()) => {
                report(ctx, name, true);
                crate::print_warnings(&net).await;
                return Ok(());
            }
            Err(e) => {
                let failure = Failure::from(e);
                if !failure.dbus_name().is_some_and(|n| FIXABLE.contains(&n)) {
                    return Err(failure);
                }
                eprintln!("guestnetctl: {}", failure.message());
                before = with_note(&edited, &failure);
                write(&before)?;
            }
        }
    }
}

/// Keeps the file of a refused text, so no edit is lost, and says where.
fn give_up(file: tempfile::NamedTempFile, why: &str) -> Failure {
    let kept = file
        .keep()
        .map(|(_, p)| p)
        .unwrap_or_else(|e| e.file.path().to_owned());
    Failure::local(format!("{why}; your text is in {}", kept.display()))
}

/// A network name made safe for a file name.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn report(ctx: &Ctx, name: &str, changed: bool) {
    if ctx.json {
        output::json(&json!({"name": name, "changed": changed}));
    } else if changed {
        line(&format!("{name}: definition updated"));
    } else {
        line(&format!("{name}: definition not changed"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_added_and_stripped() {
        let f = Failure::Service {
            name: names::INVALID_CONFIG.to_owned(),
            message: "invalid definition: ipv4.address: bad".to_owned(),
        };
        let text = "name = \"x\"\n";
        let noted = with_note(text, &f);
        assert!(noted.starts_with(NOTE));
        assert!(noted.contains("InvalidConfig: invalid definition: ipv4.address: bad"));
        assert_eq!(strip_note(&noted), text);
        // A second refusal replaces the first note.
        assert_eq!(strip_note(&with_note(&noted, &f)), text);
    }
}
