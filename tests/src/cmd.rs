//! Running programs and reporting their failures in a way a person can act on.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

/// Runs `args[0]` with the rest as arguments and returns its output, whatever
/// its exit status. Panics only when the program cannot be started at all.
pub fn run<S: AsRef<OsStr>>(args: &[S]) -> Output {
    assert!(!args.is_empty(), "run: empty command");
    Command::new(&args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", show(args)))
}

/// Like [`run`], and panics with the command, its status, stdout and stderr
/// unless it exited 0. Returns its stdout.
pub fn run_ok<S: AsRef<OsStr>>(args: &[S]) -> String {
    let out = run(args);
    if !out.status.success() {
        panic!("{}", failure(args, &out));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The command line, quoted where needed, for messages.
pub fn show<S: AsRef<OsStr>>(args: &[S]) -> String {
    args.iter()
        .map(|a| {
            let a = a.as_ref().to_string_lossy();
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
                format!("{a:?}")
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A description of a failed command: what ran, how it ended, what it said.
pub fn failure<S: AsRef<OsStr>>(args: &[S], out: &Output) -> String {
    format!(
        "command failed ({}): {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        show(args),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    )
}

/// The last `lines` lines of a text file, or a note saying why there are none.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let from = all.len().saturating_sub(lines);
            let mut s = all[from..].join("\n");
            s.push('\n');
            s
        }
        Err(e) => format!("(cannot read {}: {e})\n", path.display()),
    }
}
