//! What a guest reaches on the host (issue #12, point 5): a scenario that
//! tests/tests/host_input.rs runs on a plain host and tests/tests/firewalld.rs
//! under firewalld.
//!
//! Two networks of one mode on the lab's host: `closed` (bridge
//! [`CLOSED_BRIDGE`], no `[host]` table) and `open` (bridge
//! [`OPEN_BRIDGE`], `[host] allow = ["tcp/2222"]`), each with a guest
//! that takes its address by DHCP. The host runs a TCP service on every
//! address, port [`PORT`], as an sshd or a database would.

use crate::dhcp_client::{mac, Udhcpc, UdhcpcOpts, LEASE_TIMEOUT};
use crate::lab::{Lab, HOST_UPLINK_ADDR};
use crate::{dig, probe};

/// The host service's port.
pub const PORT: u16 = 2222;
pub const CLOSED_BRIDGE: &str = "gnbrhc";
pub const OPEN_BRIDGE: &str = "gnbrho";
/// The host's addresses on the two networks.
pub const CLOSED_HOST: &str = "10.79.1.1";
pub const OPEN_HOST: &str = "10.79.2.1";

/// The definition of network `name` of `mode` on `bridge`, subnet
/// `10.79.N.0/24`, with DHCP, the DNS domain `NAME.lan`, and `host` (a
/// `[host]` table, or "").
pub fn definition(name: &str, mode: &str, bridge: &str, n: u8, host: &str) -> String {
    format!(
        "name = \"{name}\"\nmode = \"{mode}\"\nbridge = \"{bridge}\"\n\
         [ipv4]\naddress = \"10.79.{n}.1/24\"\n\
         dhcp = {{ start = \"10.79.{n}.100\", end = \"10.79.{n}.199\", lease_time = \"2m\" }}\n\
         [dns]\ndomain = \"net{n}.lan\"\n{host}"
    )
}

/// Defines and starts the two networks of `mode` in `lab`.
pub fn start_networks(lab: &Lab, mode: &str) {
    let gn = lab.gn();
    for (name, bridge, n, host) in [
        ("closed", CLOSED_BRIDGE, 1, ""),
        ("open", OPEN_BRIDGE, 2, "[host]\nallow = [\"tcp/2222\"]\n"),
    ] {
        let net = gn.define(&definition(name, mode, bridge, n, host));
        gn.start(&net);
    }
}

/// A guest of one of the two networks, with its lease.
pub struct Guest {
    pub ns: String,
    pub ip: String,
    _dhcp: Udhcpc,
}

/// Plugs a guest named `name` into `bridge` and checks what guestnet
/// serves it on the host at `server`: a lease by DHCP, its own name by DNS
/// (udp and tcp), a ping to the host.
pub fn dhcp_dns_and_ping(lab: &Lab, name: &str, bridge: &str, n: u8, server: &str) -> Guest {
    let w = &lab.world;
    let ns = lab.add_dhcp_guest(name, &format!("vh{n}"), bridge, &mac(79, n));
    let dhcp = Udhcpc::start(w, &ns, &UdhcpcOpts::named(name));
    let ip = dhcp.wait_bound(LEASE_TIMEOUT).var("ip").to_owned();
    // The domain is not the guest's name: a label of the domain is
    // reserved and no guest takes it.
    let fqdn = format!("{name}.net{n}.lan");
    assert_eq!(dig::a(w, &ns, server, &fqdn), [ip.as_str()], "DNS over udp");
    let tcp = dig::query(w, &ns, server, &["+tcp", &fqdn, "A"]);
    assert!(tcp.is("NOERROR"), "DNS over tcp from {name}: {tcp}");
    assert_eq!(tcp.data("A"), [ip.as_str()]);
    probe::assert_ping(w, &ns, server);
    Guest {
        ns,
        ip,
        _dhcp: dhcp,
    }
}

/// The whole scenario, once [`start_networks`] has run (and, under
/// firewalld, the bridges are in their zones).
pub fn check(lab: &Lab) {
    let w = &lab.world;
    let closed = dhcp_dns_and_ping(lab, "closed", CLOSED_BRIDGE, 1, CLOSED_HOST);
    let open = dhcp_dns_and_ping(lab, "open", OPEN_BRIDGE, 2, OPEN_HOST);
    let listener = probe::tcp_listener(w, &lab.host, PORT);
    assert!(
        probe::tcp_connects(w, &lab.host, "127.0.0.1", PORT),
        "the host's own service does not answer the host"
    );
    let table = || lab.guestnet_table().unwrap_or_default();
    let reaches = |g: &Guest, addr: &str| probe::tcp_connects(w, &g.ns, addr, PORT);
    // The closed network's guest reaches no host service, on any of the
    // host's addresses.
    for addr in [CLOSED_HOST, OPEN_HOST, HOST_UPLINK_ADDR] {
        assert!(
            !reaches(&closed, addr),
            "a guest of a network without [host] allow reached the host's tcp/{PORT} at {addr}\n{}",
            table()
        );
    }
    // The open network's guest reaches the allowed port on the host's
    // address on its own network; the other network's allow-list did not
    // open it for the closed one above (each network's rules name its own
    // bridge).
    assert!(
        reaches(&open, OPEN_HOST),
        "[host] allow = [\"tcp/{PORT}\"] did not let the guest in\n{}",
        table()
    );
    for addr in [CLOSED_HOST, HOST_UPLINK_ADDR] {
        assert!(
            !reaches(&open, addr),
            "an allowed port was open on {addr}, not only on the network's own address\n{}",
            table()
        );
    }
    // The host still opens connections to its guests (their replies come
    // back in) and pings them.
    for g in [&closed, &open] {
        probe::assert_ping(w, &lab.host, &g.ip);
        assert!(
            probe::tcp_peer(w, &g.ns, 7301, &lab.host, &g.ip).is_some(),
            "the host could not reach its guest {}",
            g.ip
        );
    }
    w.kill(listener);
}
