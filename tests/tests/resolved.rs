//! Guests' names on the host (issue #14, part 4): guestnetd registers each
//! active network's DNS server and domain with systemd-resolved for the
//! network's bridge (SetLinkDNS, SetLinkDomains with the domain routing-only)
//! and reverts the link when the network stops.
//!
//! A real systemd-resolved cannot run here: Debian's package is not
//! installed, and installing it takes over the machine's own
//! /etc/resolv.conf (its postinst), which tests must not touch. So the
//! calls are checked against a real bus service instead: an object of
//! this test on the test's own dbus-daemon, owning
//! `org.freedesktop.resolve1`, that records what it is asked. That
//! resolved then answers queries for the domain through guestnet's DNS is
//! resolved's part.

use guestnet_tests::bus::BusOptions;
use guestnet_tests::{root_or_skip, Lab};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Calls = Arc<Mutex<Vec<String>>>;

/// resolved's manager, as far as guestnetd uses it.
struct FakeResolved {
    calls: Calls,
}

#[zbus::interface(name = "org.freedesktop.resolve1.Manager")]
impl FakeResolved {
    #[zbus(name = "SetLinkDNS")]
    fn set_link_dns(&self, ifindex: i32, servers: Vec<(i32, Vec<u8>)>) {
        let addrs: Vec<String> = servers
            .iter()
            .map(|(family, a)| {
                format!(
                    "{family}:{}",
                    a.iter().map(u8::to_string).collect::<Vec<_>>().join(".")
                )
            })
            .collect();
        self.calls
            .lock()
            .unwrap()
            .push(format!("SetLinkDNS {ifindex} {}", addrs.join(",")));
    }

    fn set_link_domains(&self, ifindex: i32, domains: Vec<(String, bool)>) {
        let d: Vec<String> = domains
            .iter()
            .map(|(name, routing)| format!("{}{name}", if *routing { "~" } else { "" }))
            .collect();
        self.calls
            .lock()
            .unwrap()
            .push(format!("SetLinkDomains {ifindex} {}", d.join(",")));
    }

    fn set_link_default_route(&self, ifindex: i32, enable: bool) {
        self.calls
            .lock()
            .unwrap()
            .push(format!("SetLinkDefaultRoute {ifindex} {enable}"));
    }

    fn revert_link(&self, ifindex: i32) {
        self.calls
            .lock()
            .unwrap()
            .push(format!("RevertLink {ifindex}"));
    }
}

const POLICY: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <policy user="root">
    <allow own="org.freedesktop.resolve1"/>
  </policy>
  <policy context="default">
    <allow send_destination="org.freedesktop.resolve1"/>
  </policy>
</busconfig>
"#;

fn wait_for(calls: &Calls, what: &str) -> Vec<String> {
    let start = Instant::now();
    loop {
        let now = calls.lock().unwrap().clone();
        if now.iter().any(|c| c.contains(what)) || start.elapsed() > Duration::from_secs(5) {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn each_network_s_dns_is_registered_with_resolved_for_its_bridge() {
    root_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("resolve1.conf");
    std::fs::write(&policy, POLICY).unwrap();
    let lab = Lab::with_bus(&BusOptions {
        includes: vec![policy],
    });
    let calls: Calls = Arc::default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _resolved = runtime.block_on(async {
        zbus::connection::Builder::address(lab.bus.address())
            .unwrap()
            .name("org.freedesktop.resolve1")
            .unwrap()
            .serve_at(
                "/org/freedesktop/resolve1",
                FakeResolved {
                    calls: calls.clone(),
                },
            )
            .unwrap()
            .build()
            .await
            .unwrap()
    });
    // The connection serves from zbus's own executor thread.
    let gn = lab.gn();
    let net = gn.define(
        "name = \"rs1\"\nbridge = \"gnbrrs\"\n[ipv4]\naddress = \"10.81.1.1/24\"\n[dns]\ndomain = \"guest.lan\"\n",
    );
    gn.start(&net);
    let ifindex: String = lab
        .world
        .ip(&lab.host, "-o link show gnbrrs")
        .split(':')
        .next()
        .unwrap()
        .trim()
        .to_owned();
    let seen = wait_for(&calls, "SetLinkDomains");
    // Never the host's default route for names: routing-only.
    assert_eq!(
        seen[0],
        format!("SetLinkDefaultRoute {ifindex} false"),
        "{seen:?}"
    );
    assert!(
        seen.contains(&format!("SetLinkDNS {ifindex} 2:10.81.1.1")),
        "{seen:?}"
    );
    assert!(
        seen.contains(&format!("SetLinkDomains {ifindex} ~guest.lan")),
        "{seen:?}"
    );
    gn.stop(&net);
    let seen = wait_for(&calls, "RevertLink");
    assert!(seen.contains(&format!("RevertLink {ifindex}")), "{seen:?}");
}
