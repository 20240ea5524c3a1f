//! Running programs and reporting their failures in a way a person can act on;
//! signalling, killing and watching the processes a test started.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, Output};

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

/// Sends `sig` to `pid`: a child of the test's that is not reaped yet (so
/// the pid is still its own), or a process in a namespace of the test's own.
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; the callers name
    // processes of their own (see above).
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Kills `child` outright (SIGKILL to its process group, then to itself)
/// and reaps it. The child must have been spawned with `process_group(0)`,
/// so that its pgid is its own pid and the group is the test's alone.
pub fn kill_group(child: &mut Child) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) of our own child's process group and of the child,
    // neither reaped yet.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
    let _ = child.wait();
}

/// Whether our child `pid` still runs (not exited, not a zombie).
pub fn still_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    })
}

/// The python3 to run the harness's little scripts with: Debian's, not one
/// a version manager put first on PATH.
pub fn python3() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}
