//! guestnet next to a real firewalld (Debian's package) on the test's
//! private bus, inside the lab's host namespace, with its nftables backend.
//! firewalld's own table rejects forwarded traffic from interfaces in its
//! default zone, so without guestnet's help a nat guest is cut off; guestnet
//! puts its bridges into firewalld's `trusted` zone, and back after each
//! `firewall-cmd --reload` (which forgets runtime zone bindings).
//!
//! firewalld reads its configuration from a copy in the lab's scratch
//! directory (`--system-config`), never writes /etc/firewalld, and runs only
//! in the lab's host namespace.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use guestnet_tests::bus::BusOptions;
use guestnet_tests::busctl::Busctl;
use guestnet_tests::lab::LAN_ADDR;
use guestnet_tests::{probe, root_or_skip, Lab};

const FIREWALLD: &str = "/usr/sbin/firewalld";
const POLICY: &str = "/usr/share/dbus-1/system.d/FirewallD.conf";
const NAME: &str = "org.fedoraproject.FirewallD1";

/// A firewalld in one of the lab's namespaces; killed on drop.
struct Firewalld {
    child: Child,
    log: std::path::PathBuf,
}

impl Firewalld {
    fn start(lab: &Lab) -> Firewalld {
        assert!(lab.world.owns(&lab.host));
        let conf = lab.scratch.path().join("firewalld-etc");
        if !conf.exists() {
            let out = Command::new("cp")
                .args(["-a", "/etc/firewalld"])
                .arg(&conf)
                .output()
                .expect("cp");
            assert!(out.status.success(), "copying /etc/firewalld: {out:?}");
        }
        let log = lab.scratch.path().join("firewalld.log");
        let logf = std::fs::File::create(&log).expect("firewalld log");
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.host, FIREWALLD, "--nofork", "--nopid"])
            .arg("--system-config")
            .arg(&conf)
            .args(["--log-target", "console"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", lab.bus.address())
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .expect("starting firewalld");
        let mut fw = Firewalld { child, log };
        let busctl = Busctl::new(lab.bus.address(), NAME);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = fw.child.try_wait() {
                panic!("firewalld exited ({status})\n{}", fw.log_tail());
            }
            if busctl.name_has_owner(NAME) == Ok(true) && fw.cmd(lab, &["--state"]).0 {
                return fw;
            }
            assert!(
                Instant::now() < deadline,
                "firewalld not up in 30 s\n{}",
                fw.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs firewall-cmd in the host namespace against the lab's bus.
    fn cmd(&self, lab: &Lab, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &lab.host, "firewall-cmd"])
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", lab.bus.address())
            .output()
            .expect("firewall-cmd");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn log_tail(&self) -> String {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Firewalld {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn firewalld_lab() -> Option<Lab> {
    if !Path::new(FIREWALLD).is_file() || !Path::new(POLICY).is_file() {
        // scripts/deps.sh installs firewalld wherever systemd is not running;
        // under CI such a machine must run this test, not skip it.
        let ci = std::env::var("CI").as_deref() == Ok("true");
        if ci && !Path::new("/run/systemd/system").exists() {
            panic!("firewalld is not installed and CI=true: run scripts/deps.sh");
        }
        eprintln!("SKIPPED: firewalld is not installed (scripts/deps.sh installs it where systemd is not running)");
        return None;
    }
    Some(Lab::with_bus(&BusOptions {
        includes: vec![POLICY.into()],
    }))
}

const NAT: &str = r#"
name = "fw"
mode = "nat"
bridge = "gnbrfw"
[ipv4]
address = "10.77.11.1/24"
"#;

fn wait_zone(fw: &Firewalld, lab: &Lab, zone: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, z) = fw.cmd(lab, &["--get-zone-of-interface=gnbrfw"]);
        if z.trim() == zone {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "gnbrfw is in {z:?}, not {zone}\n{}",
            lab.service.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn nat_guest_keeps_reaching_the_lan_across_firewalld_reloads() {
    root_or_skip!();
    let Some(lab) = firewalld_lab() else { return };
    let fw = Firewalld::start(&lab);
    let w = &lab.world;
    let gn = lab.gn();
    let net = gn.define(NAT);
    gn.start(&net);
    let g1 = lab.add_guest("g1", "vg1", "gnbrfw", "10.77.11.10/24", Some("10.77.11.1"));
    wait_zone(&fw, &lab, "trusted");
    probe::assert_ping(w, &g1, LAN_ADDR);
    for _ in 0..2 {
        let (ok, out) = fw.cmd(&lab, &["--reload"]);
        assert!(ok, "{out}");
        wait_zone(&fw, &lab, "trusted");
        probe::assert_ping(w, &g1, LAN_ADDR);
    }
    // Stopping the network takes the bridge out of the zone.
    gn.stop(&net);
    let deadline = Instant::now() + Duration::from_secs(10);
    while fw
        .cmd(&lab, &["--zone=trusted", "--list-interfaces"])
        .1
        .contains("gnbrfw")
    {
        assert!(Instant::now() < deadline, "gnbrfw still in trusted");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn firewalld_arriving_after_the_network_gets_its_bridge() {
    root_or_skip!();
    let Some(lab) = firewalld_lab() else { return };
    let w = &lab.world;
    let gn = lab.gn();
    let net = gn.define(NAT);
    gn.start(&net);
    let g1 = lab.add_guest("g1", "vg1", "gnbrfw", "10.77.11.10/24", Some("10.77.11.1"));
    probe::assert_ping(w, &g1, LAN_ADDR);
    let fw = Firewalld::start(&lab);
    wait_zone(&fw, &lab, "trusted");
    probe::assert_ping(w, &g1, LAN_ADDR);
    let (ok, out) = fw.cmd(&lab, &["--reload"]);
    assert!(ok, "{out}");
    wait_zone(&fw, &lab, "trusted");
    probe::assert_ping(w, &g1, LAN_ADDR);
    let _ = net;
}
