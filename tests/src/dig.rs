//! DNS queries with `dig` (dnsutils) from a world's namespace, always to a
//! given server (`@ADDR`: dig then never reads /etc/resolv.conf for one).

use std::fmt;

use crate::cmd;
use crate::world::World;

/// One resource record of an answer section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Fully qualified, with the trailing dot, as dig prints it.
    pub name: String,
    pub ttl: u32,
    pub rtype: String,
    pub data: String,
}

/// What dig got.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The response code (`NOERROR`, `NXDOMAIN`, `REFUSED`, ...); None when
    /// no reply came at all.
    pub status: Option<String>,
    pub answers: Vec<Record>,
    /// dig's whole output, for messages.
    pub output: String,
    /// The command, for messages.
    pub command: String,
}

impl Reply {
    /// The data of the answers of type `rtype`.
    pub fn data(&self, rtype: &str) -> Vec<String> {
        self.answers
            .iter()
            .filter(|r| r.rtype.eq_ignore_ascii_case(rtype))
            .map(|r| r.data.clone())
            .collect()
    }

    pub fn is(&self, status: &str) -> bool {
        self.status.as_deref() == Some(status)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`:\n{}", self.command, self.output)
    }
}

/// Parses dig's default output.
pub fn parse(output: &str) -> (Option<String>, Vec<Record>) {
    let mut status = None;
    let mut answers = Vec::new();
    let mut in_answer = false;
    for line in output.lines() {
        if let Some(i) = line.find("status: ") {
            let rest = &line[i + "status: ".len()..];
            status = Some(rest.split(',').next().unwrap_or("").trim().to_owned());
            continue;
        }
        if line.starts_with(";; ANSWER SECTION:") {
            in_answer = true;
            continue;
        }
        if in_answer {
            if line.trim().is_empty() || line.starts_with(';') {
                in_answer = false;
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() >= 5 {
                answers.push(Record {
                    name: fields[0].to_owned(),
                    ttl: fields[1].parse().unwrap_or(0),
                    rtype: fields[3].to_owned(),
                    data: fields[4..].join(" "),
                });
            }
        }
    }
    (status, answers)
}

/// `dig +time=2 +tries=1 @server ARGS` in `ns` (for example
/// `&["web.guest.lan", "A"]`, `&["-x", "10.77.0.5"]`, `&["+tcp", "x", "A"]`).
pub fn query(world: &World, ns: &str, server: &str, args: &[&str]) -> Reply {
    let at = format!("@{server}");
    let mut full = vec!["dig", "+time=2", "+tries=1", &at];
    full.extend_from_slice(args);
    let out = world.exec(ns, &full);
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, answers) = parse(&output);
    Reply {
        status,
        answers,
        output,
        command: format!("ip netns exec {ns} {}", cmd::show(&full)),
    }
}

/// The A records for `name`, asked from `ns` of `server`; panics unless the
/// reply is NOERROR.
#[track_caller]
pub fn a(world: &World, ns: &str, server: &str, name: &str) -> Vec<String> {
    let r = query(world, ns, server, &[name, "A"]);
    assert!(r.is("NOERROR"), "A {name}: expected NOERROR, got {r}");
    r.data("A")
}

/// The PTR records for `ip`; panics unless the reply is NOERROR.
#[track_caller]
pub fn ptr(world: &World, ns: &str, server: &str, ip: &str) -> Vec<String> {
    let r = query(world, ns, server, &["-x", ip]);
    assert!(r.is("NOERROR"), "PTR {ip}: expected NOERROR, got {r}");
    r.data("PTR")
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_dig_output() {
        let out = "\
; <<>> DiG 9.18 <<>> @10.77.0.1 web.guest.lan A
;; global options: +cmd
;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 4711
;; flags: qr aa rd ra; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1

;; QUESTION SECTION:
;web.guest.lan.\t\t\tIN\tA

;; ANSWER SECTION:
web.guest.lan.\t\t0\tIN\tA\t10.77.0.5

;; Query time: 0 msec
";
        let (status, answers) = parse(out);
        assert_eq!(status.as_deref(), Some("NOERROR"));
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].name, "web.guest.lan.");
        assert_eq!(answers[0].rtype, "A");
        assert_eq!(answers[0].data, "10.77.0.5");
        let (status, answers) = parse(
            ";; communications error to 10.77.0.1#53: timed out\n;; no servers could be reached\n",
        );
        assert_eq!(status, None);
        assert!(answers.is_empty());
        let (status, _) = parse(";; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 1\n");
        assert_eq!(status.as_deref(), Some("NXDOMAIN"));
    }
}
